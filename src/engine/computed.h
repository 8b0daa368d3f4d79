// Computed traits (docs/language.md, "Computed traits and scores"): the value of a definition
// such as `sum(total) of "Order Completed" within 90d` for one profile at an instant, and the
// `computed.NAME` condition that segments use to read it.
//
// A value source is a Condition so that the engine indexes and schedules it like any leaf: it
// reads series (an event that matches one re-evaluates the computed trait for that profile) and
// lowers *next to the next window boundary, which the engine's timer heap fires exactly. Scores
// are compiled in engine.cc from ordinary condition trees.
#pragma once

#include <memory>
#include <vector>

#include "engine/conditions.h"
#include "rules/ast.h"
#include "shoal/event.h"
#include "store/store.h"

namespace shoal::engine {

class ComputedSource : public Condition {
 public:
  // The value at t (kNull: no value); lowers *next to the next instant after t at which it can
  // change with no new data (the window's next boundary: never later than the real change).
  virtual store::StoredValue Value(const EvalContext& ctx, Millis t, Millis* next) const = 0;
  // True when the value is not null (a computed trait is read through Value, not Eval).
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    return Value(ctx, t, next).type != ValueType::kNull;
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override;
};

// Compiles a value definition. Errors as CompileLeaf: a relative time inside the event filter.
// Lists (unique) are interned as JSON text into the store's string pool.
Result<std::unique_ptr<ComputedSource>> CompileComputedValue(const rules::ComputedValueDef& def,
                                                             CompileContext* ctx);

// The value of a profile with no matching events (or no true score condition): 0 for count,
// sum, distinct and scores, the empty list [] for unique, no value for the others.
store::StoredValue EmptyComputedValue(const rules::ComputedDef& def, store::Store* store);

// The current value of one computed trait for every profile, dense by profile id. A profile that
// was never evaluated (it did not exist when the trait was created and nothing it sent matters
// to the trait) has the empty value.
class ComputedValues {
 public:
  const store::StoredValue& Get(uint32_t pid) const {
    return pid < values_.size() ? values_[pid] : empty_;
  }
  void Set(uint32_t pid, const store::StoredValue& v) {
    if (pid >= values_.size())
      values_.resize(std::max<size_t>(pid + 1, values_.size() * 2), empty_);
    values_[pid] = v;
  }
  const store::StoredValue& empty() const { return empty_; }
  // A new definition's empty value, for profiles created from now on. The `known` profiles keep
  // their current value (the old empty one if never evaluated) until the caller recomputes them.
  void SetEmpty(const store::StoredValue& e, size_t known) {
    values_.resize(known, empty_);  // also drops slots of ids that do not exist yet
    empty_ = e;
  }
  size_t MemoryBytes() const { return values_.capacity() * sizeof(store::StoredValue); }

 private:
  store::StoredValue empty_;
  std::vector<store::StoredValue> values_;
};

// The computed trait `name` as the definition being compiled may read it: one of the compile
// target's (an account segment or score reads account computed traits, a user one, including a
// member condition's user condition, users'). `what` is how the definition wrote it, for errors.
// Errors: kNotFound for an unknown computed trait, kInvalidArgument for one of the other target.
Result<ComputedRef> ResolveComputedTrait(const std::string& name, std::string_view what,
                                         CompileContext* ctx);

// Compiles `computed.NAME <pred>` (rules::ComputedTraitCond) through
// CompileContext::ComputedTrait. Errors as ResolveComputedTrait.
Result<std::unique_ptr<Condition>> CompileComputedLeaf(const rules::ComputedTraitCond& c,
                                                       CompileContext* ctx);

// The public form of a stored value (strings and lists resolved from the pool).
Value ToValue(const store::StoredValue& v, const store::Store& store);

// The number a computed value stands for, if it is a number (for ranking by a computed trait).
inline std::optional<double> NumberOf(const store::StoredValue& v) {
  if (v.type != ValueType::kNumber) return std::nullopt;
  return v.num;
}

}  // namespace shoal::engine
