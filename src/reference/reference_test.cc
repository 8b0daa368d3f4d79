// Tests of the reference evaluator against docs/language.md, one rule at a time. Stores and ASTs
// are built by hand (no parser), so a failure here points at the reference alone.
#include "reference/reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace shoal::reference {
namespace {

using rules::AggCond;
using rules::BucketCond;
using rules::CmpOp;
using rules::CountCond;
using rules::EventSpec;
using rules::Expr;
using rules::FirstLastCond;
using rules::LastEventCond;
using rules::Literal;
using rules::NotFollowedCond;
using rules::Path;
using rules::PropExpr;
using rules::SegmentRefCond;
using rules::SequenceCond;
using rules::TimeBound;
using rules::TimeRange;
using rules::TraitCond;
using rules::TraitHistoryCond;
using rules::ValuePred;

constexpr Millis kT0 = 1'772'323'200'000;  // 2026-03-01T00:00:00Z

// ---- AST builders ------------------------------------------------------------------------------

Literal Num(double v) {
  Literal l;
  l.type = Literal::Type::kNumber;
  l.num = v;
  return l;
}
Literal Str(std::string v) {
  Literal l;
  l.type = Literal::Type::kString;
  l.str = std::move(v);
  return l;
}
Literal Bool(bool v) {
  Literal l;
  l.type = Literal::Type::kBool;
  l.b = v;
  return l;
}
Literal TimeLit(Millis t) {
  Literal l;
  l.type = Literal::Type::kTime;
  l.time = t;
  return l;
}

Path P(std::string_view dotted) {
  Path p;
  size_t start = 0;
  while (true) {
    size_t dot = dotted.find('.', start);
    p.emplace_back(dotted.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return p;
}

ValuePred Pred(ValuePred::Kind kind, std::string_view path, std::vector<Literal> values = {}) {
  ValuePred p;
  p.kind = kind;
  p.path = P(path);
  p.values = std::move(values);
  return p;
}
ValuePred Cmp(std::string_view path, CmpOp op, Literal v) {
  ValuePred p = Pred(ValuePred::Kind::kCompare, path, {std::move(v)});
  p.op = op;
  return p;
}
ValuePred Eq(std::string_view path, Literal v) { return Cmp(path, CmpOp::kEq, std::move(v)); }
ValuePred Exists(std::string_view path) { return Pred(ValuePred::Kind::kExists, path); }
ValuePred Missing(std::string_view path) { return Pred(ValuePred::Kind::kMissing, path); }

TimeRange Ever() { return {}; }
TimeRange Within(Millis d) { return {TimeBound::Ago(d), TimeBound::Ago(0)}; }
TimeRange Range(TimeBound from, TimeBound to) { return {from, to}; }

ValuePred TimePred(std::string_view path, TimeRange r) {
  ValuePred p = Pred(ValuePred::Kind::kTime, path);
  p.time = r;
  return p;
}

Expr L(rules::Leaf leaf) {
  Expr e;
  e.kind = Expr::Kind::kLeaf;
  e.leaf = std::move(leaf);
  return e;
}
Expr Bin(Expr::Kind kind, std::vector<Expr> children) {
  Expr e;
  e.kind = kind;
  e.children = std::move(children);
  return e;
}
Expr And(std::vector<Expr> c) { return Bin(Expr::Kind::kAnd, std::move(c)); }
Expr Or(std::vector<Expr> c) { return Bin(Expr::Kind::kOr, std::move(c)); }
Expr Not(Expr c) { return Bin(Expr::Kind::kNot, {std::move(c)}); }

Expr Trait(ValuePred p) { return L(TraitCond{std::move(p)}); }

PropExpr PP(ValuePred p) {
  PropExpr e;
  e.kind = PropExpr::Kind::kPred;
  e.pred = std::move(p);
  return e;
}
PropExpr PBin(PropExpr::Kind kind, std::vector<PropExpr> c) {
  PropExpr e;
  e.kind = kind;
  e.children = std::move(c);
  return e;
}

EventSpec Ev(std::string name, std::optional<PropExpr> filter = std::nullopt) {
  return EventSpec{std::move(name), std::move(filter)};
}
EventSpec Ev(std::string name, ValuePred where) {
  return Ev(std::move(name), PP(std::move(where)));
}

Expr Performed(EventSpec ev, TimeRange window = Ever(), CmpOp op = CmpOp::kGe, int64_t n = 1) {
  CountCond c;
  c.event = std::move(ev);
  c.window = window;
  c.op = op;
  c.n = n;
  return L(std::move(c));
}

Expr Agg(AggCond::Fn fn, std::string_view prop, EventSpec ev, TimeRange window, CmpOp op,
         double value) {
  AggCond c;
  c.fn = fn;
  c.prop = P(prop);
  c.event = std::move(ev);
  c.window = window;
  c.op = op;
  c.value = value;
  return L(std::move(c));
}

// ---- store fixture
// -------------------------------------------------------------------------------

using Props = std::vector<std::pair<std::string, Value>>;

// A store and the named definitions `in segment` can see, with helpers to fill them.
class World {
 public:
  uint32_t Add(std::string_view profile, uint32_t name, Millis ts, const Props& props) {
    std::vector<store::PropEntry> entries;
    for (const auto& [key, v] : props) {
      store::StoredValue sv;
      sv.type = v.type;
      sv.b = v.b;
      sv.num = v.num;
      if (v.type == ValueType::kString || v.type == ValueType::kList)
        sv.str = store_.strings().Intern(v.str);
      entries.push_back(store::PropEntry::Make(store_.keys().Intern(key), sv));
    }
    std::sort(
        entries.begin(), entries.end(),
        [](const store::PropEntry& a, const store::PropEntry& b) { return a.key() < b.key(); });
    return store_.Append(store_.profiles().Intern(profile), name, ts, entries);
  }
  uint32_t Track(std::string_view profile, std::string_view event, Millis ts,
                 const Props& props = {}) {
    return Add(profile, store_.strings().Intern(event), ts, props);
  }
  uint32_t Identify(std::string_view profile, Millis ts, const Props& traits) {
    return Add(profile, store::Store::kIdentifyName, ts, traits);
  }

  DefinitionLookup Lookup() {
    return [this](std::string_view name) -> const Expr* {
      auto it = defs_.find(std::string(name));
      return it == defs_.end() ? nullptr : &it->second;
    };
  }

  std::vector<std::string> Members(const Expr& e, Millis now) {
    return reference::Members(store_, e, Lookup(), now);
  }

  // Membership of one profile, checked to agree between IsMember and Members.
  bool Is(std::string_view profile, const Expr& e, Millis now) {
    std::optional<uint32_t> id = store_.profiles().Find(profile);
    EXPECT_TRUE(id.has_value()) << profile;
    if (!id) return false;
    bool one = IsMember(store_, *id, e, Lookup(), now);
    std::vector<std::string> all = Members(e, now);
    bool in_all = std::find(all.begin(), all.end(), std::string(profile)) != all.end();
    EXPECT_EQ(one, in_all) << "IsMember and Members disagree for " << profile;
    return one;
  }

  store::Store store_;
  std::map<std::string, Expr> defs_;
};

class ReferenceTest : public ::testing::Test, public World {};

// A value predicate on trait `x` of a profile whose only identify sets x to `v`.
bool OnValue(const ValuePred& p, const Value& v, Millis now = kT0) {
  World f;
  f.Identify("u", kT0 - 1000, {{"x", v}});
  return f.Is("u", Trait(p), now);
}
// The same predicate on a profile that has no x at all.
bool OnMissing(const ValuePred& p, Millis now = kT0) {
  World f;
  f.Identify("u", kT0 - 1000, {{"other", Value::Number(1)}});
  return f.Is("u", Trait(p), now);
}

// ---- values, missing and types
// -------------------------------------------------------------------

TEST(ReferenceValueTest, NoValueMakesEverythingFalseExceptMissing) {
  std::vector<ValuePred> preds = {
      Eq("x", Str("pro")),
      Cmp("x", CmpOp::kNe, Str("pro")),
      Cmp("x", CmpOp::kLt, Num(1)),
      Pred(ValuePred::Kind::kBetween, "x", {Num(0), Num(10)}),
      Pred(ValuePred::Kind::kIn, "x", {Str("pro")}),
      Pred(ValuePred::Kind::kNotIn, "x", {Str("pro")}),
      Pred(ValuePred::Kind::kContains, "x", {Str("")}),
      Pred(ValuePred::Kind::kStartsWith, "x", {Str("")}),
      Pred(ValuePred::Kind::kEndsWith, "x", {Str("")}),
      Pred(ValuePred::Kind::kMatches, "x", {Str(".*")}),
      Exists("x"),
      TimePred("x", Ever()),
  };
  for (const ValuePred& p : preds) {
    EXPECT_FALSE(OnMissing(p)) << static_cast<int>(p.kind);
    EXPECT_FALSE(OnValue(p, Value::Null())) << static_cast<int>(p.kind);
  }
  EXPECT_TRUE(OnMissing(Missing("x")));
  EXPECT_TRUE(OnValue(Missing("x"), Value::Null()));
  EXPECT_FALSE(OnValue(Missing("x"), Value::String("")));
  EXPECT_TRUE(OnValue(Exists("x"), Value::String("")));
  EXPECT_TRUE(OnValue(Exists("x"), Value::Bool(false)));
  EXPECT_TRUE(OnValue(Exists("x"), Value::List("[]")));
}

TEST(ReferenceValueTest, NotOfEqualityIncludesNoValue) {
  EXPECT_TRUE(OnMissing(Missing("x")));
  World f;
  f.Identify("a", kT0, {{"plan", Value::String("free")}});
  f.Identify("b", kT0, {{"other", Value::Number(1)}});
  f.Identify("c", kT0, {{"plan", Value::String("pro")}});
  EXPECT_EQ(f.Members(Trait(Cmp("plan", CmpOp::kNe, Str("pro"))), kT0 + 1),
            (std::vector<std::string>{"a"}));
  EXPECT_EQ(f.Members(Not(Trait(Eq("plan", Str("pro")))), kT0 + 1),
            (std::vector<std::string>{"a", "b"}));
}

TEST(ReferenceValueTest, EqualityIsTyped) {
  Value thirty = Value::Number(30);
  EXPECT_TRUE(OnValue(Eq("x", Num(30)), thirty));
  EXPECT_TRUE(OnValue(Eq("x", Num(30.0)), Value::Number(30.0)));
  EXPECT_FALSE(OnValue(Eq("x", Str("30")), thirty));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kNe, Str("30")), thirty));
  EXPECT_FALSE(OnValue(Eq("x", Num(30)), Value::String("30")));
  EXPECT_TRUE(OnValue(Eq("x", Bool(true)), Value::Bool(true)));
  EXPECT_FALSE(OnValue(Eq("x", Bool(true)), Value::Number(1)));
  EXPECT_FALSE(OnValue(Eq("x", Bool(false)), Value::String("false")));
  EXPECT_TRUE(OnValue(Eq("x", Str("Ab")), Value::String("Ab")));
  EXPECT_FALSE(OnValue(Eq("x", Str("ab")), Value::String("Ab")));
  EXPECT_TRUE(OnValue(Eq("x", Num(0)), Value::Number(-0.0)));
  // in / not in
  EXPECT_TRUE(
      OnValue(Pred(ValuePred::Kind::kIn, "x", {Str("DE"), Str("FR")}), Value::String("FR")));
  EXPECT_FALSE(OnValue(Pred(ValuePred::Kind::kIn, "x", {Str("DE"), Num(1)}), Value::String("1")));
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kNotIn, "x", {Str("DE"), Num(1)}), Value::String("1")));
  EXPECT_FALSE(OnValue(Pred(ValuePred::Kind::kNotIn, "x", {Str("DE"), Num(1)}), Value::Number(1)));
}

