// Evaluates a parsed chat template with @huggingface/jinja's semantics.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

// A variable scope; lookups walk to the parent. `for` opens one scope for all its iterations and
// macros open one per call (dynamic scoping, as @huggingface/jinja does).
struct Scope {
  explicit Scope(Scope* parent = nullptr) : parent(parent) {}
  Value lookup(const std::string& name) const;
  void set(const std::string& name, Value v);
  Scope* parent;
  std::vector<std::pair<std::string, Value>> vars;
};

struct Interpreter {
  // Renders `program` with `globals` (already holding the template variables).
  std::string render(const Program& program, Scope& globals);

  std::string render_block(const NodeList& body, Scope& scope);
  Value evaluate(const Node& n, Scope& scope);

  // Adds namespace(), raise_exception(), range(), strftime_now() and the constants.
  static void add_builtins(Scope& globals);

  // Positional arguments, then (when any) one keyword-arguments object last.
  std::vector<Value> evaluate_args(const NodeList& args, Scope& scope);

  // The scope of the call in progress: a macro body's scope hangs below it (dynamic scoping).
  Scope* call_scope_ = nullptr;

 private:
  Value evaluate_binary(const Node& n, Scope& scope);
  Value evaluate_member(const Node& n, Scope& scope);
  Value evaluate_call(const Node& n, Scope& scope);
  Value evaluate_slice(const Value& object, const Node& n, Scope& scope);
  std::string render_for(const Node& n, Scope& scope);
  void evaluate_set(const Node& n, Scope& scope);
  void define_macro(const Node& n, Scope& scope);
};

// Filters, tests and the methods of strings and objects (filters.cpp).
Value apply_filter(const Value& operand, const Node& filter, Interpreter& in, Scope& scope);
bool apply_test(const std::string& name, const Value& operand, const Value* arg, const Node& at);
// `value.name` for strings, arrays and objects; undefined when there is no such member.
Value builtin_member(const Value& object, const std::string& name);

// Throws Error "chat template line L, column C: what".
[[noreturn]] void runtime_error(const Node& at, const std::string& what);

}  // namespace dsv3::jinja
