// Top-N and percentile segments (docs/language.md, "Top-N and percentiles").
//
// `top 10% by sum(total) of "Order Completed" within 90d` compiles into two parts:
//   - a hidden **rank segment** (owned by the segment that uses the leaf, like a member
//     condition's hidden segment) whose condition is a RankerCondition: its dependencies are those
//     of the value (a series, a trait key, a member segment), and the engine evaluates it by
//     reading one profile's value and moving that profile in a Ranking. Its membership bitmap is
//     the top set, so every profile pushed across the boundary reaches the segments that read it
//     through the ordinary dependents path;
//   - the leaf itself (TopNCondition), which reads that bitmap, like `in segment`.
// So a value change costs O(log R) in the ranking plus re-evaluating the owner for the profiles
// whose side of the boundary changed: the changed profile and at most one or two at the boundary.
// A windowed value's next change is the rank segment's per-profile deadline, as for any segment.
//
// Threading: owned by the engine's single writer, like everything in it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/conditions.h"

namespace shoal::engine {

// Where a ranked value comes from: a numeric trait, an aggregate of events, a member count, a
// computed trait. Each reads a profile's current value and declares the dependencies that tell
// the engine when it may have changed.
class RankSource {
 public:
  virtual ~RankSource() = default;
  // The value of profile (or account) ctx.pid at t; nullopt when it is not ranked (no value, not
  // a number). Lowers *next to the next instant after t at which it can change with no new data.
  virtual std::optional<double> Value(const EvalContext& ctx, Millis t, Millis* next) const = 0;
  // "sum", "value", "members": what the value is called in Explain.
  virtual std::string_view Name() const = 0;

  // Dependencies, with the meaning of Condition's fields of the same names.
  std::vector<Series*> series;
  std::vector<uint32_t> trait_keys;
  std::vector<uint32_t> segment_refs;
  bool member_links = false;
};

// The order of one top-N leaf's ranked population, and its top set. Entries are ordered by value
// descending (ascending for `bottom`), then key ascending; the top set is the first N entries, or
// the first ceil(P/100 x R) of the R ranked.
//
// Only the boundary matters for membership: the worst entry of the top set and the best of the
// rest, every entry of the first being ahead of every entry of the second. So the two sides are
// binary heaps (worst of the top on one's root, best of the rest on the other's) with lazy
// deletion: a value change bumps the profile's generation, which invalidates its old heap entry,
// and pushes a new one; stale entries are dropped when they reach a root, and a heap is rebuilt
// when they outnumber the live ones. A change is then one push (O(1) expected for a random value)
// plus O(1) moves across the boundary, each O(log R). An order-statistic red-black tree
// (__gnu_pbds) did the same in O(log R) per change but walked ~50 cache-missing nodes per change
// at 200k profiles, 3x the cost of the event itself; rank queries, which only Explain needs, are
// now O(R).
class Ranking {
 public:
  // percent: pct in (0, 100] with at most 6 decimals; else n >= 1.
  Ranking(bool bottom, bool percent, int64_t n, double pct);
  Ranking(const Ranking&) = delete;
  Ranking& operator=(const Ranking&) = delete;

  // Sets id's value (nullopt or NaN: not ranked). `key` orders ties and must stay valid while
  // the id is ranked. Records which ids change sides, to be taken by TakeFlips.
  void Set(uint32_t id, std::string_view key, std::optional<double> value);
  // The ids whose side of the boundary differs from before the Sets since the last call, with
  // their new side (true: in the top set), sorted by id. An id that crossed and came back during
  // a batch of Sets is not listed.
  void TakeFlips(std::vector<std::pair<uint32_t, bool>>* out);

  bool InTop(uint32_t id) const {
    return id < slots_.size() && slots_[id].ranked && slots_[id].top;
  }
  size_t ranked() const { return n_top_ + n_rest_; }
  // The size of the top set for R ranked entries.
  size_t Cutoff(size_t r) const;
  // id's 1-based rank (O(R): for Explain) and value; nullopt when not ranked.
  std::optional<size_t> RankOf(uint32_t id) const;
  std::optional<double> ValueOf(uint32_t id) const;
  // The value of the last entry of the top set, if any.
  std::optional<double> CutoffValue() const;
  bool bottom() const { return bottom_; }
  size_t MemoryBytes() const;

