#include "engine/conditions.h"

#include <cmath>

#include "engine/accounts.h"
#include "engine/computed.h"
#include "engine/member_agg.h"
#include "engine/topn.h"
#include "fmt/format.h"
#include "rules/parser.h"

namespace shoal::engine {
namespace {

using rules::CmpOp;

std::string TimeOrNone(std::optional<Millis> t) { return t ? FormatTime(*t) : "none"; }

bool HasRelativeTime(const rules::PropExpr& e) {
  if (e.kind == rules::PropExpr::Kind::kPred) {
    return e.pred.kind == rules::ValuePred::Kind::kTime &&
           (e.pred.time.from.kind == rules::TimeBound::Kind::kRelative ||
            e.pred.time.to.kind == rules::TimeBound::Kind::kRelative);
  }
  for (const auto& c : e.children)
    if (HasRelativeTime(c)) return true;
  return false;
}

class TraitCondition final : public Condition {
 public:
  TraitCondition(const rules::ValuePred& p, store::Store* s) : pred_(p, s) {
    trait_keys.push_back(pred_.key());
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    const TraitSlot* slot = ctx.profile.Find(pred_.key());
    return pred_.Eval(slot ? &slot->value : nullptr, t, ctx.store, next);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    const TraitSlot* slot = ctx.profile.Find(pred_.key());
    if (!slot || slot->value.type == ValueType::kNull) return "no value";
    const store::StoredValue& v = slot->value;
    switch (v.type) {
      case ValueType::kBool:
        return v.b ? "value = true" : "value = false";
      case ValueType::kNumber:
        return fmt::format("value = {}", v.num);
      default:
        return fmt::format("value = \"{}\"", ctx.store.strings().Get(v.str));
    }
  }

 private:
  CompiledPred pred_;
};

class TraitHistoryCondition final : public Condition {
 public:
  TraitHistoryCondition(const rules::TraitHistoryCond& c, store::Store* s)
      : pred_(c.pred, s), at_least_(c.at_least), duration_(c.duration) {
    // "Since" counts identifies that do not mention the path too.
    every_identify = true;
  }
  // The instant from which the predicate has held through every later identify, if it holds now.
  std::optional<Millis> Since(const EvalContext& ctx, Millis t, Millis* next) const {
    std::vector<std::pair<Millis, uint32_t>> order;
    order.reserve(ctx.profile.identifies.size());
    for (uint32_t idx : ctx.profile.identifies) order.push_back({ctx.store.ts(idx), idx});
    std::sort(order.begin(), order.end());
    std::optional<store::StoredValue> cur;
    std::optional<Millis> since;
    for (auto [ts, idx] : order) {
      if (auto v = ctx.store.Find(idx, pred_.key())) cur = *v;
      bool holds = pred_.Eval(cur ? &*cur : nullptr, t, ctx.store, next);
      if (!holds)
        since.reset();
      else if (!since)
        since = ts;
    }
    return since;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    std::optional<Millis> since = Since(ctx, t, next);
    if (!since) return false;
    Millis flip = *since + duration_;  // t - since >= d  <=>  t >= since + d
    if (flip > t) *next = std::min(*next, flip);
    return at_least_ ? t >= flip : t < flip;
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    Millis ignore = kMaxTime;
    std::optional<Millis> since = Since(ctx, t, &ignore);
    return since ? fmt::format("true since {}", FormatTime(*since)) : "not true now";
  }

