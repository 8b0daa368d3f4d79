// The engine's retained history: every accepted identify and track call, in arrival order, with
// strings interned. This is the source of truth from which segment state is (re)built: backfill
// for a new segment and the reference evaluator both read it. Columnar and chunked, so growth never
// copies the whole log; a record is about 29 bytes at the peers workload's size (its time, profile,
// shape, packed values and place in its event name's record list).
//
// Threading: not thread-safe; owned by the engine's single writer.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#define XXH_INLINE_ALL  // the hash of a short id is a few dozen instructions: inline it
#include <xxhash.h>

#include "absl/container/flat_hash_map.h"
#include "common/bytes.h"
#include "shoal/event.h"
#include "shoal/time.h"

namespace shoal::store {

// Interns strings to dense ids from 0. Ids and the views returned by Get() stay valid for the
// pool's lifetime.
//
// The index is an open-addressing table of 16-byte slots: the id, the length, 16 bits of the
// hash and the first 8 bytes of the string. A string of at most 8 bytes (user ids, order ids,
// most property values here) is verified in the slot itself, so a hit costs one cache miss
// instead of three (control byte, slot, then the bytes in the arena): interning was the largest
// cost of the full-size replay (docs/benchmarks.md). Longer strings are compared in the arena.
class StringPool {
 public:
  StringPool() : slots_(16, Slot{0, kEmpty, 0, 0}), mask_(15) {}
  StringPool(const StringPool&) = delete;
  StringPool& operator=(const StringPool&) = delete;

  uint32_t Intern(std::string_view s) { return Intern(s, Hash(s)); }
  // Intern with the string's Hash() computed beforehand (see Prefetch).
  uint32_t Intern(std::string_view s, uint64_t h) {
    if (!hot_.empty() && s.size() <= 8) return InternHot(s, h);
    const Probe p = Lookup(s, h);
    if (p.id != kEmpty) return p.id;
    return Insert(s, h, p.slot);
  }
  // Puts a direct-mapped cache of `entries` (a power of two) slots in front of the table, for
  // strings of at most 8 bytes, once the table has grown to 4x that: each entry holds the last
  // such string interned with its hash's bits, verified in the entry itself. For a pool whose
  // strings repeat unevenly (product ids among order ids), the cache is the part of the table
  // that is hot: 1 MiB instead of the table's 8 MiB, in whose pages a lookup at full size
  // missed the TLB ("Round 9").
  void EnableHotCache(size_t entries) { hot_entries_ = entries; }
  // Strings of up to 16 bytes (user ids, product and order ids, most property values) are hashed
  // inline by two 64x64->128-bit multiplies of their first and last 8 bytes (as wyhash does),
  // about a third of XXH3's instructions; longer ones by XXH3. Probe lengths on id sets like the
  // peers workload's are the same as XXH3's. Only in-memory tables use it: nothing persists it.
  [[gnu::always_inline]] static uint64_t Hash(std::string_view s) {
    const char* p = s.data();
    const size_t n = s.size();
    if (n > 16) [[unlikely]]
      return XXH3_64bits(p, n);
    uint64_t a = 0, b = 0;  // the first and last 8 (or 4) bytes, or the 3 bytes of a short one
    if (n >= 8) {
      a = Load8(p);
      b = Load8(p + n - 8);
    } else if (n >= 4) {
      a = Load4(p);
      b = Load4(p + n - 4);
    } else if (n > 0) {
      a = uint64_t{static_cast<unsigned char>(p[0])} << 16 |
          uint64_t{static_cast<unsigned char>(p[n / 2])} << 8 |
          static_cast<unsigned char>(p[n - 1]);
    }
    return Fold(Mix(a ^ 0x2d358dccaa6c78a5ull, b ^ 0x8bb84b93962eacc9ull ^ n),
                n ^ 0x4b33a62ed433d4a3ull);
  }
  // Starts loading the slot where the lookup of a string with hash `h` begins. The ingest path
  // prefetches the slots of all of a message's strings, then interns them: the cache misses
  // overlap instead of following one another. Only a hint: the table may grow in between.
  void Prefetch(uint64_t h) const { __builtin_prefetch(&slots_[h & mask_]); }
  // nullopt if `s` was never interned.
  std::optional<uint32_t> Find(std::string_view s) const {
    const Probe p = Lookup(s, Hash(s));
    if (p.id == kEmpty) return std::nullopt;
    return p.id;
  }
  std::string_view Get(uint32_t id) const { return views_[id]; }
  // Unbinds id from its string and overwrites the bytes: Find() no longer returns it, Get(id) is
  // empty, and interning the same string again yields a new id. The id itself is never reused.
  void Forget(uint32_t id);
  size_t size() const { return views_.size(); }
  size_t MemoryBytes() const;

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;          // slot never used
  static constexpr uint32_t kForgotten = UINT32_MAX - 1;  // slot of a forgotten id: probe on
  struct Slot {
    uint64_t head;  // the first min(len, 8) bytes, zero-padded
    uint32_t id;    // kEmpty, kForgotten or an id
    uint16_t len;   // the length, saturated at 0xFFFF
    uint16_t tag;   // the hash's top 16 bits
  };
  static_assert(sizeof(Slot) == 16);
  struct Probe {
    uint32_t id;  // the id found, or kEmpty
    size_t slot;  // where to insert when not found
  };

