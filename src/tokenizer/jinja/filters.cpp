// Filters, tests and built-in methods, with @huggingface/jinja's behaviour (JavaScript string
// semantics: trim() uses JavaScript white space, title() only uppercases word starts).
#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace dsv3::jinja {
namespace {

using Kind = Node::Kind;
using VT = Value::Type;

// ASCII case mapping (JavaScript maps all of Unicode; chat templates apply it to ASCII names).
std::string upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return s;
}
std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return s;
}

// jinja2's title filter: the text split after runs of - ( { [ < and white space; each piece's
// first character upper-cased and the rest lower-cased ('{"temp"' stays as it is, "ab-CD" is "Ab-Cd").
std::string title(std::string s) {
  auto separator = [](char c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || std::isspace(static_cast<unsigned char>(c)); };
  for (size_t k = 0; k < s.size(); ++k) {
    if (separator(s[k])) continue;
    const bool first = k == 0 || separator(s[k - 1]);
    if (first && s[k] >= 'a' && s[k] <= 'z') s[k] = static_cast<char>(s[k] - 32);
    if (!first && s[k] >= 'A' && s[k] <= 'Z') s[k] = static_cast<char>(s[k] + 32);
  }
  return s;
}

// Splits keyword arguments (a trailing kwargs object) from positional ones.
struct Args {
  std::vector<Value> positional;
  Value kwargs = Value::object_of({});
  const Value* get(size_t index, const char* name) const {
    if (index < positional.size()) return &positional[index];
    return kwargs.get(name);
  }
};
Args split_args(std::vector<Value> v) {
  Args a;
  if (!v.empty() && v.back().is_kwargs) {
    a.kwargs = v.back();
    v.pop_back();
  }
  a.positional = std::move(v);
  return a;
}

int compare_values(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_null() && b.is_null()) return 0;
  if (a.is_undefined() && b.is_undefined()) return 0;
  if (a.is_null() || b.is_null() || a.is_undefined() || b.is_undefined()) {
    fail("cannot compare {} with {}", a.type_name(), b.type_name());
  }
  bool an = a.is_number() || a.type == VT::kBool, bn = b.is_number() || b.type == VT::kBool;
  if (an && bn) return a.number() < b.number() ? -1 : a.number() > b.number() ? 1 : 0;
  if (a.is_string() && b.is_string()) {
    std::string x = case_sensitive ? a.s : lower(a.s), y = case_sensitive ? b.s : lower(b.s);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  fail("cannot compare {} with {}", a.type_name(), b.type_name());
}

// "a.b.0" paths for sort(attribute=...) and map(attribute=...).
Value attribute_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (v.is_mapping_like()) {
      const Value* x = v.get(part);
      v = x ? *x : Value::undefined();
    } else if (v.is_array()) {
      char* end = nullptr;
      long idx = std::strtol(part.c_str(), &end, 10);
      if (end == part.c_str() || idx < 0 || idx >= static_cast<long>(v.array->size())) return Value::undefined();
      v = (*v.array)[idx];
    } else {
      return Value::undefined();
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return v;
}