 private:
  CompiledPred pred_;
  bool at_least_;
  Millis duration_;
};

class CountCondition final : public Condition {
 public:
  CountCondition(Series* s, const rules::CountCond& c) : s_(s), w_(c.window), op_(c.op), n_(c.n) {
    series.push_back(s);
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    int64_t c = static_cast<int64_t>(hi - lo);
    const bool truth = CompareNumbers<__int128>(c, n_, op_);
    if (w_.Sliding() && op_ != rules::CmpOp::kEq && op_ != rules::CmpOp::kNe) {
      // The comparison is c >= m or c <= m: it flips when the count has moved far enough one way.
      const bool at_least = op_ == rules::CmpOp::kGe || op_ == rules::CmpOp::kGt;
      const __int128 m =
          __int128{n_} + (op_ == rules::CmpOp::kGt ? 1 : 0) - (op_ == rules::CmpOp::kLt ? 1 : 0);
      // How far: at least 1 (the comparison holds or fails by at least that), at most one more
      // than the entries there are (then it never flips).
      auto by = [&](__int128 d) {
        return static_cast<uint64_t>(std::clamp<__int128>(d, 1, __int128(tl.size()) + 1));
      };
      const Millis at = at_least == truth
                            ? w_.FirstNetDrop(tl, lo, hi, by(at_least ? c - m + 1 : c - m))
                            : w_.FirstNetRise(tl, lo, hi, by(at_least ? m - c : m + 1 - c));
      *next = std::min(*next, at);
      return truth;
    }
    // Otherwise (= and !=, absolute bounds) walk the instants at which entries leave (oldest first)
    // and enter (earliest first) until the comparison flips. Bounded: after kMaxSteps the instant
    // reached is a safe re-check time.
    constexpr int kMaxSteps = 64;
    size_t i = lo, j = hi;
    Millis at = kMaxTime;
    for (int step = 0; step < kMaxSteps; ++step) {
      Millis leave = i < j ? w_.LeaveAt(tl[i].ts) : kMaxTime;
      Millis enter = j < tl.size() ? w_.EnterAt(tl[j].ts) : kMaxTime;
      at = std::min(leave, enter);
      if (at == kMaxTime) return truth;
      while (i < j && w_.LeaveAt(tl[i].ts) == at) {
        --c;
        ++i;
      }
      while (j < tl.size() && w_.EnterAt(tl[j].ts) == at) {
        ++c;
        ++j;
      }
      if (CompareNumbers<__int128>(c, n_, op_) != truth) break;
    }
    *next = std::min(*next, at);
    return truth;
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    std::string d = fmt::format("count = {}", hi - lo);
    if (hi > lo) d += fmt::format(", last at {}", FormatTime(tl[hi - 1].ts));
    return d;
  }