  // The two halves of a*b, and a and b themselves (wyhash's "condom" mode): with the product alone,
  // a factor of 0 would erase the other, and every key of 9-16 bytes whose first 8 bytes equal
  // Hash's first constant would collide (a flood anyone could send).
  static uint64_t Mix(uint64_t a, uint64_t b) { return Fold(a, b) ^ a ^ b; }
  // The two halves of a*b: the last step, whose second factor is a constant's (never 0).
  static uint64_t Fold(uint64_t a, uint64_t b) {
    const __uint128_t m = static_cast<__uint128_t>(a) * b;
    return static_cast<uint64_t>(m) ^ static_cast<uint64_t>(m >> 64);
  }
  // The first min(n, 8) bytes of p, zero-padded, without reading past p + n.
  static uint64_t Head(const char* p, size_t n) {
    uint64_t v = 0;
    if (n >= 8) {
      v = Load8(p);
    } else if (n >= 4) {  // two overlapping 4-byte loads
      v = Load4(p) | (uint64_t{Load4(p + n - 4)} << ((n - 4) * 8));
    } else if (n > 0) {
      v = uint64_t{static_cast<unsigned char>(p[0])} |
          uint64_t{static_cast<unsigned char>(p[n / 2])} << (n / 2 * 8) |
          uint64_t{static_cast<unsigned char>(p[n - 1])} << ((n - 1) * 8);
    }
    return v;
  }
  static uint16_t Len16(size_t n) { return n < 0xFFFF ? static_cast<uint16_t>(n) : 0xFFFF; }

  Probe Lookup(std::string_view s, uint64_t h) const {
    const uint64_t head = Head(s.data(), s.size());
    const uint16_t len = Len16(s.size()), tag = static_cast<uint16_t>(h >> 48);
    size_t first_free = SIZE_MAX;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& e = slots_[i];
      if (e.id == kEmpty) return {kEmpty, first_free != SIZE_MAX ? first_free : i};
      if (e.id == kForgotten) {
        if (first_free == SIZE_MAX) first_free = i;
        continue;
      }
      if (e.tag == tag && e.len == len && e.head == head &&
          (s.size() <= 8 || std::string_view(views_[e.id]).substr(8) == s.substr(8)))
        return {e.id, i};
    }
  }
  uint32_t Insert(std::string_view s, uint64_t h, size_t slot);
  void Grow();
  size_t HotIndex(uint64_t h) const { return (h >> 20) & hot_mask_; }
  uint32_t InternHot(std::string_view s, uint64_t h) {
    Slot& c = hot_[HotIndex(h)];
    const uint64_t head = Head(s.data(), s.size());
    const uint16_t len = static_cast<uint16_t>(s.size());
    if (c.head == head && c.len == len && c.id != kEmpty) return c.id;
    const Probe p = Lookup(s, h);
    const uint32_t id = p.id != kEmpty ? p.id : Insert(s, h, p.slot);
    c = Slot{head, id, len, static_cast<uint16_t>(h >> 48)};
    return id;
  }

  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_used_ = 0, chunk_size_ = 0;
  std::vector<std::string_view> views_;
  // Hash() of the string; power-of-two size, at most 3/4 used (ids and forgotten slots).
  std::vector<Slot> slots_;
  size_t mask_ = 0, used_ = 0;
  // EnableHotCache: empty, or a power-of-two number of entries (id kEmpty: none).
  std::vector<Slot> hot_;
  size_t hot_mask_ = 0, hot_entries_ = 0;
};

