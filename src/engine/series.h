// A Series is the timeline, per profile, of the events that match one (event name, filter): the
// (ts, record index) of each, sorted. Every event condition reads a window of a series; several
// conditions (in one segment or many) with the same event and filter share one series.
//
// Window is the arithmetic of a half-open event window [from, to) cut at now, over a sorted
// series: which entries are in at instant t, and when each enters or leaves as t grows. An entry
// at ts with a relative lower bound `a` ago leaves at ts + a + 1; with a relative upper bound `b`
// ago (b = 0 for "up to now") it enters at ts + b + 1.
#pragma once

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/values.h"
#include "rules/ast.h"
#include "store/store.h"

namespace shoal::engine {

class WorkerPool;

struct Entry {
  Millis ts;
  uint32_t idx;  // record index in the store
  bool operator<(const Entry& o) const { return ts < o.ts || (ts == o.ts && idx < o.idx); }
};
static_assert(sizeof(Entry) == 16);

// A read-only view of one profile's timeline: its entries, sorted by (ts, idx). Valid until the
// series changes.
class Timeline {
 public:
  Timeline() = default;
  Timeline(const Entry* data, const double* values, size_t size)
      : data_(data), values_(values), size_(size) {}
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Entry& operator[](size_t i) const { return data_[i]; }
  const Entry* begin() const { return data_; }
  const Entry* end() const { return data_ + size_; }
  const Entry& front() const { return data_[0]; }
  const Entry& back() const { return data_[size_ - 1]; }
  // For a series read by sum/avg/min/max (Series::has_value): the numeric value of entry i's
  // property (NaN when missing or not a number), kept beside the entries so an aggregate is a
  // sequential scan, not a read per record. Only such a series has values.
  double value(size_t i) const { return values_[i]; }

 private:
  const Entry* data_ = nullptr;
  const double* values_ = nullptr;
  size_t size_ = 0;
};

// How far back one reader of a series will ever look: at any instant now or later, it counts no
// entry older than its window's lower bound. kAgo: a relative start (ms before now: "within 30d"),
// kFrom: an absolute one (the instant ms: "after 2026-11-01"), kAll: none ("ever", "first
// performed").
struct Horizon {
  enum class Kind : uint8_t { kAll, kAgo, kFrom };
  Kind kind = Kind::kAll;
  Millis ms = 0;
  static Horizon All() { return {}; }
  static Horizon Ago(Millis d) { return {Kind::kAgo, std::clamp<Millis>(d, 0, kMaxTime)}; }
  static Horizon From(Millis t) { return {Kind::kFrom, t}; }
  // A window's: its lower bound.
  static Horizon Of(const rules::TimeRange& w) {
    switch (w.from.kind) {
      case rules::TimeBound::Kind::kRelative:
        return Ago(w.from.ms);
      case rules::TimeBound::Kind::kAbsolute:
        return From(w.from.ms);
      case rules::TimeBound::Kind::kNone:
        break;
    }
    return All();
  }
};

class Series {
 public:
  // `value_key`: the property whose numeric value the timelines keep beside their entries (see
  // Timeline::value).
  Series(uint32_t name, std::optional<rules::PropExpr> filter, std::optional<uint32_t> value_key,
         store::Store* store);
  ~Series();
  Series(const Series&) = delete;
  Series& operator=(const Series&) = delete;

