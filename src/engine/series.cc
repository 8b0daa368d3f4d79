#include "engine/series.h"

namespace shoal::engine {

const Timeline Series::kEmpty;

Series::Series(uint32_t name, std::optional<rules::PropExpr> filter, store::Store* store)
    : name_(name) {
  if (filter) filter_ = std::make_unique<CompiledFilter>(*filter, store);
}

void Series::Add(uint32_t profile, Millis ts, uint32_t idx) {
  Timeline& tl = timelines_[profile];
  Entry e{ts, idx};
  if (tl.empty() || !(e < tl.back())) {
    tl.push_back(e);
  } else {
    tl.insert(std::upper_bound(tl.begin(), tl.end(), e), e);
  }
}

void Series::Build(const std::vector<Match>& matches, size_t profiles) {
  std::vector<uint32_t> count(profiles, 0);
  size_t nonzero = 0;
  for (const Match& m : matches) nonzero += count[m.profile]++ == 0;
  timelines_.reserve(timelines_.size() + nonzero);  // no rehash below: the pointers stay valid
  std::vector<Timeline*> slot(profiles, nullptr);
  for (uint32_t p = 0; p < profiles; ++p) {
    if (count[p] == 0) continue;
    slot[p] = &timelines_[p];
    slot[p]->reserve(slot[p]->size() + count[p]);
  }
  for (const Match& m : matches) slot[m.profile]->push_back(m.entry);
  for (uint32_t p = 0; p < profiles; ++p)
    if (slot[p] && !std::is_sorted(slot[p]->begin(), slot[p]->end()))
      std::sort(slot[p]->begin(), slot[p]->end());
}

size_t Series::MemoryBytes() const {
  size_t bytes = timelines_.capacity() * (sizeof(uint32_t) + sizeof(Timeline) + 1);
  for (const auto& [profile, tl] : timelines_) bytes += tl.capacity() * sizeof(Entry);
  return bytes;
}

Window::Window(const rules::TimeRange& r) : from_kind_(r.from.kind), to_kind_(r.to.kind) {
  a_ = r.from.ms;
  b_ = r.to.ms;
}

std::pair<size_t, size_t> Window::Range(const Timeline& tl, Millis t) const {
  Millis lo_ts = Lo(t), hi_ts = Hi(t);
  auto by_ts = [](const Entry& e, Millis x) { return e.ts < x; };
  size_t lo = lo_ts == kMinTime ? 0
                                : std::lower_bound(tl.begin(), tl.end(), lo_ts, by_ts) - tl.begin();
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
