// Engine behaviour that the data-driven files do not pin down as directly: exact deadlines, the
// amount of work per event, lifecycle errors, explain. Time moves with a VirtualClock only.
#include "shoal/engine.h"

#include <gtest/gtest.h>

#include "fmt/format.h"
#include "store/store.h"

namespace shoal {
namespace {

const Millis kT0 = *ParseTime("2026-01-01T00:00:00Z");

std::string Track(const std::string& user, const std::string& event, Millis ts,
                  const std::string& props = "{}") {
  return fmt::format(
      R"({{"type":"track","userId":"{}","event":"{}","timestamp":"{}","properties":{}}})", user,
      event, FormatTime(ts), props);
}

std::string Identify(const std::string& user, Millis ts, const std::string& traits) {
  return fmt::format(R"({{"type":"identify","userId":"{}","timestamp":"{}","traits":{}}})", user,
                     FormatTime(ts), traits);
}

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : clock_(kT0), engine_(&clock_) {}

  void Ingest(const std::string& json) { ASSERT_TRUE(engine_.IngestJson(json).ok()) << json; }
  void Create(const std::string& name, const std::string& def) {
    auto r = engine_.CreateSegment(name, def);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  bool In(const std::string& seg, const std::string& user) { return *engine_.IsMember(seg, user); }
  void At(Millis t) {
    clock_.Set(t);
    engine_.AdvanceTime();
  }

  VirtualClock clock_;
  Engine engine_;
};

// A record's properties must fit one chunk of the store's property column. JSON messages are
// limited to 32 KB before that; an in-process caller (Engine::Ingest, `shoal bench`) is not: a
// message with more fields is refused whole, with the count, and nothing else changes.
TEST_F(EngineTest, RefusesAMessageWithMorePropertiesThanARecordHolds) {
  Create("buyers", R"(performed "Order Completed")");
  Ingest(Track("u1", "Order Completed", kT0 - 1));  // an event counts from the instant after it
  auto order = [](const std::string& user, size_t props) {
    Message m;
    m.user_id = user;
    m.event = "Order Completed";
    m.timestamp = kT0 - 1;
    for (size_t i = 0; i < props; ++i) m.properties.push_back({fmt::format("p{}", i), {}});
    return m;
  };
  Status st = engine_.Ingest(order("u2", store::kMaxProps));
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(st.message(), "field 'properties': 65536 properties; a message may have at most 65535");
  auto u2 = engine_.IsMember("buyers", "u2");
  EXPECT_FALSE(u2.ok() && *u2);  // not a member (nor, with nothing accepted, a known profile)
  EXPECT_TRUE(In("buyers", "u1"));
  ASSERT_TRUE(engine_.Ingest(order("u3", store::kMaxProps - 1)).ok());
  EXPECT_TRUE(In("buyers", "u3"));
}

// A message may name one path twice (a JSON key repeated, or {"a": {"b": 1}} beside "a.b"): the
// record keeps one value a path, the later field's, whatever order the paths come in.
TEST_F(EngineTest, ALaterFieldOfTheSamePathWins) {
  Create("pro_de", R"(plan = "pro" and country = "DE" and age = 30 and seats = 5)");
  Message m;
  m.type = MessageType::kIdentify;
  m.user_id = "u1";
  m.timestamp = kT0 - 1;
  // Keys are first seen in this order: country, plan, age, seats, so the fields below arrive out
  // of key order, with repeats before and after other keys.
  m.traits = {{"country", Value::String("FR")}, {"plan", Value::String("free")},
              {"age", Value::Number(30)},       {"seats", Value::Number(1)},
              {"plan", Value::String("pro")},   {"country", Value::String("DE")},
              {"seats", Value::Number(5)}};
  ASSERT_TRUE(engine_.Ingest(m).ok());
  EXPECT_TRUE(In("pro_de", "u1"));
  m.user_id = "u2";  // the same fields, the repeats now first: the earlier values lose
  m.traits = {{"seats", Value::Number(5)},      {"plan", Value::String("pro")},
              {"country", Value::String("DE")}, {"age", Value::Number(30)},
              {"plan", Value::String("free")},  {"seats", Value::Number(5)}};
  ASSERT_TRUE(engine_.Ingest(m).ok());
  EXPECT_FALSE(In("pro_de", "u2"));
  auto traits = engine_.Traits("u2");
  ASSERT_TRUE(traits.ok());
  ASSERT_EQ(traits->size(), 4u);  // one value a path
  for (const Field& f : *traits) {
    if (f.path == "plan") {
      EXPECT_EQ(f.value.str, "free");
    }
  }
}

TEST_F(EngineTest, LeavesWindowAtTheExactMillisecond) {
  Create("recent", R"(performed "Order Completed" within 30d)");
  Ingest(Track("u1", "Order Completed", kT0));
  EXPECT_FALSE(In("recent", "u1"));  // ts < now: not yet at the same instant
  At(kT0 + 1);
  EXPECT_TRUE(In("recent", "u1"));
  At(kT0 + 30 * kDay);
  EXPECT_TRUE(In("recent", "u1"));
  EXPECT_EQ(engine_.NextDeadline(), kT0 + 30 * kDay + 1);
  At(kT0 + 30 * kDay + 1);
  EXPECT_FALSE(In("recent", "u1"));
  auto changes = engine_.Changes("recent");
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[1].kind, ChangeKind::kExit);
  EXPECT_EQ(changes[1].cause, Cause::kTime);
  EXPECT_EQ(changes[1].event_time, kT0 + 30 * kDay + 1);
  EXPECT_EQ(changes[1].seq, 2u);
}

// A deadline that moves later keeps its first timer as an anchor (DeadlineMap): the engine
// pushes one timer, and when the anchor comes due nothing changes and the exit still happens at
// the later deadline's exact millisecond. NextDeadline answers with the deadline, not the anchor.
TEST_F(EngineTest, ADeadlineMovedLaterFiresAtItsOwnInstant) {
  Create("recent", R"(performed "Order Completed" within 30d)");
  Ingest(Track("u1", "Order Completed", kT0));
  At(kT0 + 1);
  ASSERT_TRUE(In("recent", "u1"));
  const uint64_t pending = engine_.Stats().pending_timers;
  Ingest(Track("u1", "Order Completed", kT0 + 10 * kDay));  // the exit moves 10 days later
  Ingest(Track("u1", "Order Completed", kT0 + 5 * kDay));   // late: the exit stays
  EXPECT_EQ(engine_.Stats().pending_timers, pending);       // no new timer
  At(kT0 + 30 * kDay + 1);                                  // the anchor comes due: nothing changes
  EXPECT_TRUE(In("recent", "u1"));
  EXPECT_EQ(engine_.NextDeadline(), kT0 + 40 * kDay + 1);
  At(kT0 + 40 * kDay);
  EXPECT_TRUE(In("recent", "u1"));
  At(kT0 + 40 * kDay + 1);
  EXPECT_FALSE(In("recent", "u1"));
  auto changes = engine_.Changes("recent");
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[1].kind, ChangeKind::kExit);
  EXPECT_EQ(changes[1].event_time, kT0 + 40 * kDay + 1);
  EXPECT_EQ(engine_.NextDeadline(), std::nullopt);
}

