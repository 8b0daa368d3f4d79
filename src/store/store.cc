#include "store/store.h"

#include <algorithm>
#include <cstring>

namespace shoal::store {
namespace {

// The words a record of kOwnKeysShape takes in the value column: its name and key count, its
// key_types, then its values.
template <typename PropRange>
uint32_t OwnKeysWords(const PropRange& props) {
  uint32_t words = 2 + static_cast<uint32_t>(props.size());
  for (const PropEntry p : props) words += ValueWords(p.key_type);
  return words;
}

}  // namespace

uint32_t StringPool::Insert(std::string_view s, uint64_t h, size_t slot) {
  if ((used_ + 1) * 4 > slots_.size() * 3) {
    Grow();
    slot = Lookup(s, h).slot;
  }
  if (chunk_used_ + s.size() > chunk_size_) {
    chunk_size_ = std::max<size_t>(size_t{1} << 20, s.size());
    chunks_.push_back(std::make_unique_for_overwrite<char[]>(chunk_size_));
    chunk_used_ = 0;
  }
  char* dst = chunks_.back().get() + chunk_used_;
  if (!s.empty()) std::memcpy(dst, s.data(), s.size());
  chunk_used_ += s.size();
  uint32_t id = static_cast<uint32_t>(views_.size());
  views_.push_back(std::string_view(dst, s.size()));
  Slot& e = slots_[slot];
  if (e.id == kEmpty) ++used_;  // reusing a forgotten slot does not add to the load
  e = Slot{Head(s.data(), s.size()), id, Len16(s.size()), static_cast<uint16_t>(h >> 48)};
  return id;
}

// Doubles the table and drops forgotten slots.
void StringPool::Grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.size() * 2, Slot{0, kEmpty, 0, 0});
  mask_ = slots_.size() - 1;
  used_ = 0;
  for (const Slot& e : old) {
    if (e.id == kEmpty || e.id == kForgotten) continue;
    std::string_view v = views_[e.id];
    size_t i = Hash(v) & mask_;
    while (slots_[i].id != kEmpty) i = (i + 1) & mask_;
    slots_[i] = e;
    ++used_;
  }
  if (hot_entries_ != 0 && hot_.empty() && slots_.size() >= 4 * hot_entries_) {
    hot_.assign(hot_entries_, Slot{0, kEmpty, 0, 0});
    hot_mask_ = hot_entries_ - 1;
  }
}

void StringPool::Forget(uint32_t id) {
  std::string_view v = views_[id];
  const uint64_t h = Hash(v);
  Probe p = Lookup(v, h);
  if (p.id == id) slots_[p.slot].id = kForgotten;
  if (!hot_.empty() && v.size() <= 8) {
    Slot& c = hot_[HotIndex(h)];
    if (c.id == id) c.id = kEmpty;
  }
  // The bytes belong to this id alone (Intern copies every new string), so they can be wiped.
  if (!v.empty()) std::memset(const_cast<char*>(v.data()), 0, v.size());
  views_[id] = {};
}

size_t StringPool::MemoryBytes() const {
  return chunks_.size() * (size_t{1} << 20) + views_.capacity() * sizeof(std::string_view) +
         (slots_.capacity() + hot_.capacity()) * sizeof(Slot);
}

StoredValue PropEntry::value() const {
  StoredValue v;
  v.type = static_cast<ValueType>(key_type >> 24);
  uint64_t bits;
  std::memcpy(&bits, payload, 8);
  switch (v.type) {
    case ValueType::kNull:
      break;
    case ValueType::kBool:
      v.b = bits != 0;
      break;
    case ValueType::kNumber:
      std::memcpy(&v.num, &bits, 8);
      break;
    case ValueType::kString:
    case ValueType::kList:
      v.str = static_cast<uint32_t>(bits);
      break;
  }
  return v;
}

Store::Store() {
  strings_.EnableHotCache(size_t{1} << 16);
  strings_.Intern("$identify");
  shapes_.push_back(Shape{kErasedName, 0, 0, nullptr});  // kErasedShape
  shapes_.push_back(Shape{kErasedName, 0, 0, nullptr});  // kOwnKeysShape (never matched)
}

