#include "engine/series.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

namespace shoal::engine {

Series::Series(uint32_t name, std::optional<rules::PropExpr> filter,
               std::optional<uint32_t> value_key, store::Store* store)
    : name_(name), value_key_(value_key) {
  if (filter) filter_ = std::make_unique<CompiledFilter>(*filter, store);
}

double Series::ValueOf(std::span<const store::PropEntry> props) const {
  if (value_key_) {
    for (const store::PropEntry& p : props) {
      if (p.key() == *value_key_) {
        store::StoredValue v = p.value();
        if (v.type == ValueType::kNumber) return v.num;
        break;
      }
      if (p.key() > *value_key_) break;
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

Series::~Series() {
  for (Head& h : head_)
    if (h.cap & kOwned) std::free(h.data);
}

void Series::Grow(Head* h) {
  const uint32_t cap = Cap(*h);
  const uint32_t next = cap < 2 ? 2 : cap * 2;
  Entry* d = static_cast<Entry*>(std::malloc(size_t{next} * sizeof(Entry)));
  if (!d) throw std::bad_alloc();
  if (h->size) std::memcpy(d, h->data, size_t{h->size} * sizeof(Entry));
  if (h->cap & kOwned) std::free(h->data);
  owned_entries_ += next - ((h->cap & kOwned) ? cap : 0);
  h->data = d;
  h->cap = next | kOwned;
}

void Series::Add(uint32_t profile, Millis ts, uint32_t idx, double value) {
  if (profile >= head_.size()) head_.resize(std::max<size_t>(profile + 1, head_.size() * 2));
  Head& h = head_[profile];
  if (h.size == Cap(h)) Grow(&h);
  const Entry e{ts, idx, value};
  Entry* end = h.data + h.size;
  if (h.size == 0 || !(e < end[-1])) {
    *end = e;
  } else {
    Entry* pos = std::upper_bound(h.data, end, e);
    std::memmove(pos + 1, pos, static_cast<size_t>(end - pos) * sizeof(Entry));
    *pos = e;
  }
  ++h.size;
}

void Series::Build(std::span<const uint32_t> records, const store::Store& store,
                   std::vector<uint32_t>* count) {
  const size_t profiles = store.profiles().size();
  // Erased records keep their index in `records` but lose their profile.
  auto match = [&](uint32_t idx, uint32_t pid) {
    return pid != store::Store::kErasedProfile && (!filter_ || Matches(store.props(idx), store));
  };
  const bool value = has_value();
  if (block_entries_ + owned_entries_ != 0) {  // not a new series: no slices to lay out
    for (uint32_t idx : records) {
      const uint32_t pid = store.profile(idx);
      if (match(idx, pid)) Add(pid, store.ts(idx), idx, value ? ValueOf(store.props(idx)) : 0);
    }
    return;
  }
  count->assign(profiles, 0);
  size_t total = 0;
  for (uint32_t idx : records) {
    const uint32_t pid = store.profile(idx);
    if (match(idx, pid)) ++(*count)[pid], ++total;
  }
  if (total == 0) return;
  if (head_.size() < profiles) head_.resize(profiles);
  auto block = std::make_unique_for_overwrite<Entry[]>(total);
  Entry* const base = block.get();
  // count[p] becomes the cursor: where profile p's next entry goes. The fill below is a scatter
  // into one slice per profile; perf showed it waiting on loads (the header, the slice's last
  // entry for an order check), so it loads nothing but the 4-byte cursor, a table that stays in
  // cache, and only stores into the block. The order check is a sequential pass afterwards.
  uint32_t at = 0;
  for (uint32_t p = 0; p < profiles; ++p) {
    const uint32_t c = (*count)[p];
    if (!c) continue;
    head_[p] = Head{base + at, c, c};
    (*count)[p] = at;
    at += c;
  }
  // A timeline is a subsequence of the records in index order, so when their timestamps never
  // go back (time-ordered input: no late event), every timeline is sorted by (ts, idx).
  bool ts_ordered = true;
  Millis last_ts = kMinTime;
  for (uint32_t idx : records) {
    const uint32_t pid = store.profile(idx);
    if (!match(idx, pid)) continue;
    const Millis ts = store.ts(idx);
    ts_ordered &= ts >= last_ts;
    last_ts = ts;
    base[(*count)[pid]++] = Entry{ts, idx, value ? ValueOf(store.props(idx)) : 0};
  }
  // Otherwise a timeline is out of (ts, idx) order only after a late event: sort only those.
  for (uint32_t p = 0; p < profiles && !ts_ordered; ++p) {
    Head& h = head_[p];
    if (h.size > 1 && !std::is_sorted(h.data, h.data + h.size)) std::sort(h.data, h.data + h.size);
  }
  blocks_.push_back(std::move(block));
  block_entries_ += total;
}

void Series::Erase(uint32_t profile) {
  if (profile >= head_.size()) return;
  Head& h = head_[profile];
  if (h.cap & kOwned) {
    std::free(h.data);
    owned_entries_ -= Cap(h);
  }
  h = Head{};
}

size_t Series::MemoryBytes() const {
  return head_.capacity() * sizeof(Head) + (block_entries_ + owned_entries_) * sizeof(Entry);
}

Window::Window(const rules::TimeRange& r) : from_kind_(r.from.kind), to_kind_(r.to.kind) {
  a_ = r.from.ms;
  b_ = r.to.ms;
}

std::pair<size_t, size_t> Window::Range(const Timeline& tl, Millis t) const {
  Millis lo_ts = Lo(t), hi_ts = Hi(t);
  auto by_ts = [](const Entry& e, Millis x) { return e.ts < x; };
  size_t lo =
      lo_ts == kMinTime ? 0 : std::lower_bound(tl.begin(), tl.end(), lo_ts, by_ts) - tl.begin();
  size_t hi = std::lower_bound(tl.begin() + lo, tl.end(), hi_ts, by_ts) - tl.begin();
  if (hi < lo) hi = lo;
  return {lo, hi};
}

Millis Window::NextBoundary(const Timeline& tl, size_t lo, size_t hi) const {
  Millis next = kMaxTime;
  if (lo < hi) next = std::min(next, LeaveAt(tl[lo].ts));
  // The first entry not yet in that will ever enter (entries at or after hi are ts-sorted, so
  // the first one that can enter is the earliest).
  for (size_t j = hi; j < tl.size(); ++j) {
    Millis e = EnterAt(tl[j].ts);
    if (e != kMaxTime) {
      next = std::min(next, e);
      break;
    }
    if (to_kind_ == rules::TimeBound::Kind::kAbsolute) break;  // later ones are past the end too
  }
  return next;
}

}  // namespace shoal::engine
