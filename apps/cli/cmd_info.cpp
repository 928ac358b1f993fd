#include "apps/cli/commands.h"
namespace dsv3::cli {
void add_info_command(CLI::App&) {}
void add_init_command(CLI::App&) {}
}  // namespace dsv3::cli
