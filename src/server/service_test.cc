#include "server/service.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "ingest/decode.h"
#include "server/service_test_fixture.h"

namespace shoal::server {
namespace {

const Millis kT0 = *ParseTime("2026-11-01T00:00:00Z");

class ServiceTest : public ServiceFixture {
 protected:
  template <typename T, typename F>
  T OnEngine(F f) {
    std::promise<T> p;
    svc_->Run([&](Txn& t) { p.set_value(f(t)); });
    return p.get_future().get();
  }

  // Creates a segment and waits until it is durable.
  void Create(const std::string& name, const std::string& def) {
    std::promise<Status> p;
    svc_->Run([&](Txn& t) {
      Result<SegmentInfo> info = t.engine().CreateSegment(name, def);
      if (!info.ok()) return p.set_value(info.status());
      svc_->SaveSegment(t, name);
      t.OnDurable([&](const Status& s) { p.set_value(s); });
    });
    Status st = p.get_future().get();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  std::vector<std::string> Members(const std::string& seg) {
    return OnEngine<std::vector<std::string>>([&](Txn& t) { return *t.engine().Members(seg); });
  }

  std::vector<durable::StoredChange> Log() {
    std::vector<durable::StoredChange> out;
    uint64_t scanned = 0;
    EXPECT_TRUE(svc_->db().ReadChanges(0, 1000, {}, 100000, &out, &scanned).ok());
    return out;
  }
};

TEST_F(ServiceTest, RestartRecoversMembershipAndContinuesSequences) {
  Start(kT0);
  Create("buyers", R"(performed "Order Completed" within 30d)");
  IngestOutcome o = Send({Track("u1", "Order Completed", "2026-10-30T00:00:00Z", "m1"),
                          Track("u2", "Order Completed", "2026-10-31T00:00:00Z", "m2")});
  EXPECT_EQ(o.accepted, 2u);
  EXPECT_EQ(Members("buyers"), (std::vector<std::string>{"u1", "u2"}));
  ASSERT_EQ(Log().size(), 2u);

  Start(kT0);  // a clean restart at the same instant: nothing changes, nothing is emitted
  EXPECT_EQ(Members("buyers"), (std::vector<std::string>{"u1", "u2"}));
  EXPECT_EQ(Log().size(), 2u);
  Send({Track("u3", "Order Completed", "2026-10-31T12:00:00Z", "m3")});
  std::vector<durable::StoredChange> log = Log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2].seq, 3u);
  EXPECT_EQ(log[2].segment_seq, 3u);  // continues across the restart
  EXPECT_EQ(log[2].size_after, 3u);
  EXPECT_EQ(log[2].change.profile, "u3");
}

TEST_F(ServiceTest, WindowsThatClosedWhileDownExitAtRestart) {
  Start(kT0);
  Create("recent", R"(performed "Login" within 1d)");
  Send({Track("u1", "Login", "2026-10-31T12:00:00Z", "m1"),
        Track("u2", "Login", "2026-10-31T23:00:00Z", "m2")});
  EXPECT_EQ(Members("recent").size(), 2u);

  // Down from T0 to T0 + 18h: u1's login (12:00 the day before) turned 1 day old at T0 + 12h.
  Start(kT0 + 18 * kHour);
  EXPECT_EQ(Members("recent"), (std::vector<std::string>{"u2"}));
  std::vector<durable::StoredChange> log = Log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2].change.profile, "u1");
  EXPECT_EQ(log[2].change.kind, ChangeKind::kExit);
  EXPECT_EQ(log[2].change.cause, Cause::kTime);
  EXPECT_EQ(log[2].segment_seq, 3u);
  // The persisted membership now agrees: a second restart emits nothing more.
  Start(kT0 + 18 * kHour);
  EXPECT_EQ(Log().size(), 3u);
}

