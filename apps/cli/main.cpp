// dsv3: one binary, one subcommand per job. This is the only place that picks concrete
// backends and communicators (via the commands it wires in).
#include <cstdio>
#include <exception>
#include <new>

#include "apps/cli/commands.h"
#include "base/error.h"

int main(int argc, char** argv) {
  CLI::App app{"dsv3: DeepSeek-V3 family inference engine (Hugging Face checkpoints, CPU)", "dsv3"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every command");
  dsv3::cli::add_logits_command(app);
  dsv3::cli::add_info_command(app);
  dsv3::cli::add_init_command(app);
  dsv3::cli::add_chat_command(app);
  dsv3::cli::add_generate_command(app);
  dsv3::cli::add_cast_command(app);
  dsv3::cli::add_quantize_command(app);
  dsv3::cli::add_tokenizer_commands(app);
  dsv3::cli::add_bench_command(app);
  dsv3::cli::add_serve_command(app);
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::string names;
    for (const auto* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "dsv3: unknown command '%s'; commands: %s\nRun dsv3 --help for usage.\n", argv[1],
                   names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Bad flags are bad input: say what is wrong and exit 2 (CLI11's own codes vary).
    std::fprintf(stderr, "dsv3: %s\nRun with --help for usage.\n", e.what());
    return 2;
  } catch (const dsv3::Error& e) {
    std::fprintf(stderr, "dsv3: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    // Any exception is bad input by the time it gets here (issue 19): never an abort.
    std::fprintf(stderr, "dsv3: error: out of memory: an input asks for more memory than this machine has (is a size "
                 "or count in it wrong?)\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsv3: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
