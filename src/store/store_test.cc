// The string pool: interning, lookup after growth and forgetting, and the hash its table uses.
#include "store/store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

namespace shoal::store {
namespace {

// Distinct strings of every length up to 40 (across the hash's 1-3, 4-7, 8-16 and XXH3 cases), ids
// and texts alike to the peers workload's.
std::vector<std::string> Keys() {
  std::vector<std::string> keys;
  for (int i = 0; i < 20000; ++i) keys.push_back("u" + std::to_string(i));
  keys.push_back("");
  for (size_t n = 1; n <= 40; ++n)
    for (char c : std::string("abz")) keys.push_back(std::string(n, c));
  for (int i = 0; i < 2000; ++i) keys.push_back("campaign-2026-" + std::to_string(i) + "-spring");
  return keys;
}

TEST(StringPoolTest, InternsEachStringOnceAndFindsItAfterGrowing) {
  StringPool pool;
  const std::vector<std::string> keys = Keys();
  std::vector<uint32_t> ids;
  for (const std::string& k : keys) ids.push_back(pool.Intern(k));  // grows many times
  ASSERT_EQ(pool.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(pool.Intern(keys[i]), ids[i]) << keys[i];
    EXPECT_EQ(pool.Find(keys[i]), ids[i]) << keys[i];
    EXPECT_EQ(pool.Get(ids[i]), keys[i]);
  }
  EXPECT_EQ(pool.Find("u20000"), std::nullopt);
  EXPECT_EQ(pool.Find(std::string(41, 'a')), std::nullopt);
}

TEST(StringPoolTest, AForgottenStringIsNotFoundAndGetsANewIdWhenInternedAgain) {
  StringPool pool;
  const uint32_t a = pool.Intern("user-17"), b = pool.Intern("user-18");
  pool.Forget(a);
  EXPECT_EQ(pool.Find("user-17"), std::nullopt);
  EXPECT_EQ(pool.Get(a), "");
  EXPECT_EQ(pool.Find("user-18"), b);  // a forgotten slot does not end the probe
  const uint32_t again = pool.Intern("user-17");
  EXPECT_NE(again, a);
  EXPECT_EQ(pool.Find("user-17"), again);
}

// Strings that differ only after their first 8 bytes, or only in their last byte, hash apart;
// among them, keys whose first 8 bytes are the hash's own first constant: a plain 64x64 multiply
// would make that factor zero and every such key of 9-16 bytes one value (a flood anyone could
// send; StringPool::Mix keeps both inputs).
TEST(StringPoolTest, ShortKeysThatShareBytesHashApart) {
  const uint64_t k1 = 0x2d358dccaa6c78a5ull;
  char prefix[8];
  std::memcpy(prefix, &k1, 8);
  std::unordered_set<uint64_t> seen;
  size_t n = 0;
  for (int i = 0; i < 5000; ++i) {
    const std::string tail = std::to_string(i);
    for (const std::string& k : {std::string(prefix, 8) + tail, "order-id-" + tail,
                                 std::string(16 - tail.size(), 'x') + tail}) {
      seen.insert(StringPool::Hash(k));
      ++n;
    }
  }
  EXPECT_EQ(seen.size(), n);
  // The table's index comes from the low bits: they must spread too.
  std::unordered_set<uint64_t> low;
  for (int i = 0; i < 4096; ++i)
    low.insert(StringPool::Hash(std::string(prefix, 8) + "t" + std::to_string(i)) & 0xFFFF);
  EXPECT_GT(low.size(), 3500u);  // 4096 random draws from 65536 values: ~3,977 distinct
}

}  // namespace
}  // namespace shoal::store