TEST_F(ServiceTest, DuplicateMessageIdsAreDroppedAlsoAfterRestart) {
  Start(kT0);
  Create("twice", R"(performed "Ping" at least 2 times)");
  IngestOutcome o = Send({Track("u1", "Ping", "2026-10-30T00:00:00Z", "same"),
                          Track("u1", "Ping", "2026-10-30T00:00:01Z", "same")});
  EXPECT_EQ(o.accepted, 1u);
  EXPECT_EQ(o.duplicates, 1u);
  EXPECT_TRUE(Members("twice").empty());
  Start(kT0 + kHour);
  o = Send({Track("u1", "Ping", "2026-10-30T00:00:02Z", "same")});
  EXPECT_EQ(o.duplicates, 1u);
  EXPECT_TRUE(Members("twice").empty());
  o = Send({Track("u1", "Ping", "2026-10-30T00:00:03Z", "other")});
  EXPECT_EQ(o.accepted, 1u);
  EXPECT_EQ(Members("twice"), (std::vector<std::string>{"u1"}));
}

TEST_F(ServiceTest, AcknowledgedOnlyOnceDurableAndStreamed) {
  Start(kT0);
  Create("buyers", R"(performed "Order Completed")");
  ingest::Decoder d;
  std::vector<Message> msgs(1);
  ASSERT_TRUE(
      d.Decode(Track("u9", "Order Completed", "2026-10-30T00:00:00Z", "x"), {}, &msgs[0]).ok());
  std::promise<std::pair<size_t, uint64_t>> p;
  ASSERT_TRUE(svc_->Ingest(std::move(msgs), [&](IngestOutcome) {
    // In the ack: the change is in the store and already published to streams.
    std::vector<durable::StoredChange> out;
    uint64_t scanned = 0;
    EXPECT_TRUE(svc_->db().ReadChanges(0, 10, {}, 100, &out, &scanned).ok());
    p.set_value({out.size(), svc_->hub().LastSeq()});
  }));
  auto [stored, published] = p.get_future().get();
  EXPECT_EQ(stored, 1u);
  EXPECT_EQ(published, 1u);
}

TEST_F(ServiceTest, ErasureSurvivesRestart) {
  Start(kT0);
  Create("buyers", R"(performed "Order Completed")");
  Send({Track("u1", "Order Completed", "2026-10-30T00:00:00Z", "m1"),
        Track("u2", "Order Completed", "2026-10-30T00:00:00Z", "m2")});
  std::promise<Status> p;
  svc_->Run([&](Txn& t) {
    Status st = svc_->Erase(t, "u1");
    if (!st.ok()) return p.set_value(st);
    t.OnDurable([&](const Status& s) { p.set_value(s); });
  });
  ASSERT_TRUE(p.get_future().get().ok());
  EXPECT_EQ(Members("buyers"), (std::vector<std::string>{"u2"}));
  Start(kT0);
  EXPECT_EQ(Members("buyers"), (std::vector<std::string>{"u2"}));
  EXPECT_FALSE(OnEngine<bool>([](Txn& t) { return t.engine().HasProfile("u1"); }));
  // The id starts over as a new profile.
  Send({Track("u1", "Order Completed", "2026-10-31T00:00:00Z", "m3")});
  EXPECT_EQ(Members("buyers"), (std::vector<std::string>{"u1", "u2"}));
}

