// Account micro-benchmarks (Google Benchmark): what account segments add to the cost of an event,
// and what a group call costs. Messages are built before timing, so these measure the engine.
//
//   BM_EventWithAccountSegments/K/A   per-event cost with K user segments and A account segments
//                                     live; every event touches exactly one user condition. A=0
//                                     is the baseline of the same run: the ratio is the price of
//                                     the account segments (a hidden user segment per member
//                                     condition, the account re-evaluation when a member's
//                                     membership flips, the users of the account when the account
//                                     flips).
//   BM_AccountEvent/G/A               per-event cost of a track while A account segments read the
//                                     account's own events (segment i: `performed "E{i%4}" at
//                                     least 3 times within 7d`, so an event re-evaluates A/4 of
//                                     them, for its account only); G=1: the track carries
//                                     context.groupId (its user's account), G=0: the same tracks
//                                     without it, the baseline of the same run.
//   BM_GroupCall/kind                 one group call: 0 = a repeated link with unchanged traits,
//                                     1 = a new user joining an account, 2 = a trait change that
//                                     an account segment reads.
//   BM_EventWithComputedTrait/kind    per-event cost of a track carrying context.groupId with one
//                                     computed trait live, user and account versions side by side:
//                                     0 = none (the baseline), 1 = a user value `count of "E0"
//                                     within 30d`, 2 = the same per account (the account's own
//                                     events), 3 = a user score (`20 points if performed "E0" at
//                                     least 3 times within 7d + 30 points if performed "E1" within
//                                     30d`), 4 = an account score (`20 points if at least 3 members
//                                     (performed "E0" within 7d) + 30 points if performed "E1"
//                                     within 30d`).
//   BM_MemberAggregate/kind           per-event cost of an order (a user computed trait
//                                     `sum(total) of "Order" within 14d` changes with every one),
//                                     side by side: 0 = no account segment (the baseline),
//                                     1 = a member count over it, `at least 3 members
//                                     (computed.spend_14d > 100)`, 2 = `sum(computed.spend_14d) of
//                                     members > 5000`, 3 = `max(...) of members > 400` (the
//                                     per-account multiset), 4 = `avg(...) of members (plan =
//                                     "pro") > 50` (a member filter). An aggregate moves with every
//                                     value change, so its account is re-evaluated on every order,
//                                     where a count only when a member crosses 100.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "fmt/format.h"
#include "shoal/engine.h"

