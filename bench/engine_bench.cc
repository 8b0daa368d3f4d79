// Engine micro-benchmarks (Google Benchmark). Messages are decoded before timing, so these measure
// the engine alone; `shoal bench peers` measures the whole path with parsing.
//
//   BM_EventVsSegments/N   per-event cost with N live segments when each event touches one:
//                          must stay flat as N grows (no O(segments) work per event).
//   BM_EventWithComputed/N per-event cost with 10 segments and N live computed traits (counts,
//                          sums, max and scores over the same events, one segment reading one):
//                          compare N=0 with N=4 and 16 in one run.
//   BM_Expiry/N            N profiles leave a window at the same instant: time to emit N exits.
//   BM_TopNUpdate/K        200k profiles, events that change one profile's 90-day sum: K=0 with
//                          `sum(...) > 500`, K=1 with `top 1% by sum(...)`, K=2 both, K=3
//                          `top 1% by computed.spend` (spend: that sum as a computed trait);
//                          counters give the (segment, profile) evaluations and changes per event.
//   BM_ReplayPeers         the shared/peers events (SHOAL_BENCH_NDJSON, first 1M lines) through
//                          the 7 user segments, pre-decoded.
//   BM_LongRunState/W      a long-running engine: 1,000 users each viewing something every two
//                          hours for 90 days, the clock following the events, one segment
//                          `performed "Viewed" within 1d` (W=0) or `performed "Viewed"` (W=1,
//                          ever): segment state per profile at the end (counter), which the
//                          1-day window keeps to about a day of entries (series horizons).
//   BM_Merge/N/U           one identity merge (alias) of an anonymous profile with N events into
//                          a known one with 20, with the 7 peers segments live, in a store of U
//                          other users with 10 events each: must not grow with U.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "ingest/decode.h"
#include "shoal/engine.h"