// NextDeadline, asked while the anchor is still ahead, answers with the deadline it stands for.
TEST_F(EngineTest, NextDeadlineLooksPastAnAnchor) {
  Create("recent", R"(performed "Order Completed" within 30d)");
  Ingest(Track("u1", "Order Completed", kT0 - 10 * kDay));  // exit at 20d + 1: the anchor
  Ingest(Track("u1", "Order Completed", kT0 - 1));          // exit at 30d
  EXPECT_TRUE(In("recent", "u1"));
  EXPECT_EQ(engine_.NextDeadline(), kT0 + 30 * kDay);
  At(kT0 + 30 * kDay - 1);
  EXPECT_TRUE(In("recent", "u1"));
  At(kT0 + 30 * kDay);
  EXPECT_FALSE(In("recent", "u1"));
  EXPECT_EQ(engine_.Changes("recent").back().event_time, kT0 + 30 * kDay);
}

TEST_F(EngineTest, EntersNegatedWindowWhenTheLastEventAges) {
  Create("quiet", R"(performed "Signup" and did not perform "Login" within 7d)");
  Ingest(Track("u1", "Signup", kT0 - kDay));
  Ingest(Track("u1", "Login", kT0 - kHour));
  At(kT0 + 1);
  EXPECT_FALSE(In("quiet", "u1"));
  At(kT0 - kHour + 7 * kDay);
  EXPECT_FALSE(In("quiet", "u1"));
  At(kT0 - kHour + 7 * kDay + 1);
  EXPECT_TRUE(In("quiet", "u1"));
}

