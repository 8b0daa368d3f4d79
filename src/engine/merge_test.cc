// Identity merges (docs/language.md, "Identity") at the engine level: the change records a merge
// emits, its cost in evaluations, and that replaying the same calls (as the server's recovery
// does: history first, segments by backfill afterwards) gives the same merged state.
#include <gtest/gtest.h>

#include "fmt/format.h"
#include "shoal/engine.h"

namespace shoal {
namespace {

const Millis kT0 = *ParseTime("2026-01-01T00:00:00Z");

std::string Ids(const std::string& user, const std::string& anon) {
  std::string out;
  if (!user.empty()) out += fmt::format(R"(,"userId":"{}")", user);
  if (!anon.empty()) out += fmt::format(R"(,"anonymousId":"{}")", anon);
  return out;
}

std::string Track(const std::string& user, const std::string& anon, const std::string& event,
                  Millis ts, const std::string& props = "{}") {
  return fmt::format(R"({{"type":"track"{},"event":"{}","timestamp":"{}","properties":{}}})",
                     Ids(user, anon), event, FormatTime(ts), props);
}

std::string Identify(const std::string& user, const std::string& anon, Millis ts,
                     const std::string& traits) {
  return fmt::format(R"({{"type":"identify"{},"timestamp":"{}","traits":{}}})", Ids(user, anon),
                     FormatTime(ts), traits);
}

std::string Alias(const std::string& previous, const std::string& user, Millis ts) {
  return fmt::format(R"({{"type":"alias","previousId":"{}","userId":"{}","timestamp":"{}"}})",
                     previous, user, FormatTime(ts));
}

const std::vector<std::pair<std::string, std::string>> kSegments = {
    {"carts", R"(performed "Product Added" at least 2 times within 7d)"},
    {"buyers", R"(performed "Order Completed")"},
    {"pro", R"(plan = "pro")"},
    {"no_order", R"(not in segment "buyers")"},
    {"big", R"(sum(total) of "Order Completed" > 100)"},
};

// A day of traffic with every kind of merge: anonymous then login, a claimed anonymousId seen
// with another user, an alias chain, a link of an unseen id, a late event of a merged-away id.
std::vector<std::string> Traffic() {
  const Millis h = 3'600'000;
  return {
      Track("", "a1", "Product Added", kT0 + 1 * h),
      Track("", "a1", "Product Added", kT0 + 2 * h),
      Track("", "a2", "Order Completed", kT0 + 2 * h, R"({"total":80})"),
      Identify("u1", "", kT0 + 3 * h, R"({"plan":"free"})"),
      Identify("u1", "a1", kT0 + 4 * h, R"({"email":"x@y.z"})"),
      Track("u2", "a1", "Order Completed", kT0 + 5 * h, R"({"total":30})"),
      Identify("", "a2", kT0 + 6 * h, R"({"plan":"pro"})"),
      Alias("a2", "u1", kT0 + 7 * h),
      Track("u3", "a3", "Product Added", kT0 + 8 * h),
      Track("", "a3", "Product Added", kT0 + 9 * h),
      Alias("u1", "u4", kT0 + 10 * h),
      Track("", "a1", "Order Completed", kT0 + 1 * h, R"({"total":40})"),
      Track("u1", "", "Product Added", kT0 + 11 * h),
  };
}

class MergeTest : public ::testing::Test {
 protected:
  MergeTest() : clock_(kT0 + 12 * 3'600'000), engine_(&clock_) {}

  void Ingest(const std::string& json) { ASSERT_TRUE(engine_.IngestJson(json).ok()) << json; }
  void Create(const std::string& name, const std::string& def) {
    auto r = engine_.CreateSegment(name, def);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  std::vector<Change> Of(const std::string& seg) { return engine_.Changes(seg); }

  VirtualClock clock_;
  Engine engine_;
};

TEST_F(MergeTest, MergedAwayProfileExitsAndSurvivorIsReevaluated) {
  Create("carts", R"(performed "Product Added" at least 2 times)");
  Ingest(Track("", "a1", "Product Added", kT0));
  Ingest(Track("", "a1", "Product Added", kT0 + 1));
  Ingest(Track("u1", "", "Checkout", kT0 + 2));
  ASSERT_EQ(Of("carts").size(), 1u);
  Ingest(Identify("u1", "a1", kT0 + 3, R"({"plan":"pro"})"));
  std::vector<Change> c = Of("carts");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[1].profile, "a1");
  EXPECT_EQ(c[1].kind, ChangeKind::kExit);
  EXPECT_EQ(c[1].cause, Cause::kMerged);
  EXPECT_EQ(c[1].cause_ref, "u1");
  EXPECT_EQ(c[2].profile, "u1");
  EXPECT_EQ(c[2].kind, ChangeKind::kEnter);
  EXPECT_EQ(c[2].cause, Cause::kMerged);
  EXPECT_EQ(c[2].cause_ref, "a1");
  EXPECT_EQ(c[2].event_time, clock_.Now());
  EXPECT_STREQ(CauseName(Cause::kMerged), "merged");

