#include "tokenizer/jinja/interpreter.h"

#include <cmath>
#include <ctime>

#include "base/error.h"
#include "tokenizer/utf8.h"

namespace dsv3::jinja {
namespace {

using Kind = Node::Kind;
using VT = Value::Type;

struct BreakSignal {};
struct ContinueSignal {};

// Python's type name, as jinja2's TypeErrors name the operand ("int", "NoneType", ...).
const char* py_type_name(const Value& v) {
  switch (v.type) {
    case VT::kUndefined: return "Undefined";
    case VT::kNull: return "NoneType";
    case VT::kBool: return "bool";
    case VT::kInt: return "int";
    case VT::kFloat: return "float";
    case VT::kString: return "str";
    case VT::kArray: return v.is_tuple ? "tuple" : "list";
    case VT::kObject: return "dict";
    case VT::kNamespace: return "Namespace";
    case VT::kFunction: return "function";
  }
  return "object";
}

// JavaScript === on wrapped primitives (containers by identity).
bool strict_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.type != b.type) return false;
  return loose_equal(a, b);
}

bool numeric(const Value& v) { return v.is_number(); }

// Integer floor division and modulo with Python's rounding; the caller rules out b == 0 and
// INT64_MIN / -1.
int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// a ** b for b >= 0 by repeated squaring; false on overflow.
bool int_pow(int64_t a, int64_t b, int64_t& out) {
  int64_t result = 1, base = a;
  while (b > 0) {
    if (b & 1 && __builtin_mul_overflow(result, base, &result)) return false;
    b >>= 1;
    if (b > 0 && __builtin_mul_overflow(base, base, &base)) return false;
  }
  out = result;
  return true;
}

// Runs `fn`; an Error without a template position gets `at`'s.
template <typename Fn>
auto positioned(const Node& at, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind("chat template line", 0) == 0) throw;
    runtime_error(at, what);
  }
}

}  // namespace

void runtime_error(const Node& at, const std::string& what) { fail("{}: {}", position(at.line, at.column), what); }

Interpreter::Interpreter(const RenderLimits& limits) : limits_(limits) {}

Interpreter::~Interpreter() {
  // A namespace can hold itself ({% set ns.self = ns %}): a reference cycle that would leak.
  // Values never outlive the render, so emptying every namespace still alive breaks all cycles.
  for (const auto& weak : namespaces_)
    if (auto ns = weak.lock()) {
      Object entries;
      entries.swap(*ns);
    }
}

Interpreter::DepthGuard::DepthGuard(Interpreter& in, const Node& at) : in_(in) {
  if (++in.depth_ > in.limits_.max_depth) {
    --in.depth_;
    in.limit_exceeded(at, "max_depth", in.limits_.max_depth, "nested evaluations; a macro that calls itself?");
  }
  if ((++in.ticks_ & 1023) == 0) in.check_time(at);
}

void Interpreter::limit_exceeded(const Node& at, const char* name, double value, const char* hint) {
  runtime_error(at, fmt::format("exceeds the template limit {} = {:.15g} ({})", name, value, hint));
}

void Interpreter::step(const Node& at) {
  if (++steps_ > limits_.max_steps) limit_exceeded(at, "max_steps", double(limits_.max_steps), "loop iterations and macro calls");
  if ((steps_ & 255) == 0) check_time(at);
}

void Interpreter::charge(const Node& at, size_t bytes) {
  total_bytes_ += bytes;
  if (total_bytes_ > limits_.max_total_bytes)
    limit_exceeded(at, "max_total_bytes", double(limits_.max_total_bytes), "bytes of all strings and arrays built");
}

void Interpreter::check_string(const Node& at, size_t bytes) {
  if (bytes > limits_.max_string_bytes)
    limit_exceeded(at, "max_string_bytes", double(limits_.max_string_bytes), "bytes of one string or of the output");
}

void Interpreter::check_items(const Node& at, uint64_t n) {
  if (n > uint64_t(limits_.max_items))
    limit_exceeded(at, "max_items", double(limits_.max_items), "elements of one array");
}

