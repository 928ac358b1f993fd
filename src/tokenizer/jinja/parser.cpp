// Recursive-descent parser with @huggingface/jinja's grammar and precedence:
// ternary < or < and < not < comparison/in < + - ~ < * / // % < ** < is-test < |filter
// < unary sign < call/member < primary.
#include <charconv>
#include <cmath>

#include "base/error.h"
#include "tokenizer/jinja/ast.h"

namespace dsv3::jinja {
namespace {

using Kind = Node::Kind;
using T = TokenType;

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, int max_nesting) : t_(tokens), max_nesting_(max_nesting) {}

  Program run() {
    Program p;
    while (i_ < t_.size()) p.body.push_back(any());
    // The statements before a lexer error parsed: the error stands.
    if (!t_.empty() && t_.back().type == T::kError) fail("{}", t_.back().value);
    return p;
  }

 private:
  // One level of nesting for as long as it lives; `more()` adds one per link of an operator
  // chain (a + b + c builds a tree as deep as the chain is long). The limit bounds the depth
  // of the tree, and so every recursion over it: parsing, rendering, destruction.
  struct Nest {
    explicit Nest(Parser& p) : p_(p) { more(); }
    ~Nest() { p_.depth_ -= n_; }
    void more() {
      ++n_;
      if (++p_.depth_ > p_.max_nesting_)
        p_.error(fmt::format("nesting deeper than the template limit max_nesting = {} (blocks, brackets and "
                             "operator chains)",
                             p_.max_nesting_));
    }
    Parser& p_;
    int n_ = 0;
  };

  [[noreturn]] void error(const std::string& what) const {
    const Token& at = i_ < t_.size() ? t_[i_] : t_.back();
    // At the lexer's failure, its message says what is wrong there.
    if (at.type == T::kError) fail("{}", at.value);
    fail("{}: {}", position(at.line, at.column), what);
  }
  const Token& peek() const {
    if (i_ >= t_.size()) error("unexpected end of template");
    return t_[i_];
  }
  bool is(T type, size_t k = 0) const { return i_ + k < t_.size() && t_[i_ + k].type == type; }
  bool is_ident(const char* name, size_t k = 0) const { return is(T::kIdentifier, k) && t_[i_ + k].value == name; }
  bool is_statement(std::initializer_list<const char*> names) const {
    if (!is(T::kOpenStatement) || !is(T::kIdentifier, 1)) return false;
    for (const char* n : names) {
      if (t_[i_ + 1].value == n) return true;
    }
    return false;
  }
  const Token& expect(T type, const char* what) {
    if (!is(type)) error(fmt::format("expected {}, found '{}'", what, i_ < t_.size() ? t_[i_].value : "end of template"));
    return t_[i_++];
  }
  void expect_ident(const char* name) {
    if (!is_ident(name)) error(fmt::format("expected '{}'", name));
    ++i_;
  }
  std::shared_ptr<Node> node(Kind k, const Token& at) {
    auto n = std::make_shared<Node>();
    n->kind = k;
    n->line = at.line;
    n->column = at.column;
    return n;
  }
  // Body of a block until one of `ends` ({% end... %} etc.) is next.
  NodeList block(std::initializer_list<const char*> ends) {
    NodeList out;
    while (!is_statement(ends)) {
      if (i_ >= t_.size()) error(fmt::format("missing {{% {} %}}", *(ends.end() - 1)));
      out.push_back(any());
    }
    return out;
  }

  NodePtr any() {
    Nest nest(*this);
    const Token& tok = peek();
    switch (tok.type) {
      case T::kComment: {
        ++i_;
        return node(Kind::kComment, tok);
      }
      case T::kText: {
        auto n = node(Kind::kText, tok);
        n->text = tok.value;
        ++i_;
        return n;
      }
      case T::kOpenStatement: return statement();
      case T::kOpenExpression: {
        ++i_;
        NodePtr e = expression();
        expect(T::kCloseExpression, "'}}'");
        return e;
      }
      default: error(fmt::format("unexpected '{}'", tok.value));
    }
  }