  // Reads by the merged-away key answer for the survivor.
  EXPECT_TRUE(engine_.HasProfile("a1"));
  EXPECT_EQ(*engine_.SurvivorOf("a1"), "u1");
  EXPECT_EQ(*engine_.SurvivorOf("u1"), "u1");
  EXPECT_EQ(engine_.KeysOf("a1"), (std::vector<std::string>{"u1", "a1"}));
  EXPECT_TRUE(*engine_.IsMember("carts", "a1"));
  EXPECT_EQ(engine_.SegmentsOf("a1"), std::vector<std::string>{"carts"});
  EXPECT_EQ(*engine_.Members("carts"), std::vector<std::string>{"u1"});
  EXPECT_EQ(engine_.Stats().profiles, 1u);
  EXPECT_EQ(engine_.SurvivorOf("nobody").status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(engine_.KeysOf("nobody").empty());
}

TEST_F(MergeTest, AliasNeedsBothIds) {
  EXPECT_EQ(engine_.IngestJson(R"({"type":"alias","anonymousId":"a","previousId":"b"})").code(),
            Status::Code::kInvalidArgument);
  Message m;
  m.type = MessageType::kAlias;
  m.user_id = "u1";
  Status st = engine_.Ingest(m);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.ToString().find("previousId"), std::string::npos) << st.ToString();
  EXPECT_FALSE(engine_.HasProfile("u1"));  // nothing was created by the failed call
}

// A merge re-evaluates the survivor once per user segment, whatever the number of profiles.
TEST_F(MergeTest, MergeCostsOneEvaluationPerSegmentNotPerProfile) {
  for (const auto& [name, def] : kSegments) Create(name, def);
  for (int i = 0; i < 2000; ++i) Ingest(Track(fmt::format("u{}", i), "", "Product Added", kT0 + i));
  Ingest(Track("", "anon", "Product Added", kT0));
  Ingest(Identify("known", "", kT0, R"({"plan":"pro"})"));
  const uint64_t before = engine_.Stats().evaluations;
  Ingest(Alias("anon", "known", kT0 + 1));
  EXPECT_EQ(engine_.Stats().evaluations - before, kSegments.size());
}

// The server's recovery replays the call log into an engine with no segment and then creates the
// segments by backfill; an engine that saw the calls live must end in the same state, and a
// second live run must emit the same changes (merges are deterministic).
TEST(MergeReplayTest, ReplayAndBackfillReproduceTheMergedState) {
  const Millis now = kT0 + 12 * 3'600'000;
  VirtualClock c1(now), c2(now), c3(now);
  Engine live(&c1), replay(&c2), again(&c3);
  for (Engine* e : {&live, &again})
    for (const auto& [name, def] : kSegments) ASSERT_TRUE(e->CreateSegment(name, def).ok());
  for (const std::string& json : Traffic()) {
    ASSERT_TRUE(live.IngestJson(json).ok()) << json;
    ASSERT_TRUE(replay.IngestJson(json).ok()) << json;
    ASSERT_TRUE(again.IngestJson(json).ok()) << json;
  }
  for (const auto& [name, def] : kSegments) ASSERT_TRUE(replay.CreateSegment(name, def).ok());

  // What the traffic means, by docs/language.md: a1 and a2 merged into u1, then u1 into u4; a3
  // was only linked to u3; a1 stayed with u1 when it came with u2.
  EXPECT_EQ(*live.SurvivorOf("a1"), "u4");
  EXPECT_EQ(*live.SurvivorOf("a2"), "u4");
  EXPECT_EQ(*live.SurvivorOf("a3"), "u3");
  EXPECT_EQ(live.KeysOf("u4"), (std::vector<std::string>{"u4", "a1", "a2", "u1"}));
  EXPECT_EQ(*live.Members("carts"), (std::vector<std::string>{"u3", "u4"}));
  EXPECT_EQ(*live.Members("buyers"), (std::vector<std::string>{"u2", "u4"}));
  EXPECT_EQ(*live.Members("pro"), std::vector<std::string>{"u4"});
  EXPECT_EQ(*live.Members("big"), std::vector<std::string>{"u4"});  // 80 + 40
  EXPECT_EQ(*live.Members("no_order"), std::vector<std::string>{"u3"});
  EXPECT_EQ(live.Stats().profiles, 3u);

  for (const auto& [name, def] : kSegments) {
    EXPECT_EQ(*live.Members(name), *replay.Members(name)) << name;
    EXPECT_EQ(*live.Members(name), *again.Members(name)) << name;
  }
  for (const char* key : {"a1", "a2", "a3", "u1", "u2", "u3", "u4"}) {
    EXPECT_EQ(*live.SurvivorOf(key), *replay.SurvivorOf(key)) << key;
    EXPECT_EQ(live.KeysOf(key), replay.KeysOf(key)) << key;
    auto t1 = live.Traits(key), t2 = replay.Traits(key);
    ASSERT_TRUE(t1.ok() && t2.ok()) << key;
    ASSERT_EQ(t1->size(), t2->size()) << key;
    for (size_t i = 0; i < t1->size(); ++i) {
      EXPECT_EQ((*t1)[i].path, (*t2)[i].path);
      EXPECT_TRUE((*t1)[i].value == (*t2)[i].value) << key << " " << (*t1)[i].path;
    }
  }
  EXPECT_EQ(live.Stats().profiles, replay.Stats().profiles);
  EXPECT_EQ(live.Stats().records, replay.Stats().records);

  std::vector<Change> a = live.Changes(), b = again.Changes();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].segment, b[i].segment);
    EXPECT_EQ(a[i].profile, b[i].profile);
    EXPECT_EQ(a[i].kind, b[i].kind);
    EXPECT_EQ(a[i].cause, b[i].cause);
    EXPECT_EQ(a[i].cause_ref, b[i].cause_ref);
  }
}