TEST(ReferenceValueTest, ListsNeverEqualALiteral) {
  Value list = Value::List(R"(["a"])");
  EXPECT_FALSE(OnValue(Eq("x", Str("a")), list));
  EXPECT_FALSE(OnValue(Eq("x", Str(R"(["a"])")), list));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kNe, Str("a")), list));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kLt, Str("z")), list));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kGe, Str("")), list));
  EXPECT_FALSE(OnValue(Pred(ValuePred::Kind::kIn, "x", {Str("a")}), list));
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kNotIn, "x", {Str("a")}), list));
}

TEST(ReferenceValueTest, OrderOnlyBetweenSameKinds) {
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kLt, Num(10)), Value::Number(9.5)));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kLt, Num(10)), Value::Number(10)));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kLe, Num(10)), Value::Number(10)));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kGt, Num(-1)), Value::Number(0)));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kGe, Num(3)), Value::Number(3)));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kLt, Num(10)), Value::String("9")));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kGt, Str("1")), Value::Number(9)));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kGt, Bool(false)), Value::Bool(true)));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kLe, Bool(true)), Value::Bool(true)));
  // Strings compare bytewise: uppercase before lowercase, UTF-8 bytes above ASCII.
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kLt, Str("a")), Value::String("Z")));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kGt, Str("z")), Value::String("\xC3\xA9")));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kLt, Str("ab")), Value::String("a")));
  // between includes both ends
  ValuePred between = Pred(ValuePred::Kind::kBetween, "x", {Num(25), Num(40)});
  EXPECT_TRUE(OnValue(between, Value::Number(25)));
  EXPECT_TRUE(OnValue(between, Value::Number(40)));
  EXPECT_FALSE(OnValue(between, Value::Number(40.0001)));
  EXPECT_FALSE(OnValue(between, Value::Number(24.9999)));
  EXPECT_FALSE(OnValue(between, Value::String("30")));
  ValuePred sbetween = Pred(ValuePred::Kind::kBetween, "x", {Str("b"), Str("d")});
  EXPECT_TRUE(OnValue(sbetween, Value::String("b")));
  EXPECT_TRUE(OnValue(sbetween, Value::String("cz")));
  EXPECT_TRUE(OnValue(sbetween, Value::String("d")));
  EXPECT_FALSE(OnValue(sbetween, Value::String("da")));
}

TEST(ReferenceValueTest, TimeLiteralsReadStringsAsInstants) {
  Millis jan1 = *ParseTime("2026-01-01");
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kGe, TimeLit(jan1)), Value::String("2026-01-01T00:00:00Z")));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kGt, TimeLit(jan1)), Value::String("2026-01-01")));
  // An offset makes the instant earlier than its text suggests.
  EXPECT_TRUE(
      OnValue(Cmp("x", CmpOp::kLt, TimeLit(jan1)), Value::String("2026-01-01T00:30:00+01:00")));
  EXPECT_TRUE(OnValue(Eq("x", TimeLit(jan1)), Value::String("2026-01-01T01:00:00+01:00")));
  EXPECT_FALSE(OnValue(Eq("x", TimeLit(jan1)), Value::String("yesterday")));
  EXPECT_TRUE(OnValue(Cmp("x", CmpOp::kNe, TimeLit(jan1)), Value::String("yesterday")));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kLt, TimeLit(jan1)), Value::String("yesterday")));
  EXPECT_FALSE(OnValue(Cmp("x", CmpOp::kGe, TimeLit(jan1)), Value::String("yesterday")));
  // Numbers are not read as times.
  EXPECT_FALSE(
      OnValue(Cmp("x", CmpOp::kGe, TimeLit(jan1)), Value::Number(static_cast<double>(jan1))));
  EXPECT_FALSE(OnValue(Eq("x", TimeLit(jan1)), Value::Number(static_cast<double>(jan1))));
  ValuePred between =
      Pred(ValuePred::Kind::kBetween, "x", {TimeLit(jan1), TimeLit(*ParseTime("2026-02-01"))});
  EXPECT_TRUE(OnValue(between, Value::String("2026-02-01")));  // inclusive
  EXPECT_FALSE(OnValue(between, Value::String("2026-02-01T00:00:00.001Z")));
}