void Interpreter::check_time(const Node& at) {
  if (std::chrono::steady_clock::now() > deadline_)
    limit_exceeded(at, "max_seconds", limits_.max_seconds, "wall-clock time of one render");
}

Value Scope::lookup(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent) {
    for (const auto& [k, v] : s->vars) {
      if (k == name) return v;
    }
  }
  return Value::undefined();
}

void Scope::set(const std::string& name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

void Interpreter::add_builtins(Scope& g) {
  g.set("false", Value::boolean(false));
  g.set("true", Value::boolean(true));
  g.set("none", Value::null());
  g.set("False", Value::boolean(false));
  g.set("True", Value::boolean(true));
  g.set("None", Value::null());
  g.set("namespace", Value::function([](std::vector<Value>& args, Interpreter& in) {
    Value ns = Value::object_of({}, VT::kNamespace);
    in.namespaces_.push_back(ns.object);
    for (const Value& a : args) {
      if (!a.is_mapping_like() || a.type == VT::kNamespace) fail("namespace() takes keyword arguments or one mapping");
      for (const auto& [k, v] : *a.object) ns.set(k, v);
    }
    return ns;
  }));
  g.set("raise_exception", Value::function([](std::vector<Value>& args, Interpreter&) -> Value {
    fail("raise_exception: {}", args.empty() ? std::string() : to_output(args[0]));
  }));
  g.set("range", Value::function([](std::vector<Value>& args, Interpreter& in) {
    std::vector<int64_t> n;
    for (const Value& a : args) {
      if (a.type != VT::kInt) fail("range() takes integers");
      n.push_back(a.i);
    }
    if (n.empty() || n.size() > 3) fail("range() takes 1 to 3 arguments");
    int64_t start = n.size() > 1 ? n[0] : 0, stop = n.size() > 1 ? n[1] : n[0], step = n.size() > 2 ? n[2] : 1;
    if (step == 0) fail("range() step must not be zero");
    // The count in 128 bits: stop - start overflows int64 for range(-2**63, 2**63 - 1).
    const __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
    const __int128 count = span <= 0 ? 0 : (span + (step > 0 ? __int128(step) : -__int128(step)) - 1) /
                                               (step > 0 ? __int128(step) : -__int128(step));
    if (count > in.limits().max_items)
      fail("range() of {} elements exceeds the template limit max_items = {}", int64_t(std::min<__int128>(count, INT64_MAX)),
           in.limits().max_items);
    Array out;
    out.reserve(size_t(count));
    for (int64_t k = 0; k < int64_t(count); ++k) out.push_back(Value::integer(int64_t(start + __int128(k) * step)));
    return Value::array_of(std::move(out));
  }));
  g.set("strftime_now", Value::function([](std::vector<Value>& args, Interpreter&) {
    if (args.empty() || !args[0].is_string()) fail("strftime_now() takes a format string");
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    std::string out;
    const std::string& f = args[0].s;
    for (size_t k = 0; k < f.size(); ++k) {
      if (f[k] != '%' || k + 1 >= f.size() || std::string_view("YmdbBHM%").find(f[k + 1]) == std::string_view::npos) {
        out += f[k];
        continue;
      }
      char buf[64];
      std::string spec = std::string("%") + f[++k];
      size_t len = std::strftime(buf, sizeof buf, spec.c_str(), &tm);
      out.append(buf, len);
    }
    return Value::string(out);
  }));
}

std::string Interpreter::render(const Program& program, Scope& globals) {
  deadline_ = std::chrono::steady_clock::now() +
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(limits_.max_seconds));
  return render_block(program.body, globals);
}