  uint32_t name() const { return name_; }
  bool has_filter() const { return filter_ != nullptr; }
  // The numeric value of the value property in `props` (a message's PropEntries, or a stored
  // record's store::Props; sorted by key id), or NaN (also when there is none).
  template <typename PropRange>
  double ValueOf(const PropRange& props) const {
    if (value_key_) {
      for (const store::PropEntry p : props) {
        if (p.key() == *value_key_) {
          if (p.type() == ValueType::kNumber) return p.value().num;
          break;
        }
        if (p.key() > *value_key_) break;
      }
    }
    return std::numeric_limits<double>::quiet_NaN();
  }
  bool has_value() const { return value_key_.has_value(); }
  // Whether record props satisfy the filter (true without a filter).
  bool Matches(std::span<const store::PropEntry> props, const store::Store& s) const {
    return !filter_ || filter_->Eval(props, 0, s);
  }
  bool Matches(const store::Props& props, const store::Store& s) const {
    return !filter_ || filter_->Eval(props, 0, s);
  }
  // Adds a matching record to the profile's timeline (sorted insert; usually an append). When the
  // timeline is full, entries before `cutoff` (see Cutoff) are dropped instead of growing it, at
  // no extra cost (a growth copies it anyway): a long-lived profile's timeline read only by
  // windows stays the size of the widest window.
  void Add(uint32_t profile, Millis ts, uint32_t idx, double value, Millis cutoff = kMinTime);
  // Backfill of a new (empty) series: builds every timeline from `records`, the store's records
  // with this series' name in record order (Store::records_named). Two passes: count the
  // matches per profile, then append each to its exact-size timeline. No intermediate buffer:
  // at full size the backfill was dominated by the kernel clearing fresh pages (perf), so it
  // touches no memory beyond the timelines themselves and `count`, the caller's reused scratch.
  // Records before `cutoff` (see Cutoff) are left out.
  void Build(const store::RecordList& records, const store::Store& store,
             std::vector<uint32_t>* count, Millis cutoff = kMinTime);
  // Build in `parts` contiguous slices of `records`, run on the pool's threads (engine/parallel.h):
  // each slice counts, then fills, its matches into its own positions of each timeline (after
  // the matches of the slices before it), so every timeline holds exactly what Build gives, in
  // the same order. `scratch` is the caller's reused memory; parts <= 1 is Build.
  struct BuildScratch {
    std::vector<uint32_t> total;                  // matches per profile
    std::vector<std::vector<uint32_t>> count;     // per slice: its matches per profile
    std::vector<std::vector<Entry*>> dst;         // per slice: where its next match goes
    std::vector<std::vector<double*>> dst_value;  // the same for its value (has_value())
  };
  void BuildParallel(const store::RecordList& records, const store::Store& store, size_t parts,
                     BuildScratch* scratch, WorkerPool* pool, Millis cutoff = kMinTime);
  // Drops the profile's timeline and frees its memory (EraseProfile). The slot stays taken:
  // profile ids are never reused.
  void Erase(uint32_t profile);
  // Identity merge: moves `from`'s entries into `into`'s timeline (one sorted merge of the two)
  // and drops `from`'s. Costs the two timelines' lengths; nothing when `from` has none.
  void MergeInto(uint32_t from, uint32_t into);
  // Drops the entries of the profile's timeline whose record index satisfies `drop` (an
  // account's events sent by a user who is erased since). Order is kept.
  template <typename Pred>
  void RemoveIf(uint32_t profile, Pred drop) {
    if (profile >= head_.size()) return;
    Head& h = head_[profile];
    Entry* e = h.entries;
    double* v = has_value() ? h.values() : nullptr;
    uint32_t out = 0;
    for (uint32_t i = 0; i < h.size; ++i) {
      if (drop(e[i].idx)) continue;
      e[out] = e[i];
      if (v) v[out] = v[i];
      ++out;
    }
    h.size = out;
  }
  // The profile's timeline; empty when it has none.
  Timeline Get(uint32_t profile) const {
    if (profile >= head_.size()) return Timeline();
    const Head& h = head_[profile];
    return Timeline(h.entries, has_value() ? h.values() : nullptr, h.size);
  }
  // How many entries the profile's timeline holds before it must grow (tests).
  size_t Capacity(uint32_t profile) const {
    return profile < head_.size() ? head_[profile].cap : 0;
  }
  // Whether the profile has at least one entry.
  bool Has(uint32_t profile) const { return !Get(profile).empty(); }

