// The abstract syntax of the segment language (docs/language.md is its reference). The parser
// produces it, the printer turns it back into canonical text, and both evaluators (the
// incremental engine and the reference evaluator) consume it. Values in the tree are plain data:
// strings are owned, times are Millis, durations are Millis.
//
// Canonical form: Print(Parse(text)) is the canonical text and Parse(Print(e)) == e for every
// tree the parser can produce. The parser flattens nested and/or of the same kind, so
// "a and (b and c)" is one And with three children.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "shoal/time.h"

namespace shoal::rules {

struct SourcePos {
  int line = 1;  // 1-based
  int col = 1;   // 1-based, in bytes
};

enum class CmpOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };

// A literal in a definition. kTime literals come from unquoted ISO dates (2026-01-02 or
// 2026-01-02T03:04:05Z).
struct Literal {
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kTime };
  Type type = Type::kNull;
  bool b = false;
  double num = 0;
  std::string str;
  Millis time = 0;

  bool operator==(const Literal&) const = default;
};

// One end of a time range. kRelative means "now - ago"; kNone means unbounded on that side.
struct TimeBound {
  enum class Kind : uint8_t { kNone, kRelative, kAbsolute };
  Kind kind = Kind::kNone;
  Millis ms = 0;  // kRelative: how long ago (>= 0); kAbsolute: the instant

  static TimeBound None() { return {}; }
  static TimeBound Ago(Millis d) { return {Kind::kRelative, d}; }
  static TimeBound At(Millis t) { return {Kind::kAbsolute, t}; }
  // The instant this bound denotes at `now`; `unbounded` when kNone.
  Millis Resolve(Millis now, Millis unbounded) const {
    switch (kind) {
      case Kind::kNone:
        return unbounded;
      case Kind::kRelative:
        return now - ms;
      case Kind::kAbsolute:
        return ms;
    }
    return unbounded;
  }
  bool operator==(const TimeBound&) const = default;
};

// The half-open range [from, to). For an event window the range is further cut at now (only
// events with ts < now count), so a window with both ends kNone is "ever".
//   within 30d                      from=Ago(30d) to=Ago(0)
//   between 90d ago and 30d ago     from=Ago(90d) to=Ago(30d)
//   between 2026-01-01 and 2026-02-01  from=At(..) to=At(..)
//   before 30d ago / before DATE    from=None     to=Ago(30d) / At(DATE)
//   after 30d ago / after DATE      from=Ago(30d) / At(DATE)  to=None
struct TimeRange {
  TimeBound from;
  TimeBound to;
  bool IsEver() const {
    return from.kind == TimeBound::Kind::kNone && to.kind == TimeBound::Kind::kNone;
  }
  bool operator==(const TimeRange&) const = default;
};

// A path into traits or properties: "address.city" is {"address", "city"}.
using Path = std::vector<std::string>;

// A predicate on one value at a path. Used for traits (profile conditions) and for event
// properties (inside `where` and `has`).
struct ValuePred {
  enum class Kind : uint8_t {
    kCompare,     // path OP literal                      (op, values[0])
    kBetween,     // path between a and b (inclusive)     (values[0], values[1])
    kIn,          // path in (v1, v2, ...)                (values)
    kNotIn,       // path not in (v1, ...)                (values)
    kContains,    // path contains "s"                    (values[0])
    kStartsWith,  // path starts with "s"                 (values[0])
    kEndsWith,    // path ends with "s"                   (values[0])
    kMatches,     // path matches "regex" (RE2)          (values[0])
    kExists,      // path exists
    kMissing,     // path missing
    kTime,        // path within 7d / before 30d ago / ... (time)
  };
  Kind kind = Kind::kExists;
  Path path;
  CmpOp op = CmpOp::kEq;
  std::vector<Literal> values;
  TimeRange time;
  SourcePos pos;

  bool operator==(const ValuePred& o) const {  // positions are not part of the meaning
    return kind == o.kind && path == o.path && op == o.op && values == o.values && time == o.time;
  }
};