std::string Interpreter::render_block(const NodeList& body, Scope& scope) {
  std::string out;
  for (const NodePtr& n : body) {
    DepthGuard guard(*this, *n);
    const size_t before = out.size();
    switch (n->kind) {
      case Kind::kText: out += n->text; break;
      case Kind::kComment: break;
      case Kind::kIf: {
        Value test = evaluate(*n->a, scope);
        out += render_block(test.truthy() ? n->body : n->alternate, scope);
        break;
      }
      case Kind::kFor: out += render_for(*n, scope); break;
      case Kind::kSet: evaluate_set(*n, scope); break;
      case Kind::kMacro: define_macro(*n, scope); break;
      case Kind::kBreak: throw BreakSignal{};
      case Kind::kContinue: throw ContinueSignal{};
      case Kind::kFilterStatement: {
        Value body_text = Value::string(render_block(n->body, scope));
        Value v = apply_filter(body_text, *n->b, *this, scope);
        out += positioned(*n, [&] { return to_output(v, limits_.max_string_bytes); });
        break;
      }
      default: {
        Value v = evaluate(*n, scope);
        if (!v.is_undefined()) out += positioned(*n, [&] { return to_output(v, limits_.max_string_bytes); });
      }
    }
    check_string(*n, out.size());
    charge(*n, out.size() - before);
  }
  return out;
}

std::string Interpreter::render_for(const Node& n, Scope& parent) {
  Scope scope(&parent);
  const Node* iterable_node = n.b.get();
  const Node* test = nullptr;
  if (iterable_node->kind == Kind::kSelect) {
    test = iterable_node->b.get();
    iterable_node = iterable_node->a.get();
  }
  Value iterable = evaluate(*iterable_node, scope);
  // Arrays are never changed in place, so the loop reads the iterable's own storage.
  std::shared_ptr<const Array> items_all;
  if (iterable.is_array()) {
    items_all = iterable.array;
  } else if (iterable.is_object()) {
    auto keys = std::make_shared<Array>();
    for (const auto& [k, v] : *iterable.object) keys->push_back(Value::string(k));
    charge(n, keys->size() * sizeof(Value));
    items_all = std::move(keys);
  } else {
    runtime_error(n, fmt::format("expected an array or object to loop over, got {}", iterable.type_name()));
  }
  auto bind = [&](Scope& s, const Value& current) {
    if (n.a->kind == Kind::kIdentifier) {
      s.set(n.a->text, current);
      return;
    }
    if (!current.is_array()) runtime_error(n, fmt::format("cannot unpack {}", current.type_name()));
    if (current.array->size() != n.a->items.size()) {
      runtime_error(n, fmt::format("too {} items to unpack", n.a->items.size() > current.array->size() ? "few" : "many"));
    }
    for (size_t k = 0; k < n.a->items.size(); ++k) {
      if (n.a->items[k]->kind != Kind::kIdentifier) runtime_error(n, "cannot unpack into a non-identifier");
      s.set(n.a->items[k]->text, (*current.array)[k]);
    }
  };
  std::shared_ptr<const Array> selected = items_all;
  if (test) {
    auto kept = std::make_shared<Array>();
    for (const Value& current : *items_all) {
      step(n);
      Scope loop_scope(&scope);
      bind(loop_scope, current);
      if (evaluate(*test, loop_scope).truthy()) kept->push_back(current);
    }
    charge(n, kept->size() * sizeof(Value));
    selected = std::move(kept);
  }
  const Array& items = *selected;
  std::string out;
  bool no_iteration = true;
  int64_t len = static_cast<int64_t>(items.size());
  for (int64_t k = 0; k < len; ++k) {
    step(n);
    Object loop{{"index", Value::integer(k + 1)},
                {"index0", Value::integer(k)},
                {"revindex", Value::integer(len - k)},
                {"revindex0", Value::integer(len - k - 1)},
                {"first", Value::boolean(k == 0)},
                {"last", Value::boolean(k == len - 1)},
                {"length", Value::integer(len)},
                {"previtem", k > 0 ? items[k - 1] : Value::undefined()},
                {"nextitem", k < len - 1 ? items[k + 1] : Value::undefined()},
                // loop.cycle('odd', 'even'): the k-th of its arguments, round robin (jinja2).
                {"cycle", Value::function([k](std::vector<Value>& args, Interpreter&) {
                   std::vector<Value> values;
                   for (const Value& v : args)
                     if (!v.is_kwargs) values.push_back(v);
                   if (values.empty()) fail("loop.cycle() needs at least one argument");
                   return values[size_t(k) % values.size()];
                 })}};
    scope.set("loop", Value::object_of(std::move(loop)));
    bind(scope, items[k]);
    try {
      out += render_block(n.body, scope);
      check_string(n, out.size());
    } catch (const ContinueSignal&) {
      continue;
    } catch (const BreakSignal&) {
      break;
    }
    no_iteration = false;
  }
  if (no_iteration) out += render_block(n.alternate, scope);
  return out;
}

