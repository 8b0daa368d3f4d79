// The backfill's fork-join helpers: how work is cut into parts, and the pool that runs them. The
// backfill's results on several threads are compared with one thread's by
// DifferentialTest.ParallelBackfillMatchesOneThread; these pin down the helpers themselves.
#include "engine/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

namespace shoal::engine {
namespace {

TEST(ParallelTest, PartsRespectThreadsAndGrain) {
  EXPECT_EQ(Parts(1'000'000, 1, 10), 1u);  // one thread: never split
  EXPECT_EQ(Parts(19, 4, 10), 1u);         // fewer than two grains
  EXPECT_EQ(Parts(20, 4, 10), 2u);
  EXPECT_EQ(Parts(1'000'000, 4, 10), 4u);  // at most the threads
  EXPECT_EQ(Parts(3, 8, 0), 3u);           // a grain of 0 counts as 1
  EXPECT_EQ(Parts(0, 8, 1), 1u);
}

TEST(ParallelTest, PartRangesCoverEveryItemOnceInOrder) {
  for (size_t n : {0, 1, 2, 7, 100, 4097})
    for (size_t parts : {1, 2, 3, 8}) {
      size_t at = 0;
      for (size_t i = 0; i < parts; ++i) {
        auto [lo, hi] = PartRange(n, parts, i);
        EXPECT_EQ(lo, at) << n << " items, part " << i << " of " << parts;
        EXPECT_LE(hi - lo, n / parts + 1);
        at = hi;
      }
      EXPECT_EQ(at, n);
    }
}

TEST(ParallelTest, PoolRunsEveryPartExactlyOnce) {
  WorkerPool pool(3);
  for (size_t parts : {1, 2, 3, 5, 64, 2, 1, 17}) {
    std::vector<std::atomic<int>> runs(parts);
    pool.Run(parts, [&](size_t i) { runs[i].fetch_add(1); });
    for (size_t i = 0; i < parts; ++i)
      EXPECT_EQ(runs[i].load(), 1) << "part " << i << " of " << parts;
  }
}

TEST(ParallelTest, PoolResultsAreVisibleToTheCaller) {
  WorkerPool pool(2);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::vector<int>> out(8);  // plain memory, written by whichever thread runs a part
    pool.Run(out.size(), [&](size_t i) {
      for (int k = 0; k < 1000; ++k) out[i].push_back(static_cast<int>(i) * 1000 + k);
    });
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_EQ(out[i].size(), 1000u);
      EXPECT_EQ(out[i].back(), static_cast<int>(i) * 1000 + 999);
    }
  }
}

TEST(ParallelTest, OneThreadRunsEverythingOnTheCaller) {
  WorkerPool pool(1);
  std::set<std::thread::id> ids;
  pool.Run(10, [&](size_t) { ids.insert(std::this_thread::get_id()); });
  EXPECT_EQ(ids, std::set<std::thread::id>{std::this_thread::get_id()});
}

}  // namespace
}  // namespace shoal::engine
