// Account computed traits in the engine (docs/language.md, "Account computed traits and scores"):
// the work an account event, a group call and a member's event cause (only the accounts touched),
// the change record's target and key, exact deadlines, erasure and merges, and the target errors.
// Values against the reference are checked by tests/segments/acctcomputed and the differential
// test.
#include <gtest/gtest.h>

#include "fmt/format.h"
#include "shoal/engine.h"

namespace shoal {
namespace {

const Millis kT0 = *ParseTime("2026-01-01T00:00:00Z");

std::string Track(const std::string& user, const std::string& event, Millis ts,
                  const std::string& group = "", const std::string& id = "") {
  std::string ctx = group.empty() ? "" : fmt::format(R"(,"context":{{"groupId":"{}"}})", group);
  std::string mid = id.empty() ? "" : fmt::format(R"(,"messageId":"{}")", id);
  return fmt::format(R"({{"type":"track","userId":"{}","event":"{}","timestamp":"{}"{}{}}})", user,
                     event, FormatTime(ts), ctx, mid);
}

std::string Group(const std::string& user, const std::string& group, Millis ts,
                  const std::string& traits = "{}") {
  return fmt::format(
      R"({{"type":"group","userId":"{}","groupId":"{}","timestamp":"{}","traits":{}}})", user,
      group, FormatTime(ts), traits);
}

class AccountComputedTest : public ::testing::Test {
 protected:
  AccountComputedTest() : clock_(kT0), engine_(&clock_) {}
  void Ingest(const std::string& json) { ASSERT_TRUE(engine_.IngestJson(json).ok()) << json; }
  void Define(const std::string& name, const std::string& def) {
    auto r = engine_.CreateComputedTrait(name, def, SegmentTarget::kAccounts);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->target, SegmentTarget::kAccounts);
  }
  Value Of(const std::string& name, const std::string& account) {
    Result<Value> v = engine_.ComputedTraitOf(name, account);
    EXPECT_TRUE(v.ok()) << v.status().message();
    return v.ok() ? *v : Value{};
  }
  VirtualClock clock_;
  Engine engine_;
};

TEST_F(AccountComputedTest, AnAccountEventRecomputesOnlyThatAccountsTraitsThatReadIt) {
  Ingest(Group("u1", "acme", kT0 - 5000));
  Ingest(Group("u2", "globex", kT0 - 5000));
  Define("logins", R"(count of "Logged In" within 30d)");
  Define("demos", R"(count of "Demo Requested")");
  Ingest(Track("u1", "Logged In", kT0 - 1000, "acme"));
  uint64_t before = engine_.Stats().evaluations;
  Ingest(Track("u1", "Logged In", kT0 - 500, "acme"));
  EXPECT_EQ(engine_.Stats().evaluations - before, 1u);  // `logins` for acme only
  before = engine_.Stats().evaluations;
  Ingest(Track("u2", "Logged In", kT0 - 500));  // no groupId: not an account event
  EXPECT_EQ(engine_.Stats().evaluations - before, 0u);
  EXPECT_EQ(Of("logins", "acme"), Value::Number(2));
  EXPECT_EQ(Of("logins", "globex"), Value::Number(0));
  EXPECT_EQ(Of("demos", "acme"), Value::Number(0));
  // Users have none of them; the account lists both.
  EXPECT_TRUE(engine_.ComputedTraits("u1")->empty());
  auto values = engine_.AccountComputedTraits("acme");
  ASSERT_TRUE(values.ok());
  ASSERT_EQ(values->size(), 2u);
  EXPECT_EQ((*values)[0].name, "demos");
  EXPECT_EQ((*values)[1].value, Value::Number(2));
  EXPECT_EQ(engine_.AccountComputedTraits("nope").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(engine_.ComputedTraitOf("logins", "nope").status().code(), Status::Code::kNotFound);
}

TEST_F(AccountComputedTest, ChangesCarryTheTargetTheGroupIdAndTheCause) {
  Ingest(Group("u1", "acme", kT0 - 5000));
  Define("logins", R"(count of "Logged In" within 7d)");
  Ingest(Track("u1", "Logged In", kT0 - 1000, "acme", "m1"));
  std::vector<ComputedChange> ch = engine_.ComputedChanges("logins");
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].target, SegmentTarget::kAccounts);
  EXPECT_EQ(ch[0].profile, "acme");
  EXPECT_EQ(ch[0].cause, Cause::kEvent);
  EXPECT_EQ(ch[0].cause_ref, "m1");
  EXPECT_EQ(ch[0].new_value, Value::Number(1));
  // The login leaves the window at the exact millisecond, with no new data.
  clock_.Set(kT0 - 1000 + 7 * kDay);
  engine_.AdvanceTime();
  EXPECT_EQ(Of("logins", "acme"), Value::Number(1));
  clock_.Set(kT0 - 1000 + 7 * kDay + 1);
  engine_.AdvanceTime();
  EXPECT_EQ(Of("logins", "acme"), Value::Number(0));
  ch = engine_.ComputedChanges("logins", 1);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].cause, Cause::kTime);
  EXPECT_EQ(ch[0].event_time, kT0 - 1000 + 7 * kDay + 1);
}