void Interpreter::evaluate_set(const Node& n, Scope& scope) {
  Value rhs = n.b ? evaluate(*n.b, scope) : Value::string(render_block(n.body, scope));
  const Node& target = *n.a;
  if (target.kind == Kind::kIdentifier) {
    scope.set(target.text, std::move(rhs));
  } else if (target.kind == Kind::kTuple) {
    if (!rhs.is_array()) runtime_error(n, fmt::format("cannot unpack {} in set", rhs.type_name()));
    if (rhs.array->size() != target.items.size()) runtime_error(n, "wrong number of items to unpack in set");
    for (size_t k = 0; k < target.items.size(); ++k) {
      if (target.items[k]->kind != Kind::kIdentifier) runtime_error(n, "cannot unpack into a non-identifier");
      scope.set(target.items[k]->text, (*rhs.array)[k]);
    }
  } else if (target.kind == Kind::kMember) {
    Value object = evaluate(*target.a, scope);
    if (object.type != VT::kNamespace) runtime_error(n, "cannot assign an attribute of something that is not a namespace");
    if (target.b->kind != Kind::kIdentifier) runtime_error(n, "cannot assign to a computed member");
    object.set(target.b->text, std::move(rhs));
  } else {
    runtime_error(n, "invalid target of set");
  }
}

void Interpreter::define_macro(const Node& n, Scope& scope) {
  const Node* macro = &n;
  scope.set(n.text, Value::function([macro](std::vector<Value>& args, Interpreter& in) -> Value {
    in.step(*macro);
    // Macro bodies see the caller's scope (dynamic scoping, as @huggingface/jinja does).
    Scope* caller = in.call_scope_;
    Scope local(caller);
    std::vector<Value> positional = args;
    Value kwargs = Value::object_of({});
    if (!positional.empty() && positional.back().is_kwargs) {
      kwargs = positional.back();
      positional.pop_back();
    }
    if (positional.size() > macro->items.size()) {
      runtime_error(*macro, fmt::format("macro '{}' takes not more than {} argument(s)", macro->text, macro->items.size()));
    }
    std::vector<std::pair<std::string, const Node*>> defaults;
    for (size_t k = 0; k < macro->items.size(); ++k) {
      const Node& p = *macro->items[k];
      const std::string& name = p.text;  // identifier or keyword-argument name
      Value v = Value::undefined();
      if (k < positional.size()) {
        v = positional[k];
      } else if (const Value* kw = kwargs.get(name)) {
        v = *kw;
      } else if (p.kind == Kind::kKeywordArgument) {
        defaults.emplace_back(name, p.a.get());
      }
      local.set(name, v);
    }
    for (const auto& [name, expr] : defaults) local.set(name, in.evaluate(*expr, local));
    return Value::string(in.render_block(macro->body, local));
  }));
}

std::vector<Value> Interpreter::evaluate_args(const NodeList& args, Scope& scope) {
  std::vector<Value> out;
  Object kwargs;
  for (const NodePtr& a : args) {
    if (a->kind != Kind::kKeywordArgument) out.push_back(evaluate(*a, scope));
  }
  for (const NodePtr& a : args) {
    if (a->kind == Kind::kKeywordArgument) kwargs.emplace_back(a->text, evaluate(*a->a, scope));
  }
  if (!kwargs.empty()) {
    Value kw = Value::object_of(std::move(kwargs));
    kw.is_kwargs = true;
    out.push_back(std::move(kw));
  }
  return out;
}

