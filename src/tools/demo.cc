// `shoal demo`: a guided, in-process tour of the engine API (include/shoal/engine.h) on a small
// generated data set. It defines five segments from docs/language.md, streams 30 days of
// Segment-spec messages through Engine::IngestJson, then moves a VirtualClock forward and shows
// the enters and exits that time alone causes, and one Explain() tree.
//
// The data is deterministic for a given --users/--seed: the generator draws only raw 64-bit
// numbers from std::mt19937_64 (whose sequence the standard fixes) and maps them itself, so the
// output does not depend on the standard library's distributions.

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shoal/engine.h"
#include "shoal/time.h"
#include "tools/commands.h"
#include "tools/demo_data.h"

namespace shoal::tools {
namespace {

struct DemoOptions {
  int users = 2000;
  uint64_t seed = 42;
};

constexpr size_t kWidth = 100;  // output columns

std::string Thousands(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

// Cuts `text` to `width` columns, ending in "...".
std::string Fit(const std::string& text, size_t width) {
  return text.size() <= width ? text : text.substr(0, width - 3) + "...";
}

void PrintExplain(const ExplainNode& node, int depth) {
  const size_t indent = 4 + 2 * static_cast<size_t>(depth);
  fmt::print("{:{}}{} {}\n", "", indent, node.value ? "[yes]" : "[no] ",
             Fit(node.text, kWidth - indent - 6));
  std::string seen = node.detail;
  if (node.next_change) {
    seen +=
        fmt::format("{}can change at {}", seen.empty() ? "" : "; ", FormatTime(*node.next_change));
  }
  if (!seen.empty()) fmt::print("{:{}}{}\n", "", indent + 6, Fit(seen, kWidth - indent - 6));
  for (const ExplainNode& child : node.children) PrintExplain(child, depth + 1);
}

int RunDemo(const DemoOptions& opt) {
  const Millis start = *ParseTime("2026-10-01T00:00:00Z");
  const Millis now = start + 30 * kDay;
  VirtualClock clock(now);
  Options options;
  options.keep_changes = false;  // the listener below sees every change as it is emitted
  Engine engine(&clock, options);
  std::vector<Change> changes;
  engine.SetChangeListener([&changes](const Change& c) { changes.push_back(c); });

  const DataSet data = GenerateDemoData(opt.users, opt.seed, start, now);
  fmt::print("Shoal demo: {} users, {} messages ({} identify, {} track), seed {},\n",
             Thousands(static_cast<uint64_t>(opt.users)), Thousands(data.lines.size()),
             Thousands(data.identifies), Thousands(data.tracks), opt.seed);
  fmt::print("generated over 30 days up to {}, where the engine's virtual clock stands.\n\n",
             FormatTime(now));

  // 1. Segments first, so that the data below streams into live segments.
  fmt::print("1. Five segments (docs/language.md), defined before any data arrives:\n");
  std::vector<std::string> defined;
  for (const DemoSegment& s : kDemoSegments) {
    Result<SegmentInfo> r = engine.CreateSegment(s.name, s.definition);
    if (!r.ok()) {
      fmt::print("   {:<17} NOT CREATED: {}\n", s.name, r.status().ToString());
      continue;
    }
    defined.push_back(s.name);
    std::string text = r->definition;
    const size_t room = kWidth - 21;
    const size_t cut = text.size() > room ? text.rfind(" and ", room) : std::string::npos;
    if (cut != std::string::npos) {
      fmt::print("   {:<17} {}\n{:21}{}\n", s.name, text.substr(0, cut), "", text.substr(cut + 1));
    } else {
      fmt::print("   {:<17} {}\n", s.name, text);
    }
  }
  if (defined.empty()) {
    fmt::print("No segment could be created; is the engine built?\n");
    return 1;
  }

  // 2. Stream the messages.
  changes.clear();
  uint64_t rejected = 0;
  std::string first_error;
  const auto t0 = std::chrono::steady_clock::now();
  for (const Line& line : data.lines) {
    Status st = engine.IngestJson(line.json);
    if (!st.ok() && rejected++ == 0) first_error = st.ToString();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("\n2. Ingested {} messages with IngestJson in {:.2f} s ({} msg/s); {} enters/exits.\n",
             Thousands(data.lines.size() - rejected), secs,
             Thousands(static_cast<uint64_t>(static_cast<double>(data.lines.size()) /
                                             std::max(secs, 1e-9))),
             Thousands(changes.size()));
  if (rejected > 0) fmt::print("   {} rejected; the first: {}\n", rejected, first_error);
  std::vector<std::string> sizes_before;
  for (const std::string& name : defined) {
    Result<uint64_t> n = engine.Count(name);
    sizes_before.push_back(n.ok() ? Thousands(*n) : "?");
    fmt::print("   {:<17} {:>6} members{}\n", name, sizes_before.back(),
               n.ok() ? "" : "  (" + n.status().ToString() + ")");
  }

  // 3. Let time pass with no new data: every window edge is a deadline in the engine's timer
  //    heap, and AdvanceTime() fires those that are due.
  fmt::print("\n3. Time passes, no new data. AdvanceTime() fires the deadlines that are due:\n");
  constexpr std::pair<const char*, Millis> kSteps[] = {
      {"1h", kHour}, {"1d", kDay}, {"7d", kWeek}, {"30d", 30 * kDay}};
  for (const auto& [label, step] : kSteps) {
    changes.clear();
    clock.Advance(step);
    engine.AdvanceTime();
    std::map<std::string, std::pair<int, int>> per_segment;  // name -> (enters, exits)
    int enters = 0, exits = 0;
    for (const Change& c : changes) {
      auto& [in, out] = per_segment[c.segment];
      if (c.kind == ChangeKind::kEnter) {
        ++in, ++enters;
      } else {
        ++out, ++exits;
      }
    }
    std::string by_segment;
    for (const auto& [name, io] : per_segment) {
      by_segment += fmt::format("{}{}", by_segment.empty() ? "" : ", ", name);
      if (io.first > 0) by_segment += fmt::format(" +{}", io.first);
      if (io.second > 0) by_segment += fmt::format(" -{}", io.second);
    }
    fmt::print("   +{:<4} now {}: {} enters, {} exits\n", label, FormatTime(clock.Now()), enters,
               exits);
    if (!by_segment.empty()) fmt::print("         {}\n", by_segment);
    // A few samples: the first change of each segment that changed, up to three.
    int shown = 0;
    for (const auto& [name, io] : per_segment) {
      if (shown++ == 3) break;
      const Change& c = *std::find_if(changes.begin(), changes.end(),
                                      [&](const Change& x) { return x.segment == name; });
      fmt::print("         #{:<5} {} {:<17} {:<6} cause {}, {} {}\n", c.seq,
                 c.kind == ChangeKind::kEnter ? "enter" : "exit ", c.segment, c.profile,
                 CauseName(c.cause), c.cause == Cause::kTime ? "deadline" : "at",
                 FormatTime(c.event_time));
    }
  }
  fmt::print("   Sizes, {} -> {}:\n", FormatTime(now), FormatTime(clock.Now()));
  for (size_t i = 0; i < defined.size(); ++i) {
    Result<uint64_t> n = engine.Count(defined[i]);
    fmt::print("   {:<17} {:>6} -> {:>6}\n", defined[i], sizes_before[i],
               n.ok() ? Thousands(*n) : "?");
  }

  // 4. Why is a profile in a segment? Prefer a segment that time filled.
  for (const char* preferred :
       {"lapsed", "high_value", "buyers_who_click", "new_signups", "cart_abandoners"}) {
    Result<std::vector<std::string>> members = engine.Members(preferred);
    if (!members.ok() || members->empty()) continue;
    const std::string& who = members->front();
    Result<ExplainNode> why = engine.Explain(preferred, who);
    fmt::print("\n4. Explain(\"{}\", \"{}\"): each node's value now and what it saw:\n", preferred,
               who);
    if (why.ok()) {
      PrintExplain(*why, 0);
    } else {
      fmt::print("    {}\n", why.status().ToString());
    }
    break;
  }

  const EngineStats stats = engine.Stats();
  fmt::print(
      "\nEngine: {} profiles, {} records retained, {} changes, {} deadlines fired.\n"
      "{} (segment, profile) evaluations in all: an event re-evaluates only the segments that\n"
      "depend on it, for its profile; a deadline, one segment for one profile.\n",
      Thousands(stats.profiles), Thousands(stats.records), Thousands(stats.changes),
      Thousands(stats.timer_fires), Thousands(stats.evaluations));
  fmt::print(
      "\nTry next:\n"
      "  shoal demo --users 20000 --seed 7    a bigger or a different data set\n"
      "  echo 'PERFORMED \"Login\" WITHIN 168h' | shoal check\n"
      "                                       validate a definition, print its canonical form\n"
      "  docs/language.md                     the segment language, every condition exactly\n"
      "  docs/ARCHITECTURE.md                 how an event or a deadline becomes a change\n");
  return 0;
}

}  // namespace

void AddDemoCommand(CLI::App& app) {
  auto opt = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "Run the engine in-process on a small generated data set and show what it does");
  cmd->add_option("--users", opt->users, "number of users to generate (~25 events each)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "random seed; the same seed gives the same data")
      ->capture_default_str();
  cmd->callback([opt] {
    if (int rc = RunDemo(*opt); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace shoal::tools