 private:
  Series* s_;
  Window w_;
  CmpOp op_;
  int64_t n_;
};

class AggCondition final : public Condition {
 public:
  AggCondition(Series* s, const rules::AggCond& c, store::Store* st)
      : s_(s), w_(c.window), fn_(c.fn), op_(c.op), value_(c.value), fixed_(Fixed(c.value)) {
    std::string path;
    for (size_t i = 0; i < c.prop.size(); ++i) path += (i ? "." : "") + c.prop[i];
    key_ = st->keys().Intern(path);
    series.push_back(s);
  }
  struct Agg {
    __int128 sum = 0;
    int64_t n = 0;
    double min = 0, max = 0;
    int64_t distinct = 0;
  };
  Agg Compute(const EvalContext& ctx, const Timeline& tl, size_t lo, size_t hi) const {
    Agg a;
    std::vector<std::pair<uint8_t, uint64_t>> seen;
    if (fn_ != rules::AggCond::Fn::kDistinct) {
      for (size_t k = lo; k < hi; ++k) {
        double x = tl.value(k);
        if (std::isnan(x)) continue;
        a.sum += Fixed(x);
        a.min = a.n == 0 ? x : std::min(a.min, x);
        a.max = a.n == 0 ? x : std::max(a.max, x);
        ++a.n;
      }
      return a;
    }
    // distinct: typed values; strings and lists compare by their interned id.
    for (size_t k = lo; k < hi; ++k) {
      auto v = ctx.store.Find(tl[k].idx, key_);
      if (!v || v->type == ValueType::kNull) continue;
      uint64_t bits = 0;
      if (v->type == ValueType::kNumber) {
        double d = v->num == 0 ? 0.0 : v->num;  // -0 and 0 are one value
        std::memcpy(&bits, &d, 8);
      } else if (v->type == ValueType::kBool) {
        bits = v->b;
      } else {
        bits = v->str;
      }
      seen.push_back({static_cast<uint8_t>(v->type), bits});
    }
    if (!seen.empty()) {
      std::sort(seen.begin(), seen.end());
      a.distinct = std::unique(seen.begin(), seen.end()) - seen.begin();
    }
    return a;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    *next = std::min(*next, w_.NextBoundary(tl, lo, hi));
    Agg a = Compute(ctx, tl, lo, hi);
    switch (fn_) {
      case rules::AggCond::Fn::kSum:
        return CompareNumbers<__int128>(a.sum, fixed_, op_);
      case rules::AggCond::Fn::kAvg:
        return a.n > 0 && CompareNumbers<__int128>(a.sum, static_cast<__int128>(fixed_) * a.n, op_);
      case rules::AggCond::Fn::kMin:
        return a.n > 0 && CompareNumbers<double>(a.min, value_, op_);
      case rules::AggCond::Fn::kMax:
        return a.n > 0 && CompareNumbers<double>(a.max, value_, op_);
      case rules::AggCond::Fn::kDistinct:
        return CompareNumbers<double>(static_cast<double>(a.distinct), value_, op_);
    }
    return false;
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    Agg a = Compute(ctx, tl, lo, hi);
    switch (fn_) {
      case rules::AggCond::Fn::kSum:
        return fmt::format("sum = {} over {} events", FormatFixed(a.sum), hi - lo);
      case rules::AggCond::Fn::kAvg:
        return a.n ? fmt::format("avg = {} over {} values", static_cast<double>(a.sum) / 1e6 / a.n,
                                 a.n)
                   : "avg = no value";
      case rules::AggCond::Fn::kMin:
        return a.n ? fmt::format("min = {}", a.min) : "min = no value";
      case rules::AggCond::Fn::kMax:
        return a.n ? fmt::format("max = {}", a.max) : "max = no value";
      case rules::AggCond::Fn::kDistinct:
        return fmt::format("distinct = {}", a.distinct);
    }
    return "";
  }

 private:
  Series* s_;
  Window w_;
  rules::AggCond::Fn fn_;
  CmpOp op_;
  double value_;
  int64_t fixed_;
  uint32_t key_;
};

class FirstLastCondition final : public Condition {
 public:
  FirstLastCondition(Series* s, const rules::FirstLastCond& c) : s_(s), first_(c.first) {
    when_.range = c.when;
    series.push_back(s);
  }
  // The first/last time before t, and lowers *next to when it can change.
  std::optional<Millis> Instant(const Timeline& tl, Millis t, Millis* next) const {
    auto by_ts = [](const Entry& e, Millis x) { return e.ts < x; };
    size_t hi = std::lower_bound(tl.begin(), tl.end(), t, by_ts) - tl.begin();
    if (hi < tl.size() && (first_ ? hi == 0 : true)) *next = std::min(*next, tl[hi].ts + 1);
    if (hi == 0) return std::nullopt;
    return first_ ? tl[0].ts : tl[hi - 1].ts;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    std::optional<Millis> x = Instant(s_->Get(ctx.pid), t, next);
    return x && when_.Contains(*x, t, next);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    Millis ignore = kMaxTime;
    return fmt::format("{} = {}", first_ ? "first" : "last",
                       TimeOrNone(Instant(s_->Get(ctx.pid), t, &ignore)));
  }

