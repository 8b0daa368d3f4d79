#include "tools/commands.h"

namespace shoal::tools {

void AddCheckCommand(CLI::App& app) { app.add_subcommand("check", "not yet implemented"); }

}  // namespace shoal::tools
