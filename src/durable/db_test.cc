#include "durable/db.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "durable/db_test_fixture.h"

namespace shoal::durable {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxSeq = std::numeric_limits<uint64_t>::max();

// A fresh directory per test under testing::TempDir(), removed afterwards.
class DbTest : public DbFixture {
 protected:
  std::vector<std::pair<uint64_t, Message>> Events(uint64_t after) {
    std::vector<std::pair<uint64_t, Message>> out;
    Status st = db_->ForEachEvent(after, [&](uint64_t seq, std::string_view rec) {
      Message m;
      Status s = DecodeMessage(rec, &m);
      if (!s.ok()) return s;
      out.emplace_back(seq, std::move(m));
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  std::vector<uint64_t> EventSeqs(uint64_t after) {
    std::vector<uint64_t> seqs;
    for (auto& [seq, m] : Events(after)) seqs.push_back(seq);
    return seqs;
  }

  std::vector<std::string> Members(std::string_view segment) {
    std::vector<std::string> out;
    Status st = db_->ForEachMember(segment, [&](std::string_view p) { out.emplace_back(p); });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  // Seqs of ReadChanges; *scanned_to as out parameter.
  std::vector<uint64_t> ReadSeqs(uint64_t after, size_t limit,
                                 const std::vector<std::string>& segments, size_t max_scan,
                                 uint64_t* scanned_to) {
    std::vector<StoredChange> out;
    Status st = db_->ReadChanges(after, limit, segments, max_scan, &out, scanned_to);
    EXPECT_TRUE(st.ok()) << st.ToString();
    std::vector<uint64_t> seqs;
    for (const StoredChange& c : out) seqs.push_back(c.seq);
    return seqs;
  }

  std::vector<StoredChange> History(std::string_view profile) {
    std::vector<StoredChange> out;
    Status st = db_->ProfileHistory(profile, &out);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  std::vector<std::pair<Millis, uint64_t>> Sizes(std::string_view segment, Millis from, Millis to) {
    std::vector<std::pair<Millis, uint64_t>> out;
    Status st = db_->SegmentSizes(segment, from, to, &out);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }
};

Message Track(std::string user, std::string event, Millis t, std::string message_id = "") {
  Message m;
  m.type = MessageType::kTrack;
  m.user_id = std::move(user);
  m.event = std::move(event);
  m.timestamp = t;
  m.received_at = t + 1;
  m.message_id = message_id.empty() ? "m" + std::to_string(t) : std::move(message_id);
  m.properties = {{"total", Value::Number(12.5)}, {"currency", Value::String("EUR")}};
  return m;
}

StoredChange MakeChange(uint64_t seq, std::string segment, uint64_t segment_seq,
                        std::string profile, ChangeKind kind, uint64_t size_after,
                        Millis processed_at, Cause cause = Cause::kEvent) {
  StoredChange c;
  c.seq = seq;
  c.segment_seq = segment_seq;
  c.size_after = size_after;
  c.change.segment = std::move(segment);
  c.change.profile = std::move(profile);
  c.change.kind = kind;
  c.change.cause = cause;
  c.change.cause_ref = cause == Cause::kEvent ? "msg-" + std::to_string(seq) : "";
  c.change.event = cause == Cause::kEvent ? "Order Completed" : "";
  c.change.event_time = processed_at - 5;
  c.change.processed_at = processed_at;
  return c;
}

constexpr ChangeKind kEnter = ChangeKind::kEnter;
constexpr ChangeKind kExit = ChangeKind::kExit;

// --- Open -------------------------------------------------------------------------------------

TEST_F(DbTest, OpenCreatesAnEmptyStore) {
  EXPECT_TRUE(fs::is_directory(dir_));
  EXPECT_EQ(db_->LastEventSeq(), 0u);
  EXPECT_EQ(db_->LastChangeSeq(), 0u);
  EXPECT_TRUE(EventSeqs(0).empty());
  ASSERT_TRUE(db_->Segments().ok());
  EXPECT_TRUE(db_->Segments()->empty());
  EXPECT_TRUE(db_->SegmentSeqs()->empty());
  EXPECT_TRUE(db_->Lists()->empty());
  EXPECT_TRUE(db_->Erasures()->empty());
  EXPECT_TRUE(db_->MemberSegments()->empty());
  EXPECT_TRUE(History("u1").empty());
  uint64_t scanned = 99;
  EXPECT_TRUE(ReadSeqs(0, 10, {}, 100, &scanned).empty());
  EXPECT_EQ(scanned, 0u);
  EXPECT_TRUE(Sizes("s", kMinTime, kMaxTime).empty());
}

TEST_F(DbTest, OpeningALockedDirectoryFailsWithAClearError) {
  Result<std::unique_ptr<Db>> second = Db::Open(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kInternal);
  std::string msg = second.status().message();
  EXPECT_NE(msg.find(dir_), std::string::npos) << msg;
  std::string lower;
  for (char c : msg)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  EXPECT_NE(lower.find("lock"), std::string::npos) << msg;
  // The first handle is unaffected, and once it closes the directory opens again.
  Batch b(db_.get());
  b.PutEvent(1, Track("u1", "E", 10));
  Write(b);
  db_.reset();
  Reopen();
  EXPECT_EQ(db_->LastEventSeq(), 1u);
}

TEST_F(DbTest, OpeningAFileFails) {
  std::string file = dir_ + "_file";
  std::ofstream(file) << "not a directory";
  Result<std::unique_ptr<Db>> db = Db::Open(file);
  EXPECT_FALSE(db.ok());
  fs::remove(file);
}

// --- Batch ------------------------------------------------------------------------------------

TEST_F(DbTest, BatchCountsAndIsInvisibleUntilWritten) {
  Batch b(db_.get());
  EXPECT_TRUE(b.Empty());
  b.PutEvent(1, Track("u1", "E", 10));
  b.PutList("vip");
  EXPECT_EQ(b.Count(), 2u);
  EXPECT_FALSE(b.Empty());
  EXPECT_GT(b.ByteSize(), 0u);
  EXPECT_TRUE(EventSeqs(0).empty());
  Batch moved = std::move(b);
  Write(moved);
  EXPECT_EQ(EventSeqs(0), std::vector<uint64_t>{1});
  EXPECT_EQ(db_->Lists()->size(), 1u);
}

// --- Events -----------------------------------------------------------------------------------

TEST_F(DbTest, ForEachEventStartsAfterTheGivenSeq) {
  Batch b(db_.get());
  for (uint64_t seq = 1; seq <= 5; ++seq)
    b.PutEvent(seq, Track("u" + std::to_string(seq), "E", seq * 10));
  b.PutEvent(300, Track("u300", "E", 3000));  // > 255: the key's order is numeric
  Write(b);
  std::vector<std::pair<uint64_t, Message>> all = Events(0);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0].second.user_id, "u1");
  EXPECT_EQ(all[0].second.timestamp, 10);
  EXPECT_EQ(all[0].second.properties.size(), 2u);
  EXPECT_EQ(all[5].first, 300u);
  EXPECT_EQ(EventSeqs(3), (std::vector<uint64_t>{4, 5, 300}));
  EXPECT_EQ(EventSeqs(5), (std::vector<uint64_t>{300}));
  EXPECT_EQ(EventSeqs(299), (std::vector<uint64_t>{300}));
  EXPECT_TRUE(EventSeqs(300).empty());
  EXPECT_TRUE(EventSeqs(kMaxSeq).empty());
}

TEST_F(DbTest, ForEachEventStopsAtTheCallbacksError) {
  Batch b(db_.get());
  for (uint64_t seq = 1; seq <= 5; ++seq) b.PutEvent(seq, Track("u", "E", seq));
  Write(b);
  int calls = 0;
  Status st = db_->ForEachEvent(0, [&](uint64_t seq, std::string_view) {
    ++calls;
    return seq == 2 ? Status::InvalidArgument("stop") : Status::Ok();
  });
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(st.message(), "stop");
  EXPECT_EQ(calls, 2);
}

// --- Segments ---------------------------------------------------------------------------------

TEST_F(DbTest, SegmentsComeInCreationOrder) {
  Batch b(db_.get());
  b.PutSegment({"zeta", "plan = \"pro\"", 1, -1000, 5});
  b.PutSegment({"alpha", "performed \"Order Completed\" within 30d", 3, 20, 30});
  b.PutSegment({"mid", "", 2, 0, 0});
  b.PutSegment({"gone", "true", 0, 1, 1});
  Write(b);
  Batch b2(db_.get());
  b2.DeleteSegment("gone");
  b2.PutSegment({"mid", "age > 3", 2, 0, 99});  // replaced definition, same order
  Write(b2);
  Result<std::vector<SegmentRecord>> segs = db_->Segments();
  ASSERT_TRUE(segs.ok()) << segs.status().ToString();
  ASSERT_EQ(segs->size(), 3u);
  EXPECT_EQ((*segs)[0].name, "zeta");
  EXPECT_EQ((*segs)[0].definition, "plan = \"pro\"");
  EXPECT_EQ((*segs)[0].order, 1u);
  EXPECT_EQ((*segs)[0].created_at, -1000);
  EXPECT_EQ((*segs)[0].updated_at, 5);
  EXPECT_EQ((*segs)[1].name, "mid");
  EXPECT_EQ((*segs)[1].definition, "age > 3");
  EXPECT_EQ((*segs)[1].updated_at, 99);
  EXPECT_EQ((*segs)[2].name, "alpha");
  EXPECT_EQ((*segs)[2].definition, "performed \"Order Completed\" within 30d");
}

// --- Changes ----------------------------------------------------------------------------------

TEST_F(DbTest, ChangesUpdateMembersSeqsAndIndexes) {
  Batch b(db_.get());
  b.PutChange(MakeChange(1, "buyers", 1, "u1", kEnter, 1, 100));
  b.PutChange(MakeChange(2, "buyers", 2, "u2", kEnter, 2, 110));
  b.PutChange(MakeChange(3, "pro", 1, "u1", kEnter, 1, 120, Cause::kTraits));
  b.PutChange(MakeChange(4, "buyers", 3, "u1", kExit, 1, 130, Cause::kTime));
  Write(b);

  EXPECT_EQ(Members("buyers"), std::vector<std::string>{"u2"});  // u1 entered, then exited
  EXPECT_EQ(Members("pro"), std::vector<std::string>{"u1"});
  EXPECT_TRUE(Members("nope").empty());
  EXPECT_TRUE(Members("buy").empty());  // a prefix of a segment name is another segment
  Result<std::vector<std::string>> ms = db_->MemberSegments();
  ASSERT_TRUE(ms.ok());
  EXPECT_EQ(*ms, (std::vector<std::string>{"buyers", "pro"}));

  Result<std::vector<std::pair<std::string, uint64_t>>> seqs = db_->SegmentSeqs();
  ASSERT_TRUE(seqs.ok());
  std::map<std::string, uint64_t> m(seqs->begin(), seqs->end());
  EXPECT_EQ(m, (std::map<std::string, uint64_t>{{"buyers", 3}, {"pro", 1}}));

  std::vector<StoredChange> h = History("u1");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].seq, 1u);
  EXPECT_EQ(h[1].seq, 3u);
  EXPECT_EQ(h[2].seq, 4u);
  EXPECT_EQ(h[2].change.segment, "buyers");
  EXPECT_EQ(h[2].change.kind, kExit);
  EXPECT_EQ(h[2].change.cause, Cause::kTime);
  EXPECT_EQ(h[2].segment_seq, 3u);
  EXPECT_EQ(h[2].size_after, 1u);
  EXPECT_EQ(h[2].change.processed_at, 130);
  EXPECT_EQ(h[0].change.cause_ref, "msg-1");
  EXPECT_EQ(h[0].change.event, "Order Completed");
  EXPECT_EQ(History("u2").size(), 1u);
  EXPECT_TRUE(History("u").empty());  // a prefix of an id is another profile
}

TEST_F(DbTest, MemberSegmentsListsEachSegmentOnce) {
  Batch b(db_.get());
  uint64_t seq = 0;
  for (std::string seg : {"a", "ab", "b", "a b"}) {
    for (int i = 0; i < 3; ++i) {
      ++seq;
      b.PutChange(MakeChange(seq, seg, i + 1, "p" + std::to_string(i), kEnter, i + 1, 100));
    }
  }
  ++seq;
  b.PutChange(MakeChange(seq, "empty", 1, "p", kEnter, 1, 100));
  ++seq;
  b.PutChange(MakeChange(seq, "empty", 2, "p", kExit, 0, 100));
  Write(b);
  Result<std::vector<std::string>> ms = db_->MemberSegments();
  ASSERT_TRUE(ms.ok());
  EXPECT_EQ(*ms, (std::vector<std::string>{"a", "a b", "ab", "b"}));
  EXPECT_EQ(Members("a"), (std::vector<std::string>{"p0", "p1", "p2"}));
}

class ReadChangesTest : public DbTest {
 protected:
  void SetUp() override {
    DbTest::SetUp();
    // seq 1..6 alternate between segments a (odd) and b (even).
    Batch b(db_.get());
    for (uint64_t seq = 1; seq <= 6; ++seq) {
      std::string seg = seq % 2 ? "a" : "b";
      b.PutChange(MakeChange(seq, seg, (seq + 1) / 2, "u" + std::to_string(seq), kEnter,
                             (seq + 1) / 2, static_cast<Millis>(seq) * 100));
    }
    Write(b);
  }
};

TEST_F(ReadChangesTest, ReadsAfterSeqUpToLimit) {
  uint64_t scanned = 0;
  EXPECT_EQ(ReadSeqs(0, 100, {}, 1000, &scanned), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(scanned, 6u);
  EXPECT_EQ(ReadSeqs(0, 2, {}, 1000, &scanned), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(scanned, 2u);
  EXPECT_EQ(ReadSeqs(4, 100, {}, 1000, &scanned), (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(scanned, 6u);
  EXPECT_TRUE(ReadSeqs(6, 100, {}, 1000, &scanned).empty());
  EXPECT_EQ(scanned, 6u);  // nothing looked at: stays at `after`
  EXPECT_TRUE(ReadSeqs(0, 0, {}, 1000, &scanned).empty());
  EXPECT_EQ(scanned, 0u);
}

TEST_F(ReadChangesTest, DecodesTheWholeRecord) {
  std::vector<StoredChange> out;
  uint64_t scanned = 0;
  ASSERT_TRUE(db_->ReadChanges(3, 1, {}, 10, &out, &scanned).ok());
  ASSERT_EQ(out.size(), 1u);
  const StoredChange& c = out[0];
  EXPECT_EQ(c.seq, 4u);
  EXPECT_EQ(c.segment_seq, 2u);
  EXPECT_EQ(c.size_after, 2u);
  EXPECT_EQ(c.change.segment, "b");
  EXPECT_EQ(c.change.profile, "u4");
  EXPECT_EQ(c.change.kind, kEnter);
  EXPECT_EQ(c.change.cause, Cause::kEvent);
  EXPECT_EQ(c.change.cause_ref, "msg-4");
  EXPECT_EQ(c.change.event_time, 395);
  EXPECT_EQ(c.change.processed_at, 400);
}

TEST_F(ReadChangesTest, FiltersBySegment) {
  uint64_t scanned = 0;
  EXPECT_EQ(ReadSeqs(0, 100, {"b"}, 1000, &scanned), (std::vector<uint64_t>{2, 4, 6}));
  EXPECT_EQ(scanned, 6u);
  EXPECT_EQ(ReadSeqs(0, 100, {"a", "b"}, 1000, &scanned),
            (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(ReadSeqs(1, 1, {"a"}, 1000, &scanned), (std::vector<uint64_t>{3}));
  EXPECT_EQ(scanned, 3u);
  // No match at all: everything was scanned, so the caller resumes after 6.
  EXPECT_TRUE(ReadSeqs(0, 100, {"zzz"}, 1000, &scanned).empty());
  EXPECT_EQ(scanned, 6u);
}

TEST_F(ReadChangesTest, MaxScanBoundsTheWorkAndReportsWhereItStopped) {
  uint64_t scanned = 0;
  EXPECT_EQ(ReadSeqs(0, 100, {"b"}, 3, &scanned), (std::vector<uint64_t>{2}));
  EXPECT_EQ(scanned, 3u);
  EXPECT_EQ(ReadSeqs(scanned, 100, {"b"}, 3, &scanned), (std::vector<uint64_t>{4, 6}));
  EXPECT_EQ(scanned, 6u);
  EXPECT_TRUE(ReadSeqs(0, 100, {"b"}, 1, &scanned).empty());
  EXPECT_EQ(scanned, 1u);
  EXPECT_TRUE(ReadSeqs(0, 100, {}, 0, &scanned).empty());
  EXPECT_EQ(scanned, 0u);
}

TEST_F(ReadChangesTest, AfterTheLargestSeqReadsNothing) {
  // `after` comes from the API's ?after= / Last-Event-ID: any uint64 must be safe.
  uint64_t scanned = 0;
  EXPECT_TRUE(ReadSeqs(kMaxSeq, 100, {}, 1000, &scanned).empty());
  EXPECT_EQ(scanned, kMaxSeq);
  EXPECT_TRUE(ReadSeqs(kMaxSeq - 1, 100, {}, 1000, &scanned).empty());
  EXPECT_EQ(scanned, kMaxSeq - 1);
}

// --- Segment sizes ----------------------------------------------------------------------------

TEST_F(DbTest, SegmentSizesOverARange) {
  Batch b(db_.get());
  // Segment s: sizes 1, 2, 1, 2 at 100, 200, 300, 400; segment "s2" interleaved.
  b.PutChange(MakeChange(1, "s", 1, "u1", kEnter, 1, 100));
  b.PutChange(MakeChange(2, "s2", 1, "u1", kEnter, 1, 150));
  b.PutChange(MakeChange(3, "s", 2, "u2", kEnter, 2, 200));
  b.PutChange(MakeChange(4, "s", 3, "u1", kExit, 1, 300));
  b.PutChange(MakeChange(5, "s", 4, "u3", kEnter, 2, 400));
  Write(b);
  using Points = std::vector<std::pair<Millis, uint64_t>>;
  EXPECT_EQ(Sizes("s", kMinTime, kMaxTime), (Points{{100, 1}, {200, 2}, {300, 1}, {400, 2}}));
  // The last change before `from` comes first: the size at `from`.
  EXPECT_EQ(Sizes("s", 250, 350), (Points{{200, 2}, {300, 1}}));
  // Both ends are inclusive; the change before `from` leads even when one falls on `from`.
  EXPECT_EQ(Sizes("s", 200, 300), (Points{{100, 1}, {200, 2}, {300, 1}}));
  EXPECT_EQ(Sizes("s", 201, 299), (Points{{200, 2}}));  // only the size before
  EXPECT_EQ(Sizes("s", 500, 600), (Points{{400, 2}}));
  EXPECT_TRUE(Sizes("s", 0, 99).empty());
  EXPECT_EQ(Sizes("s2", kMinTime, kMaxTime), (Points{{150, 1}}));
  EXPECT_TRUE(Sizes("", kMinTime, kMaxTime).empty());
}

TEST_F(DbTest, SegmentSizesWithNegativeTimes) {
  Batch b(db_.get());
  b.PutChange(MakeChange(1, "s", 1, "u1", kEnter, 1, -5000));
  b.PutChange(MakeChange(2, "s", 2, "u2", kEnter, 2, -10));
  b.PutChange(MakeChange(3, "s", 3, "u3", kEnter, 3, 0));
  Write(b);
  using Points = std::vector<std::pair<Millis, uint64_t>>;
  EXPECT_EQ(Sizes("s", kMinTime, kMaxTime), (Points{{-5000, 1}, {-10, 2}, {0, 3}}));
  EXPECT_EQ(Sizes("s", -100, -1), (Points{{-5000, 1}, {-10, 2}}));
}

// --- Lists and erasures -----------------------------------------------------------------------

TEST_F(DbTest, ListsWithMembers) {
  Batch b(db_.get());
  b.PutList("vip");
  b.PutList("beta");
  b.PutList("v");  // a prefix of another list's name
  b.PutList("empty");
  for (std::string p : {"u3", "u1", "u2"}) b.PutListMember("vip", p);
  b.PutListMember("beta", "u1");
  b.PutListMember("v", "x");
  Write(b);
  Batch b2(db_.get());
  b2.DeleteListMember("vip", "u2");
  b2.DeleteListMember("vip", "not-there");  // not an error
  b2.DeleteList("beta");
  b2.DeleteListMember("beta", "u1");
  Write(b2);
  Result<std::vector<std::pair<std::string, std::vector<std::string>>>> lists = db_->Lists();
  ASSERT_TRUE(lists.ok());
  using Lists = std::vector<std::pair<std::string, std::vector<std::string>>>;
  EXPECT_EQ(*lists, (Lists{{"empty", {}}, {"v", {"x"}}, {"vip", {"u1", "u3"}}}));
}

TEST_F(DbTest, Erasures) {
  Batch b(db_.get());
  b.PutErasure("u1", 7);
  b.PutErasure("u2", 1ull << 40);
  b.PutErasure("u1", 9);  // the latest erasure wins
  Write(b);
  Result<std::vector<std::pair<std::string, uint64_t>>> e = db_->Erasures();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, (std::vector<std::pair<std::string, uint64_t>>{{"u1", 9}, {"u2", 1ull << 40}}));
}

// --- Erasure ----------------------------------------------------------------------------------

TEST_F(DbTest, PurgeProfileKeepsTheErasureExitsAndTheNewProfilesHistory) {
  // Changes 1-2 are u1's before the erasure, 3 is the erasure's exit, 4 belongs to the new
  // profile that reuses the id.
  Batch b(db_.get());
  b.PutChange(MakeChange(1, "buyers", 1, "u1", kEnter, 1, 100));
  b.PutChange(MakeChange(2, "vip", 1, "u1", kEnter, 1, 110));
  b.PutChange(MakeChange(3, "buyers", 2, "u1", kExit, 0, 120, Cause::kErased));
  b.PutChange(MakeChange(4, "buyers", 3, "u1", kEnter, 1, 130));
  b.PutErasure("u1", 1, 3);
  Write(b);
  ASSERT_EQ(db_->ErasureRecords()->at(0).change_seq, 3u);

  ASSERT_TRUE(db_->PurgeProfile("u1", 1, 3).ok());
  uint64_t scanned = 0;
  std::vector<StoredChange> all;
  ASSERT_TRUE(db_->ReadChanges(0, 100, {}, 100, &all, &scanned).ok());
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].change.profile, "(erased)");
  EXPECT_EQ(all[1].change.profile, "(erased)");
  EXPECT_EQ(all[2].change.profile, "u1");  // the exit tells the stream whom to remove
  EXPECT_EQ(all[3].change.profile, "u1");
  std::vector<StoredChange> history;
  ASSERT_TRUE(db_->ProfileHistory("u1", &history).ok());
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].seq, 3u);
  EXPECT_EQ(history[1].seq, 4u);
}

TEST_F(DbTest, PurgeProfileRemovesItsDataAndNothingElse) {
  Batch b(db_.get());
  b.PutEvent(1, Track("u1", "A", 10));
  b.PutEvent(2, Track("u2", "A", 20));
  b.PutEvent(3, Track("u1", "B", 30));
  Message anon = Track("", "C", 40);
  anon.anonymous_id = "u1";  // the profile key of an anonymous call
  b.PutEvent(4, anon);
  b.PutEvent(5, Track("u10", "A", 50));  // an id that u1 is a prefix of
  b.PutEvent(6, Track("u1", "D", 60));   // at `before`: logged after the erasure, kept
  b.PutEvent(7, Track("u1", "E", 70));
  b.PutChange(MakeChange(1, "buyers", 1, "u1", kEnter, 1, 100));
  b.PutChange(MakeChange(2, "buyers", 2, "u2", kEnter, 2, 110));
  b.PutChange(MakeChange(3, "buyers", 3, "u10", kEnter, 3, 120));
  b.PutChange(MakeChange(4, "buyers", 4, "u1", kExit, 2, 130, Cause::kErased));
  b.PutList("vip");
  b.PutList("beta");
  b.PutListMember("vip", "u1");
  b.PutListMember("vip", "u2");
  b.PutListMember("vip", "u10");
  b.PutListMember("beta", "u1");
  b.PutErasure("u1", 6);
  Write(b);

  ASSERT_TRUE(db_->PurgeProfile("u1", 6).ok());

  auto check = [&] {
    // Events: u1's before seq 6 are gone, the rest stays.
    EXPECT_EQ(EventSeqs(0), (std::vector<uint64_t>{2, 5, 6, 7}));
    // Change records stay, with the id redacted; others' are untouched.
    uint64_t scanned = 0;
    std::vector<StoredChange> all;
    ASSERT_TRUE(db_->ReadChanges(0, 100, {}, 100, &all, &scanned).ok());
    ASSERT_EQ(all.size(), 4u);
    EXPECT_EQ(all[0].change.profile, "(erased)");
    EXPECT_EQ(all[0].change.segment, "buyers");
    EXPECT_EQ(all[0].segment_seq, 1u);
    EXPECT_EQ(all[0].change.cause_ref, "msg-1");
    EXPECT_EQ(all[1].change.profile, "u2");
    EXPECT_EQ(all[2].change.profile, "u10");
    EXPECT_EQ(all[3].change.profile, "(erased)");
    EXPECT_EQ(all[3].change.kind, kExit);
    EXPECT_EQ(all[3].change.cause, Cause::kErased);
    // The history index of u1 is gone; the others' remain.
    EXPECT_TRUE(History("u1").empty());
    EXPECT_TRUE(History("(erased)").empty());
    EXPECT_EQ(History("u2").size(), 1u);
    EXPECT_EQ(History("u10").size(), 1u);
    // List memberships.
    using Lists = std::vector<std::pair<std::string, std::vector<std::string>>>;
    EXPECT_EQ(*db_->Lists(), (Lists{{"beta", {}}, {"vip", {"u10", "u2"}}}));
    // Membership and the erasure record itself are not the purge's business.
    EXPECT_EQ(Members("buyers"), (std::vector<std::string>{"u10", "u2"}));
    EXPECT_EQ(db_->Erasures()->size(), 1u);
  };
  check();
  // Safe to repeat, and durable.
  ASSERT_TRUE(db_->PurgeProfile("u1", 6).ok());
  check();
  Reopen();
  check();
  EXPECT_EQ(db_->LastEventSeq(), 7u);
  EXPECT_EQ(db_->LastChangeSeq(), 4u);
}

TEST_F(DbTest, PurgeOfAnUnknownProfileChangesNothing) {
  Batch b(db_.get());
  b.PutEvent(1, Track("u1", "A", 10));
  b.PutChange(MakeChange(1, "s", 1, "u1", kEnter, 1, 100));
  Write(b);
  ASSERT_TRUE(db_->PurgeProfile("ghost", kMaxSeq).ok());
  EXPECT_EQ(EventSeqs(0), std::vector<uint64_t>{1});
  EXPECT_EQ(History("u1").size(), 1u);
  EXPECT_EQ(History("u1")[0].change.profile, "u1");
}

// --- Reopening --------------------------------------------------------------------------------

TEST_F(DbTest, ReopeningKeepsEverything) {
  {
    Batch b(db_.get());
    b.PutEvent(1, Track("u1", "Order Completed", 1000, "msg-a"));
    b.PutEvent(2, Track("u2", "Signed Up", 2000, "msg-b"));
    b.PutEvent(10, Track("u1", "Order Completed", 3000, "msg-c"));  // seqs may have gaps
    b.PutSegment({"buyers", "performed \"Order Completed\" within 30d", 1, 500, 600});
    b.PutChange(MakeChange(1, "buyers", 1, "u1", kEnter, 1, 1000));
    b.PutChange(MakeChange(2, "buyers", 2, "u2", kEnter, 2, 2000));
    b.PutChange(MakeChange(3, "buyers", 3, "u2", kExit, 1, 3000, Cause::kTime));
    b.PutList("vip");
    b.PutListMember("vip", "u2");
    b.PutErasure("u9", 2);
    Write(b);
  }
  // An unsynced write is kept too after a clean close.
  {
    Batch b(db_.get());
    b.PutChange(MakeChange(4, "buyers", 4, "u3", kEnter, 2, 4000));
    ASSERT_TRUE(db_->Write(&b, /*sync=*/false).ok());
  }
  EXPECT_EQ(db_->LastEventSeq(), 0u);  // as found at Open
  Reopen();
  EXPECT_EQ(db_->LastEventSeq(), 10u);
  EXPECT_EQ(db_->LastChangeSeq(), 4u);

  std::vector<std::pair<uint64_t, Message>> events = Events(0);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].first, 10u);
  EXPECT_EQ(events[2].second.message_id, "msg-c");
  EXPECT_EQ(events[1].second.event, "Signed Up");
  EXPECT_EQ(EventSeqs(2), std::vector<uint64_t>{10});

