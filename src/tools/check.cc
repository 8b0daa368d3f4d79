// `shoal check [FILE...]`: parses segment definitions and prints their canonical form, or the
// error with FILE:LINE:COL. Reads standard input when no file is given. One definition per file.
#include <fstream>
#include <iostream>
#include <sstream>

#include "fmt/format.h"
#include "rules/parser.h"
#include "tools/commands.h"

namespace shoal::tools {
namespace {

bool CheckOne(const std::string& label, const std::string& text) {
  auto parsed = rules::Parse(text);
  if (!parsed.ok()) {
    fmt::print(stderr, "{}:{}\n", label, parsed.status().message());
    return false;
  }
  fmt::print("{}\n", rules::Print(*parsed));
  return true;
}

}  // namespace

void AddCheckCommand(CLI::App& app) {
  auto* check =
      app.add_subcommand("check", "Parse segment definitions and print their canonical form");
  auto files = std::make_shared<std::vector<std::string>>();
  check->add_option("FILE", *files, "files with one definition each (default: standard input)");
  check->callback([files] {
    bool ok = true;
    if (files->empty()) {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      ok = CheckOne("<stdin>", ss.str());
    }
    for (const std::string& f : *files) {
      std::ifstream in(f);
      if (!in) {
        fmt::print(stderr, "{}: cannot open\n", f);
        ok = false;
        continue;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      ok = CheckOne(f, ss.str()) && ok;
    }
    if (!ok) std::exit(1);
  });
}

}  // namespace shoal::tools