// A boolean tree of value predicates: the filter of an event (`where ...`, `has ...`).
struct PropExpr {
  enum class Kind : uint8_t { kAnd, kOr, kNot, kPred };
  Kind kind = Kind::kPred;
  std::vector<PropExpr> children;  // kAnd/kOr: >= 2; kNot: exactly 1
  ValuePred pred;                  // kPred
  bool operator==(const PropExpr& o) const {
    return kind == o.kind && children == o.children && (kind != Kind::kPred || pred == o.pred);
  }
};

// Which events a condition looks at: a name and an optional filter on their properties.
struct EventSpec {
  std::string name;
  std::optional<PropExpr> filter;  // `where ...`
  bool operator==(const EventSpec&) const = default;
};

// --- Leaf conditions -------------------------------------------------------------------------

// A trait predicate: country = "DE", signup_at within 7d, ...
struct TraitCond {
  ValuePred pred;
  bool operator==(const TraitCond&) const = default;
};

// The trait predicate has been true continuously for at least / less than `duration`:
// plan = "trial" for at least 7d. "Since" is the event time of the identify from which on the
// predicate has been true (traits ordered by identify timestamp).
struct TraitHistoryCond {
  ValuePred pred;
  bool at_least = true;  // false: "for less than"
  Millis duration = 0;
  bool operator==(const TraitHistoryCond&) const = default;
};

// performed EVENT [where F] [CMP N times] [WINDOW]; did not perform EVENT ... is op=kEq, n=0.
// Without a count clause: op=kGe, n=1.
struct CountCond {
  EventSpec event;
  CmpOp op = CmpOp::kGe;
  int64_t n = 1;
  TimeRange window;
  bool operator==(const CountCond&) const = default;
};

// sum(total) of "Order Completed" [where F] [WINDOW] CMP number; also avg, min, max, and
// distinct(prop) = the number of distinct values of prop.
struct AggCond {
  enum class Fn : uint8_t { kSum, kAvg, kMin, kMax, kDistinct };
  Fn fn = Fn::kSum;
  Path prop;
  EventSpec event;
  TimeRange window;
  CmpOp op = CmpOp::kGt;
  double value = 0;
  bool operator==(const AggCond&) const = default;
};

// first performed EVENT [where F] TIMEPRED; last performed EVENT [where F] TIMEPRED.
// The first (last) time is the min (max) ts of matching events with ts < now.
struct FirstLastCond {
  bool first = true;
  EventSpec event;
  TimeRange when;  // the time predicate on that instant; never "ever"
  bool operator==(const FirstLastCond&) const = default;
};

// last event EVENT [where F] [WINDOW] has FILTER: the latest matching event in the window
// (ties: the one that arrived last) exists and satisfies FILTER.
struct LastEventCond {
  EventSpec event;
  TimeRange window;
  PropExpr has;
  bool operator==(const LastEventCond&) const = default;
};

// performed A then B within T [WINDOW]: there are a, b in the window with a.ts < b.ts <= a.ts+T.
struct SequenceCond {
  EventSpec first;
  EventSpec then;
  Millis within = 0;
  TimeRange window;
  bool operator==(const SequenceCond&) const = default;
};

// performed A [WINDOW] not followed by B [within T]. Let a be the latest A in the window.
// Without T: true iff a exists and no B has a.ts < b.ts < now.
// With T: true iff a exists, now > a.ts + T, and no B has a.ts < b.ts <= a.ts + T.
struct NotFollowedCond {
  EventSpec first;
  TimeRange window;
  EventSpec then;
  std::optional<Millis> within;
  bool operator==(const NotFollowedCond&) const = default;
};

// in segment "name"
struct SegmentRefCond {
  std::string segment;
  bool operator==(const SegmentRefCond&) const = default;
};

// in list "name": the profile's key is in the static list (Engine::CreateList).
struct ListRefCond {
  std::string list;
  bool operator==(const ListRefCond&) const = default;
};

// bucket(N [, "salt"]) CMP k: a stable pseudo-random bucket in [0, N) of the profile key.
struct BucketCond {
  int64_t buckets = 100;
  std::string salt;
  CmpOp op = CmpOp::kLt;
  int64_t value = 0;
  bool operator==(const BucketCond&) const = default;
};