namespace shoal {
namespace {

const Millis kNow = *ParseTime("2026-11-01T00:00:00Z");
constexpr int kUsers = 10000;
constexpr int kAccounts = 1000;  // 10 users per account

Message Track(const std::string& user, const std::string& event, Millis ts) {
  Message m;
  m.type = MessageType::kTrack;
  m.user_id = user;
  m.event = event;
  m.timestamp = ts;
  return m;
}

Message Group(const std::string& user, const std::string& account, Millis ts, double employees) {
  Message m;
  m.type = MessageType::kGroup;
  m.user_id = user;
  m.group_id = account;
  m.timestamp = ts;
  m.traits.push_back({"employees", Value::Number(employees)});
  return m;
}

std::unique_ptr<Engine> LinkedEngine(VirtualClock* clock) {
  Options opts;
  opts.keep_changes = false;
  auto engine = std::make_unique<Engine>(clock, opts);
  for (int u = 0; u < kUsers; ++u)
    (void)engine->Ingest(
        Group(fmt::format("u{}", u), fmt::format("a{}", u % kAccounts), kNow - 2 * kDay, 100));
  return engine;
}

// The measured loop of the per-event benchmarks: ingests `msgs` in turn (each round moved later in
// event time, untimed), then reports items and the (segment, profile) evaluations and changes per
// event.
void IngestRounds(benchmark::State& state, Engine* engine, std::vector<Message>* msgs) {
  const uint64_t evals0 = engine->Stats().evaluations;
  const uint64_t changes0 = engine->Stats().changes;
  size_t k = 0;
  for (auto _ : state) {
    (void)engine->Ingest((*msgs)[k]);
    if (++k == msgs->size()) {
      k = 0;  // the next round happens later: keep event time moving forward
      state.PauseTiming();
      for (Message& m : *msgs) m.timestamp += 100000 * 100;
      state.ResumeTiming();
    }
  }
  const auto stats = engine->Stats();
  state.SetItemsProcessed(state.iterations());
  state.counters["evals_per_event"] =
      static_cast<double>(stats.evaluations - evals0) / static_cast<double>(state.iterations());
  state.counters["changes_per_event"] =
      static_cast<double>(stats.changes - changes0) / static_cast<double>(state.iterations());
}

void BM_EventWithAccountSegments(benchmark::State& state) {
  const int user_segments = static_cast<int>(state.range(0));
  const int account_segments = static_cast<int>(state.range(1));
  VirtualClock clock(kNow);
  auto engine = LinkedEngine(&clock);
  for (int i = 0; i < user_segments; ++i)
    (void)engine->CreateSegment(fmt::format("u{}", i),
                                fmt::format(R"(performed "E{}" at least 3 times within 30d)", i));
  // Account segment i reads event Ei through a member condition, and a user segment reads it back
  // (the peers' s7 shape). Events are E0..E3 only, so an event touches at most one account
  // segment's hidden user segment however many account segments exist; when that flips, the
  // account is re-evaluated, and when the account flips, its 10 users are.
  for (int i = 0; i < account_segments; ++i) {
    (void)engine->CreateSegment(
        fmt::format("a{}", i), fmt::format(R"(at least 3 members (performed "E{}" within 14d))", i),
        SegmentTarget::kAccounts);
    (void)engine->CreateSegment(fmt::format("ua{}", i),
                                fmt::format(R"(account in segment "a{}")", i));
  }
  std::vector<Message> msgs;
  for (int i = 0; i < 100000; ++i)
    msgs.push_back(
        Track(fmt::format("u{}", i % kUsers), fmt::format("E{}", i % 4), kNow - kDay + i * 100));
  IngestRounds(state, engine.get(), &msgs);
}
BENCHMARK(BM_EventWithAccountSegments)
    ->Args({10, 0})
    ->Args({10, 1})
    ->Args({10, 10})
    ->Args({10, 100})
    ->Args({1000, 0})
    ->Args({1000, 100});

void BM_AccountEvent(benchmark::State& state) {
  const bool with_group = state.range(0) != 0;
  const int account_segments = static_cast<int>(state.range(1));
  VirtualClock clock(kNow);
  auto engine = LinkedEngine(&clock);
  for (int i = 0; i < 10; ++i)
    (void)engine->CreateSegment(fmt::format("u{}", i),
                                fmt::format(R"(performed "E{}" at least 3 times within 30d)", i));
  for (int i = 0; i < account_segments; ++i)
    (void)engine->CreateSegment(
        fmt::format("a{}", i),
        fmt::format(R"(performed "E{}" at least {} times within 7d)", i % 4, 3 + i / 4),
        SegmentTarget::kAccounts);
  std::vector<Message> msgs;
  for (int i = 0; i < 100000; ++i) {
    const int u = i % kUsers;
    msgs.push_back(Track(fmt::format("u{}", u), fmt::format("E{}", i % 4), kNow - kDay + i * 100));
    if (with_group) msgs.back().group_id = fmt::format("a{}", u % kAccounts);
  }
  IngestRounds(state, engine.get(), &msgs);
}
BENCHMARK(BM_AccountEvent)
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 10})
    ->Args({1, 10})
    ->Args({0, 100})
    ->Args({1, 100});