TEST(ReferenceValueTest, TimePredicates) {
  Millis now = kT0;
  ValuePred within7 = TimePred("x", Within(7 * kDay));
  EXPECT_TRUE(OnValue(within7, Value::String(FormatTime(now - 7 * kDay)), now));
  EXPECT_FALSE(OnValue(within7, Value::String(FormatTime(now - 7 * kDay - 1)), now));
  EXPECT_TRUE(OnValue(within7, Value::String(FormatTime(now - 1)), now));
  EXPECT_FALSE(OnValue(within7, Value::String(FormatTime(now)), now));  // [now-7d, now)
  EXPECT_FALSE(OnValue(within7, Value::String("soon"), now));
  EXPECT_FALSE(OnValue(within7, Value::Number(static_cast<double>(now - 1)), now));
  EXPECT_FALSE(OnValue(within7, Value::List(R"([")" + FormatTime(now - 1) + R"("])"), now));

  // after: [from, +inf), not cut at now.
  ValuePred after =
      TimePred("x", Range(TimeBound::At(*ParseTime("2026-01-01")), TimeBound::None()));
  EXPECT_TRUE(OnValue(after, Value::String("2026-01-01"), now));
  EXPECT_TRUE(OnValue(after, Value::String("2099-01-01"), now));
  EXPECT_FALSE(OnValue(after, Value::String("2025-12-31T23:59:59.999Z"), now));
  ValuePred after_ago = TimePred("x", Range(TimeBound::Ago(kDay), TimeBound::None()));
  EXPECT_TRUE(OnValue(after_ago, Value::String(FormatTime(now + kWeek)), now));
  // before: (-inf, to)
  ValuePred before = TimePred("x", Range(TimeBound::None(), TimeBound::Ago(30 * kDay)));
  EXPECT_TRUE(OnValue(before, Value::String("1970-01-01"), now));
  EXPECT_TRUE(OnValue(before, Value::String(FormatTime(now - 30 * kDay - 1)), now));
  EXPECT_FALSE(OnValue(before, Value::String(FormatTime(now - 30 * kDay)), now));
  // between 90d ago and 30d ago
  ValuePred between = TimePred("x", Range(TimeBound::Ago(90 * kDay), TimeBound::Ago(30 * kDay)));
  EXPECT_TRUE(OnValue(between, Value::String(FormatTime(now - 90 * kDay)), now));
  EXPECT_FALSE(OnValue(between, Value::String(FormatTime(now - 30 * kDay)), now));
}

TEST(ReferenceValueTest, ContainsOnStringsAndLists) {
  ValuePred c = Pred(ValuePred::Kind::kContains, "x", {Str("ma")});
  EXPECT_TRUE(OnValue(c, Value::String("gmail.com")));
  EXPECT_FALSE(OnValue(c, Value::String("MAIL")));
  EXPECT_FALSE(OnValue(c, Value::Number(1)));
  EXPECT_FALSE(OnValue(c, Value::Bool(true)));
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kContains, "x", {Str("")}), Value::String("")));
  // Lists: an element equal to the literal, typed.
  EXPECT_FALSE(OnValue(c, Value::List(R"(["gmail"])")));  // not a substring test on elements
  EXPECT_TRUE(OnValue(c, Value::List(R"([1,"ma",true])")));
  EXPECT_FALSE(OnValue(Pred(ValuePred::Kind::kContains, "x", {Str("1")}), Value::List("[1,2]")));
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kContains, "x", {Num(2)}), Value::List("[1, 2.0]")));
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kContains, "x", {Num(100)}), Value::List("[1e2]")));
  EXPECT_TRUE(
      OnValue(Pred(ValuePred::Kind::kContains, "x", {Bool(false)}), Value::List("[false]")));
  EXPECT_FALSE(
      OnValue(Pred(ValuePred::Kind::kContains, "x", {Str("false")}), Value::List("[false]")));
  // Escapes are decoded.
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kContains, "x", {Str("a\"b")}),
                      Value::List(R"(["x","a\"b"])")));
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kContains, "x", {Str("\xC3\xA9")}),
                      Value::List(R"(["\u00e9"])")));
  EXPECT_TRUE(OnValue(Pred(ValuePred::Kind::kContains, "x", {Str("\xF0\x9F\x98\x80")}),
                      Value::List(R"(["\ud83d\ude00"])")));
  EXPECT_TRUE(
      OnValue(Pred(ValuePred::Kind::kContains, "x", {Str("a\\n")}), Value::List(R"(["a\\n"])")));
  // Nested arrays and objects equal nothing, but do not hide the elements after them.
  ValuePred has_b = Pred(ValuePred::Kind::kContains, "x", {Str("b")});
  EXPECT_FALSE(OnValue(has_b, Value::List(R"([["b"],{"b":"b"}])")));
  EXPECT_TRUE(OnValue(has_b, Value::List(R"([["b",["]"]],{"k":[1,"}"]},null,"b"])")));
  EXPECT_FALSE(OnValue(has_b, Value::List("[]")));
  EXPECT_FALSE(OnValue(has_b, Value::List("not json")));
}

TEST(ReferenceValueTest, StartsEndsMatchesOnlyOnStrings) {
  ValuePred ends = Pred(ValuePred::Kind::kEndsWith, "x", {Str("@gmail.com")});
  EXPECT_TRUE(OnValue(ends, Value::String("ada@gmail.com")));
  EXPECT_FALSE(OnValue(ends, Value::String("ada@gmail.com.fr")));
  EXPECT_FALSE(OnValue(ends, Value::List(R"(["ada@gmail.com"])")));
  ValuePred starts = Pred(ValuePred::Kind::kStartsWith, "x", {Str("12")});
  EXPECT_TRUE(OnValue(starts, Value::String("123")));
  EXPECT_FALSE(OnValue(starts, Value::Number(123)));
  ValuePred matches = Pred(ValuePred::Kind::kMatches, "x", {Str("^a.c$")});
  EXPECT_TRUE(OnValue(matches, Value::String("abc")));
  EXPECT_FALSE(OnValue(matches, Value::String("abcd")));
  // Searched anywhere in the string.
  EXPECT_TRUE(
      OnValue(Pred(ValuePred::Kind::kMatches, "x", {Str("[0-9]+")}), Value::String("ab12")));
  EXPECT_FALSE(OnValue(Pred(ValuePred::Kind::kMatches, "x", {Str("1")}), Value::Number(1)));
  // An invalid regular expression (rejected by the parser) is false here, never a crash.
  EXPECT_FALSE(OnValue(Pred(ValuePred::Kind::kMatches, "x", {Str("(")}), Value::String("(")));
}

// ---- traits ------------------------------------------------------------------------------------

TEST_F(ReferenceTest, TraitTakesLatestTimestampNotLatestArrival) {
  Identify("u", kT0 + 20, {{"plan", Value::String("pro")}});
  Identify("u", kT0 + 10, {{"plan", Value::String("free")}});  // late, older
  EXPECT_TRUE(Is("u", Trait(Eq("plan", Str("pro"))), kT0 + 100));
  EXPECT_FALSE(Is("u", Trait(Eq("plan", Str("free"))), kT0 + 100));
}

TEST_F(ReferenceTest, TraitTieGoesToLastArrival) {
  Identify("u", kT0, {{"plan", Value::String("pro")}});
  Identify("u", kT0, {{"plan", Value::String("free")}});
  EXPECT_TRUE(Is("u", Trait(Eq("plan", Str("free"))), kT0 + 1));
  Identify("u", kT0, {{"plan", Value::String("pro")}});
  EXPECT_TRUE(Is("u", Trait(Eq("plan", Str("pro"))), kT0 + 1));
}

