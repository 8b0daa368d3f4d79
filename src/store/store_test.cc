// The string pool (interning, lookup after growth and forgetting, the hash its table uses) and the
// record store's packed properties (shapes, values across chunk ends, erasure).
#include "store/store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
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

// With the hot cache on (here 16 entries, so most strings share an entry with others), every
// string still interns to its one id, long and short, while the cache evicts and refills; a
// forgotten string's cached id is not handed out again.
TEST(StringPoolTest, TheHotCacheNeverChangesAnId) {
  StringPool pool;
  pool.EnableHotCache(16);  // on once the table has 64 slots
  const std::vector<std::string> keys = Keys();
  std::vector<uint32_t> ids;
  for (const std::string& k : keys) ids.push_back(pool.Intern(k));
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < keys.size(); ++i) {
      const size_t j = (i * 7919 + round) % keys.size();  // an order that evicts
      ASSERT_EQ(pool.Intern(keys[j]), ids[j]) << keys[j];
    }
  }
  ASSERT_EQ(pool.size(), keys.size());
  // 8 bytes and 9 bytes that share their first 8: one cached, one not.
  const uint32_t eight = pool.Intern("p1234567"), nine = pool.Intern("p12345678");
  EXPECT_NE(eight, nine);
  EXPECT_EQ(pool.Intern("p1234567"), eight);
  EXPECT_EQ(pool.Intern("p12345678"), nine);
  EXPECT_EQ(pool.Intern(""), pool.Intern(""));
  pool.Forget(eight);
  const uint32_t again = pool.Intern("p1234567");
  EXPECT_NE(again, eight);
  EXPECT_EQ(pool.Find("p1234567"), again);
  EXPECT_EQ(pool.Intern("p1234567"), again);
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

// Chunks of 16: every item stays where ptr() and operator[] find it, whatever mix of empty and
// padded extensions and single appends came before (an empty extension at a chunk end must not
// add a second chunk for the same indices).
TEST(ChunkedVectorTest, ItemsStayWhereTheyWereAppendedAcrossChunkEnds) {
  ChunkedVector<uint32_t, 4> v;
  std::vector<uint32_t> want;  // by index; padding included
  std::mt19937 rng(3);
  uint32_t next = 1;
  for (int step = 0; step < 2000; ++step) {
    if (rng() % 3 == 0) {
      v.push_back(next);
      want.push_back(next++);
      continue;
    }
    const size_t n = rng() % 6, slack = rng() % 3;  // n == 0 often lands on a chunk end
    const size_t before = v.size();
    size_t at = 0;
    uint32_t* p = v.extend_contiguous(n, 0, &at, slack);
    ASSERT_GE(at, before);
    ASSERT_EQ(v.size(), at + n);
    ASSERT_LE(at % 16 + n + slack, 16u) << "crosses a chunk end";
    want.resize(at, 0);                                    // the padding
    for (size_t k = 0; k < n + slack; ++k) p[k] = 0xdead;  // the slack is the caller's to write
    for (size_t k = 0; k < n; ++k) {
      p[k] = next;
      want.push_back(next++);
    }
    if (n > 0) {
      EXPECT_EQ(v.ptr(at), p);
    }
  }
  ASSERT_EQ(v.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0) continue;  // padding (or overwritten slack)
    EXPECT_EQ(v[i], want[i]) << i;
    EXPECT_EQ(*v.ptr(i), want[i]) << i;
  }
}