  // --- The horizon: how far back the readers can still look ------------------------------------
  // A reader whose window has a lower bound ("within 1d", "between 90d ago and 30d ago", "after
  // 2026-11-01") never counts an entry older than that bound again, since time only moves
  // forward (Horizon). A series keeps what its widest reader needs (by default, and with any
  // reader without such a bound: every entry), and an entry older than that, at ingest or in a
  // build, is left out: an event only such readers see ("added to cart in the last 24 hours")
  // then costs no timeline work and no evaluation once it is a day old.
  //
  // Set on a new, empty series, before its build: its first reader's horizon.
  void InitHorizon(Horizon h) {
    all_ = false;
    ago_ = -1;
    from_ = kMaxTime;
    Extend(h);
  }
  // A new reader's horizon. Returns whether the series must be rebuilt (Clear, then a build)
  // because it may have left out entries that reader will see.
  bool Widen(Horizon h) { return Extend(h) && left_out_; }
  // The oldest entry time kept at `now` (kMinTime: all).
  Millis Cutoff(Millis now) const {
    if (all_) return kMinTime;
    Millis c = from_;
    if (ago_ >= 0) c = std::min(c, now - ago_);
    return c;
  }
  // Whether an entry at ts arriving at `now` is left out (and notes that one was).
  bool LeaveOut(Millis ts, Millis now) {
    if (ts >= Cutoff(now)) return false;
    left_out_ = true;
    return true;
  }
  // Drops every timeline, keeping the profiles' heads' memory, before a rebuild.
  void Clear();
  size_t MemoryBytes() const;

  // Ids of the live segments that read this series: the engine's index from an event to the
  // segments it can change. A series no segment reads is dropped.
  std::vector<uint32_t> segments;

 private:
  // A profile's timeline: one allocation of `cap` entries, then (a series with a value) `cap`
  // values, and its size and capacity. One dense array of these, by profile id, is the whole
  // index. Keeping the size and capacity here, not in front of the entries, lets an add at the
  // end (with newest_) load only this 16-byte head and then write the entry. With them in the
  // block an add waited for three lines in turn (the head, the block's header, its last entry):
  // 13 % of the replay ("Round 9"). (A vector of
  // std::vector headers behind a dense array of slot numbers cost a third page per event; on the
  // project's VM a page whose translation misses the TLB costs ~400 ns even when its line is
  // cached, docs/benchmarks.md "Round 6".)
  struct Head {
    Entry* entries = nullptr;
    uint32_t size = 0, cap = 0;
    double* values() const { return reinterpret_cast<double*>(entries + cap); }
  };
  static_assert(sizeof(Head) == 16);
  // Gives h room for `cap` entries (and values), keeping its first h.size.
  void Resize(Head* h, uint32_t cap) const;
  static void Free(Head* h);
  // Sorts the timeline's entries (with their values) by (ts, idx).
  void Sort(const Head& h) const;
  uint32_t name_;
  std::optional<uint32_t> value_key_;
  std::unique_ptr<CompiledFilter> filter_;
  // Dense by profile id: the profile's timeline. Sixteen bytes per profile instead of a hash
  // lookup on every add and every evaluation.
  std::vector<Head> head_;
  // No entry of any timeline is greater than this (the greatest entry ever added): an add past
  // it is an append without a look at the timeline's last entry. Live adds come in record order,
  // so every add of an event that is not late.
  Entry newest_{kMinTime, 0};
  // Whether a build takes record idx of (resolved) profile pid: not erased (an erased record
  // keeps its index in the name's list but loses its profile), not before `cutoff`, matching.
  bool Takes(const store::Store& store, uint32_t idx, uint32_t pid, Millis cutoff) const {
    return pid != store::Store::kErasedProfile && (cutoff == kMinTime || store.ts(idx) >= cutoff) &&
           (!filter_ || Matches(store.props(idx), store));
  }
  // The horizon: every entry (all_), or back to the widest relative start ago_ (-1: none) and the
  // earliest absolute start from_ (kMaxTime: none) of the readers.
  bool all_ = true;
  Millis ago_ = -1, from_ = kMaxTime;
  bool left_out_ = false;  // an entry was left out (at ingest or in a build) since the last Clear
  // Widens the horizon to cover h; returns whether it changed.
  bool Extend(Horizon h) {
    switch (h.kind) {
      case Horizon::Kind::kAll:
        if (all_) return false;
        all_ = true;
        return true;
      case Horizon::Kind::kAgo:
        if (all_ || h.ms <= ago_) return false;
        ago_ = h.ms;
        return true;
      case Horizon::Kind::kFrom:
        if (all_ || h.ms >= from_) return false;
        from_ = h.ms;
        return true;
    }
    return false;
  }
  // The profile's head, the array grown to hold it.
  Head& HeadOf(uint32_t profile) {
    if (profile >= head_.size()) head_.resize(std::max<size_t>(profile + 1, head_.size() * 2));
    return head_[profile];
  }
  // Makes room for `more` entries after the profile's current ones (exactly: a build knows its
  // counts); returns the head.
  Head& Reserve(uint32_t profile, uint32_t more);
};

// An event window resolved against a sorted timeline.
class Window {
 public:
  explicit Window(const rules::TimeRange& r);