TEST_F(ReferenceTest, TraitUnmentionedPathsStayAndNullClears) {
  Identify("u", kT0, {{"plan", Value::String("pro")}, {"address.city", Value::String("Paris")}});
  Identify("u", kT0 + 1, {{"address.zip", Value::String("75001")}});
  EXPECT_TRUE(Is("u", Trait(Eq("address.city", Str("Paris"))), kT0 + 2));
  EXPECT_TRUE(Is("u", Trait(Eq("plan", Str("pro"))), kT0 + 2));
  EXPECT_FALSE(Is("u", Trait(Exists("address")), kT0 + 2));  // only the leaves exist
  Identify("u", kT0 + 2, {{"plan", Value::Null()}});
  EXPECT_TRUE(Is("u", Trait(Missing("plan")), kT0 + 3));
  EXPECT_FALSE(Is("u", Trait(Exists("plan")), kT0 + 3));
  // A null that is older than the value does not clear it.
  Identify("u", kT0 - 5, {{"address.city", Value::Null()}});
  EXPECT_TRUE(Is("u", Trait(Eq("address.city", Str("Paris"))), kT0 + 3));
  // A value set at an older time than the null stays cleared.
  Identify("u", kT0 + 1, {{"plan", Value::String("pro")}});
  EXPECT_TRUE(Is("u", Trait(Missing("plan")), kT0 + 3));
}

TEST_F(ReferenceTest, TraitsAreNotCutAtNow) {
  // The doc cuts only event windows at now; a future-dated identify already sets the trait.
  Identify("u", kT0 + kDay, {{"plan", Value::String("pro")}});
  EXPECT_TRUE(Is("u", Trait(Eq("plan", Str("pro"))), kT0));
}

TEST_F(ReferenceTest, TraitsComeOnlyFromIdentify) {
  Track("u", "Order Completed", kT0, {{"plan", Value::String("pro")}});
  EXPECT_FALSE(Is("u", Trait(Eq("plan", Str("pro"))), kT0 + 1));
  EXPECT_TRUE(Is("u", Trait(Missing("plan")), kT0 + 1));
}

TEST_F(ReferenceTest, UnknownKeyIsMissing) {
  Identify("u", kT0, {{"a", Value::Number(1)}});
  EXPECT_TRUE(Is("u", Trait(Missing("never.interned")), kT0));
  EXPECT_FALSE(Is("u", Trait(Cmp("never.interned", CmpOp::kNe, Num(1))), kT0));
}

// ---- event windows -----------------------------------------------------------------------------

TEST_F(ReferenceTest, Within30dBoundariesToTheMillisecond) {
  Millis t = kT0;
  Track("u", "Order Completed", t);
  Expr e = Performed(Ev("Order Completed"), Within(30 * kDay));
  EXPECT_FALSE(Is("u", e, t - 1));
  EXPECT_FALSE(Is("u", e, t));  // ts < now
  EXPECT_TRUE(Is("u", e, t + 1));
  EXPECT_TRUE(Is("u", e, t + 30 * kDay));
  EXPECT_FALSE(Is("u", e, t + 30 * kDay + 1));
}

TEST_F(ReferenceTest, EverMeansEveryEventBeforeNow) {
  Track("u", "Signup", kT0);
  Expr e = Performed(Ev("Signup"));
  EXPECT_FALSE(Is("u", e, kT0));
  EXPECT_TRUE(Is("u", e, kT0 + 1));
  EXPECT_TRUE(Is("u", e, kT0 + 1000 * kDay));
}

TEST_F(ReferenceTest, BetweenAgoWindow) {
  Track("u", "Login", kT0);
  Expr e = Performed(Ev("Login"), Range(TimeBound::Ago(90 * kDay), TimeBound::Ago(30 * kDay)));
  EXPECT_FALSE(Is("u", e, kT0 + 30 * kDay));  // ts must be < now - 30d
  EXPECT_TRUE(Is("u", e, kT0 + 30 * kDay + 1));
  EXPECT_TRUE(Is("u", e, kT0 + 90 * kDay));
  EXPECT_FALSE(Is("u", e, kT0 + 90 * kDay + 1));
}

TEST_F(ReferenceTest, AbsoluteBeforeAndAfterWindows) {
  Millis jan1 = *ParseTime("2026-01-01");
  Track("u", "Login", jan1 - 1);
  Track("v", "Login", jan1);
  Expr before = Performed(Ev("Login"), Range(TimeBound::None(), TimeBound::At(jan1)));
  Expr after = Performed(Ev("Login"), Range(TimeBound::At(jan1), TimeBound::None()));
  EXPECT_EQ(Members(before, kT0), (std::vector<std::string>{"u"}));
  EXPECT_EQ(Members(after, kT0), (std::vector<std::string>{"v"}));
  // `after` is still cut at now.
  EXPECT_TRUE(Members(after, jan1).empty());
  EXPECT_EQ(Members(after, jan1 + 1), (std::vector<std::string>{"v"}));
  // `before 2026-01-01` with now earlier than the event: cut at now.
  EXPECT_TRUE(Members(before, jan1 - 1).empty());
}

TEST_F(ReferenceTest, FutureEventCountsOncePassed) {
  Track("u", "Order Completed", kT0 + kHour);
  Expr e = Performed(Ev("Order Completed"), Within(kDay));
  EXPECT_FALSE(Is("u", e, kT0));
  EXPECT_FALSE(Is("u", e, kT0 + kHour));
  EXPECT_TRUE(Is("u", e, kT0 + kHour + 1));
}

TEST_F(ReferenceTest, LateEventCountsByEventTime) {
  Track("u", "Order Completed", kT0);
  Expr twice = Performed(Ev("Order Completed"), Within(30 * kDay), CmpOp::kGe, 2);
  EXPECT_FALSE(Is("u", twice, kT0 + kDay));
  Track("u", "Order Completed", kT0 - kDay);  // arrives late, inside the window
  EXPECT_TRUE(Is("u", twice, kT0 + kDay));
  Track("u", "Order Completed", kT0 - 100 * kDay);  // older than the window: no change
  EXPECT_FALSE(
      Is("u", Performed(Ev("Order Completed"), Within(30 * kDay), CmpOp::kGe, 3), kT0 + kDay));
}

// ---- counts and filters ------------------------------------------------------------------------

TEST_F(ReferenceTest, CountOperators) {
  for (int i = 0; i < 5; ++i) Track("u", "Login", kT0 + i);
  Millis now = kT0 + kDay;
  EXPECT_TRUE(Is("u", Performed(Ev("Login"), Ever(), CmpOp::kGe, 5), now));
  EXPECT_FALSE(Is("u", Performed(Ev("Login"), Ever(), CmpOp::kGe, 6), now));
  EXPECT_TRUE(Is("u", Performed(Ev("Login"), Ever(), CmpOp::kLe, 5), now));
  EXPECT_TRUE(Is("u", Performed(Ev("Login"), Ever(), CmpOp::kEq, 5), now));
  EXPECT_TRUE(Is("u", Performed(Ev("Login"), Ever(), CmpOp::kGt, 4), now));
  EXPECT_FALSE(Is("u", Performed(Ev("Login"), Ever(), CmpOp::kLt, 5), now));
  EXPECT_TRUE(Is("u", Performed(Ev("Login"), Ever(), CmpOp::kNe, 4), now));
  EXPECT_EQ(Members(Performed(Ev("Login"), Ever(), CmpOp::kEq, 3), kT0 + 3),
            std::vector<std::string>{"u"});
}