inline uint32_t Store::ShapeOf(uint32_t name, std::span<const PropEntry> props) {
  const uint32_t id = recent_shape_[Recent(name, props.size())];
  const Shape& s = shapes_[id];
  if (s.name == name && s.count == props.size()) [[likely]] {
    size_t k = 0;
    while (k < props.size() && s.kt[k] == props[k].key_type) ++k;
    if (k == props.size()) return id;
  }
  return FindOrAddShape(name, props);
}

uint32_t Store::FindOrAddShape(uint32_t name, std::span<const PropEntry> props) {
  std::string key(4 * (1 + props.size()), '\0');
  std::memcpy(key.data(), &name, 4);
  for (size_t k = 0; k < props.size(); ++k) std::memcpy(key.data() + 4 * (k + 1), &props[k], 4);
  auto it = shape_index_.find(key);
  if (it == shape_index_.end()) {
    uint32_t& count = shapes_of_name_[name];
    if (count >= kMaxShapesPerName) return kOwnKeysShape;
    ++count;
    it = shape_index_.emplace(std::move(key), static_cast<uint32_t>(shapes_.size())).first;
    size_t first = 0;
    uint32_t* kt = shape_kt_.extend_contiguous(props.size(), 0, &first);
    Shape s{name, static_cast<uint32_t>(props.size()), 0, kt};
    for (size_t k = 0; k < props.size(); ++k) {
      kt[k] = props[k].key_type;
      s.words += ValueWords(kt[k]);
    }
    shapes_.push_back(s);
  }
  recent_shape_[Recent(name, props.size())] = it->second;
  return it->second;
}

uint32_t Store::RecordWords(size_t i) const {
  if (shape_[i] != kOwnKeysShape) return shapes_[shape_[i]].words;
  return OwnKeysWords(props(i));
}

inline int32_t Store::EncodeTs(size_t i, Millis ts) const {
  const Millis off = ts - ts_base_[i >> kTsChunkBits];
  if (off > kTsZero && off <= INT32_MAX && ts != 0) [[likely]]
    return static_cast<int32_t>(off);
  return ts == 0 ? kTsZero : kTsFar;
}

uint32_t Store::Append(uint32_t profile, uint32_t name, Millis ts,
                       std::span<const PropEntry> props) {
  // The engine refuses a message with more (kMaxProps); a record keeps at most that many.
  if (props.size() > kMaxProps) [[unlikely]]
    props = props.first(kMaxProps);
  const uint32_t shape = ShapeOf(name, props);
  // Each property writes both payload words and moves on by its own (0-2): no branch per type.
  // The last may write up to two words past the record (zeros: the high word of a string, bool or
  // list, or a null's), into slack that the next append overwrites.
  // A record of one value word (a page view's path, a login's method) keeps it in values_at_.
  uint32_t words = shapes_[shape].words;
  uint32_t one[4];  // that word, and the slack its writes reach
  size_t at = 0;
  uint32_t* v;
  if (shape == kOwnKeysShape) [[unlikely]] {  // name, count, key_types, then the values
    words = OwnKeysWords(props);
    v = values_.extend_contiguous(words, 0, &at, 2);
    *v++ = name;
    *v++ = static_cast<uint32_t>(props.size());
    for (const PropEntry& p : props) *v++ = p.key_type;
  } else {
    v = words == 1 ? one : values_.extend_contiguous(words, 0, &at, 2);
  }
  for (const PropEntry& p : props) {
    v[0] = p.payload[0];
    v[1] = p.payload[1];
    v += ValueWords(p.key_type);
  }
  uint32_t idx = static_cast<uint32_t>(ts_.size());
  if ((idx & ((1u << kTsChunkBits) - 1)) == 0) [[unlikely]]
    ts_base_.push_back(ts);
  const int32_t enc = EncodeTs(idx, ts);
  ts_.push_back(enc);
  if (enc == kTsFar) [[unlikely]]
    ts_far_[idx] = ts;
  profile_.push_back(profile);
  shape_.push_back(shape);
  values_at_.push_back(words == 1 ? one[0] : static_cast<uint32_t>(at));
  if (name != kGroupName) {  // group records are found through group_account_
    if (by_name_.size() <= name) by_name_.resize(name + 1);
    by_name_[name].push_back(idx);
  }
  return idx;
}

uint32_t Store::AppendGroup(uint32_t profile, uint32_t account, Millis ts,
                            std::span<const PropEntry> props) {
  uint32_t idx = Append(profile, kGroupName, ts, props);
  group_account_.push_back({idx, account});
  return idx;
}

