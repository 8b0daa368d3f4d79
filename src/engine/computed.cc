#include "engine/computed.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "fmt/format.h"

namespace shoal::engine {
namespace {

using Fn = rules::ComputedValueDef::Fn;
using store::StoredValue;

StoredValue Number(double x) {
  StoredValue v;
  v.type = ValueType::kNumber;
  v.num = x == 0 ? 0.0 : x;  // -0 is 0
  return v;
}

// unique(p) keeps the first values in its order only: each value is interned whole into the
// store's string pool, so a list that could grow without bound (unique(order_id)) would make the
// pool grow quadratically with the events.
constexpr size_t kMaxUniqueValues = 100;

// The order of unique(p): numbers ascending, then strings (bytes), then false, true, then lists
// (by their JSON text). Also the identity of distinct and most frequent: equal under this order.
int TypeRank(ValueType t) {
  switch (t) {
    case ValueType::kNumber:
      return 0;
    case ValueType::kString:
      return 1;
    case ValueType::kBool:
      return 2;
    default:
      return 3;
  }
}

int CompareValues(const StoredValue& a, const StoredValue& b, const store::Store& s) {
  int ra = TypeRank(a.type), rb = TypeRank(b.type);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (a.type) {
    case ValueType::kNumber:
      return a.num < b.num ? -1 : (b.num < a.num ? 1 : 0);
    case ValueType::kBool:
      return static_cast<int>(a.b) - static_cast<int>(b.b);
    default: {
      if (a.str == b.str) return 0;
      int c = s.strings().Get(a.str).compare(s.strings().Get(b.str));
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
  }
}

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(ch);
    } else if (c < 0x20) {
      *out += fmt::format("\\u{:04x}", c);
    } else {
      out->push_back(ch);
    }
  }
  out->push_back('"');
}

void AppendJsonNumber(double x, std::string* out) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  out->append(buf, r.ptr);
}

std::string Render(const StoredValue& v, const store::Store& s) {
  switch (v.type) {
    case ValueType::kNull:
      return "no value";
    case ValueType::kBool:
      return v.b ? "true" : "false";
    case ValueType::kNumber: {
      std::string out;
      AppendJsonNumber(v.num, &out);
      return out;
    }
    case ValueType::kString: {
      std::string out;
      AppendJsonString(s.strings().Get(v.str), &out);
      return out;
    }
    case ValueType::kList:
      return std::string(s.strings().Get(v.str));
  }
  return "";
}

class ValueSource final : public ComputedSource {
 public:
  ValueSource(Series* s, const rules::ComputedValueDef& d, store::Store* st)
      : s_(s), w_(d.window), fn_(d.fn), store_(st) {
    if (!d.prop.empty()) key_ = st->keys().Intern(JoinPath(d.prop));
    series.push_back(s);
  }

  StoredValue Value(const EvalContext& ctx, Millis t, Millis* next) const override {
    std::string list;
    StoredValue v = Compute(ctx, t, next, &list);
    if (fn_ == Fn::kUnique) v.str = store_->strings().Intern(list);
    return v;
  }

  std::string Detail(const EvalContext& ctx, Millis t) const override {
    Millis ignore = kMaxTime;
    std::string list;
    StoredValue v = Compute(ctx, t, &ignore, &list);
    auto [lo, hi] = w_.Range(s_->Get(ctx.pid), t);
    return fmt::format("value = {} over {} events",
                       v.type == ValueType::kList ? list : Render(v, ctx.store), hi - lo);
  }