TEST_F(AccountComputedTest, AMembersEventMovesTheScoreOfItsAccountsOnly) {
  Ingest(Group("u1", "acme", kT0 - 5000, R"({"plan":"free"})"));
  Ingest(Group("u2", "acme", kT0 - 5000));
  Ingest(Group("u3", "globex", kT0 - 5000));
  Define("engagement",
         R"(20 points if at least 2 members (performed "Logged In" within 7d) + 30 points if )"
         R"(performed "Demo Requested" within 30d - 10 points if plan = "free")");
  EXPECT_EQ(Of("engagement", "acme"), Value::Number(-10));
  EXPECT_EQ(Of("engagement", "globex"), Value::Number(0));
  Ingest(Track("u1", "Logged In", kT0 - 1000));
  Ingest(Track("u2", "Logged In", kT0 - 900, "", "m2"));
  EXPECT_EQ(Of("engagement", "acme"), Value::Number(10));
  std::vector<ComputedChange> ch = engine_.ComputedChanges("engagement");
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].cause, Cause::kEvent);  // the member's change keeps its cause
  EXPECT_EQ(ch[0].cause_ref, "m2");
  // globex was not evaluated by acme's members' events: one evaluation of the score per event.
  uint64_t before = engine_.Stats().evaluations;
  Ingest(Track("u3", "Demo Requested", kT0 - 800, "globex"));
  EXPECT_EQ(Of("engagement", "globex"), Value::Number(30));
  EXPECT_LE(engine_.Stats().evaluations - before, 2u);
  // A group call changing the plan: cause group.
  Ingest(Group("u1", "acme", kT0 - 100, R"({"plan":"pro"})"));
  EXPECT_EQ(Of("engagement", "acme"), Value::Number(20));
  EXPECT_EQ(engine_.ComputedChanges("engagement").back().cause, Cause::kGroup);
}

TEST_F(AccountComputedTest, AccountSegmentsReadAndRankByIt) {
  Ingest(Group("u1", "acme", kT0 - 5000));
  Ingest(Group("u2", "globex", kT0 - 5000));
  Define("logins", R"(count of "Logged In" within 30d)");
  ASSERT_TRUE(engine_.CreateSegment("busy", "computed.logins >= 2", SegmentTarget::kAccounts).ok());
  ASSERT_TRUE(
      engine_.CreateSegment("top1", "top 1 by computed.logins", SegmentTarget::kAccounts).ok());
  for (int i = 0; i < 2; ++i) Ingest(Track("u1", "Logged In", kT0 - 1000 + i, "acme"));
  Ingest(Track("u2", "Logged In", kT0 - 1000, "globex"));
  EXPECT_EQ(*engine_.Members("busy"), std::vector<std::string>{"acme"});
  EXPECT_EQ(*engine_.Members("top1"), std::vector<std::string>{"acme"});
  for (int i = 0; i < 2; ++i) Ingest(Track("u2", "Logged In", kT0 - 500 + i, "globex"));
  EXPECT_EQ(*engine_.Members("top1"), std::vector<std::string>{"globex"});
  // Referenced: not deletable.
  EXPECT_EQ(engine_.DeleteComputedTrait("logins").code(), Status::Code::kFailedPrecondition);
}