std::string indent_lines(const std::string& s, const std::string& pad, bool first, bool blank, size_t max_bytes) {
  // The result is known before it is built: indent(10**12) must not allocate a terabyte.
  const size_t lines = size_t(std::count(s.begin(), s.end(), '\n')) + 1;
  if (pad.size() > max_bytes || s.size() + lines * pad.size() > max_bytes || (lines > 1 && pad.size() > max_bytes / lines))
    fail("indent() would exceed the template limit max_string_bytes = {}", max_bytes);
  std::string out;
  size_t start = 0;
  for (int line = 0;; ++line) {
    size_t nl = s.find('\n', start);
    std::string x = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    bool skip = (!first && line == 0) || (!blank && x.empty());
    out += (skip ? "" : pad) + x;
    if (nl == std::string::npos) break;
    out += '\n';
    start = nl + 1;
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count,
                        size_t max_bytes) {
  if (count == 0) return s;
  auto check = [&](const std::string& out) {
    if (out.size() > max_bytes) fail("replace() would exceed the template limit max_string_bytes = {}", max_bytes);
  };
  int64_t left = count < 0 ? INT64_MAX : count;
  std::string out;
  if (from.empty()) {
    // Inserts `to` before every character and at the end.
    size_t i = 0;
    while (i <= s.size() && left > 0) {
      out += to;
      check(out);
      --left;
      if (i == s.size()) return out;
      size_t at = i;
      next_code_point(s, i);
      out += s.substr(at, i - at);
    }
    return out + s.substr(std::min(i, s.size()));
  }
  size_t pos = 0;
  while (left > 0) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out += s.substr(pos, hit - pos) + to;
    check(out);
    pos = hit + from.size();
    --left;
  }
  return out + s.substr(pos);
}

Value call_member(const Value& object, const char* name, Interpreter& in) {
  std::vector<Value> none;
  return (*builtin_member(object, name).fn)(none, in);
}

Value bound(std::function<Value(Args)> fn) {
  return Value::function([fn](std::vector<Value>& args, Interpreter&) { return fn(split_args(args)); });
}
Value bound_in(std::function<Value(Args, Interpreter&)> fn) {
  return Value::function([fn](std::vector<Value>& args, Interpreter& in) { return fn(split_args(args), in); });
}

Value json_filter(const Value& operand, const Args& a, size_t max_bytes) {
  JsonOptions opt;
  opt.max_bytes = max_bytes;
  if (const Value* v = a.kwargs.get("indent"); v && !v->is_null()) {
    if (v->type != VT::kInt) fail("tojson: indent must be an integer");
    // Each nesting level repeats the indent: bound it before any string is built.
    if (v->i > 1024) fail("tojson: indent {} is larger than 1024", v->i);
    opt.indent = static_cast<int>(v->i);
  }
  if (const Value* v = a.kwargs.get("ensure_ascii")) {
    if (v->type != VT::kBool) fail("tojson: ensure_ascii must be a boolean");
    opt.ensure_ascii = v->b;
  }
  if (const Value* v = a.kwargs.get("sort_keys")) {
    if (v->type != VT::kBool) fail("tojson: sort_keys must be a boolean");
    opt.sort_keys = v->b;
  }
  if (const Value* v = a.kwargs.get("separators"); v && !v->is_null()) {
    if (!v->is_array() || v->array->size() != 2 || !(*v->array)[0].is_string() || !(*v->array)[1].is_string()) {
      fail("tojson: separators must be a tuple of two strings");
    }
    opt.item_sep = (*v->array)[0].s;
    opt.key_sep = (*v->array)[1].s;
  }
  return Value::string(to_json(operand, opt));
}

bool is_ascii_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

