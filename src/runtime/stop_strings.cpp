#include "runtime/stop_strings.h"

#include <algorithm>

namespace dsv3 {

StopStrings::StopStrings(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopStrings::push(std::string_view piece) {
  if (stopped_) return {};
  held_ += piece;
  // Earliest complete stop string.
  size_t cut = std::string::npos;
  for (const auto& s : stops_)
    if (const size_t at = held_.find(s); at < cut || (at == cut && at != std::string::npos && s.size() > matched_.size())) {
      cut = at;
      matched_ = s;
    }
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    released_ += out;
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_)
    for (size_t n = std::min(s.size() - 1, held_.size()); n > hold; --n)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  released_ += out;
  return out;
}

std::string StopStrings::flush() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  released_ += out;
  return out;
}

}  // namespace dsv3