TEST_F(ReferenceTest, DidNotPerformIncludesProfilesWithoutEvents) {
  Identify("a", kT0, {{"plan", Value::String("pro")}});
  Track("b", "Transfer Set Up", kT0);
  Track("c", "Other", kT0);
  Expr did_not = Performed(Ev("Transfer Set Up"), Ever(), CmpOp::kEq, 0);
  EXPECT_EQ(Members(did_not, kT0 + 1), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(Members(did_not, kT0), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(ReferenceTest, NamesAreExactAndIdentifiesAreNotEvents) {
  Track("u", "order completed", kT0);
  Identify("u", kT0, {{"x", Value::Number(1)}});
  EXPECT_FALSE(Is("u", Performed(Ev("Order Completed")), kT0 + 1));
  EXPECT_FALSE(Is("u", Performed(Ev("Order Completed ")), kT0 + 1));
  EXPECT_TRUE(Is("u", Performed(Ev("order completed")), kT0 + 1));
  // The identify records share the pool string "$identify"; they are never track events.
  EXPECT_FALSE(Is("u", Performed(Ev("$identify")), kT0 + 1));
  EXPECT_FALSE(Is("u", Performed(Ev("never seen")), kT0 + 1));
}

TEST_F(ReferenceTest, WhereFilters) {
  Track("u", "Flight Booked", kT0,
        {{"destination", Value::String("Lisbon")}, {"price", Value::Number(90)}});
  Track("u", "Flight Booked", kT0,
        {{"destination", Value::String("Porto")}, {"price", Value::Number(200)}});
  Track("u", "Flight Booked", kT0, {{"price", Value::Number(50)}});
  Millis now = kT0 + 1;
  auto count = [&](PropExpr f) {
    for (int64_t n = 0; n <= 3; ++n)
      if (Is("u", Performed(Ev("Flight Booked", f), Ever(), CmpOp::kEq, n), now)) return n;
    return int64_t{-1};
  };
  EXPECT_EQ(count(PP(Eq("destination", Str("Lisbon")))), 1);
  EXPECT_EQ(count(PP(Cmp("destination", CmpOp::kNe, Str("Lisbon")))), 1);  // missing is false
  EXPECT_EQ(count(PBin(PropExpr::Kind::kNot, {PP(Eq("destination", Str("Lisbon")))})), 2);
  EXPECT_EQ(count(PBin(PropExpr::Kind::kAnd,
                       {PP(Cmp("price", CmpOp::kGt, Num(60))), PP(Exists("destination"))})),
            2);
  EXPECT_EQ(count(PBin(PropExpr::Kind::kOr, {PP(Cmp("price", CmpOp::kLt, Num(60))),
                                             PP(Eq("destination", Str("Porto")))})),
            2);
  EXPECT_EQ(count(PP(Missing("destination"))), 1);
  EXPECT_EQ(count(PP(Missing("nope"))), 3);
  // Event properties are not traits.
  EXPECT_FALSE(Is("u", Trait(Exists("destination")), now));
}

// ---- aggregates --------------------------------------------------------------------------------

TEST_F(ReferenceTest, SumIsExactToMillionths) {
  Track("u", "Order Completed", kT0, {{"total", Value::Number(0.1)}});
  Track("u", "Order Completed", kT0, {{"total", Value::Number(0.2)}});
  Millis now = kT0 + 1;
  EXPECT_TRUE(Is(
      "u", Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kEq, 0.3), now));
  EXPECT_FALSE(Is(
      "u", Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kGt, 0.3), now));
  EXPECT_TRUE(Is(
      "u", Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kGe, 0.3), now));
  // Rounded to millionths each: 0.0000004 counts as 0.
  Track("u", "Order Completed", kT0, {{"total", Value::Number(0.0000004)}});
  EXPECT_TRUE(Is(
      "u", Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kEq, 0.3), now));
  Track("u", "Order Completed", kT0, {{"total", Value::Number(0.0000006)}});
  EXPECT_TRUE(
      Is("u", Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kEq, 0.300001),
         now));
}

TEST_F(ReferenceTest, SumSkipsNonNumbersAndIsZeroOnNothing) {
  Track("u", "Order Completed", kT0, {{"total", Value::String("500")}});
  Track("u", "Order Completed", kT0, {{"total", Value::Null()}});
  Track("u", "Order Completed", kT0, {{"other", Value::Number(9)}});
  Track("u", "Order Completed", kT0, {{"total", Value::List("[600]")}});
  Identify("v", kT0, {{"total", Value::Number(1000)}});
  Millis now = kT0 + 1;
  Expr zero = Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kEq, 0);
  EXPECT_EQ(Members(zero, now), (std::vector<std::string>{"u", "v"}));
  Expr lt = Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kLt, 1);
  EXPECT_EQ(Members(lt, now), (std::vector<std::string>{"u", "v"}));
}

TEST_F(ReferenceTest, SumWindowAndFilter) {
  Track("u", "Order Completed", kT0,
        {{"total", Value::Number(300)}, {"currency", Value::String("EUR")}});
  Track("u", "Order Completed", kT0 + kDay,
        {{"total", Value::Number(250)}, {"currency", Value::String("USD")}});
  Expr gt500 =
      Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Within(90 * kDay), CmpOp::kGt, 500);
  EXPECT_FALSE(Is("u", gt500, kT0 + kDay));  // the second one is at now
  EXPECT_TRUE(Is("u", gt500, kT0 + kDay + 1));
  EXPECT_TRUE(Is("u", gt500, kT0 + 90 * kDay));
  EXPECT_FALSE(Is("u", gt500, kT0 + 90 * kDay + 1));  // the first left
  Expr eur = Agg(AggCond::Fn::kSum, "total", Ev("Order Completed", Eq("currency", Str("EUR"))),
                 Ever(), CmpOp::kEq, 300);
  EXPECT_TRUE(Is("u", eur, kT0 + 2 * kDay));
}

TEST_F(ReferenceTest, AvgMinMax) {
  Millis now = kT0 + 1;
  auto agg = [&](AggCond::Fn fn, CmpOp op, double v) {
    return Is("u", Agg(fn, "x", Ev("E"), Ever(), op, v), now);
  };
  Track("u", "E", kT0, {{"x", Value::String("no")}});
  // No numeric values: avg, min and max are no value, so false whatever the comparison.
  for (CmpOp op : {CmpOp::kEq, CmpOp::kNe, CmpOp::kLt, CmpOp::kGe}) {
    EXPECT_FALSE(agg(AggCond::Fn::kAvg, op, 0));
    EXPECT_FALSE(agg(AggCond::Fn::kMin, op, 0));
    EXPECT_FALSE(agg(AggCond::Fn::kMax, op, 0));
  }
  Track("u", "E", kT0, {{"x", Value::Number(0.1)}});
  Track("u", "E", kT0, {{"x", Value::Number(0.2)}});
  Track("u", "E", kT0, {{"x", Value::Number(0.3)}});
  EXPECT_TRUE(agg(AggCond::Fn::kAvg, CmpOp::kEq, 0.2));  // exact: 600000 = 200000 * 3
  EXPECT_FALSE(agg(AggCond::Fn::kAvg, CmpOp::kGt, 0.2));
  EXPECT_TRUE(agg(AggCond::Fn::kMin, CmpOp::kEq, 0.1));
  EXPECT_TRUE(agg(AggCond::Fn::kMax, CmpOp::kEq, 0.3));
  EXPECT_TRUE(agg(AggCond::Fn::kMax, CmpOp::kLt, 0.31));
  EXPECT_FALSE(agg(AggCond::Fn::kMin, CmpOp::kGt, 0.1));
  // avg of 1 and 2 is 1.5: exact comparisons in integers.
  Track("w", "E", kT0, {{"x", Value::Number(1)}});
  Track("w", "E", kT0, {{"x", Value::Number(2)}});
  EXPECT_TRUE(Is("w", Agg(AggCond::Fn::kAvg, "x", Ev("E"), Ever(), CmpOp::kEq, 1.5), now));
  EXPECT_TRUE(Is("w", Agg(AggCond::Fn::kAvg, "x", Ev("E"), Ever(), CmpOp::kGt, 1.499999), now));
  EXPECT_TRUE(Is("w", Agg(AggCond::Fn::kAvg, "x", Ev("E"), Ever(), CmpOp::kLt, 1.500001), now));
  EXPECT_TRUE(Is("w", Agg(AggCond::Fn::kSum, "x", Ev("E"), Ever(), CmpOp::kEq, 3), now));
}