  NodePtr statement() {
    expect(T::kOpenStatement, "'{%'");
    if (!is(T::kIdentifier)) error("expected a statement name");
    const Token& name = t_[i_];
    std::string kw = name.value;
    ++i_;
    if (kw == "set") return set_statement(name);
    if (kw == "if") {
      NodePtr n = if_statement(name);
      expect(T::kOpenStatement, "'{%'");
      expect_ident("endif");
      expect(T::kCloseStatement, "'%}'");
      return n;
    }
    if (kw == "for") return for_statement(name);
    if (kw == "macro") return macro_statement(name);
    if (kw == "break" || kw == "continue") {
      expect(T::kCloseStatement, "'%}'");
      return node(kw == "break" ? Kind::kBreak : Kind::kContinue, name);
    }
    if (kw == "filter") {
      auto n = node(Kind::kFilterStatement, name);
      n->b = filter_target();
      expect(T::kCloseStatement, "'%}'");
      n->body = block({"endfilter"});
      i_ += 2;
      expect(T::kCloseStatement, "'%}'");
      return n;
    }
    --i_;
    error(fmt::format("unsupported statement '{}'", kw));
  }

  NodePtr set_statement(const Token& at) {
    auto n = node(Kind::kSet, at);
    n->a = expression_sequence(false);
    if (is(T::kEquals)) {
      ++i_;
      n->b = expression_sequence(false);
    } else {
      expect(T::kCloseStatement, "'%}' or '='");
      n->body = block({"endset"});
      i_ += 2;
    }
    expect(T::kCloseStatement, "'%}'");
    return n;
  }

  NodePtr if_statement(const Token& at) {
    auto n = node(Kind::kIf, at);
    n->a = expression();
    expect(T::kCloseStatement, "'%}'");
    n->body = block({"elif", "else", "endif"});
    if (is_statement({"elif"})) {
      const Token& elif = t_[i_ + 1];
      i_ += 2;
      n->alternate.push_back(if_statement(elif));
    } else if (is_statement({"else"})) {
      i_ += 2;
      expect(T::kCloseStatement, "'%}'");
      n->alternate = block({"endif"});
    }
    return n;
  }

  NodePtr for_statement(const Token& at) {
    auto n = node(Kind::kFor, at);
    n->a = expression_sequence(true);
    if (n->a->kind != Kind::kIdentifier && n->a->kind != Kind::kTuple) error("expected a loop variable");
    expect_ident("in");
    n->b = expression();
    expect(T::kCloseStatement, "'%}'");
    n->body = block({"else", "endfor"});
    if (is_statement({"else"})) {
      i_ += 2;
      expect(T::kCloseStatement, "'%}'");
      n->alternate = block({"endfor"});
    }
    expect(T::kOpenStatement, "'{%'");
    expect_ident("endfor");
    expect(T::kCloseStatement, "'%}'");
    return n;
  }

  NodePtr macro_statement(const Token& at) {
    auto n = node(Kind::kMacro, at);
    if (!is(T::kIdentifier)) error("expected a macro name");
    n->text = t_[i_++].value;
    n->items = args();
    for (const NodePtr& p : n->items) {
      if (p->kind != Kind::kIdentifier && p->kind != Kind::kKeywordArgument) error("expected a parameter name");
    }
    expect(T::kCloseStatement, "'%}'");
    n->body = block({"endmacro"});
    i_ += 2;
    expect(T::kCloseStatement, "'%}'");
    return n;
  }

  NodePtr expression_sequence(bool primary_only) {
    const Token& at = peek();
    NodeList list{primary_only ? primary() : expression()};
    bool tuple = is(T::kComma);
    while (is(T::kComma)) {
      ++i_;
      if (is(T::kCloseParen)) break;  // (1,) is a tuple of one, as in Python
      list.push_back(primary_only ? primary() : expression());
    }
    if (!tuple) return list[0];
    auto n = node(Kind::kTuple, at);
    n->items = std::move(list);
    return n;
  }

  NodePtr expression() { return if_expression(); }

  NodePtr if_expression() {
    Nest nest(*this);
    NodePtr a = or_expression();
    if (is_ident("if")) {
      const Token& at = t_[i_++];
      NodePtr test = or_expression();
      if (is_ident("else")) {
        ++i_;
        auto n = node(Kind::kTernary, at);
        n->a = test;
        n->b = a;
        n->c = if_expression();
        return n;
      }
      auto n = node(Kind::kSelect, at);
      n->a = a;
      n->b = test;
      return n;
    }
    return a;
  }

  NodePtr binary(const Token& op, NodePtr l, NodePtr r, std::string text = "") {
    auto n = node(Kind::kBinary, op);
    n->text = text.empty() ? op.value : text;
    n->a = std::move(l);
    n->b = std::move(r);
    return n;
  }