TEST_F(EngineTest, CountThresholdDeadlineSkipsIrrelevantExpiries) {
  // Ten events in the window, threshold 3: the truth flips when the 8th oldest leaves, so
  // the engine must not wake up for the first seven expiries.
  Create("active", R"(performed "Login" at least 3 times within 1d)");
  for (int i = 0; i < 10; ++i) Ingest(Track("u1", "Login", kT0 - kDay + (i + 1) * kHour));
  At(kT0 + 1);
  ASSERT_TRUE(In("active", "u1"));
  EXPECT_EQ(engine_.NextDeadline(), kT0 + 8 * kHour + 1);
  uint64_t fires = engine_.Stats().timer_fires;
  At(kT0 + 8 * kHour);
  EXPECT_TRUE(In("active", "u1"));
  At(kT0 + 8 * kHour + 1);
  EXPECT_FALSE(In("active", "u1"));
  EXPECT_EQ(engine_.Stats().timer_fires - fires, 1u);
}

TEST_F(EngineTest, AnEventTouchesOnlyTheSegmentsThatDependOnIt) {
  for (int i = 0; i < 200; ++i)
    Create(fmt::format("s{}", i), fmt::format(R"(performed "E{}" within 30d)", i));
  Ingest(Track("u1", "E0", kT0 - kHour));  // new profile: no segment is true on an empty profile
  uint64_t before = engine_.Stats().evaluations;
  Ingest(Track("u1", "E7", kT0 - kHour));
  EXPECT_EQ(engine_.Stats().evaluations - before, 1u);
  before = engine_.Stats().evaluations;
  Ingest(Track("u1", "Unrelated", kT0 - kHour));
  EXPECT_EQ(engine_.Stats().evaluations - before, 0u);
  EXPECT_TRUE(In("s7", "u1"));
  EXPECT_FALSE(In("s8", "u1"));
}

TEST_F(EngineTest, NewProfileJoinsSegmentsAnEmptyProfileSatisfies) {
  Create("never_bought", R"(not performed "Order Completed")");
  Ingest(Track("u1", "Page Viewed", kT0 - kHour));
  EXPECT_TRUE(In("never_bought", "u1"));
  Ingest(Track("u1", "Order Completed", kT0 - kHour));
  EXPECT_FALSE(In("never_bought", "u1"));
}

TEST_F(EngineTest, LateEventEntersAtOnceAndOldOneChangesNothing) {
  Create("recent", R"(performed "Order Completed" within 30d)");
  Ingest(Track("u1", "Order Completed", kT0 - 29 * kDay));
  EXPECT_TRUE(In("recent", "u1"));
  EXPECT_EQ(engine_.Changes("recent").back().cause, Cause::kEvent);
  Ingest(Track("u2", "Order Completed", kT0 - 31 * kDay));
  EXPECT_FALSE(In("recent", "u2"));
}

TEST_F(EngineTest, FutureEventCountsOnceNowPassesIt) {
  Create("recent", R"(performed "Order Completed" within 30d)");
  Ingest(Track("u1", "Order Completed", kT0 + kHour));
  EXPECT_FALSE(In("recent", "u1"));
  At(kT0 + kHour + 1);
  EXPECT_TRUE(In("recent", "u1"));
}

TEST_F(EngineTest, TraitsMergeLastWriterWinsByTimestamp) {
  Create("pro", R"(plan = "pro")");
  Ingest(Identify("u1", kT0 - 2 * kHour, R"({"plan":"pro","country":"DE"})"));
  Ingest(Identify("u1", kT0 - 3 * kHour, R"({"plan":"free"})"));  // older: ignored
  EXPECT_TRUE(In("pro", "u1"));
  Ingest(Identify("u1", kT0 - kHour, R"({"country":"FR"})"));  // keeps plan
  EXPECT_TRUE(In("pro", "u1"));
  Ingest(Identify("u1", kT0, R"({"plan":null})"));
  EXPECT_FALSE(In("pro", "u1"));
}