TEST_F(ReferenceTest, DistinctIsTyped) {
  Track("u", "Viewed", kT0, {{"c", Value::Number(1)}});
  Track("u", "Viewed", kT0, {{"c", Value::String("1")}});
  Track("u", "Viewed", kT0, {{"c", Value::Number(1.0)}});
  Track("u", "Viewed", kT0, {{"c", Value::Null()}});
  Track("u", "Viewed", kT0, {});
  Track("u", "Viewed", kT0, {{"c", Value::Bool(true)}});
  Track("u", "Viewed", kT0, {{"c", Value::List("[1]")}});
  Track("u", "Viewed", kT0, {{"c", Value::List("[1]")}});
  Track("u", "Viewed", kT0 + kDay, {{"c", Value::String("late")}});
  Millis now = kT0 + 1;
  auto distinct = [&](CmpOp op, double v) {
    return Is("u", Agg(AggCond::Fn::kDistinct, "c", Ev("Viewed"), Ever(), op, v), now);
  };
  EXPECT_TRUE(distinct(CmpOp::kEq, 4));  // 1, "1", true, [1]
  EXPECT_TRUE(distinct(CmpOp::kGe, 3.5));
  EXPECT_FALSE(distinct(CmpOp::kGt, 4));
  // No events: 0 distinct values (a number, so the comparison is made).
  Identify("v", kT0, {{"a", Value::Number(1)}});
  EXPECT_TRUE(Is("v", Agg(AggCond::Fn::kDistinct, "c", Ev("Viewed"), Ever(), CmpOp::kEq, 0), now));
}

// ---- first / last ------------------------------------------------------------------------------

TEST_F(ReferenceTest, FirstPerformedWithin) {
  FirstLastCond c;
  c.first = true;
  c.event = Ev("Order Completed");
  c.when = Within(7 * kDay);
  Expr e = L(c);
  Track("u", "Order Completed", kT0);
  Track("u", "Order Completed", kT0 + 3 * kDay);
  EXPECT_FALSE(Is("u", e, kT0));  // none before now
  EXPECT_TRUE(Is("u", e, kT0 + 1));
  EXPECT_TRUE(Is("u", e, kT0 + 7 * kDay));
  EXPECT_FALSE(Is("u", e, kT0 + 7 * kDay + 1));     // the first one is old, even with a newer one
  Track("u", "Order Completed", kT0 - 100 * kDay);  // a late, older first order
  EXPECT_FALSE(Is("u", e, kT0 + 1));
}

TEST_F(ReferenceTest, LastPerformedBefore) {
  FirstLastCond c;
  c.first = false;
  c.event = Ev("Order Completed");
  c.when = Range(TimeBound::None(), TimeBound::Ago(30 * kDay));
  Expr e = L(c);
  Track("u", "Order Completed", kT0);
  Identify("v", kT0, {{"a", Value::Number(1)}});
  EXPECT_FALSE(Is("u", e, kT0 + 30 * kDay));
  EXPECT_TRUE(Is("u", e, kT0 + 30 * kDay + 1));
  EXPECT_FALSE(Is("v", e, kT0 + 300 * kDay));      // never ordered
  Track("u", "Order Completed", kT0 + 40 * kDay);  // a future order does not count yet...
  EXPECT_TRUE(Is("u", e, kT0 + 40 * kDay));
  EXPECT_FALSE(Is("u", e, kT0 + 40 * kDay + 1));  // ...until now passes it
}

TEST_F(ReferenceTest, FirstLastAfterIsNotCutAtNow) {
  FirstLastCond c;
  c.first = false;
  c.event = Ev("E");
  c.when = Range(TimeBound::At(kT0), TimeBound::None());
  Track("u", "E", kT0);
  EXPECT_FALSE(Is("u", L(c), kT0));
  EXPECT_TRUE(Is("u", L(c), kT0 + 1));
}

// ---- last event has ----------------------------------------------------------------------------

TEST_F(ReferenceTest, LastEventHas) {
  LastEventCond c;
  c.event = Ev("Order Completed");
  c.window = Ever();
  c.has = PP(Eq("currency", Str("EUR")));
  Expr e = L(c);
  Track("u", "Order Completed", kT0 + 10, {{"currency", Value::String("EUR")}});
  Track("u", "Order Completed", kT0 + 5, {{"currency", Value::String("USD")}});  // late, older
  EXPECT_TRUE(Is("u", e, kT0 + 11));
  EXPECT_FALSE(Is("u", e, kT0 + 10));  // the EUR one is not before now yet: USD is the last
  Track("u", "Order Completed", kT0 + 10,
        {{"currency", Value::String("GBP")}});  // tie, arrives last
  EXPECT_FALSE(Is("u", e, kT0 + 11));
  Track("u", "Order Completed", kT0 + 10, {{"currency", Value::String("EUR")}});
  EXPECT_TRUE(Is("u", e, kT0 + 11));
  // has on a missing property is false.
  Track("u", "Order Completed", kT0 + 20, {});
  EXPECT_FALSE(Is("u", e, kT0 + 21));
  // No event at all: false.
  Identify("v", kT0, {{"a", Value::Number(1)}});
  EXPECT_FALSE(Is("v", e, kT0 + 21));
}

TEST_F(ReferenceTest, LastEventHasUsesWindowAndFilter) {
  LastEventCond c;
  c.event = Ev("Order Completed", Cmp("total", CmpOp::kGt, Num(10)));
  c.window = Within(kDay);
  c.has = PP(Eq("currency", Str("EUR")));
  Track("u", "Order Completed", kT0,
        {{"currency", Value::String("EUR")}, {"total", Value::Number(50)}});
  Track("u", "Order Completed", kT0 + 1,
        {{"currency", Value::String("USD")}, {"total", Value::Number(5)}});
  EXPECT_TRUE(Is("u", L(c), kT0 + 2));  // the USD one fails the where
  EXPECT_TRUE(Is("u", L(c), kT0 + kDay));
  EXPECT_FALSE(Is("u", L(c), kT0 + kDay + 1));  // left the window
}

// ---- sequences ---------------------------------------------------------------------------------

TEST_F(ReferenceTest, SequenceBoundaries) {
  SequenceCond c;
  c.first = Ev("Page Viewed", Eq("path", Str("/pricing")));
  c.then = Ev("Demo Requested");
  c.within = kDay;
  c.window = Within(30 * kDay);
  Expr e = L(c);
  Track("a", "Page Viewed", kT0, {{"path", Value::String("/pricing")}});
  Track("a", "Demo Requested", kT0 + kDay);  // exactly T later: counts
  Track("b", "Page Viewed", kT0, {{"path", Value::String("/pricing")}});
  Track("b", "Demo Requested", kT0 + kDay + 1);  // too late
  Track("c", "Page Viewed", kT0, {{"path", Value::String("/pricing")}});
  Track("c", "Demo Requested", kT0);  // same millisecond: not after
  Track("d", "Demo Requested", kT0);  // wrong order
  Track("d", "Page Viewed", kT0 + 1, {{"path", Value::String("/pricing")}});
  Track("e", "Page Viewed", kT0, {{"path", Value::String("/home")}});
  Track("e", "Demo Requested", kT0 + 1);
  Millis now = kT0 + 2 * kDay;
  EXPECT_EQ(Members(e, now), (std::vector<std::string>{"a"}));
  EXPECT_TRUE(Members(e, kT0 + kDay).empty());  // B must be before now
  EXPECT_EQ(Members(e, kT0 + kDay + 1), (std::vector<std::string>{"a"}));
  // Both must be in the window: the A leaves at a + 30d + 1.
  EXPECT_TRUE(Is("a", e, kT0 + 30 * kDay));
  EXPECT_FALSE(Is("a", e, kT0 + 30 * kDay + 1));
}

TEST_F(ReferenceTest, SequencePicksAnyPair) {
  SequenceCond c;
  c.first = Ev("A");
  c.then = Ev("B");
  c.within = kHour;
  c.window = Ever();
  Track("u", "A", kT0);
  Track("u", "B", kT0 + 2 * kHour);
  EXPECT_FALSE(Is("u", L(c), kT0 + 3 * kHour));
  Track("u", "A", kT0 + kHour + 30 * kMinute);  // a later A pairs with the B
  EXPECT_TRUE(Is("u", L(c), kT0 + 3 * kHour));
}

// ---- not followed by ---------------------------------------------------------------------------