Value builtin_member(const Value& o, const std::string& name) {
  if (o.is_string()) {
    std::string s = o.s;
    if (name == "length") return Value::integer(static_cast<int64_t>(code_point_length(s)));
    if (name == "upper") return bound([s](Args) { return Value::string(upper(s)); });
    if (name == "lower") return bound([s](Args) { return Value::string(lower(s)); });
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const bool left = name != "rstrip", right = name != "lstrip";
      // Python's str.strip(chars): with chars, strip any of those characters (jinja2 runs the
      // Python method; @huggingface/jinja ignored the argument and stripped white space).
      return bound([s, left, right](Args a) {
        const Value* chars = a.get(0, "chars");
        if (!chars || chars->is_null()) return Value::string(js_trim(s, left, right));
        if (!chars->is_string()) fail("strip(): chars must be a string or none");
        std::vector<char32_t> set;
        for (size_t i = 0; i < chars->s.size();) set.push_back(next_code_point(chars->s, i));
        auto in_set = [&](char32_t c) { return std::find(set.begin(), set.end(), c) != set.end(); };
        size_t b = 0, e = s.size();
        while (left && b < e) {
          size_t k = b;
          if (!in_set(next_code_point(s, k))) break;
          b = k;
        }
        while (right && e > b) {
          size_t k = e - 1;
          while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;  // start of the last character
          size_t j = k;
          if (!in_set(next_code_point(s, j))) break;
          e = k;
        }
        return Value::string(s.substr(b, e - b));
      });
    }
    if (name == "rsplit") {
      // Python's str.rsplit: like split, but at most maxsplit cuts counted from the right.
      return bound([s](Args a) {
        const Value* sep = a.get(0, "sep");
        const Value* max = a.get(1, "maxsplit");
        const int64_t maxsplit = max && max->type == VT::kInt ? max->i : -1;
        Array out;
        if (!sep || sep->is_null()) {
          std::vector<std::pair<size_t, size_t>> words;  // [begin, end) of each run of non-space
          for (size_t i = 0; i < s.size();) {
            size_t k = i;
            if (js_is_space(next_code_point(s, k))) {
              i = k;
              continue;
            }
            const size_t b = i;
            while (i < s.size()) {
              k = i;
              if (js_is_space(next_code_point(s, k))) break;
              i = k;
            }
            words.emplace_back(b, i);
          }
          size_t first = 0;
          if (maxsplit >= 0 && words.size() > size_t(maxsplit) + 1) {
            first = words.size() - size_t(maxsplit);
            out.push_back(Value::string(s.substr(0, words[first - 1].second)));
          }
          for (size_t w = first; w < words.size(); ++w)
            out.push_back(Value::string(s.substr(words[w].first, words[w].second - words[w].first)));
          return Value::array_of(std::move(out));
        }
        if (!sep->is_string()) fail("rsplit(): sep must be a string or none");
        if (sep->s.empty()) fail("rsplit(): empty separator");
        std::vector<std::string> parts;
        size_t end = s.size();
        while (true) {
          const size_t hit = end >= sep->s.size() ? s.rfind(sep->s, end - sep->s.size()) : std::string::npos;
          if (hit == std::string::npos || (maxsplit != -1 && int64_t(parts.size()) >= maxsplit)) {
            parts.push_back(s.substr(0, end));
            break;
          }
          parts.push_back(s.substr(hit + sep->s.size(), end - hit - sep->s.size()));
          end = hit;
        }
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) out.push_back(Value::string(*it));
        return Value::array_of(std::move(out));
      });
    }
    if (name == "title") return bound([s](Args) { return Value::string(title(s)); });
    if (name == "capitalize") {
      return bound([s](Args) {
        std::string out = lower(s);  // Python's str.capitalize lowers the rest
        if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 32);
        return Value::string(out);
      });
    }
    if (name == "startswith" || name == "endswith") {
      bool starts = name == "startswith";
      return bound([s, starts](Args a) {
        if (a.positional.empty()) fail("{}() requires an argument", starts ? "startswith" : "endswith");
        auto test = [&](const std::string& p) {
          return starts ? s.rfind(p, 0) == 0 : s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
        };
        const Value& p = a.positional[0];
        if (p.is_string()) return Value::boolean(test(p.s));
        if (p.is_array()) {
          for (const Value& x : *p.array) {
            if (!x.is_string()) fail("startswith()/endswith() tuple elements must be strings");
            if (test(x.s)) return Value::boolean(true);
          }
          return Value::boolean(false);
        }
        fail("startswith()/endswith() argument must be a string or tuple of strings");
      });
    }
    if (name == "split") {
      return bound([s](Args a) {
        const Value* sep = a.get(0, "sep");
        const Value* max = a.get(1, "maxsplit");
        int64_t maxsplit = max && max->type == VT::kInt ? max->i : -1;
        Array out;
        if (!sep || sep->is_null()) {
          std::string t = js_trim(s, true, false);
          size_t i = 0;
          while (i < t.size()) {
            size_t b = i;
            while (i < t.size()) {  // a run of non-space
              size_t k = i;
              if (js_is_space(next_code_point(t, k))) break;
              i = k;
            }
            if (maxsplit != -1 && static_cast<int64_t>(out.size()) >= maxsplit) {
              out.push_back(Value::string(t.substr(b)));
              break;
            }
            out.push_back(Value::string(t.substr(b, i - b)));
            while (i < t.size()) {
              size_t k = i;
              if (!js_is_space(next_code_point(t, k))) break;
              i = k;
            }
          }
          return Value::array_of(std::move(out));
        }
        if (!sep->is_string()) fail("split(): sep must be a string or none");
        if (sep->s.empty()) fail("split(): empty separator");
        size_t pos = 0;
        while (true) {
          size_t hit = s.find(sep->s, pos);
          if (hit == std::string::npos || (maxsplit != -1 && static_cast<int64_t>(out.size()) >= maxsplit)) {
            out.push_back(Value::string(s.substr(pos)));
            break;
          }
          out.push_back(Value::string(s.substr(pos, hit - pos)));
          pos = hit + sep->s.size();
        }
        return Value::array_of(std::move(out));
      });
    }
    if (name == "replace") {
      return bound_in([s](Args a, Interpreter& in) {
        if (a.positional.size() < 2 || !a.positional[0].is_string() || !a.positional[1].is_string()) {
          fail("replace() needs two string arguments");
        }
        const Value* count = a.get(2, "count");
        int64_t n = count && count->type == VT::kInt ? count->i : -1;
        return Value::string(replace_all(s, a.positional[0].s, a.positional[1].s, n, in.limits().max_string_bytes));
      });
    }
    return Value::undefined();
  }
  if (o.is_array()) {
    if (name == "length") return Value::integer(static_cast<int64_t>(o.array->size()));
    return Value::undefined();
  }
  if (o.is_object()) {
    Value self = o;
    if (name == "get") {
      return bound([self](Args a) {
        if (a.positional.empty() || !a.positional[0].is_string()) fail("get(): the key must be a string");
        if (const Value* v = self.get(a.positional[0].s)) return *v;
        return a.positional.size() > 1 ? a.positional[1] : Value::null();
      });
    }
    if (name == "items" || name == "keys" || name == "values") {
      return bound([self, name](Args) {
        Array out;
        for (const auto& [k, v] : *self.object) {
          if (name == "items") {
            out.push_back(Value::array_of({Value::string(k), v}));
          } else {
            out.push_back(name == "keys" ? Value::string(k) : v);
          }
        }
        return Value::array_of(std::move(out));
      });
    }
    if (name == "dictsort") {
      return bound([self](Args a) {
        const Value* cs = a.get(0, "case_sensitive");
        const Value* by = a.get(1, "by");
        const Value* rev = a.get(2, "reverse");
        bool case_sensitive = cs && cs->type == VT::kBool && cs->b;
        bool by_value = by && by->is_string() && by->s == "value";
        bool reverse = rev && rev->type == VT::kBool && rev->b;
        Array items;
        for (const auto& [k, v] : *self.object) items.push_back(Value::array_of({Value::string(k), v}));
        std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
          int c = compare_values((*x.array)[by_value], (*y.array)[by_value], case_sensitive);
          return reverse ? c > 0 : c < 0;
        });
        return Value::array_of(std::move(items));
      });
    }
  }
  return Value::undefined();
}

