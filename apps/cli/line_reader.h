// Reads the user's lines: through libedit (line editing, history) when stdin is a terminal,
// plainly otherwise, so that chat can be scripted through a pipe.
#pragma once

#include <optional>
#include <string>

namespace dsv3::cli {

class LineReader {
 public:
  LineReader();
  bool interactive() const { return tty_; }
  // The next line without its newline; nullopt at end of input (Ctrl-D). `prompt` is shown
  // only on a terminal.
  std::optional<std::string> read(const std::string& prompt);

 private:
  bool tty_;
};

}  // namespace dsv3::cli
