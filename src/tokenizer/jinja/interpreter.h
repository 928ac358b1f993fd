// Evaluates a parsed chat template as transformers' jinja2 does (value.h says how values print).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/limits.h"
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
  explicit Interpreter(const RenderLimits& limits = {});
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

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
  // Every namespace() made, emptied when the render ends (see ~Interpreter).
  std::vector<std::weak_ptr<Object>> namespaces_;

  // Limit checks (limits.h); each throws Error naming the limit and `at`'s line and column.
  const RenderLimits& limits() const { return limits_; }
  void step(const Node& at);                        // a loop iteration or macro call
  void charge(const Node& at, size_t bytes);        // bytes of a string or array being built
  void check_string(const Node& at, size_t bytes);  // the size of one string
  void check_items(const Node& at, uint64_t n);     // the length of one array
  void check_time(const Node& at);                  // wall clock, cheap enough for inner loops
  [[noreturn]] void limit_exceeded(const Node& at, const char* name, double value, const char* hint);

  // Counts nested evaluations for as long as it lives.
  struct DepthGuard {
    DepthGuard(Interpreter& in, const Node& at);
    ~DepthGuard() { --in_.depth_; }
    Interpreter& in_;
  };

 private:
  Value evaluate_node(const Node& n, Scope& scope);
  Value evaluate_binary(const Node& n, Scope& scope);
  Value evaluate_member(const Node& n, Scope& scope);
  Value evaluate_call(const Node& n, Scope& scope);
  Value evaluate_slice(const Value& object, const Node& n, Scope& scope);
  std::string render_for(const Node& n, Scope& scope);
  void evaluate_set(const Node& n, Scope& scope);
  void define_macro(const Node& n, Scope& scope);

  RenderLimits limits_;
  int depth_ = 0;
  int64_t steps_ = 0;
  size_t total_bytes_ = 0;
  uint32_t ticks_ = 0;
  std::chrono::steady_clock::time_point deadline_;
};

// Filters, tests and the methods of strings and objects (filters.cpp).
Value apply_filter(const Value& operand, const Node& filter, Interpreter& in, Scope& scope);
bool apply_test(const std::string& name, const Value& operand, const Value* arg, const Node& at);
// `value.name` for strings, arrays and objects; undefined when there is no such member.
Value builtin_member(const Value& object, const std::string& name);

// Throws Error "chat template line L, column C: what".
[[noreturn]] void runtime_error(const Node& at, const std::string& what);

}  // namespace dsv3::jinja