Value Interpreter::evaluate_call(const Node& n, Scope& scope) {
  std::vector<Value> args = evaluate_args(n.items, scope);
  Value fn = evaluate(*n.a, scope);
  if (fn.type != VT::kFunction) runtime_error(n, fmt::format("cannot call {}, which is not a function", fn.type_name()));
  Scope* saved = call_scope_;
  call_scope_ = &scope;
  try {
    Value v = (*fn.fn)(args, *this);
    call_scope_ = saved;
    return v;
  } catch (const Error& e) {
    call_scope_ = saved;
    std::string what = e.what();
    if (what.rfind("chat template line", 0) == 0) throw;
    runtime_error(n, what);
  } catch (...) {
    call_scope_ = saved;
    throw;
  }
}

Value Interpreter::evaluate_slice(const Value& object, const Node& n, Scope& scope) {
  auto part = [&](const NodePtr& p) -> std::optional<int64_t> {
    if (!p) return std::nullopt;
    Value v = evaluate(*p, scope);
    if (v.is_undefined()) return std::nullopt;
    if (v.type != VT::kInt) runtime_error(n, "slice indices must be integers");
    return v.i;
  };
  std::optional<int64_t> start = part(n.a), stop = part(n.b), step_opt = part(n.c);
  int64_t step = step_opt.value_or(1);
  if (step == 0) runtime_error(n, "slice step cannot be zero");
  std::vector<std::string> chars;
  const Array* arr = nullptr;
  if (object.is_array()) {
    arr = object.array.get();
  } else if (object.is_string()) {
    size_t i = 0;
    while (i < object.s.size()) {
      size_t at = i;
      next_code_point(object.s, i);
      chars.push_back(object.s.substr(at, i - at));
    }
  } else {
    runtime_error(n, "only arrays and strings can be sliced");
  }
  int64_t len = arr ? static_cast<int64_t>(arr->size()) : static_cast<int64_t>(chars.size());
  // A step longer than the sequence takes one element, as any longer one does; clamping keeps
  // `k += step` from overflowing.
  step = std::clamp(step, -(len + 1), len + 1);
  int64_t b, e;
  if (step > 0) {
    b = start ? (*start < 0 ? std::max(len + *start, int64_t{0}) : std::min(*start, len)) : 0;
    e = stop ? (*stop < 0 ? std::max(len + *stop, int64_t{0}) : std::min(*stop, len)) : len;
  } else {
    b = start ? (*start < 0 ? std::max(len + *start, int64_t{-1}) : std::min(*start, len - 1)) : len - 1;
    e = stop ? (*stop < -1 ? std::max(len + *stop, int64_t{-1}) : std::min(*stop, len - 1)) : -1;
  }
  Array out_arr;
  std::string out_str;
  for (int64_t k = b; step > 0 ? k < e : k > e; k += step) {
    if (arr) {
      out_arr.push_back((*arr)[k]);
    } else {
      out_str += chars[k];
    }
  }
  return arr ? Value::array_of(std::move(out_arr)) : Value::string(std::move(out_str));
}

Value Interpreter::evaluate_member(const Node& n, Scope& scope) {
  Value object = evaluate(*n.a, scope);
  Value property;
  if (n.flag) {
    if (n.b->kind == Kind::kSlice) return evaluate_slice(object, *n.b, scope);
    property = evaluate(*n.b, scope);
  } else if (n.b->kind == Kind::kInteger) {
    property = Value::integer(n.b->integer);
  } else {
    property = Value::string(n.b->text);
  }
  if (object.is_mapping_like()) {
    if (!property.is_string()) runtime_error(n, fmt::format("cannot index an object with {}", property.type_name()));
    if (const Value* v = object.get(property.s)) return *v;
    return object.is_object() ? builtin_member(object, property.s) : Value::undefined();
  }
  if (object.is_array() || object.is_string()) {
    if (property.type == VT::kInt) {
      if (object.is_array()) {
        int64_t len = static_cast<int64_t>(object.array->size());
        int64_t k = property.i < 0 ? len + property.i : property.i;
        return k >= 0 && k < len ? (*object.array)[k] : Value::undefined();
      }
      // JavaScript's String.prototype.at indexes UTF-16 code units: half of a surrogate pair
      // comes out alone (written as WTF-8, as a JavaScript string would hold it).
      std::vector<char32_t> units;
      size_t i = 0;
      while (i < object.s.size()) {
        char32_t c = next_code_point(object.s, i);
        if (c >= 0x10000) {
          units.push_back(0xD800 + ((c - 0x10000) >> 10));
          units.push_back(0xDC00 + ((c - 0x10000) & 0x3FF));
        } else {
          units.push_back(c);
        }
      }
      int64_t len = static_cast<int64_t>(units.size());
      int64_t k = property.i < 0 ? len + property.i : property.i;
      if (k < 0 || k >= len) return Value::undefined();
      std::string out;
      append_utf8(out, units[k]);
      return Value::string(out);
    }
    if (property.is_string()) return builtin_member(object, property.s);
    runtime_error(n, fmt::format("cannot index {} with {}", object.type_name(), property.type_name()));
  }
  if (!property.is_string()) runtime_error(n, fmt::format("cannot index {} with {}", object.type_name(), property.type_name()));
  return builtin_member(object, property.s);
}

