// Errors answered to an HTTP client, in the OpenAI error shape that the official SDKs parse
// (SERVER.md §0 "Error bodies", §1.10): {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace dsv3::serve {

class ApiError : public Error {
 public:
  // status: the HTTP status (400, 401, 404, 413, 429, 503...). type: OpenAI/vLLM error type
  // ("invalid_request_error", "authentication_error", "not_found_error", ...). param: the request
  // field at fault ("" = none, sent as null). code: a string code ("" = the status number).
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "")
      : Error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}

  int status;
  std::string type;
  std::string param;
  std::string code;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // added to the error object and the top level
  std::vector<std::pair<std::string, std::string>> headers;           // sent with the response (Allow: ...)
};

// 400 naming the field: "'temperature' must be a number, got string".
[[noreturn]] inline void bad_field(const std::string& field, const std::string& what) {
  throw ApiError(400, "'" + field + "' " + what, "invalid_request_error", field);
}

// The response body for `e`.
inline nlohmann::ordered_json error_body(const ApiError& e) {
  nlohmann::ordered_json err = {{"message", e.what()},
                                {"type", e.type},
                                {"param", e.param.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.param)}};
  if (e.code.empty())
    err["code"] = e.status;
  else
    err["code"] = e.code;
  nlohmann::ordered_json body = {{"error", err}};
  for (const auto& [k, v] : e.extra.items()) {
    body["error"][k] = v;
    body[k] = v;
  }
  return body;
}

}  // namespace dsv3::serve