TEST_F(ReferenceTest, NotFollowedWithoutWithin) {
  NotFollowedCond c;
  c.first = Ev("Product Added");
  c.window = Within(kDay);
  c.then = Ev("Order Completed");
  Expr e = L(c);
  Track("u", "Product Added", kT0);
  EXPECT_FALSE(Is("u", e, kT0));
  EXPECT_TRUE(Is("u", e, kT0 + 1));
  EXPECT_TRUE(Is("u", e, kT0 + kDay));
  EXPECT_FALSE(Is("u", e, kT0 + kDay + 1));  // the add left the window
  Track("u", "Order Completed", kT0);        // same millisecond: not after
  EXPECT_TRUE(Is("u", e, kT0 + 10));
  Track("u", "Order Completed", kT0 + 5);
  EXPECT_TRUE(Is("u", e, kT0 + 5));  // B at now is not before now
  EXPECT_FALSE(Is("u", e, kT0 + 6));
  Track("u", "Product Added", kT0 + 7);  // a new latest A
  EXPECT_TRUE(Is("u", e, kT0 + 8));
}

TEST_F(ReferenceTest, NotFollowedBIsNotLimitedToTheWindow) {
  NotFollowedCond c;
  c.first = Ev("A");
  c.window = Range(TimeBound::None(), TimeBound::Ago(kDay));  // before 1d ago
  c.then = Ev("B");
  Track("u", "A", kT0);
  Track("u", "B", kT0 + 2 * kDay);
  EXPECT_TRUE(Is("u", L(c), kT0 + 2 * kDay));
  EXPECT_FALSE(Is("u", L(c), kT0 + 2 * kDay + 1));
}

TEST_F(ReferenceTest, NotFollowedWithin) {
  NotFollowedCond c;
  c.first = Ev("Product Added");
  c.window = Within(7 * kDay);
  c.then = Ev("Order Completed");
  c.within = kHour;
  Expr e = L(c);
  Track("a", "Product Added", kT0);
  EXPECT_FALSE(Is("a", e, kT0 + kHour));     // now > a + T needed
  EXPECT_TRUE(Is("a", e, kT0 + kHour + 1));  // enters exactly when the hour has passed
  EXPECT_TRUE(Is("a", e, kT0 + 7 * kDay));
  EXPECT_FALSE(Is("a", e, kT0 + 7 * kDay + 1));
  Track("b", "Product Added", kT0);
  Track("b", "Order Completed", kT0 + kHour);  // at a + T: counts as a follow-up
  EXPECT_FALSE(Is("b", e, kT0 + 2 * kHour));
  Track("c", "Product Added", kT0);
  Track("c", "Order Completed", kT0 + kHour + 1);  // after the hour: does not count
  EXPECT_TRUE(Is("c", e, kT0 + 2 * kHour));
  Track("d", "Product Added", kT0);
  Track("d", "Order Completed", kT0);  // same millisecond: not after
  EXPECT_TRUE(Is("d", e, kT0 + 2 * kHour));
  // A late B inside (a, a+T] takes the profile out at once.
  Track("a", "Order Completed", kT0 + 1);
  EXPECT_FALSE(Is("a", e, kT0 + 2 * kHour));
}

TEST_F(ReferenceTest, NotFollowedUsesOnlyTheLatestA) {
  NotFollowedCond c;
  c.first = Ev("A");
  c.window = Ever();
  c.then = Ev("B");
  c.within = kHour;
  Track("u", "A", kT0);  // not followed
  Track("u", "A", kT0 + 10 * kHour);
  Track("u", "B", kT0 + 10 * kHour + 1);  // follows the latest A
  EXPECT_FALSE(Is("u", L(c), kT0 + 20 * kHour));
  // Before the second A happened (by now), the first one is the latest.
  EXPECT_TRUE(Is("u", L(c), kT0 + 10 * kHour));
}

// ---- trait history -----------------------------------------------------------------------------

Expr For(ValuePred p, bool at_least, Millis d) {
  TraitHistoryCond c;
  c.pred = std::move(p);
  c.at_least = at_least;
  c.duration = d;
  return L(std::move(c));
}

TEST_F(ReferenceTest, ForAtLeastAndLessThan) {
  Identify("u", kT0, {{"stage", Value::String("onboarding")}});
  Identify("u", kT0 + kDay, {{"email", Value::String("a@b.c")}});           // does not touch stage
  Identify("u", kT0 + 2 * kDay, {{"stage", Value::String("onboarding")}});  // still true
  Expr at_least = For(Eq("stage", Str("onboarding")), true, 7 * kDay);
  Expr less = For(Eq("stage", Str("onboarding")), false, 7 * kDay);
  EXPECT_FALSE(Is("u", at_least, kT0 + 7 * kDay - 1));
  EXPECT_TRUE(Is("u", less, kT0 + 7 * kDay - 1));
  EXPECT_TRUE(Is("u", at_least, kT0 + 7 * kDay));
  EXPECT_FALSE(Is("u", less, kT0 + 7 * kDay));
  // Interrupted: since moves to the re-entry.
  Identify("u", kT0 + 3 * kDay, {{"stage", Value::String("active")}});
  Identify("u", kT0 + 4 * kDay, {{"stage", Value::String("onboarding")}});
  EXPECT_FALSE(Is("u", at_least, kT0 + 7 * kDay));
  EXPECT_TRUE(Is("u", at_least, kT0 + 11 * kDay));
  EXPECT_TRUE(Is("u", less, kT0 + 11 * kDay - 1));
  // False now: both are false.
  Identify("u", kT0 + 5 * kDay, {{"stage", Value::Null()}});
  EXPECT_FALSE(Is("u", at_least, kT0 + 30 * kDay));
  EXPECT_FALSE(Is("u", less, kT0 + 5 * kDay + 1));
}

TEST_F(ReferenceTest, ForOrdersIdentifiesByTimestamp) {
  Identify("u", kT0 + 2 * kDay, {{"plan", Value::String("pro")}});
  Identify("u", kT0, {{"plan", Value::String("free")}});  // late, older
  Expr pro = For(Eq("plan", Str("pro")), true, kDay);
  EXPECT_TRUE(Is("u", pro, kT0 + 3 * kDay));
  EXPECT_FALSE(Is("u", pro, kT0 + 3 * kDay - 1));
  // A late identify that sets pro earlier moves since back: pro has held after it ever since.
  Identify("u", kT0 + kDay, {{"plan", Value::String("pro")}});
  EXPECT_TRUE(Is("u", pro, kT0 + 2 * kDay));
  // A late identify in between with another value is overridden but breaks nothing after.
  Identify("u", kT0 + kDay + 1, {{"plan", Value::String("free")}});
  EXPECT_FALSE(Is("u", pro, kT0 + 3 * kDay - 1));
  EXPECT_TRUE(Is("u", pro, kT0 + 3 * kDay));
  // A tie in timestamp: the later arrival is the later identify.
  Identify("u", kT0 + 2 * kDay, {{"plan", Value::String("free")}});
  EXPECT_FALSE(Is("u", pro, kT0 + 10 * kDay));
}

TEST_F(ReferenceTest, ForWithMissingAndNoIdentifies) {
  Track("t", "E", kT0);  // known, but no identify: since does not exist
  Identify("u", kT0, {{"other", Value::Number(1)}});
  Identify("u", kT0 + kDay, {{"plan", Value::String("pro")}});
  Identify("u", kT0 + 2 * kDay, {{"plan", Value::Null()}});
  Expr missing = For(Missing("plan"), true, kDay);
  EXPECT_FALSE(Is("t", missing, kT0 + 100 * kDay));
  EXPECT_FALSE(Is("u", missing, kT0 + 3 * kDay - 1));
  EXPECT_TRUE(Is("u", missing, kT0 + 3 * kDay));
  // Missing from the first identify, never set: since is the first identify.
  Identify("v", kT0, {{"other", Value::Number(1)}});
  EXPECT_TRUE(Is("v", missing, kT0 + kDay));
  EXPECT_FALSE(Is("v", missing, kT0 + kDay - 1));
}

TEST_F(ReferenceTest, ForWithTimePredicateUsesNow) {
  // signup_at within 30d for at least 1d: the time predicate is evaluated at now after every
  // identify.
  Identify("u", kT0, {{"signup_at", Value::String(FormatTime(kT0))}});
  Expr e = For(TimePred("signup_at", Within(30 * kDay)), true, kDay);
  EXPECT_FALSE(Is("u", e, kT0 + kDay - 1));
  EXPECT_TRUE(Is("u", e, kT0 + kDay));
  EXPECT_TRUE(Is("u", e, kT0 + 30 * kDay));
  EXPECT_FALSE(Is("u", e, kT0 + 30 * kDay + 1));
}