namespace shoal {
namespace {

const Millis kNow = *ParseTime("2026-11-01T00:00:00Z");

Message Track(const std::string& user, const std::string& event, Millis ts) {
  Message m;
  m.type = MessageType::kTrack;
  m.user_id = user;
  m.event = event;
  m.timestamp = ts;
  m.properties.push_back({"price", Value::Number(9.99)});
  return m;
}

void BM_EventVsSegments(benchmark::State& state) {
  const int segments = static_cast<int>(state.range(0));
  VirtualClock clock(kNow);
  Options opts;
  opts.keep_changes = false;
  Engine engine(&clock, opts);
  for (int i = 0; i < segments; ++i)
    (void)engine.CreateSegment(fmt::format("s{}", i),
                               fmt::format(R"(performed "E{}" at least 3 times within 30d)", i));
  // 10k users; every event is one of E0..E3, so it touches exactly one segment.
  std::vector<Message> msgs;
  for (int i = 0; i < 100000; ++i)
    msgs.push_back(
        Track(fmt::format("u{}", i % 10000), fmt::format("E{}", i % 4), kNow - kDay + i * 100));
  size_t k = 0;
  for (auto _ : state) {
    (void)engine.Ingest(msgs[k]);
    if (++k == msgs.size()) {
      k = 0;  // the next round happens later: keep event time moving forward
      state.PauseTiming();
      for (Message& m : msgs) m.timestamp += 100000 * 100;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["evals_per_event"] =
      static_cast<double>(engine.Stats().evaluations) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_EventVsSegments)->Arg(10)->Arg(100)->Arg(1000);

void BM_EventWithComputed(benchmark::State& state) {
  const int computed = static_cast<int>(state.range(0));
  VirtualClock clock(kNow);
  Options opts;
  opts.keep_changes = false;
  Engine engine(&clock, opts);
  for (int i = 0; i < 10; ++i)
    (void)engine.CreateSegment(fmt::format("s{}", i),
                               fmt::format(R"(performed "E{}" at least 3 times within 30d)", i));
  for (int i = 0; i < computed; ++i) {
    const int e = i % 4;
    std::string def;
    switch (i / 4 % 4) {
      case 0:
        def = fmt::format(R"(count of "E{}" within 30d)", e);
        break;
      case 1:
        def = fmt::format(R"(sum(price) of "E{}" within 30d)", e);
        break;
      case 2:
        def = fmt::format(R"(max(price) of "E{}" within 7d)", e);
        break;
      default:
        def = fmt::format(R"(10 points if performed "E{}" within 7d + 5 points if performed "E{}")",
                          e, (e + 1) % 4);
    }
    (void)engine.CreateComputedTrait(fmt::format("c{}", i), def);
  }
  if (computed > 0) (void)engine.CreateSegment("reads_c0", "computed.c0 >= 3");
  std::vector<Message> msgs;
  for (int i = 0; i < 100000; ++i)
    msgs.push_back(
        Track(fmt::format("u{}", i % 10000), fmt::format("E{}", i % 4), kNow - kDay + i * 100));
  size_t k = 0;
  for (auto _ : state) {
    (void)engine.Ingest(msgs[k]);
    if (++k == msgs.size()) {
      k = 0;
      state.PauseTiming();
      for (Message& m : msgs) m.timestamp += 100000 * 100;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["evals_per_event"] =
      static_cast<double>(engine.Stats().evaluations) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_EventWithComputed)->Arg(0)->Arg(4)->Arg(16);

void BM_Expiry(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    VirtualClock clock(kNow);
    Options opts;
    opts.keep_changes = false;
    Engine engine(&clock, opts);
    (void)engine.CreateSegment("visited", R"(performed "Visit" within 1h)");
    Message m = Track("", "Visit", kNow - kMinute);
    for (int i = 0; i < n; ++i) {
      m.user_id = "u" + std::to_string(i);
      (void)engine.Ingest(m);
    }
    clock.Set(kNow - kMinute + kHour + 1);
    state.ResumeTiming();
    size_t exits = engine.AdvanceTime();
    state.PauseTiming();
    if (exits != static_cast<size_t>(n)) state.SkipWithError("not every profile exited");
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Expiry)->Arg(1000000)->Iterations(1)->Unit(benchmark::kMillisecond);

// The 7 user segments of the shared/peers workload.
const char* const kPeersDefs[] = {
    R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)",
    R"(performed "Product Added" within 1d not followed by "Order Completed")",
    R"(performed "Flight Booked" where destination = "Lisbon" and did not perform "Trip Taken" within 180d)",
    R"(performed "Savings Opened" and did not perform "Transfer Set Up")",
    R"(sum(total) of "Order Completed" within 90d > 500)",
    R"(country in ("DE", "FR") and plan = "pro" and age between 25 and 40)",
    R"(performed "Login" at least 5 times between 90d ago and 30d ago and did not perform "Login" within 30d)"};
// The cost of keeping a top-N set exact: each event changes one profile's value, which moves it in
// the ranking and re-evaluates the profiles whose side of the boundary changed (usually none or
// the profile and one at the boundary), beside the same events with a threshold segment.
void BM_TopNUpdate(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  constexpr int kProfiles = 200000;
  VirtualClock clock(kNow);
  Options opts;
  opts.keep_changes = false;
  Engine engine(&clock, opts);
  uint64_t changes = 0;
  engine.SetChangeListener([&](const Change&) { ++changes; });
  auto order = [](int user, double total, Millis ts) {
    Message m = Track(fmt::format("u{}", user), "Order Completed", ts);
    m.properties = {{"total", Value::Number(total)}};
    return m;
  };
  // Every profile has one order 10 days ago, of 0.5 to 999.5.
  for (int i = 0; i < kProfiles; ++i)
    (void)engine.Ingest(order(i, (i * 7919LL) % 1000 + 0.5, kNow - 10 * kDay));
  if (kind == 0 || kind == 2)
    (void)engine.CreateSegment("spenders", R"(sum(total) of "Order Completed" within 90d > 500)");
  if (kind == 1 || kind == 2)
    (void)engine.CreateSegment("whales", R"(top 1% by sum(total) of "Order Completed" within 90d)");
  if (kind == 3) {  // the same ranking, by a computed trait holding the sum
    (void)engine.CreateComputedTrait("spend", R"(sum(total) of "Order Completed" within 90d)");
    (void)engine.CreateSegment("whales", "top 1% by computed.spend");
  }
  // Then orders of 1 to 300 for random profiles, in the last day: values only grow, so profiles
  // keep crossing both the threshold and the moving top-1% boundary.
  std::vector<Message> msgs;
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < 100000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    msgs.push_back(
        order(static_cast<int>(x % kProfiles), static_cast<double>(x % 300 + 1), kNow - kDay + i));
  }
  const uint64_t evals0 = engine.Stats().evaluations, changes0 = changes;
  size_t k = 0;
  for (auto _ : state) {
    (void)engine.Ingest(msgs[k]);
    if (++k == msgs.size()) k = 0;
  }
  state.SetItemsProcessed(state.iterations());
  const double n = static_cast<double>(state.iterations());
  state.counters["evals_per_event"] = static_cast<double>(engine.Stats().evaluations - evals0) / n;
  state.counters["changes_per_event"] = static_cast<double>(changes - changes0) / n;
}
BENCHMARK(BM_TopNUpdate)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->Iterations(200000);

void BM_LongRunState(benchmark::State& state) {
  const bool ever = state.range(0) != 0;
  constexpr int kUsers = 1000, kDays = 90, kPerDay = 12;
  double bytes_per_profile = 0;
  for (auto _ : state) {
    const Millis start = kNow - kDays * kDay;
    VirtualClock clock(start);
    Options opts;
    opts.keep_changes = false;
    Engine engine(&clock, opts);
    (void)engine.CreateSegment("viewed",
                               ever ? R"(performed "Viewed")" : R"(performed "Viewed" within 1d)");
    Message m = Track("", "Viewed", 0);
    const Millis step = kDay / kPerDay / kUsers;
    for (int64_t i = 0; i < int64_t{kUsers} * kDays * kPerDay; ++i) {
      m.user_id = fmt::format("u{}", i % kUsers);
      m.timestamp = start + i * step;
      clock.Set(m.timestamp + 1);
      (void)engine.Ingest(m);
    }
    bytes_per_profile = static_cast<double>(engine.Stats().state_bytes) / kUsers;
  }
  state.counters["state_bytes_per_profile"] = bytes_per_profile;
}
BENCHMARK(BM_LongRunState)->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_ReplayPeers(benchmark::State& state) {
  const char* path = std::getenv("SHOAL_BENCH_NDJSON");
  std::ifstream in(path ? path : "build/peers-smoke/events.ndjson");  // scripts/test.sh writes it
  if (!in) {
    state.SkipWithError("set SHOAL_BENCH_NDJSON to a shared/peers events.ndjson");
    return;
  }
  std::vector<Message> msgs;
  ingest::Decoder decoder;
  ingest::DecodeOptions dopts;
  std::string line;
  while (msgs.size() < 1000000 && std::getline(in, line)) {
    Message m;
    if (decoder.Decode(line, dopts, &m).ok()) msgs.push_back(std::move(m));
  }
  for (auto _ : state) {
    state.PauseTiming();
    VirtualClock clock(kNow);
    Options opts;
    opts.keep_changes = false;
    auto engine = std::make_unique<Engine>(&clock, opts);
    int i = 0;
    for (const char* d : kPeersDefs) (void)engine->CreateSegment(fmt::format("s{}", i++), d);
    state.ResumeTiming();
    for (const Message& m : msgs) (void)engine->Ingest(m);
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * msgs.size());
}
BENCHMARK(BM_ReplayPeers)->Iterations(3)->Unit(benchmark::kMillisecond);

// Events of the kinds the peers segments read, with a total for the sum.
Message PeersEvent(int i, Millis ts) {
  static const char* const kNames[] = {"Order Completed", "Email Clicked", "Product Added", "Login",
                                       "Savings Opened"};
  Message m = Track("", kNames[i % 5], ts);
  m.properties.push_back({"total", Value::Number(10 + i % 90)});
  return m;
}

void BM_Merge(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int users = static_cast<int>(state.range(1));
  VirtualClock clock(kNow);
  Options opts;
  opts.keep_changes = false;
  Engine engine(&clock, opts);
  int s = 0;
  for (const char* d : kPeersDefs) (void)engine.CreateSegment(fmt::format("s{}", s++), d);
  for (int u = 0; u < users; ++u)
    for (int e = 0; e < 10; ++e) {
      Message m = PeersEvent(u + e, kNow - (e + 1) * kHour);
      m.user_id = "u" + std::to_string(u);
      (void)engine.Ingest(m);
    }
  Message alias;
  alias.type = MessageType::kAlias;
  alias.timestamp = kNow;
  int k = 0;
  for (auto _ : state) {
    // Not timed: a fresh anonymous profile with n events and a known one with 20.
    const std::string anon = "anon" + std::to_string(k), known = "known" + std::to_string(k);
    ++k;
    for (int e = 0; e < n; ++e) {
      Message m = PeersEvent(e, kNow - (e % 1000 + 1) * kMinute);
      m.anonymous_id = anon;
      (void)engine.Ingest(m);
    }
    for (int e = 0; e < 20; ++e) {
      Message m = PeersEvent(e + 1, kNow - (e + 1) * kHour);
      m.user_id = known;
      (void)engine.Ingest(m);
    }
    alias.previous_id = anon;
    alias.user_id = known;
    auto t0 = std::chrono::steady_clock::now();
    Status st = engine.Ingest(alias);
    auto t1 = std::chrono::steady_clock::now();
    if (!st.ok()) state.SkipWithError(st.ToString().c_str());
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  state.counters["store_records"] = static_cast<double>(engine.Stats().records);
}
BENCHMARK(BM_Merge)
    ->Args({10, 1000})
    ->Args({10, 100000})
    ->Args({1000, 1000})
    ->Args({1000, 100000})
    ->UseManualTime()
    ->Iterations(1000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace shoal

BENCHMARK_MAIN();
