// Series storage: timelines built by a backfill and then grown by live appends past their first
// allocation, late events, erasure, and a build over a series that already has entries. The
// engine's data-driven and differential tests cover what conditions read; these pin down the
// storage's own edge cases directly, whatever its layout (docs/benchmarks.md, Round 3).
#include "engine/series.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "store/store.h"

namespace shoal::engine {
namespace {

class SeriesTest : public ::testing::Test {
 protected:
  SeriesTest() {
    for (const char* p : {"u0", "u1", "u2", "u3"}) store_.profiles().Intern(p);
    name_ = store_.strings().Intern("Order Completed");
    total_ = store_.keys().Intern("total");
  }
  // Appends a record of profile `pid` at `ts` with total = `total`; returns its index.
  uint32_t Record(uint32_t pid, Millis ts, double total) {
    store::StoredValue v;
    v.type = ValueType::kNumber;
    v.num = total;
    store::PropEntry p = store::PropEntry::Make(total_, v);
    return store_.Append(pid, name_, ts, std::span<const store::PropEntry>(&p, 1));
  }
  void Build(Series* s) { s->Build(store_.records_named(name_), store_, &scratch_); }
  static std::vector<Millis> Times(Timeline tl) {
    std::vector<Millis> out;
    for (const Entry& e : tl) out.push_back(e.ts);
    return out;
  }