 private:
  // The value at t; a list (unique) comes back as type kList with its JSON text in *list and no
  // pool id, so that Detail (which may run on a reader thread) never interns.
  StoredValue Compute(const EvalContext& ctx, Millis t, Millis* next, std::string* list) const {
    const Timeline& tl = s_->Get(ctx.pid);
    auto [lo, hi] = w_.Range(tl, t);
    *next = std::min(*next, w_.NextBoundary(tl, lo, hi));
    switch (fn_) {
      case Fn::kCount:
        return Number(static_cast<double>(hi - lo));
      case Fn::kSum:
      case Fn::kAvg:
      case Fn::kMin:
      case Fn::kMax: {
        __int128 sum = 0;
        int64_t n = 0;
        double lo_v = 0, hi_v = 0;
        for (size_t k = lo; k < hi; ++k) {
          double x = tl.value(k);
          if (std::isnan(x)) continue;
          sum += Fixed(x);
          lo_v = n == 0 ? x : std::min(lo_v, x);
          hi_v = n == 0 ? x : std::max(hi_v, x);
          ++n;
        }
        if (fn_ == Fn::kSum) return Number(static_cast<double>(sum) / 1e6);
        if (n == 0) return StoredValue{};
        if (fn_ == Fn::kAvg) return Number(static_cast<double>(sum) / static_cast<double>(n) / 1e6);
        return Number(fn_ == Fn::kMin ? lo_v : hi_v);
      }
      case Fn::kFirst:
        return hi > lo ? Prop(ctx, tl[lo].idx) : StoredValue{};
      case Fn::kLast:
        return hi > lo ? Prop(ctx, tl[hi - 1].idx) : StoredValue{};
      case Fn::kDistinct:
      case Fn::kUnique:
      case Fn::kMostFrequent:
        break;
    }
    // (value, occurrences, position of the latest occurrence), sorted by value.
    struct Seen {
      StoredValue v;
      size_t pos;
    };
    std::vector<Seen> seen;
    seen.reserve(hi - lo);
    for (size_t k = lo; k < hi; ++k) {
      StoredValue v = Prop(ctx, tl[k].idx);
      if (v.type == ValueType::kNull) continue;
      if (v.type == ValueType::kNumber) v = Number(v.num);
      if (v.type != ValueType::kBool) v.b = false;
      seen.push_back({v, k});
    }
    const store::Store& st = ctx.store;
    std::stable_sort(seen.begin(), seen.end(),
                     [&](const Seen& a, const Seen& b) { return CompareValues(a.v, b.v, st) < 0; });
    if (fn_ == Fn::kDistinct || fn_ == Fn::kUnique) {
      size_t distinct = 0;
      std::string out = "[";
      for (size_t i = 0; i < seen.size(); ++i) {
        if (i && CompareValues(seen[i - 1].v, seen[i].v, st) == 0) continue;
        if (fn_ == Fn::kUnique && distinct < kMaxUniqueValues) {
          if (distinct) out.push_back(',');
          const StoredValue& v = seen[i].v;
          if (v.type == ValueType::kString)
            AppendJsonString(st.strings().Get(v.str), &out);
          else
            out += Render(v, st);
        }
        ++distinct;
      }
      if (fn_ == Fn::kDistinct) return Number(static_cast<double>(distinct));
      *list = out + "]";
      StoredValue v;
      v.type = ValueType::kList;
      return v;
    }
    // most frequent: the most occurrences; a tie goes to the value seen latest.
    const Seen* best = nullptr;
    size_t best_n = 0, best_pos = 0;
    for (size_t i = 0; i < seen.size();) {
      size_t j = i, pos = 0;
      while (j < seen.size() && CompareValues(seen[i].v, seen[j].v, st) == 0) {
        pos = std::max(pos, seen[j].pos);
        ++j;
      }
      if (!best || j - i > best_n || (j - i == best_n && pos > best_pos)) {
        best = &seen[i];
        best_n = j - i;
        best_pos = pos;
      }
      i = j;
    }
    return best ? best->v : StoredValue{};
  }

  StoredValue Prop(const EvalContext& ctx, uint32_t idx) const {
    auto v = ctx.store.Find(idx, key_);
    return v ? *v : StoredValue{};
  }

  Series* s_;
  Window w_;
  Fn fn_;
  store::Store* store_;
  uint32_t key_ = 0;
};

