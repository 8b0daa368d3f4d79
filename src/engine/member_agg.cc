#include "engine/member_agg.h"

#include <cmath>
#include <string>

#include "engine/accounts.h"
#include "engine/computed.h"
#include "engine/topn.h"
#include "fmt/format.h"

namespace shoal::engine {

namespace {

// The account condition: one lookup of the account's aggregate. It changes only when a member's
// contribution or the links change, both of which re-evaluate the account (the hidden segment's
// dependents, member_links): no deadline of its own, as for member counts.
class MemberAggCondition final : public Condition {
 public:
  MemberAggCondition(uint32_t hidden, const rules::MemberAggCond& c)
      : hidden_(hidden), fn_(c.fn), op_(c.op), value_(c.value), fixed_(Fixed(c.value)) {
    segment_refs.push_back(hidden);
    member_links = true;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    if (!ctx.accounts)
      return fn_ == rules::AggCond::Fn::kSum && CompareNumbers<__int128>(0, fixed_, op_);
    const MemberAggregates& m = ctx.accounts->aggregates();
    switch (fn_) {
      case rules::AggCond::Fn::kSum:
        return CompareNumbers<__int128>(m.Get(hidden_, ctx.pid).sum, fixed_, op_);
      case rules::AggCond::Fn::kAvg: {
        MemberAggregates::Agg a = m.Get(hidden_, ctx.pid);
        return a.n > 0 && CompareNumbers<__int128>(a.sum, static_cast<__int128>(fixed_) * a.n, op_);
      }
      case rules::AggCond::Fn::kMin: {
        std::optional<double> v = m.Min(hidden_, ctx.pid);
        return v && CompareNumbers(*v, value_, op_);
      }
      default: {
        std::optional<double> v = m.Max(hidden_, ctx.pid);
        return v && CompareNumbers(*v, value_, op_);
      }
    }
  }
  // "sum = 12500 over 3 of 5 members": the aggregate and how many members have a value.
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    if (!ctx.accounts) return "no members";
    const MemberAggregates& m = ctx.accounts->aggregates();
    MemberAggregates::Agg a = m.Get(hidden_, ctx.pid);
    const size_t total = ctx.accounts->UsersOf(ctx.pid).size();
    std::string value;
    switch (fn_) {
      case rules::AggCond::Fn::kSum:
        value = FormatFixed(a.sum);
        break;
      case rules::AggCond::Fn::kAvg:
        value = a.n ? fmt::format("{}", static_cast<double>(a.sum) / 1e6 / a.n) : "no value";
        break;
      case rules::AggCond::Fn::kMin: {
        std::optional<double> v = m.Min(hidden_, ctx.pid);
        value = v ? fmt::format("{}", *v) : "no value";
        break;
      }
      default: {
        std::optional<double> v = m.Max(hidden_, ctx.pid);
        value = v ? fmt::format("{}", *v) : "no value";
      }
    }
    return fmt::format("{} = {} over {} of {} members", rules::AggName(fn_), value, a.n, total);
  }

 private:
  uint32_t hidden_;
  rules::AggCond::Fn fn_;
  rules::CmpOp op_;
  double value_;
  int64_t fixed_;
};

class MemberAggRankSource final : public RankSource {
 public:
  MemberAggRankSource(uint32_t hidden, rules::AggCond::Fn fn) : hidden_(hidden), fn_(fn) {
    segment_refs.push_back(hidden);
    member_links = true;
  }
  std::optional<double> Value(const EvalContext& ctx, Millis, Millis*) const override {
    if (!ctx.accounts)
      return fn_ == rules::AggCond::Fn::kSum ? std::optional<double>(0.0) : std::nullopt;
    return ctx.accounts->aggregates().Value(hidden_, ctx.pid, fn_);
  }
  std::string_view Name() const override { return rules::AggName(fn_); }

