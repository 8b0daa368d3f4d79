// The server's computed value changes: numbered, written with the group that caused them,
// recovered without loss or duplicates, and completed at restart with what time did meanwhile.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "ingest/decode.h"
#include "server/service.h"
#include "server/service_test_fixture.h"

namespace shoal::server {
namespace {

const Millis kT0 = *ParseTime("2026-11-01T00:00:00Z");

class ComputedChangesTest : public ServiceFixture {
 protected:
  // Runs `f` on the engine thread and waits until its writes are durable.
  Status Durably(std::function<Status(Txn&)> f) {
    std::promise<Status> p;
    svc_->Run([&](Txn& t) {
      Status st = f(t);
      if (!st.ok()) return p.set_value(st);
      t.OnDurable([&](const Status& s) { p.set_value(s); });
    });
    return p.get_future().get();
  }

  Status Define(const std::string& name, const std::string& def) {
    return Durably([&](Txn& t) {
      bool exists = t.engine().GetComputedTrait(name).ok();
      Result<ComputedTraitInfo> info = exists ? t.engine().UpdateComputedTrait(name, def)
                                              : t.engine().CreateComputedTrait(name, def);
      if (!info.ok()) return info.status();
      svc_->SaveComputed(t, name);
      return Status::Ok();
    });
  }

  // Sends the calls; they must be accepted.
  void Send(const std::vector<std::string>& json) {
    ASSERT_TRUE(ServiceFixture::Send(json).status.ok());
  }

  // Moves the virtual clock and waits until the changes it made are durable.
  void SetClock(Millis t) {
    Status st = Durably([&](Txn&) { return svc_->SetClock(t).status(); });
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  std::vector<durable::StoredComputedChange> Log(const std::vector<std::string>& traits = {}) {
    std::vector<durable::StoredComputedChange> out;
    uint64_t scanned = 0;
    EXPECT_TRUE(svc_->db().ReadComputedChanges(0, 1000, traits, 100000, &out, &scanned).ok());
    return out;
  }
};

TEST_F(ComputedChangesTest, EventChangesAreDurableNumberedAndContinueAfterRestart) {
  Start(kT0);
  ASSERT_TRUE(Define("orders", R"(count of "Order Completed" within 7d)").ok());
  Send({Track("u1", "Order Completed", "2026-10-31T00:00:00Z", "m1"),
        Track("u1", "Order Completed", "2026-10-31T01:00:00Z", "m2")});
  std::vector<durable::StoredComputedChange> log = Log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].seq, 1u);
  EXPECT_EQ(log[0].trait_seq, 1u);
  EXPECT_EQ(log[0].change.trait, "orders");
  EXPECT_EQ(log[0].change.profile, "u1");
  EXPECT_EQ(log[0].change.old_value, Value::Number(0));
  EXPECT_EQ(log[0].change.new_value, Value::Number(1));
  EXPECT_EQ(log[0].change.cause, Cause::kEvent);
  EXPECT_EQ(log[0].change.cause_ref, "m1");
  EXPECT_EQ(log[0].change.event, "Order Completed");
  EXPECT_EQ(log[1].change.new_value, Value::Number(2));
  EXPECT_EQ(svc_->computed_hub().LastSeq(), 2u);

  Start(kT0);  // the same instant: nothing changed, nothing is emitted
  EXPECT_EQ(Log().size(), 2u);
  EXPECT_EQ(svc_->computed_hub().LastSeq(), 2u);
  Send({Track("u1", "Order Completed", "2026-10-31T02:00:00Z", "m3")});
  log = Log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2].seq, 3u);
  EXPECT_EQ(log[2].trait_seq, 3u);
  EXPECT_EQ(log[2].change.old_value, Value::Number(2));
  EXPECT_EQ(log[2].change.new_value, Value::Number(3));
  // The per-trait index and the per-profile index serve the same records.
  std::vector<durable::StoredComputedChange> page;
  ASSERT_TRUE(svc_->db().ComputedTraitHistory("orders", 1, 10, &page).ok());
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].trait_seq, 2u);
  std::vector<durable::StoredComputedChange> mine;
  ASSERT_TRUE(svc_->db().ComputedProfileHistory("u1", &mine).ok());
  EXPECT_EQ(mine.size(), 3u);
}

TEST_F(ComputedChangesTest, TimeChangesArePersistedLiveAndForTheTimeTheServerWasDown) {
  Start(kT0);
  ASSERT_TRUE(Define("logins", R"(count of "Login" within 1d)").ok());
  Send({Track("u1", "Login", "2026-10-31T06:00:00Z", "m1"),
        Track("u2", "Login", "2026-10-31T20:00:00Z", "m2")});
  ASSERT_EQ(Log().size(), 2u);
  // Live: u1's login turns 1 day old at T0 + 6h.
  SetClock(kT0 + 7 * kHour);
  std::vector<durable::StoredComputedChange> log = Log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2].change.profile, "u1");
  EXPECT_EQ(log[2].change.cause, Cause::kTime);
  EXPECT_EQ(log[2].change.new_value, Value::Number(0));
  EXPECT_EQ(log[2].change.event_time, kT0 + 6 * kHour + 1);  // the first instant it is out
  // Down until T0 + 21h: u2's login expired at T0 + 20h while nobody ran the deadline.
  Start(kT0 + 21 * kHour);
  log = Log();
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log[3].seq, 4u);
  EXPECT_EQ(log[3].trait_seq, 4u);
  EXPECT_EQ(log[3].change.profile, "u2");
  EXPECT_EQ(log[3].change.cause, Cause::kTime);
  EXPECT_EQ(log[3].change.old_value, Value::Number(1));
  EXPECT_EQ(log[3].change.new_value, Value::Number(0));
  // The persisted values now agree: another restart emits nothing.
  Start(kT0 + 21 * kHour);
  EXPECT_EQ(Log().size(), 4u);
}