// ---- composition -------------------------------------------------------------------------------

TEST_F(ReferenceTest, AndOrNot) {
  Identify("a", kT0, {{"country", Value::String("DE")}, {"plan", Value::String("pro")}});
  Identify("b", kT0, {{"country", Value::String("FR")}, {"plan", Value::String("free")}});
  Identify("c", kT0, {{"country", Value::String("US")}});
  Expr de = Trait(Eq("country", Str("DE")));
  Expr pro = Trait(Eq("plan", Str("pro")));
  Expr fr = Trait(Eq("country", Str("FR")));
  Millis now = kT0 + 1;
  EXPECT_EQ(Members(And({de, pro}), now), (std::vector<std::string>{"a"}));
  EXPECT_EQ(Members(Or({fr, pro}), now), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Members(Not(Or({fr, pro})), now), (std::vector<std::string>{"c"}));
  EXPECT_EQ(Members(And({Not(de), Not(fr), Not(pro)}), now), (std::vector<std::string>{"c"}));
}

TEST_F(ReferenceTest, SegmentRefs) {
  defs_["vip"] = Agg(AggCond::Fn::kSum, "total", Ev("Order Completed"), Ever(), CmpOp::kGe, 100);
  defs_["vip_de"] = And({L(SegmentRefCond{"vip"}), Trait(Eq("country", Str("DE")))});
  Track("a", "Order Completed", kT0, {{"total", Value::Number(150)}});
  Identify("a", kT0, {{"country", Value::String("DE")}});
  Track("b", "Order Completed", kT0, {{"total", Value::Number(150)}});
  Identify("c", kT0, {{"country", Value::String("DE")}});
  Millis now = kT0 + 1;
  EXPECT_EQ(Members(L(SegmentRefCond{"vip"}), now), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Members(L(SegmentRefCond{"vip_de"}), now), (std::vector<std::string>{"a"}));
  EXPECT_EQ(Members(Not(L(SegmentRefCond{"vip"})), now), (std::vector<std::string>{"c"}));
  // Same now: at kT0 nobody has ordered yet.
  EXPECT_TRUE(Members(L(SegmentRefCond{"vip"}), kT0).empty());
  // Unknown: false, so its negation is everyone.
  EXPECT_TRUE(Members(L(SegmentRefCond{"nope"}), now).empty());
  EXPECT_EQ(Members(Not(L(SegmentRefCond{"nope"})), now),
            (std::vector<std::string>{"a", "b", "c"}));
  // A cycle (rejected upstream) does not hang the reference.
  defs_["loop"] = L(SegmentRefCond{"loop"});
  EXPECT_TRUE(Members(L(SegmentRefCond{"loop"}), now).empty());
}

TEST_F(ReferenceTest, Buckets) {
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) {
    keys.push_back("user-" + std::to_string(i));
    Identify(keys.back(), kT0, {{"a", Value::Number(i)}});
  }
  BucketCond c;
  c.buckets = 100;
  c.salt = "vip-holdout";
  c.op = CmpOp::kLt;
  c.value = 10;
  std::vector<std::string> expected;
  for (const std::string& k : keys)
    if (rules::BucketOf(k, "vip-holdout", 100) < 10) expected.push_back(k);
  std::sort(expected.begin(), expected.end());
  EXPECT_FALSE(expected.empty());
  EXPECT_EQ(Members(L(c), kT0), expected);
  // The complement under >=.
  c.op = CmpOp::kGe;
  EXPECT_EQ(Members(L(c), kT0).size(), keys.size() - expected.size());
  // Default salt is the empty string.
  c.salt.clear();
  c.op = CmpOp::kEq;
  c.value = rules::BucketOf("user-7", "", 100);
  std::vector<std::string> m = Members(L(c), kT0);
  EXPECT_NE(std::find(m.begin(), m.end(), "user-7"), m.end());
}

TEST_F(ReferenceTest, MembersAreKnownProfilesSortedBytewise) {
  Track("b", "E", kT0);
  Identify("B", kT0, {{"a", Value::Number(1)}});
  Track("\xC3\xA9", "E", kT0);
  Track("a", "E", kT0 + 5 * kDay);  // future event: still a known profile
  Expr all = Trait(Missing("zzz"));
  EXPECT_EQ(Members(all, kT0), (std::vector<std::string>{"B", "a", "b", "\xC3\xA9"}));
  EXPECT_TRUE(IsMember(store_, 9999, all, Lookup(), kT0) == false);
}

TEST_F(ReferenceTest, ExampleThreeFlightNoTrip) {
  // performed "Flight Booked" where destination = "Lisbon" and did not perform "Trip Taken"
  // within 180d
  Expr e = And({Performed(Ev("Flight Booked", Eq("destination", Str("Lisbon")))),
                Performed(Ev("Trip Taken"), Within(180 * kDay), CmpOp::kEq, 0)});
  Track("u", "Flight Booked", kT0, {{"destination", Value::String("Lisbon")}});
  Track("u", "Trip Taken", kT0 + kDay);
  EXPECT_TRUE(Is("u", e, kT0 + 1));
  EXPECT_FALSE(Is("u", e, kT0 + kDay + 1));
  EXPECT_FALSE(Is("u", e, kT0 + 181 * kDay));
  EXPECT_TRUE(Is("u", e, kT0 + 181 * kDay + 1));
}

TEST_F(ReferenceTest, InListReadsTheGivenLists) {
  Track("u1", "A", kT0);
  Track("u2", "A", kT0);
  Expr in_vip = L(rules::ListRefCond{"vip"});
  ListLookup lists = [](std::string_view list, std::string_view key) {
    return list == "vip" && key == "u1";
  };
  EXPECT_EQ(reference::Members(store_, in_vip, Lookup(), kT0 + 1, lists),
            (std::vector<std::string>{"u1"}));
  EXPECT_EQ(reference::Members(store_, Not(in_vip), Lookup(), kT0 + 1, lists),
            (std::vector<std::string>{"u2"}));
  EXPECT_TRUE(IsMember(store_, *store_.profiles().Find("u1"), in_vip, Lookup(), kT0 + 1, lists));
  // No lookup, or an unknown list: nobody is in it.
  EXPECT_TRUE(Members(in_vip, kT0 + 1).empty());
  EXPECT_TRUE(
      reference::Members(store_, L(rules::ListRefCond{"other"}), Lookup(), kT0 + 1, lists).empty());
}

TEST_F(ReferenceTest, ErasedProfilesAreUnknownAndTheirRecordsGone) {
  Track("u1", "A", kT0);
  Identify("u1", kT0, {{"plan", Value::String("pro")}});
  Track("u2", "B", kT0);
  uint32_t u1 = *store_.profiles().Find("u1");
  EXPECT_EQ(store_.EraseProfile(u1), 2u);
  EXPECT_EQ(store_.live_profiles(), 1u);
  EXPECT_EQ(store_.live_records(), 1u);
  EXPECT_FALSE(store_.profiles().Find("u1").has_value());
  // An empty profile satisfies `not performed`, but an erased id is not a profile at all.
  Expr no_a = Not(Performed(Ev("A")));
  EXPECT_EQ(Members(no_a, kT0 + 1), (std::vector<std::string>{"u2"}));
  EXPECT_FALSE(IsMember(store_, u1, no_a, Lookup(), kT0 + 1));
  EXPECT_TRUE(Members(Performed(Ev("A")), kT0 + 1).empty());
  // The same key again is a new id with none of the old history.
  Track("u1", "B", kT0);
  EXPECT_NE(*store_.profiles().Find("u1"), u1);
  EXPECT_EQ(Members(no_a, kT0 + 1), (std::vector<std::string>{"u1", "u2"}));
  EXPECT_TRUE(Members(Trait(Eq("plan", Str("pro"))), kT0 + 1).empty());
}

}  // namespace
}  // namespace shoal::reference