// A value as stored: 8 bytes of payload and a type. Strings and lists are pool ids.
struct StoredValue {
  ValueType type = ValueType::kNull;
  bool b = false;
  uint32_t str = 0;  // pool id for kString (the text) and kList (the JSON array text)
  double num = 0;

  bool operator==(const StoredValue& o) const {
    if (type != o.type) return false;
    switch (type) {
      case ValueType::kNull:
        return true;
      case ValueType::kBool:
        return b == o.b;
      case ValueType::kNumber:
        return num == o.num;
      default:
        return str == o.str;
    }
  }
};
static_assert(sizeof(StoredValue) == 16);  // a profile's traits are a vector of these (TraitSlot)

// One property (or trait) of a record, unpacked: a key (pool id of the dotted path) and a value,
// in 12 bytes. The engine builds a message's properties as these, sorted by key id; the store
// keeps them packed (Props) and hands them back as these.
struct PropEntry {
  uint32_t key_type;  // key id in the low 24 bits, ValueType in the high 8
  uint32_t payload[2];

  static constexpr uint32_t kMaxKey = 0xFFFFFF;  // key ids must fit 24 bits
  static PropEntry Make(uint32_t key, const StoredValue& v) {
    PropEntry e;
    e.key_type = (key & 0xFFFFFF) | (static_cast<uint32_t>(v.type) << 24);
    uint64_t bits = 0;
    switch (v.type) {
      case ValueType::kNull:
        break;
      case ValueType::kBool:
        bits = v.b;
        break;
      case ValueType::kNumber:
        std::memcpy(&bits, &v.num, 8);
        break;
      case ValueType::kString:
      case ValueType::kList:
        bits = v.str;
        break;
    }
    std::memcpy(e.payload, &bits, 8);
    return e;
  }
  uint32_t key() const { return key_type & 0xFFFFFF; }
  ValueType type() const { return static_cast<ValueType>(key_type >> 24); }
  StoredValue value() const;
};
static_assert(sizeof(PropEntry) == 12);

// How many 4-byte words the store packs a value of this key_type's type into: a string or list
// is its pool id, a bool one word, a number its 8 bytes, a null nothing.
inline uint32_t ValueWords(uint32_t key_type) {
  // 2 bits a type: kNull 0, kBool 1, kNumber 2, kString 1, kList 1.
  return (0b01'01'10'01'00u >> ((key_type >> 24) * 2)) & 3;
}

// A record's properties as the store keeps them: the keys and types come from the record's
// shape (shared by every record of that event name with the same keys and types), only the
// values are the record's own, packed (ValueWords). Iterating gives PropEntry values sorted by
// key id, as the engine built them. Stays valid as the store grows (both arrays are chunked).
class Props {
 public:
  class Iterator {
   public:
    Iterator(const uint32_t* kt, const uint32_t* val) : kt_(kt), val_(val) {}
    PropEntry operator*() const {
      PropEntry e{*kt_, {0, 0}};
      const uint32_t w = ValueWords(*kt_);
      if (w > 0) e.payload[0] = val_[0];
      if (w > 1) e.payload[1] = val_[1];
      return e;
    }
    Iterator& operator++() {
      val_ += ValueWords(*kt_);
      ++kt_;
      return *this;
    }
    bool operator==(const Iterator& o) const { return kt_ == o.kt_; }