 private:
  Series* s_;
  bool first_;
  TimeSpec when_;
};

class LastEventCondition final : public Condition {
 public:
  LastEventCondition(Series* s, const rules::LastEventCond& c, store::Store* st)
      : s_(s), w_(c.window), has_(c.has, st) {
    series.push_back(s);
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    *next = std::min(*next, w_.NextBoundary(tl, lo, hi));
    return hi > lo && has_.Eval(ctx.store.props(tl[hi - 1].idx), t, ctx.store);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    return hi > lo ? fmt::format("last at {}", FormatTime(tl[hi - 1].ts)) : "no such event";
  }

 private:
  Series* s_;
  Window w_;
  CompiledFilter has_;
};

class SequenceCondition final : public Condition {
 public:
  SequenceCondition(Series* a, Series* b, const rules::SequenceCond& c)
      : a_(a), b_(b), within_(c.within), w_(c.window) {
    series = {a, b};
  }
  // The first matching pair (a.ts, b.ts), if any.
  std::optional<std::pair<Millis, Millis>> Find(const EvalContext& ctx, Millis t,
                                                Millis* next) const {
    const Timeline& ta = a_->Get(ctx.pid);
    const Timeline& tb = b_->Get(ctx.pid);
    auto [alo, ahi] = w_.Range(ta, t);
    auto [blo, bhi] = w_.Range(tb, t);
    *next = std::min({*next, w_.NextBoundary(ta, alo, ahi), w_.NextBoundary(tb, blo, bhi)});
    size_t p = alo;
    for (size_t k = blo; k < bhi; ++k) {
      Millis bt = tb[k].ts;
      while (p < ahi && ta[p].ts < bt) ++p;  // ta[p-1] is the latest A before this B
      if (p > alo && ta[p - 1].ts >= bt - within_) return std::make_pair(ta[p - 1].ts, bt);
    }
    return std::nullopt;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    return Find(ctx, t, next).has_value();
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    Millis ignore = kMaxTime;
    auto pair = Find(ctx, t, &ignore);
    return pair ? fmt::format("first at {}, then at {}", FormatTime(pair->first),
                              FormatTime(pair->second))
                : "no such pair";
  }

 private:
  Series* a_;
  Series* b_;
  Millis within_;
  Window w_;
};

class NotFollowedCondition final : public Condition {
 public:
  NotFollowedCondition(Series* a, Series* b, const rules::NotFollowedCond& c)
      : a_(a), b_(b), w_(c.window), within_(c.within) {
    series = {a, b};
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    const Timeline& ta = a_->Get(ctx.pid);
    auto [alo, ahi] = w_.Range(ta, t);
    *next = std::min(*next, w_.NextBoundary(ta, alo, ahi));
    if (alo == ahi) return false;
    Millis a = ta[ahi - 1].ts;
    const Timeline& tb = b_->Get(ctx.pid);
    auto after = std::upper_bound(tb.begin(), tb.end(), a,
                                  [](Millis x, const Entry& e) { return x < e.ts; });
    if (!within_) {
      if (after == tb.end()) return true;
      if (after->ts < t) return false;
      *next = std::min(*next, after->ts + 1);  // that B arrives in the past at ts + 1
      return true;
    }
    Millis deadline = a + *within_;
    if (t <= deadline) {
      *next = std::min(*next, deadline + 1);
      return false;
    }
    return after == tb.end() || after->ts > deadline;
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    const Timeline& ta = a_->Get(ctx.pid);
    auto [alo, ahi] = w_.Range(ta, t);
    if (alo == ahi) return "no first event in the window";
    Millis a = ta[ahi - 1].ts;
    const Timeline& tb = b_->Get(ctx.pid);
    auto after = std::upper_bound(tb.begin(), tb.end(), a,
                                  [](Millis x, const Entry& e) { return x < e.ts; });
    return fmt::format("latest first event at {}, next follow-up {}", FormatTime(a),
                       after == tb.end() ? std::string("none") : FormatTime(after->ts));
  }