// computed.NAME <pred>: the trait predicate on the profile's stored value. It never changes
// with time by itself, except through a time predicate on the value (computed.x within 7d); the
// engine re-evaluates it when the value changes (segment_refs holds the computed trait's id).
class ComputedTraitCondition final : public Condition {
 public:
  ComputedTraitCondition(const rules::ValuePred& p, const ComputedValues* values, uint32_t id,
                         store::Store* st)
      : pred_(p, st), values_(values) {
    segment_refs.push_back(id);
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    return pred_.Eval(&values_->Get(ctx.pid), t, ctx.store, next);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    return "value = " + Render(values_->Get(ctx.pid), ctx.store);
  }

 private:
  CompiledPred pred_;
  const ComputedValues* values_;
};

}  // namespace

std::string ComputedSource::Detail(const EvalContext& ctx, Millis t) const {
  Millis ignore = kMaxTime;
  return "value = " + Render(Value(ctx, t, &ignore), ctx.store);
}

Result<std::unique_ptr<ComputedSource>> CompileComputedValue(const rules::ComputedValueDef& def,
                                                             CompileContext* ctx) {
  SHOAL_RETURN_IF_ERROR(CheckEventFilter(def.event));
  std::optional<uint32_t> value_key;
  if (def.fn == Fn::kSum || def.fn == Fn::kAvg || def.fn == Fn::kMin || def.fn == Fn::kMax)
    value_key = ctx->store()->keys().Intern(JoinPath(def.prop));
  // Every function reads the window's entries only (first and last too: of the window).
  Series* s = ctx->GetSeries(def.event, value_key, Horizon::Of(def.window));
  return std::unique_ptr<ComputedSource>(new ValueSource(s, def, ctx->store()));
}

StoredValue EmptyComputedValue(const rules::ComputedDef& def, store::Store* store) {
  if (def.kind == rules::ComputedDef::Kind::kScore) return Number(0);
  if (def.kind == rules::ComputedDef::Kind::kMemberAgg)  // the sum of no values is 0
    return def.member_agg.fn == rules::AggCond::Fn::kSum ? Number(0) : StoredValue{};
  switch (def.value.fn) {
    case Fn::kCount:
    case Fn::kSum:
    case Fn::kDistinct:
      return Number(0);
    case Fn::kUnique: {
      StoredValue v;
      v.type = ValueType::kList;
      v.str = store->strings().Intern("[]");
      return v;
    }
    default:
      return StoredValue{};
  }
}

Result<std::unique_ptr<Condition>> CompileComputedLeaf(const rules::ComputedTraitCond& c,
                                                       CompileContext* ctx) {
  const std::string name = JoinPath(c.pred.path);
  auto ref = ResolveComputedTrait(name, "computed." + name, ctx);
  if (!ref.ok()) return ref.status();
  return std::unique_ptr<Condition>(
      new ComputedTraitCondition(c.pred, ref->values, ref->id, ctx->store()));
}

Result<ComputedRef> ResolveComputedTrait(const std::string& name, std::string_view what,
                                         CompileContext* ctx) {
  std::optional<ComputedRef> ref = ctx->ComputedTrait(name);
  if (!ref) return Status::NotFound("unknown computed trait \"" + name + "\"");
  if (ref->target == ctx->target()) return *ref;
  const std::string w(what);
  if (ref->target == SegmentTarget::kUsers)
    return Status::InvalidArgument(
        "'" + w + "': computed trait \"" + name +
        "\" is per user and an account segment or account computed trait reads account computed "
        "traits; read it inside a member condition such as 'any member (computed." +
        name + " > 0)'");
  return Status::InvalidArgument("'" + w + "': computed trait \"" + name +
                                 "\" is per account and a user segment or user computed trait "
                                 "reads user computed traits; read it from an account segment");
}

Value ToValue(const StoredValue& v, const store::Store& store) {
  Value out;
  out.type = v.type;
  switch (v.type) {
    case ValueType::kNull:
      break;
    case ValueType::kBool:
      out.b = v.b;
      break;
    case ValueType::kNumber:
      out.num = v.num;
      break;
    case ValueType::kString:
    case ValueType::kList:
      out.str = std::string(store.strings().Get(v.str));
      break;
  }
  return out;
}

}  // namespace shoal::engine