 private:
  uint32_t hidden_;
  rules::AggCond::Fn fn_;
};

class MemberAggValueSource final : public ComputedSource {
 public:
  MemberAggValueSource(uint32_t hidden, rules::AggCond::Fn fn) : hidden_(hidden), fn_(fn) {
    segment_refs.push_back(hidden);
    member_links = true;
  }
  store::StoredValue Value(const EvalContext& ctx, Millis, Millis*) const override {
    std::optional<double> v =
        ctx.accounts
            ? ctx.accounts->aggregates().Value(hidden_, ctx.pid, fn_)
            : (fn_ == rules::AggCond::Fn::kSum ? std::optional<double>(0.0) : std::nullopt);
    store::StoredValue out;
    if (!v) return out;
    out.type = ValueType::kNumber;
    out.num = *v == 0 ? 0.0 : *v;  // -0 and 0 are one value
    return out;
  }

 private:
  uint32_t hidden_;
  rules::AggCond::Fn fn_;
};

}  // namespace

Result<std::unique_ptr<ComputedSource>> CompileMemberAggValue(const rules::MemberAggCond& c,
                                                              CompileContext* ctx) {
  if (ctx->target() != SegmentTarget::kAccounts)
    return Status::InvalidArgument(fmt::format(
        "{}:{}: '{}(...) of members' is a value per account: create the computed trait with "
        "target accounts",
        c.pos.line, c.pos.col, rules::AggName(c.fn)));
  auto id = ctx->MemberValueSegment(c);
  if (!id.ok()) return id.status();
  return std::unique_ptr<ComputedSource>(new MemberAggValueSource(*id, c.fn));
}

std::unique_ptr<RankSource> MakeMemberAggRankSource(uint32_t hidden, rules::AggCond::Fn fn) {
  return std::make_unique<MemberAggRankSource>(hidden, fn);
}

void MemberAggregates::Add(uint32_t seg, bool ordered) { segs_[seg].ordered = ordered; }

void MemberAggregates::Apply(PerSeg* p, uint32_t account, double v, bool add) {
  if (p->acc.size() <= account) p->acc.resize(account + 1);
  Agg& a = p->acc[account];
  a.sum += add ? Fixed(v) : -Fixed(v);
  a.n += add ? 1 : -1;  // never below 0: a removal follows its addition
  if (!p->ordered) return;
  if (p->values.size() <= account) p->values.resize(account + 1);
  std::multiset<double>& vals = p->values[account];
  if (add) {
    vals.insert(v);
  } else {
    auto it = vals.find(v);
    if (it != vals.end()) vals.erase(it);
  }
}

bool MemberAggregates::Set(uint32_t seg, uint32_t user, std::optional<double> v,
                           std::span<const uint32_t> accounts) {
  auto it = segs_.find(seg);
  if (it == segs_.end()) return false;
  PerSeg& p = it->second;
  const bool has = v.has_value() && !std::isnan(*v);
  const double x = has && *v != 0 ? *v : 0.0;  // -0 and 0 are one value
  const bool had = user < p.has.size() && p.has[user];
  if (had == has && (!had || p.value[user] == x)) return false;
  if (p.has.size() <= user) {
    p.has.resize(user + 1, false);
    p.value.resize(user + 1, 0);
  }
  for (uint32_t a : accounts) {
    if (had) Apply(&p, a, p.value[user], false);
    if (has) Apply(&p, a, x, true);
  }
  p.has[user] = has;
  p.value[user] = x;
  return true;
}

void MemberAggregates::OnLink(uint32_t user, uint32_t account) {
  for (auto& [seg, p] : segs_)
    if (user < p.has.size() && p.has[user]) Apply(&p, account, p.value[user], true);
}

void MemberAggregates::OnUnlink(uint32_t user, std::span<const uint32_t> accounts) {
  for (auto& [seg, p] : segs_) {
    if (user >= p.has.size() || !p.has[user]) continue;
    for (uint32_t a : accounts) Apply(&p, a, p.value[user], false);
    p.has[user] = false;
    p.value[user] = 0;
  }
}

