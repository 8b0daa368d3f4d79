// The engine's retained history: every accepted identify and track call, in arrival order, with
// strings interned. This is the source of truth from which segment state is (re)built: backfill
// for a new segment and the reference evaluator both read it. Columnar and chunked so that a scan
// by event name touches 4 bytes per record and growth never copies the whole log.
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
    const Probe p = Lookup(s, h);
    if (p.id != kEmpty) return p.id;
    return Insert(s, h, p.slot);
  }
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

  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_used_ = 0, chunk_size_ = 0;
  std::vector<std::string_view> views_;
  // Hash() of the string; power-of-two size, at most 3/4 used (ids and forgotten slots).
  std::vector<Slot> slots_;
  size_t mask_ = 0, used_ = 0;
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

// One property (or trait) of a record: a key (pool id of the dotted path) and a value, packed in
// 12 bytes. A record's properties are sorted by key id.
struct PropEntry {
  uint32_t key_type;  // key id in the low 24 bits, ValueType in the high 8
  uint32_t payload[2];

  static constexpr uint32_t kPad = 0xFFFFFFFF;   // filler at a chunk end, never a real entry
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
  StoredValue value() const;
};
static_assert(sizeof(PropEntry) == 12);

// The most properties (or traits) one record may have: a record's properties lie in one chunk of
// the property column (Store::props returns one span).
inline constexpr size_t kMaxProps = size_t{1} << 16;

// Append-only array split into fixed-size chunks: stable addresses, no copy on growth.
template <typename T, size_t kChunkBits = 16>
class ChunkedVector {
 public:
  // Inline: a store append makes five of these per event (the chunk's allocation is out of line).
  void push_back(const T& v) {
    if ((size_ & kMask) == 0) [[unlikely]]
      AddChunk();
    last_[size_ & kMask] = v;
    ++size_;
  }
  // Appends n items that fit in the current chunk (n <= kChunk - size() % kChunk, or a new chunk
  // starts them): one copy instead of n push_backs.
  void append_in_chunk(const T* v, size_t n) {
    if (n == 0) return;
    if ((size_ & kMask) == 0) [[unlikely]]
      AddChunk();
    std::memcpy(last_ + (size_ & kMask), v, n * sizeof(T));
    size_ += n;
  }
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
  }
  std::vector<std::unique_ptr<T[]>> chunks_;
  T* last_ = nullptr;  // chunks_.back()
  size_t size_ = 0;
};

static_assert(ChunkedVector<PropEntry>::chunk_size() == kMaxProps,
              "a record's properties must fit one chunk of the property column");

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
  uint32_t name(size_t i) const { return name_[i]; }
  RecordKind kind(size_t i) const {
    return name_[i] == kIdentifyName ? RecordKind::kIdentify
           : name_[i] == kErasedName ? RecordKind::kErased
           : name_[i] == kGroupName  ? RecordKind::kGroup
                                     : RecordKind::kTrack;
  }
  Millis ts(size_t i) const { return ts_[i]; }
  std::span<const PropEntry> props(size_t i) const {
    uint32_t b = props_begin_[i];
    uint32_t e = i + 1 < size() ? props_begin_[i + 1] : static_cast<uint32_t>(props_.size());
    std::span<const PropEntry> s = props_.Run(b, e - b);
    while (!s.empty() && s.back().key_type == PropEntry::kPad) s = s.first(s.size() - 1);
    return s;
  }
  // The value of property `key` of record i, or nullopt if absent.
  std::optional<StoredValue> Find(size_t i, uint32_t key) const;
  // The name column, for scans by event name.
  const ChunkedVector<uint32_t>& names() const { return name_; }
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
  ChunkedVector<Millis> ts_;
  ChunkedVector<uint32_t> profile_;
  ChunkedVector<uint32_t> name_;
  ChunkedVector<uint32_t> props_begin_;
  // A record's props never cross a chunk boundary (see Append).
  ChunkedVector<PropEntry> props_;
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
