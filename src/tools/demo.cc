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

namespace shoal::tools {
namespace {

struct DemoOptions {
  int users = 2000;
  uint64_t seed = 42;
};

struct DemoSegment {
  const char* name;
  const char* definition;
};

// Five of the examples in docs/language.md, chosen so that each one reacts to time differently.
constexpr DemoSegment kSegments[] = {
    {"buyers_who_click",
     R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)"},
    {"cart_abandoners", R"(performed "Product Added" within 1d not followed by "Order Completed")"},
    {"high_value", R"(sum(total) of "Order Completed" within 90d > 500)"},
    {"lapsed", R"(performed "Login" at least 5 times between 90d ago and 30d ago and )"
               R"(did not perform "Login" within 30d)"},
    {"new_signups", R"(signup_at within 7d and did not perform "Activated")"},
};

// Raw draws from the engine-independent generator, mapped by hand (see the file comment).
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  uint64_t Below(uint64_t n) { return gen_() % n; }                        // [0, n)
  double Unit() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }  // [0, 1)
  bool Chance(double p) { return Unit() < p; }
  int64_t Between(int64_t lo, int64_t hi) {  // [lo, hi)
    return hi <= lo ? lo : lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo)));
  }
  // An instant in [lo, hi) on a whole second (lo and hi are whole seconds), for readable times.
  Millis TimeBetween(Millis lo, Millis hi) { return Between(lo / kSecond, hi / kSecond) * kSecond; }
  template <typename T, size_t N>
  const char* Weighted(const std::pair<T, int> (&choices)[N]) {
    int total = 0;
    for (const auto& c : choices) total += c.second;
    int r = static_cast<int>(Below(static_cast<uint64_t>(total)));
    for (const auto& c : choices) {
      if ((r -= c.second) < 0) return c.first;
    }
    return choices[N - 1].first;
  }

 private:
  std::mt19937_64 gen_;
};

constexpr std::pair<const char*, int> kCountries[] = {
    {"US", 30}, {"DE", 12}, {"FR", 10}, {"GB", 10}, {"ES", 6}, {"IT", 6},
    {"NL", 5},  {"BR", 5},  {"IN", 6},  {"CA", 4},  {"PT", 4}, {"AU", 2}};
constexpr std::pair<const char*, int> kPlans[] = {{"free", 60}, {"pro", 30}, {"enterprise", 10}};
constexpr std::pair<const char*, int> kPaths[] = {{"/", 30},     {"/pricing", 10}, {"/product", 25},
                                                  {"/blog", 15}, {"/cart", 10},    {"/help", 10}};
constexpr std::pair<const char*, int> kCategories[] = {
    {"apparel", 30}, {"shoes", 20}, {"electronics", 20}, {"home", 20}, {"books", 10}};
