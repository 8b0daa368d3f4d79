#include "engine/series.h"

#include <cstring>
#include <limits>
#include <utility>

#include "engine/parallel.h"

namespace shoal::engine {

Series::Series(uint32_t name, std::optional<rules::PropExpr> filter,
               std::optional<uint32_t> value_key, store::Store* store)
    : name_(name), value_key_(value_key) {
  if (filter) filter_ = std::make_unique<CompiledFilter>(*filter, store);
}

Series::~Series() {
  for (Block* b : head_) Free(b);
}

Series::Block* Series::Resize(Block* old, uint32_t size, uint32_t cap) const {
  const size_t per = sizeof(Entry) + (has_value() ? sizeof(double) : 0);
  auto* b = static_cast<Block*>(::operator new (sizeof(Block) + size_t{cap} * per));
  b->size = size;
  b->cap = cap;
  if (old) {
    std::memcpy(b->entries(), old->entries(), size_t{size} * sizeof(Entry));
    if (has_value()) std::memcpy(b->values(), old->values(), size_t{size} * sizeof(double));
    Free(old);
  }
  return b;
}

void Series::Sort(Block* b) const {
  Entry* e = b->entries();
  if (!has_value()) return std::sort(e, e + b->size);
  double* v = b->values();
  std::vector<std::pair<Entry, double>> both(b->size);
  for (uint32_t i = 0; i < b->size; ++i) both[i] = {e[i], v[i]};
  std::sort(both.begin(), both.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  for (uint32_t i = 0; i < b->size; ++i) std::tie(e[i], v[i]) = both[i];
}

void Series::Free(Block* b) {
  if (b) ::operator delete(b);
}

Series::Block* Series::Reserve(uint32_t profile, uint32_t more) {
  Block*& b = Head(profile);
  const uint32_t size = b ? b->size : 0;
  if (!b || b->cap - size < more) b = Resize(b, size, size + more);
  return b;
}

void Series::Add(uint32_t profile, Millis ts, uint32_t idx, double value, Millis cutoff) {
  Block*& b = Head(profile);
  if (!b) b = Resize(nullptr, 0, has_value() ? 2 : 3);  // 64 bytes: one cache line
  Entry* e = b->entries();
  if (b->size == b->cap) {
    if (e[0].ts < cutoff) {
      Entry* keep = std::lower_bound(e, e + b->size, cutoff,
                                     [](const Entry& x, Millis c) { return x.ts < c; });
      const size_t dropped = static_cast<size_t>(keep - e), kept = b->size - dropped;
      std::memmove(e, keep, kept * sizeof(Entry));
      if (has_value()) std::memmove(b->values(), b->values() + dropped, kept * sizeof(double));
      b->size = static_cast<uint32_t>(kept);
      left_out_ = true;
    }
    if (b->size == b->cap) {
      b = Resize(b, b->size, 2 * b->cap);
      e = b->entries();
    }
  }
  const Entry x{ts, idx};
  Entry* end = e + b->size;
  size_t at = b->size;
  if (b->size > 0 && x < end[-1]) {
    at = static_cast<size_t>(std::upper_bound(e, end, x) - e);
    std::memmove(e + at + 1, e + at, (b->size - at) * sizeof(Entry));
    if (has_value())
      std::memmove(b->values() + at + 1, b->values() + at, (b->size - at) * sizeof(double));
  }
  e[at] = x;
  if (has_value()) b->values()[at] = value;
  ++b->size;
}

void Series::Clear() {
  for (Block*& b : head_) {
    Free(b);
    b = nullptr;
  }
  left_out_ = false;
}

void Series::Build(const store::RecordList& records, const store::Store& store,
                   std::vector<uint32_t>* count, Millis cutoff) {
  const size_t profiles = store.profiles().size();
  if (cutoff > kMinTime) left_out_ = true;  // records before the cutoff may be left out
  auto match = [&](uint32_t idx, uint32_t pid) { return Takes(store, idx, pid, cutoff); };
  count->assign(profiles, 0);
  // A record's profile is resolved through the store's merge table: a merged-away profile's
  // records belong to its survivor.
  store::ForEachIn(records, 0, records.size(), [&](uint32_t idx) {
    const uint32_t pid = store.Resolve(store.profile(idx));
    if (match(idx, pid)) ++(*count)[pid];
  });
  if (head_.size() < profiles) head_.resize(profiles, nullptr);
  for (uint32_t p = 0; p < profiles; ++p)
    if ((*count)[p]) Reserve(p, (*count)[p]);
  // Records come in arrival order, so a timeline is out of (ts, idx) order only after a late
  // event; such profiles are marked (count = 0) and sorted at the end.
  const bool value = has_value();
  store::ForEachIn(records, 0, records.size(), [&](uint32_t idx) {
    const uint32_t pid = store.Resolve(store.profile(idx));
    if (!match(idx, pid)) return;
    Block* b = head_[pid];
    Entry e{store.ts(idx), idx};
    if (b->size > 0 && e < b->entries()[b->size - 1]) (*count)[pid] = 0;
    if (value) b->values()[b->size] = ValueOf(store.props(idx));
    b->entries()[b->size++] = e;
  });
  for (uint32_t p = 0; p < profiles; ++p) {
    if ((*count)[p] || !head_[p]) continue;
    Sort(head_[p]);
  }
}

void Series::BuildParallel(const store::RecordList& records, const store::Store& store,
                           size_t parts, BuildScratch* scratch, WorkerPool* pool, Millis cutoff) {
  if (parts <= 1) return Build(records, store, &scratch->total, cutoff);
  const size_t profiles = store.profiles().size();
  if (cutoff > kMinTime) left_out_ = true;  // records before the cutoff may be left out
  auto match = [&](uint32_t idx, uint32_t pid) { return Takes(store, idx, pid, cutoff); };
  std::vector<std::vector<uint32_t>>& count = scratch->count;
  std::vector<std::vector<Entry*>>& dst = scratch->dst;
  std::vector<std::vector<double*>>& dst_value = scratch->dst_value;
  const bool value = has_value();
  count.resize(parts);
  dst.resize(parts);
  dst_value.resize(value ? parts : 0);
  for (size_t part = 0; part < parts; ++part) {
    count[part].assign(profiles, 0);
    dst[part].resize(profiles);
    if (value) dst_value[part].resize(profiles);
  }
  // Pass 1, per slice of the records: matches per profile.
  pool->Run(parts, [&](size_t part) {
    std::vector<uint32_t>& c = count[part];
    auto [lo, hi] = PartRange(records.size(), parts, part);
    store::ForEachIn(records, lo, hi, [&](uint32_t idx) {
      const uint32_t pid = store.Resolve(store.profile(idx));
      if (match(idx, pid)) ++c[pid];
    });
  });
  // A timeline that has entries (a build over a series that is not empty) keeps them in front.
  std::vector<uint32_t>& total = scratch->total;
  total.assign(profiles, 0);
  if (head_.size() < profiles) head_.resize(profiles, nullptr);
  // Per profile range: size each timeline once, and point each slice at the place of its first
  // match in it (after the matches of the slices before it). The fill then writes through one
  // pointer per profile instead of loading the profile's head and block.
  pool->Run(parts, [&](size_t part) {
    auto [lo, hi] = PartRange(profiles, parts, part);
    for (size_t p = lo; p < hi; ++p) {
      uint32_t n = 0;
      for (size_t s = 0; s < parts; ++s) n += count[s][p];
      total[p] = n;
      if (!n) continue;
      Block* b = Reserve(static_cast<uint32_t>(p), n);
      size_t at = b->size;
      b->size += n;
      for (size_t s = 0; s < parts; ++s) {
        dst[s][p] = b->entries() + at;
        if (value) dst_value[s][p] = b->values() + at;
        at += count[s][p];
      }
    }
  });
  // Pass 2, per slice of the records: each slice writes only its own positions.
  pool->Run(parts, [&](size_t part) {
    std::vector<Entry*>& out = dst[part];
    auto [lo, hi] = PartRange(records.size(), parts, part);
    store::ForEachIn(records, lo, hi, [&](uint32_t idx) {
      const uint32_t pid = store.Resolve(store.profile(idx));
      if (!match(idx, pid)) return;
      *out[pid]++ = Entry{store.ts(idx), idx};
      if (value) *dst_value[part][pid]++ = ValueOf(store.props(idx));
    });
  });
  // A timeline is out of (ts, idx) order only after a late event (or after entries it had
  // before): sorted, as Build sorts it.
  pool->Run(parts, [&](size_t part) {
    auto [lo, hi] = PartRange(profiles, parts, part);
    for (size_t p = lo; p < hi; ++p) {
      if (!total[p]) continue;
      Entry* begin = head_[p]->entries();
      Entry* end = begin + head_[p]->size;
      Entry* from = end - total[p];
      if (from != begin) --from;
      if (!std::is_sorted(from, end)) Sort(head_[p]);
    }
  });
}

void Series::MergeInto(uint32_t from, uint32_t into) {
  if (from >= head_.size() || !head_[from] || head_[from]->size == 0) return;
  Block* moved = std::exchange(head_[from], nullptr);
  Block*& b = Head(into);
  if (!b || b->size == 0) {
    Free(std::exchange(b, moved));
    return;
  }
  // Merged from the back into the longer timeline, grown in place (usually within its capacity):
  // one linear pass, no buffer (inplace_merge would allocate one), and each slot is written only
  // after what it held has been moved on.
  if (moved->size > b->size) std::swap(moved, b);
  size_t i = b->size, j = moved->size, k = i + j;
  if (b->cap < k) b = Resize(b, b->size, static_cast<uint32_t>(k));
  b->size = static_cast<uint32_t>(k);
  Entry* tl = b->entries();
  const Entry* mv = moved->entries();
  double* tv = has_value() ? b->values() : nullptr;
  const double* mvv = has_value() ? moved->values() : nullptr;
  while (j > 0) {
    if (i > 0 && mv[j - 1] < tl[i - 1]) {
      --k, --i;
      tl[k] = tl[i];
      if (tv) tv[k] = tv[i];
    } else {
      --k, --j;
      tl[k] = mv[j];
      if (tv) tv[k] = mvv[j];
    }
  }
  Free(moved);
}

void Series::Erase(uint32_t profile) {
  if (profile < head_.size()) Free(std::exchange(head_[profile], nullptr));
}

size_t Series::MemoryBytes() const {
  size_t bytes = head_.capacity() * sizeof(Block*);
  for (const Block* b : head_)
    if (b)
      bytes +=
          sizeof(Block) + size_t{b->cap} * (sizeof(Entry) + (has_value() ? sizeof(double) : 0));
  return bytes;
}

Window::Window(const rules::TimeRange& r) : from_kind_(r.from.kind), to_kind_(r.to.kind) {
  a_ = r.from.ms;
  b_ = r.to.ms;
}

namespace {

// The index of the first entry in [from, to) with ts >= x (lower_bound), searched from `from`
// with doubling steps: a window's start is usually at or near the front of a timeline (entries
// older than every window are dropped), so this reads the first cache lines, which an add has
// just loaded, instead of probing the middle of a long timeline.
size_t FirstAtLeastFromFront(const Timeline& tl, size_t from, size_t to, Millis x) {
  if (from >= to || tl[from].ts >= x) return from;
  size_t below = from, step = 1;  // tl[below].ts < x
  while (below + step < to && tl[below + step].ts < x) {
    below += step;
    step *= 2;
  }
  const size_t end = std::min(below + step, to);
  return std::lower_bound(tl.begin() + below + 1, tl.begin() + end, x,
                          [](const Entry& e, Millis v) { return e.ts < v; }) -
         tl.begin();
}

// The same, searched back from `to`: a window's end is usually at or near the back (nothing
// happens after now, and an event arrives near now), where the last add wrote.
size_t FirstAtLeastFromBack(const Timeline& tl, size_t from, size_t to, Millis x) {
  if (from >= to || tl[to - 1].ts < x) return to;
  size_t at_least = to - 1, step = 1;  // tl[at_least].ts >= x
  while (at_least >= from + step && tl[at_least - step].ts >= x) {
    at_least -= step;
    step *= 2;
  }
  const size_t begin = at_least >= from + step ? at_least - step + 1 : from;
  return std::lower_bound(tl.begin() + begin, tl.begin() + at_least, x,
                          [](const Entry& e, Millis v) { return e.ts < v; }) -
         tl.begin();
}

// The number of entries with ts <= x, given that it is at least `from`: searched from `from` with
// doubling steps, so the jumps below read near the places they already read, not the middle.
size_t CountAtMost(const Timeline& tl, size_t from, Millis x) {
  const size_t n = tl.size();
  if (from >= n || tl[from].ts > x) return from;
  size_t at_most = from, step = 1;  // tl[at_most].ts <= x
  while (at_most + step < n && tl[at_most + step].ts <= x) {
    at_most += step;
    step *= 2;
  }
  const size_t end = std::min(at_most + step, n);
  return std::upper_bound(tl.begin() + at_most + 1, tl.begin() + end, x,
                          [](Millis v, const Entry& e) { return v < e.ts; }) -
         tl.begin();
}

}  // namespace

// lower_bound in [from, to), galloping from the end whose time is nearer to x: a window of a
// month in a series kept for three months starts two thirds of the way along a timeline.
size_t FirstAtLeast(const Timeline& tl, size_t from, size_t to, Millis x) {
  if (from >= to) return from;
  const __int128 to_front = __int128{x} - tl[from].ts, to_back = __int128{tl[to - 1].ts} - x;
  return to_front <= to_back ? FirstAtLeastFromFront(tl, from, to, x)
                             : FirstAtLeastFromBack(tl, from, to, x);
}

std::pair<size_t, size_t> Window::Range(const Timeline& tl, Millis t) const {
  Millis lo_ts = Lo(t), hi_ts = Hi(t);
  size_t lo = lo_ts == kMinTime ? 0 : FirstAtLeast(tl, 0, tl.size(), lo_ts);
  size_t hi = FirstAtLeast(tl, lo, tl.size(), hi_ts);
  return {lo, hi};
}

Millis Window::FirstNetDrop(const Timeline& tl, size_t lo, size_t hi, uint64_t d) const {
  return FirstNet(tl, lo, a_, hi, EnterLag(), d);
}

Millis Window::FirstNetRise(const Timeline& tl, size_t lo, size_t hi, uint64_t d) const {
  return FirstNet(tl, hi, EnterLag(), lo, a_, d);
}

Millis Window::FirstNet(const Timeline& tl, size_t lead, Millis lead_lag, size_t other,
                        Millis other_lag, uint64_t d) {
  // The k-th leading move after t is that of entry lead + k - 1 (moves come in timeline order).
  // At its instant, with `against` opposing moves made, the net is (led - against); if short of
  // d, no leading move before the (against + d)-th can reach it, since the opposing ones only
  // add up. Both counts go on from where the last candidate's ended: candidates only move
  // forward, and the entries before `other` had made their opposing move by t.
  uint64_t k = d;
  size_t opposed = other;
  for (int jump = 0; jump < kMaxJumps; ++jump) {
    if (k > tl.size() - lead) return kMaxTime;
    const Millis at = tl[lead + k - 1].ts + lead_lag + 1;
    const size_t led = CountAtMost(tl, lead + k - 1, at - lead_lag - 1) - lead;
    opposed = CountAtMost(tl, opposed, at - other_lag - 1);
    const size_t against = opposed - other;
    if (led >= against + d) return at;
    k = against + d;
  }
  return k > tl.size() - lead ? kMaxTime : tl[lead + k - 1].ts + lead_lag + 1;
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