TEST_F(AccountComputedTest, WrongTargetIsAClearErrorBothWays) {
  ASSERT_TRUE(engine_.CreateComputedTrait("ltv", R"(sum(total) of "Order Completed")").ok());
  Define("logins", R"(count of "Logged In")");
  // One namespace.
  EXPECT_EQ(engine_.CreateComputedTrait("ltv", R"(count of "X")", SegmentTarget::kAccounts)
                .status()
                .code(),
            Status::Code::kAlreadyExists);
  EXPECT_EQ(engine_.CreateComputedTrait("logins", R"(count of "X")").status().code(),
            Status::Code::kAlreadyExists);
  auto user_reads = engine_.CreateSegment("u", "computed.logins > 1");
  EXPECT_EQ(user_reads.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(user_reads.status().message().find("\"logins\" is per account"), std::string::npos)
      << user_reads.status().message();
  auto acct_reads = engine_.CreateSegment("a", "computed.ltv > 1", SegmentTarget::kAccounts);
  EXPECT_EQ(acct_reads.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(acct_reads.status().message().find("\"ltv\" is per user"), std::string::npos);
  // Inside a member condition it is a user computed trait.
  EXPECT_TRUE(
      engine_.CreateSegment("m", "any member (computed.ltv > 100)", SegmentTarget::kAccounts).ok());
  EXPECT_EQ(engine_.CreateComputedTrait("s", "5 points if computed.logins > 0").status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(engine_.CreateSegment("r", "top 1 by computed.logins").status().code(),
            Status::Code::kInvalidArgument);
  // The target never changes: an update keeps it.
  auto up = engine_.UpdateComputedTrait("logins", R"(count of "Logged In" within 7d)");
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->target, SegmentTarget::kAccounts);
}

TEST_F(AccountComputedTest, ErasingTheLastSenderDropsTheAccountsValues) {
  Ingest(Group("u1", "acme", kT0 - 5000));
  Ingest(Group("u2", "globex", kT0 - 5000));
  Define("logins", R"(count of "Logged In")");
  Ingest(Track("u1", "Logged In", kT0 - 1000, "acme"));
  Ingest(Track("u2", "Logged In", kT0 - 1000, "acme"));  // u2 logs in for acme too
  EXPECT_EQ(Of("logins", "acme"), Value::Number(2));
  // Erasing u2 takes its event out of acme's value.
  ASSERT_TRUE(engine_.EraseProfile("u2").ok());
  EXPECT_EQ(Of("logins", "acme"), Value::Number(1));
  EXPECT_EQ(engine_.ComputedChanges("logins").back().cause, Cause::kErased);
  // Erasing u1, acme's only sender of a group call: acme is unknown, its value goes to none.
  ASSERT_TRUE(engine_.EraseProfile("u1").ok());
  EXPECT_FALSE(engine_.HasAccount("acme"));
  const ComputedChange& last = engine_.ComputedChanges("logins").back();
  EXPECT_EQ(last.profile, "acme");
  EXPECT_EQ(last.cause, Cause::kErased);
  EXPECT_EQ(last.new_value.type, ValueType::kNull);
  EXPECT_EQ(engine_.ComputedTraitOf("logins", "acme").status().code(), Status::Code::kNotFound);
}

TEST_F(AccountComputedTest, AMergeKeepsMemberScoresRight) {
  Ingest(Group("u1", "acme", kT0 - 5000));
  Define("active", R"(10 points if at least 1 member (performed "Logged In"))");
  // An anonymous visitor logs in, then identifies as u1: its event joins u1, a member of acme.
  Ingest(R"({"type":"track","anonymousId":"anon","event":"Logged In","timestamp":")" +
         FormatTime(kT0 - 900) + R"("})");
  EXPECT_EQ(Of("active", "acme"), Value::Number(0));
  Ingest(R"({"type":"identify","userId":"u1","anonymousId":"anon","timestamp":")" +
         FormatTime(kT0 - 800) + R"("})");
  EXPECT_EQ(Of("active", "acme"), Value::Number(10));
  EXPECT_EQ(engine_.ComputedChanges("active").back().cause, Cause::kMerged);
}

}  // namespace
}  // namespace shoal
