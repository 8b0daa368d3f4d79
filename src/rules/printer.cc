// The canonical printer (docs/language.md, "Canonical form"). Its output is what Parse reads
// back to an equal tree, so every choice here mirrors one in parser.cc: keywords in lower case,
// names backquoted when the lexer would not read them as one plain name, parentheses only where
// precedence needs them, compound filters always in parentheses.
#include <cctype>
#include <charconv>
#include <cstdio>

#include "rules/lexer.h"
#include "rules/parser.h"

namespace shoal::rules {
namespace {

const char* CmpText(CmpOp op) {
  switch (op) {
    case CmpOp::kEq:
      return "=";
    case CmpOp::kNe:
      return "!=";
    case CmpOp::kLt:
      return "<";
    case CmpOp::kLe:
      return "<=";
    case CmpOp::kGt:
      return ">";
    case CmpOp::kGe:
      return ">=";
  }
  return "=";
}

std::string QuoteString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string PrintPath(const Path& p) {
  std::string out;
  for (size_t i = 0; i < p.size(); ++i) {
    if (i) out.push_back('.');
    if (IsPlainIdentifier(p[i]) && !IsReservedWord(p[i]))
      out += p[i];
    else
      out += "`" + p[i] + "`";
  }
  return out;
}

// The shortest text that reads back to the same double: plain digits when that is short
// ("100000", "20.97"), the exponent form otherwise ("1e-300").
std::string PrintNumber(double v) {
  char buf[400];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  if (r.ec == std::errc() && r.ptr - buf <= 24) return std::string(buf, r.ptr);
  r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string PrintPoint(const TimeBound& b) {
  switch (b.kind) {
    case TimeBound::Kind::kRelative:
      return b.ms == 0 ? "now" : FormatDuration(b.ms) + " ago";
    case TimeBound::Kind::kAbsolute:
      return FormatTime(b.ms);
    case TimeBound::Kind::kNone:
      break;
  }
  return "now";
}

// " <range>" or nothing for "ever".
std::string PrintWindow(const TimeRange& r) {
  if (r.IsEver()) return "";
  return " " + Print(r);
}

std::string PrintCount(CmpOp op, int64_t n) {
  std::string num = std::to_string(n) + (n == 1 ? " time" : " times");
  switch (op) {
    case CmpOp::kGe:
      return "at least " + num;
    case CmpOp::kLe:
      return "at most " + num;
    case CmpOp::kEq:
      return "exactly " + num;
    case CmpOp::kGt:
      return "more than " + num;
    case CmpOp::kLt:
      return "fewer than " + num;
    case CmpOp::kNe:
      return "!= " + num;
  }
  return num;
}

void PrintProp(const PropExpr& e, std::string* out);

void PrintPropChild(const PropExpr& c, bool parens, std::string* out) {
  if (parens) out->push_back('(');
  PrintProp(c, out);
  if (parens) out->push_back(')');
}

void PrintProp(const PropExpr& e, std::string* out) {
  switch (e.kind) {
    case PropExpr::Kind::kPred:
      *out += Print(e.pred);
      return;
    case PropExpr::Kind::kNot:
      *out += "not ";
      if (!e.children.empty())
        PrintPropChild(
            e.children[0],
            e.children[0].kind == PropExpr::Kind::kAnd || e.children[0].kind == PropExpr::Kind::kOr,
            out);
      return;
    case PropExpr::Kind::kAnd:
    case PropExpr::Kind::kOr: {
      bool is_and = e.kind == PropExpr::Kind::kAnd;
      for (size_t i = 0; i < e.children.size(); ++i) {
        if (i) *out += is_and ? " and " : " or ";
        const PropExpr& c = e.children[i];
        bool parens = c.kind == e.kind || (is_and && c.kind == PropExpr::Kind::kOr);
        PrintPropChild(c, parens, out);
      }
      return;
    }
  }
}

// `where`/`has` take one predicate bare and anything else in parentheses.
std::string PrintFilter(const PropExpr& f) {
  if (f.kind == PropExpr::Kind::kPred) return Print(f.pred);
  return "(" + Print(f) + ")";
}

std::string PrintEvent(const EventSpec& e) {
  std::string out = QuoteString(e.name);
  if (e.filter) out += " where " + PrintFilter(*e.filter);
  return out;
}

void PrintExpr(const Expr& e, std::string* out);

// A user trait under `account` (`account.plan`) would read as the account's trait: backquote its
// first name.
std::string PrintTraitPred(const ValuePred& p) {
  std::string out = Print(p);
  if (p.path.size() > 1 && IsPlainIdentifier(p.path[0]) && !IsReservedWord(p.path[0])) {
    std::string lower = p.path[0];
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower == "account" || lower == "computed")
      out = "`" + p.path[0] + "`" + out.substr(p.path[0].size());
  }
  return out;
}

struct LeafPrinter {
  std::string operator()(const TraitCond& c) const { return PrintTraitPred(c.pred); }
  std::string operator()(const TraitHistoryCond& c) const {
    return PrintTraitPred(c.pred) + (c.at_least ? " for at least " : " for less than ") +
           FormatDuration(c.duration);
  }
  std::string operator()(const CountCond& c) const {
    if (c.op == CmpOp::kEq && c.n == 0)
      return "did not perform " + PrintEvent(c.event) + PrintWindow(c.window);
    std::string out = "performed " + PrintEvent(c.event);
    if (!(c.op == CmpOp::kGe && c.n == 1)) out += " " + PrintCount(c.op, c.n);
    return out + PrintWindow(c.window);
  }
  std::string operator()(const AggCond& c) const {
    return std::string(AggName(c.fn)) + "(" + PrintPath(c.prop) + ") of " + PrintEvent(c.event) +
           PrintWindow(c.window) + " " + CmpText(c.op) + " " + PrintNumber(c.value);
  }
  std::string operator()(const FirstLastCond& c) const {
    return std::string(c.first ? "first" : "last") + " performed " + PrintEvent(c.event) +
           PrintWindow(c.when);
  }
  std::string operator()(const LastEventCond& c) const {
    return "last event " + PrintEvent(c.event) + PrintWindow(c.window) + " has " +
           PrintFilter(c.has);
  }
  std::string operator()(const SequenceCond& c) const {
    return "performed " + PrintEvent(c.first) + " then " + PrintEvent(c.then) + " within " +
           FormatDuration(c.within) + PrintWindow(c.window);
  }
  std::string operator()(const NotFollowedCond& c) const {
    std::string out = "performed " + PrintEvent(c.first) + PrintWindow(c.window) +
                      " not followed by " + PrintEvent(c.then);
    if (c.within) out += " within " + FormatDuration(*c.within);
    return out;
  }
  std::string operator()(const SegmentRefCond& c) const {
    return "in segment " + QuoteString(c.segment);
  }
  std::string operator()(const ListRefCond& c) const { return "in list " + QuoteString(c.list); }
  std::string operator()(const MemberCond& c) const {
    std::string out;
    if (c.kind == MemberCond::Kind::kAll)
      out = "all members";
    else if (c.op == CmpOp::kGe && c.n == 1)
      out = "any member";
    else if (c.op == CmpOp::kEq && c.n == 0)
      out = "no member";
    else {
      out = PrintCount(c.op, c.n);
      out = out.substr(0, out.rfind(' ')) + (c.n == 1 ? " member" : " members");
    }
    out += " (";
    if (c.user) PrintExpr(*c.user, &out);
    return out + ")";
  }
  std::string operator()(const AccountSegmentCond& c) const {
    return "account in segment " + QuoteString(c.segment);
  }
  std::string operator()(const AccountTraitCond& c) const { return "account." + Print(c.pred); }
  std::string operator()(const TopNCond& c) const {
    std::string out = c.bottom ? "bottom " : "top ";
    out += c.percent ? PrintNumber(c.pct) + "%" : std::to_string(c.n);
    out += " by ";
    switch (c.source) {
      case TopNCond::Source::kTrait: {
        // A trait under `computed` (`computed.x`) would read as the computed trait: backquote
        // its first name, as PrintTraitPred does.
        std::string path = PrintPath(c.path);
        if (c.path.size() > 1 && IsPlainIdentifier(c.path[0]) && !IsReservedWord(c.path[0])) {
          std::string lower = c.path[0];
          for (char& ch : lower)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          if (lower == "computed") path = "`" + c.path[0] + "`" + path.substr(c.path[0].size());
        }
        return out + path;
      }
      case TopNCond::Source::kAgg:
        return out + AggName(c.agg.fn) + "(" + PrintPath(c.agg.prop) + ") of " +
               PrintEvent(c.agg.event) + PrintWindow(c.agg.window);
      case TopNCond::Source::kCount:
        return out + "count of " + PrintEvent(c.agg.event) + PrintWindow(c.agg.window);
      case TopNCond::Source::kComputed:
        return out + "computed." + PrintPath(c.path);
      case TopNCond::Source::kMembers:
        out += "members (";
        if (c.members) PrintExpr(*c.members, &out);
        return out + ")";
      case TopNCond::Source::kMemberAgg:
        return c.member_agg ? out + MemberAggValue(*c.member_agg) : out;
    }
    return out;
  }