   private:
    const uint32_t* kt_;   // the shape's key_type words
    const uint32_t* val_;  // the record's packed values
  };

  Props() = default;
  Props(const uint32_t* key_types, const uint32_t* values, uint32_t n)
      : kt_(key_types), val_(values), n_(n) {}
  Iterator begin() const { return {kt_, val_}; }
  Iterator end() const { return {kt_ + n_, nullptr}; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

 private:
  const uint32_t* kt_ = nullptr;
  const uint32_t* val_ = nullptr;
  uint32_t n_ = 0;
};

// The most properties (or traits) one record may have: a record's keys, and its values, lie in
// one chunk of their columns (Store::props returns one view).
inline constexpr size_t kMaxProps = size_t{1} << 16;

// Append-only array split into fixed-size chunks: stable addresses, no copy on growth.
template <typename T, size_t kChunkBits = 16>
class ChunkedVector {
 public:
  // Inline: a store append makes five of these per event (the chunk's allocation is out of line).
  void push_back(const T& v) {
    if (size_ == cap_) [[unlikely]]
      AddChunk();
    last_[size_ & kMask] = v;
    ++size_;
  }
  // Appends n items inside one chunk, padding the current one's end with `pad` when they would
  // cross it; n + slack <= chunk_size(). Sets *at to the index of the first and returns where
  // the n items go, for the caller to write. The `slack` items after them are in the same chunk
  // too, so the caller may write them as well (the next append overwrites them).
  T* extend_contiguous(size_t n, const T& pad, size_t* at, size_t slack = 0) {
    if ((size_ & kMask) + n + slack > kChunk) [[unlikely]]
      while ((size_ & kMask) != 0) push_back(pad);
    if (size_ == cap_) [[unlikely]]
      AddChunk();
    *at = size_;
    T* p = last_ + (size_ & kMask);
    size_ += n;
    return p;
  }
  // Where item i is; items [i, i + n) are contiguous if they were appended together
  // (extend_contiguous). i < size().
  const T* ptr(size_t i) const { return &chunks_[i >> kChunkBits][i & kMask]; }
  static constexpr size_t chunk_size() { return kChunk; }
  const T& operator[](size_t i) const { return chunks_[i >> kChunkBits][i & kMask]; }
  T& operator[](size_t i) { return chunks_[i >> kChunkBits][i & kMask]; }
  size_t size() const { return size_; }
  size_t MemoryBytes() const { return chunks_.size() * kChunk * sizeof(T); }
  // Contiguous run starting at i, at most n long, not crossing a chunk end.
  std::span<const T> Run(size_t i, size_t n) const {
    if (n == 0) return {};
    size_t in_chunk = kChunk - (i & kMask);
    return {&chunks_[i >> kChunkBits][i & kMask], n < in_chunk ? n : in_chunk};
  }

