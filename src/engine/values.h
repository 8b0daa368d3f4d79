// Value predicates compiled against the store's id spaces, evaluated on stored values. This is the
// engine's own implementation of docs/language.md "Values, missing values and types"; the
// reference evaluator has an independent one, and the differential test compares the two.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "re2/re2.h"
#include "rules/ast.h"
#include "store/store.h"

namespace shoal::engine {

// A literal with its string interned, so that typed string equality is an id comparison.
struct CompiledLiteral {
  rules::Literal lit;
  uint32_t str_id = 0;  // kString: id in store.strings()
};

// A time range [from, to) of a time predicate, evaluated relative to an instant t; an unbounded
// side has no limit.
struct TimeSpec {
  rules::TimeRange range;
  // Whether instant x is in the range at t, and the next instant after t at which that can change
  // (kMaxTime if never); *next is lowered, never raised.
  bool Contains(Millis x, Millis t, Millis* next) const;
};

class CompiledPred {
 public:
  // Interns literal strings into `store` and compiles regexes (already validated by the parser).
  CompiledPred(const rules::ValuePred& pred, store::Store* store);

  uint32_t key() const { return key_; }
  // `v` is null when the path is missing. *next is lowered to the next instant after t at which
  // the result can change on its own (only time predicates depend on t).
  bool Eval(const store::StoredValue* v, Millis t, const store::Store& store, Millis* next) const;

 private:
  bool Equal(const store::StoredValue& v, const CompiledLiteral& l, const store::Store& s) const;
  // -1/0/1, or nullopt when the two are not ordered (types differ, unparseable time).
  std::optional<int> Order(const store::StoredValue& v, const CompiledLiteral& l,
                           const store::Store& s) const;

  rules::ValuePred::Kind kind_;
  rules::CmpOp op_;
  uint32_t key_;
  std::vector<CompiledLiteral> lits_;
  TimeSpec time_;
  std::shared_ptr<RE2> regex_;  // RE2: linear time, no recursion
};

// A compiled filter over a record's properties.
class CompiledFilter {
 public:
  CompiledFilter(const rules::PropExpr& e, store::Store* store);
  // Over a message's properties as the engine built them (a span of PropEntry) or a stored
  // record's (store::Props); instantiated for those two.
  template <typename PropRange>
  bool Eval(const PropRange& props, Millis t, const store::Store& store) const;

 private:
  rules::PropExpr::Kind kind_;
  std::vector<CompiledFilter> children_;
  std::unique_ptr<CompiledPred> pred_;
};

// Splits the compact JSON array text of a list value into its scalar elements (strings unescaped,
// numbers parsed, true/false/null); nested arrays and objects become kNull placeholders that
// equal nothing. Strings are returned through `texts` (kString elements index into it via num).
struct ListElement {
  ValueType type = ValueType::kNull;
  bool b = false;
  double num = 0;
  std::string str;
};
std::vector<ListElement> ParseListElements(std::string_view json);

bool Compare(int order, rules::CmpOp op);

// a OP b for two numbers of one type (exact millionths, counts, or doubles).
template <typename T>
bool CompareNumbers(T a, T b, rules::CmpOp op) {
  return Compare(a < b ? -1 : (a > b ? 1 : 0), op);
}

// Money-safe fixed point, as every exact sum of the language: a number rounded to millionths
// (sums add these as integers, so 0.1 + 0.2 is 0.3).
inline int64_t Fixed(double v) { return std::llround(v * 1e6); }

// A number of millionths as its shortest decimal text: 12.5, -0.000001, 3.
std::string FormatFixed(__int128 v);

// A path as its dotted text: address.city.
std::string JoinPath(const rules::Path& p);

}  // namespace shoal::engine