TEST_F(ComputedChangesTest, ValuesOfANewTraitNeedNoChangeToSurviveARestart) {
  Start(kT0);
  Send(
      {R"({"type":"track","userId":"u1","event":"Order Completed","timestamp":"2026-10-31T00:00:00Z","properties":{"plan":"pro"}})",
       Track("u2", "Signup", "2026-10-31T00:00:00Z", "m2")});
  // Created over existing history: no change records, but the values are persisted (u1's "pro"
  // and 1; u2 has a new profile's values, null and 0)...
  ASSERT_TRUE(Define("plan", R"(last(plan) of "Order Completed")").ok());
  ASSERT_TRUE(Define("orders", R"(count of "Order Completed")").ok());
  EXPECT_TRUE(Log().empty());
  // ... so that a restart finds nothing to report.
  Start(kT0);
  EXPECT_TRUE(Log().empty());
  // Without the snapshot a restart would have reported them as changes of time: check it is
  // there.
  size_t persisted = 0;
  ASSERT_TRUE(svc_->db()
                  .ForEachComputedValue("plan",
                                        [&](std::string_view p, SegmentTarget, const Value& v) {
                                          EXPECT_EQ(p, "u1");
                                          EXPECT_EQ(v, Value::String("pro"));
                                          ++persisted;
                                        })
                  .ok());
  EXPECT_EQ(persisted, 1u);
}

TEST_F(ComputedChangesTest, DefinitionUpdatesAndDeletionAreChangesAndHistoryOutlivesTheTrait) {
  Start(kT0);
  Send({Track("u1", "Order Completed", "2026-10-31T00:00:00Z", "m1"),
        Track("u1", "Order Completed", "2026-10-31T01:00:00Z", "m2"),
        Track("u2", "Order Completed", "2026-10-31T00:00:00Z", "m3")});
  ASSERT_TRUE(Define("orders", R"(count of "Order Completed")").ok());
  ASSERT_TRUE(Define("orders", R"(count of "Order Completed" within 1h)").ok());
  // Every order is older than 1h at T0: u1 (2 orders) and u2 (1) drop to 0.
  std::vector<durable::StoredComputedChange> log = Log();
  ASSERT_EQ(log.size(), 2u);
  for (const auto& c : log) {
    EXPECT_EQ(c.change.cause, Cause::kDefinition);
    EXPECT_EQ(c.change.new_value, Value::Number(0));
  }
  Status st = Durably([&](Txn& t) { return svc_->DeleteComputed(t, "orders"); });
  ASSERT_TRUE(st.ok()) << st.ToString();
  log = Log();
  ASSERT_EQ(log.size(), 4u);  // u1 and u2 had a value (0): each goes to null
  for (size_t i = 2; i < 4; ++i) {
    EXPECT_EQ(log[i].change.cause, Cause::kDeleted);
    EXPECT_EQ(log[i].change.old_value, Value::Number(0));
    EXPECT_EQ(log[i].change.new_value, Value::Null());
  }
  EXPECT_EQ(svc_->ComputedSeq("orders"), 4u);
  Start(kT0);  // nothing comes back, nothing is emitted
  EXPECT_EQ(Log().size(), 4u);
  EXPECT_EQ(svc_->ComputedSeq("orders"), 4u);
  // The same name again: trait_seq goes on.
  ASSERT_TRUE(Define("orders", R"(count of "Order Completed")").ok());
  Send({Track("u1", "Order Completed", "2026-10-31T02:00:00Z", "m4")});
  log = Log({"orders"});
  ASSERT_EQ(log.size(), 5u);
  EXPECT_EQ(log[4].trait_seq, 5u);
  EXPECT_EQ(log[4].change.old_value, Value::Number(2));
  EXPECT_EQ(log[4].change.new_value, Value::Number(3));
}

TEST_F(ComputedChangesTest, ErasureRedactsEarlierValueChangesAndKeepsItsOwn) {
  Start(kT0);
  ASSERT_TRUE(Define("orders", R"(count of "Order Completed")").ok());
  Send({Track("u1", "Order Completed", "2026-10-31T00:00:00Z", "m1")});
  Status st = Durably([&](Txn& t) { return svc_->Erase(t, "u1"); });
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::vector<durable::StoredComputedChange> log = Log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].change.profile, "(erased)");
  EXPECT_EQ(log[1].change.profile, "u1");  // the erasure's own change keeps the id
  EXPECT_EQ(log[1].change.cause, Cause::kErased);
  EXPECT_EQ(log[1].change.new_value, Value::Null());
  std::vector<durable::StoredComputedChange> mine;
  ASSERT_TRUE(svc_->db().ComputedProfileHistory("u1", &mine).ok());
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].change.cause, Cause::kErased);
  Start(kT0);
  EXPECT_EQ(Log().size(), 2u);
}

}  // namespace
}  // namespace shoal::server
