// libFuzzer target for the segment language: Parse (and ParseComputed, for computed traits) must
// never crash, hang or assert, and every definition it accepts must print to text that parses back
// to an equal tree.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "rules/parser.h"

// The same for a computed trait's definition (ParseComputed): the corpus holds both kinds.
void CheckComputed(std::string_view text) {
  shoal::Result<shoal::rules::ComputedDef> d = shoal::rules::ParseComputed(text);
  if (!d.ok()) {
    if (d.status().message().empty()) abort();
    return;
  }
  std::string printed = shoal::rules::Print(*d);
  shoal::Result<shoal::rules::ComputedDef> again = shoal::rules::ParseComputed(printed);
  if (!again.ok() || !(*again == *d) || shoal::rules::Print(*again) != printed) {
    std::fprintf(stderr, "computed definition does not round-trip:\n%s\n", printed.c_str());
    abort();
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckComputed(text);
  shoal::Result<shoal::rules::Expr> e = shoal::rules::Parse(text);
  if (!e.ok()) {
    if (e.status().message().empty()) abort();  // every error says where and what
    return 0;
  }
  std::string printed = shoal::rules::Print(*e);
  shoal::Result<shoal::rules::Expr> again = shoal::rules::Parse(printed);
  if (!again.ok()) {
    std::fprintf(stderr, "printed text does not parse:\n%s\n%s\n", printed.c_str(),
                 again.status().message().c_str());
    abort();
  }
  if (!(*again == *e)) {
    std::fprintf(stderr, "round trip changed the definition:\n%s\n", printed.c_str());
    abort();
  }
  // The canonical form is a fixed point.
  if (shoal::rules::Print(*again) != printed) {
    std::fprintf(stderr, "canonical form is not stable:\n%s\n", printed.c_str());
    abort();
  }
  return 0;
}
