#include <CLI/CLI.hpp>

#include "tools/commands.h"

// Read by jemalloc at start-up (ignored when another allocator is linked, as in sanitizer
// builds): back the heap with transparent huge pages where the kernel allows it ("madvise"
// mode). Page faults are expensive on virtual machines; this cut the smoke-size backfill from
// 0.18 s to 0.07 s and raised the live replay ~20 % (docs/benchmarks.md).
extern "C" {
const char* malloc_conf = "thp:always,metadata_thp:always";
}

int main(int argc, char** argv) {
  CLI::App app{"Shoal: real-time segmentation engine"};
  app.require_subcommand(1);
  shoal::tools::AddCheckCommand(app);
  shoal::tools::AddBenchCommand(app);
  shoal::tools::AddDemoCommand(app);
  shoal::tools::AddServeCommand(app);
  shoal::tools::AddImportCommand(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
