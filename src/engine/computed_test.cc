// Computed traits in the engine: the work an event causes, exact deadlines, the change record and
// the listener, and the lifecycle errors. Values against the reference are checked by the files in
// tests/segments/computed and by the differential test.
#include <gtest/gtest.h>

#include "fmt/format.h"
#include "shoal/engine.h"

namespace shoal {
namespace {

const Millis kT0 = *ParseTime("2026-01-01T00:00:00Z");

std::string Track(const std::string& user, const std::string& event, Millis ts,
                  const std::string& props = "{}") {
  return fmt::format(
      R"({{"type":"track","userId":"{}","event":"{}","timestamp":"{}","properties":{}}})", user,
      event, FormatTime(ts), props);
}

class ComputedEngineTest : public ::testing::Test {
 protected:
  ComputedEngineTest() : clock_(kT0), engine_(&clock_) {}
  void Ingest(const std::string& json) { ASSERT_TRUE(engine_.IngestJson(json).ok()) << json; }
  void Define(const std::string& name, const std::string& def) {
    auto r = engine_.CreateComputedTrait(name, def);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  Value Of(const std::string& name, const std::string& user) {
    Result<Value> v = engine_.ComputedTraitOf(name, user);
    EXPECT_TRUE(v.ok()) << v.status().message();
    return v.ok() ? *v : Value{};
  }
  VirtualClock clock_;
  Engine engine_;
};

TEST_F(ComputedEngineTest, AnEventRecomputesOnlyTheTraitsThatReadIt) {
  Define("orders", R"(count of "Order Completed" within 30d)");
  Define("views", R"(count of "Product Viewed")");
  Ingest(Track("u1", "Order Completed", kT0 - 1000));
  Ingest(Track("u1", "Product Viewed", kT0 - 1000));
  uint64_t before = engine_.Stats().evaluations;
  Ingest(Track("u1", "Order Completed", kT0 - 500));
  EXPECT_EQ(engine_.Stats().evaluations - before, 1u);  // `orders` only
  before = engine_.Stats().evaluations;
  Ingest(Track("u1", "Something Else", kT0 - 500));
  EXPECT_EQ(engine_.Stats().evaluations - before, 0u);
  EXPECT_EQ(Of("orders", "u1"), Value::Number(2));
  EXPECT_EQ(Of("views", "u1"), Value::Number(1));
}

TEST_F(ComputedEngineTest, AValueChangesAtTheExactWindowBoundary) {
  Define("spend", R"(sum(total) of "Order Completed" within 30d)");
  const Millis ts = kT0 - 1000;
  Ingest(Track("u1", "Order Completed", ts, R"({"total":12.5})"));
  EXPECT_EQ(Of("spend", "u1"), Value::Number(12.5));
  ASSERT_TRUE(engine_.NextDeadline().has_value());
  EXPECT_EQ(*engine_.NextDeadline(), ts + 30 * kDay + 1);
  clock_.Set(ts + 30 * kDay);
  engine_.AdvanceTime();
  EXPECT_EQ(Of("spend", "u1"), Value::Number(12.5));
  clock_.Set(ts + 30 * kDay + 1);
  engine_.AdvanceTime();
  EXPECT_EQ(Of("spend", "u1"), Value::Number(0));
  std::vector<ComputedChange> ch = engine_.ComputedChanges("spend");
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[1].cause, Cause::kTime);
  EXPECT_EQ(ch[1].event_time, ts + 30 * kDay + 1);
  EXPECT_EQ(ch[1].old_value, Value::Number(12.5));
  EXPECT_EQ(ch[1].seq, 2u);
}

TEST_F(ComputedEngineTest, ListenerSeesEveryChangeWithOldAndNewValues) {
  std::vector<ComputedChange> seen;
  engine_.SetComputedChangeListener([&](const ComputedChange& c) { seen.push_back(c); });
  Define("fav", R"(most frequent(cat) of "V")");
  Ingest(Track("u1", "V", kT0 - 3000, R"({"cat":"Shoes"})"));
  Ingest(Track("u1", "V", kT0 - 2000, R"({"cat":"Hats"})"));  // a tie: the latest wins
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].trait, "fav");
  EXPECT_EQ(seen[0].profile, "u1");
  EXPECT_EQ(seen[0].old_value.type, ValueType::kNull);
  EXPECT_EQ(seen[0].new_value, Value::String("Shoes"));
  EXPECT_EQ(seen[1].old_value, Value::String("Shoes"));
  EXPECT_EQ(seen[1].new_value, Value::String("Hats"));
  EXPECT_EQ(seen[1].cause, Cause::kEvent);
  EXPECT_EQ(seen[1].event, "V");
  Result<std::vector<ComputedTraitValue>> all = engine_.ComputedTraits("u1");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].name, "fav");
  // Erasing the profile takes its values to no value.
  ASSERT_TRUE(engine_.EraseProfile("u1").ok());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].cause, Cause::kErased);
  EXPECT_EQ(seen[2].new_value.type, ValueType::kNull);
  EXPECT_EQ(engine_.ComputedTraits("u1").status().code(), Status::Code::kNotFound);
}