Value Interpreter::evaluate_binary(const Node& n, Scope& scope) {
  const std::string& op = n.text;
  Value l = evaluate(*n.a, scope);
  if (op == "and") return l.truthy() ? evaluate(*n.b, scope) : l;
  if (op == "or") return l.truthy() ? l : evaluate(*n.b, scope);
  Value r = evaluate(*n.b, scope);
  if (op == "==") return Value::boolean(loose_equal(l, r));
  if (op == "!=") return Value::boolean(!loose_equal(l, r));
  if (op == "~") {
    // jinja2: str(a) + str(b), whatever the types (undefined is "", none "None").
    // Strings are used in place: every copy of a string near the size limit costs page faults.
    std::string a_text, b_text;
    if (!l.is_string()) a_text = positioned(n, [&] { return to_output(l, limits_.max_string_bytes); });
    if (!r.is_string()) b_text = positioned(n, [&] { return to_output(r, limits_.max_string_bytes); });
    const std::string& a = l.is_string() ? l.s : a_text;
    const std::string& b = r.is_string() ? r.s : b_text;
    check_string(n, a.size() + b.size());
    charge(n, a.size() + b.size());
    std::string out;
    out.reserve(a.size() + b.size());
    out += a;
    out += b;
    return Value::string(std::move(out));
  }
  if (l.is_undefined() || r.is_undefined()) {
    if (r.is_undefined() && (op == "in" || op == "not in")) return Value::boolean(op == "not in");
    runtime_error(n, fmt::format("cannot apply '{}' to an undefined value", op));
  }
  // Python's + joins two strings only: str + int, + None, + list or + dict raise TypeError in
  // transformers' jinja2 (JavaScript would print "1", "null" or "[object Map]").
  if (op == "+" && l.is_string() != r.is_string()) {
    if (l.is_string())
      runtime_error(n, fmt::format("can only concatenate str (not \"{}\") to str", py_type_name(r)));
    runtime_error(n, fmt::format("unsupported operand type(s) for +: '{}' and 'str'", py_type_name(l)));
  }
  if (l.is_null() || r.is_null()) runtime_error(n, fmt::format("cannot apply '{}' to none", op));
  if (op == "+" && l.is_string() && r.is_string()) {
    check_string(n, l.s.size() + r.s.size());
    charge(n, l.s.size() + r.s.size());
    std::string out;
    out.reserve(l.s.size() + r.s.size());
    out += l.s;
    out += r.s;
    return Value::string(std::move(out));
  }
  bool l_numlike = numeric(l) || l.type == VT::kBool, r_numlike = numeric(r) || r.type == VT::kBool;
  if (op == "**" && l_numlike && r_numlike) {
    double a = l.number(), b = r.number();
    if (l.type != VT::kFloat && r.type != VT::kFloat && b >= 0) {
      int64_t res = 0;
      if (!int_pow(l.type == VT::kInt ? l.i : l.b, r.type == VT::kInt ? r.i : r.b, res))
        runtime_error(n, "integer overflow in '**' (the result does not fit in 64 bits)");
      return Value::integer(res);
    }
    if (a == 0 && b < 0) runtime_error(n, "0.0 cannot be raised to a negative power");
    double res = std::pow(a, b);
    if (!std::isfinite(res)) runtime_error(n, "exponentiation result is not a finite real number");
    bool is_float = l.type == VT::kFloat || r.type == VT::kFloat || b < 0;
    return is_float ? Value::floating(res) : Value::integer(static_cast<int64_t>(res));
  }
  if (numeric(l) && numeric(r)) {
    bool is_float = l.type == VT::kFloat || r.type == VT::kFloat;
    double a = l.number(), b = r.number();
    if (op == "+" || op == "-" || op == "*") {
      if (!is_float) {
        int64_t res = 0;
        const bool overflow = op == "+"   ? __builtin_add_overflow(l.i, r.i, &res)
                              : op == "-" ? __builtin_sub_overflow(l.i, r.i, &res)
                                          : __builtin_mul_overflow(l.i, r.i, &res);
        if (overflow) runtime_error(n, fmt::format("integer overflow in '{}' (the result does not fit in 64 bits)", op));
        return Value::integer(res);
      }
      return Value::floating(op == "+" ? a + b : op == "-" ? a - b : a * b);
    }
    // Division by zero is an error, as in Python's Jinja (JavaScript would give Infinity or NaN).
    if ((op == "/" || op == "//" || op == "%") && b == 0) runtime_error(n, fmt::format("division by zero in '{}'", op));
    if (op == "/") return Value::floating(a / b);
    if (op == "//") {
      if (is_float) return Value::floating(std::floor(a / b));
      if (l.i == INT64_MIN && r.i == -1) runtime_error(n, "integer overflow in '//' (the result does not fit in 64 bits)");
      return Value::integer(floor_div(l.i, r.i));
    }
    if (op == "%") {
      if (!is_float) {
        // INT64_MIN % -1 traps (SIGFPE) on x86; the true result is 0 but the quotient overflows.
        if (l.i == INT64_MIN && r.i == -1) runtime_error(n, "integer overflow in '%' (INT64_MIN % -1)");
        const int64_t m = l.i % r.i;  // Python's %: the sign follows the divisor
        return Value::integer(m != 0 && ((m < 0) != (r.i < 0)) ? m + r.i : m);
      }
      double m = std::fmod(a, b);
      if (m != 0 && ((m < 0) != (b < 0))) m += b;
      return Value::floating(m);
    }
    if (op == "<") return Value::boolean(a < b);
    if (op == ">") return Value::boolean(a > b);
    if (op == "<=") return Value::boolean(a <= b);
    if (op == ">=") return Value::boolean(a >= b);
  } else if (l.is_array() && r.is_array()) {
    if (op == "+") {
      check_items(n, uint64_t(l.array->size()) + r.array->size());
      charge(n, (l.array->size() + r.array->size()) * sizeof(Value));
      Array out = *l.array;
      out.insert(out.end(), r.array->begin(), r.array->end());
      return Value::array_of(std::move(out));
    }
  } else if (r.is_array()) {
    if (op == "in" || op == "not in") {
      bool member = false;
      for (const Value& x : *r.array) member = member || strict_equal(x, l);
      return Value::boolean(op == "in" ? member : !member);
    }
  }
  // Python: a string times an integer repeats it; strings compare by code point (UTF-8 byte
  // order is code point order).
  if (op == "*" && ((l.is_string() && r.type == VT::kInt) || (l.type == VT::kInt && r.is_string()))) {
    const std::string& text = l.is_string() ? l.s : r.s;
    const int64_t times = l.is_string() ? r.i : l.i;
    if (times > 0) {
      const uint64_t total = uint64_t(text.size()) * uint64_t(times);
      if (text.size() != 0 && total / text.size() != uint64_t(times)) runtime_error(n, "string repetition too large");
      check_string(n, size_t(total));
      charge(n, size_t(total));
    }
    std::string out;
    for (int64_t k = 0; k < times; ++k) out += text;
    return Value::string(out);
  }
  if (l.is_string() && r.is_string()) {
    if (op == "<") return Value::boolean(l.s < r.s);
    if (op == ">") return Value::boolean(l.s > r.s);
    if (op == "<=") return Value::boolean(l.s <= r.s);
    if (op == ">=") return Value::boolean(l.s >= r.s);
  }
  if (l.is_string() && r.is_string() && (op == "in" || op == "not in")) {
    bool found = r.s.find(l.s) != std::string::npos;
    return Value::boolean(op == "in" ? found : !found);
  }
  if (l.is_string() && r.is_object() && (op == "in" || op == "not in")) {
    bool found = r.get(l.s) != nullptr;
    return Value::boolean(op == "in" ? found : !found);
  }
  runtime_error(n, fmt::format("unsupported operator '{}' between {} and {}", op, l.type_name(), r.type_name()));
}