// Times are kept as 4-byte offsets from a base per 65,536 records; every time comes back exact,
// those more than 24.8 days from the base (late events, wrong clocks, the extremes), 0 and
// negative ones included, and an erased record's reads 0.
TEST(StoreTest, EveryRecordTimeComesBackExact) {
  Store store;
  std::mt19937_64 rng(5);
  const uint32_t name = store.strings().Intern("Viewed");
  const Millis day = 86'400'000, start = 1'790'000'000'000;  // 2026-09
  for (const char* p : {"a", "b", "c"}) store.profiles().Intern(p);
  std::vector<Millis> want;
  for (uint32_t i = 0; i < 200'000; ++i) {
    Millis t = start + i * 1000 + static_cast<Millis>(rng() % (2 * day)) - day;  // +-1 day
    switch (rng() % 50) {
      case 0:
        t -= 30 * day;
        break;  // a month late
      case 1:
        t += 25 * day;
        break;  // a device clock ahead
      case 2:
        t = 0;
        break;
      case 3:
        t = -static_cast<Millis>(rng() % (1000 * day));
        break;  // before 1970
      case 4:
        t = rng() % 2 ? kMaxTime : kMinTime;
        break;
      case 5:
        t = start + i * 1000 + (rng() % 2 ? 1 : -1) * (Millis{INT32_MAX} + rng() % 3);
        break;
      default:
        break;
    }
    want.push_back(t);
    ASSERT_EQ(store.Append(i % 3, name, t, {}), i);
  }
  for (uint32_t i = 0; i < want.size(); ++i) ASSERT_EQ(store.ts(i), want[i]) << i;
  ASSERT_EQ(store.EraseProfile(1), 66'667u);  // i % 3 == 1 for i < 200,000
  for (uint32_t i = 0; i < want.size(); ++i) ASSERT_EQ(store.ts(i), i % 3 == 1 ? 0 : want[i]) << i;
}

// A random record: up to `max_props` distinct keys out of 40, each of a random type (null, bool,
// number, string, list), sorted by key as the engine appends them.
std::vector<PropEntry> RandomProps(std::mt19937& rng, Store* store, size_t max_props) {
  std::vector<PropEntry> props;
  const size_t n = std::uniform_int_distribution<size_t>(0, max_props)(rng);
  for (uint32_t key = 0; key < 40 && props.size() < n; ++key) {
    if (rng() % 3 == 0 && 40 - key > n - props.size()) continue;
    StoredValue v;
    v.type = static_cast<ValueType>(rng() % 5);
    if (v.type == ValueType::kBool) v.b = rng() % 2;
    if (v.type == ValueType::kNumber) v.num = std::ldexp(static_cast<double>(rng()), -7) - 1e6;
    if (v.type == ValueType::kString || v.type == ValueType::kList)
      v.str = store->strings().Intern("v" + std::to_string(rng() % 1000));
    props.push_back(PropEntry::Make(store->keys().Intern("k" + std::to_string(key)), v));
  }
  std::sort(props.begin(), props.end(),
            [](const PropEntry& a, const PropEntry& b) { return a.key() < b.key(); });
  return props;
}

void ExpectProps(const Store& store, uint32_t idx, const std::vector<PropEntry>& want) {
  std::vector<PropEntry> got;
  for (const PropEntry p : store.props(idx)) got.push_back(p);
  ASSERT_EQ(got.size(), want.size()) << "record " << idx;
  EXPECT_EQ(store.props(idx).size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(got[k].key(), want[k].key()) << "record " << idx << " property " << k;
    EXPECT_EQ(got[k].type(), want[k].type()) << "record " << idx << " property " << k;
    EXPECT_TRUE(got[k].value() == want[k].value()) << "record " << idx << " property " << k;
    EXPECT_EQ(store.Find(idx, want[k].key()), want[k].value());
  }
}

TEST(StoreTest, PropertiesComeBackAsAppendedAcrossShapesAndChunkEnds) {
  Store store;
  std::mt19937 rng(7);
  const uint32_t names[] = {store.strings().Intern("Viewed"), store.strings().Intern("Bought"),
                            Store::kIdentifyName, Store::kGroupName};
  std::vector<std::vector<PropEntry>> want;
  // 20k records of up to 40 properties (as many as 80 value words): the value column's 1 MiB
  // chunks end in the middle of records many times over, and names take many shapes each.
  for (uint32_t i = 0; i < 20000; ++i) {
    // The first records have no properties: the value column starts with empty extensions.
    want.push_back(i < 10 ? std::vector<PropEntry>{}
                          : RandomProps(rng, &store, i % 100 == 0 ? 40 : 4));
    const uint32_t name = names[i % 4];
    const uint32_t idx = name == Store::kGroupName
                             ? store.AppendGroup(i % 7, i % 3, 1000 + i, want.back())
                             : store.Append(i % 7, name, 1000 + i, want.back());
    ASSERT_EQ(idx, i);
    ASSERT_EQ(store.name(idx), name);
  }
  for (uint32_t i = 0; i < want.size(); ++i) ExpectProps(store, i, want[i]);
  EXPECT_GT(store.shapes(), 100u);  // distinct (name, keys, types)
  EXPECT_EQ(store.Find(0, store.keys().Intern("never")), std::nullopt);
}

TEST(StoreTest, RecordsOfOneShapeShareItAndKeepTheirOwnValues) {
  Store store;
  const uint32_t name = store.strings().Intern("Product Viewed");
  const uint32_t price = store.keys().Intern("price"), product = store.keys().Intern("product_id");
  for (int i = 0; i < 1000; ++i) {
    StoredValue p{ValueType::kNumber, false, 0, i + 0.5};
    StoredValue id{ValueType::kString, false, store.strings().Intern("p" + std::to_string(i)), 0};
    const PropEntry props[] = {PropEntry::Make(price, p), PropEntry::Make(product, id)};
    store.Append(static_cast<uint32_t>(i), name, i, props);
  }
  EXPECT_EQ(store.shapes(), 3u);  // the erased records', the own keys' (reserved) and this one
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(store.Find(i, price)->num, i + 0.5);
    EXPECT_EQ(store.strings().Get(store.Find(i, product)->str), "p" + std::to_string(i));
  }
  // The same keys with another type are another shape; so are the same keys under another name.
  const StoredValue text{ValueType::kString, false, store.strings().Intern("cheap"), 0};
  const PropEntry as_text[] = {PropEntry::Make(price, text)};
  store.Append(0, name, 0, as_text);
  store.Append(0, store.strings().Intern("Other"), 0, as_text);
  EXPECT_EQ(store.shapes(), 5u);
  EXPECT_EQ(store.Find(1000, price)->type, ValueType::kString);
  EXPECT_EQ(store.Find(1001, price)->str, text.str);
}

