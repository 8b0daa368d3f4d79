// The subcommands of the `shoal` binary. Each lives in its own file and registers itself on the
// CLI11 app; main.cc only wires them together.
#pragma once

#include <CLI/CLI.hpp>

namespace shoal::tools {

void AddCheckCommand(CLI::App& app);   // check.cc: validate and print definitions
void AddBenchCommand(CLI::App& app);   // bench.cc: `shoal bench peers DATA_DIR --out OUT_DIR`, ...
void AddDemoCommand(CLI::App& app);    // demo.cc: an in-process demo on a small generated data set
void AddServeCommand(CLI::App& app);   // serve.cc: the HTTP server
void AddImportCommand(CLI::App& app);  // import.cc: bulk history into a data directory
void AddHttpBenchCommand(CLI::App* bench);  // bench_http.cc: `shoal bench http` (under bench)

}  // namespace shoal::tools
