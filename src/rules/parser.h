// The segment language front end: text -> Expr (Parse) and Expr -> canonical text (Print).
// docs/language.md is the reference for both. Stateless and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "rules/ast.h"
#include "shoal/status.h"

namespace shoal::rules {

// Parses a definition. On error returns kInvalidArgument whose message is
// "LINE:COL: what was expected, found what" (1-based), e.g.
// "1:27: expected a duration such as 30d after 'within', found '30'". Never crashes or hangs on
// any input; input longer than 64 KiB or nested deeper than 100 levels is an error.
// Checks that need no other segment are done here: regex syntax, bucket(N) with N >= 1,
// empty time ranges, count n >= 0. `in segment` names are not resolved here.
Result<Expr> Parse(std::string_view text);

// Parses the definition of a computed trait (docs/language.md, "Computed traits and scores"): a
// value such as `sum(total) of "Order Completed" within 90d`, or a score such as
// `10 points if performed "Demo Requested" - 20 points if title = "student"`. Errors as Parse.
// `computed.NAME` references are not resolved here.
Result<ComputedDef> ParseComputed(std::string_view text);

// The canonical text of a definition (docs/language.md, "Canonical form").
// Parse(Print(e)) == e for every e that Parse can return.
std::string Print(const Expr& e);
std::string Print(const PropExpr& e);
std::string Print(const ValuePred& p);
std::string Print(const TimeRange& r);  // "within 30d", "between 90d ago and 30d ago", ...
std::string Print(const Literal& l);
std::string Print(const ComputedDef& d);  // Parse(Print(d)) == d as for Expr

}  // namespace shoal::rules