 private:
  Series* a_;
  Series* b_;
  Window w_;
  std::optional<Millis> within_;
};

class SegmentRefCondition final : public Condition {
 public:
  explicit SegmentRefCondition(uint32_t id) : id_(id) { segment_refs.push_back(id); }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    return ctx.is_member(id_, ctx.pid);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    return ctx.is_member(id_, ctx.pid) ? "member" : "not a member";
  }

 private:
  uint32_t id_;
};

// Membership never changes with time alone: a list change re-evaluates it (list_refs).
class ListRefCondition final : public Condition {
 public:
  explicit ListRefCondition(uint32_t id) : id_(id) { list_refs.push_back(id); }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    return ctx.in_list(id_, ctx.pid);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    return ctx.in_list(id_, ctx.pid) ? "in the list" : "not in the list";
  }

 private:
  uint32_t id_;
};

class BucketCondition final : public Condition {
 public:
  // `account`: the id is an account's, hashed by its groupId.
  BucketCondition(const rules::BucketCond& c, bool account) : c_(c), account_(account) {}
  int64_t Bucket(const EvalContext& ctx) const {
    return rules::BucketOf(
        account_ ? ctx.store.accounts().Get(ctx.pid) : ctx.store.profiles().Get(ctx.pid), c_.salt,
        c_.buckets);
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    return CompareNumbers<__int128>(Bucket(ctx), c_.value, c_.op);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    return fmt::format("bucket = {}", Bucket(ctx));
  }

 private:
  rules::BucketCond c_;
  bool account_;
};

Status CheckFilter(const rules::EventSpec& e) {
  if (e.filter && HasRelativeTime(*e.filter))
    return Status::InvalidArgument(
        "a relative time predicate (within / ago) cannot filter events: an event's filter is "
        "decided once, when it arrives; use an absolute time or a window instead");
  return Status::Ok();
}

}  // namespace

Status CheckEventFilter(const rules::EventSpec& e) { return CheckFilter(e); }

