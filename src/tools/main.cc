#include <CLI/CLI.hpp>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Shoal: real-time segmentation engine"};
  app.require_subcommand(1);
  shoal::tools::AddCheckCommand(app);
  shoal::tools::AddBenchCommand(app);
  shoal::tools::AddDemoCommand(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