// Properties keyed by ids ({"scores.p123": 5}) give nearly every record its own shape; past the
// name's first 256, records keep their own keys. Every record reads back the same either way, a
// name's later shapes still work, and such records erase like the others.
TEST(StoreTest, ANameWithEndlessShapesKeepsItsRecordsWhole) {
  Store store;
  const uint32_t scores = store.strings().Intern("Scored"), other = store.strings().Intern("Other");
  const uint32_t alice = store.profiles().Intern("alice"), bob = store.profiles().Intern("bob");
  std::vector<std::vector<PropEntry>> want;
  std::vector<uint32_t> names;
  for (uint32_t i = 0; i < 3000; ++i) {
    std::vector<PropEntry> props;
    const StoredValue num{ValueType::kNumber, false, 0, i * 0.25};
    const StoredValue str{ValueType::kString, false, store.strings().Intern("x"), 0};
    props.push_back(PropEntry::Make(store.keys().Intern("scores.p" + std::to_string(i)), num));
    if (i % 2) props.push_back(PropEntry::Make(store.keys().Intern("tag"), str));
    std::sort(props.begin(), props.end(),
              [](const PropEntry& a, const PropEntry& b) { return a.key() < b.key(); });
    // Every 10th record is another name's, or a group call's: each name has its own budget.
    const uint32_t name = i % 10 == 3 ? other : i % 10 == 7 ? Store::kGroupName : scores;
    const uint32_t idx = name == Store::kGroupName
                             ? store.AppendGroup(i % 2 ? bob : alice, 0, 1000 + i, props)
                             : store.Append(i % 2 ? bob : alice, name, 1000 + i, props);
    ASSERT_EQ(idx, i);
    want.push_back(props);
    names.push_back(name);
  }
  EXPECT_EQ(store.shapes(), 2 + 3 * Store::kMaxShapesPerName);
  for (uint32_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(store.name(i), names[i]) << i;
    EXPECT_EQ(store.kind(i),
              names[i] == Store::kGroupName ? RecordKind::kGroup : RecordKind::kTrack);
    ExpectProps(store, i, want[i]);
  }
  ASSERT_EQ(store.records_named(scores).size(), 2400u);
  EXPECT_EQ(store.EraseProfile(alice), 1500u);
  for (uint32_t i = 0; i < want.size(); ++i) {
    if (i % 2) {
      EXPECT_EQ(store.name(i), names[i]) << i;
      ExpectProps(store, i, want[i]);
    } else {
      EXPECT_EQ(store.kind(i), RecordKind::kErased) << i;
      EXPECT_TRUE(store.props(i).empty()) << i;
    }
  }
}

TEST(StoreTest, AnErasedProfilesRecordsReadEmptyAndOthersKeepTheirs) {
  Store store;
  std::mt19937 rng(11);
  const uint32_t name = store.strings().Intern("Viewed");
  const uint32_t alice = store.profiles().Intern("alice"), bob = store.profiles().Intern("bob");
  std::vector<std::vector<PropEntry>> want;
  for (uint32_t i = 0; i < 3000; ++i) {
    want.push_back(RandomProps(rng, &store, 6));
    store.Append(i % 2 ? bob : alice, name, 1000 + i, want.back());
  }
  EXPECT_EQ(store.EraseProfile(alice), 1500u);
  for (uint32_t i = 0; i < want.size(); ++i) {
    if (i % 2) {
      ExpectProps(store, i, want[i]);
    } else {
      EXPECT_EQ(store.kind(i), RecordKind::kErased);
      EXPECT_TRUE(store.props(i).empty());
      EXPECT_EQ(store.props(i).begin(), store.props(i).end());
    }
  }
}

}  // namespace
}  // namespace shoal::store
