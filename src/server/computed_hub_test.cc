#include "server/computed_hub.h"

#include <gtest/gtest.h>

namespace shoal::server {
namespace {

durable::StoredComputedChange C(uint64_t seq, std::string trait, std::string profile) {
  durable::StoredComputedChange c;
  c.seq = seq;
  c.change.trait = std::move(trait);
  c.change.profile = std::move(profile);
  return c;
}

std::vector<uint64_t> Seqs(const std::vector<durable::StoredComputedChange>& cs) {
  std::vector<uint64_t> out;
  for (const auto& c : cs) out.push_back(c.seq);
  return out;
}

TEST(ComputedHubTest, SinceReadsTheWindowFiltersAndSaysWhenToReadTheStore) {
  ComputedHub hub(3);
  hub.SetLastSeq(10);  // the store's last seq at start: the ring is empty
  std::vector<durable::StoredComputedChange> out;
  uint64_t scanned = 0;
  EXPECT_TRUE(hub.Since(10, {}, 100, &out, &scanned)) << "nothing after the last seq";
  EXPECT_FALSE(hub.Since(9, {}, 100, &out, &scanned)) << "seq 10 is only in the store";
  hub.Publish({C(11, "a", "u1"), C(12, "b", "u1"), C(13, "a", "u2"), C(14, "a", "u3")});
  EXPECT_EQ(hub.LastSeq(), 14u);
  EXPECT_FALSE(hub.Since(10, {}, 100, &out, &scanned)) << "11 left the window of 3";
  ASSERT_TRUE(hub.Since(11, {}, 100, &out, &scanned));
  EXPECT_EQ(Seqs(out), (std::vector<uint64_t>{12, 13, 14}));
  EXPECT_EQ(scanned, 14u);
  out.clear();
  ASSERT_TRUE(hub.Since(11, {"a"}, 1, &out, &scanned));
  EXPECT_EQ(Seqs(out), std::vector<uint64_t>{13});
  EXPECT_EQ(scanned, 13u) << "stops at the limit; the caller goes on from there";
}

TEST(ComputedHubTest, PublishWakesEachWaiterOnceAndRedactKeepsLaterChanges) {
  ComputedHub hub(10);
  int woken = 0;
  uint64_t id = hub.AddWaiter([&] { ++woken; });
  hub.AddWaiter([&] { ++woken; });
  hub.RemoveWaiter(id);
  EXPECT_EQ(hub.Waiters(), 1u);
  hub.Publish({});
  EXPECT_EQ(woken, 0) << "nothing published, nobody woken";
  hub.Publish({C(1, "a", "u1"), C(2, "a", "u1")});
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(hub.Waiters(), 0u);
  hub.Redact("u1", 2);
  std::vector<durable::StoredComputedChange> out;
  uint64_t scanned = 0;
  ASSERT_TRUE(hub.Since(0, {}, 10, &out, &scanned));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].change.profile, "(erased)");
  EXPECT_EQ(out[1].change.profile, "u1");
}

}  // namespace
}  // namespace shoal::server
