// The demo data set shared by `shoal demo` (in-process tour) and `shoal serve --demo` (a server
// that starts with data and segments): users with traits, and browse / cart / email sessions over a
// time range, generated from a seed by code that does not use the engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shoal/time.h"

namespace shoal::tools {

struct DemoSegment {
  const char* name;
  const char* definition;
};

// Five of the examples in docs/language.md, chosen so that each one reacts to time differently.
extern const DemoSegment kDemoSegments[5];

struct Line {
  Millis ts;
  uint64_t seq;  // generation order: breaks timestamp ties deterministically
  std::string json;
};

struct DataSet {
  std::vector<Line> lines;  // sorted by (ts, seq): time order, as a tracking pipeline sends it
  uint64_t identifies = 0;
  uint64_t tracks = 0;
};

// ~25 events per user over [start, now): sessions of 5-180 s gaps, with a Zipf-like spread of
// activity, 25 % of users churning, 6 % signing up inside the window and a tenth of free users
// upgrading to pro at some point. One JSON Segment-spec call per line.
DataSet GenerateDemoData(int users, uint64_t seed, Millis start, Millis now);

}  // namespace shoal::tools
