// Top-N and percentile segments: the Ranking structure alone, and the engine's exact, incremental
// maintenance of a top set (boundary crossings, ties, R changes, windowed values expiring).
#include "engine/topn.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "fmt/format.h"
#include "shoal/engine.h"

namespace shoal {
namespace {

using engine::Ranking;
using Flips = std::vector<std::pair<uint32_t, bool>>;

const Millis kT0 = *ParseTime("2026-01-01T00:00:00Z");
const std::vector<std::string> kKeys = {"a", "b", "c", "d", "e", "f", "g", "h"};

Flips Take(Ranking* r) {
  Flips f;
  r->TakeFlips(&f);
  return f;
}

TEST(RankingTest, TopNMovesTheBoundary) {
  Ranking r(/*bottom=*/false, /*percent=*/false, 2, 0);
  r.Set(0, "a", 10);
  r.Set(1, "b", 20);
  EXPECT_EQ(Take(&r), (Flips{{0, true}, {1, true}}));
  r.Set(2, "c", 15);  // pushes a out
  EXPECT_EQ(Take(&r), (Flips{{0, false}, {2, true}}));
  EXPECT_EQ(r.RankOf(1), 1u);
  EXPECT_EQ(r.RankOf(2), 2u);
  EXPECT_EQ(r.RankOf(0), 3u);
  EXPECT_EQ(r.CutoffValue(), 15);
  r.Set(1, "b", 1);  // b falls to last, a comes back
  EXPECT_EQ(Take(&r), (Flips{{0, true}, {1, false}}));
  r.Set(1, "b", 1);  // unchanged: nothing
  EXPECT_EQ(Take(&r), Flips{});
  r.Set(2, "c", std::nullopt);  // c is no longer ranked: b takes its place
  EXPECT_EQ(Take(&r), (Flips{{1, true}, {2, false}}));
  EXPECT_EQ(r.ranked(), 2u);
  EXPECT_EQ(r.RankOf(2), std::nullopt);
}

TEST(RankingTest, TiesGoToTheSmallerKeyWhateverTheOrderOfArrival) {
  Ranking r(false, false, 1, 0);
  r.Set(1, "b", 5);
  r.Set(0, "a", 5);
  EXPECT_EQ(Take(&r), (Flips{{0, true}}));
  Ranking s(false, false, 1, 0);
  s.Set(0, "a", 5);
  s.Set(1, "b", 5);
  EXPECT_EQ(Take(&s), (Flips{{0, true}}));
  // bottom: lowest first, ties still by key ascending.
  Ranking b(true, false, 2, 0);
  b.Set(0, "a", 3);
  b.Set(1, "b", 1);
  b.Set(2, "c", 1);
  EXPECT_EQ(Take(&b), (Flips{{1, true}, {2, true}}));
  EXPECT_EQ(b.CutoffValue(), 1);
}

TEST(RankingTest, PercentFollowsR) {
  Ranking r(false, true, 0, 10);  // ceil(R / 10)
  EXPECT_EQ(r.Cutoff(0), 0u);
  EXPECT_EQ(r.Cutoff(1), 1u);
  EXPECT_EQ(r.Cutoff(10), 1u);
  EXPECT_EQ(r.Cutoff(11), 2u);
  EXPECT_EQ(r.Cutoff(30), 3u);  // exact: 0.1 x 30 in doubles is 3.0000000000000004
  Ranking third(false, true, 0, 33.333333);
  EXPECT_EQ(third.Cutoff(3), 1u);
  EXPECT_EQ(third.Cutoff(300000000), 99999999u);
  EXPECT_EQ(Ranking(false, true, 0, 100).Cutoff(7), 7u);
  for (uint32_t i = 0; i < 10; ++i) r.Set(i, kKeys[i % 8] + std::to_string(i), 100 - i);
  EXPECT_EQ(Take(&r), (Flips{{0, true}}));
  r.Set(10, "z", 0);  // R = 11: the top grows to 2
  EXPECT_EQ(Take(&r), (Flips{{1, true}}));
  r.Set(10, "z", std::nullopt);  // R = 10 again
  EXPECT_EQ(Take(&r), (Flips{{1, false}}));
}

TEST(RankingTest, ABatchReportsOnlyTheNetChange) {
  Ranking r(false, false, 1, 0);
  r.Set(0, "a", 5);
  r.Set(1, "b", 4);
  r.Set(2, "c", 3);
  Take(&r);
  // a and b drop together: b enters after a's drop and leaves after its own, net nothing.
  r.Set(0, "a", 0);
  r.Set(1, "b", 0);
  EXPECT_EQ(Take(&r), (Flips{{0, false}, {2, true}}));
}

// The Ranking against a plain sort after every one of many random changes.
TEST(RankingTest, MatchesASortUnderRandomChanges) {
  std::mt19937 rng(7);
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back(fmt::format("k{:02}", (i * 17) % 40));
  for (bool percent : {false, true}) {
    for (bool bottom : {false, true}) {
      Ranking r(bottom, percent, 5, 12.5);
      std::vector<std::optional<double>> v(40);
      std::set<uint32_t> top;
      for (int step = 0; step < 2000; ++step) {
        uint32_t id = rng() % 40;
        int x = static_cast<int>(rng() % 12);
        v[id] = x == 11 ? std::nullopt : std::optional<double>(x % 6);
        r.Set(id, keys[id], v[id]);
        if (rng() % 3 == 0) continue;  // batches of several Sets
        Flips f;
        r.TakeFlips(&f);
        for (auto [fid, in] : f) {
          EXPECT_NE(top.count(fid) > 0, in);
          in ? (void)top.insert(fid) : (void)top.erase(fid);
        }
        std::vector<uint32_t> order;
        for (uint32_t i = 0; i < 40; ++i)
          if (v[i]) order.push_back(i);
        std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
          if (*v[a] != *v[b]) return bottom ? *v[a] < *v[b] : *v[a] > *v[b];
          return keys[a] < keys[b];
        });
        size_t k = percent ? (order.size() * 125 + 999) / 1000 : std::min<size_t>(5, order.size());
        std::set<uint32_t> want(order.begin(), order.begin() + k);
        ASSERT_EQ(top, want) << "step " << step;
        for (size_t i = 0; i < order.size(); ++i) ASSERT_EQ(r.RankOf(order[i]), i + 1);
      }
    }
  }
}

