// Typed access to fields of parsed JSON, for files we did not write (config.json,
// tokenizer.json, tokenizer_config.json, request bodies). nlohmann's own get<T>() and value()
// throw type_error / out_of_range without saying which field: these say which file, which
// field, what type was expected and what was found:
//   tokenizer.json: normalizer: 'type' must be a string, got 5
//
//   const std::string where = path + ": model";
//   double dropout = json_number(model, "dropout", 0.0, where);   // absent or null: 0.0
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace dsv3 {

// At most ~80 characters of `v` as JSON, for error messages.
std::string json_excerpt(const nlohmann::json& v);

// The member `key` of `obj`; nullptr when `obj` is not an object, or the member is absent or null.
const nlohmann::json* json_find(const nlohmann::json& obj, std::string_view key);

// A member or `dflt` when absent or null; any other type is an Error naming `where` and `key`.
std::string json_string(const nlohmann::json& obj, std::string_view key, std::string_view dflt, const std::string& where);
bool json_bool(const nlohmann::json& obj, std::string_view key, bool dflt, const std::string& where);
// Finite numbers only.
double json_number(const nlohmann::json& obj, std::string_view key, double dflt, const std::string& where);
// An integral number (2 and 2.0 alike) within [lo, hi].
int64_t json_integer(const nlohmann::json& obj, std::string_view key, int64_t dflt, const std::string& where,
                     int64_t lo = std::numeric_limits<int64_t>::min(),
                     int64_t hi = std::numeric_limits<int64_t>::max());

// The value itself; `what` names it ("tokenizer.json: added_tokens[3].id").
int64_t json_as_integer(const nlohmann::json& v, const std::string& what,
                        int64_t lo = std::numeric_limits<int64_t>::min(),
                        int64_t hi = std::numeric_limits<int64_t>::max());
double json_as_number(const nlohmann::json& v, const std::string& what);

}  // namespace dsv3