  std::string operator()(const ComputedTraitCond& c) const { return "computed." + Print(c.pred); }
  std::string operator()(const MemberAggCond& c) const {
    return MemberAggValue(c) + " " + CmpText(c.op) + " " + PrintNumber(c.value);
  }
  // `sum(X) of members [(C)]`: a member aggregate's value, without its comparison.
  static std::string MemberAggValue(const MemberAggCond& c) {
    std::string value = PrintPath(c.prop);
    if (c.computed) {
      value = "computed." + value;
    } else if (c.prop.size() > 1 && IsPlainIdentifier(c.prop[0]) && !IsReservedWord(c.prop[0])) {
      // A user trait under `computed` would read as the computed trait: backquote its first name.
      std::string lower = c.prop[0];
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (lower == "computed") value = "`" + c.prop[0] + "`" + value.substr(c.prop[0].size());
    }
    std::string out = std::string(AggName(c.fn)) + "(" + value + ") of members";
    if (c.user) {
      out += " (";
      PrintExpr(*c.user, &out);
      out += ")";
    }
    return out;
  }
  std::string operator()(const BucketCond& c) const {
    std::string out = "bucket(" + std::to_string(c.buckets);
    if (!c.salt.empty()) out += ", " + QuoteString(c.salt);
    return out + ") " + CmpText(c.op) + " " + std::to_string(c.value);
  }
};

void PrintExprChild(const Expr& c, bool parens, std::string* out) {
  if (parens) out->push_back('(');
  PrintExpr(c, out);
  if (parens) out->push_back(')');
}

void PrintExpr(const Expr& e, std::string* out) {
  switch (e.kind) {
    case Expr::Kind::kLeaf:
      *out += std::visit(LeafPrinter{}, e.leaf);
      return;
    case Expr::Kind::kNot:
      *out += "not ";
      if (!e.children.empty())
        PrintExprChild(
            e.children[0],
            e.children[0].kind == Expr::Kind::kAnd || e.children[0].kind == Expr::Kind::kOr, out);
      return;
    case Expr::Kind::kAnd:
    case Expr::Kind::kOr: {
      bool is_and = e.kind == Expr::Kind::kAnd;
      for (size_t i = 0; i < e.children.size(); ++i) {
        if (i) *out += is_and ? " and " : " or ";
        const Expr& c = e.children[i];
        bool parens = c.kind == e.kind || (is_and && c.kind == Expr::Kind::kOr);
        PrintExprChild(c, parens, out);
      }
      return;
    }
  }
}

}  // namespace

std::string Print(const Literal& l) {
  switch (l.type) {
    case Literal::Type::kNull:
      return "null";
    case Literal::Type::kBool:
      return l.b ? "true" : "false";
    case Literal::Type::kNumber:
      return PrintNumber(l.num);
    case Literal::Type::kString:
      return QuoteString(l.str);
    case Literal::Type::kTime:
      return FormatTime(l.time);
  }
  return "null";
}

std::string Print(const TimeRange& r) {
  using K = TimeBound::Kind;
  if (r.IsEver()) return "";
  if (r.from.kind == K::kRelative && r.to.kind == K::kRelative && r.to.ms == 0 && r.from.ms > 0)
    return "within " + FormatDuration(r.from.ms);
  if (r.from.kind == K::kNone) return "before " + PrintPoint(r.to);
  if (r.to.kind == K::kNone) return "after " + PrintPoint(r.from);
  return "between " + PrintPoint(r.from) + " and " + PrintPoint(r.to);
}

std::string Print(const ValuePred& p) {
  std::string out = PrintPath(p.path);
  auto value = [&](size_t i) { return i < p.values.size() ? Print(p.values[i]) : "null"; };
  auto list = [&]() {
    std::string s = "(";
    for (size_t i = 0; i < p.values.size(); ++i) s += (i ? ", " : "") + Print(p.values[i]);
    return s + ")";
  };
  switch (p.kind) {
    case ValuePred::Kind::kCompare:
      return out + " " + CmpText(p.op) + " " + value(0);
    case ValuePred::Kind::kBetween:
      return out + " between " + value(0) + " and " + value(1);
    case ValuePred::Kind::kIn:
      return out + " in " + list();
    case ValuePred::Kind::kNotIn:
      return out + " not in " + list();
    case ValuePred::Kind::kContains:
      return out + " contains " + value(0);
    case ValuePred::Kind::kStartsWith:
      return out + " starts with " + value(0);
    case ValuePred::Kind::kEndsWith:
      return out + " ends with " + value(0);
    case ValuePred::Kind::kMatches:
      return out + " matches " + value(0);
    case ValuePred::Kind::kExists:
      return out + " exists";
    case ValuePred::Kind::kMissing:
      return out + " missing";
    case ValuePred::Kind::kTime:
      return out + " " + Print(p.time);
  }
  return out;
}

std::string Print(const PropExpr& e) {
  std::string out;
  PrintProp(e, &out);
  return out;
}

std::string Print(const Expr& e) {
  std::string out;
  PrintExpr(e, &out);
  return out;
}

// --- Computed traits ----------------------------------------------------------------------------

namespace {
const char* ComputedFnName(ComputedValueDef::Fn fn) {
  switch (fn) {
    case ComputedValueDef::Fn::kCount:
      return "count";
    case ComputedValueDef::Fn::kSum:
      return "sum";
    case ComputedValueDef::Fn::kAvg:
      return "avg";
    case ComputedValueDef::Fn::kMin:
      return "min";
    case ComputedValueDef::Fn::kMax:
      return "max";
    case ComputedValueDef::Fn::kDistinct:
      return "distinct";
    case ComputedValueDef::Fn::kUnique:
      return "unique";
    case ComputedValueDef::Fn::kFirst:
      return "first";
    case ComputedValueDef::Fn::kLast:
      return "last";
    case ComputedValueDef::Fn::kMostFrequent:
      return "most frequent";
  }
  return "count";
}

std::string PointsText(double magnitude_or_signed) {
  double m = magnitude_or_signed < 0 ? -magnitude_or_signed : magnitude_or_signed;
  return PrintNumber(magnitude_or_signed) + (m == 1 ? " point if " : " points if ");
}
}  // namespace

std::string Print(const ComputedDef& d) {
  if (d.kind == ComputedDef::Kind::kMemberAgg) return LeafPrinter::MemberAggValue(d.member_agg);
  if (d.kind == ComputedDef::Kind::kValue) {
    const ComputedValueDef& v = d.value;
    std::string out = ComputedFnName(v.fn);
    if (v.fn != ComputedValueDef::Fn::kCount) out += "(" + PrintPath(v.prop) + ")";
    return out + " of " + PrintEvent(v.event) + PrintWindow(v.window);
  }
  std::string out;
  for (size_t i = 0; i < d.terms.size(); ++i) {
    double p = d.terms[i].points;
    if (i == 0)
      out += PointsText(p);
    else
      out += p < 0 ? " - " + PointsText(-p) : " + " + PointsText(p);
    PrintExpr(d.terms[i].cond, &out);
  }
  return out;
}

}  // namespace shoal::rules