  NodePtr or_expression() {
    NodePtr l = and_expression();
    Nest chain(*this);
    while (is_ident("or")) {
      chain.more();
      const Token& op = t_[i_++];
      l = binary(op, l, and_expression());
    }
    return l;
  }
  NodePtr and_expression() {
    NodePtr l = not_expression();
    Nest chain(*this);
    while (is_ident("and")) {
      chain.more();
      const Token& op = t_[i_++];
      l = binary(op, l, not_expression());
    }
    return l;
  }
  NodePtr not_expression() {
    if (is_ident("not")) {
      Nest nest(*this);
      const Token& op = t_[i_++];
      auto n = node(Kind::kUnary, op);
      n->text = "not";
      n->a = not_expression();
      return n;
    }
    return comparison();
  }
  NodePtr comparison() {
    NodePtr l = additive();
    Nest chain(*this);
    while (true) {
      chain.more();
      if (is_ident("not") && is_ident("in", 1)) {
        const Token& op = t_[i_];
        i_ += 2;
        l = binary(op, l, additive(), "not in");
      } else if (is_ident("in") || is(T::kComparisonBinaryOperator)) {
        const Token& op = t_[i_++];
        l = binary(op, l, additive());
      } else {
        return l;
      }
    }
  }
  NodePtr additive() {
    NodePtr l = multiplicative();
    Nest chain(*this);
    while (is(T::kAdditiveBinaryOperator)) {
      chain.more();
      const Token& op = t_[i_++];
      l = binary(op, l, multiplicative());
    }
    return l;
  }
  NodePtr multiplicative() {
    NodePtr l = power();
    Nest chain(*this);
    while (is(T::kMultiplicativeBinaryOperator)) {
      chain.more();
      const Token& op = t_[i_++];
      l = binary(op, l, power());
    }
    return l;
  }
  NodePtr power() {
    NodePtr l = test_expression();
    Nest chain(*this);
    while (is(T::kExponentiationBinaryOperator)) {
      chain.more();
      const Token& op = t_[i_++];
      l = binary(op, l, test_expression());
    }
    return l;
  }
  NodePtr test_expression() {
    NodePtr operand = filter_expression();
    Nest chain(*this);
    while (is_ident("is")) {
      chain.more();
      const Token& at = t_[i_++];
      bool negate = is_ident("not");
      if (negate) ++i_;
      if (!is(T::kIdentifier)) error("expected a test name after 'is'");
      auto n = node(Kind::kTest, at);
      n->text = t_[i_++].value;
      n->flag = negate;
      n->a = operand;
      // One argument, in parentheses or (as jinja2 allows) bare: `is divisibleby 3`.
      if (is(T::kOpenParen)) {
        ++i_;
        n->b = expression();
        if (!is(T::kCloseParen)) error("expected ')' after the test's argument");
        ++i_;
      } else if (is(T::kNumericLiteral) || is(T::kStringLiteral) ||
                 (is(T::kIdentifier) && !is_ident("and") && !is_ident("or") && !is_ident("else") &&
                  !is_ident("if") && !is_ident("in") && !is_ident("is") && !is_ident("not"))) {
        n->b = primary();
      }
      operand = n;
    }
    return operand;
  }
  NodePtr filter_target() {
    if (!is(T::kIdentifier)) error("expected a filter name");
    const Token& name = t_[i_];
    NodePtr f = primary();
    if (is(T::kOpenParen)) {
      auto call = node(Kind::kCall, name);
      call->a = f;
      call->items = args();
      return call;
    }
    return f;
  }
  NodePtr filter_expression() {
    NodePtr operand = unary_sign();
    Nest chain(*this);
    while (is(T::kPipe)) {
      chain.more();
      const Token& at = t_[i_++];
      auto n = node(Kind::kFilter, at);
      n->a = operand;
      n->b = filter_target();
      operand = n;
    }
    return operand;
  }
  NodePtr unary_sign() {
    if ((is(T::kUnaryOperator) || is(T::kAdditiveBinaryOperator)) && (peek().value == "-" || peek().value == "+")) {
      Nest nest(*this);
      const Token& op = t_[i_++];
      auto n = node(Kind::kUnary, op);
      n->text = op.value;
      n->a = unary_sign();
      return n;
    }
    return call_member();
  }
  NodePtr call_member() {
    NodePtr m = member(primary());
    if (is(T::kOpenParen)) return call(m);
    return m;
  }
  NodePtr call(NodePtr callee) {
    Nest nest(*this);
    const Token& at = peek();
    auto n = node(Kind::kCall, at);
    n->a = std::move(callee);
    n->items = args();
    NodePtr e = member(n);
    if (is(T::kOpenParen)) return call(e);
    return e;
  }
  NodeList args() {
    expect(T::kOpenParen, "'('");
    NodeList out;
    bool keyword_seen = false;
    while (!is(T::kCloseParen)) {
      if (is(T::kMultiplicativeBinaryOperator) || is(T::kExponentiationBinaryOperator)) error("argument unpacking is not supported");
      NodePtr arg = expression();
      if (is(T::kEquals)) {
        const Token& at = t_[i_++];
        if (arg->kind != Kind::kIdentifier) error("expected an identifier before '='");
        auto kw = node(Kind::kKeywordArgument, at);
        kw->text = arg->text;
        kw->a = expression();
        arg = kw;
        keyword_seen = true;
      } else if (keyword_seen) {
        error("positional argument after keyword argument");
      }
      out.push_back(arg);
      if (is(T::kComma)) ++i_;
    }
    ++i_;
    return out;
  }
  NodePtr member(NodePtr object) {
    Nest chain(*this);
    while (is(T::kDot) || is(T::kOpenSquareBracket)) {
      chain.more();
      const Token& op = t_[i_++];
      auto n = node(Kind::kMember, op);
      n->a = object;
      if (op.type == T::kOpenSquareBracket) {
        n->flag = true;
        n->b = subscript(op);
        expect(T::kCloseSquareBracket, "']'");
      } else {
        n->b = primary();
        if (n->b->kind != Kind::kIdentifier && n->b->kind != Kind::kInteger) error("expected a name after '.'");
      }
      object = n;
    }
    return object;
  }
  NodePtr subscript(const Token& at) {
    NodeList parts;
    bool slice = false;
    while (!is(T::kCloseSquareBracket)) {
      if (is(T::kColon)) {
        parts.push_back(nullptr);
        ++i_;
        slice = true;
      } else {
        parts.push_back(expression());
        if (is(T::kColon)) {
          ++i_;
          slice = true;
        }
      }
      if (i_ >= t_.size()) error("missing ']'");
    }
    if (parts.empty()) error("expected an index or slice");
    if (!slice) return parts[0];
    if (parts.size() > 3) error("a slice takes at most 3 parts");
    auto n = node(Kind::kSlice, at);
    n->a = parts.size() > 0 ? parts[0] : nullptr;
    n->b = parts.size() > 1 ? parts[1] : nullptr;
    n->c = parts.size() > 2 ? parts[2] : nullptr;
    return n;
  }