TEST_F(EngineTest, UpdateEmitsExactlyTheDifference) {
  Ingest(Identify("u1", kT0 - kHour, R"({"age":30})"));
  Ingest(Identify("u2", kT0 - kHour, R"({"age":40})"));
  Ingest(Identify("u3", kT0 - kHour, R"({"age":50})"));
  Create("band", "age between 25 and 45");
  ASSERT_EQ(engine_.Changes("band").size(), 2u);
  ASSERT_TRUE(engine_.UpdateSegment("band", "age between 35 and 55").ok());
  auto changes = engine_.Changes("band", 2);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].profile, "u3");
  EXPECT_EQ(changes[0].kind, ChangeKind::kEnter);
  EXPECT_EQ(changes[1].profile, "u1");
  EXPECT_EQ(changes[1].kind, ChangeKind::kExit);
  EXPECT_EQ(changes[1].cause, Cause::kDefinition);
}

TEST_F(EngineTest, ReferencesPropagateAndCyclesAreRejected) {
  Create("buyers", R"(performed "Order Completed")");
  Create("vip", R"(in segment "buyers" and plan = "pro")");
  Ingest(Identify("u1", kT0 - kHour, R"({"plan":"pro"})"));
  EXPECT_FALSE(In("vip", "u1"));
  Ingest(Track("u1", "Order Completed", kT0 - kHour));
  EXPECT_TRUE(In("vip", "u1"));
  auto r = engine_.UpdateSegment("buyers", R"(in segment "vip")");
  EXPECT_EQ(r.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(engine_.DeleteSegment("buyers").code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(engine_.CreateSegment("x", R"(in segment "nope")").status().code(),
            Status::Code::kNotFound);
  ASSERT_TRUE(engine_.DeleteSegment("vip").ok());
  EXPECT_EQ(engine_.Changes("vip").back().cause, Cause::kDeleted);
  EXPECT_TRUE(engine_.DeleteSegment("buyers").ok());
}

// Each segment references the two before it: the reference graph has exponentially many paths,
// and walking it without memoization hung on create and update.
TEST_F(EngineTest, DeepReferenceDagStaysLinear) {
  Create("r0", R"(performed "A")");
  Create("r1", R"(performed "B")");
  for (int i = 2; i < 60; ++i)
    Create(fmt::format("r{}", i),
           fmt::format(R"(in segment "r{}" or in segment "r{}")", i - 1, i - 2));
  Ingest(Track("u1", "A", kT0 - kHour));
  EXPECT_TRUE(In("r59", "u1"));
  auto r = engine_.UpdateSegment("r0", R"(in segment "r59")");
  EXPECT_EQ(r.status().code(), Status::Code::kFailedPrecondition);
}

TEST_F(EngineTest, DependentOfATimeChangeNamesTheSegment) {
  Create("recent", R"(performed "Order Completed" within 1d)");
  Create("lapsed", R"(performed "Order Completed" and not in segment "recent")");
  Ingest(Track("u1", "Order Completed", kT0 - kHour));
  EXPECT_FALSE(In("lapsed", "u1"));
  At(kT0 - kHour + kDay + 1);
  EXPECT_TRUE(In("lapsed", "u1"));
  auto c = engine_.Changes("lapsed").back();
  EXPECT_EQ(c.cause, Cause::kSegment);
  EXPECT_EQ(c.cause_ref, "recent");
  EXPECT_EQ(c.event_time, kT0 - kHour + kDay + 1);
}

TEST_F(EngineTest, AbandonmentEntersWhenTheGraceTimePasses) {
  Create("abandoned",
         R"(performed "Product Added" within 7d not followed by "Order Completed" within 1h)");
  Ingest(Track("u1", "Product Added", kT0));
  Ingest(Track("u2", "Product Added", kT0));
  Ingest(Track("u2", "Order Completed", kT0 + 30 * kMinute));
  At(kT0 + kHour);
  EXPECT_FALSE(In("abandoned", "u1"));
  At(kT0 + kHour + 1);
  EXPECT_TRUE(In("abandoned", "u1"));
  EXPECT_FALSE(In("abandoned", "u2"));
}

TEST_F(EngineTest, EstimateCountsWithoutSaving) {
  Ingest(Identify("u1", kT0 - kHour, R"({"age":30})"));
  Ingest(Identify("u2", kT0 - kHour, R"({"age":40})"));
  auto n = engine_.Estimate("age > 35");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE(engine_.ListSegments().empty());
  EXPECT_FALSE(engine_.Estimate("age >").ok());
}

TEST_F(EngineTest, ExplainShowsValuesAndNextChange) {
  Create("buyers", R"(performed "Order Completed" within 30d and plan = "pro")");
  Ingest(Identify("u1", kT0 - kHour, R"({"plan":"pro"})"));
  Ingest(Track("u1", "Order Completed", kT0 - kHour));
  auto e = engine_.Explain("buyers", "u1");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->value);
  ASSERT_EQ(e->children.size(), 2u);
  EXPECT_NE(e->children[0].detail.find("count = 1"), std::string::npos);
  EXPECT_EQ(e->children[0].next_change, kT0 - kHour + 30 * kDay + 1);
  EXPECT_NE(e->children[1].detail.find("pro"), std::string::npos);
  EXPECT_EQ(engine_.Explain("buyers", "nobody").status().code(), Status::Code::kNotFound);
}

// std::regex recursed once per character and overflowed the stack on a 30 KB value.
TEST_F(EngineTest, RegexOnALongValueDoesNotCrash) {
  std::string bio(30000, 'a');
  Ingest(Identify("u1", kT0 - kHour, "{\"bio\":\"" + bio + "\"}"));
  Create("a_only", R"(bio matches "^(a|b)*$")");
  Create("has_c", R"(bio matches "a.*c")");
  EXPECT_TRUE(In("a_only", "u1"));
  EXPECT_FALSE(In("has_c", "u1"));
}

TEST_F(EngineTest, BadInputIsAnErrorNotACrash) {
  EXPECT_FALSE(engine_.IngestJson(R"({"type":"track","userId":"u1"})").ok());
  EXPECT_FALSE(engine_.IngestJson("not json").ok());
  EXPECT_FALSE(engine_.CreateSegment("", "plan = \"pro\"").ok());
  auto r = engine_.CreateSegment("bad", R"(performed "X" within 30)");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().rfind("1:", 0), 0u) << r.status().message();
  auto rel = engine_.CreateSegment("rel", R"(performed "X" where at within 7d)");
  EXPECT_EQ(rel.status().code(), Status::Code::kInvalidArgument);
}