struct Expr;

// --- Account conditions (docs/language.md, "Accounts")
// --------------------------------------------

// In an account segment: how many of the account's members (its linked users) satisfy a user
// condition. `at least 3 members (performed "Email Clicked" within 14d)` is {kCount, kGe, 3};
// `any member (C)` is {kCount, kGe, 1}; `no member (C)` is {kCount, kEq, 0}; `all members (C)`
// is {kAll}: the account has at least one member and every member satisfies C.
struct MemberCond {
  enum class Kind : uint8_t { kCount, kAll };
  Kind kind = Kind::kCount;
  CmpOp op = CmpOp::kGe;
  int64_t n = 1;
  std::shared_ptr<const Expr> user;  // the user condition; never null, immutable once parsed
  bool operator==(const MemberCond& o) const;
};

// In an account segment: an aggregate of a value over the account's members,
// `sum(spend) of members (title = "buyer") > 10000`, also avg, min and max (never distinct). The
// value is the user trait at `prop`, or with `computed` the user computed trait named by `prop`
// (`sum(computed.ltv_90d) of members`). `user`, when set, restricts the members that count
// (`of members (C)`); null counts every member. `pos` is where the condition starts, for the
// error in a user segment; it is not part of the meaning.
struct MemberAggCond {
  AggCond::Fn fn = AggCond::Fn::kSum;
  Path prop;
  bool computed = false;
  std::shared_ptr<const Expr> user;  // may be null; immutable once parsed
  CmpOp op = CmpOp::kGt;
  double value = 0;
  SourcePos pos;
  bool operator==(const MemberAggCond& o) const;
};

// In a user segment: `account in segment "S"`, true when any of the user's accounts is a member
// of account segment S.
struct AccountSegmentCond {
  std::string segment;
  bool operator==(const AccountSegmentCond&) const = default;
};

// In a user segment: `account.industry = "Fintech"`, true when the predicate holds on the traits
// of any of the user's accounts. pred.path is the account trait's path (without "account").
struct AccountTraitCond {
  ValuePred pred;
  bool operator==(const AccountTraitCond&) const = default;
};

// --- Computed traits (docs/language.md, "Computed traits and scores") -------------------------

// In a user segment: `computed.lifetime_value > 500`, a value predicate on the profile's current
// value of a computed trait. pred.path is the computed trait's name (one name: computed trait
// names are plain identifiers), so the predicate forms and missing/type rules are the traits'.
struct ComputedTraitCond {
  ValuePred pred;
  bool operator==(const ComputedTraitCond&) const = default;
};

// --- Top-N and percentiles (docs/language.md, "Top-N and percentiles") -----------------------

// top N by VALUE, top P% by VALUE, bottom ...: the profile is among the first N (or the first
// ceil(P/100 x R)) of the R known profiles (accounts) of the segment's target that have a value,
// ordered by value descending (ascending for bottom), ties by key ascending.
struct TopNCond {
  // What the ranking is by. kTrait: a numeric trait (`top 1000 by lifetime_value`), in `path`.
  // kAgg: an aggregate of events (`top 10% by sum(total) of "Order Completed" within 90d`), in
  // `agg` (fn, prop, event, window). kMembers: in account segments, how many members satisfy a
  // user condition (`top 100 by members (performed "Login" within 30d)`), in `members`.
  // kCount: the number of events (`top 1000 by count of "Login" within 30d`), in `agg` (event,
  // window; fn and prop unused). kComputed: in user segments, a computed trait's current value
  // (`top 10% by computed.lifetime_value`), its name in `path` (one name). kMemberAgg: in account
  // segments, an aggregate over members' values (`top 10 by sum(computed.ltv_90d) of members`),
  // in `member_agg` (its op and value stay at their defaults).
  enum class Source : uint8_t { kTrait, kAgg, kMembers, kCount, kComputed, kMemberAgg };
  bool bottom = false;
  bool percent = false;
  int64_t n = 1;     // !percent: N >= 1
  double pct = 100;  // percent: 0 < P <= 100, at most 6 decimals
  Source source = Source::kTrait;
  Path path;
  AggCond agg;                              // kAgg; op and value stay at their defaults
  std::shared_ptr<const Expr> members;      // kMembers: the user condition; never null there
  std::optional<MemberAggCond> member_agg;  // kMemberAgg
  bool operator==(const TopNCond& o) const;
};

