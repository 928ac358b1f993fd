#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "base/error.h"
#include "tokenizer/utf8.h"

namespace dsv3::jinja {

Value::~Value() {
  if (!array && !object) return;
  // Every container reference below this value moves into the work lists. A container whose
  // last reference we hold gives up its children there before it is freed, so each free is
  // shallow; a shared one just loses our reference.
  std::vector<std::shared_ptr<Array>> arrays;
  std::vector<std::shared_ptr<Object>> objects;
  auto take = [&](Value& v) {
    if (v.array) arrays.push_back(std::move(v.array));
    if (v.object) objects.push_back(std::move(v.object));
  };
  take(*this);
  while (!arrays.empty() || !objects.empty()) {
    if (!arrays.empty()) {
      std::shared_ptr<Array> a = std::move(arrays.back());
      arrays.pop_back();
      if (a.use_count() == 1)
        for (Value& e : *a) take(e);
    } else {
      std::shared_ptr<Object> o = std::move(objects.back());
      objects.pop_back();
      if (o.use_count() == 1)
        for (auto& kv : *o) take(kv.second);
    }
  }
}

bool Value::truthy() const {
  switch (type) {
    case Type::kUndefined:
    case Type::kNull: return false;
    case Type::kBool: return b;
    case Type::kInt: return i != 0;
    case Type::kFloat: return f != 0 && !std::isnan(f);
    case Type::kString: return !s.empty();
    case Type::kArray: return !array->empty();
    case Type::kObject: return !object->empty();
    case Type::kNamespace:
    case Type::kFunction: return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (type) {
    case Type::kUndefined: return "undefined";
    case Type::kNull: return "none";
    case Type::kBool: return "boolean";
    case Type::kInt: return "integer";
    case Type::kFloat: return "float";
    case Type::kString: return "string";
    case Type::kArray: return is_tuple ? "tuple" : "array";
    case Type::kObject: return "object";
    case Type::kNamespace: return "namespace";
    case Type::kFunction: return "function";
  }
  return "?";
}

const Value* Value::get(std::string_view key) const {
  if (!object) return nullptr;
  for (const auto& [k, v] : *object) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::set(const std::string& key, Value v) {
  for (auto& [k, old] : *object) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  object->emplace_back(key, std::move(v));
}

std::string js_number(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  if (d == 0) return "0";
  std::string sign = d < 0 ? "-" : "";
  d = std::fabs(d);
  // Shortest round-trip digits and exponent: d = 0.DIGITS * 10^n (ECMA-262 Number::toString).
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  size_t e = sci.find('e');
  std::string digits;
  for (size_t k = 0; k < e; ++k) {
    if (sci[k] != '.') digits += sci[k];
  }
  int exp10 = std::stoi(sci.substr(e + 1));
  int k = static_cast<int>(digits.size());
  int n = exp10 + 1;
  std::string out;
  if (k <= n && n <= 21) {
    out = digits + std::string(n - k, '0');
  } else if (0 < n && n <= 21) {
    out = digits.substr(0, n) + "." + digits.substr(n);
  } else if (-6 < n && n <= 0) {
    out = "0." + std::string(-n, '0') + digits;
  } else {
    out = digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += (n - 1 >= 0 ? "e+" : "e-") + std::to_string(std::abs(n - 1));
  }
  return sign + out;
}

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    size_t at = i;
    char32_t c = next_code_point(s, i);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || (c >= 0xD800 && c <= 0xDFFF) || (ensure_ascii && c >= 0x7F)) {
          // \uXXXX in lowercase hex, as UTF-16 code units.
          auto unit = [&](unsigned u) { out += fmt::format("\\u{:04x}", u); };
          if (c >= 0x10000) {
            unit(0xD800 + ((c - 0x10000) >> 10));
            unit(0xDC00 + ((c - 0x10000) & 0x3FF));
          } else {
            unit(c);
          }
        } else {
          out.append(s.substr(at, i - at));
        }
    }
  }
  out += '"';
}

// JavaScript's default string comparison: UTF-16 code units.
bool utf16_less(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  auto unit = [](char32_t c) -> std::pair<uint16_t, uint16_t> {
    if (c < 0x10000) return {static_cast<uint16_t>(c), 0};
    return {static_cast<uint16_t>(0xD800 + ((c - 0x10000) >> 10)), static_cast<uint16_t>(0xDC00 + ((c - 0x10000) & 0x3FF))};
  };
  while (i < a.size() && j < b.size()) {
    auto ua = unit(next_code_point(a, i)), ub = unit(next_code_point(b, j));
    if (ua.first != ub.first) return ua.first < ub.first;
    if (ua.second != ub.second) return ua.second < ub.second;
  }
  return i >= a.size() && j < b.size();
}

}  // namespace

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "NaN";  // json.dumps' spellings
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  std::string sign = d < 0 ? "-" : "";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, std::fabs(d), std::chars_format::scientific);
  const std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t k = 0; k < e; ++k)
    if (sci[k] != '.') digits += sci[k];
  const int exp10 = std::stoi(sci.substr(e + 1));
  const int k = static_cast<int>(digits.size());
  // float.__repr__: positional for 1e-4 <= |d| < 1e16, else d.ddde+XX (two exponent digits at least).
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 < 0) return sign + "0." + std::string(size_t(-exp10 - 1), '0') + digits;
    if (k <= exp10 + 1) return sign + digits + std::string(size_t(exp10 + 1 - k), '0') + ".0";
    return sign + digits.substr(0, size_t(exp10 + 1)) + "." + digits.substr(size_t(exp10 + 1));
  }
  std::string mantissa = digits.substr(0, 1) + (k > 1 ? "." + digits.substr(1) : "");
  return sign + mantissa + fmt::format("e{}{:02d}", exp10 < 0 ? '-' : '+', std::abs(exp10));
}

