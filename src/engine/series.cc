#include "engine/series.h"

#include <limits>

namespace shoal::engine {

const Timeline Series::kEmpty;

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

Timeline& Series::Slot(uint32_t profile) {
  if (profile >= slot_.size()) slot_.resize(std::max<size_t>(profile + 1, slot_.size() * 2), 0);
  if (!slot_[profile]) {
    timelines_.emplace_back();
    slot_[profile] = static_cast<uint32_t>(timelines_.size());
  }
  return timelines_[slot_[profile] - 1];
}

void Series::Add(uint32_t profile, Millis ts, uint32_t idx, double value) {
  Timeline& tl = Slot(profile);
  Entry e{ts, idx, value};
  if (tl.empty() || !(e < tl.back())) {
    tl.push_back(e);
  } else {
    tl.insert(std::upper_bound(tl.begin(), tl.end(), e), e);
  }
}

void Series::Build(std::span<const uint32_t> records, const store::Store& store,
                   std::vector<uint32_t>* count) {
  const size_t profiles = store.profiles().size();
  // Erased records keep their index in `records` but lose their profile.
  auto match = [&](uint32_t idx, uint32_t pid) {
    return pid != store::Store::kErasedProfile && (!filter_ || Matches(store.props(idx), store));
  };
  count->assign(profiles, 0);
  for (uint32_t idx : records) {
    const uint32_t pid = store.profile(idx);
    if (match(idx, pid)) ++(*count)[pid];
  }
  size_t with = 0;
  for (uint32_t c : *count) with += c != 0;
  timelines_.reserve(timelines_.size() + with);
  if (slot_.size() < profiles) slot_.resize(profiles, 0);
  for (uint32_t p = 0; p < profiles; ++p)
    if ((*count)[p]) Slot(p).reserve((*count)[p]);
  // Records come in arrival order, so a timeline is out of (ts, idx) order only after a late
  // event; such profiles are marked (count = 0) and sorted at the end.
  const bool value = has_value();
  for (uint32_t idx : records) {
    const uint32_t pid = store.profile(idx);
    if (!match(idx, pid)) continue;
    Timeline& tl = timelines_[slot_[pid] - 1];
    Entry e{store.ts(idx), idx, value ? ValueOf(store.props(idx)) : 0};
    if (!tl.empty() && e < tl.back()) (*count)[pid] = 0;
    tl.push_back(e);
  }
  for (uint32_t p = 0; p < profiles; ++p) {
    if ((*count)[p] || !slot_[p]) continue;
    Timeline& tl = timelines_[slot_[p] - 1];
    std::sort(tl.begin(), tl.end());
  }
}

void Series::Erase(uint32_t profile) {
  if (profile < slot_.size() && slot_[profile]) Timeline().swap(timelines_[slot_[profile] - 1]);
}

size_t Series::MemoryBytes() const {
  size_t bytes = slot_.capacity() * sizeof(uint32_t) + timelines_.capacity() * sizeof(Timeline);
  for (const Timeline& tl : timelines_) bytes += tl.capacity() * sizeof(Entry);
  return bytes;
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
