// Each dsv3 subcommand lives in its own cmd_<name>.cpp and adds itself to the app here.
// Callbacks throw dsv3::Error for bad input; main() prints it and exits with 2.
#pragma once

#include <CLI/CLI.hpp>

namespace dsv3::cli {

void add_logits_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_init_command(CLI::App& app);
// tokenize, detokenize, template (cmd_tokenizer.cpp)
void add_tokenizer_commands(CLI::App& app);
void add_bench_command(CLI::App& app);
// cast, quantize (cmd_cast.cpp)
void add_cast_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_serve_command(CLI::App& app);

}  // namespace dsv3::cli