namespace {
// Appends Python's repr of v; Error past max_bytes or kMaxValueNesting levels (a list holding
// itself twice per level, or a namespace holding itself, would otherwise print forever).
void py_repr_into(std::string& out, const Value& v, size_t max_bytes, int depth) {
  using T = Value::Type;
  if (depth > kMaxValueNesting)
    fail("a value nested deeper than {} levels cannot be printed (does a namespace hold itself?)", kMaxValueNesting);
  switch (v.type) {
    case T::kUndefined:
    case T::kNull: out += "None"; break;
    case T::kBool: out += v.b ? "True" : "False"; break;
    case T::kInt: out += std::to_string(v.i); break;
    case T::kFloat: out += py_float_repr(v.f); break;
    case T::kString: {
      // str.__repr__: single quotes unless the text has ' and no ", escapes for \\, the quote,
      // \n \r \t and other control characters; printable characters as they are.
      const char q = v.s.find('\'') != std::string::npos && v.s.find('"') == std::string::npos ? '"' : '\'';
      out += q;
      for (size_t i = 0; i < v.s.size();) {
        const size_t at = i;
        const char32_t c = next_code_point(v.s, i);
        if (c == '\\' || c == char32_t(q)) out += '\\', out += char(c);
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", unsigned(c));
        else out.append(v.s, at, i - at);
      }
      out += q;
      break;
    }
    case T::kArray: {
      out += v.is_tuple ? "(" : "[";
      for (size_t k = 0; k < v.array->size(); ++k) {
        if (k) out += ", ";
        py_repr_into(out, (*v.array)[k], max_bytes, depth + 1);
      }
      if (v.is_tuple && v.array->size() == 1) out += ',';
      out += v.is_tuple ? ")" : "]";
      break;
    }
    case T::kObject:
    case T::kNamespace: {
      out += "{";
      for (size_t k = 0; k < v.object->size(); ++k) {
        if (k) out += ", ";
        py_repr_into(out, Value::string((*v.object)[k].first), max_bytes, depth + 1);
        out += ": ";
        py_repr_into(out, (*v.object)[k].second, max_bytes, depth + 1);
      }
      out += "}";
      break;
    }
    case T::kFunction: out += "<function>"; break;
  }
  if (out.size() > max_bytes) fail("the text of a value exceeds the template limit max_string_bytes = {}", max_bytes);
}
}  // namespace

std::string py_repr(const Value& v, size_t max_bytes) {
  std::string out;
  py_repr_into(out, v, max_bytes, 0);
  return out;
}


namespace {

// Appends the JSON text of `v` to `out`: one output buffer rather than a string per level, so a
// value printed near the size limit costs its size once, not once per nesting level.
void write_json(std::string& out, const Value& v, const JsonOptions& opt, const std::string& item_sep,
                const std::string& key_sep, bool undefined_as_null, int depth) {
  using T = Value::Type;
  if (depth > kMaxValueNesting)
    fail("a value nested deeper than {} levels cannot be printed (does a namespace hold itself?)", kMaxValueNesting);
  const bool pretty = opt.indent > 0;
  auto newline = [&](int level) {
    out += '\n';
    out.append(size_t(level) * size_t(opt.indent), ' ');
  };
  auto check = [&] {
    if (out.size() > opt.max_bytes)
      fail("the JSON text of a value exceeds the template limit max_string_bytes = {}", opt.max_bytes);
  };
  switch (v.type) {
    case T::kNull: out += "null"; return;
    case T::kUndefined: out += undefined_as_null ? "null" : "undefined"; return;
    case T::kBool: out += v.b ? "true" : "false"; return;
    case T::kInt: out += std::to_string(v.i); return;
    case T::kFloat: out += py_float_repr(v.f); return;  // json.dumps: 5.0, 1e-05, NaN, Infinity
    case T::kString: json_string(out, v.s, opt.ensure_ascii); return;
    case T::kArray: {
      out += '[';
      for (size_t k = 0; k < v.array->size(); ++k) {
        if (k) out += item_sep;
        if (pretty) newline(depth + 1);
        write_json(out, (*v.array)[k], opt, item_sep, key_sep, undefined_as_null, depth + 1);
        check();
      }
      if (pretty && !v.array->empty()) newline(depth);
      out += ']';
      return;
    }
    case T::kObject:
    case T::kNamespace: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : *v.object) entries.push_back(&e);
      if (opt.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto* a, const auto* b) { return utf16_less(a->first, b->first); });
      }
      out += '{';
      for (size_t k = 0; k < entries.size(); ++k) {
        if (k) out += item_sep;
        if (pretty) newline(depth + 1);
        json_string(out, entries[k]->first, opt.ensure_ascii);
        out += key_sep;
        write_json(out, entries[k]->second, opt, item_sep, key_sep, undefined_as_null, depth + 1);
        check();
      }
      if (pretty && !entries.empty()) newline(depth);
      out += '}';
      return;
    }
    case T::kFunction: fail("cannot convert a function to JSON");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& opt, bool undefined_as_null, int depth) {
  std::string item_sep = opt.item_sep, key_sep = opt.key_sep;
  if (item_sep.empty() && key_sep.empty()) {
    item_sep = opt.indent > 0 ? "," : ", ";
    key_sep = ": ";
  }
  std::string out;
  write_json(out, v, opt, item_sep, key_sep, undefined_as_null, depth);
  return out;
}

