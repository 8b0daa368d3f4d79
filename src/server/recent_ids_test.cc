#include "server/recent_ids.h"

#include <gtest/gtest.h>

namespace shoal::server {
namespace {

TEST(RecentIdsTest, RemembersForAtLeastTheWindowAndForgetsAfter) {
  RecentIds ids(/*window=*/8000, /*max_ids=*/1000);
  EXPECT_TRUE(ids.Insert(1, 0));
  EXPECT_FALSE(ids.Insert(1, 500));  // a duplicate, and its time does not refresh it
  for (Millis t = 1000; t <= 8000; t += 1000) {
    ids.Expire(t);
    EXPECT_TRUE(ids.Contains(1)) << "still within the window at " << t;
  }
  ids.Expire(9000);  // the generation [0, 1000) ended 8 s ago
  EXPECT_FALSE(ids.Contains(1));
  EXPECT_TRUE(ids.Insert(1, 9000));
}

TEST(RecentIdsTest, TheCapForgetsTheOldestGenerationsFirst) {
  RecentIds ids(/*window=*/8000, /*max_ids=*/10);
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(ids.Insert(i, 0));      // generation 0
  for (uint64_t i = 6; i < 12; ++i) ASSERT_TRUE(ids.Insert(i, 1000));  // generation 1
  EXPECT_LE(ids.size(), 10u);
  EXPECT_FALSE(ids.Contains(0));  // the oldest generation went
  EXPECT_TRUE(ids.Contains(11));
  EXPECT_TRUE(ids.Contains(6));
}

TEST(RecentIdsTest, OutOfOrderTimesJoinTheNewestGeneration) {
  RecentIds ids(8000, 1000);
  ASSERT_TRUE(ids.Insert(1, 5000));
  ASSERT_TRUE(ids.Insert(2, 100));  // late: kept with the newest, so it lives at least as long
  ids.Expire(12000);
  EXPECT_TRUE(ids.Contains(2));
  EXPECT_EQ(ids.size(), 2u);
}

}  // namespace
}  // namespace shoal::server
