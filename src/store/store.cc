#include "store/store.h"

#include <algorithm>

namespace shoal::store {

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
}

void StringPool::Forget(uint32_t id) {
  std::string_view v = views_[id];
  Probe p = Lookup(v, Hash(v));
  if (p.id == id) slots_[p.slot].id = kForgotten;
  // The bytes belong to this id alone (Intern copies every new string), so they can be wiped.
  if (!v.empty()) std::memset(const_cast<char*>(v.data()), 0, v.size());
  views_[id] = {};
}

size_t StringPool::MemoryBytes() const {
  return chunks_.size() * (size_t{1} << 20) + views_.capacity() * sizeof(std::string_view) +
         slots_.capacity() * sizeof(Slot);
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

Store::Store() { strings_.Intern("$identify"); }

uint32_t Store::Append(uint32_t profile, uint32_t name, Millis ts,
                       std::span<const PropEntry> props) {
  // Keep a record's properties inside one chunk so props() can return one span: pad to the
  // chunk end with entries that props() trims off the previous record's range.
  constexpr size_t kChunk = kMaxProps;  // the property column's chunk (static_assert in store.h)
  if (!props.empty() && (props_.size() % kChunk) + props.size() > kChunk) {
    PropEntry pad{PropEntry::kPad, {0, 0}};
    while (props_.size() % kChunk != 0) props_.push_back(pad);
  }
  uint32_t idx = static_cast<uint32_t>(ts_.size());
  ts_.push_back(ts);
  profile_.push_back(profile);
  name_.push_back(name);
  props_begin_.push_back(static_cast<uint32_t>(props_.size()));
  if (props.size() <= kChunk) {
    props_.append_in_chunk(props.data(), props.size());  // the padding above made room
  } else {  // the engine refuses such a message (kMaxProps); kept whole here all the same
    for (const PropEntry& p : props) props_.push_back(p);
  }
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
  for (const PropEntry& p : props(i)) {
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
  const PropEntry pad{PropEntry::kPad, {0, 0}};
  for (size_t i = 0; i < size(); ++i) {
    const uint32_t p = profile_[i];
    if (p == kErasedProfile || !std::binary_search(ids.begin(), ids.end(), p)) continue;
    // Overwrite the properties in place: props() trims trailing pads, so the record reads empty.
    uint32_t b = props_begin_[i];
    uint32_t e = i + 1 < size() ? props_begin_[i + 1] : static_cast<uint32_t>(props_.size());
    for (uint32_t k = b; k < e; ++k) props_[k] = pad;
    profile_[i] = kErasedProfile;
    name_[i] = kErasedName;
    ts_[i] = 0;
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
         profile_.MemoryBytes() + name_.MemoryBytes() + props_begin_.MemoryBytes() +
         props_.MemoryBytes() + by_name_bytes + survivor_.capacity() * 4;
}

}  // namespace shoal::store