std::string to_output(const Value& v, size_t max_bytes) {
  using T = Value::Type;
  switch (v.type) {
    case T::kUndefined: return "";  // jinja2's Undefined prints as nothing
    case T::kNull: return "None";
    case T::kBool: return v.b ? "True" : "False";
    case T::kInt: return std::to_string(v.i);
    case T::kFloat:
      // str(float) is repr(float), except for the non-finite values json.dumps spells its own way.
      if (std::isnan(v.f)) return "nan";
      if (std::isinf(v.f)) return v.f > 0 ? "inf" : "-inf";
      return py_float_repr(v.f);
    case T::kString: return v.s;
    case T::kArray:
    case T::kObject: return py_repr(v, max_bytes);
    // jinja2's Namespace.__repr__.
    case T::kNamespace: return "<Namespace " + py_repr(v, max_bytes) + ">";
    case T::kFunction: fail("cannot print a function");
  }
  return "";
}

Value from_json(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxValueNesting) fail("template variables nest deeper than {} levels", kMaxValueNesting);
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::null();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: return Value::integer(static_cast<int64_t>(j.get<uint64_t>()));
    // A float stays a float (5.0 is not 5), as Python's json.loads reads it for transformers'
    // templates: tool schemas and arguments print and tojson as "5.0". (@huggingface/jinja, a
    // JavaScript engine, made it the integer 5.)
    case nlohmann::ordered_json::value_t::number_float: return Value::floating(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      for (const auto& x : j) a.push_back(from_json(x, depth + 1));
      return Value::array_of(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      // Insertion order, as a Python dict (JavaScript's Object.entries would put array-index
      // keys such as "2" first).
      Object o;
      for (const auto& [k, x] : j.items()) o.emplace_back(k, from_json(x, depth + 1));
      return Value::object_of(std::move(o));
    }
    default: fail("unsupported JSON value in template variables");
  }
}

bool loose_equal(const Value& a, const Value& b) {
  using T = Value::Type;
  bool a_nullish = a.type == T::kNull || a.type == T::kUndefined;
  bool b_nullish = b.type == T::kNull || b.type == T::kUndefined;
  if (a_nullish || b_nullish) return a_nullish && b_nullish;
  bool a_num = a.is_number() || a.type == T::kBool, b_num = b.is_number() || b.type == T::kBool;
  if (a_num && b_num) return a.number() == b.number();
  if (a.is_string() && b.is_string()) return a.s == b.s;
  if ((a.is_string() && b_num) || (a_num && b.is_string())) {
    // JavaScript converts the string to a number.
    const std::string& s = a.is_string() ? a.s : b.s;
    double n = a.is_string() ? b.number() : a.number();
    std::string t = js_trim(s, true, true);
    if (t.empty()) return n == 0;
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    return end && *end == '\0' && v == n;
  }
  // Containers compare by identity.
  if (a.type != b.type) return false;
  if (a.type == T::kArray) return a.array == b.array;
  if (a.type == T::kObject || a.type == T::kNamespace) return a.object == b.object;
  if (a.type == T::kFunction) return a.fn == b.fn;
  return false;
}

bool js_is_space(char32_t c) {
  return c == 0x09 || c == 0x0A || c == 0x0B || c == 0x0C || c == 0x0D || c == 0x20 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 ||
         c == 0xFEFF;
}

std::string js_trim(std::string_view s, bool start, bool end) {
  size_t b = 0, e = s.size();
  if (start) {
    size_t i = 0;
    while (i < s.size()) {
      size_t at = i;
      if (!js_is_space(next_code_point(s, i))) {
        b = at;
        break;
      }
      b = i;
    }
  }
  if (end) {
    // Walk forward remembering where the last non-space character ended.
    size_t i = b, last = b;
    while (i < s.size()) {
      char32_t c = next_code_point(s, i);
      if (!js_is_space(c)) last = i;
    }
    e = last;
  }
  return std::string(s.substr(b, e > b ? e - b : 0));
}

size_t code_point_length(std::string_view s) {
  size_t n = 0, i = 0;
  for (; i < s.size(); ++n) next_code_point(s, i);
  return n;
}

}  // namespace dsv3::jinja