bool apply_test(const std::string& name, const Value& v, const Value* arg, const Node& at) {
  if (name == "boolean") return v.type == VT::kBool;
  if (name == "callable") return v.type == VT::kFunction;
  if (name == "odd" || name == "even") {
    if (v.type != VT::kInt) runtime_error(at, fmt::format("cannot test '{}' on {}", name, v.type_name()));
    return (v.i % 2 != 0) == (name == "odd");
  }
  if (name == "false") return v.type == VT::kBool && !v.b;
  if (name == "true") return v.type == VT::kBool && v.b;
  if (name == "none") return v.is_null();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.type == VT::kInt;
  if (name == "float") return v.type == VT::kFloat;
  if (name == "divisibleby") {
    if (!arg || arg->type != VT::kInt || v.type != VT::kInt) fail("divisibleby needs two integers");
    if (arg->i == 0) fail("divisibleby 0");
    return v.i % arg->i == 0;
  }
  if (name == "iterable") return (v.is_array() && !v.is_tuple) || v.is_string();
  if (name == "mapping") return v.is_object();
  if (name == "sequence") return v.is_array() || v.is_object() || v.is_string();
  if (name == "lower") return v.is_string() && v.s == lower(v.s);
  if (name == "upper") return v.is_string() && v.s == upper(v.s);
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "equalto" || name == "eq") {
    Value other = arg ? *arg : Value::undefined();
    bool same_prim = (v.is_number() && other.is_number()) || v.type == other.type;
    return same_prim && loose_equal(v, other);
  }
  runtime_error(at, fmt::format("unknown test '{}'", name));
}