  // Lowest ts in the window at t (inclusive) and the exclusive upper bound (cut at t).
  Millis Lo(Millis t) const {
    return from_kind_ == rules::TimeBound::Kind::kNone       ? kMinTime
           : from_kind_ == rules::TimeBound::Kind::kRelative ? t - a_
                                                             : a_;
  }
  Millis Hi(Millis t) const {
    Millis hi = to_kind_ == rules::TimeBound::Kind::kRelative ? t - b_ : t;
    return to_kind_ == rules::TimeBound::Kind::kAbsolute ? std::min(hi, b_) : hi;
  }
  // [lo, hi) indices of the entries in the window at t.
  std::pair<size_t, size_t> Range(const Timeline& tl, Millis t) const;
  // When the entry at ts enters the window (kMaxTime if never, given entries before Lo never
  // return): ts + b + 1, if it can be in at all.
  Millis EnterAt(Millis ts) const {
    if (to_kind_ == rules::TimeBound::Kind::kAbsolute && ts >= b_) return kMaxTime;
    if (from_kind_ == rules::TimeBound::Kind::kAbsolute && ts < a_) return kMaxTime;
    Millis e = ts + (to_kind_ == rules::TimeBound::Kind::kRelative ? b_ : 0) + 1;
    return e < LeaveAt(ts) ? e : kMaxTime;
  }
  // When the entry at ts leaves the window (kMaxTime if never).
  Millis LeaveAt(Millis ts) const {
    return from_kind_ == rules::TimeBound::Kind::kRelative ? ts + a_ + 1 : kMaxTime;
  }
  // The next instant after t at which the set of entries in the window changes.
  Millis NextBoundary(const Timeline& tl, size_t lo, size_t hi) const;

  // A sliding window: a relative start (a ago) and a relative end or none (b ago, b < a), as in
  // "within 30d" and "between 90d ago and 30d ago". Every entry then enters at ts + b + 1 and
  // leaves at ts + a + 1, both in timeline order, so how a count moves after t is known from the
  // timeline by a few searches instead of a walk over each entry that enters or leaves.
  bool Sliding() const {
    return from_kind_ == rules::TimeBound::Kind::kRelative &&
           to_kind_ != rules::TimeBound::Kind::kAbsolute && EnterLag() < a_;
  }
  // For a sliding window whose entries at t are [lo, hi) (Range): the first instant after t at
  // which at least d >= 1 more entries have left than entered (FirstNetDrop: the count is down by
  // d) or entered than left (FirstNetRise: up by d); kMaxTime if never. Each candidate instant
  // skips every one that cannot be it, so this costs a few searches where a walk would
  // visit every entry in between (a frequent user's count "at least 5 times in 60 days" moves
  // hundreds of times before it drops below 5). After kMaxJumps candidates it returns the last:
  // the count has not moved by d before it, a safe instant to look again.
  Millis FirstNetDrop(const Timeline& tl, size_t lo, size_t hi, uint64_t d) const;
  Millis FirstNetRise(const Timeline& tl, size_t lo, size_t hi, uint64_t d) const;

 private:
  rules::TimeBound::Kind from_kind_, to_kind_;
  Millis a_ = 0;  // from: relative ago, or absolute instant
  Millis b_ = 0;  // to: relative ago, or absolute instant
  static constexpr int kMaxJumps = 64;
  // FirstNetDrop and FirstNetRise: the first instant at which the leading moves (of entries from
  // `lead` on, each at ts + lead_lag + 1: leaves for a drop, enters for a rise) outnumber the
  // opposing ones (entries from `other` on, at ts + other_lag + 1) by d.
  static Millis FirstNet(const Timeline& tl, size_t lead, Millis lead_lag, size_t other,
                         Millis other_lag, uint64_t d);
  Millis EnterLag() const { return to_kind_ == rules::TimeBound::Kind::kRelative ? b_ : 0; }
};

}  // namespace shoal::engine
