#include "io/json_get.h"

#include <cmath>

#include "base/error.h"

namespace dsv3 {

std::string json_excerpt(const nlohmann::json& v) {
  // dump() of a large value would flood the message; the parse depth cap keeps it from recursing far.
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

const nlohmann::json* json_find(const nlohmann::json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

namespace {

std::string field(const std::string& where, std::string_view key) {
  return where.empty() ? fmt::format("'{}'", key) : fmt::format("{}: '{}'", where, key);
}

}  // namespace

std::string json_string(const nlohmann::json& obj, std::string_view key, std::string_view dflt, const std::string& where) {
  const auto* v = json_find(obj, key);
  if (!v) return std::string(dflt);
  if (!v->is_string()) fail("{} must be a string, got {}", field(where, key), json_excerpt(*v));
  return v->get<std::string>();
}

bool json_bool(const nlohmann::json& obj, std::string_view key, bool dflt, const std::string& where) {
  const auto* v = json_find(obj, key);
  if (!v) return dflt;
  if (!v->is_boolean()) fail("{} must be true or false, got {}", field(where, key), json_excerpt(*v));
  return v->get<bool>();
}

double json_number(const nlohmann::json& obj, std::string_view key, double dflt, const std::string& where) {
  const auto* v = json_find(obj, key);
  return v ? json_as_number(*v, field(where, key)) : dflt;
}

int64_t json_integer(const nlohmann::json& obj, std::string_view key, int64_t dflt, const std::string& where,
                     int64_t lo, int64_t hi) {
  const auto* v = json_find(obj, key);
  return v ? json_as_integer(*v, field(where, key), lo, hi) : dflt;
}

double json_as_number(const nlohmann::json& v, const std::string& what) {
  if (!v.is_number()) fail("{} must be a number, got {}", what, json_excerpt(v));
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail("{} must be a finite number, got {}", what, json_excerpt(v));
  return d;
}

int64_t json_as_integer(const nlohmann::json& v, const std::string& what, int64_t lo, int64_t hi) {
  int64_t n = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) fail("{} is {}, beyond the range of a 64-bit integer", what, u);
    n = int64_t(u);
  } else if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else if (v.is_number_float()) {
    // Written as 2.0 by some exporters. Converting a double outside int64's range is undefined
    // behaviour, so the range is checked on the double: [-2^63, 2^63).
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::floor(d) != d) fail("{} must be an integer, got {}", what, json_excerpt(v));
    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
      fail("{} is {}, beyond the range of a 64-bit integer", what, json_excerpt(v));
    if (d < double(lo) || d > double(hi)) fail("{} is {}; it must be between {} and {}", what, json_excerpt(v), lo, hi);
    n = int64_t(d);
  } else {
    fail("{} must be an integer, got {}", what, json_excerpt(v));
  }
  if (n < lo || n > hi) fail("{} is {}; it must be between {} and {}", what, n, lo, hi);
  return n;
}

}  // namespace dsv3