Value Interpreter::evaluate(const Node& n, Scope& scope) {
  DepthGuard guard(*this, n);
  Value v = evaluate_node(n, scope);
  if (v.is_string()) check_string(n, v.s.size());
  return v;
}

Value Interpreter::evaluate_node(const Node& n, Scope& scope) {
  switch (n.kind) {
    case Kind::kText:
    case Kind::kString: return Value::string(n.text);
    case Kind::kInteger: return Value::integer(n.integer);
    case Kind::kFloat: return Value::floating(n.number);
    case Kind::kArray:
    case Kind::kTuple: {
      charge(n, n.items.size() * sizeof(Value));
      Array out;
      for (const NodePtr& x : n.items) out.push_back(evaluate(*x, scope));
      Value v = Value::array_of(std::move(out));
      v.is_tuple = n.kind == Kind::kTuple;
      return v;
    }
    case Kind::kObject: {
      Value v = Value::object_of({});
      for (size_t k = 0; k + 1 < n.items.size(); k += 2) {
        Value key = evaluate(*n.items[k], scope);
        if (!key.is_string()) runtime_error(*n.items[k], fmt::format("object keys must be strings, got {}", key.type_name()));
        v.set(key.s, evaluate(*n.items[k + 1], scope));
      }
      return v;
    }
    case Kind::kIdentifier: return scope.lookup(n.text);
    case Kind::kMember: return evaluate_member(n, scope);
    case Kind::kCall: return evaluate_call(n, scope);
    case Kind::kUnary: {
      Value a = evaluate(*n.a, scope);
      if (n.text == "not") return Value::boolean(!a.truthy());
      int sign = n.text == "-" ? -1 : 1;
      if (a.type == VT::kFloat) return Value::floating(sign * a.f);
      if (a.type == VT::kInt && sign < 0 && a.i == INT64_MIN) runtime_error(n, "integer overflow in unary '-'");
      if (a.type == VT::kInt) return Value::integer(sign * a.i);
      if (a.type == VT::kBool) return Value::integer(sign * (a.b ? 1 : 0));
      runtime_error(n, fmt::format("unary '{}' needs a number, got {}", n.text, a.type_name()));
    }
    case Kind::kBinary: return evaluate_binary(n, scope);
    case Kind::kFilter: return apply_filter(evaluate(*n.a, scope), *n.b, *this, scope);
    case Kind::kTest: {
      const Value arg = n.b ? evaluate(*n.b, scope) : Value::undefined();
      bool r = apply_test(n.text, evaluate(*n.a, scope), n.b ? &arg : nullptr, n);
      return Value::boolean(n.flag ? !r : r);
    }
    case Kind::kSelect: {
      if (!evaluate(*n.b, scope).truthy()) return Value::undefined();
      return evaluate(*n.a, scope);
    }
    case Kind::kTernary: return evaluate(evaluate(*n.a, scope).truthy() ? *n.b : *n.c, scope);
    case Kind::kComment: return Value::null();
    case Kind::kIf:
    case Kind::kFor:
    case Kind::kSet:
    case Kind::kMacro:
    case Kind::kBreak:
    case Kind::kContinue:
    case Kind::kFilterStatement: {
      NodeList one;
      one.push_back(std::make_shared<Node>(n));
      return Value::string(render_block(one, scope));
    }
    case Kind::kSlice:
    case Kind::kKeywordArgument: runtime_error(n, "unexpected slice or keyword argument");
  }
  runtime_error(n, "unknown node");
}

}  // namespace dsv3::jinja
