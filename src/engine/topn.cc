#include "engine/topn.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/accounts.h"
#include "engine/computed.h"
#include "engine/member_agg.h"
#include "fmt/format.h"

namespace shoal::engine {
namespace {

// A numeric trait; anything else (missing, null, string, ...) is not ranked.
class TraitSource final : public RankSource {
 public:
  explicit TraitSource(uint32_t key) : key_(key) { trait_keys.push_back(key); }
  std::optional<double> Value(const EvalContext& ctx, Millis, Millis*) const override {
    const TraitSlot* slot = ctx.profile.Find(key_);
    if (!slot || slot->value.type != ValueType::kNumber) return std::nullopt;
    return slot->value.num;
  }
  std::string_view Name() const override { return "value"; }

 private:
  uint32_t key_;
};

// An aggregate over a window of a series, with the numbers of docs/language.md: sums in
// millionths (the ranked value is that integer / 1e6), the sum and distinct count of nothing are
// 0 (ranked), avg/min/max of nothing is no value (not ranked).
class AggSource final : public RankSource {
 public:
  AggSource(Series* s, const rules::AggCond& c, uint32_t key)
      : s_(s), w_(c.window), fn_(c.fn), key_(key) {
    series.push_back(s);
  }
  std::optional<double> Value(const EvalContext& ctx, Millis t, Millis* next) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    *next = std::min(*next, w_.NextBoundary(tl, lo, hi));
    if (fn_ == rules::AggCond::Fn::kDistinct) return static_cast<double>(Distinct(ctx, tl, lo, hi));
    __int128 sum = 0;
    int64_t n = 0;
    double mn = 0, mx = 0;
    for (size_t k = lo; k < hi; ++k) {
      double x = tl.value(k);
      if (std::isnan(x)) continue;
      sum += Fixed(x);
      mn = n == 0 ? x : std::min(mn, x);
      mx = n == 0 ? x : std::max(mx, x);
      ++n;
    }
    switch (fn_) {
      case rules::AggCond::Fn::kSum:
        return static_cast<double>(sum) / 1e6;
      case rules::AggCond::Fn::kAvg:
        if (n == 0) return std::nullopt;
        return static_cast<double>(sum) / static_cast<double>(n) / 1e6;
      case rules::AggCond::Fn::kMin:
        if (n == 0) return std::nullopt;
        return mn;
      case rules::AggCond::Fn::kMax:
        if (n == 0) return std::nullopt;
        return mx;
      case rules::AggCond::Fn::kDistinct:
        break;
    }
    return std::nullopt;
  }
  std::string_view Name() const override { return rules::AggName(fn_); }

 private:
  // Typed distinct values: strings and lists by interned id, -0 and 0 as one number.
  int64_t Distinct(const EvalContext& ctx, const Timeline& tl, size_t lo, size_t hi) const {
    std::vector<std::pair<uint8_t, uint64_t>> seen;
    for (size_t k = lo; k < hi; ++k) {
      auto v = ctx.store.Find(tl[k].idx, key_);
      if (!v || v->type == ValueType::kNull) continue;
      uint64_t bits = 0;
      if (v->type == ValueType::kNumber) {
        double d = v->num == 0 ? 0.0 : v->num;
        std::memcpy(&bits, &d, 8);
      } else if (v->type == ValueType::kBool) {
        bits = v->b;
      } else {
        bits = v->str;
      }
      seen.push_back({static_cast<uint8_t>(v->type), bits});
    }
    std::sort(seen.begin(), seen.end());
    return std::unique(seen.begin(), seen.end()) - seen.begin();
  }

  Series* s_;
  Window w_;
  rules::AggCond::Fn fn_;
  uint32_t key_;
};

// The number of events in the window: every profile is ranked, 0 included.
class CountSource final : public RankSource {
 public:
  CountSource(Series* s, const rules::TimeRange& window) : s_(s), w_(window) {
    series.push_back(s);
  }
  std::optional<double> Value(const EvalContext& ctx, Millis t, Millis* next) const override {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    *next = std::min(*next, w_.NextBoundary(tl, lo, hi));
    return static_cast<double>(hi - lo);
  }
  std::string_view Name() const override { return "count"; }