void BM_GroupCall(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  VirtualClock clock(kNow);
  auto engine = LinkedEngine(&clock);
  (void)engine->CreateSegment("big", "employees >= 150", SegmentTarget::kAccounts);
  (void)engine->CreateSegment("engaged", R"(at least 3 members (performed "E0" within 14d))",
                              SegmentTarget::kAccounts);
  (void)engine->CreateSegment("users_of_big", R"(account in segment "big")");
  std::vector<Message> msgs;
  for (int i = 0; i < 100000; ++i) {
    const int u = i % kUsers;
    switch (kind) {
      case 0:  // the same link again, traits unchanged
        msgs.push_back(
            Group(fmt::format("u{}", u), fmt::format("a{}", u % kAccounts), kNow - kDay + i, 100));
        break;
      case 1:  // a new user joins an existing account
        msgs.push_back(Group(fmt::format("new{}", i), fmt::format("a{}", i % kAccounts),
                             kNow - kDay + i, 100));
        break;
      default:  // the account's size crosses 150 and back: the account and its users flip
        msgs.push_back(Group(fmt::format("u{}", u), fmt::format("a{}", u % kAccounts),
                             kNow - kDay + i, (i / kUsers) % 2 ? 100 : 200));
        break;
    }
  }
  const uint64_t changes0 = engine->Stats().changes;
  size_t k = 0;
  for (auto _ : state) {
    (void)engine->Ingest(msgs[k]);
    if (++k == msgs.size()) {
      k = 0;
      state.PauseTiming();
      for (Message& m : msgs) m.timestamp += 100000;
      if (kind == 1)
        for (Message& m : msgs) m.user_id += "x";  // still new users on the next round
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["changes_per_call"] = static_cast<double>(engine->Stats().changes - changes0) /
                                       static_cast<double>(state.iterations());
}
BENCHMARK(BM_GroupCall)->Arg(0)->Arg(1)->Arg(2);

void BM_EventWithComputedTrait(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  VirtualClock clock(kNow);
  auto engine = LinkedEngine(&clock);
  for (int i = 0; i < 10; ++i)
    (void)engine->CreateSegment(fmt::format("u{}", i),
                                fmt::format(R"(performed "E{}" at least 3 times within 30d)", i));
  const SegmentTarget target =
      kind == 2 || kind == 4 ? SegmentTarget::kAccounts : SegmentTarget::kUsers;
  const char* def = nullptr;
  switch (kind) {
    case 1:
    case 2:
      def = R"(count of "E0" within 30d)";
      break;
    case 3:
      def = R"(20 points if performed "E0" at least 3 times within 7d + 30 points if )"
            R"(performed "E1" within 30d)";
      break;
    case 4:
      def = R"(20 points if at least 3 members (performed "E0" within 7d) + 30 points if )"
            R"(performed "E1" within 30d)";
      break;
  }
  if (def && !engine->CreateComputedTrait("c", def, target).ok())
    return state.SkipWithError("CreateComputedTrait failed");
  std::vector<Message> msgs;
  for (int i = 0; i < 100000; ++i) {
    const int u = i % kUsers;
    msgs.push_back(Track(fmt::format("u{}", u), fmt::format("E{}", i % 4), kNow - kDay + i * 100));
    msgs.back().group_id = fmt::format("a{}", u % kAccounts);
  }
  IngestRounds(state, engine.get(), &msgs);
}
BENCHMARK(BM_EventWithComputedTrait)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->Arg(4);

void BM_MemberAggregate(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  VirtualClock clock(kNow);
  auto engine = LinkedEngine(&clock);
  for (int u = 0; u < kUsers; u += 2) {  // half of the users are on the pro plan
    Message m;
    m.type = MessageType::kIdentify;
    m.user_id = fmt::format("u{}", u);
    m.timestamp = kNow - 2 * kDay;
    m.traits.push_back({"plan", Value::String("pro")});
    (void)engine->Ingest(m);
  }
  (void)engine->CreateComputedTrait("spend_14d", R"(sum(total) of "Order" within 14d)");
  static const char* const kDefs[] = {nullptr, "at least 3 members (computed.spend_14d > 100)",
                                      "sum(computed.spend_14d) of members > 5000",
                                      "max(computed.spend_14d) of members > 400",
                                      R"(avg(computed.spend_14d) of members (plan = "pro") > 50)"};
  if (kDefs[kind]) {
    auto created = engine->CreateSegment("agg", kDefs[kind], SegmentTarget::kAccounts);
    if (!created.ok()) state.SkipWithError(created.status().ToString().c_str());
  }
  std::vector<Message> msgs;
  for (int i = 0; i < 100000; ++i) {
    msgs.push_back(Track(fmt::format("u{}", i % kUsers), "Order", kNow - kDay + i * 100));
    msgs.back().properties.push_back({"total", Value::Number((i % 7) * 50.0)});
  }
  IngestRounds(state, engine.get(), &msgs);
}
BENCHMARK(BM_MemberAggregate)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->Arg(4);

}  // namespace
}  // namespace shoal

BENCHMARK_MAIN();