TEST_F(EngineTest, TraitsAreTheMergedIdentifiesSortedByPath) {
  EXPECT_FALSE(engine_.HasProfile("u1"));
  EXPECT_EQ(engine_.Traits("u1").status().code(), Status::Code::kNotFound);
  Ingest(Identify("u1", kT0, R"({"plan":"pro","address":{"city":"Paris"},"age":30})"));
  // A late identify does not override a newer value; null clears; a new path is added.
  Ingest(Identify("u1", kT0 - kHour, R"({"plan":"free","tags":["a",1]})"));
  Ingest(Identify("u1", kT0 + 1, R"({"age":null,"vip":true})"));
  EXPECT_TRUE(engine_.HasProfile("u1"));
  auto t = engine_.Traits("u1");
  ASSERT_TRUE(t.ok());
  std::vector<std::string> got;
  for (const Field& f : *t) got.push_back(f.path);
  EXPECT_EQ(got, (std::vector<std::string>{"address.city", "plan", "tags", "vip"}));
  EXPECT_EQ((*t)[0].value, Value::String("Paris"));
  EXPECT_EQ((*t)[1].value, Value::String("pro"));
  EXPECT_EQ((*t)[2].value, Value::List(R"(["a",1])"));
  EXPECT_EQ((*t)[3].value, Value::Bool(true));
  // A profile known only from events has no traits, which is not an error.
  Ingest(Track("u2", "A", kT0));
  auto t2 = engine_.Traits("u2");
  ASSERT_TRUE(t2.ok());
  EXPECT_TRUE(t2->empty());
}