Value apply_filter(const Value& operand, const Node& filter, Interpreter& in, Scope& scope) {
  bool is_call = filter.kind == Kind::kCall;
  const Node& name_node = is_call ? *filter.a : filter;
  if (name_node.kind != Kind::kIdentifier) runtime_error(filter, "a filter must be a name");
  const std::string& name = name_node.text;
  auto args = [&] { return split_args(is_call ? in.evaluate_args(filter.items, scope) : std::vector<Value>{}); };
  auto bad = [&]() -> Value {
    runtime_error(filter, fmt::format("unsupported filter '{}' on {}", name, operand.type_name()));
  };
  try {
    if (name == "safe") return operand;
    // str() of any value, as jinja2's string filter (None, True, repr of lists and dicts).
    if (name == "string" && !is_call) return Value::string(to_output(operand, in.limits().max_string_bytes));
    if (name == "tojson") return json_filter(operand, args(), in.limits().max_string_bytes);
    if (name == "default" && is_call) {
      Args a = args();
      Value fallback = a.positional.empty() ? Value::string("") : a.positional[0];
      const Value* boolean = a.get(1, "boolean");
      bool use_bool = boolean && boolean->type == VT::kBool && boolean->b;
      if (operand.is_undefined() || (use_bool && !operand.truthy())) return fallback;
      return operand;
    }
    if (name == "join" && is_call) {
      Args a = args();
      const Value* sep = a.get(0, "separator");
      std::string sep_s = sep && sep->is_string() ? sep->s : "";
      std::string out;
      if (operand.is_string()) {
        size_t i = 0;
        bool first = true;
        while (i < operand.s.size()) {
          size_t at = i;
          next_code_point(operand.s, i);
          out += (first ? "" : sep_s) + operand.s.substr(at, i - at);
          in.check_string(filter, out.size());
          first = false;
        }
        return Value::string(out);
      }
      if (!operand.is_array()) return bad();
      for (size_t k = 0; k < operand.array->size(); ++k) {
        const Value& x = (*operand.array)[k];
        out += (k ? sep_s : "") + to_output(x, in.limits().max_string_bytes);
        in.check_string(filter, out.size());
      }
      return Value::string(out);
    }
    if ((name == "int" || name == "float") && is_call) {
      Args a = args();
      const Value* d = a.get(0, "default");
      Value fallback = d ? *d : name == "int" ? Value::integer(0) : Value::floating(0);
      if (operand.is_string()) {
        char* end = nullptr;
        std::string t = js_trim(operand.s, true, false);
        if (name == "int") {
          long long v = std::strtoll(t.c_str(), &end, 10);
          return end == t.c_str() ? fallback : Value::integer(v);
        }
        double v = std::strtod(t.c_str(), &end);
        return end == t.c_str() ? fallback : Value::floating(v);
      }
      if (operand.is_number()) return operand;
      if (operand.type == VT::kBool) return name == "int" ? Value::integer(operand.b) : Value::floating(operand.b);
      return bad();
    }
    if (operand.is_array()) {
      const Array& arr = *operand.array;
      if (!is_call) {
        if (name == "list") return operand;
        // @huggingface/jinja fails on an empty array here (it returns a bare JavaScript undefined).
        if ((name == "first" || name == "last") && arr.empty()) fail("'{}' of an empty array", name);
        if (name == "first") return arr.front();
        if (name == "last") return arr.back();
        if (name == "length" || name == "count") return Value::integer(static_cast<int64_t>(arr.size()));
        if (name == "reverse") return Value::array_of(Array(arr.rbegin(), arr.rend()));
        if (name == "sum") {  // Python's sum: an int unless a float takes part
          Value total = Value::integer(0);
          for (const Value& x : arr) {
            if (!x.is_number()) fail("sum: {} is not a number", x.type_name());
            if (total.type == VT::kInt && x.type == VT::kInt) total.i += x.i;
            else total = Value::floating(total.number() + x.number());
          }
          return total;
        }
        if (name == "sort") {
          Array out = arr;
          std::stable_sort(out.begin(), out.end(), [](const Value& x, const Value& y) { return compare_values(x, y, false) < 0; });
          return Value::array_of(std::move(out));
        }
        if (name == "join") {
          std::string out;
          for (const Value& x : arr) {
            out += to_output(x, in.limits().max_string_bytes);
            in.check_string(filter, out.size());
          }
          return Value::string(out);
        }
        if (name == "string") return Value::string(py_repr(operand, in.limits().max_string_bytes));  // str(list): Python's repr, as jinja2
        if (name == "unique") {
          Array out;
          for (const Value& x : arr) {
            in.check_time(filter);  // quadratic: 10^6 elements would run for hours
            bool seen = false;
            for (const Value& y : out) seen = seen || (x.type == y.type && loose_equal(x, y));
            if (!seen) out.push_back(x);
          }
          return Value::array_of(std::move(out));
        }
        return bad();
      }
      Args a = args();
      if (name == "sort") {
        const Value* rev = a.get(0, "reverse");
        const Value* cs = a.get(1, "case_sensitive");
        const Value* attr = a.get(2, "attribute");
        bool reverse = rev && rev->type == VT::kBool && rev->b;
        bool case_sensitive = cs && cs->type == VT::kBool && cs->b;
        std::string path = attr && attr->is_string() ? attr->s : attr && attr->type == VT::kInt ? std::to_string(attr->i) : "";
        Array out = arr;
        std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
          Value xv = path.empty() ? x : attribute_path(x, path), yv = path.empty() ? y : attribute_path(y, path);
          int c = compare_values(xv, yv, case_sensitive);
          return reverse ? c > 0 : c < 0;
        });
        return Value::array_of(std::move(out));
      }
      if (name == "selectattr" || name == "rejectattr") {
        bool select = name == "selectattr";
        for (const Value& x : arr) {
          if (!x.is_mapping_like()) fail("{} can only be applied to an array of objects", name);
        }
        if (a.positional.empty() || !a.positional[0].is_string()) fail("{} needs an attribute name", name);
        std::string test = a.positional.size() > 1 && a.positional[1].is_string() ? a.positional[1].s : "";
        const Value* test_arg = a.positional.size() > 2 ? &a.positional[2] : nullptr;
        Array out;
        for (const Value& x : arr) {
          const Value* attr = x.get(a.positional[0].s);
          bool r = attr ? (test.empty() ? attr->truthy() : apply_test(test, *attr, test_arg, filter)) : false;
          if (r == select) out.push_back(x);
        }
        return Value::array_of(std::move(out));
      }
      if (name == "map") {
        const Value* attr = a.kwargs.get("attribute");
        if (!attr || !attr->is_string()) fail("map() supports only attribute=...");
        const Value* d = a.kwargs.get("default");
        Array out;
        for (const Value& x : arr) {
          if (!x.is_mapping_like()) fail("items in map must be objects");
          Value v = attribute_path(x, attr->s);
          out.push_back(v.is_undefined() && d ? *d : v);
        }
        return Value::array_of(std::move(out));
      }
      return bad();
    }
    if (operand.is_string()) {
      const std::string& s = operand.s;
      if (!is_call) {
        if (name == "length" || name == "count") return Value::integer(static_cast<int64_t>(code_point_length(s)));
        if (name == "upper") return Value::string(upper(s));
        if (name == "lower") return Value::string(lower(s));
        if (name == "title") return Value::string(title(s));
        if (name == "capitalize") return call_member(operand, "capitalize", in);
        if (name == "trim") return Value::string(js_trim(s, true, true));
        if (name == "indent") return Value::string(indent_lines(s, "    ", false, false, in.limits().max_string_bytes));
        if (name == "reverse") {  // jinja2 reverses a string by characters
          std::vector<std::string_view> chars;
          for (size_t i = 0; i < s.size();) {
            const size_t at = i;
            next_code_point(s, i);
            chars.push_back(std::string_view(s).substr(at, i - at));
          }
          std::string out;
          for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
          return Value::string(out);
        }
        if (name == "wordcount") {  // jinja2: the number of \w+ runs
          static const Regex word(R"([\p{L}\p{N}_]+)", "wordcount");
          MatchScratch scratch;
          std::vector<std::pair<size_t, size_t>> runs;
          word.find_all(s, runs, scratch);
          return Value::integer(static_cast<int64_t>(runs.size()));
        }
        if (name == "join" || name == "string") return operand;
        if (name == "int") {
          char* end = nullptr;
          long long v = std::strtoll(s.c_str(), &end, 10);
          return Value::integer(end == s.c_str() ? 0 : v);
        }
        if (name == "float") {
          char* end = nullptr;
          double v = std::strtod(s.c_str(), &end);
          return Value::floating(end == s.c_str() ? 0 : v);
        }
        return bad();
      }
      Args a = args();
      if (name == "format") {
        // jinja2's format filter: Python's printf-style "%s %d %5.2f %%" with positional values.
        std::string out;
        size_t next = 0;
        for (size_t i = 0; i < s.size(); ++i) {
          if (s[i] != '%') {
            out += s[i];
            continue;
          }
          size_t j = i + 1;
          std::string spec = "%";
          while (j < s.size() && std::string_view("-+ 0#").find(s[j]) != std::string_view::npos) spec += s[j++];
          while (j < s.size() && is_ascii_digit(s[j])) spec += s[j++];
          if (j < s.size() && s[j] == '.') {
            spec += s[j++];
            while (j < s.size() && is_ascii_digit(s[j])) spec += s[j++];
          }
          if (j >= s.size()) fail("format: incomplete format at the end of '{}'", s);
          const char conv = s[j];
          i = j;
          if (conv == '%') {
            out += '%';
            continue;
          }
          if (next >= a.positional.size()) fail("format: not enough arguments for '{}'", s);
          const Value& v = a.positional[next++];
          // printf of one value, into a buffer of the size it needs.
          auto printf_one = [](const std::string& f, auto x) {
            const int n = std::snprintf(nullptr, 0, f.c_str(), x);
            if (n < 0 || n > (1 << 24)) fail("format: '{}' gives too long a text", f);
            std::string r(size_t(n) + 1, '\0');
            std::snprintf(r.data(), r.size(), f.c_str(), x);
            r.pop_back();
            return r;
          };
          if (conv == 's') {
            const std::string text = to_output(v);
            out += spec == "%" ? text : printf_one(spec + "s", text.c_str());
          } else if (conv == 'd' || conv == 'i') {
            if (!v.is_number() && v.type != VT::kBool) fail("format: %{} needs a number, got {}", conv, v.type_name());
            const long long n = v.type == VT::kInt ? v.i : v.type == VT::kBool ? v.b : static_cast<long long>(v.number());
            out += printf_one(spec + "lld", n);
          } else if (conv == 'x' || conv == 'X' || conv == 'o') {
            if (v.type != VT::kInt) fail("format: %{} needs an integer, got {}", conv, v.type_name());
            out += printf_one(spec + "ll" + conv, static_cast<long long>(v.i));
          } else if (conv == 'f' || conv == 'e' || conv == 'g') {
            if (!v.is_number()) fail("format: %{} needs a number, got {}", conv, v.type_name());
            out += printf_one(spec + conv, v.number());
          } else {
            fail("format: unsupported conversion '%{}'", conv);
          }
        }
        if (next < a.positional.size()) fail("format: not all arguments converted during string formatting");
        return Value::string(out);
      }
      if (name == "indent") {
        const Value* width = a.get(0, "width");
        const Value* first = a.get(1, "first");
        const Value* blank = a.get(2, "blank");
        const int64_t n = width && width->type == VT::kInt ? width->i : 4;
        if (!(width && width->is_string()) && (n < 0 || uint64_t(n) > in.limits().max_string_bytes))
          fail("indent({}) is outside 0 .. max_string_bytes = {}", n, in.limits().max_string_bytes);
        std::string pad = width && width->is_string() ? width->s : std::string(size_t(n), ' ');
        return Value::string(
            indent_lines(s, pad, first && first->truthy(), blank && blank->truthy(), in.limits().max_string_bytes));
      }
      if (name == "replace") {
        std::vector<Value> call = a.positional;
        if (a.kwargs.get("count")) call.push_back(*a.kwargs.get("count"));
        return (*builtin_member(operand, "replace").fn)(call, in);
      }
      return bad();
    }
    if (operand.is_number()) {
      if (is_call) return bad();
      if (name == "abs" && operand.type == VT::kInt && operand.i == INT64_MIN) fail("integer overflow in abs()");
      if (name == "abs") return operand.type == VT::kInt ? Value::integer(std::llabs(operand.i)) : Value::floating(std::fabs(operand.f));
      if (name == "int" && operand.type == VT::kInt) return operand;
      if (name == "int") {
        const double d = std::floor(operand.number());
        // Converting a double outside int64's range (or NaN) is undefined behaviour.
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) fail("int(): {} does not fit in 64 bits", js_number(d));
        return Value::integer(static_cast<int64_t>(d));
      }
      if (name == "float") return Value::floating(operand.number());
      if (name == "string") return Value::string(to_output(operand, in.limits().max_string_bytes));
      return bad();
    }
    if (operand.is_object()) {
      if (!is_call && name == "items") return call_member(operand, "items", in);
      if (!is_call && name == "string") return Value::string(py_repr(operand));
      if (!is_call && (name == "length" || name == "count")) return Value::integer(static_cast<int64_t>(operand.object->size()));
      Value m = builtin_member(operand, name);
      if (m.type == VT::kFunction) {
        std::vector<Value> call = is_call ? in.evaluate_args(filter.items, scope) : std::vector<Value>{};
        return (*m.fn)(call, in);
      }
      if (!m.is_undefined()) return m;
      return bad();
    }
    if (operand.type == VT::kBool) {
      if (is_call) return bad();
      if (name == "bool") return operand;
      if (name == "int") return Value::integer(operand.b ? 1 : 0);
      if (name == "float") return Value::floating(operand.b ? 1 : 0);
      if (name == "string") return Value::string(operand.b ? "true" : "false");
      return bad();
    }
    return bad();
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.rfind("chat template line", 0) == 0) throw;
    runtime_error(filter, what);
  }
}

}  // namespace dsv3::jinja
