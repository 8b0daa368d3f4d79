// The segments' deadline table. Timers read it to tell a live deadline from a superseded one, so
// a lost or stale entry would fire a wrong exit or miss one; the engine's tests reach it only
// through a few profiles per segment, these through long runs of colliding ids and erasures.
#include "engine/deadlines.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

namespace shoal::engine {
namespace {

// Every entry of `m` is found with its instant, and nothing else is there.
void ExpectSame(const DeadlineMap& m, const std::map<uint32_t, Millis>& want, uint32_t max_id) {
  ASSERT_EQ(m.size(), want.size());
  for (uint32_t id = 0; id <= max_id; ++id) {
    auto it = want.find(id);
    const Millis* got = m.Find(id);
    if (it == want.end()) {
      EXPECT_EQ(got, nullptr) << "id " << id;
    } else {
      ASSERT_NE(got, nullptr) << "id " << id;
      EXPECT_EQ(*got, it->second) << "id " << id;
    }
  }
  std::map<uint32_t, Millis> seen;
  m.ForEach([&](uint32_t id, Millis at) { EXPECT_TRUE(seen.emplace(id, at).second) << id; });
  EXPECT_EQ(seen, want);
}

using Due = DeadlineMap::Due;

TEST(DeadlineMapTest, SetAsksForATimerOnlyBeforeTheAnchor) {
  DeadlineMap m;
  Millis later = 0;
  EXPECT_EQ(m.Find(7), nullptr);
  EXPECT_FALSE(m.erase(7));
  EXPECT_EQ(m.Check(7, 100, &later), Due::kStale);
  EXPECT_TRUE(m.Set(7, 100));   // new: a timer at 100, the anchor
  EXPECT_FALSE(m.Set(7, 100));  // the same deadline: no new timer
  EXPECT_FALSE(m.Set(7, 150));  // later: the timer at 100 stands for it
  EXPECT_FALSE(m.Set(7, 120));  // earlier, still after the anchor
  ASSERT_NE(m.Find(7), nullptr);
  EXPECT_EQ(*m.Find(7), 120);
  EXPECT_EQ(m.Check(7, 150, &later), Due::kStale);  // a timer of no deadline now
  EXPECT_EQ(m.Check(7, 100, &later), Due::kLater);
  EXPECT_EQ(later, 120);
  EXPECT_EQ(m.Take(7, 100, &later), Due::kLater);  // 120 is the anchor now
  EXPECT_EQ(m.Check(7, 100, &later), Due::kStale);
  EXPECT_TRUE(m.Set(7, 50));  // before the anchor: a timer at 50
  EXPECT_EQ(m.Check(7, 120, &later), Due::kStale);
  EXPECT_TRUE(m.contains(7));
  EXPECT_EQ(m.Take(7, 50, &later), Due::kFire);
  EXPECT_FALSE(m.contains(7));
  EXPECT_EQ(m.Take(7, 50, &later), Due::kStale);
  // A move more than 2^32 ms past the anchor asks for a timer of its own.
  EXPECT_TRUE(m.Set(8, 0));
  EXPECT_FALSE(m.Set(8, Millis{UINT32_MAX}));
  EXPECT_TRUE(m.Set(8, Millis{UINT32_MAX} + 1));
  EXPECT_EQ(m.Check(8, 0, &later), Due::kStale);
  EXPECT_EQ(m.Check(8, Millis{UINT32_MAX} + 1, &later), Due::kFire);
  // After AnchorAll (the engine pushed a timer at every deadline) each is its own anchor.
  EXPECT_FALSE(m.Set(8, Millis{UINT32_MAX} + 5));
  m.AnchorAll();
  EXPECT_EQ(m.Check(8, Millis{UINT32_MAX} + 5, &later), Due::kFire);
  EXPECT_TRUE(m.erase(8));
  m.Set(7, 50);
  EXPECT_TRUE(m.erase(7));
  EXPECT_FALSE(m.contains(7));
  EXPECT_TRUE(m.empty());
  m.Set(1, 1);
  m.clear();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_FALSE(m.contains(1));
  EXPECT_TRUE(m.Set(1, 2));  // usable after clear
  EXPECT_EQ(*m.Find(1), 2);
}

// Erasing from the middle of a run of entries that probed past each other must keep the later
// ones reachable (the backward shift), whatever the order of erasures.
TEST(DeadlineMapTest, RandomSetsAndErasesMatchAnOrderedMap) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    // Small id ranges force long runs and wrap-around at the table's end; a large one grows it.
    const uint32_t max_id = seed % 3 == 0 ? 100'000 : 40 + seed * 7;
    DeadlineMap m;
    std::map<uint32_t, Millis> want, anchor;
    for (int step = 0; step < 20'000; ++step) {
      const uint32_t id = rng() % (max_id + 1);
      if (rng() % 3 == 0) {
        EXPECT_EQ(m.erase(id), want.erase(id) == 1);
        anchor.erase(id);
      } else {
        const Millis at = rng() % 4;
        auto it = want.find(id);
        const bool timer = it == want.end() || (it->second != at && at < anchor[id]);
        EXPECT_EQ(m.Set(id, at), timer);
        if (timer) anchor[id] = at;
        want[id] = at;
      }
      if (step % 7 == 0) {  // a due timer: at the anchor, the deadline or elsewhere
        const uint32_t tid = rng() % (max_id + 1);
        const Millis t = rng() % 4;
        Millis later = -1;
        auto it = want.find(tid);
        const Due expect = it == want.end() || anchor[tid] != t ? Due::kStale
                           : it->second == t                    ? Due::kFire
                                                                : Due::kLater;
        ASSERT_EQ(m.Take(tid, t, &later), expect) << "id " << tid << " at " << t;
        if (expect == Due::kFire) {
          want.erase(tid);
          anchor.erase(tid);
        } else if (expect == Due::kLater) {
          EXPECT_EQ(later, it->second);
          anchor[tid] = it->second;
        }
      }
      if (step % 5'000 == 4'999) ExpectSame(m, want, std::min<uint32_t>(max_id, 3'000));
    }
    ExpectSame(m, want, std::min<uint32_t>(max_id, 3'000));
    // Drain it completely in random order.
    std::vector<uint32_t> ids;
    for (auto [id, at] : want) ids.push_back(id);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (uint32_t id : ids) {
      EXPECT_TRUE(m.erase(id));
      want.erase(id);
    }
    ExpectSame(m, want, std::min<uint32_t>(max_id, 3'000));
  }
}

// Ids with a common stride (accounts created in bulk, every 1024th profile) still land apart.
TEST(DeadlineMapTest, StridedIdsAreAllFound) {
  DeadlineMap m;
  std::map<uint32_t, Millis> want;
  for (uint32_t i = 0; i < 5'000; ++i) {
    m.Set(i * 1024, i);
    want[i * 1024] = i;
  }
  for (auto [id, at] : want) {
    ASSERT_NE(m.Find(id), nullptr) << id;
    EXPECT_EQ(*m.Find(id), at);
  }
  EXPECT_EQ(m.Find(1023), nullptr);
  EXPECT_LE(m.MemoryBytes(), 16u * 8'192);  // 5,000 entries at most 3/4 full: 8,192 slots
}

}  // namespace
}  // namespace shoal::engine
