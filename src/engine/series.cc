#include "engine/series.h"

#include <limits>
#include <utility>

#include "engine/parallel.h"

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

void Series::Add(uint32_t profile, Millis ts, uint32_t idx, double value, Millis cutoff) {
  Timeline& tl = Slot(profile);
  if (tl.size() == tl.capacity() && !tl.empty() && tl.front().ts < cutoff) {
    auto keep = std::lower_bound(tl.begin(), tl.end(), cutoff,
                                 [](const Entry& x, Millis c) { return x.ts < c; });
    tl.erase(tl.begin(), keep);
    left_out_ = true;
  }
  Entry e{ts, idx, value};
  if (tl.empty() || !(e < tl.back())) {
    tl.push_back(e);
  } else {
    tl.insert(std::upper_bound(tl.begin(), tl.end(), e), e);
  }
}

void Series::Clear() {
  std::fill(slot_.begin(), slot_.end(), 0);
  timelines_.clear();
  left_out_ = false;
}

void Series::Build(std::span<const uint32_t> records, const store::Store& store,
                   std::vector<uint32_t>* count, Millis cutoff) {
  const size_t profiles = store.profiles().size();
  if (cutoff > kMinTime) left_out_ = true;  // records before the cutoff may be left out
  auto match = [&](uint32_t idx, uint32_t pid) { return Takes(store, idx, pid, cutoff); };
  count->assign(profiles, 0);
  // A record's profile is resolved through the store's merge table: a merged-away profile's
  // records belong to its survivor.
  for (uint32_t idx : records) {
    const uint32_t pid = store.Resolve(store.profile(idx));
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
    const uint32_t pid = store.Resolve(store.profile(idx));
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

void Series::BuildParallel(std::span<const uint32_t> records, const store::Store& store,
                           size_t parts, BuildScratch* scratch, WorkerPool* pool, Millis cutoff) {
  if (parts <= 1) return Build(records, store, &scratch->total, cutoff);
  const size_t profiles = store.profiles().size();
  if (cutoff > kMinTime) left_out_ = true;  // records before the cutoff may be left out
  auto match = [&](uint32_t idx, uint32_t pid) { return Takes(store, idx, pid, cutoff); };
  std::vector<std::vector<uint32_t>>& count = scratch->count;
  std::vector<std::vector<Entry*>>& dst = scratch->dst;
  count.resize(parts);
  dst.resize(parts);
  for (size_t part = 0; part < parts; ++part) {
    count[part].assign(profiles, 0);
    dst[part].resize(profiles);
  }
  // Pass 1, per slice of the records: matches per profile.
  pool->Run(parts, [&](size_t part) {
    std::vector<uint32_t>& c = count[part];
    auto [lo, hi] = PartRange(records.size(), parts, part);
    for (size_t r = lo; r < hi; ++r) {
      const uint32_t idx = records[r];
      const uint32_t pid = store.Resolve(store.profile(idx));
      if (match(idx, pid)) ++c[pid];
    }
  });
  // Slots in profile order, as Build numbers them; a timeline that has entries (a build over a
  // series that is not empty) keeps them in front.
  std::vector<uint32_t>& total = scratch->total;
  total.assign(profiles, 0);
  if (slot_.size() < profiles) slot_.resize(profiles, 0);
  size_t with = 0;
  for (uint32_t p = 0; p < profiles; ++p) {
    uint32_t n = 0;
    for (size_t part = 0; part < parts; ++part) n += count[part][p];
    total[p] = n;
    with += n != 0 && !slot_[p];
  }
  timelines_.reserve(timelines_.size() + with);
  for (uint32_t p = 0; p < profiles; ++p)
    if (total[p]) Slot(p);
  // Per profile range: size each timeline once, and point each slice at the place of its first
  // match in it (after the matches of the slices before it). The fill then writes through one
  // pointer per profile instead of loading the slot and the timeline's header.
  pool->Run(parts, [&](size_t part) {
    auto [lo, hi] = PartRange(profiles, parts, part);
    for (size_t p = lo; p < hi; ++p) {
      if (!total[p]) continue;
      Timeline& tl = timelines_[slot_[p] - 1];
      size_t at = tl.size();
      tl.resize(at + total[p]);
      for (size_t s = 0; s < parts; ++s) {
        dst[s][p] = tl.data() + at;
        at += count[s][p];
      }
    }
  });
  // Pass 2, per slice of the records: each slice writes only its own positions.
  const bool value = has_value();
  pool->Run(parts, [&](size_t part) {
    std::vector<Entry*>& out = dst[part];
    auto [lo, hi] = PartRange(records.size(), parts, part);
    for (size_t r = lo; r < hi; ++r) {
      const uint32_t idx = records[r];
      const uint32_t pid = store.Resolve(store.profile(idx));
      if (!match(idx, pid)) continue;
      *out[pid]++ = Entry{store.ts(idx), idx, value ? ValueOf(store.props(idx)) : 0};
    }
  });
  // A timeline is out of (ts, idx) order only after a late event (or after entries it had
  // before): sorted, as Build sorts it.
  pool->Run(parts, [&](size_t part) {
    auto [lo, hi] = PartRange(profiles, parts, part);
    for (size_t p = lo; p < hi; ++p) {
      if (!total[p]) continue;
      Timeline& tl = timelines_[slot_[p] - 1];
      auto from = tl.end() - total[p];
      if (from != tl.begin()) --from;
      if (!std::is_sorted(from, tl.end())) std::sort(tl.begin(), tl.end());
    }
  });
}

void Series::MergeInto(uint32_t from, uint32_t into) {
  if (from >= slot_.size() || !slot_[from] || timelines_[slot_[from] - 1].empty()) return;
  Timeline moved;
  moved.swap(timelines_[slot_[from] - 1]);
  Timeline& tl = Slot(into);
  if (tl.empty()) {
    tl.swap(moved);
    return;
  }
  // Merged from the back into the longer timeline, grown in place (usually within its capacity):
  // one linear pass, no buffer (inplace_merge would allocate one), and each slot is written only
  // after what it held has been moved on.
  if (moved.size() > tl.size()) tl.swap(moved);
  size_t i = tl.size(), j = moved.size(), k = i + j;
  tl.resize(k);
  while (j > 0) {
    if (i > 0 && moved[j - 1] < tl[i - 1])
      tl[--k] = tl[--i];
    else
      tl[--k] = moved[--j];
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