 private:
  struct Entry {
    double v;  // the value, negated for `bottom` so that both orders are "greatest first"
    // The key's first 8 bytes, big-endian and zero-padded: unequal prefixes order as the keys
    // do, so ties on the value (the many profiles with a sum of 0) rarely reach the memcmp.
    uint64_t prefix;
    std::string_view key;
    uint32_t id;
    uint32_t gen;  // the slot's generation when pushed; stale once the slot's moved on
  };
  // a ahead of b in the ranking. As a heap order it puts the entry furthest behind on the root.
  struct Ahead {
    bool operator()(const Entry& a, const Entry& b) const {
      if (a.v != b.v) return a.v > b.v;
      if (a.prefix != b.prefix) return a.prefix < b.prefix;
      return a.key < b.key;
    }
  };
  // b ahead of a: the heap order with the entry furthest ahead on the root.
  struct Behind {
    bool operator()(const Entry& a, const Entry& b) const { return Ahead()(b, a); }
  };
  struct Slot {
    double v = 0;
    uint64_t prefix = 0;
    std::string_view key;
    uint32_t gen = 0;
    bool ranked = false;
    bool top = false;
  };
  static uint64_t Prefix(std::string_view key);
  bool Live(const Entry& e, bool top) const {
    const Slot& s = slots_[e.id];
    return s.ranked && s.gen == e.gen && s.top == top;
  }
  void Push(bool top, Entry e);
  Entry Pop(bool top);     // the live root; the side must have a live entry
  void Clean(bool top);    // drops stale roots; then the root, if any, is live
  void Note(uint32_t id);  // remembers id's side before its first move of the batch
  void Rebalance();

  bool bottom_, percent_;
  int64_t n_;
  int64_t pct_micro_;              // P in millionths of a percent
  std::vector<Entry> top_;         // heap by Ahead: the worst of the top set on the root
  std::vector<Entry> rest_;        // heap by Behind: the best of the rest on the root
  size_t n_top_ = 0, n_rest_ = 0;  // live entries
  std::vector<Slot> slots_;        // by id
  std::vector<std::pair<uint32_t, bool>> noted_;  // (id, in the top before the batch)
  std::vector<uint64_t> noted_stamp_;
  uint64_t stamp_ = 1;
};

// The condition of a rank segment. The engine does not call Eval to decide membership (the
// Ranking does); Eval says whether the profile has a value, which tells the engine whether an
// empty profile is ranked (sum of nothing = 0) and so whether every new profile must be ranked.
class RankerCondition final : public Condition {
 public:
  RankerCondition(std::unique_ptr<RankSource> source, const rules::TopNCond& c);
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override;
  std::string Detail(const EvalContext& ctx, Millis t) const override;
  const RankSource& source() const { return *source_; }
  Ranking& ranking() { return ranking_; }
  const Ranking& ranking() const { return ranking_; }

 private:
  std::unique_ptr<RankSource> source_;
  Ranking ranking_;
};

// Compiles the value of a top-N leaf into a rank segment's condition. Errors: an aggregate, a
// count or a computed trait in an account segment, `members (...)` in a user segment
// (kInvalidArgument), an unknown computed trait (kNotFound), and whatever compiling the aggregate
// or the member condition fails with.
Result<std::unique_ptr<RankerCondition>> CompileRanker(const rules::TopNCond& c,
                                                       CompileContext* ctx);

// The leaf `top N by VALUE`: whether the profile is in the top set of rank segment `seg`.
// `ranker` (null in a dry run) gives Explain the value, the rank, R and the cutoff.
std::unique_ptr<Condition> MakeTopNCondition(uint32_t seg, const RankerCondition* ranker,
                                             const rules::TopNCond& c);

}  // namespace shoal::engine