 private:
  static constexpr size_t kChunk = size_t{1} << kChunkBits;
  static constexpr size_t kMask = kChunk - 1;
  [[gnu::noinline]] void AddChunk() {
    chunks_.push_back(std::make_unique_for_overwrite<T[]>(kChunk));  // no zero fill
    last_ = chunks_.back().get();
    cap_ += kChunk;
  }
  std::vector<std::unique_ptr<T[]>> chunks_;
  T* last_ = nullptr;  // chunks_.back()
  size_t size_ = 0;
  size_t cap_ = 0;  // chunks_.size() * kChunk: a chunk is added when size_ reaches it
};

// Record indices in 64 KiB chunks (Store::records_named).
using RecordList = ChunkedVector<uint32_t, 14>;

// Calls f(x) for each of list[lo, hi), a chunk's run at a time.
template <typename T, size_t kBits, typename F>
void ForEachIn(const ChunkedVector<T, kBits>& list, size_t lo, size_t hi, F f) {
  while (lo < hi) {
    std::span<const T> run = list.Run(lo, hi - lo);
    for (const T& x : run) f(x);
    lo += run.size();
  }
}

// kErased: a record of an erased profile, kept as a tombstone so record indices stay stable.
// kGroup: a group call (the user joins the account; its traits are the account's).
enum class RecordKind : uint8_t { kTrack, kIdentify, kErased, kGroup };

// Retained history plus the id spaces it uses.
class Store {
 public:
  // Name id of identify records (the pool string "$identify"); every other name is a track event.
  static constexpr uint32_t kIdentifyName = 0;
  // Name and profile of an erased record: ids no pool hands out, so a scan by name or by profile
  // never matches one.
  static constexpr uint32_t kErasedName = UINT32_MAX;
  static constexpr uint32_t kErasedProfile = UINT32_MAX;
  // Name of group records: an id no pool hands out, so no event name (not even "$group") matches.
  static constexpr uint32_t kGroupName = UINT32_MAX - 1;

  Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  StringPool& strings() { return strings_; }
  const StringPool& strings() const { return strings_; }
  StringPool& profiles() { return profiles_; }  // profile key (userId/anonymousId) -> dense id
  const StringPool& profiles() const { return profiles_; }
  // Property and trait paths ("address.city"). Separate from strings() so that key ids stay
  // small: a PropEntry has 24 bits for the key.
  StringPool& keys() { return keys_; }
  const StringPool& keys() const { return keys_; }
  // Account key (groupId) -> dense account id: accounts have their own id space.
  StringPool& accounts() { return accounts_; }
  const StringPool& accounts() const { return accounts_; }

  // Appends a record; `props` must be sorted by key id with no duplicate keys. Returns its index.
  uint32_t Append(uint32_t profile, uint32_t name, Millis ts, std::span<const PropEntry> props);

  // Appends a group record: `profile` joins `account`, `props` are the account's traits (sorted
  // as for Append). Returns its index.
  uint32_t AppendGroup(uint32_t profile, uint32_t account, Millis ts,
                       std::span<const PropEntry> props);
  // The account of group record i (kind(i) == kGroup, or a tombstone that was one).
  uint32_t account(size_t i) const;

  // Attributes track record `idx` (just appended) to `account` as well as to its profile: a
  // track/page/screen call with context.groupId is also an event of that account.
  void SetEventAccount(uint32_t idx, uint32_t account) { event_account_.push_back({idx, account}); }
  // The account track record i was sent for (context.groupId), or UINT32_MAX. A tombstone keeps
  // the attribution of the record it was; its kind() tells that it no longer counts.
  uint32_t event_account(size_t i) const;
  // Every (record index, account) attribution, in index order.
  std::span<const std::pair<uint32_t, uint32_t>> event_accounts() const { return event_account_; }

  size_t size() const { return ts_.size(); }
  uint32_t profile(size_t i) const { return profile_[i]; }
  uint32_t name(size_t i) const {
    const uint32_t s = shape_[i];
    return s == kOwnKeysShape ? values_[values_at_[i]] : shapes_[s].name;
  }
  RecordKind kind(size_t i) const {
    const uint32_t n = name(i);
    return n == kIdentifyName ? RecordKind::kIdentify
           : n == kErasedName ? RecordKind::kErased
           : n == kGroupName  ? RecordKind::kGroup
                              : RecordKind::kTrack;
  }
  Millis ts(size_t i) const {
    const int32_t off = ts_[i];
    if (off <= kTsZero) [[unlikely]]
      return off == kTsZero ? 0 : FarTs(i);
    return ts_base_[i >> kTsChunkBits] + off;
  }
  Props props(size_t i) const {
    if (shape_[i] == kOwnKeysShape) [[unlikely]] {  // name, count, key_types, values
      const uint32_t* p = values_.ptr(values_at_[i]);
      return Props(p + 2, p + 2 + p[1], p[1]);
    }
    const Shape& s = shapes_[shape_[i]];
    const uint32_t* v = s.words == 1  ? values_at_.ptr(i)
                        : s.words > 1 ? values_.ptr(values_at_[i])
                                      : nullptr;
    return Props(s.kt, v, s.count);
  }
  // The value of property `key` of record i, or nullopt if absent.
  std::optional<StoredValue> Find(size_t i, uint32_t key) const;
  // Distinct record shapes (event name, keys and types) so far, the erased records' and the
  // records' with their own keys (kMaxShapesPerName) included.
  size_t shapes() const { return shapes_.size(); }
  // Shapes an event name may add; its records of any further key set keep their own keys.
  static constexpr uint32_t kMaxShapesPerName = 256;
  // The indices of the records appended with this name, ascending: building a series reads
  // these instead of scanning the whole name column. Includes records erased since (their
  // profile() is kErasedProfile).
  const RecordList& records_named(uint32_t name) const {
    static const RecordList kNone;
    return name < by_name_.size() ? by_name_[name] : kNone;
  }