TEST_F(EngineTest, EraseForgetsTheProfileEverywhere) {
  Create("pro", R"(plan = "pro")");
  Ingest(Identify("u1", kT0, R"({"plan":"pro"})"));
  Ingest(Track("u1", "A", kT0 - kHour));
  Ingest(Track("u2", "A", kT0 - kHour));
  EXPECT_EQ(engine_.Stats().profiles, 2u);
  EXPECT_EQ(engine_.Stats().records, 3u);
  ASSERT_TRUE(engine_.EraseProfile("u1").ok());
  EXPECT_FALSE(engine_.HasProfile("u1"));
  EXPECT_EQ(engine_.Traits("u1").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.Explain("pro", "u1").status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(engine_.SegmentsOf("u1").empty());
  EXPECT_EQ(engine_.EraseProfile("u1").code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.EraseProfile("never").code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.Stats().profiles, 1u);
  EXPECT_EQ(engine_.Stats().records, 1u);
  auto changes = engine_.Changes("pro");
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[1].kind, ChangeKind::kExit);
  EXPECT_EQ(changes[1].cause, Cause::kErased);
  EXPECT_EQ(changes[1].profile, "u1");
  EXPECT_STREQ(CauseName(Cause::kErased), "erased");
  EXPECT_STREQ(CauseName(Cause::kList), "list");
  // The history is gone from the store too, and a new segment does not see it.
  for (size_t i = 0; i < engine_.store().size(); ++i) {
    if (engine_.store().kind(i) != store::RecordKind::kErased) {
      EXPECT_EQ(engine_.store().profiles().Get(engine_.store().profile(i)), "u2");
    }
  }
  EXPECT_EQ(*engine_.Estimate(R"(performed "A")"), 1u);
  EXPECT_EQ(*engine_.Estimate("bucket(1) < 1"), 1u);
}

TEST_F(EngineTest, ListErrors) {
  EXPECT_EQ(engine_.CreateList("").code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(engine_.CreateList("vip").ok());
  EXPECT_EQ(engine_.CreateList("vip").code(), Status::Code::kAlreadyExists);
  EXPECT_EQ(engine_.DeleteList("nope").code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.AddToList("nope", {"u1"}).code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.RemoveFromList("nope", {"u1"}).code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.ListMembers("nope").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.AddToList("vip", {"u1", ""}).code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(engine_.ListMembers("vip")->empty());  // nothing applied from the bad call
  EXPECT_EQ(engine_.Validate(R"(in list "nope")").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.Estimate(R"(in list "nope")").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.CreateSegment("s", R"(in list "nope")").status().code(),
            Status::Code::kNotFound);
  EXPECT_EQ(*engine_.Validate(R"(IN LIST "vip")"), R"(in list "vip")");
  Create("s", R"(in list "vip")");
  EXPECT_EQ(engine_.DeleteList("vip").code(), Status::Code::kFailedPrecondition);
  ASSERT_TRUE(engine_.DeleteSegment("s").ok());
  EXPECT_TRUE(engine_.DeleteList("vip").ok());
  EXPECT_TRUE(engine_.Lists().empty());
}

TEST_F(EngineTest, ListChangeEvaluatesOnlyReferencingSegmentsForChangedProfiles) {
  ASSERT_TRUE(engine_.CreateList("vip").ok());
  ASSERT_TRUE(engine_.CreateList("other").ok());
  for (int i = 0; i < 50; ++i) Ingest(Identify("u" + std::to_string(i), kT0, R"({"plan":"pro"})"));
  Create("vips", R"(in list "vip")");
  Create("others", R"(in list "other")");
  Create("pro", R"(plan = "pro")");
  Create("vip_pro", R"(in segment "vips" and plan = "pro")");
  uint64_t before = engine_.Stats().evaluations;
  ASSERT_TRUE(engine_.AddToList("vip", {"u1", "u2", "not-yet"}).ok());
  // vips for u1 and u2, then vip_pro for each because vips changed: 4, not 4 x 50.
  EXPECT_EQ(engine_.Stats().evaluations - before, 4u);
  before = engine_.Stats().evaluations;
  ASSERT_TRUE(engine_.AddToList("vip", {"u1"}).ok());  // already in: nothing to do
  EXPECT_EQ(engine_.Stats().evaluations - before, 0u);
  EXPECT_TRUE(In("vip_pro", "u2"));
  EXPECT_EQ(engine_.Changes("vips").back().cause, Cause::kList);
  EXPECT_EQ(engine_.Changes("vips").back().cause_ref, "vip");
  EXPECT_EQ(*engine_.ListMembers("vip"), (std::vector<std::string>{"not-yet", "u1", "u2"}));
  // A message costs no list work: only the segments reading `plan` (pro, vip_pro) are evaluated.
  before = engine_.Stats().evaluations;
  Ingest(Identify("u7", kT0, R"({"plan":"free"})"));
  EXPECT_EQ(engine_.Stats().evaluations - before, 2u);
  // The pending key joins on its first message.
  Ingest(Track("not-yet", "A", kT0));
  EXPECT_TRUE(In("vips", "not-yet"));
  EXPECT_EQ(engine_.Changes("vips").back().cause, Cause::kEvent);
}

}  // namespace
}  // namespace shoal