// Identity merges are replayed from the call log on restart: the same survivor, members and no
// reconciliation changes.
TEST_F(ServiceTest, MergesAreReplayedOnRestart) {
  Start(kT0);
  Create("carts", R"(performed "Product Added" at least 2 times)");
  Send(
      {R"({"type":"track","anonymousId":"a1","event":"Product Added","timestamp":"2026-10-30T00:00:00Z","messageId":"m1"})",
       R"({"type":"track","anonymousId":"a1","event":"Product Added","timestamp":"2026-10-30T00:01:00Z","messageId":"m2"})",
       R"({"type":"identify","userId":"u1","anonymousId":"a1","timestamp":"2026-10-30T00:02:00Z","messageId":"m3"})",
       R"({"type":"alias","previousId":"crm-1","userId":"u1","timestamp":"2026-10-30T00:03:00Z","messageId":"m4"})"});
  EXPECT_EQ(Members("carts"), std::vector<std::string>{"u1"});
  std::vector<durable::StoredChange> log = Log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[1].change.cause, Cause::kMerged);
  EXPECT_EQ(log[1].change.profile, "a1");
  EXPECT_EQ(log[1].change.cause_ref, "u1");
  EXPECT_EQ(log[2].change.profile, "u1");
  EXPECT_EQ(log[2].change.cause_ref, "a1");

  Start(kT0);
  EXPECT_EQ(Members("carts"), std::vector<std::string>{"u1"});
  EXPECT_EQ(Log().size(), 3u);
  for (const char* key : {"a1", "crm-1"})
    EXPECT_EQ(OnEngine<std::string>([&](Txn& t) { return *t.engine().SurvivorOf(key); }), "u1")
        << key;
  Send(
      {R"({"type":"track","anonymousId":"a1","event":"Product Added","timestamp":"2026-10-30T00:04:00Z","messageId":"m5"})"});
  EXPECT_EQ(OnEngine<size_t>([](Txn& t) { return t.engine().Stats().profiles; }), 1u);
}

// Erasing a merged profile erases every key of it, also for the replay: an erased anonymousId
// logged beside another user is not linked to that user on restart.
TEST_F(ServiceTest, ErasingAMergedProfileSurvivesRestart) {
  Start(kT0);
  Create("any", R"(performed "A")");
  Send(
      {R"({"type":"track","anonymousId":"a1","event":"A","timestamp":"2026-10-30T00:00:00Z","messageId":"m1"})",
       R"({"type":"track","userId":"u1","anonymousId":"a1","event":"A","timestamp":"2026-10-30T00:01:00Z","messageId":"m2"})",
       R"({"type":"track","userId":"u2","anonymousId":"a1","event":"A","timestamp":"2026-10-30T00:02:00Z","messageId":"m3"})"});
  EXPECT_EQ(Members("any"), (std::vector<std::string>{"u1", "u2"}));
  std::promise<Status> p;
  svc_->Run([&](Txn& t) {
    Status st = svc_->Erase(t, "a1");
    if (!st.ok()) return p.set_value(st);
    t.OnDurable([&](const Status& s) { p.set_value(s); });
  });
  ASSERT_TRUE(p.get_future().get().ok());
  auto known = [&](const char* key) {
    return OnEngine<bool>([&](Txn& t) { return t.engine().HasProfile(key); });
  };
  EXPECT_EQ(Members("any"), std::vector<std::string>{"u2"});
  EXPECT_FALSE(known("a1"));
  EXPECT_FALSE(known("u1"));
  Start(kT0);
  EXPECT_EQ(Members("any"), std::vector<std::string>{"u2"});
  EXPECT_FALSE(known("a1"));
  EXPECT_FALSE(known("u1"));
  EXPECT_TRUE(known("u2"));
}

TEST_F(ServiceTest, VirtualClockMovesOnlyForward) {
  Start(kT0);
  Result<size_t> r = OnEngine<Result<size_t>>([&](Txn&) { return svc_->SetClock(kT0 - 1); });
  EXPECT_EQ(r.status().code(), Status::Code::kFailedPrecondition);
  r = OnEngine<Result<size_t>>([&](Txn&) { return svc_->SetClock(kT0 + kDay); });
  EXPECT_TRUE(r.ok());
}