using Leaf =
    std::variant<TraitCond, TraitHistoryCond, CountCond, AggCond, FirstLastCond, LastEventCond,
                 SequenceCond, NotFollowedCond, SegmentRefCond, BucketCond, ListRefCond, MemberCond,
                 AccountSegmentCond, AccountTraitCond, TopNCond, ComputedTraitCond, MemberAggCond>;

// A segment definition: a boolean tree of leaf conditions.
struct Expr {
  enum class Kind : uint8_t { kAnd, kOr, kNot, kLeaf };
  Kind kind = Kind::kLeaf;
  std::vector<Expr> children;  // kAnd/kOr: >= 2; kNot: exactly 1
  Leaf leaf;                   // kLeaf
  SourcePos pos;

  bool operator==(const Expr& o) const {
    return kind == o.kind && children == o.children && (kind != Kind::kLeaf || leaf == o.leaf);
  }
};

inline bool MemberCond::operator==(const MemberCond& o) const {
  return kind == o.kind && op == o.op && n == o.n &&
         (user == o.user || (user && o.user && *user == *o.user));
}

inline bool MemberAggCond::operator==(const MemberAggCond& o) const {
  return fn == o.fn && prop == o.prop && computed == o.computed && op == o.op && value == o.value &&
         (user == o.user || (user && o.user && *user == *o.user));
}

inline bool TopNCond::operator==(const TopNCond& o) const {
  return bottom == o.bottom && percent == o.percent && n == o.n && pct == o.pct &&
         source == o.source && path == o.path && agg == o.agg &&
         (members == o.members || (members && o.members && *members == *o.members)) &&
         member_agg == o.member_agg;
}

// A value over a profile's matching events in a window: `count of E [window]`,
// `sum(p) of E [window]` (avg, min, max), `distinct(p)` (how many distinct values), `unique(p)`
// (the list of distinct values), `first(p)` / `last(p)` (p of the earliest / latest event) and
// `most frequent(p)`.
struct ComputedValueDef {
  enum class Fn : uint8_t {
    kCount,
    kSum,
    kAvg,
    kMin,
    kMax,
    kDistinct,
    kUnique,
    kFirst,
    kLast,
    kMostFrequent
  };
  Fn fn = Fn::kCount;
  Path prop;  // empty for kCount
  EventSpec event;
  TimeRange window;
  bool operator==(const ComputedValueDef&) const = default;
};

// One term of a score: `25 points if performed "Demo Requested"`; points may be negative.
struct ScoreTerm {
  double points = 0;
  Expr cond;
  bool operator==(const ScoreTerm&) const = default;
};

// The definition of a computed trait: a value over events, or a score (the sum of the points of
// the terms whose condition is true).
struct ComputedDef {
  // kMemberAgg: an account computed trait's `sum(X) of members [(C)]` (avg, min, max): the
  // aggregate over the account's members' values, as the account condition reads it.
  enum class Kind : uint8_t { kValue, kScore, kMemberAgg };
  Kind kind = Kind::kValue;
  ComputedValueDef value;        // kValue
  std::vector<ScoreTerm> terms;  // kScore: at least one
  MemberAggCond member_agg;      // kMemberAgg: op and value unused
  bool operator==(const ComputedDef&) const = default;
};

// The language's word for an aggregate function: "sum", "avg", "min", "max", "distinct".
const char* AggName(AggCond::Fn fn);

// The stable bucket of a profile key: xxh3_64(salt + "\x1f" + key) % buckets.
int64_t BucketOf(std::string_view profile_key, std::string_view salt, int64_t buckets);

}  // namespace shoal::rules