  // Erases a profile's history: each of its records becomes a tombstone (profile kErasedProfile,
  // name kErasedName, time 0, no properties), the profile id is marked erased, and its key is
  // forgotten, so a later message with the same key interns a new id. Tombstones keep record
  // indices stable (series and identify lists hold them) at the cost of their columns' bytes.
  // Strings the records interned stay in strings(): they may be shared with other records.
  // A survivor of merges is erased with every id merged into it (their records and keys too).
  // O(records): one scan of the profile column. Returns the number of records erased.
  size_t EraseProfile(uint32_t profile);
  bool erased(uint32_t profile) const { return profile < erased_.size() && erased_[profile]; }
  // Records and profile ids that are not erased.
  size_t live_records() const { return size() - erased_records_; }
  // Profile ids that are neither erased nor merged into another.
  size_t live_profiles() const { return profiles_.size() - erased_profiles_ - merged_profiles_; }

  // --- Identity merges (docs/language.md, "Identity") --------------------------------------------
  // Records keep the dense id they were appended with; a merge only records that `from` now
  // belongs to `into`, so whoever reads a record's profile resolves it: backfill, Estimate and
  // the reference group records by Resolve(profile(i)). The table is kept fully compressed (every
  // merged id points at its survivor, never at another merged id), so Resolve is one load.

  // The survivor id a profile id belongs to: itself unless it was merged.
  uint32_t Resolve(uint32_t profile) const {
    return profile < survivor_.size() ? survivor_[profile] : profile;
  }
  bool merged(uint32_t profile) const { return Resolve(profile) != profile; }
  // Merges profile `from` (and every id merged into it) into `into`. Both must be survivors
  // (Resolve(x) == x), distinct and not erased. Costs the number of ids merged into `from`.
  void Merge(uint32_t from, uint32_t into);
  // The ids merged into survivor `profile` (not itself), in merge order; empty when none.
  std::span<const uint32_t> merged_ids(uint32_t profile) const {
    auto it = merged_ids_.find(profile);
    if (it == merged_ids_.end()) return {};
    return it->second;
  }

  size_t MemoryBytes() const;

 private:
  StringPool strings_;
  StringPool profiles_;
  StringPool keys_;
  // A record's shape: its name and the key_type words (PropEntry) of its properties, sorted.
  // Records of one event name nearly always share their keys and types (a Page Viewed has a
  // path, a Product Viewed a product_id, a category and a price), so a record stores a shape id
  // and its packed values instead of 12 bytes a property. With the record index (by_name_), a
  // page view takes 24 bytes instead of 36, a product view 40 instead of 60 (docs/benchmarks.md,
  // round 8).
  struct Shape {
    uint32_t name;
    uint32_t count;      // properties
    uint32_t words;      // ValueWords of them all
    const uint32_t* kt;  // its key_types, in shape_kt_
  };
  static constexpr uint32_t kErasedShape = 0;  // name kErasedName, no properties
  // A record that keeps its own name and keys in the value column, before its values: the
  // shapes of an event name past its first kMaxShapesPerName. A name whose properties are keyed
  // by ids ({"scores.p123": 5}) would otherwise add a shape, and its index entry, for nearly
  // every record, more than the 12 bytes a property it saves.
  static constexpr uint32_t kOwnKeysShape = 1;
  // The id of the shape (name, props' keys and types), added if new; kOwnKeysShape once the name
  // has kMaxShapesPerName.
  uint32_t ShapeOf(uint32_t name, std::span<const PropEntry> props);
  [[gnu::noinline]] uint32_t FindOrAddShape(uint32_t name, std::span<const PropEntry> props);
  // The words record i holds in values_ (or, when 1, in values_at_).
  uint32_t RecordWords(size_t i) const;