// Computed traits are saved with the segments and re-created in one creation order at restart
// (the segment reads the trait, the score reads a segment), with their values recomputed.
TEST_F(ServiceTest, ComputedTraitsSurviveRestart) {
  Start(kT0);
  auto define = [&](const std::string& name, const std::string& def) {
    std::promise<Status> p;
    svc_->Run([&](Txn& t) {
      Result<ComputedTraitInfo> info = t.engine().CreateComputedTrait(name, def);
      if (!info.ok()) return p.set_value(info.status());
      svc_->SaveComputed(t, name);
      t.OnDurable([&](const Status& s) { p.set_value(s); });
    });
    Status st = p.get_future().get();
    ASSERT_TRUE(st.ok()) << st.ToString();
  };
  define("orders", R"(count of "Order Completed" within 30d)");
  Create("repeat", "computed.orders >= 2");
  define("score", R"(10 points if in segment "repeat" + 1 point if performed "Order Completed")");
  Send({Track("u1", "Order Completed", "2026-10-30T00:00:00Z", "m1"),
        Track("u1", "Order Completed", "2026-10-31T00:00:00Z", "m2")});
  auto value = [&](const std::string& name) {
    return OnEngine<Value>([&](Txn& t) { return *t.engine().ComputedTraitOf(name, "u1"); });
  };
  EXPECT_EQ(value("score"), Value::Number(11));
  Start(kT0);
  EXPECT_EQ(value("orders"), Value::Number(2));
  EXPECT_EQ(value("score"), Value::Number(11));
  EXPECT_EQ(Members("repeat"), (std::vector<std::string>{"u1"}));
  // Deleted definitions stay deleted.
  std::promise<Status> p;
  svc_->Run([&](Txn& t) {
    Status st = t.engine().DeleteComputedTrait("score");
    if (!st.ok()) return p.set_value(st);
    t.batch().DeleteComputed("score");
    t.OnDurable([&](const Status& s) { p.set_value(s); });
  });
  ASSERT_TRUE(p.get_future().get().ok());
  Start(kT0);
  EXPECT_EQ(OnEngine<size_t>([](Txn& t) { return t.engine().ListComputedTraits().size(); }), 1u);
}

// A restart re-creates every definition; each keeps the instants it was created and last
// updated at, not the restart's.
TEST_F(ServiceTest, DefinitionsKeepTheirTimesAcrossRestart) {
  Start(kT0);
  Create("buyers", R"(performed "Order Completed" within 30d)");
  std::promise<Status> p;
  svc_->Run([&](Txn& t) {
    Result<ComputedTraitInfo> info =
        t.engine().CreateComputedTrait("orders", R"(count of "Order Completed")");
    if (!info.ok()) return p.set_value(info.status());
    svc_->SaveComputed(t, "orders");
    t.OnDurable([&](const Status& s) { p.set_value(s); });
  });
  ASSERT_TRUE(p.get_future().get().ok());
  Send({Track("u1", "Order Completed", "2026-10-31T00:00:00Z", "m1")});  // enters at kT0
  const Millis updated = kT0 + 3600 * 1000;
  ASSERT_TRUE(svc_->SetClock(updated).ok());
  std::promise<Status> u;
  svc_->Run([&](Txn& t) {
    Result<SegmentInfo> info = t.engine().UpdateSegment("buyers", R"(performed "Order Completed")");
    if (!info.ok()) return u.set_value(info.status());
    svc_->SaveSegment(t, "buyers");
    t.OnDurable([&](const Status& s) { u.set_value(s); });
  });
  ASSERT_TRUE(u.get_future().get().ok());
  Start(kT0 + 86400 * 1000);  // a day later
  SegmentInfo seg = OnEngine<SegmentInfo>([](Txn& t) { return *t.engine().GetSegment("buyers"); });
  EXPECT_EQ(seg.created_at, kT0);
  EXPECT_EQ(seg.updated_at, updated);
  EXPECT_EQ(seg.last_change_at, kT0);  // u1's enter; the update changed no membership
  ComputedTraitInfo c =
      OnEngine<ComputedTraitInfo>([](Txn& t) { return *t.engine().GetComputedTrait("orders"); });
  EXPECT_EQ(c.created_at, kT0);
  EXPECT_EQ(c.updated_at, kT0);
}

}  // namespace
}  // namespace shoal::server