TEST_F(MergeTest, ErasingAnyKeyErasesTheWholeMergedProfile) {
  Create("any", R"(performed "A")");
  Ingest(Track("", "a1", "A", kT0));
  Ingest(Track("u1", "a1", "A", kT0 + 1));
  Ingest(Alias("old", "u1", kT0 + 2));
  ASSERT_EQ(engine_.KeysOf("old"), (std::vector<std::string>{"u1", "a1", "old"}));
  ASSERT_TRUE(engine_.EraseProfile("a1").ok());
  for (const char* key : {"u1", "a1", "old"}) EXPECT_FALSE(engine_.HasProfile(key)) << key;
  EXPECT_TRUE(engine_.Members("any")->empty());
  EXPECT_EQ(engine_.Stats().profiles, 0u);
  EXPECT_EQ(engine_.Stats().records, 0u);
  // Every key is free again and starts a new profile of its own.
  Ingest(Track("", "a1", "A", kT0 + 3));
  EXPECT_EQ(*engine_.SurvivorOf("a1"), "a1");
  EXPECT_EQ(*engine_.Members("any"), std::vector<std::string>{"a1"});
}

TEST_F(MergeTest, MergedAwayKeyReadsTheSurvivorsComputedValues) {
  ASSERT_TRUE(engine_.CreateComputedTrait("ltv", R"(sum(total) of "Order Completed")").ok());
  Ingest(Track("", "anon", "Order Completed", kT0, R"({"total":900})"));
  Ingest(Identify("u9", "anon", kT0 + 1, R"({"plan":"pro"})"));
  Ingest(Track("u9", "", "Order Completed", kT0 + 2, R"({"total":100})"));
  for (const char* key : {"u9", "anon"}) {
    auto v = engine_.ComputedTraitOf("ltv", key);
    ASSERT_TRUE(v.ok()) << key << ": " << v.status().message();
    EXPECT_EQ(v->num, 1000) << key;
    auto all = engine_.ComputedTraits(key);
    ASSERT_TRUE(all.ok()) << key;
    ASSERT_EQ(all->size(), 1u);
    EXPECT_EQ((*all)[0].value.num, 1000) << key;
  }
  // The merged-away profile's own value went to no value, with cause merged.
  bool saw = false;
  for (const ComputedChange& c : engine_.ComputedChanges("ltv"))
    if (c.profile == "anon" && c.cause == Cause::kMerged) {
      saw = true;
      EXPECT_EQ(c.new_value.type, ValueType::kNull);
      EXPECT_EQ(c.cause_ref, "u9");
    }
  EXPECT_TRUE(saw);
}

}  // namespace
}  // namespace shoal