 private:
  Series* s_;
  Window w_;
};

// The number of the account's members in the hidden user segment `hidden`; every known account
// is ranked (0 members included). Changes only when a member's membership or a link changes.
class MembersSource final : public RankSource {
 public:
  explicit MembersSource(uint32_t hidden) : hidden_(hidden) {
    segment_refs.push_back(hidden);
    member_links = true;
  }
  std::optional<double> Value(const EvalContext& ctx, Millis, Millis*) const override {
    return ctx.accounts ? static_cast<double>(ctx.accounts->MemberCount(hidden_, ctx.pid)) : 0.0;
  }
  std::string_view Name() const override { return "members"; }

 private:
  uint32_t hidden_;
};

// A computed trait's current value (top N by computed.NAME), ranked when it is a number. It
// changes only when the computed trait's value does: the trait's id is in segment_refs, so the
// engine re-evaluates this rank segment for a profile whenever the trait's value changes (the
// trait keeps its own deadlines), ranks it after the trait, and finds cycles through it.
class ComputedRankSource final : public RankSource {
 public:
  explicit ComputedRankSource(ComputedRef ref) : ref_(std::move(ref)) {
    segment_refs.push_back(ref_.id);
  }
  std::optional<double> Value(const EvalContext& ctx, Millis, Millis*) const override {
    if (ref_.number) return ref_.number(ctx.pid);
    return ref_.values ? NumberOf(ref_.values->Get(ctx.pid)) : std::nullopt;
  }
  std::string_view Name() const override { return "value"; }

 private:
  ComputedRef ref_;
};

std::string Number(double v) { return fmt::format("{}", v); }

class TopNCondition final : public Condition {
 public:
  TopNCondition(uint32_t seg, const RankerCondition* ranker, const rules::TopNCond& c)
      : seg_(seg), ranker_(ranker), percent_(c.percent), n_(c.n), pct_(c.pct) {
    segment_refs.push_back(seg);
  }
  // Changes only when the top set does, which reaches this condition as a change of the rank
  // segment: no deadline of its own.
  bool Eval(const EvalContext& ctx, Millis, Millis*) const override {
    return ctx.is_member(seg_, ctx.pid);
  }
  std::string Detail(const EvalContext& ctx, Millis) const override {
    if (!ranker_) return "not ranked";
    const Ranking& r = ranker_->ranking();
    std::string name(ranker_->source().Name());
    size_t total = r.ranked(), cut = r.Cutoff(total);
    std::string cutoff = percent_ ? fmt::format("top {}% of {} = {}", Number(pct_), total, cut)
                                  : fmt::format("top {} of {} = {}", n_, total, cut);
    if (auto v = r.CutoffValue()) cutoff += ", cutoff " + name + " = " + Number(*v);
    std::optional<size_t> rank = r.RankOf(ctx.pid);
    if (!rank) return fmt::format("{} = no value, not ranked; {}", name, cutoff);
    return fmt::format("{} = {}, rank {} of {}; {}", name, Number(*r.ValueOf(ctx.pid)), *rank,
                       total, cutoff);
  }

 private:
  uint32_t seg_;
  const RankerCondition* ranker_;
  bool percent_;
  int64_t n_;
  double pct_;
};

}  // namespace

// --- Ranking ------------------------------------------------------------------------------------

Ranking::Ranking(bool bottom, bool percent, int64_t n, double pct)
    : bottom_(bottom), percent_(percent), n_(n), pct_micro_(std::llround(pct * 1e6)) {}

size_t Ranking::Cutoff(size_t r) const {
  if (!percent_) return std::min<size_t>(r, static_cast<size_t>(n_));
  // ceil(P/100 x R) in integers: P is in millionths of a percent, so 100% is 1e8.
  unsigned __int128 k = (static_cast<unsigned __int128>(pct_micro_) * r + 99'999'999) / 100'000'000;
  return std::min<size_t>(r, static_cast<size_t>(k));
}

uint64_t Ranking::Prefix(std::string_view key) {
  uint64_t p = 0;
  for (size_t i = 0; i < 8; ++i)
    p = p << 8 | (i < key.size() ? static_cast<unsigned char>(key[i]) : 0);
  return p;
}

void Ranking::Note(uint32_t id) {
  if (noted_stamp_.size() <= id) noted_stamp_.resize(id + 1, 0);
  if (noted_stamp_[id] == stamp_) return;
  noted_stamp_[id] = stamp_;
  noted_.push_back({id, InTop(id)});
}