Result<std::unique_ptr<Condition>> CompileLeaf(const rules::Leaf& leaf, CompileContext* ctx) {
  store::Store* st = ctx->store();
  if (const auto* top = std::get_if<rules::TopNCond>(&leaf)) {
    auto rank = ctx->RankSegment(*top);
    if (!rank.ok()) return rank.status();
    return MakeTopNCondition(rank->first, rank->second, *top);
  }
  if (const auto* computed = std::get_if<rules::ComputedTraitCond>(&leaf))
    return CompileComputedLeaf(*computed, ctx);
  if (const auto* agg = std::get_if<rules::MemberAggCond>(&leaf))
    return CompileMemberAggLeaf(*agg, ctx);
  if (std::holds_alternative<rules::MemberCond>(leaf) ||
      std::holds_alternative<rules::AccountSegmentCond>(leaf) ||
      std::holds_alternative<rules::AccountTraitCond>(leaf))
    return CompileAccountLeaf(leaf, ctx);
  // An account segment's event conditions read the account's own events (the calls sent with
  // its groupId; GetSeries hands out account series) and its bucket hashes the groupId. Lists hold
  // user keys, so they stay user conditions.
  if (ctx->target() == SegmentTarget::kAccounts && std::holds_alternative<rules::ListRefCond>(leaf))
    return Status::InvalidArgument(
        "a static list holds users, not accounts: 'in list' belongs in a member condition such as "
        "'any member (in list \"vip\")'");
  if (const auto* ref = std::get_if<rules::SegmentRefCond>(&leaf)) {
    std::optional<uint32_t> id = ctx->SegmentId(ref->segment);
    if (id && ctx->TargetOf(*id) != ctx->target())
      return Status::InvalidArgument(
          ctx->target() == SegmentTarget::kUsers
              ? "\"" + ref->segment + "\" is an account segment: write 'account in segment \"" +
                    ref->segment + "\"' for the users of its accounts"
              : "\"" + ref->segment + "\" is a user segment: write 'any member (in segment \"" +
                    ref->segment + "\")' for accounts with a member in it");
  }
  return std::visit(
      [&](const auto& c) -> Result<std::unique_ptr<Condition>> {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, rules::TraitCond>) {
          return std::unique_ptr<Condition>(new TraitCondition(c.pred, st));
        } else if constexpr (std::is_same_v<T, rules::TraitHistoryCond>) {
          return std::unique_ptr<Condition>(new TraitHistoryCondition(c, st));
        } else if constexpr (std::is_same_v<T, rules::CountCond>) {
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.event));
          return std::unique_ptr<Condition>(
              new CountCondition(ctx->GetSeries(c.event, std::nullopt, Horizon::Of(c.window)), c));
        } else if constexpr (std::is_same_v<T, rules::AggCond>) {
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.event));
          // sum/avg/min/max read the value inline from the series; distinct needs the typed value
          // and reads the record.
          std::optional<uint32_t> value_key;
          if (c.fn != rules::AggCond::Fn::kDistinct) {
            std::string path;
            for (size_t i = 0; i < c.prop.size(); ++i) path += (i ? "." : "") + c.prop[i];
            value_key = st->keys().Intern(path);
          }
          return std::unique_ptr<Condition>(
              new AggCondition(ctx->GetSeries(c.event, value_key, Horizon::Of(c.window)), c, st));
        } else if constexpr (std::is_same_v<T, rules::FirstLastCond>) {
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.event));
          return std::unique_ptr<Condition>(new FirstLastCondition(ctx->GetSeries(c.event), c));
        } else if constexpr (std::is_same_v<T, rules::LastEventCond>) {
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.event));
          rules::EventSpec has_spec;
          has_spec.filter = c.has;
          SHOAL_RETURN_IF_ERROR(CheckFilter(has_spec));
          return std::unique_ptr<Condition>(new LastEventCondition(
              ctx->GetSeries(c.event, std::nullopt, Horizon::Of(c.window)), c, st));
        } else if constexpr (std::is_same_v<T, rules::SequenceCond>) {
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.first));
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.then));
          // Both events of a pair lie in the window.
          const Horizon keep = Horizon::Of(c.window);
          return std::unique_ptr<Condition>(
              new SequenceCondition(ctx->GetSeries(c.first, std::nullopt, keep),
                                    ctx->GetSeries(c.then, std::nullopt, keep), c));
        } else if constexpr (std::is_same_v<T, rules::NotFollowedCond>) {
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.first));
          SHOAL_RETURN_IF_ERROR(CheckFilter(c.then));
          // Only the latest A in the window counts, and only the Bs after it: neither series
          // needs an entry older than the window's start.
          const Horizon keep = Horizon::Of(c.window);
          return std::unique_ptr<Condition>(
              new NotFollowedCondition(ctx->GetSeries(c.first, std::nullopt, keep),
                                       ctx->GetSeries(c.then, std::nullopt, keep), c));
        } else if constexpr (std::is_same_v<T, rules::SegmentRefCond>) {
          std::optional<uint32_t> id = ctx->SegmentId(c.segment);
          if (!id) return Status::NotFound("unknown segment \"" + c.segment + "\"");
          return std::unique_ptr<Condition>(new SegmentRefCondition(*id));
        } else if constexpr (std::is_same_v<T, rules::ListRefCond>) {
          std::optional<uint32_t> id = ctx->ListId(c.list);
          if (!id) return Status::NotFound("unknown list \"" + c.list + "\"");
          return std::unique_ptr<Condition>(new ListRefCondition(*id));
        } else if constexpr (std::is_same_v<T, rules::BucketCond>) {
          return std::unique_ptr<Condition>(
              new BucketCondition(c, ctx->target() == SegmentTarget::kAccounts));
        } else {
          return Status::Internal("unreachable: account leaf");
        }
      },
      leaf);
}

}  // namespace shoal::engine