  // A record's time in 4 bytes: milliseconds after its chunk's base (the time of the chunk's first
  // record), which covers times up to 24.8 days either side of it. A time farther off (a very
  // late event, a wrong device clock) is kTsFar with the time in ts_far_; an erased record's
  // is kTsZero. 8 bytes a record fewer than a Millis column: 80 MB of fresh pages at full size.
  static constexpr size_t kTsChunkBits = 16;
  static constexpr int32_t kTsFar = INT32_MIN, kTsZero = INT32_MIN + 1;
  // ts_'s word for record i at time ts (kTsFar: the caller puts it in ts_far_).
  int32_t EncodeTs(size_t i, Millis ts) const;
  [[gnu::noinline]] Millis FarTs(size_t i) const { return ts_far_.at(static_cast<uint32_t>(i)); }
  ChunkedVector<int32_t, kTsChunkBits> ts_;
  std::vector<Millis> ts_base_;  // by chunk of ts_
  absl::flat_hash_map<uint32_t, Millis> ts_far_;
  ChunkedVector<uint32_t> profile_;
  ChunkedVector<uint32_t> shape_;
  // Index in values_ of the record's first value word; or, when the record has exactly one (a
  // page view's path, a login's method: most records here), that word itself.
  ChunkedVector<uint32_t> values_at_;
  // Packed values (ValueWords); a record's lie in one chunk (2 words for each of kMaxProps, and
  // two of slack).
  ChunkedVector<uint32_t, 18> values_;
  std::vector<Shape> shapes_;
  ChunkedVector<uint32_t, 16> shape_kt_;  // a shape's key_types lie in one chunk
  // (name, key_types...) as bytes -> shape id; and the last shape id seen for a (name, count),
  // checked before the map: an event name's records nearly always have one shape, and a name
  // with optional properties has one for each count.
  absl::flat_hash_map<std::string, uint32_t> shape_index_;
  absl::flat_hash_map<uint32_t, uint32_t> shapes_of_name_;  // name -> shapes it has
  uint32_t recent_shape_[512] = {};
  static size_t Recent(uint32_t name, size_t count) { return (name * 8 + count) & 511; }
  // Name id -> record indices (records_named). Chunked: a list that grows is never copied (as
  // std::vector's doubling did, a copy and fresh pages for every name's list at full size).
  std::vector<RecordList> by_name_;
  StringPool accounts_;
  // (record index, account) of every group record, in index order: group calls are rare next to
  // events, so a side table costs less than an account column on every record.
  std::vector<std::pair<uint32_t, uint32_t>> group_account_;
  // (record index, account) of every track record with a context.groupId, in index order: a side
  // table for the same reason (SetEventAccount).
  std::vector<std::pair<uint32_t, uint32_t>> event_account_;
  std::vector<bool> erased_;  // by profile id
  size_t erased_records_ = 0, erased_profiles_ = 0;
  // Identity merges: survivor_[id] is the survivor of id (id itself when not merged); ids past
  // its end are survivors. merged_ids_: survivor -> the ids merged into it.
  std::vector<uint32_t> survivor_;
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> merged_ids_;
  size_t merged_profiles_ = 0;
};

}  // namespace shoal::store
