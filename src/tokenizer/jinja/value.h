// Runtime values of the chat-template interpreter. Templates render as transformers renders
// them with Python's jinja2 (the servers users compare with, vLLM and SGLang, do the same;
// tests/oracle/render_jinja2.py is the oracle): values print as Python's str() (None, True,
// ['a', 1.0]), input floats stay floats and tojson writes json.dumps' text, objects keep
// insertion order. The engine began as a port of @huggingface/jinja (transformers.js), whose
// behaviour remains where the two agree.
#pragma once

#include <cstdint>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/limits.h"

namespace dsv3::jinja {

struct Value;
using Array = std::vector<Value>;
// Insertion-ordered map (JavaScript Map semantics); templates hold small objects.
using Object = std::vector<std::pair<std::string, Value>>;
struct Interpreter;
using Function = std::function<Value(std::vector<Value>& args, Interpreter& in)>;

struct Value {
  Value() = default;
  Value(const Value&) = default;
  Value(Value&&) noexcept = default;
  Value& operator=(const Value&) = default;
  Value& operator=(Value&&) noexcept = default;
  // Releases nested arrays and objects with a loop rather than recursion: a template can build
  // a value nested 10^6 deep ({% set a = [a] %} in a loop), whose recursive destruction would
  // overflow the stack.
  ~Value();

  enum class Type { kUndefined, kNull, kBool, kInt, kFloat, kString, kArray, kObject, kNamespace, kFunction };
  Type type = Type::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<Array> array;    // kArray
  std::shared_ptr<Object> object;  // kObject, kNamespace (shared: namespaces are mutable)
  std::shared_ptr<Function> fn;
  bool is_tuple = false;   // kArray made by a tuple literal
  bool is_kwargs = false;  // kObject holding keyword arguments of a call

  static Value undefined() { return {}; }
  static Value null() { return make(Type::kNull); }
  static Value boolean(bool v) {
    Value x = make(Type::kBool);
    x.b = v;
    return x;
  }
  static Value integer(int64_t v) {
    Value x = make(Type::kInt);
    x.i = v;
    return x;
  }
  static Value floating(double v) {
    Value x = make(Type::kFloat);
    x.f = v;
    return x;
  }
  static Value string(std::string v) {
    Value x = make(Type::kString);
    x.s = std::move(v);
    return x;
  }
  static Value array_of(Array v) {
    Value x = make(Type::kArray);
    x.array = std::make_shared<Array>(std::move(v));
    return x;
  }
  static Value object_of(Object v, Type t = Type::kObject) {
    Value x = make(t);
    x.object = std::make_shared<Object>(std::move(v));
    return x;
  }
  static Value function(Function f) {
    Value x = make(Type::kFunction);
    x.fn = std::make_shared<Function>(std::move(f));
    return x;
  }
  static Value make(Type t) {
    Value x;
    x.type = t;
    return x;
  }

  bool is_undefined() const { return type == Type::kUndefined; }
  bool is_null() const { return type == Type::kNull; }
  bool is_string() const { return type == Type::kString; }
  bool is_number() const { return type == Type::kInt || type == Type::kFloat; }
  bool is_array() const { return type == Type::kArray; }
  bool is_object() const { return type == Type::kObject; }
  bool is_mapping_like() const { return type == Type::kObject || type == Type::kNamespace; }
  double number() const { return type == Type::kInt ? static_cast<double>(i) : type == Type::kFloat ? f : b ? 1 : 0; }

  // Python truthiness, as @huggingface/jinja implements it.
  bool truthy() const;
  // Name of the type in error messages ("string", "array", ...).
  const char* type_name() const;
  // Member of an object or namespace; nullptr when absent.
  const Value* get(std::string_view key) const;
  void set(const std::string& key, Value v);
};

// Python's str() of the value as jinja2 holds it: what {{ value }}, ~, join and |string print.
// Undefined prints nothing, none "None", booleans "True"/"False", floats as repr (5.0, 1e+16),
// lists and dicts as repr ([1, 'a', None], {'k': True}), a namespace as <Namespace {...}>.
std::string to_output(const Value& v, size_t max_bytes = SIZE_MAX);

struct JsonOptions {
  int indent = -1;  // < 0: none
  // The text may not exceed this many bytes (Error otherwise): a value shared many times over
  // ([a, a] nested 40 times) prints as 2^40 copies.
  size_t max_bytes = SIZE_MAX;
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_sep, key_sep;  // empty: defaults (", " / ": ", or "," with indent)
};
// The tojson filter (and how arrays and objects print): Python json.dumps layout with
// JavaScript scalar formatting. `undefined_as_null` false prints "undefined" (printing path).
std::string to_json(const Value& v, const JsonOptions& opt, bool undefined_as_null = true, int depth = 0);

// JavaScript's Number.prototype.toString for finite doubles.
std::string js_number(double d);
// Python's repr(float) ("5.0", "1e-05", "1e+16"), which json.dumps writes: tojson follows
// transformers' (json.dumps) for floats.
std::string py_float_repr(double d);
// Python's repr() of the value as jinja2 holds it (None, True, 'text', [1, 2.0], {'k': v}): what
// str() gives a list or dict that a template concatenates with ~.
std::string py_repr(const Value& v, size_t max_bytes = SIZE_MAX);

// Template variables from JSON: integral numbers become integers (JavaScript has one number
// type), object keys that are array indices come first in ascending order (Object.entries).
// Nesting deeper than kMaxValueNesting is an Error.
Value from_json(const nlohmann::ordered_json& j, int depth = 0);

// Loose equality (JavaScript ==) on the wrapped values, as the == operator and tests use.
bool loose_equal(const Value& a, const Value& b);

// String helpers with JavaScript semantics.
bool js_is_space(char32_t c);
std::string js_trim(std::string_view s, bool start, bool end);
// Python's len() of a str: code points (JavaScript counted UTF-16 units).
size_t code_point_length(std::string_view s);

}  // namespace dsv3::jinja
