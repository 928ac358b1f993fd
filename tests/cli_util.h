// Running the dsv3 binary from tests: $DSV3_BIN, else the build's own (see dsv3_add_test).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace dsv3::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline std::string dsv3_bin() {
  const char* b = std::getenv("DSV3_BIN");
  return b ? b : DSV3_DEFAULT_BIN;
}

// Runs a shell command line as given; output is stdout (add 2>&1 for stderr too).
inline CommandResult run_shell_line(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Runs `dsv3 ARGS` through the shell (ARGS already quoted as needed).
inline CommandResult run_dsv3(const std::string& args, const std::string& stdin_text = "") {
  std::string cmd = dsv3_bin() + " " + args + " 2>&1";
  if (!stdin_text.empty()) cmd = "printf '%s' '" + stdin_text + "' | " + cmd;
  return run_shell_line(cmd);
}

}  // namespace dsv3::test
