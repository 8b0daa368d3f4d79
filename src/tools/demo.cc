#include "tools/commands.h"

namespace shoal::tools {

void AddDemoCommand(CLI::App& app) { app.add_subcommand("demo", "not yet implemented"); }

}  // namespace shoal::tools