constexpr std::pair<const char*, int> kCampaigns[] = {
    {"welcome", 20}, {"weekly", 50}, {"black-friday", 30}};

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
// upgrading to pro at some point.
DataSet Generate(int users, uint64_t seed, Millis start, Millis now) {
  Rng rng(seed);
  DataSet data;
  uint64_t seq = 0;
  auto add = [&](Millis ts, std::string json) {
    if (ts >= now) return;
    ++(json.starts_with(R"({"type":"identify")") ? data.identifies : data.tracks);
    data.lines.push_back({ts, seq++, std::move(json)});
  };
  auto msg_id = [&] { return fmt::format("m{}-{}", seed, seq); };

  struct User {
    Millis from, to;
    double weight;
  };
  std::vector<User> profile(static_cast<size_t>(users));
  std::vector<int> rank(static_cast<size_t>(users));
  for (int i = 0; i < users; ++i) rank[static_cast<size_t>(i)] = i;
  for (int i = users - 1; i > 0; --i) {
    std::swap(rank[static_cast<size_t>(i)], rank[rng.Below(static_cast<uint64_t>(i) + 1)]);
  }
  for (int i = 0; i < users; ++i) {
    const std::string id = fmt::format("u{}", i + 1);
    const bool recent = rng.Chance(0.06);
    const Millis signup =
        recent ? rng.TimeBetween(start, now - kHour) : rng.TimeBetween(now - kDay * 365 * 3, start);
    User& u = profile[static_cast<size_t>(i)];
    u.from = std::max(start, signup);
    u.to = rng.Chance(0.25) ? rng.TimeBetween(u.from, now) : now;
    u.weight = 1.0 / (rank[static_cast<size_t>(i)] + 50.0);
    const char* plan = rng.Weighted(kPlans);
    add(u.from, fmt::format(R"({{"type":"identify","userId":"{}","messageId":"{}",)"
                            R"("timestamp":"{}","traits":{{"country":"{}","plan":"{}",)"
                            R"("age":{},"signup_at":"{}"}}}})",
                            id, msg_id(), FormatTime(u.from), rng.Weighted(kCountries), plan,
                            rng.Between(18, 76), FormatTime(signup)));
    if (std::string_view(plan) == "free" && rng.Chance(0.10)) {
      const Millis at = rng.TimeBetween(u.from, u.to);
      add(at, fmt::format(R"({{"type":"identify","userId":"{}","messageId":"{}","timestamp":"{}",)"
                          R"("traits":{{"plan":"pro"}}}})",
                          id, msg_id(), FormatTime(at)));
    }
  }

  std::vector<double> cumulative(profile.size());
  double total_weight = 0;
  for (size_t i = 0; i < profile.size(); ++i) cumulative[i] = total_weight += profile[i].weight;

  const uint64_t target = static_cast<uint64_t>(users) * 25;
  for (uint64_t generated = 0; generated < target;) {
    const size_t i = static_cast<size_t>(
        std::lower_bound(cumulative.begin(), cumulative.end(), rng.Unit() * total_weight) -
        cumulative.begin());
    const User& u = profile[std::min(i, profile.size() - 1)];
    if (u.to <= u.from) continue;
    const std::string id = fmt::format("u{}", std::min(i, profile.size() - 1) + 1);
    Millis t = rng.TimeBetween(u.from, u.to);
    auto track = [&](const char* event, const std::string& props) {
      ++generated;
      add(t, fmt::format(R"({{"type":"track","userId":"{}","event":"{}","messageId":"{}",)"
                         R"("timestamp":"{}","properties":{{{}}}}})",
                         id, event, msg_id(), FormatTime(t), props));
      t += rng.Between(5, 181) * kSecond;
    };
    auto page = [&] { track("Page Viewed", fmt::format(R"("path":"{}")", rng.Weighted(kPaths))); };
    const uint64_t kind = rng.Below(100);
    if (kind < 45) {  // browse
      track("Login", R"("method":"password")");
      for (int n = static_cast<int>(rng.Between(1, 5)); n > 0; --n) page();
    } else if (kind < 75) {  // cart
      page();
      const char* category = rng.Weighted(kCategories);
      for (int n = static_cast<int>(rng.Between(1, 3)); n > 0; --n) {
        track("Product Added", fmt::format(R"("category":"{}")", category));
      }
      if (rng.Chance(0.4)) {
        // Log-uniform between 15 and 400, in cents.
        const double total = std::round(15.0 * std::pow(400.0 / 15.0, rng.Unit()) * 100) / 100;
        track("Order Completed",
              fmt::format(R"("total":{:.2f},"currency":"EUR","category":"{}")", total, category));
      }
    } else {  // email
      track("Email Clicked", fmt::format(R"("campaign":"{}")", rng.Weighted(kCampaigns)));
      for (int n = static_cast<int>(rng.Between(0, 3)); n > 0; --n) page();
    }
  }
  std::sort(data.lines.begin(), data.lines.end(), [](const Line& a, const Line& b) {
    return a.ts != b.ts ? a.ts < b.ts : a.seq < b.seq;
  });
  return data;
}

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

  const DataSet data = Generate(opt.users, opt.seed, start, now);
  fmt::print("Shoal demo: {} users, {} messages ({} identify, {} track), seed {},\n",
             Thousands(static_cast<uint64_t>(opt.users)), Thousands(data.lines.size()),
             Thousands(data.identifies), Thousands(data.tracks), opt.seed);
  fmt::print("generated over 30 days up to {}, where the engine's virtual clock stands.\n\n",
             FormatTime(now));

  // 1. Segments first, so that the data below streams into live segments.
  fmt::print("1. Five segments (docs/language.md), defined before any data arrives:\n");
  std::vector<std::string> defined;
  for (const DemoSegment& s : kSegments) {
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
