// An account's own events (context.groupId): the work an attributed event causes, and the
// lifecycle cases the data-driven files do not pin down as directly. Time moves with a
// VirtualClock only.
#include <gtest/gtest.h>

#include "fmt/format.h"
#include "shoal/engine.h"

namespace shoal {
namespace {

const Millis kT0 = *ParseTime("2026-01-01T00:00:00Z");

std::string Track(const std::string& user, const std::string& event, Millis ts,
                  const std::string& group = "") {
  std::string context = group.empty() ? "" : fmt::format(R"(,"context":{{"groupId":"{}"}})", group);
  return fmt::format(R"({{"type":"track","userId":"{}","event":"{}","timestamp":"{}"{}}})", user,
                     event, FormatTime(ts), context);
}

std::string Group(const std::string& user, const std::string& group, Millis ts) {
  return fmt::format(R"({{"type":"group","userId":"{}","groupId":"{}","timestamp":"{}"}})", user,
                     group, FormatTime(ts));
}

class AccountEventsTest : public ::testing::Test {
 protected:
  AccountEventsTest() : clock_(kT0 + kDay), engine_(&clock_) {}

  void Ingest(const std::string& json) { ASSERT_TRUE(engine_.IngestJson(json).ok()) << json; }
  void CreateAccount(const std::string& name, const std::string& def) {
    auto r = engine_.CreateSegment(name, def, SegmentTarget::kAccounts);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  bool In(const std::string& seg, const std::string& key) { return *engine_.IsMember(seg, key); }
  uint64_t Evals() const { return engine_.Stats().evaluations; }

  VirtualClock clock_;
  Engine engine_;
};

// An attributed event re-evaluates only the account segments that read its event, for its account
// only; an event without a groupId re-evaluates no account segment.
TEST_F(AccountEventsTest, AnEventReevaluatesOnlyTheAccountSegmentsReadingIt) {
  for (int a = 0; a < 50; ++a) Ingest(Group(fmt::format("u{}", a), fmt::format("a{}", a), kT0));
  for (int i = 0; i < 20; ++i)
    CreateAccount(fmt::format("s{}", i), fmt::format(R"(performed "E{}")", i));
  uint64_t before = Evals();
  Ingest(Track("u1", "E3", kT0, "a7"));
  EXPECT_EQ(Evals() - before, 1u);  // s3 for a7
  EXPECT_TRUE(In("s3", "a7"));
  EXPECT_FALSE(In("s3", "a1"));  // the sender's own account is not the event's
  before = Evals();
  Ingest(Track("u1", "E4", kT0));
  EXPECT_EQ(Evals() - before, 0u);
  EXPECT_FALSE(In("s4", "a1"));
}

// Events for an account no group call named yet are kept, evaluate nothing, and count from the
// account's first group call on.
TEST_F(AccountEventsTest, EventsBeforeTheFirstGroupCallCountFromIt) {
  CreateAccount("active", R"(performed "Logged In" at least 2 times within 7d)");
  Ingest(Track("u1", "Logged In", kT0, "acme"));
  Ingest(Track("u2", "Logged In", kT0 + 1, "acme"));
  EXPECT_FALSE(engine_.HasAccount("acme"));
  EXPECT_EQ(*engine_.Count("active"), 0u);
  Ingest(Group("u3", "acme", kT0 + 2));
  EXPECT_TRUE(In("active", "acme"));
  EXPECT_EQ(*engine_.AccountUsers("acme"), std::vector<std::string>{"u3"});
  auto changes = engine_.Changes("active");
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].cause, Cause::kGroup);
  // The older login (kT0) leaves the window at kT0 + 7d + 1ms and the count drops below 2.
  EXPECT_EQ(engine_.NextDeadline(), kT0 + 7 * kDay + 1);
}

// Regression: updating an account segment that has member conditions freed the new definition's
// own event series (they were dropped with the old hidden segments before being registered).
TEST_F(AccountEventsTest, UpdateKeepsTheNewDefinitionsEventSeries) {
  Ingest(Group("u1", "acme", kT0));
  CreateAccount("s", R"(any member (performed "X") and performed "Y")");
  ASSERT_TRUE(
      engine_.UpdateSegment("s", R"(any member (performed "Z") and performed "W" where n > 1)")
          .ok());
  Ingest(Track("u1", "Z", kT0));
  Ingest(Track("u2", "W", kT0, "acme"));  // no n: the filter does not match
  EXPECT_FALSE(In("s", "acme"));
  ASSERT_TRUE(
      engine_
          .IngestJson(fmt::format(R"({{"type":"track","userId":"u2","event":"W","timestamp":"{}",)"
                                  R"("properties":{{"n":2}},"context":{{"groupId":"acme"}}}})",
                                  FormatTime(kT0)))
          .ok());
  EXPECT_TRUE(In("s", "acme"));
}

// A static list holds users: an account segment rejects `in list`, naming why.
TEST_F(AccountEventsTest, ListsAreNotAccountConditions) {
  ASSERT_TRUE(engine_.CreateList("vip").ok());
  auto r = engine_.CreateSegment("bad", R"(in list "vip")", SegmentTarget::kAccounts);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("static list holds users"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace shoal
