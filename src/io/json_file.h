// Reading JSON files with errors that name the file, and typed field access that names the field.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace dsv3 {

// Parses the whole file; throws Error "'path': invalid JSON at byte N: ..." on failure.
nlohmann::json read_json_file(const std::string& path);

// Throws Error "'what': invalid JSON at byte N: ..." on failure.
nlohmann::json parse_json(std::string_view text, const std::string& what);

std::string read_text_file(const std::string& path);
void write_text_file(const std::string& path, std::string_view text);

}  // namespace dsv3