// --- The engine ----------------------------------------------------------------------------------

std::string Track(const std::string& user, const std::string& event, Millis ts,
                  const std::string& props = "{}") {
  return fmt::format(
      R"({{"type":"track","userId":"{}","event":"{}","timestamp":"{}","properties":{}}})", user,
      event, FormatTime(ts), props);
}

std::string Identify(const std::string& user, Millis ts, const std::string& traits,
                     const std::string& message_id = "") {
  return fmt::format(
      R"({{"type":"identify","userId":"{}","timestamp":"{}","traits":{},"messageId":"{}"}})", user,
      FormatTime(ts), traits, message_id);
}

class TopNEngineTest : public ::testing::Test {
 protected:
  TopNEngineTest() : clock_(kT0), engine_(&clock_) {}

  void Ingest(const std::string& json) { ASSERT_TRUE(engine_.IngestJson(json).ok()) << json; }
  void Create(const std::string& name, const std::string& def) {
    auto r = engine_.CreateSegment(name, def);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  std::vector<std::string> Members(const std::string& seg) { return *engine_.Members(seg); }
  void At(Millis t) {
    clock_.Set(t);
    engine_.AdvanceTime();
  }
  // The changes of `seg` since the last call, as "+u1 event", "-u2 rank u1", sorted (changes at
  // one instant have no specified order).
  std::vector<std::string> Changes(const std::string& seg) {
    std::vector<std::string> out;
    for (const Change& c : engine_.Changes(seg, seen_[seg])) {
      out.push_back(fmt::format("{}{} {}{}", c.kind == ChangeKind::kEnter ? "+" : "-", c.profile,
                                CauseName(c.cause), c.cause_ref.empty() ? "" : " " + c.cause_ref));
      seen_[seg] = c.seq;
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  VirtualClock clock_;
  Engine engine_;
  std::map<std::string, uint64_t> seen_;
};

using V = std::vector<std::string>;

TEST_F(TopNEngineTest, AnotherProfilesChangePushesAcrossTheBoundaryWithCauseRank) {
  Ingest(Identify("u1", kT0, R"({"ltv": 10})"));
  Ingest(Identify("u2", kT0, R"({"ltv": 20})"));
  Ingest(Identify("u3", kT0, R"({"ltv": "n/a"})"));  // not a number: not ranked
  Create("top2", "top 2 by ltv");
  EXPECT_EQ(Members("top2"), (V{"u1", "u2"}));
  Changes("top2");
  EXPECT_STREQ(CauseName(Cause::kRank), "rank");
  // u1 is pushed out by u4's identify: cause rank, naming that call.
  Ingest(Identify("u4", kT0, R"({"ltv": 15})", "m4"));
  EXPECT_EQ(Members("top2"), (V{"u2", "u4"}));
  EXPECT_EQ(Changes("top2"), (V{"+u4 traits m4", "-u1 rank m4"}));
  Ingest(Identify("u2", kT0, R"({"ltv": null})", "m2"));  // u2 leaves the ranking: u1 is back
  EXPECT_EQ(Members("top2"), (V{"u1", "u4"}));
  EXPECT_EQ(Changes("top2"), (V{"+u1 rank m2", "-u2 traits m2"}));
  Ingest(Identify("u1", kT0, R"({"ltv": 15})"));  // a tie with u4: both in, by key
  Ingest(Identify("u5", kT0, R"({"ltv": 15})"));  // a tie too, but "u5" > "u4"
  EXPECT_EQ(Members("top2"), (V{"u1", "u4"}));
  EXPECT_EQ(Changes("top2"), V{});
}

TEST_F(TopNEngineTest, RankIsGlobalAndOtherConditionsFilter) {
  Ingest(Identify("u1", kT0, R"({"ltv": 30, "country": "FR"})"));
  Ingest(Identify("u2", kT0, R"({"ltv": 20, "country": "DE"})"));
  Ingest(Identify("u3", kT0, R"({"ltv": 10, "country": "DE"})"));
  Create("de", R"(top 2 by ltv and country = "DE")");
  EXPECT_EQ(Members("de"), (V{"u2"}));  // u3 is third globally
  Ingest(Identify("u1", kT0, R"({"country": "DE"})"));
  EXPECT_EQ(Members("de"), (V{"u1", "u2"}));
}

TEST_F(TopNEngineTest, NewProfilesChangeRForASum) {
  // The sum of nothing is 0: every known profile is ranked, so R grows with each new one.
  Create("top", R"(top 50% by sum(total) of "O")");
  Ingest(Track("u1", "O", kT0 - 1, R"({"total": 5})"));
  EXPECT_EQ(Members("top"), (V{"u1"}));
  Ingest(Track("u2", "Other", kT0 - 1));  // R = 2: ceil(1) = 1
  Ingest(Track("u3", "Other", kT0 - 1));  // R = 3: ceil(1.5) = 2, u2 (0, smaller key) enters
  EXPECT_EQ(Members("top"), (V{"u1", "u2"}));
  EXPECT_EQ(Changes("top"), (V{"+u1 event", "+u2 rank"}));
}

TEST_F(TopNEngineTest, ExpiryMovesOneOutAndAnotherInAtTheExactInstant) {
  Create("top1", R"(top 1 by sum(total) of "O" within 7d)");
  Ingest(Track("u1", "O", kT0 - kDay, R"({"total": 100})"));
  Ingest(Track("u2", "O", kT0, R"({"total": 50})"));
  At(kT0 + 1);
  EXPECT_EQ(Members("top1"), (V{"u1"}));
  Changes("top1");
  // u1's order leaves its window at kT0 - 1d + 7d + 1ms.
  const Millis leave = kT0 + 6 * kDay + 1;
  At(leave - 1);
  EXPECT_EQ(Members("top1"), (V{"u1"}));
  At(leave);
  EXPECT_EQ(Members("top1"), (V{"u2"}));
  auto changes = engine_.Changes("top1");
  ASSERT_EQ(changes.size(), 3u);
  for (size_t i = 1; i < 3; ++i) {
    const Change& c = changes[i];
    EXPECT_EQ(c.event_time, leave);
    if (c.profile == "u1") {
      EXPECT_EQ(c.kind, ChangeKind::kExit);
      EXPECT_EQ(c.cause, Cause::kTime);
    } else {
      EXPECT_EQ(c.profile, "u2");
      EXPECT_EQ(c.kind, ChangeKind::kEnter);
      EXPECT_EQ(c.cause, Cause::kRank);
      EXPECT_EQ(c.cause_ref, "");  // moved by time, not by a call
    }
  }
}

TEST_F(TopNEngineTest, ValuesExpiringAtOneInstantMoveTogether) {
  Create("top1", R"(top 1 by sum(total) of "O" within 7d)");
  Ingest(Track("a", "O", kT0 - kDay, R"({"total": 5})"));
  Ingest(Track("b", "O", kT0 - kDay, R"({"total": 4})"));
  Ingest(Track("c", "O", kT0, R"({"total": 3})"));
  At(kT0 + 1);
  EXPECT_EQ(Members("top1"), (V{"a"}));
  Changes("top1");
  At(kT0 + 7 * kDay);
  // a and b leave their windows at the same instant: b is never briefly in the top.
  EXPECT_EQ(Members("top1"), (V{"c"}));
  auto got = Changes("top1");
  EXPECT_EQ(got.size(), 2u);
  EXPECT_NE(std::find(got.begin(), got.end(), "-a time"), got.end());
  EXPECT_EQ(std::count_if(got.begin(), got.end(), [](auto& s) { return s[1] == 'b'; }), 0);
}

TEST_F(TopNEngineTest, AnEventReevaluatesOnlyTheBoundary) {
  Create("top", R"(top 10% by sum(total) of "O" within 90d)");
  for (int i = 0; i < 1000; ++i)
    Ingest(Track(fmt::format("u{:04}", i), "O", kT0 - kDay, fmt::format(R"({{"total": {}}})", i)));
  EXPECT_EQ(*engine_.Count("top"), 100u);
  uint64_t before = engine_.Stats().evaluations;
  // u0000 jumps to the top: it enters, the 100th (u0900) leaves.
  Ingest(Track("u0000", "O", kT0 - kDay, R"({"total": 5000})"));
  EXPECT_LE(engine_.Stats().evaluations - before, 4u);
  EXPECT_TRUE(*engine_.IsMember("top", "u0000"));
  EXPECT_FALSE(*engine_.IsMember("top", "u0900"));
  auto explain = engine_.Explain("top", "u0000");
  ASSERT_TRUE(explain.ok());
  EXPECT_EQ(explain->detail, "sum = 5000, rank 1 of 1000; top 10% of 1000 = 100, cutoff sum = 901");
  explain = engine_.Explain("top", "u0900");
  EXPECT_EQ(explain->detail,
            "sum = 900, rank 101 of 1000; top 10% of 1000 = 100, cutoff sum = 901");
}

TEST_F(TopNEngineTest, ErasingAMemberLetsTheNextIn) {
  Ingest(Identify("u1", kT0, R"({"ltv": 3})"));
  Ingest(Identify("u2", kT0, R"({"ltv": 2})"));
  Ingest(Identify("u3", kT0, R"({"ltv": 1})"));
  Create("top2", "top 2 by ltv");
  Changes("top2");
  ASSERT_TRUE(engine_.EraseProfile("u1").ok());
  EXPECT_EQ(Members("top2"), (V{"u2", "u3"}));
  EXPECT_EQ(Changes("top2"), (V{"+u3 rank", "-u1 erased"}));
}

TEST_F(TopNEngineTest, UpdateAndDeleteDropTheRanking) {
  Ingest(Identify("u1", kT0, R"({"ltv": 3, "x": 1})"));
  Ingest(Identify("u2", kT0, R"({"ltv": 2, "x": 5})"));
  Create("top", "top 1 by ltv");
  ASSERT_TRUE(engine_.UpdateSegment("top", "top 1 by x").ok());
  EXPECT_EQ(Members("top"), (V{"u2"}));
  Ingest(Identify("u1", kT0, R"({"ltv": 0})"));  // the old ranking is gone: nothing moves
  EXPECT_EQ(Members("top"), (V{"u2"}));
  ASSERT_TRUE(engine_.DeleteSegment("top").ok());
  Ingest(Identify("u1", kT0, R"({"x": 9})"));
  EXPECT_EQ(engine_.Estimate("bottom 1 by x").value(), 1u);
  EXPECT_EQ(engine_.Validate("top 5% by x").value(), "top 5% by x");
}

TEST_F(TopNEngineTest, TargetErrors) {
  auto r = engine_.CreateSegment("b", R"(top 10 by members (performed "Login"))");
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(engine_.ListSegments().empty());
}

// Accounts rank by their own events (context.groupId), exact in time like users.
TEST_F(TopNEngineTest, AccountsByOwnEvents) {
  auto group = [](const std::string& u, const std::string& a) {
    return fmt::format(R"({{"type":"group","userId":"{}","groupId":"{}","timestamp":"{}"}})", u, a,
                       FormatTime(kT0 - kDay));
  };
  auto login = [](const std::string& u, const std::string& a, Millis ts) {
    return fmt::format(
        R"({{"type":"track","userId":"{}","event":"Login","context":{{"groupId":"{}"}},"timestamp":"{}"}})",
        u, a, FormatTime(ts));
  };
  Ingest(group("u1", "a1"));
  Ingest(group("u2", "a2"));
  ASSERT_TRUE(engine_
                  .CreateSegment("most_logins", R"(top 1 by count of "Login" within 7d)",
                                 SegmentTarget::kAccounts)
                  .ok());
  EXPECT_EQ(Members("most_logins"), (V{"a1"}));  // 0 and 0: by key
  Ingest(login("u2", "a2", kT0 - 2 * kDay));
  Ingest(login("u2", "a2", kT0 - kDay));
  Ingest(login("u1", "a1", kT0 - 1));
  EXPECT_EQ(Members("most_logins"), (V{"a2"}));  // 2 against 1
  // a2's first login leaves the window at kT0 + 5d + 1ms: 1 and 1, a1 first by key.
  At(kT0 + 5 * kDay);
  EXPECT_EQ(Members("most_logins"), (V{"a2"}));
  At(kT0 + 5 * kDay + 1);
  EXPECT_EQ(Members("most_logins"), (V{"a1"}));
}

TEST_F(TopNEngineTest, AccountsByMemberCount) {
  auto group = [](const std::string& u, const std::string& a) {
    return fmt::format(R"({{"type":"group","userId":"{}","groupId":"{}","timestamp":"{}"}})", u, a,
                       FormatTime(kT0));
  };
  Ingest(group("u1", "a1"));
  Ingest(group("u2", "a1"));
  Ingest(group("u3", "a2"));
  ASSERT_TRUE(engine_
                  .CreateSegment("busy", R"(top 1 by members (performed "Login" within 30d))",
                                 SegmentTarget::kAccounts)
                  .ok());
  EXPECT_EQ(Members("busy"), (V{"a1"}));  // 0 and 0: by key
  Ingest(Track("u3", "Login", kT0 - 1));
  EXPECT_EQ(Members("busy"), (V{"a2"}));
  At(kT0 + 30 * kDay);  // the login leaves the window: back to a tie
  EXPECT_EQ(Members("busy"), (V{"a1"}));
}

TEST_F(TopNEngineTest, MembersLeavingAtOneInstantMoveAccountsTogether) {
  auto group = [](const std::string& u, const std::string& a) {
    return fmt::format(R"({{"type":"group","userId":"{}","groupId":"{}","timestamp":"{}"}})", u, a,
                       FormatTime(kT0));
  };
  Ingest(group("u1", "a1"));
  Ingest(group("u2", "a2"));
  Ingest(group("u3", "a2"));
  ASSERT_TRUE(engine_
                  .CreateSegment("busy", R"(top 1 by members (performed "Login" within 7d))",
                                 SegmentTarget::kAccounts)
                  .ok());
  Ingest(Track("u1", "Login", kT0 - kDay));
  Ingest(Track("u2", "Login", kT0 - kDay));
  Ingest(Track("u3", "Login", kT0 - 2 * kDay));
  EXPECT_EQ(Members("busy"), (V{"a2"}));  // 2 against 1
  Changes("busy");
  At(kT0 + 5 * kDay + 1);  // u3's login leaves: 1 and 1, a1 by key
  EXPECT_EQ(Members("busy"), (V{"a1"}));
  EXPECT_EQ(Changes("busy"), (V{"+a1 rank", "-a2 time"}));
  // u1's and u2's logins leave at one instant: a1 and a2 both drop to 0 and a1 keeps its place,
  // with no exit and re-entry in between.
  At(kT0 + 6 * kDay + 1);
  EXPECT_EQ(Members("busy"), (V{"a1"}));
  EXPECT_EQ(Changes("busy"), V{});
}

// --- By a computed trait ---------------------------------------------------------------------

TEST_F(TopNEngineTest, ByComputedFollowsTheTraitToTheExactInstant) {
  ASSERT_TRUE(engine_.CreateComputedTrait("ltv", R"(sum(total) of "O" within 7d)").ok());
  Create("top1", "top 1 by computed.ltv");
  Ingest(Track("u1", "O", kT0 - kDay, R"({"total": 100})"));
  Ingest(Track("u2", "O", kT0, R"({"total": 50})"));
  Ingest(Track("u3", "Other", kT0));  // ltv 0: ranked, last
  At(kT0 + 1);
  EXPECT_EQ(Members("top1"), (V{"u1"}));
  EXPECT_EQ(Changes("top1"), (V{"+u1 event"}));
  auto explain = engine_.Explain("top1", "u2");
  ASSERT_TRUE(explain.ok());
  EXPECT_EQ(explain->detail, "value = 50, rank 2 of 3; top 1 of 3 = 1, cutoff value = 100");
  // u1's order leaves the trait's window at kT0 - 1d + 7d + 1ms: the trait's own deadline moves
  // u1 out and u2 in at that instant.
  const Millis leave = kT0 + 6 * kDay + 1;
  At(leave - 1);
  EXPECT_EQ(Members("top1"), (V{"u1"}));
  At(leave);
  EXPECT_EQ(Members("top1"), (V{"u2"}));
  EXPECT_EQ(Changes("top1"), (V{"+u2 rank", "-u1 time"}));
  for (const Change& c : engine_.Changes("top1", 0)) {
    if (c.cause != Cause::kEvent) {
      EXPECT_EQ(c.event_time, leave);
    }
  }
  // An event changing the trait re-evaluates the trait, the ranking and the boundary only.
  uint64_t before = engine_.Stats().evaluations;
  Ingest(Track("u3", "O", leave - 1, R"({"total": 70})"));
  EXPECT_EQ(Members("top1"), (V{"u3"}));
  EXPECT_LE(engine_.Stats().evaluations - before, 5u);
  // A new definition re-ranks: counting every order, all three have 1 and u1 wins by key.
  ASSERT_TRUE(engine_.UpdateComputedTrait("ltv", R"(count of "O")").ok());
  EXPECT_EQ(Members("top1"), (V{"u1"}));
  EXPECT_EQ(Changes("top1"), (V{"+u1 rank", "+u3 event", "-u2 rank", "-u3 computed ltv"}));
}

TEST_F(TopNEngineTest, ByComputedRanksNumbersOnly) {
  ASSERT_TRUE(engine_.CreateComputedTrait("best", R"(max(total) of "O")").ok());
  ASSERT_TRUE(engine_.CreateComputedTrait("coupon", R"(last(coupon) of "O")").ok());
  Ingest(Track("u1", "O", kT0 - 1, R"({"total": 5, "coupon": "SPRING"})"));
  Ingest(Track("u2", "O", kT0 - 1, R"({"total": 9, "coupon": 3})"));
  Ingest(Track("u3", "Other", kT0 - 1));  // no max, no coupon: not ranked
  Create("low", "bottom 2 by computed.best");
  EXPECT_EQ(Members("low"), (V{"u1", "u2"}));
  Create("coupons", "top 100% by computed.coupon");
  EXPECT_EQ(Members("coupons"), (V{"u2"}));  // "SPRING" is not a number
  EXPECT_EQ(engine_.Explain("coupons", "u1")->detail,
            "value = no value, not ranked; top 100% of 1 = 1, cutoff value = 3");
  Ingest(Track("u1", "O", kT0 - 1, R"({"total": 1, "coupon": 10})"));
  EXPECT_EQ(Members("coupons"), (V{"u1", "u2"}));
  // A score is a number for every profile (0 when nothing holds).
  ASSERT_TRUE(
      engine_.CreateComputedTrait("lead", R"(10 points if performed "Demo" + 5 points if x = 1)")
          .ok());
  Create("leads", "top 1 by computed.lead");
  EXPECT_EQ(Members("leads"), (V{"u1"}));  // all 0: by key
  Ingest(Identify("u3", kT0, R"({"x": 1})"));
  EXPECT_EQ(Members("leads"), (V{"u3"}));
  Ingest(Track("u2", "Demo", kT0 - 1));
  EXPECT_EQ(Members("leads"), (V{"u2"}));
  // A new profile gets the empty score (0), so it is ranked; it does not pass u2.
  Ingest(Track("u0", "Other", kT0 - 1));
  EXPECT_EQ(Members("leads"), (V{"u2"}));
  EXPECT_EQ(engine_.Explain("leads", "u0")->detail,
            "value = 0, rank 3 of 4; top 1 of 4 = 1, cutoff value = 10");
}

TEST_F(TopNEngineTest, ByComputedErrorsAndReferences) {
  // Unknown computed trait: kNotFound everywhere a definition is compiled.
  EXPECT_EQ(engine_.CreateSegment("s", "top 1 by computed.ltv").status().code(),
            Status::Code::kNotFound);
  EXPECT_EQ(engine_.Validate("top 1 by computed.ltv").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.Estimate("top 1 by computed.ltv").status().code(), Status::Code::kNotFound);
  Create("s", "top 1 by x");
  EXPECT_EQ(engine_.UpdateSegment("s", "top 1 by computed.ltv").status().code(),
            Status::Code::kNotFound);
  ASSERT_TRUE(engine_.CreateComputedTrait("ltv", R"(count of "O")").ok());
  EXPECT_EQ(engine_.Validate("top 1 by computed.ltv").value(), "top 1 by computed.ltv");
  Ingest(Track("u1", "O", kT0));
  EXPECT_EQ(engine_.Estimate("top 1 by computed.ltv").value(), 1u);
  // The estimate's rank segment is gone: nothing references the trait.
  ASSERT_TRUE(engine_.DeleteComputedTrait("ltv").ok());
  ASSERT_TRUE(engine_.CreateComputedTrait("ltv", R"(count of "O")").ok());
  // Per user: an account segment cannot rank by it.
  auto acct = engine_.CreateSegment("a", "top 1 by computed.ltv", SegmentTarget::kAccounts);
  EXPECT_EQ(acct.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(acct.status().message().find("per user"), std::string::npos);
  // Referenced: the trait cannot be deleted until the segment stops ranking by it.
  ASSERT_TRUE(engine_.UpdateSegment("s", "top 1 by computed.ltv").ok());
  Status del = engine_.DeleteComputedTrait("ltv");
  EXPECT_EQ(del.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(del.message().find("segment \"s\""), std::string::npos) << del.message();
  // A cycle through the ranking: a score reading s, and s ranking by the score.
  ASSERT_TRUE(engine_.CreateComputedTrait("score", R"(5 points if in segment "s")").ok());
  EXPECT_EQ(engine_.UpdateSegment("s", "top 1 by computed.score").status().code(),
            Status::Code::kFailedPrecondition);
  EXPECT_EQ(engine_.UpdateComputedTrait("ltv", R"(1 point if in segment "s")").status().code(),
            Status::Code::kFailedPrecondition);
  ASSERT_TRUE(engine_.DeleteComputedTrait("score").ok());
  ASSERT_TRUE(engine_.UpdateSegment("s", "top 1 by x").ok());
  EXPECT_TRUE(engine_.DeleteComputedTrait("ltv").ok());
}

}  // namespace
}  // namespace shoal
