#include "tools/commands.h"

namespace shoal::tools {

void AddBenchCommand(CLI::App& app) { app.add_subcommand("bench", "not yet implemented"); }

}  // namespace shoal::tools