  store::Store store_;
  uint32_t name_ = 0, total_ = 0;
  std::vector<uint32_t> scratch_;
};

// Entries older than the horizon are dropped when a timeline would grow, not before; the
// series then counts as having left entries out, so a wider reader rebuilds it.
TEST_F(SeriesTest, AddDropsEntriesBeforeTheCutoffInsteadOfGrowing) {
  Series s(name_, std::nullopt, std::nullopt, &store_);
  EXPECT_EQ(s.Cutoff(1000), kMinTime);  // a series nobody narrowed keeps everything
  s.InitHorizon(Horizon::Ago(100));
  EXPECT_FALSE(s.Widen(Horizon::Ago(50)));  // narrower: nothing changes
  EXPECT_EQ(s.Cutoff(1000), 900);
  for (Millis ts : {10, 20, 30, 40}) s.Add(0, ts, 0, 0, s.Cutoff(ts));
  const size_t capacity = s.Capacity(0);
  while (s.Get(0).size() < capacity) s.Add(0, 50, 0, 0, s.Cutoff(50));
  EXPECT_EQ(s.Get(0).front().ts, 10);          // not full before: nothing dropped
  EXPECT_FALSE(s.Widen(Horizon::From(-500)));  // nothing was left out yet: no rebuild
  EXPECT_EQ(s.Cutoff(1000), -500);             // the earlier of the two starts
  s.InitHorizon(Horizon::Ago(100));
  s.Add(0, 135, 0, 0, s.Cutoff(135));  // full: drops the entries before 35
  EXPECT_EQ(s.Get(0).front().ts, 40);
  EXPECT_EQ(s.Get(0).back().ts, 135);
  EXPECT_FALSE(s.LeaveOut(35, 135));
  EXPECT_TRUE(s.LeaveOut(34, 135));
  EXPECT_TRUE(s.Widen(Horizon::Ago(1000)));  // entries were dropped: a wider reader rebuilds
  s.Clear();
  EXPECT_TRUE(s.Get(0).empty());
  EXPECT_FALSE(s.Widen(Horizon::All()));  // nothing left out since the Clear
  EXPECT_EQ(s.Cutoff(1000), kMinTime);
}

TEST_F(SeriesTest, BuildsEachProfilesTimelineWithValues) {
  Record(0, 10, 1.5);
  Record(1, 5, 2);
  Record(0, 20, 3);
  Series s(name_, std::nullopt, total_, &store_);
  Build(&s);
  EXPECT_EQ(Times(s.Get(0)), (std::vector<Millis>{10, 20}));
  EXPECT_EQ(Times(s.Get(1)), (std::vector<Millis>{5}));
  EXPECT_TRUE(s.Get(2).empty());
  EXPECT_TRUE(s.Get(1000).empty());
  EXPECT_TRUE(s.Has(0));
  EXPECT_FALSE(s.Has(2));
  EXPECT_EQ(s.Get(0).value(1), 3);
  EXPECT_EQ(s.Get(0)[1].idx, 2u);
  EXPECT_EQ(s.Get(1).value(0), 2);
}

TEST_F(SeriesTest, LiveAppendsOutgrowTheBuiltSliceWithoutTouchingTheNext) {
  Record(0, 10, 1);
  Record(1, 50, 1);
  Series s(name_, std::nullopt, std::nullopt, &store_);
  Build(&s);
  // Each timeline was sized for one entry by the build: appending to profile 0 must grow it
  // without touching profile 1's.
  for (Millis t = 11; t < 40; ++t) s.Add(0, t, 100 + static_cast<uint32_t>(t), 0);
  s.Add(1, 60, 200, 0);
  s.Add(1, 40, 201, 0);  // late: inserted in order
  ASSERT_EQ(s.Get(0).size(), 30u);
  for (size_t i = 0; i < 30; ++i) EXPECT_EQ(s.Get(0)[i].ts, 10 + static_cast<Millis>(i));
  EXPECT_EQ(Times(s.Get(1)), (std::vector<Millis>{40, 50, 60}));
  s.Add(3, 7, 300, 0);  // a profile the build did not size for
  EXPECT_EQ(Times(s.Get(3)), (std::vector<Millis>{7}));
}

TEST_F(SeriesTest, BuildSortsATimelineALateEventLeftOutOfOrder) {
  Record(2, 30, 1);
  Record(2, 10, 1);  // arrived after, happened before
  Record(2, 20, 1);
  Record(2, 20, 1);  // same instant: ordered by record index
  Series s(name_, std::nullopt, std::nullopt, &store_);
  Build(&s);
  EXPECT_EQ(Times(s.Get(2)), (std::vector<Millis>{10, 20, 20, 30}));
  EXPECT_LT(s.Get(2)[1].idx, s.Get(2)[2].idx);
}

TEST_F(SeriesTest, BuildSkipsErasedProfilesAndEraseEmptiesATimeline) {
  Record(0, 10, 1);
  Record(1, 10, 1);
  store_.EraseProfile(1);
  Series s(name_, std::nullopt, std::nullopt, &store_);
  Build(&s);
  EXPECT_TRUE(s.Has(0));
  EXPECT_FALSE(s.Has(1));
  s.Add(0, 20, 5, 0);  // grown past what the build sized
  s.Erase(0);
  EXPECT_TRUE(s.Get(0).empty());
  s.Add(0, 30, 6, 0);
  EXPECT_EQ(Times(s.Get(0)), (std::vector<Millis>{30}));
  const size_t before = s.MemoryBytes();
  s.Erase(0);
  EXPECT_LT(s.MemoryBytes(), before);
}

TEST_F(SeriesTest, BuildOverEntriesAlreadyThereMergesInOrder) {
  Series s(name_, std::nullopt, std::nullopt, &store_);
  s.Add(0, 15, 99, 0);
  Record(0, 10, 1);
  Record(0, 20, 1);
  Build(&s);
  EXPECT_EQ(Times(s.Get(0)), (std::vector<Millis>{10, 15, 20}));
}

// An add after the newest entry of every timeline appends without reading the timeline; one
// that is not (after a build whose newest entry is later, after a late add) still goes in order,
// whichever profile holds the newer entries. A rebuild after Clear starts over.
TEST_F(SeriesTest, AddsInOrderAroundTheNewestEntryOfAnyTimeline) {
  Record(0, 100, 1);
  Record(1, 10, 1);
  Series s(name_, std::nullopt, total_, &store_);
  Build(&s);
  s.Add(1, 50, 10, 5);    // before the newest (profile 0's 100), after profile 1's last
  s.Add(1, 30, 11, 3);    // before profile 1's last: inserted
  s.Add(0, 90, 12, 9);    // before profile 0's last: inserted
  s.Add(1, 200, 13, 20);  // after everything
  s.Add(0, 150, 14, 15);  // before the newest, after profile 0's last
  s.Add(0, 150, 2, 16);   // same instant, smaller record index: before it
  EXPECT_EQ(Times(s.Get(0)), (std::vector<Millis>{90, 100, 150, 150}));
  EXPECT_EQ(s.Get(0)[2].idx, 2u);
  EXPECT_EQ(s.Get(0)[0].idx, 12u);
  EXPECT_EQ(s.Get(0).value(0), 9);
  EXPECT_EQ(s.Get(0).value(3), 15);
  EXPECT_EQ(Times(s.Get(1)), (std::vector<Millis>{10, 30, 50, 200}));
  EXPECT_EQ(s.Get(1).value(1), 3);
  s.Clear();
  Build(&s);  // only the two records: the newest is 100 again
  s.Add(1, 60, 15, 6);
  s.Add(1, 20, 16, 2);
  EXPECT_EQ(Times(s.Get(1)), (std::vector<Millis>{10, 20, 60}));
}

TEST_F(SeriesTest, ValueIsNaNWhenThePropertyIsMissing) {
  store_.Append(0, name_, 10, {});
  Series s(name_, std::nullopt, total_, &store_);
  Build(&s);
  ASSERT_EQ(s.Get(0).size(), 1u);
  EXPECT_TRUE(std::isnan(s.Get(0).value(0)));
}

}  // namespace
}  // namespace shoal::engine