void Ranking::Push(bool top, Entry e) {
  std::vector<Entry>& h = top ? top_ : rest_;
  size_t& live = top ? n_top_ : n_rest_;
  // Stale entries outnumber the live ones: rebuild from the live ones, O(live) amortized over as
  // many changes.
  if (h.size() >= 64 && h.size() > 2 * live) {
    std::erase_if(h, [&](const Entry& x) { return !Live(x, top); });
    top ? std::make_heap(h.begin(), h.end(), Ahead())
        : std::make_heap(h.begin(), h.end(), Behind());
  }
  h.push_back(e);
  top ? std::push_heap(h.begin(), h.end(), Ahead()) : std::push_heap(h.begin(), h.end(), Behind());
  ++live;
}

void Ranking::Clean(bool top) {
  std::vector<Entry>& h = top ? top_ : rest_;
  while (!h.empty() && !Live(h.front(), top)) {
    top ? std::pop_heap(h.begin(), h.end(), Ahead()) : std::pop_heap(h.begin(), h.end(), Behind());
    h.pop_back();
  }
}

Ranking::Entry Ranking::Pop(bool top) {
  Clean(top);
  std::vector<Entry>& h = top ? top_ : rest_;
  Entry e = h.front();
  top ? std::pop_heap(h.begin(), h.end(), Ahead()) : std::pop_heap(h.begin(), h.end(), Behind());
  h.pop_back();
  --(top ? n_top_ : n_rest_);
  return e;
}

void Ranking::Set(uint32_t id, std::string_view key, std::optional<double> value) {
  if (value && std::isnan(*value)) value.reset();
  if (slots_.size() <= id) slots_.resize(id + 1);
  double v = value ? (bottom_ ? -*value : *value) : 0;
  {
    const Slot& s = slots_[id];
    if (!s.ranked && !value) return;
    if (s.ranked && value && s.v == v) return;  // unchanged: nothing moves
  }
  Note(id);
  Slot& s = slots_[id];
  if (s.ranked) {
    --(s.top ? n_top_ : n_rest_);  // its entry is stale from here on (gen)
    s.ranked = false;
  }
  ++s.gen;
  if (value) {
    s.v = v;
    s.prefix = Prefix(key);
    s.key = key;
    s.ranked = true;
    Entry e{v, s.prefix, key, id, s.gen};
    // Into the top set when ahead of everything outside it; Rebalance then fixes its size.
    Clean(false);
    s.top = n_rest_ == 0 || Ahead()(e, rest_.front());
    Push(s.top, e);
  }
  Rebalance();
  Clean(true);
  Clean(false);
}

void Ranking::Rebalance() {
  const size_t k = Cutoff(ranked());
  while (n_top_ > k) {
    Entry e = Pop(true);
    Note(e.id);
    Slot& s = slots_[e.id];
    s.top = false;
    e.gen = ++s.gen;
    Push(false, e);
  }
  while (n_top_ < k && n_rest_ > 0) {
    Entry e = Pop(false);
    Note(e.id);
    Slot& s = slots_[e.id];
    s.top = true;
    e.gen = ++s.gen;
    Push(true, e);
  }
}

void Ranking::TakeFlips(std::vector<std::pair<uint32_t, bool>>* out) {
  out->clear();
  for (auto [id, was] : noted_)
    if (InTop(id) != was) out->push_back({id, !was});
  noted_.clear();
  ++stamp_;
  std::sort(out->begin(), out->end());
}

std::optional<size_t> Ranking::RankOf(uint32_t id) const {
  if (id >= slots_.size() || !slots_[id].ranked) return std::nullopt;
  const Slot& s = slots_[id];
  Entry me{s.v, s.prefix, s.key, id, 0};
  size_t ahead = 0;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    const Slot& o = slots_[i];
    if (i != id && o.ranked && Ahead()(Entry{o.v, o.prefix, o.key, i, 0}, me)) ++ahead;
  }
  return ahead + 1;
}

std::optional<double> Ranking::ValueOf(uint32_t id) const {
  if (id >= slots_.size() || !slots_[id].ranked) return std::nullopt;
  double v = slots_[id].v;
  return bottom_ ? -v : v;
}

std::optional<double> Ranking::CutoffValue() const {
  if (n_top_ == 0) return std::nullopt;  // else the root is live (Set cleans both roots)
  double v = top_.front().v;
  return bottom_ ? -v : v;
}

size_t Ranking::MemoryBytes() const {
  return (top_.capacity() + rest_.capacity()) * sizeof(Entry) + slots_.capacity() * sizeof(Slot) +
         noted_stamp_.capacity() * sizeof(uint64_t);
}

