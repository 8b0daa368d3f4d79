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
  for (Head& h : head_) Free(&h);
}

void Series::Resize(Head* h, uint32_t cap) const {
  const size_t per = sizeof(Entry) + (has_value() ? sizeof(double) : 0);
  auto* e = static_cast<Entry*>(::operator new (size_t{cap} * per));
  if (h->entries) {
    std::memcpy(e, h->entries, size_t{h->size} * sizeof(Entry));
    if (has_value())
      std::memcpy(reinterpret_cast<double*>(e + cap), h->values(),
                  size_t{h->size} * sizeof(double));
    ::operator delete(h->entries);
  }
  h->entries = e;
  h->cap = cap;
}

void Series::Sort(const Head& h) const {
  Entry* e = h.entries;
  if (!has_value()) return std::sort(e, e + h.size);
  double* v = h.values();
  std::vector<std::pair<Entry, double>> both(h.size);
  for (uint32_t i = 0; i < h.size; ++i) both[i] = {e[i], v[i]};
  std::sort(both.begin(), both.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  for (uint32_t i = 0; i < h.size; ++i) std::tie(e[i], v[i]) = both[i];
}

void Series::Free(Head* h) {
  if (!h->entries) return;
  ::operator delete(h->entries);
  *h = Head();
}

Series::Head& Series::Reserve(uint32_t profile, uint32_t more) {
  Head& h = HeadOf(profile);
  if (h.cap - h.size < more) Resize(&h, h.size + more);
  return h;
}

void Series::Add(uint32_t profile, Millis ts, uint32_t idx, double value, Millis cutoff) {
  Head& h = HeadOf(profile);
  if (h.size == h.cap) {
    if (h.size == 0) {
      Resize(&h, has_value() ? 2 : 4);  // 48 or 64 bytes: one cache line
    } else {
      Entry* e = h.entries;
      if (e[0].ts < cutoff) {
        Entry* keep = std::lower_bound(e, e + h.size, cutoff,
                                       [](const Entry& x, Millis c) { return x.ts < c; });
        const size_t dropped = static_cast<size_t>(keep - e), kept = h.size - dropped;
        std::memmove(e, keep, kept * sizeof(Entry));
        if (has_value()) std::memmove(h.values(), h.values() + dropped, kept * sizeof(double));
        h.size = static_cast<uint32_t>(kept);
        left_out_ = true;
      }
      if (h.size == h.cap) Resize(&h, 2 * h.cap);
    }
  }
  const Entry x{ts, idx};
  Entry* e = h.entries;
  size_t at = h.size;
  if (newest_ < x) {
    newest_ = x;  // after every entry: an append
  } else if (h.size > 0 && x < e[h.size - 1]) {
    Entry* end = e + h.size;
    at = static_cast<size_t>(std::upper_bound(e, end, x) - e);
    std::memmove(e + at + 1, e + at, (h.size - at) * sizeof(Entry));
    if (has_value())
      std::memmove(h.values() + at + 1, h.values() + at, (h.size - at) * sizeof(double));
  }
  e[at] = x;
  if (has_value()) h.values()[at] = value;
  ++h.size;
}

void Series::Clear() {
  for (Head& h : head_) Free(&h);
  newest_ = Entry{kMinTime, 0};
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
  if (head_.size() < profiles) head_.resize(profiles);
  for (uint32_t p = 0; p < profiles; ++p)
    if ((*count)[p]) Reserve(p, (*count)[p]);
  // Records come in arrival order, so a timeline is out of (ts, idx) order only after a late
  // event; such profiles are marked (count = 0) and sorted at the end.
  const bool value = has_value();
  Entry newest = newest_;
  store::ForEachIn(records, 0, records.size(), [&](uint32_t idx) {
    const uint32_t pid = store.Resolve(store.profile(idx));
    if (!match(idx, pid)) return;
    Head& h = head_[pid];
    Entry e{store.ts(idx), idx};
    if (h.size > 0 && e < h.entries[h.size - 1]) (*count)[pid] = 0;
    if (newest < e) newest = e;
    if (value) h.values()[h.size] = ValueOf(store.props(idx));
    h.entries[h.size++] = e;
  });
  newest_ = newest;
  for (uint32_t p = 0; p < profiles; ++p) {
    if ((*count)[p] || head_[p].size == 0) continue;
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
  if (head_.size() < profiles) head_.resize(profiles);
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
      Head& h = Reserve(static_cast<uint32_t>(p), n);
      size_t at = h.size;
      h.size += n;
      for (size_t s = 0; s < parts; ++s) {
        dst[s][p] = h.entries + at;
        if (value) dst_value[s][p] = h.values() + at;
        at += count[s][p];
      }
    }
  });
  // Pass 2, per slice of the records: each slice writes only its own positions.
  std::vector<Entry> newest(parts, newest_);
  pool->Run(parts, [&](size_t part) {
    std::vector<Entry*>& out = dst[part];
    Entry slice_newest = newest[part];
    auto [lo, hi] = PartRange(records.size(), parts, part);
    store::ForEachIn(records, lo, hi, [&](uint32_t idx) {
      const uint32_t pid = store.Resolve(store.profile(idx));
      if (!match(idx, pid)) return;
      const Entry e{store.ts(idx), idx};
      if (slice_newest < e) slice_newest = e;
      *out[pid]++ = e;
      if (value) *dst_value[part][pid]++ = ValueOf(store.props(idx));
    });
    newest[part] = slice_newest;
  });
  for (const Entry& e : newest)
    if (newest_ < e) newest_ = e;
  // A timeline is out of (ts, idx) order only after a late event (or after entries it had
  // before): sorted, as Build sorts it.
  pool->Run(parts, [&](size_t part) {
    auto [lo, hi] = PartRange(profiles, parts, part);
    for (size_t p = lo; p < hi; ++p) {
      if (!total[p]) continue;
      Entry* begin = head_[p].entries;
      Entry* end = begin + head_[p].size;
      Entry* from = end - total[p];
      if (from != begin) --from;
      if (!std::is_sorted(from, end)) Sort(head_[p]);
    }
  });
}

void Series::MergeInto(uint32_t from, uint32_t into) {
  if (from >= head_.size() || head_[from].size == 0) return;
  Head moved = std::exchange(head_[from], Head());
  Head& h = HeadOf(into);
  if (h.size == 0) {
    Free(&h);
    h = moved;
    return;
  }
  // Merged from the back into the longer timeline, grown in place (usually within its capacity):
  // one linear pass, no buffer (inplace_merge would allocate one), and each slot is written only
  // after what it held has been moved on.
  if (moved.size > h.size) std::swap(moved, h);
  size_t i = h.size, j = moved.size, k = i + j;
  if (h.cap < k) Resize(&h, static_cast<uint32_t>(k));
  h.size = static_cast<uint32_t>(k);
  Entry* tl = h.entries;
  const Entry* mv = moved.entries;
  double* tv = has_value() ? h.values() : nullptr;
  const double* mvv = has_value() ? moved.values() : nullptr;
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
  Free(&moved);
}

void Series::Erase(uint32_t profile) {
  if (profile < head_.size()) Free(&head_[profile]);
}

size_t Series::MemoryBytes() const {
  size_t bytes = head_.capacity() * sizeof(Head);
  for (const Head& h : head_)
    bytes += size_t{h.cap} * (sizeof(Entry) + (has_value() ? sizeof(double) : 0));
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