MemberAggregates::Agg MemberAggregates::Get(uint32_t seg, uint32_t account) const {
  auto it = segs_.find(seg);
  if (it == segs_.end() || account >= it->second.acc.size()) return {};
  return it->second.acc[account];
}

std::optional<double> MemberAggregates::Min(uint32_t seg, uint32_t account) const {
  auto it = segs_.find(seg);
  if (it == segs_.end() || account >= it->second.values.size() ||
      it->second.values[account].empty())
    return std::nullopt;
  return *it->second.values[account].begin();
}

std::optional<double> MemberAggregates::Max(uint32_t seg, uint32_t account) const {
  auto it = segs_.find(seg);
  if (it == segs_.end() || account >= it->second.values.size() ||
      it->second.values[account].empty())
    return std::nullopt;
  return *it->second.values[account].rbegin();
}

std::optional<double> MemberAggregates::Value(uint32_t seg, uint32_t account,
                                              rules::AggCond::Fn fn) const {
  const Agg a = Get(seg, account);
  switch (fn) {
    case rules::AggCond::Fn::kSum:
      return static_cast<double>(a.sum) / 1e6;
    case rules::AggCond::Fn::kAvg:
      if (a.n == 0) return std::nullopt;
      return static_cast<double>(a.sum) / static_cast<double>(a.n) / 1e6;
    case rules::AggCond::Fn::kMin:
      return Min(seg, account);
    default:
      return Max(seg, account);
  }
}

size_t MemberAggregates::MemoryBytes() const {
  size_t n = 0;
  for (const auto& [seg, p] : segs_) {
    n += p.value.capacity() * 8 + p.has.capacity() / 8 + p.acc.capacity() * sizeof(Agg) +
         p.values.capacity() * sizeof(std::multiset<double>);
    for (const auto& v : p.values) n += v.size() * 48;  // a red-black tree node
  }
  return n;
}

std::string MemberValueCondition::Detail(const EvalContext& ctx, Millis t) const {
  std::optional<double> v = Value(ctx);
  return v ? fmt::format("value = {}", *v) : "no value";
}

std::optional<double> MemberValueCondition::Value(const EvalContext& ctx) const {
  if (computed_) return computed_->number ? computed_->number(ctx.pid) : std::nullopt;
  const TraitSlot* slot = ctx.profile.Find(key_);
  if (!slot || slot->value.type != ValueType::kNumber) return std::nullopt;
  return slot->value.num;
}

Result<std::unique_ptr<MemberValueCondition>> CompileMemberValue(const rules::MemberAggCond& c,
                                                                 CompileContext* ctx) {
  auto v = std::make_unique<MemberValueCondition>();
  v->ordered_ = c.fn == rules::AggCond::Fn::kMin || c.fn == rules::AggCond::Fn::kMax;
  const std::string name = JoinPath(c.prop);
  if (c.computed) {
    std::optional<ComputedRef> ref = ctx->ComputedTrait(name);
    if (!ref) return Status::NotFound("unknown computed trait \"" + name + "\"");
    v->segment_refs.push_back(ref->id);  // every change of its value re-evaluates the member
    v->computed_ = std::move(ref);
  } else {
    v->key_ = ctx->store()->keys().Intern(name);
    v->trait_keys.push_back(v->key_);
  }
  return v;
}

Result<std::unique_ptr<Condition>> CompileMemberAggLeaf(const rules::MemberAggCond& c,
                                                        CompileContext* ctx) {
  if (ctx->target() != SegmentTarget::kAccounts)
    return Status::InvalidArgument(fmt::format(
        "{}:{}: '{}(...) of members' belongs in account segments (an aggregate over an account's "
        "members' values); in a user segment read the user's own trait or computed trait",
        c.pos.line, c.pos.col, rules::AggName(c.fn)));
  auto id = ctx->MemberValueSegment(c);
  if (!id.ok()) return id.status();
  return std::unique_ptr<Condition>(new MemberAggCondition(*id, c));
}

}  // namespace shoal::engine