TEST_F(ComputedEngineTest, SegmentsReadComputedTraitsInRankOrder) {
  Define("score", R"(10 points if performed "Demo" + 5 points if plan = "pro")");
  ASSERT_TRUE(engine_.CreateSegment("hot", "computed.score >= 15").ok());
  ASSERT_TRUE(
      engine_.CreateSegment("very_hot", R"(in segment "hot" and computed.score > 14)").ok());
  Ingest(Track("u1", "Demo", kT0 - 10));
  EXPECT_FALSE(*engine_.IsMember("hot", "u1"));
  Ingest(
      R"({"type":"identify","userId":"u1","traits":{"plan":"pro"},"timestamp":"2025-12-31T00:00:00Z"})");
  EXPECT_TRUE(*engine_.IsMember("hot", "u1"));
  EXPECT_TRUE(*engine_.IsMember("very_hot", "u1"));  // saw the current score and membership
  std::vector<Change> ch = engine_.Changes("hot");
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].cause, Cause::kTraits);
  // Unknown, referenced, cyclic.
  EXPECT_EQ(engine_.Validate("computed.nope > 1").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.Estimate("computed.nope > 1").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(*engine_.Estimate("computed.score = 15"), 1u);
  EXPECT_EQ(engine_.DeleteComputedTrait("score").code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(engine_.UpdateComputedTrait("score", R"(1 point if in segment "hot")").status().code(),
            Status::Code::kFailedPrecondition);
  EXPECT_EQ(*engine_.Estimate("computed.score = 15"), 1u);  // the failed update changed nothing
}

TEST_F(ComputedEngineTest, UniqueKeepsTheFirstHundredValues) {
  Define("ids", R"(unique(id) of "O")");
  Define("n", R"(distinct(id) of "O")");
  for (int i = 150; i > 0; --i)
    Ingest(Track("u1", "O", kT0 - 1000 + i, fmt::format(R"({{"id":{}}})", i)));
  EXPECT_EQ(Of("n", "u1"), Value::Number(150));
  std::string want = "[";
  for (int i = 1; i <= 100; ++i) want += (i > 1 ? "," : "") + std::to_string(i);
  EXPECT_EQ(Of("ids", "u1"), Value::List(want + "]"));
}

TEST_F(ComputedEngineTest, LifecycleErrors) {
  EXPECT_EQ(engine_.CreateComputedTrait("", "count of \"X\"").status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(engine_.CreateComputedTrait("a b", "count of \"X\"").status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(engine_.CreateComputedTrait("x", "count of X").status().message(),
            "1:10: expected an event name in quotes such as \"Order Completed\" after 'count of', "
            "found 'X'");
  Define("x", R"(count of "X")");
  EXPECT_EQ(engine_.CreateComputedTrait("x", "count of \"Y\"").status().code(),
            Status::Code::kAlreadyExists);
  // A segment may share the name: separate namespaces.
  EXPECT_TRUE(engine_.CreateSegment("x", "computed.x > 0").ok());
  EXPECT_EQ(engine_.GetComputedTrait("x")->definition, R"(count of "X")");
  EXPECT_FALSE(engine_.GetComputedTrait("x")->score);
  EXPECT_EQ(engine_.ListComputedTraits().size(), 1u);
  EXPECT_EQ(engine_.ListSegments().size(), 1u);  // the computed trait is not a segment
  EXPECT_EQ(engine_.DeleteComputedTrait("nope").code(), Status::Code::kNotFound);
  EXPECT_EQ(
      engine_.CreateSegment("acc", "computed.x > 0", SegmentTarget::kAccounts).status().code(),
      Status::Code::kInvalidArgument);
  ASSERT_TRUE(engine_.DeleteSegment("x").ok());
  EXPECT_TRUE(engine_.DeleteComputedTrait("x").ok());
  EXPECT_EQ(engine_.GetComputedTrait("x").status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace shoal
