// Aggregates over members' values (docs/language.md, "Accounts"): `sum(spend) of members > 10000`,
// `avg(computed.lead_score) of members (title = "buyer") >= 40`, also min and max.
//
// The member side is a hidden user segment, as for a member count: its definition is the member
// filter C (none: every user) and one more leaf, the MemberValueCondition, which reads the value X
// (a user trait or a user computed trait). That leaf is always true; it is in the tree so that the
// engine's indexes route every change of X to the hidden segment (an identify setting the trait,
// the computed trait's value change, deadlines included). The engine does not keep a membership
// for it in the ordinary sense: evaluating it gives the user's **contribution**, X's number when
// the user satisfies C, else none, and MemberAggregates keeps each account's running aggregate of
// its members' contributions. So a change costs one evaluation of the user plus O(accounts of the
// user), and the account condition (MemberAggCondition) is one lookup.
//
// Per account: the exact sum in millionths and the count (sum, avg), and for min/max a multiset of
// the values (O(log n) per change, no rescan of the members when the extreme one leaves).
//
// Threading: owned by the engine's single writer, like everything in it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/conditions.h"
#include "rules/ast.h"

namespace shoal::engine {

class ComputedSource;
class RankSource;

class MemberAggregates {
 public:
  struct Agg {
    __int128 sum = 0;  // millionths
    uint32_t n = 0;    // members with a contribution
  };

  MemberAggregates() = default;
  MemberAggregates(const MemberAggregates&) = delete;
  MemberAggregates& operator=(const MemberAggregates&) = delete;

  // Starts (or drops) the aggregates of hidden value segment `seg`; `ordered` keeps the values
  // of each account for min and max.
  void Add(uint32_t seg, bool ordered);
  void Drop(uint32_t seg) { segs_.erase(seg); }

  // Sets `user`'s contribution to `seg` (nullopt: none; NaN counts as none) and moves it in the
  // aggregate of each of `accounts` (the user's accounts). Returns whether it changed.
  bool Set(uint32_t seg, uint32_t user, std::optional<double> v,
           std::span<const uint32_t> accounts);
  // A new link: the user's contributions join the account's aggregates.
  void OnLink(uint32_t user, uint32_t account);
  // The user is unlinked from `accounts` (erasure, merge): its contributions leave them and are
  // forgotten.
  void OnUnlink(uint32_t user, std::span<const uint32_t> accounts);

  // The aggregate of `seg` for `account` (zero when none); min/max: nullopt with no value.
  Agg Get(uint32_t seg, uint32_t account) const;
  std::optional<double> Min(uint32_t seg, uint32_t account) const;
  std::optional<double> Max(uint32_t seg, uint32_t account) const;
  // The aggregate's number for `account` (top N by sum(X) of members): the sum (0 with no value),
  // the average, the minimum or the maximum (nullopt with no value).
  std::optional<double> Value(uint32_t seg, uint32_t account, rules::AggCond::Fn fn) const;

  size_t MemoryBytes() const;

 private:
  struct PerSeg {
    bool ordered = false;
    std::vector<double> value;                  // by user id
    std::vector<bool> has;                      // by user id: a contribution is present
    std::vector<Agg> acc;                       // by account id
    std::vector<std::multiset<double>> values;  // by account id, when ordered
  };
  static void Apply(PerSeg* p, uint32_t account, double v, bool add);
  absl::flat_hash_map<uint32_t, PerSeg> segs_;
};

// The member value X of an aggregate over members: a user trait or a user computed trait. Always
// true (see above); Value() is the user's number, if X has one.
class MemberValueCondition final : public Condition {
 public:
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override { return true; }
  std::string Detail(const EvalContext& ctx, Millis t) const override;
  std::optional<double> Value(const EvalContext& ctx) const;
  bool ordered() const { return ordered_; }

 private:
  friend Result<std::unique_ptr<MemberValueCondition>> CompileMemberValue(
      const rules::MemberAggCond& c, CompileContext* ctx);
  bool ordered_ = false;
  uint32_t key_ = 0;                     // a trait: its key
  std::optional<ComputedRef> computed_;  // a computed trait
};

// Compiles the value X of `c`. Errors: an unknown computed trait (kNotFound).
Result<std::unique_ptr<MemberValueCondition>> CompileMemberValue(const rules::MemberAggCond& c,
                                                                 CompileContext* ctx);

// Compiles `sum(X) of members [(C)] CMP v` through CompileContext::MemberValueSegment. Errors:
// used in a user segment (kInvalidArgument, naming line:col), an unknown computed trait, and
// whatever C fails with.
Result<std::unique_ptr<Condition>> CompileMemberAggLeaf(const rules::MemberAggCond& c,
                                                        CompileContext* ctx);

// The rank source of `top N by sum(X) of members [(C)]`: the account's aggregate over hidden value
// segment `hidden` (MemberValueSegment), one lookup; re-ranked when a member's contribution or the
// links change, like a member count.
std::unique_ptr<RankSource> MakeMemberAggRankSource(uint32_t hidden, rules::AggCond::Fn fn);

// The value of an account computed trait `sum(X) of members [(C)]` (avg, min, max): the same
// lookup as the rank source, as a number (the sum: 0 with no value; the others: no value).
Result<std::unique_ptr<ComputedSource>> CompileMemberAggValue(const rules::MemberAggCond& c,
                                                              CompileContext* ctx);

}  // namespace shoal::engine