  ASSERT_EQ(db_->Segments()->size(), 1u);
  EXPECT_EQ((*db_->Segments())[0].definition, "performed \"Order Completed\" within 30d");
  EXPECT_EQ(*db_->SegmentSeqs(), (std::vector<std::pair<std::string, uint64_t>>{{"buyers", 4}}));
  EXPECT_EQ(Members("buyers"), (std::vector<std::string>{"u1", "u3"}));
  EXPECT_EQ(*db_->MemberSegments(), std::vector<std::string>{"buyers"});
  uint64_t scanned = 0;
  EXPECT_EQ(ReadSeqs(0, 100, {"buyers"}, 100, &scanned), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(History("u2").size(), 2u);
  using Points = std::vector<std::pair<Millis, uint64_t>>;
  EXPECT_EQ(Sizes("buyers", 0, kMaxTime), (Points{{1000, 1}, {2000, 2}, {3000, 1}, {4000, 2}}));
  using Lists = std::vector<std::pair<std::string, std::vector<std::string>>>;
  EXPECT_EQ(*db_->Lists(), (Lists{{"vip", {"u2"}}}));
  EXPECT_EQ(*db_->Erasures(), (std::vector<std::pair<std::string, uint64_t>>{{"u9", 2}}));
  EXPECT_GT(db_->ApproximateBytes(), 0u);
}

TEST_F(DbTest, LastSeqsAreNumericNotLexicographic) {
  Batch b(db_.get());
  b.PutEvent(255, Track("u", "E", 1));
  b.PutEvent(256, Track("u", "E", 2));
  b.PutEvent(1ull << 40, Track("u", "E", 3));
  b.PutChange(MakeChange(0x1ff, "s", 1, "u", kEnter, 1, 1));
  b.PutChange(MakeChange(0x200, "s", 2, "u", kExit, 0, 2));
  Write(b);
  Reopen();
  EXPECT_EQ(db_->LastEventSeq(), 1ull << 40);
  EXPECT_EQ(db_->LastChangeSeq(), 0x200u);
}

}  // namespace
}  // namespace shoal::durable
