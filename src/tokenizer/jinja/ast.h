// Syntax tree of a chat template (the node kinds of @huggingface/jinja that chat templates use).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/jinja/lexer.h"

namespace dsv3::jinja {

struct Node;
using NodePtr = std::shared_ptr<const Node>;
using NodeList = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    // statements
    kText, kIf, kFor, kSet, kMacro, kBreak, kContinue, kComment, kFilterStatement,
    // expressions
    kInteger, kFloat, kString, kArray, kTuple, kObject, kIdentifier, kMember, kCall, kSlice,
    kUnary, kBinary, kFilter, kTest, kSelect, kTernary, kKeywordArgument,
  };
  Kind kind;
  int line = 0, column = 0;
  std::string text;     // kText/kString value, identifier name, operator, test name, kwarg key
  int64_t integer = 0;  // kInteger
  double number = 0;    // kFloat
  bool flag = false;    // kMember: computed ([...]); kTest: negated
  // Children. kIf: a=test, body, alternate. kFor: a=loop var, b=iterable, body, alternate (else).
  // kSet: a=target, b=value (or body). kMacro: text=name, items=params, body. kMember: a=object,
  // b=property. kCall: a=callee, items=args. kSlice: a,b,c (may be null). kUnary: a. kBinary: a,b.
  // kFilter: a=operand, b=filter (identifier or call). kTest: a, b=argument (may be null). kSelect: a=value, b=test.
  // kTernary: a=cond, b=then, c=else. kKeywordArgument: a=value. kArray/kTuple: items.
  // kObject: items as key, value pairs. kFilterStatement: b=filter, body.
  NodePtr a, b, c;
  NodeList items, body, alternate;
};

struct Program {
  NodeList body;
};

// Parses tokens into a program; an unsupported construct, or nesting beyond `max_nesting`
// (RenderLimits::max_nesting), throws Error naming line and column.
Program parse(const std::vector<Token>& tokens, int max_nesting = 100);

}  // namespace dsv3::jinja