// --- Conditions ---------------------------------------------------------------------------------

RankerCondition::RankerCondition(std::unique_ptr<RankSource> source, const rules::TopNCond& c)
    : source_(std::move(source)), ranking_(c.bottom, c.percent, c.n, c.pct) {
  series = source_->series;
  trait_keys = source_->trait_keys;
  segment_refs = source_->segment_refs;
  member_links = source_->member_links;
}

bool RankerCondition::Eval(const EvalContext& ctx, Millis t, Millis* next) const {
  return source_->Value(ctx, t, next).has_value();
}

std::string RankerCondition::Detail(const EvalContext& ctx, Millis t) const {
  Millis ignore = kMaxTime;
  std::optional<double> v = source_->Value(ctx, t, &ignore);
  return fmt::format("{} = {}", source_->Name(), v ? Number(*v) : "no value");
}

Result<std::unique_ptr<RankerCondition>> CompileRanker(const rules::TopNCond& c,
                                                       CompileContext* ctx) {
  const bool accounts = ctx->target() == SegmentTarget::kAccounts;
  std::unique_ptr<RankSource> source;
  switch (c.source) {
    case rules::TopNCond::Source::kTrait: {
      std::string path;
      for (size_t i = 0; i < c.path.size(); ++i) path += (i ? "." : "") + c.path[i];
      source = std::make_unique<TraitSource>(ctx->store()->keys().Intern(path));
      break;
    }
    case rules::TopNCond::Source::kAgg: {
      // In an account segment the series are the account's own events (context.groupId): the
      // compile context hands out account series while an account segment compiles.
      // Compiling the aggregate as a condition checks its filter exactly as the condition does,
      // and gives the series it reads (with the value kept inline for sum/avg/min/max).
      rules::AggCond probe = c.agg;
      auto cond = CompileLeaf(probe, ctx);
      if (!cond.ok()) return cond.status();
      std::string path;
      for (size_t i = 0; i < c.agg.prop.size(); ++i) path += (i ? "." : "") + c.agg.prop[i];
      source = std::make_unique<AggSource>((*cond)->series.at(0), c.agg,
                                           ctx->store()->keys().Intern(path));
      break;
    }
    case rules::TopNCond::Source::kCount: {
      // As for an aggregate: the count condition checks the filter and gives the series.
      rules::CountCond probe;
      probe.event = c.agg.event;
      probe.window = c.agg.window;
      auto cond = CompileLeaf(probe, ctx);
      if (!cond.ok()) return cond.status();
      source = std::make_unique<CountSource>((*cond)->series.at(0), c.agg.window);
      break;
    }
    case rules::TopNCond::Source::kMembers: {
      if (!accounts)
        return Status::InvalidArgument(
            "'top N by members (...)' ranks accounts: it belongs in account segments");
      if (!c.members) return Status::InvalidArgument("'members (...)' needs a user condition");
      auto hidden = ctx->MemberSegment(*c.members);
      if (!hidden.ok()) return hidden.status();
      source = std::make_unique<MembersSource>(*hidden);
      break;
    }
    case rules::TopNCond::Source::kComputed: {
      std::string name;
      for (size_t i = 0; i < c.path.size(); ++i) name += (i ? "." : "") + c.path[i];
      // An account segment ranks accounts by an account computed trait, a user one users by a
      // user computed trait.
      auto ref = ResolveComputedTrait(name, "top N by computed." + name, ctx);
      if (!ref.ok()) return ref.status();
      source = std::make_unique<ComputedRankSource>(std::move(ref).value());
      break;
    }
    case rules::TopNCond::Source::kMemberAgg: {
      if (!accounts)
        return Status::InvalidArgument(
            "'top N by sum(...) of members' ranks accounts: it belongs in account segments");
      if (!c.member_agg) return Status::InvalidArgument("'of members' needs a member value");
      auto hidden = ctx->MemberValueSegment(*c.member_agg);
      if (!hidden.ok()) return hidden.status();
      source = MakeMemberAggRankSource(*hidden, c.member_agg->fn);
      break;
    }
  }
  return std::make_unique<RankerCondition>(std::move(source), c);
}

std::unique_ptr<Condition> MakeTopNCondition(uint32_t seg, const RankerCondition* ranker,
                                             const rules::TopNCond& c) {
  return std::make_unique<TopNCondition>(seg, ranker, c);
}

}  // namespace shoal::engine