  NodePtr primary() {
    const Token& tok = peek();
    ++i_;
    switch (tok.type) {
      case T::kNumericLiteral: {
        // std::stoll/stod would throw std::out_of_range on 2^64 or 1e999 with no position.
        if (tok.value.find_first_of(".eE") != std::string::npos) {
          auto n = node(Kind::kFloat, tok);
          n->number = std::strtod(tok.value.c_str(), nullptr);
          if (!std::isfinite(n->number)) --i_, error(fmt::format("number {} is out of range", tok.value));
          return n;
        }
        auto n = node(Kind::kInteger, tok);
        const char* digits = tok.value.data() + (tok.value[0] == '+' ? 1 : 0);  // the lexer folds a sign in
        const auto [end, ec] = std::from_chars(digits, tok.value.data() + tok.value.size(), n->integer);
        if (ec != std::errc() || end != tok.value.data() + tok.value.size())
          --i_, error(fmt::format("integer {} does not fit in 64 bits", tok.value));
        return n;
      }
      case T::kStringLiteral: {
        auto n = node(Kind::kString, tok);
        n->text = tok.value;
        while (is(T::kStringLiteral)) n->text += t_[i_++].value;  // adjacent literals concatenate
        return n;
      }
      case T::kIdentifier: {
        auto n = node(Kind::kIdentifier, tok);
        n->text = tok.value;
        return n;
      }
      case T::kOpenParen: {
        NodePtr e = expression_sequence(false);
        expect(T::kCloseParen, "')'");
        return e;
      }
      case T::kOpenSquareBracket: {
        auto n = node(Kind::kArray, tok);
        while (!is(T::kCloseSquareBracket)) {
          n->items.push_back(expression());
          if (is(T::kComma)) ++i_;
        }
        ++i_;
        return n;
      }
      case T::kOpenCurlyBracket: {
        auto n = node(Kind::kObject, tok);
        while (!is(T::kCloseCurlyBracket)) {
          n->items.push_back(expression());
          expect(T::kColon, "':'");
          n->items.push_back(expression());
          if (is(T::kComma)) ++i_;
        }
        ++i_;
        return n;
      }
      default: --i_; error(fmt::format("unexpected '{}'", tok.value));
    }
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
  const int max_nesting_;
  int depth_ = 0;
};

}  // namespace

Program parse(const std::vector<Token>& tokens, int max_nesting) {
  Parser p(tokens, max_nesting);
  return p.run();
}

}  // namespace dsv3::jinja