uint32_t Store::account(size_t i) const {
  auto it = std::lower_bound(group_account_.begin(), group_account_.end(),
                             std::pair<uint32_t, uint32_t>{static_cast<uint32_t>(i), 0});
  return it != group_account_.end() && it->first == i ? it->second : UINT32_MAX;
}

uint32_t Store::event_account(size_t i) const {
  auto it = std::lower_bound(event_account_.begin(), event_account_.end(),
                             std::pair<uint32_t, uint32_t>{static_cast<uint32_t>(i), 0});
  return it != event_account_.end() && it->first == i ? it->second : UINT32_MAX;
}

std::optional<StoredValue> Store::Find(size_t i, uint32_t key) const {
  for (const PropEntry p : props(i)) {
    if (p.key() == key) return p.value();
    if (p.key() > key) break;
  }
  return std::nullopt;
}

void Store::Merge(uint32_t from, uint32_t into) {
  const uint32_t top = std::max(from, into);
  if (survivor_.size() <= top) {
    const size_t old = survivor_.size();
    survivor_.resize(std::max<size_t>(top + 1, profiles_.size()));
    for (size_t i = old; i < survivor_.size(); ++i) survivor_[i] = static_cast<uint32_t>(i);
  }
  std::vector<uint32_t>& into_ids = merged_ids_[into];
  auto it = merged_ids_.find(from);
  if (it != merged_ids_.end()) {
    for (uint32_t id : it->second) {
      survivor_[id] = into;
      into_ids.push_back(id);
    }
    merged_ids_.erase(it);
  }
  survivor_[from] = into;
  into_ids.push_back(from);
  ++merged_profiles_;
}

size_t Store::EraseProfile(uint32_t profile) {
  if (erased(profile) || profile >= profiles_.size()) return 0;
  profile = Resolve(profile);
  // The survivor and every id merged into it: a set small enough to search linearly.
  std::vector<uint32_t> ids = {profile};
  auto merged = merged_ids_.find(profile);
  if (merged != merged_ids_.end()) {
    ids.insert(ids.end(), merged->second.begin(), merged->second.end());
    merged_ids_.erase(merged);
  }
  std::sort(ids.begin(), ids.end());
  size_t n = 0;
  for (size_t i = 0; i < size(); ++i) {
    const uint32_t p = profile_[i];
    if (p == kErasedProfile || !std::binary_search(ids.begin(), ids.end(), p)) continue;
    // Overwrite the values in place; the erased shape has no properties.
    const uint32_t words = RecordWords(i);
    if (words == 1) {
      values_at_[i] = 0;
    } else {
      for (uint32_t k = 0; k < words; ++k) values_[values_at_[i] + k] = 0;
    }
    profile_[i] = kErasedProfile;
    shape_[i] = kErasedShape;
    ts_far_.erase(static_cast<uint32_t>(i));
    ts_[i] = kTsZero;
    ++n;
  }
  if (erased_.size() <= ids.back()) erased_.resize(ids.back() + 1, false);
  for (uint32_t id : ids) {
    erased_[id] = true;
    ++erased_profiles_;
    if (id != profile) {
      --merged_profiles_;  // counted once, as erased
      survivor_[id] = id;  // an erased id resolves to itself, like any unknown one
    }
    profiles_.Forget(id);
  }
  erased_records_ += n;
  return n;
}

size_t Store::MemoryBytes() const {
  size_t by_name_bytes = by_name_.capacity() * sizeof(RecordList);
  for (const RecordList& v : by_name_) by_name_bytes += v.MemoryBytes();
  by_name_bytes += event_account_.capacity() * 8;  // with the event attributions (side table)
  return strings_.MemoryBytes() + profiles_.MemoryBytes() + keys_.MemoryBytes() +
         accounts_.MemoryBytes() + group_account_.capacity() * 8 + ts_.MemoryBytes() +
         ts_base_.capacity() * 8 + ts_far_.capacity() * 24 + profile_.MemoryBytes() +
         shape_.MemoryBytes() + values_at_.MemoryBytes() + values_.MemoryBytes() +
         shapes_.capacity() * sizeof(Shape) + shape_kt_.MemoryBytes() +
         shape_index_.capacity() * (sizeof(std::string) + 8) + by_name_bytes +
         survivor_.capacity() * 4;
}

}  // namespace shoal::store
