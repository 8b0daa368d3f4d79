#include "rules/parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace shoal::rules {
namespace {

// Parses `text` and fails the test with the error when it does not parse.
Expr MustParse(std::string_view text) {
  Result<Expr> r = Parse(text);
  EXPECT_TRUE(r.ok()) << text << "\n  -> " << r.status().message();
  if (!r.ok()) return Expr{};
  return std::move(r).value();
}

// The canonical text of `text`, after checking that it re-parses to an equal tree and is a fixed
// point of printing.
std::string Canon(std::string_view text) {
  Result<Expr> r = Parse(text);
  if (!r.ok()) return "ERROR " + r.status().message();
  std::string printed = Print(*r);
  Result<Expr> again = Parse(printed);
  EXPECT_TRUE(again.ok()) << printed << "\n  -> " << again.status().message();
  if (again.ok()) {
    EXPECT_TRUE(*again == *r) << "round trip changed: " << text << "\n  printed: " << printed;
    EXPECT_EQ(Print(*again), printed);
  }
  return printed;
}

// The error message for `text` ("" when it parses).
std::string Err(std::string_view text) {
  Result<Expr> r = Parse(text);
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

template <typename T>
const T& LeafAs(const Expr& e) {
  static const T kEmpty{};
  EXPECT_EQ(e.kind, Expr::Kind::kLeaf);
  const T* p = std::get_if<T>(&e.leaf);
  EXPECT_NE(p, nullptr) << "leaf holds variant index " << e.leaf.index();
  return p ? *p : kEmpty;
}

// The leaf of type T that `text` parses to, by value.
template <typename T>
T ParseLeaf(std::string_view text) {
  Expr e = MustParse(text);
  return LeafAs<T>(e);
}

// --- The examples of docs/language.md ----------------------------------------------------------

TEST(ParserTest, EightExamplesAreCanonical) {
  const char* examples[] = {
      R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)",
      R"(performed "Product Added" within 1d not followed by "Order Completed")",
      R"(performed "Flight Booked" where destination = "Lisbon" and did not perform "Trip Taken" within 180d)",
      R"(performed "Savings Opened" and did not perform "Transfer Set Up")",
      R"(sum(total) of "Order Completed" within 90d > 500)",
      R"(country in ("DE", "FR") and plan = "pro" and age between 25 and 40)",
      R"(performed "Login" at least 5 times between 90d ago and 30d ago and did not perform "Login" within 30d)",
      R"(signup_at within 7d and did not perform "Activated")",
  };
  // The table in docs/language.md lists each in canonical form already.
  for (const char* text : examples) EXPECT_EQ(Canon(text), text);
}

TEST(ParserTest, MarketingExamples) {
  EXPECT_EQ(
      Canon(R"(performed "Product Added" within 7d not followed by "Order Completed" within 1h)"),
      R"(performed "Product Added" within 7d not followed by "Order Completed" within 1h)");
  EXPECT_EQ(Canon(R"(first performed "Order Completed" within 7d)"),
            R"(first performed "Order Completed" within 7d)");
  EXPECT_EQ(Canon(R"(last performed "Order Completed" before 30d ago)"),
            R"(last performed "Order Completed" before 30d ago)");
  EXPECT_EQ(Canon(R"(distinct(category) of "Product Viewed" within 30d >= 3)"),
            R"(distinct(category) of "Product Viewed" within 30d >= 3)");
  EXPECT_EQ(
      Canon(
          R"(performed "Page Viewed" where path = "/pricing" then "Demo Requested" within 1d within 30d)"),
      R"(performed "Page Viewed" where path = "/pricing" then "Demo Requested" within 1d within 30d)");
  EXPECT_EQ(Canon(R"(last event "Order Completed" has currency = "EUR")"),
            R"(last event "Order Completed" has currency = "EUR")");
  EXPECT_EQ(Canon(R"(stage = "onboarding" for at least 7d)"),
            R"(stage = "onboarding" for at least 7d)");
  EXPECT_EQ(Canon(R"(in segment "vip" and bucket(100, "vip-holdout") < 10)"),
            R"(in segment "vip" and bucket(100, "vip-holdout") < 10)");
  // Times print in full.
  EXPECT_EQ(
      Canon(
          R"(email ends with "@gmail.com" and address.city = "Paris" and signup_at after 2026-01-01)"),
      R"(email ends with "@gmail.com" and address.city = "Paris" and signup_at after 2026-01-01T00:00:00Z)");
  // The commented example at the top of the document.
  EXPECT_EQ(
      Canon("# Recent buyers who also clicked a promo email\n"
            R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)"),
      R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)");
}

// --- AST shapes ----------------------------------------------------------------------------------

TEST(ParserTest, ExampleOneShape) {
  Expr e = MustParse(
      R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)");
  ASSERT_EQ(e.kind, Expr::Kind::kAnd);
  ASSERT_EQ(e.children.size(), 2u);
  const CountCond& c = LeafAs<CountCond>(e.children[0]);
  EXPECT_EQ(c.event.name, "Order Completed");
  EXPECT_FALSE(c.event.filter.has_value());
  EXPECT_EQ(c.op, CmpOp::kGe);
  EXPECT_EQ(c.n, 1);
  EXPECT_EQ(c.window.from, TimeBound::Ago(30 * kDay));
  EXPECT_EQ(c.window.to, TimeBound::Ago(0));
  EXPECT_EQ(e.children[1].pos.line, 1);
  EXPECT_EQ(e.children[1].pos.col, 44);
}

TEST(ParserTest, NotFollowedShape) {
  Expr e = MustParse(R"(performed "Product Added" within 24h not followed by "Order Completed")");
  const NotFollowedCond& n = LeafAs<NotFollowedCond>(e);
  EXPECT_EQ(n.first.name, "Product Added");
  EXPECT_EQ(n.then.name, "Order Completed");
  EXPECT_EQ(n.window.from, TimeBound::Ago(kDay));
  EXPECT_FALSE(n.within.has_value());

  Expr w = MustParse(R"(performed "A" not followed by "B" within 1h)");
  const NotFollowedCond& n2 = LeafAs<NotFollowedCond>(w);
  EXPECT_TRUE(n2.window.IsEver());
  ASSERT_TRUE(n2.within.has_value());
  EXPECT_EQ(*n2.within, kHour);
}

TEST(ParserTest, WhereAndDidNotShape) {
  Expr e = MustParse(
      R"(performed "Flight Booked" where destination = "Lisbon" and did not perform "Trip Taken" within 180d)");
  ASSERT_EQ(e.kind, Expr::Kind::kAnd);
  const CountCond& a = LeafAs<CountCond>(e.children[0]);
  ASSERT_TRUE(a.event.filter.has_value());
  EXPECT_EQ(a.event.filter->kind, PropExpr::Kind::kPred);
  EXPECT_EQ(a.event.filter->pred.kind, ValuePred::Kind::kCompare);
  EXPECT_EQ(a.event.filter->pred.path, Path{"destination"});
  EXPECT_EQ(a.event.filter->pred.values[0].str, "Lisbon");
  EXPECT_EQ(a.event.filter->pred.pos.col, 33);
  EXPECT_TRUE(a.window.IsEver());
  const CountCond& b = LeafAs<CountCond>(e.children[1]);
  EXPECT_EQ(b.op, CmpOp::kEq);
  EXPECT_EQ(b.n, 0);
  EXPECT_EQ(b.window.from, TimeBound::Ago(180 * kDay));
}

TEST(ParserTest, AggShape) {
  Expr e = MustParse(R"(sum(total) of "Order Completed" within 90d > 500)");
  const AggCond& a = LeafAs<AggCond>(e);
  EXPECT_EQ(a.fn, AggCond::Fn::kSum);
  EXPECT_EQ(a.prop, Path{"total"});
  EXPECT_EQ(a.op, CmpOp::kGt);
  EXPECT_EQ(a.value, 500);
  for (auto [text, fn] :
       std::vector<std::pair<std::string, AggCond::Fn>>{{"avg", AggCond::Fn::kAvg},
                                                        {"MIN", AggCond::Fn::kMin},
                                                        {"max", AggCond::Fn::kMax},
                                                        {"distinct", AggCond::Fn::kDistinct}}) {
    Expr x = MustParse(text + R"((a.b) of "E" where c = 1 <= -2.5)");
    EXPECT_EQ(LeafAs<AggCond>(x).fn, fn);
    EXPECT_EQ(LeafAs<AggCond>(x).prop, (Path{"a", "b"}));
    EXPECT_EQ(LeafAs<AggCond>(x).value, -2.5);
    EXPECT_TRUE(LeafAs<AggCond>(x).window.IsEver());
  }
}

TEST(ParserTest, TraitPredicatesShape) {
  Expr e = MustParse(R"(country in ("DE", "FR") and plan = "pro" and age between 25 and 40)");
  ASSERT_EQ(e.kind, Expr::Kind::kAnd);
  ASSERT_EQ(e.children.size(), 3u);
  const ValuePred& in = LeafAs<TraitCond>(e.children[0]).pred;
  EXPECT_EQ(in.kind, ValuePred::Kind::kIn);
  ASSERT_EQ(in.values.size(), 2u);
  EXPECT_EQ(in.values[1].type, Literal::Type::kString);
  EXPECT_EQ(in.values[1].str, "FR");
  const ValuePred& between = LeafAs<TraitCond>(e.children[2]).pred;
  EXPECT_EQ(between.kind, ValuePred::Kind::kBetween);
  EXPECT_EQ(between.values[0].num, 25);
  EXPECT_EQ(between.values[1].num, 40);
  EXPECT_EQ(between.pos.col, 46);
  EXPECT_EQ(e.children[2].pos.col, 46);
}

TEST(ParserTest, EveryValuePredicate) {
  struct Case {
    const char* text;
    ValuePred::Kind kind;
  };
  const Case cases[] = {
      {"a = 1", ValuePred::Kind::kCompare},
      {"a between 1 and 2", ValuePred::Kind::kBetween},
      {"a in (1, \"x\", true, 2026-01-01)", ValuePred::Kind::kIn},
      {"a not in (1)", ValuePred::Kind::kNotIn},
      {"a contains \"x\"", ValuePred::Kind::kContains},
      {"a starts with \"x\"", ValuePred::Kind::kStartsWith},
      {"a ends with \"x\"", ValuePred::Kind::kEndsWith},
      {"a matches \"^x+$\"", ValuePred::Kind::kMatches},
      {"a exists", ValuePred::Kind::kExists},
      {"a missing", ValuePred::Kind::kMissing},
      {"a within 7d", ValuePred::Kind::kTime},
      {"a before 30d ago", ValuePred::Kind::kTime},
      {"a after 2026-01-01", ValuePred::Kind::kTime},
      {"a between 90d ago and 30d ago", ValuePred::Kind::kTime},
      {"a between 2026-01-01 and 2026-02-01", ValuePred::Kind::kTime},
      {"a between 2026-01-01 and now", ValuePred::Kind::kTime},
  };
  for (const Case& c : cases) {
    Expr e = MustParse(c.text);
    EXPECT_EQ(LeafAs<TraitCond>(e).pred.kind, c.kind) << c.text;
    Canon(c.text);
  }
  Expr in = MustParse("a in (1, \"x\", true, 2026-01-01)");
  const ValuePred& list = LeafAs<TraitCond>(in).pred;
  ASSERT_EQ(list.values.size(), 4u);
  EXPECT_EQ(list.values[0].type, Literal::Type::kNumber);
  EXPECT_EQ(list.values[2].type, Literal::Type::kBool);
  EXPECT_TRUE(list.values[2].b);
  EXPECT_EQ(list.values[3].type, Literal::Type::kTime);
  EXPECT_EQ(list.values[3].time, *ParseTime("2026-01-01"));
}

TEST(ParserTest, EveryComparisonOperator) {
  const std::pair<const char*, CmpOp> ops[] = {{"=", CmpOp::kEq}, {"!=", CmpOp::kNe},
                                               {"<", CmpOp::kLt}, {"<=", CmpOp::kLe},
                                               {">", CmpOp::kGt}, {">=", CmpOp::kGe}};
  for (auto [op, want] : ops) {
    std::string text = std::string("age ") + op + " 30";
    EXPECT_EQ(ParseLeaf<TraitCond>(text).pred.op, want) << text;
    EXPECT_EQ(Canon(std::string("age") + op + "30"), text);
  }
}

TEST(ParserTest, TimeRanges) {
  auto range = [](std::string_view text) { return ParseLeaf<TraitCond>(text).pred.time; };
  TimeRange within = range("t within 30d");
  EXPECT_EQ(within.from, TimeBound::Ago(30 * kDay));
  EXPECT_EQ(within.to, TimeBound::Ago(0));
  TimeRange between = range("t between 90d ago and 30d ago");
  EXPECT_EQ(between.from, TimeBound::Ago(90 * kDay));
  EXPECT_EQ(between.to, TimeBound::Ago(30 * kDay));
  TimeRange before = range("t before 2026-01-01");
  EXPECT_EQ(before.from, TimeBound::None());
  EXPECT_EQ(before.to, TimeBound::At(*ParseTime("2026-01-01")));
  TimeRange after = range("t after 30d ago");
  EXPECT_EQ(after.from, TimeBound::Ago(30 * kDay));
  EXPECT_EQ(after.to, TimeBound::None());
  // "between D ago and now" is "within D".
  EXPECT_EQ(range("t between 30d ago and now"), within);
  EXPECT_EQ(Canon("t between 30d ago and now"), "t within 30d");
  EXPECT_EQ(Canon("t before now"), "t before now");
  EXPECT_EQ(Canon("t after now"), "t after now");
  EXPECT_EQ(Canon("t between 2026-01-01 and now"), "t between 2026-01-01T00:00:00Z and now");
  EXPECT_EQ(Canon("t between 2026-01-01T00:00:00+01:00 and 2026-01-01T00:00:00.5Z"),
            "t between 2025-12-31T23:00:00Z and 2026-01-01T00:00:00.500Z");
}

TEST(ParserTest, Windows) {
  EXPECT_EQ(Canon(R"(performed "A" between 2026-01-01 and 2026-02-01)"),
            R"(performed "A" between 2026-01-01T00:00:00Z and 2026-02-01T00:00:00Z)");
  EXPECT_EQ(Canon(R"(performed "A" before 30d ago)"), R"(performed "A" before 30d ago)");
  EXPECT_EQ(Canon(R"(performed "A" after 2026-03-04T05:06:07Z)"),
            R"(performed "A" after 2026-03-04T05:06:07Z)");
  EXPECT_EQ(Canon(R"(did not perform "A" between 2w ago and 1w ago)"),
            R"(did not perform "A" between 14d ago and 7d ago)");
}

TEST(ParserTest, Counts) {
  struct Case {
    const char* text;
    CmpOp op;
    int64_t n;
    const char* canon;
  };
  const Case cases[] = {
      {R"(performed "A")", CmpOp::kGe, 1, R"(performed "A")"},
      {R"(performed "A" at least 1 time)", CmpOp::kGe, 1, R"(performed "A")"},
      {R"(performed "A" at least 5 times)", CmpOp::kGe, 5, R"(performed "A" at least 5 times)"},
      {R"(performed "A" at most 5 times)", CmpOp::kLe, 5, R"(performed "A" at most 5 times)"},
      {R"(performed "A" exactly 2 times)", CmpOp::kEq, 2, R"(performed "A" exactly 2 times)"},
      {R"(performed "A" more than 2 times)", CmpOp::kGt, 2, R"(performed "A" more than 2 times)"},
      {R"(performed "A" fewer than 2 times)", CmpOp::kLt, 2, R"(performed "A" fewer than 2 times)"},
      {R"(performed "A" != 3 times)", CmpOp::kNe, 3, R"(performed "A" != 3 times)"},
      {R"(performed "A" >= 4 times)", CmpOp::kGe, 4, R"(performed "A" at least 4 times)"},
      {R"(performed "A" < 4 times)", CmpOp::kLt, 4, R"(performed "A" fewer than 4 times)"},
      {R"(performed "A" = 1 time)", CmpOp::kEq, 1, R"(performed "A" exactly 1 time)"},
      {R"(performed "A" exactly 0 times)", CmpOp::kEq, 0, R"(did not perform "A")"},
      {R"(did not perform "A")", CmpOp::kEq, 0, R"(did not perform "A")"},
      {R"(performed "A" at least 0 times)", CmpOp::kGe, 0, R"(performed "A" at least 0 times)"},
  };
  for (const Case& c : cases) {
    const CountCond& cc = ParseLeaf<CountCond>(c.text);
    EXPECT_EQ(cc.op, c.op) << c.text;
    EXPECT_EQ(cc.n, c.n) << c.text;
    EXPECT_EQ(Canon(c.text), c.canon);
  }
  // A count may also follow the window; it prints before it.
  EXPECT_EQ(Canon(R"(performed "A" within 30d at least 3 times)"),
            R"(performed "A" at least 3 times within 30d)");
}

TEST(ParserTest, SequenceShape) {
  Expr e = MustParse(
      R"(performed "Page Viewed" where path = "/pricing" then "Demo Requested" within 1d within 30d)");
  const SequenceCond& s = LeafAs<SequenceCond>(e);
  EXPECT_EQ(s.first.name, "Page Viewed");
  ASSERT_TRUE(s.first.filter.has_value());
  EXPECT_EQ(s.then.name, "Demo Requested");
  EXPECT_EQ(s.within, kDay);
  EXPECT_EQ(s.window.from, TimeBound::Ago(30 * kDay));
  EXPECT_TRUE(ParseLeaf<SequenceCond>(R"(performed "A" then "B" within 5m)").window.IsEver());
}

TEST(ParserTest, FirstLastAndLastEventShape) {
  const FirstLastCond& f = ParseLeaf<FirstLastCond>(R"(first performed "O" within 7d)");
  EXPECT_TRUE(f.first);
  EXPECT_EQ(f.when.from, TimeBound::Ago(7 * kDay));
  Expr last = MustParse(R"(last performed "O" where x > 1 before 30d ago)");
  const FirstLastCond& l = LeafAs<FirstLastCond>(last);
  EXPECT_FALSE(l.first);
  EXPECT_TRUE(l.event.filter.has_value());
  EXPECT_EQ(l.when.to, TimeBound::Ago(30 * kDay));

  const LastEventCond& le = LeafAs<LastEventCond>(
      MustParse(R"(last event "O" within 30d has (currency = "EUR" or total >= 10.5))"));
  EXPECT_EQ(le.event.name, "O");
  EXPECT_EQ(le.window.from, TimeBound::Ago(30 * kDay));
  EXPECT_EQ(le.has.kind, PropExpr::Kind::kOr);
  EXPECT_EQ(le.has.children.size(), 2u);
  EXPECT_EQ(Canon(R"(last event "O" within 30d has (currency = "EUR" or total >= 10.5))"),
            R"(last event "O" within 30d has (currency = "EUR" or total >= 10.5))");
}

TEST(ParserTest, TraitHistoryShape) {
  const TraitHistoryCond& h =
      ParseLeaf<TraitHistoryCond>(R"(stage = "onboarding" for at least 7d)");
  EXPECT_TRUE(h.at_least);
  EXPECT_EQ(h.duration, 7 * kDay);
  EXPECT_EQ(h.pred.path, Path{"stage"});
  const TraitHistoryCond& l = ParseLeaf<TraitHistoryCond>(R"(plan in ("trial") for less than 36h)");
  EXPECT_FALSE(l.at_least);
  EXPECT_EQ(l.duration, 36 * kHour);
  EXPECT_EQ(Canon(R"(plan in ("trial") for less than 36h)"),
            R"(plan in ("trial") for less than 36h)");
}

TEST(ParserTest, SegmentRefAndBucketShape) {
  Expr e = MustParse(R"(in segment "vip" and bucket(100, "vip-holdout") < 10)");
  EXPECT_EQ(LeafAs<SegmentRefCond>(e.children[0]).segment, "vip");
  EXPECT_EQ(ParseLeaf<ListRefCond>(R"(IN LIST "csv \"vip\"")").list, "csv \"vip\"");
  EXPECT_EQ(Canon(R"(NOT  In List "suppressed"  and list = "x")"),
            R"(not in list "suppressed" and list = "x")");
  const BucketCond& b = LeafAs<BucketCond>(e.children[1]);
  EXPECT_EQ(b.buckets, 100);
  EXPECT_EQ(b.salt, "vip-holdout");
  EXPECT_EQ(b.op, CmpOp::kLt);
  EXPECT_EQ(b.value, 10);
  const BucketCond& nosalt = ParseLeaf<BucketCond>("bucket(1) >= 0");
  EXPECT_EQ(nosalt.buckets, 1);
  EXPECT_EQ(nosalt.salt, "");
  EXPECT_EQ(Canon("bucket( 100 ) < 10"), "bucket(100) < 10");
  EXPECT_EQ(Canon(R"(bucket(100, "") < 10)"), "bucket(100) < 10");
}

// --- Lexical details -----------------------------------------------------------------------------

TEST(ParserTest, KeywordsAreCaseInsensitive) {
  Expr lower = MustParse(
      R"(performed "A" at least 2 times within 30d and not (did not perform "B" or x in (1)))");
  Expr upper = MustParse(
      R"(PERFORMED "A" At LEAST 2 TIMES Within 30d AND NOT (Did Not Perform "B" OR x IN (1)))");
  EXPECT_TRUE(lower == upper);
  EXPECT_EQ(Canon(R"(Sum(total) OF "A" WITHIN 1d > 1 and LAST EVENT "B" HAS x EXISTS)"),
            R"(sum(total) of "A" within 1d > 1 and last event "B" has x exists)");
  EXPECT_EQ(Canon("flag = TRUE or flag = False"), "flag = true or flag = false");
  // Names (traits, events) keep their case.
  EXPECT_EQ(Canon(R"(Plan = "Pro")"), R"(Plan = "Pro")");
}

TEST(ParserTest, CommentsAndWhitespace) {
  EXPECT_EQ(Canon("# leading comment\n  age   >=\t18 # trailing\n\n and   plan = \"pro\"#x"),
            R"(age >= 18 and plan = "pro")");
  EXPECT_EQ(Canon("a = \"#not a comment\""), R"(a = "#not a comment")");
}

TEST(ParserTest, Identifiers) {
  EXPECT_EQ(ParseLeaf<TraitCond>("address.city = 1").pred.path, (Path{"address", "city"}));
  EXPECT_EQ(ParseLeaf<TraitCond>("_a$b-c.d9 exists").pred.path, (Path{"_a$b-c", "d9"}));
  EXPECT_EQ(ParseLeaf<TraitCond>("`first name` = \"Ada\"").pred.path, Path{"first name"});
  EXPECT_EQ(Canon("`first name` = \"Ada\""), "`first name` = \"Ada\"");
  // Keywords must be backquoted as trait names, and print backquoted anywhere.
  EXPECT_EQ(ParseLeaf<TraitCond>("`in` = 1").pred.path, Path{"in"});
  EXPECT_EQ(Canon("`in` = 1"), "`in` = 1");
  EXPECT_EQ(Canon("`Event`.x = 1"), "`Event`.x = 1");
  EXPECT_EQ(Canon("a.event = 1"), "a.`event` = 1");
  EXPECT_EQ(Canon("`plain` = 1"), "plain = 1");
  EXPECT_EQ(Canon("`a.b`.c = 1"), "`a.b`.c = 1");
  EXPECT_EQ(Canon("`9lives` exists"), "`9lives` exists");
  EXPECT_EQ(Canon("`héllo` exists"), "`héllo` exists");
  // Words that are not keywords are plain names, also "time" and "path".
  EXPECT_EQ(Canon("time > 5 and path = \"/\""), "time > 5 and path = \"/\"");
}

TEST(ParserTest, Strings) {
  Expr e = MustParse(R"(a = "q\" b\\ n\n t\t r\r s\/ u\u00e9 \ud83d\ude00")");
  const ValuePred& p = LeafAs<TraitCond>(e).pred;
  EXPECT_EQ(p.values[0].str, "q\" b\\ n\n t\t r\r s/ u\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(Canon(R"(a = "q\" b\\ n\n t\t r\r s\/ u\u00e9 \u0001")"),
            "a = \"q\\\" b\\\\ n\\n t\\t r\\r s/ u\xC3\xA9 \\u0001\"");
  EXPECT_EQ(Canon(R"(a = "")"), R"(a = "")");
  EXPECT_EQ(Canon("performed \"Caf\xC3\xA9 Visited\""), "performed \"Caf\xC3\xA9 Visited\"");
}

TEST(ParserTest, Numbers) {
  EXPECT_EQ(Canon("a = 500.0"), "a = 500");
  EXPECT_EQ(Canon("a = 20.97"), "a = 20.97");
  EXPECT_EQ(Canon("a = -0.5"), "a = -0.5");
  EXPECT_EQ(Canon("a = 1e3"), "a = 1000");
  EXPECT_EQ(Canon("a = 100000"), "a = 100000");
  EXPECT_EQ(Canon("a = 1.5E-300"), "a = 1.5e-300");
  EXPECT_EQ(Canon("a = 1e30"), "a = 1e+30");
  EXPECT_EQ(Canon("a = 0.1"), "a = 0.1");
  EXPECT_EQ(Canon("a = 007"), "a = 7");
  EXPECT_EQ(ParseLeaf<TraitCond>("a = 0.1").pred.values[0].num, 0.1);
  EXPECT_EQ(Canon(R"(sum(x) of "A" > 0.30000000000000004)"),
            R"(sum(x) of "A" > 0.30000000000000004)");
}

TEST(ParserTest, Durations) {
  EXPECT_EQ(Canon("t within 24h"), "t within 1d");
  EXPECT_EQ(Canon("t within 90m"), "t within 90m");
  EXPECT_EQ(Canon("t within 14d"), "t within 14d");
  EXPECT_EQ(Canon("t within 2w"), "t within 14d");  // weeks are read, printed as days
  EXPECT_EQ(Canon("t within 1000ms"), "t within 1s");
  EXPECT_EQ(Canon("t within 1500ms"), "t within 1500ms");
  EXPECT_EQ(Canon("t within 120s"), "t within 2m");
  EXPECT_EQ(Canon(R"(performed "A" then "B" within 60m)"), R"(performed "A" then "B" within 1h)");
  EXPECT_EQ(Canon("x = 1 for at least 168h"), "x = 1 for at least 7d");
}

TEST(ParserTest, Times) {
  EXPECT_EQ(Canon("t > 2026-01-02"), "t > 2026-01-02T00:00:00Z");
  EXPECT_EQ(Canon("t > 2026-01-02T03:04Z"), "t > 2026-01-02T03:04:00Z");
  EXPECT_EQ(Canon("t > 2026-01-02T03:04:05.678+02:00"), "t > 2026-01-02T01:04:05.678Z");
  EXPECT_EQ(Canon("t > 2026-01-02T03:04:05-01:30"), "t > 2026-01-02T04:34:05Z");
  EXPECT_EQ(Canon("t > 1969-12-31T23:59:59.999Z"), "t > 1969-12-31T23:59:59.999Z");
  EXPECT_EQ(ParseLeaf<TraitCond>("t = 1970-01-01T00:00:01Z").pred.values[0].time, 1000);
}

// --- Canonical structure -------------------------------------------------------------------------

TEST(ParserTest, FlattensAndOr) {
  Expr e = MustParse("a = 1 and (b = 2 and (c = 3 and d = 4))");
  ASSERT_EQ(e.kind, Expr::Kind::kAnd);
  EXPECT_EQ(e.children.size(), 4u);
  Expr o = MustParse("(a = 1 or b = 2) or (c = 3 or (d = 4))");
  ASSERT_EQ(o.kind, Expr::Kind::kOr);
  EXPECT_EQ(o.children.size(), 4u);
  EXPECT_EQ(Canon("((a = 1)) and (b = 2 and c = 3)"), "a = 1 and b = 2 and c = 3");
  EXPECT_EQ(Canon("(a = 1 or b = 2) or c = 3"), "a = 1 or b = 2 or c = 3");
  // Inside filters too.
  Expr f = MustParse(R"(performed "A" where (x = 1 and (y = 2 and z = 3)))");
  const PropExpr& filter = *LeafAs<CountCond>(f).event.filter;
  ASSERT_EQ(filter.kind, PropExpr::Kind::kAnd);
  EXPECT_EQ(filter.children.size(), 3u);
  EXPECT_EQ(Canon(R"(performed "A" where ((x = 1 or y = 2) or z = 3))"),
            R"(performed "A" where (x = 1 or y = 2 or z = 3))");
}

TEST(ParserTest, Precedence) {
  Expr e = MustParse("a = 1 or b = 2 and c = 3");
  ASSERT_EQ(e.kind, Expr::Kind::kOr);
  EXPECT_EQ(e.children[1].kind, Expr::Kind::kAnd);
  Expr n = MustParse("not a = 1 and b = 2");
  ASSERT_EQ(n.kind, Expr::Kind::kAnd);
  EXPECT_EQ(n.children[0].kind, Expr::Kind::kNot);
  EXPECT_EQ(n.children[0].pos.col, 1);

  EXPECT_EQ(Canon("a = 1 or (b = 2 and c = 3)"), "a = 1 or b = 2 and c = 3");
  EXPECT_EQ(Canon("(a = 1 or b = 2) and c = 3"), "(a = 1 or b = 2) and c = 3");
  EXPECT_EQ(Canon("not (a = 1)"), "not a = 1");
  EXPECT_EQ(Canon("not (a = 1 and b = 2)"), "not (a = 1 and b = 2)");
  EXPECT_EQ(Canon("not (a = 1 or b = 2)"), "not (a = 1 or b = 2)");
  EXPECT_EQ(Canon("not not a = 1"), "not not a = 1");
  EXPECT_EQ(Canon("(not a = 1) and b = 2"), "not a = 1 and b = 2");
  EXPECT_EQ(Canon(R"(performed "A" where (not (x = 1 or y = 2) and z = 3))"),
            R"(performed "A" where (not (x = 1 or y = 2) and z = 3))");
  EXPECT_EQ(Canon(R"(performed "A" where (not x = 1))"), R"(performed "A" where (not x = 1))");
  EXPECT_EQ(Canon(R"(performed "A" where (x = 1))"), R"(performed "A" where x = 1)");
}

TEST(ParserTest, SinglePredicateFilterEndsAtAnd) {
  // Without parentheses `where` takes one predicate; the "and" joins a trait condition.
  Expr e = MustParse(R"(performed "A" where x = 1 and y = 2)");
  ASSERT_EQ(e.kind, Expr::Kind::kAnd);
  LeafAs<CountCond>(e.children[0]);
  LeafAs<TraitCond>(e.children[1]);
  // A time predicate in a filter is followed by the window.
  const CountCond& c = ParseLeaf<CountCond>(R"(performed "A" where ts within 1d within 30d)");
  EXPECT_EQ(c.event.filter->pred.kind, ValuePred::Kind::kTime);
  EXPECT_EQ(c.window.from, TimeBound::Ago(30 * kDay));
}

TEST(ParserTest, RoundTripsManyDefinitions) {
  const char* defs[] = {
      R"(performed "A" where (a = 1 and b != "x" or c in (1, 2) and not d exists) at least 3 times within 2w)",
      R"(performed "A" where t between 2026-01-01 and 2026-01-02 then "B" where u within 1h within 5m between 10d ago and 1d ago)",
      R"(performed "A" where x matches "^[a-z]+\\d{2,3}$" not followed by "B" where y starts with "z" within 1h)",
      R"(not (performed "A" or did not perform "B" after 2026-06-01T12:00:00.001Z) and in segment "s")",
      R"(avg(price) of "View" where `sku id` ends with "-X" after 7d ago <= 0.001 or max(p) of "V" < -1e-7)",
      R"(last event "E" before 2026-01-01 has (not (a = 1 or b = 2) and c contains "\"q\""))",
      R"(first performed "E" where (a = 1) between 3d ago and 2d ago and last performed "E" after now)",
      R"(x not in ("a", "b") for less than 1h or y missing for at least 1ms)",
      R"(bucket(7, "salt\n") != -3 and bucket(9223372036854775807) >= 9223372036854775807)",
      R"(performed "A" exactly 9223372036854775807 times)",
      R"(a = 1 and (b = 2 or (c = 3 and (d = 4 or not (e = 5 and f = 6)))))",
      R"(distinct(`a b`.c) of "E" >= 2 and sum(`x`) of "E" within 1s = 0)",
      R"(performed "A" not followed by "B")",
      R"(performed "A" before now not followed by "B" within 0s)",
      R"(t between 1d ago and 1h ago and u after 0000-01-01 and v before 9999-12-31T23:59:59.999Z)",
      R"(s = "tab\tnewline\nquote\"backslash\\ctrl\u001f" and e = "")",
      R"(a.b.c.d = true and `.`.`` exists)",
  };
  for (const char* text : defs) {
    if (std::string(text).find("``") != std::string::npos) {
      EXPECT_NE(Err(text), "") << "empty backquoted name";
      continue;
    }
    std::string canon = Canon(text);
    EXPECT_EQ(canon.rfind("ERROR", 0), std::string::npos) << text << " -> " << canon;
  }
}

// --- Errors --------------------------------------------------------------------------------------

TEST(ParserTest, ErrorMissingDurationUnit) {
  EXPECT_EQ(Err(R"(performed "Order Completed" within 30)"),
            "1:36: expected a duration such as 30d after 'within', found '30'");
}

TEST(ParserTest, ErrorMissingQuote) {
  EXPECT_EQ(Err(R"(performed "Order Completed within 30d)"),
            "1:38: expected '\"' to close the string opened at 1:11, found end of input");
  EXPECT_EQ(Err("plan = \"pro\nand x = 1"),
            "1:12: expected '\"' to close the string opened at 1:8, found end of line");
}

TEST(ParserTest, ErrorUnknownKeyword) {
  EXPECT_EQ(Err(R"(preformed "A")"),
            "1:11: expected a comparison such as '=' or a predicate such as 'in', 'exists' or "
            "'within' after 'preformed', found '\"A\"'");
  EXPECT_EQ(Err(R"(performed "A" withn 30d)"),
            "1:15: expected 'and', 'or' or the end of the definition, found 'withn'");
  EXPECT_EQ(Err(R"(performed "A" at leest 3 times)"),
            "1:15: expected 'and', 'or' or the end of the definition, found 'at'");
}

TEST(ParserTest, ErrorTrailingGarbage) {
  EXPECT_EQ(Err("a = 1 b = 2"),
            "1:7: expected 'and', 'or' or the end of the definition, found 'b'");
  EXPECT_EQ(Err("a = 1 )"), "1:7: expected 'and', 'or' or the end of the definition, found ')'");
  EXPECT_EQ(Err("a = 1 @"),
            "1:7: expected a name, string, number, operator or parenthesis, found '@'");
}

TEST(ParserTest, ErrorUnbalancedParens) {
  EXPECT_EQ(Err("(a = 1 and (b = 2)"),
            "1:19: expected ')' to close the '(' at 1:1, found end of input");
  EXPECT_EQ(Err("performed \"A\" where (x = 1\n and y = 2"),
            "2:11: expected ')' to close the '(' at 1:21, found end of input");
}

TEST(ParserTest, ErrorBadRegex) {
  std::string err = Err(R"(email matches "[a-z")");
  EXPECT_EQ(err,
            "1:15: expected a valid regular expression (RE2 syntax, at most 1024 bytes) "
            "after 'matches', found '\"[a-z\"' (missing ]: [a-z)");
  EXPECT_NE(Err(R"x(e matches "(((a)")x"), "");
  EXPECT_NE(Err(R"(e matches "a{99999999}")"), "");
  EXPECT_NE(Err(R"(e matches "((a{1000}){1000}){1000}")"), "");
  EXPECT_NE(Err("e matches \"" + std::string(2000, 'a') + "\""), "");
  EXPECT_EQ(Err(R"(e matches "(a|b)*c{2,5}\\.")"), "");
  EXPECT_NE(Err(R"(e matches "x{1500}")").find("invalid repetition size"), std::string::npos);
  EXPECT_NE(Err(R"(e matches "(a)\\1")"), "");  // RE2 has no backreferences
}

TEST(ParserTest, ErrorBucket) {
  EXPECT_EQ(Err("bucket(0) < 1"),
            "1:8: expected a whole number of buckets of at least 1 after 'bucket(', found '0'");
  EXPECT_EQ(Err("bucket(-5) < 1"),
            "1:8: expected a whole number of buckets of at least 1 after 'bucket(', found '-5'");
  EXPECT_EQ(Err("bucket(10) < 1.5"), "1:14: expected a whole number after '<', found '1.5'");
}

TEST(ParserTest, ErrorEmptyRange) {
  EXPECT_EQ(Err(R"(performed "A" between 30d ago and 90d ago)"),
            "1:15: expected a non-empty time range (its start before its end), found 'between "
            "30d ago and 90d ago'");
  EXPECT_EQ(Err("t between 2026-02-01 and 2026-01-01"),
            "1:3: expected a non-empty time range (its start before its end), found 'between "
            "2026-02-01 and 2026-01-01'");
  EXPECT_NE(Err("t between 2026-01-01 and 2026-01-01"), "");
  EXPECT_NE(Err("t between now and 1d ago"), "");
  EXPECT_NE(Err("t within 0d"), "");
}

TEST(ParserTest, ErrorDeepNesting) {
  std::string deep = std::string(101, '(') + "a = 1" + std::string(101, ')');
  EXPECT_EQ(Err(deep), "1:101: expected at most 100 levels of nesting, found a deeper one at '('");
  std::string ok = std::string(100, '(') + "a = 1" + std::string(100, ')');
  EXPECT_EQ(Err(ok), "");
  std::string nots;
  for (int i = 0; i < 5000; ++i) nots += "not ";
  EXPECT_NE(Err(nots + "a = 1"), "");
  std::string filter = "performed \"A\" where " + std::string(200, '(') + "x = 1";
  EXPECT_NE(Err(filter), "");
  // A huge input is refused before lexing.
  std::string big(70000, ' ');
  EXPECT_EQ(Err(big + "a = 1"),
            "1:1: expected a definition of at most 65536 bytes, found 70005 bytes");
}

TEST(ParserTest, ErrorCounts) {
  EXPECT_EQ(Err(R"(performed "A" at least -1 times)"),
            "1:24: expected a count of 0 or more after 'at least', found '-1'");
  EXPECT_EQ(Err(R"(performed "A" at least 2.5 times)"),
            "1:24: expected a whole number of times after 'at least', found '2.5'");
  EXPECT_EQ(Err(R"(performed "A" more than 2)"),
            "1:26: expected 'times' after 'more than 2', found end of input");
  EXPECT_EQ(Err(R"(performed "A" at least 2 times not followed by "B")"),
            "1:32: expected 'and', 'or' or the end of the definition ('not followed by' takes no "
            "count), found 'not'");
}

TEST(ParserTest, ErrorNullAndValues) {
  EXPECT_EQ(Err("plan = null"),
            "1:8: expected a value (a string, number, true, false or time) after '='; test for "
            "no value with 'missing' or 'exists', found 'null'");
  EXPECT_EQ(Err("plan in (\"a\", NULL)"),
            "1:15: expected a value (a string, number, true, false or time) after ','; test for "
            "no value with 'missing' or 'exists', found 'NULL'");
  EXPECT_EQ(Err("plan ="),
            "1:7: expected a value such as \"text\", 42, true or 2026-01-02 after "
            "'=', found end of input");
  EXPECT_EQ(Err("plan contains 5"),
            "1:15: expected a string in quotes after 'contains', found '5'");
}

TEST(ParserTest, ErrorFirstLastNeedsTimePredicate) {
  EXPECT_EQ(Err(R"(first performed "A")"),
            "1:20: expected a time predicate such as 'within 7d' or 'before 30d ago' after 'first "
            "performed' and its event, found end of input");
  EXPECT_EQ(Err(R"(last performed "A" and x = 1)"),
            "1:20: expected a time predicate such as 'within 7d' or 'before 30d ago' after 'last "
            "performed' and its event, found 'and'");
}

TEST(ParserTest, ErrorMisc) {
  EXPECT_EQ(Err(""),
            "1:1: expected a condition such as 'performed \"Event\"' or a trait name, "
            "found end of input");
  EXPECT_EQ(Err("# only a comment\n"),
            "2:1: expected a condition such as 'performed \"Event\"' or a trait name, found end "
            "of input");
  EXPECT_EQ(Err("event = 1"),
            "1:1: expected a condition such as 'performed \"Event\"' or a trait name (write a "
            "trait named like a keyword in backquotes), found 'event'");
  EXPECT_EQ(Err("performed Order"),
            "1:11: expected an event name in quotes such as \"Order Completed\" after "
            "'performed', found 'Order'");
  EXPECT_EQ(Err("t before 30d"), "1:13: expected 'ago' after '30d', found end of input");
  EXPECT_EQ(Err("t > 2026-13-01"),
            "1:5: expected a time such as 2026-01-02 or 2026-01-02T03:04:05Z, found '2026-13-01'");
  EXPECT_EQ(Err("t within 30days"),
            "1:10: expected a number or a duration such as 30d, found '30days'");
  EXPECT_EQ(Err("a = \"\\q\""),
            "1:6: expected an escape such as \\\", \\\\, \\n, \\t or \\u00e9, found '\\q'");
  EXPECT_EQ(Err("a = \"\\ud800\""),
            "1:6: expected an escape such as \\\", \\\\, \\n, \\t or \\u00e9, found '\\ud800'");
  EXPECT_EQ(Err("did perform \"A\""), "1:5: expected 'not' after 'did', found 'perform'");
  EXPECT_EQ(Err(R"(performed "A" then "B")"),
            "1:23: expected 'within' and a duration such as 1d after the event following "
            "'then', found end of input");
  EXPECT_EQ(Err("sum total of \"A\" > 1"), "1:5: expected '(' after 'sum', found 'total'");
  EXPECT_EQ(Err(R"(sum(total) of "A" within 1d)"),
            "1:28: expected a comparison such as '> 500' after the events of 'sum', found end of "
            "input");
  EXPECT_EQ(Err("in \"vip\""),
            "1:4: expected 'segment' or 'list' after 'in' (as in 'in segment \"vip\"'), found "
            "'\"vip\"'");
  EXPECT_EQ(Err("in list vip"), "1:9: expected a list name in quotes after 'in list', found 'vip'");
  EXPECT_EQ(Err("x = 1 for 7d"),
            "1:11: expected 'at least' or 'less than' after 'for', found '7d'");
  EXPECT_EQ(Err("a = 1 and\nb ="),
            "2:4: expected a value such as \"text\", 42, true or 2026-01-02 after '=', found end "
            "of input");
  EXPECT_EQ(Err(R"(last event "A" x = 1)"),
            "1:16: expected 'has' and a property condition after 'last event' and its event, "
            "found 'x'");
}

// Generates random definitions from the grammar of docs/language.md (with random keyword case,
// spacing and comments); each must parse, and print to a fixed point that reads back equal.
class RandomDefinition {
 public:
  explicit RandomDefinition(uint32_t seed) : rng_(seed) {}

  std::string Expr(int depth) {
    int r = Pick(depth > 3 ? 6 : 10);
    if (r == 6) return Expr(depth + 1) + Sp() + Kw("or") + Sp() + Expr(depth + 1);
    if (r == 7) return Expr(depth + 1) + Sp() + Kw("and") + Sp() + Expr(depth + 1);
    if (r == 8) return Kw("not") + " " + Expr(depth + 1);
    if (r == 9) return "(" + Expr(depth + 1) + ")";
    return Condition();
  }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }
  std::string Kw(std::string w) {
    for (char& c : w)
      if (Pick(4) == 0 && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return w;
  }
  std::string Sp() {
    switch (Pick(8)) {
      case 0:
        return "  ";
      case 1:
        return "\n";
      case 2:
        return " # note\n ";
      default:
        return " ";
    }
  }
  std::string Duration() {
    const char* units[] = {"ms", "s", "m", "h", "d", "w"};
    return std::to_string(1 + Pick(100)) + units[Pick(6)];
  }
  std::string Time() {
    const char* times[] = {"2026-01-02", "2025-12-31T23:59:59Z", "2026-03-04T05:06:07.089+02:00",
                           "1999-01-01T00:00Z", "2030-06-15T12:00:00-05:30"};
    return times[Pick(5)];
  }
  std::string Point() {
    int r = Pick(3);
    if (r == 0) return Duration() + " " + Kw("ago");
    if (r == 1) return Time();
    return Kw("now");
  }
  // A range that is never empty: relative bounds are ordered, absolute ones too.
  std::string Range() {
    switch (Pick(5)) {
      case 0:
        return Kw("within") + " " + Duration();
      case 1:
        return Kw("before") + " " + Point();
      case 2:
        return Kw("after") + " " + Point();
      case 3: {
        int a = 2 + Pick(50), b = Pick(a);
        return Kw("between") + " " + std::to_string(a) + "d " + Kw("ago") + " " + Kw("and") + " " +
               (b == 0 ? Kw("now") : std::to_string(b) + "h " + Kw("ago"));
      }
      default:
        return Kw("between") + " 1990-01-01 " + Kw("and") + " " + Time();
    }
  }
  std::string Window() { return Pick(2) ? "" : " " + Range(); }
  std::string Literal() {
    switch (Pick(6)) {
      case 0:
        return "\"s" + std::to_string(Pick(10)) + "\\n\"";
      case 1:
        return std::to_string(Pick(2000) - 1000);
      case 2:
        return std::to_string(Pick(100)) + "." + std::to_string(Pick(100));
      case 3:
        return Kw(Pick(2) ? "true" : "false");
      case 4:
        return Time();
      default:
        return "-1.5e" + std::to_string(Pick(20));
    }
  }
  std::string PathText() {
    const char* names[] = {"plan",  "address.city", "`first name`", "`in`",
                           "a$b-c", "x.`y z`.w",    "time"};
    return names[Pick(7)];
  }
  std::string Pred() {
    std::string p = PathText() + " ";
    const char* ops[] = {"=", "!=", "<", "<=", ">", ">="};
    switch (Pick(11)) {
      case 0:
        return p + ops[Pick(6)] + " " + Literal();
      case 1:  // a TIME first would make it a time range
        return p + Kw("between") + " " + std::to_string(Pick(50)) + " " + Kw("and") + " " +
               Literal();
      case 2:
        return p + Kw("in") + " (" + Literal() + ", " + Literal() + ")";
      case 3:
        return p + Kw("not") + " " + Kw("in") + " (" + Literal() + ")";
      case 4:
        return p + Kw("contains") + " \"x\"";
      case 5:
        return p + Kw("starts") + " " + Kw("with") + " \"y\"";
      case 6:
        return p + Kw("ends") + " " + Kw("with") + " \"\\u00e9\"";
      case 7:
        return p + Kw("matches") + " \"^a[0-9]{2}$\"";
      case 8:
        return p + Kw("exists");
      case 9:
        return p + Kw("missing");
      default:
        return p + Range();
    }
  }
  std::string PropExpr(int depth) {
    int r = Pick(depth > 2 ? 4 : 8);
    if (r == 4) return PropExpr(depth + 1) + " " + Kw("and") + " " + PropExpr(depth + 1);
    if (r == 5) return PropExpr(depth + 1) + " " + Kw("or") + " " + PropExpr(depth + 1);
    if (r == 6) return Kw("not") + " " + PropExpr(depth + 1);
    if (r == 7) return "(" + PropExpr(depth + 1) + ")";
    return Pred();
  }
  std::string Filter() { return Pick(2) ? Pred() : "(" + PropExpr(0) + ")"; }
  std::string Event() {
    std::string e = "\"Ev " + std::to_string(Pick(5)) + "\"";
    if (Pick(2)) e += " " + Kw("where") + " " + Filter();
    return e;
  }
  std::string Count() {
    const char* words[] = {"at least", "at most", "exactly", "more than", "fewer than", "!=", ">="};
    return " " + Kw(words[Pick(7)]) + " " + std::to_string(Pick(10)) + " " + Kw("times");
  }
  std::string Condition() {
    switch (Pick(18)) {
      case 0:
        return Pred();
      case 1:
        return Pred() + " " + Kw("for") + " " + (Pick(2) ? Kw("at least") : Kw("less than")) + " " +
               Duration();
      case 2:
        return Kw("performed") + " " + Event() + (Pick(2) ? Count() : "") + Window();
      case 3:
        return Kw("did not perform") + " " + Event() + Window();
      case 4: {
        const char* fns[] = {"sum", "avg", "min", "max", "distinct"};
        return Kw(fns[Pick(5)]) + "(" + PathText() + ") " + Kw("of") + " " + Event() + Window() +
               " >= " + std::to_string(Pick(100)) + ".25";
      }
      case 5:
        return Kw(Pick(2) ? "first" : "last") + " " + Kw("performed") + " " + Event() + " " +
               Range();
      case 6:
        return Kw("last event") + " " + Event() + Window() + " " + Kw("has") + " " + Filter();
      case 7:
        return Kw("performed") + " " + Event() + " " + Kw("then") + " " + Event() + " " +
               Kw("within") + " " + Duration() + Window();
      case 8:
        return Kw("performed") + " " + Event() + Window() + " " + Kw("not followed by") + " " +
               Event() + (Pick(2) ? " " + Kw("within") + " " + Duration() : "");
      case 9:
        return Kw("in segment") + " \"seg\"";
      case 10:
        return Kw("in list") + " \"vip list\"";
      case 12: {
        const char* heads[] = {"any member",          "no member",    "all members",
                               "at least 3 members",  ">= 2 members", "exactly 1 member",
                               "fewer than 4 members"};
        std::string user = Pick(2) ? Pred() : Kw("performed") + " " + Event() + Window();
        if (Pick(3) == 0) user = "(" + user + ") " + Kw("or") + " " + Pred();
        return Kw(heads[Pick(7)]) + " (" + user + ")";
      }
      case 13:
        return Kw("account") + " " + Kw("in segment") + " \"accts\"";
      case 14:
        return Kw("account") + "." + Pred();
      case 15: {
        const char* amounts[] = {"1", "1000", "10%", "12.5 %", "100%", "0.000001%"};
        std::string s =
            Kw(Pick(3) ? "top" : "bottom") + " " + amounts[Pick(6)] + " " + Kw("by") + " ";
        switch (Pick(3)) {
          case 0:
            if (Pick(3) == 0)  // an aggregate over members' values
              return s + Kw(Pick(2) ? "sum" : "max") + "(computed.ltv) " + Kw("of") + " " +
                     Kw("members") + (Pick(2) ? " (" + Pred() + ")" : "");
            return s + (Pick(2) ? "ltv" : "`lifetime value`.usd");
          case 1: {
            const char* fns[] = {"sum", "avg", "min", "max", "distinct"};
            return s + Kw(fns[Pick(5)]) + "(total) " + Kw("of") + " " + Event() + Window();
          }
          case 2:
            if (Pick(3) == 0) return s + Kw("count of") + " " + Event() + Window();
            return s + Kw("members") + " (" + Pred() + ")";
          default:
            return s + Kw("members") + " (" + Pred() + ")";
        }
      }
      case 16: {  // computed.NAME: the name is one plain name, a keyword in backquotes
        const char* names[] = {"ltv", "`min`", "lead_score", "fav-cat$2"};
        std::string pred;  // a predicate whose path has no space: cut the path off at the space
        do pred = Pred();
        while (std::count(pred.begin(), pred.begin() + pred.find(' '), '`') % 2 != 0);
        return Kw("computed") + "." + names[Pick(4)] + pred.substr(pred.find(' '));
      }
      case 17: {  // an aggregate over members' values, of a trait or a computed trait
        const char* fns[] = {"sum", "avg", "min", "max"};
        const char* values[] = {"spend", "billing.mrr", "computed.ltv", "`computed`.x",
                                "`first name`"};
        std::string s =
            Kw(fns[Pick(4)]) + "(" + values[Pick(5)] + ") " + Kw("of") + " " + Kw("members");
        if (Pick(2)) s += " (" + (Pick(2) ? Pred() : Kw("performed") + " " + Event()) + ")";
        const char* ops[] = {"=", "!=", "<", "<=", ">", ">="};
        return s + " " + ops[Pick(6)] + " " + std::to_string(Pick(100)) + ".5";
      }
      default:
        return Kw("bucket") + "(" + std::to_string(1 + Pick(100)) + (Pick(2) ? ", \"salt\"" : "") +
               ") < " + std::to_string(Pick(100));
    }
  }

  std::mt19937 rng_;
};

TEST(ParserTest, RandomGrammarDefinitionsRoundTrip) {
  RandomDefinition gen(20260101);
  std::vector<int> seen(std::variant_size_v<Leaf>, 0);
  std::function<void(const Expr&)> count = [&](const Expr& e) {
    if (e.kind == Expr::Kind::kLeaf) ++seen[e.leaf.index()];
    for (const Expr& c : e.children) count(c);
  };
  for (int i = 0; i < 3000; ++i) {
    std::string text = gen.Expr(0);
    Result<Expr> r = Parse(text);
    ASSERT_TRUE(r.ok()) << text << "\n  -> " << r.status().message();
    count(*r);
    std::string canon = Canon(text);
    ASSERT_EQ(Canon(canon), canon);
  }
  for (size_t k = 0; k < seen.size(); ++k) EXPECT_GT(seen[k], 50) << "leaf kind " << k;
}

TEST(ParserTest, NeverCrashesOnPrefixes) {
  // Every prefix of valid definitions either parses (and round-trips) or gives a positioned error.
  const std::string text =
      R"(performed "A" where (x = 1 or y in (2, "z")) at least 3 times between 9d ago and 2d ago )"
      R"(and not (sum(`t a`.b) of "B" within 1h >= -2.5e3 or last event "C" has z matches "^a") )"
      R"(or bucket(10, "s") < 3 and signup_at after 2026-01-02T03:04:05.678+02:00 for at least 1w)";
  Canon(text);
  for (size_t n = 0; n <= text.size(); ++n) {
    Result<Expr> r = Parse(text.substr(0, n));
    if (r.ok()) {
      Canon(text.substr(0, n));
    } else {
      EXPECT_NE(r.status().message().find(": expected "), std::string::npos)
          << r.status().message();
    }
  }
}

}  // namespace
}  // namespace shoal::rules

namespace shoal::rules {
namespace {

TEST(ParserTest, AccountConditions) {
  EXPECT_EQ(Canon(R"(AT LEAST 3 MEMBERS (performed "Email Clicked" within 14d))"),
            R"(at least 3 members (performed "Email Clicked" within 14d))");
  EXPECT_EQ(Canon(R"(at least 1 members (plan = "pro"))"), R"(any member (plan = "pro"))");
  EXPECT_EQ(Canon(R"(exactly 0 member (plan = "pro"))"), R"(no member (plan = "pro"))");
  EXPECT_EQ(Canon(R"(all member (plan = "pro" or x = 1))"),
            R"(all members (plan = "pro" or x = 1))");
  EXPECT_EQ(Canon(R"(!= 1 members (x = 1))"), R"(!= 1 member (x = 1))");
  EXPECT_EQ(Canon(R"(Account In Segment "t")"), R"(account in segment "t")");
  EXPECT_EQ(Canon(R"(account.industry = "Fintech")"), R"(account.industry = "Fintech")");
  // A user trait under `account` keeps its meaning through the canonical form.
  EXPECT_EQ(Canon(R"(`account`.plan = "pro")"), R"(`account`.plan = "pro")");
  EXPECT_EQ(Canon(R"(account = "x" and any = 1 and no in (1))"),
            R"(account = "x" and any = 1 and no in (1))");
  auto m = ParseLeaf<MemberCond>(R"(all members (performed "A"))");
  EXPECT_EQ(m.kind, MemberCond::Kind::kAll);
  ASSERT_TRUE(m.user);
  auto t = ParseLeaf<AccountTraitCond>(R"(account.address.city = "Paris")");
  EXPECT_EQ(t.pred.path, (Path{"address", "city"}));
  EXPECT_FALSE(Parse(R"(at least 3 members performed "A")").ok());
  EXPECT_FALSE(Parse(R"(at least members (x = 1))").ok());
  EXPECT_FALSE(Parse(R"(any member (x = 1)").ok());
  EXPECT_FALSE(Parse(R"(account in segment vip)").ok());
}

TEST(ParserTest, TopN) {
  EXPECT_EQ(Canon("TOP 1000 BY lifetime_value"), "top 1000 by lifetime_value");
  EXPECT_EQ(Canon(R"(top 10% by sum(total) of "Order Completed" within 2160h)"),
            R"(top 10% by sum(total) of "Order Completed" within 90d)");
  EXPECT_EQ(Canon(R"(bottom 2.5 % by avg(total) of "O" where currency = "EUR")"),
            R"(bottom 2.5% by avg(total) of "O" where currency = "EUR")");
  EXPECT_EQ(Canon(R"(top 0.000001% by x)"), R"(top 0.000001% by x)");
  EXPECT_EQ(Canon(R"(top 100% by x and country = "DE")"), R"(top 100% by x and country = "DE")");
  EXPECT_EQ(Canon(R"(top 1000 by member (performed "Login" within 30d))"),
            R"(top 1000 by members (performed "Login" within 30d))");
  EXPECT_EQ(Canon(R"(top 5 by distinct(category) of "Viewed" between 60d ago and 30d ago)"),
            R"(top 5 by distinct(category) of "Viewed" between 60d ago and 30d ago)");
  // `top` and `bottom` stay trait names, and traits named like keywords are backquoted.
  EXPECT_EQ(Canon("top = 5 and bottom > 1"), "top = 5 and bottom > 1");
  EXPECT_EQ(Canon("top 3 by top"), "top 3 by top");
  EXPECT_EQ(Canon("top 3 by `sum`.x"), "top 3 by `sum`.x");
  EXPECT_EQ(Canon("top 3 by members"), "top 3 by members");
  EXPECT_EQ(Canon(R"(top 1000 by COUNT OF "Login" where device = "ios" within 30d)"),
            R"(top 1000 by count of "Login" where device = "ios" within 30d)");
  EXPECT_EQ(Canon("top 3 by count and count = 1"), "top 3 by count and count = 1");
  auto k = ParseLeaf<TopNCond>(R"(bottom 5% by count of "Login")");
  EXPECT_EQ(k.source, TopNCond::Source::kCount);
  EXPECT_EQ(k.agg.event.name, "Login");
  EXPECT_TRUE(k.agg.window.IsEver());
  EXPECT_NE(Err("top 3 by count of"), "");

  auto t = ParseLeaf<TopNCond>(R"(top 10% by sum(total) of "Order Completed" within 90d)");
  EXPECT_TRUE(t.percent);
  EXPECT_FALSE(t.bottom);
  EXPECT_EQ(t.pct, 10);
  EXPECT_EQ(t.source, TopNCond::Source::kAgg);
  EXPECT_EQ(t.agg.fn, AggCond::Fn::kSum);
  EXPECT_EQ(t.agg.prop, (Path{"total"}));
  EXPECT_EQ(t.agg.event.name, "Order Completed");
  EXPECT_EQ(t.agg.window.from, TimeBound::Ago(90 * 86400000LL));
  auto n = ParseLeaf<TopNCond>("bottom 7 by address.rank");
  EXPECT_TRUE(n.bottom);
  EXPECT_FALSE(n.percent);
  EXPECT_EQ(n.n, 7);
  EXPECT_EQ(n.path, (Path{"address", "rank"}));
  auto m = ParseLeaf<TopNCond>(R"(top 3 by members (plan = "pro"))");
  EXPECT_EQ(m.source, TopNCond::Source::kMembers);
  ASSERT_TRUE(m.members);
  EXPECT_NE(ParseLeaf<TopNCond>("top 3 by x"), ParseLeaf<TopNCond>("top 4 by x"));
  EXPECT_NE(ParseLeaf<TopNCond>("top 3 by x"), ParseLeaf<TopNCond>("bottom 3 by x"));
  EXPECT_NE(ParseLeaf<TopNCond>("top 3 by x"), ParseLeaf<TopNCond>("top 3% by x"));
}

TEST(ParserTest, ErrorTopN) {
  EXPECT_EQ(Err("top 0 by x"),
            "1:5: expected a whole number of at least 1 (or a percentage such as 10%) after "
            "'top', found '0'");
  EXPECT_EQ(Err("top -3 by x"),
            "1:5: expected a whole number of at least 1 (or a percentage such as 10%) after "
            "'top', found '-3'");
  EXPECT_EQ(Err("top 2.5 by x"),
            "1:5: expected a whole number of at least 1 (or a percentage such as 10%) after "
            "'top', found '2.5'");
  EXPECT_EQ(Err("top 150% by x"),
            "1:5: expected a percentage above 0 and at most 100, with at most 6 decimals, after "
            "'top', found '150'");
  EXPECT_EQ(Err("bottom 0% by x"),
            "1:8: expected a percentage above 0 and at most 100, with at most 6 decimals, after "
            "'bottom', found '0'");
  EXPECT_NE(Err("top 0.0000001% by x"), "");
  EXPECT_NE(Err("top 1e1% by x"), "");
  EXPECT_EQ(Err("top 10 x"), "1:8: expected 'by' after 'top 10', found 'x'");
  EXPECT_EQ(Err("top 10% x"), "1:9: expected 'by' after 'top 10%', found 'x'");
  EXPECT_NE(Err("top 10 by"), "");
  EXPECT_NE(Err("top 10 by 5"), "");
  EXPECT_NE(Err(R"(top 10 by sum(total) of "O" > 5)"), "");  // no comparison after a rank value
  EXPECT_NE(Err("top 10 by members (x = 1"), "");
  EXPECT_NE(Err("top 10 % by"), "");
  EXPECT_NE(Err("x = 10%"), "");
}

// `by computed.NAME` ranks by a computed trait; `computed` alone (or not before a dot) stays a
// trait name, as in conditions.
TEST(ParserTest, TopNComputed) {
  EXPECT_EQ(Canon("TOP 10% BY computed.lifetime_value"), "top 10% by computed.lifetime_value");
  EXPECT_EQ(Canon("bottom 5 by computed.lead_score and plan = \"pro\""),
            "bottom 5 by computed.lead_score and plan = \"pro\"");
  auto c = ParseLeaf<TopNCond>("top 1000 by computed.lead_score");
  EXPECT_EQ(c.source, TopNCond::Source::kComputed);
  EXPECT_EQ(c.path, (Path{"lead_score"}));
  EXPECT_EQ(c.n, 1000);
  auto b = ParseLeaf<TopNCond>("bottom 2.5% by computed.ltv");
  EXPECT_TRUE(b.bottom);
  EXPECT_TRUE(b.percent);
  EXPECT_EQ(b.source, TopNCond::Source::kComputed);
  // A trait named computed is still a trait.
  auto t = ParseLeaf<TopNCond>("top 3 by computed");
  EXPECT_EQ(t.source, TopNCond::Source::kTrait);
  EXPECT_EQ(t.path, (Path{"computed"}));
  EXPECT_EQ(Canon("computed > 3 and top 3 by computed"), "computed > 3 and top 3 by computed");
  // The computed trait and the trait of the same path are different rank values.
  EXPECT_NE(ParseLeaf<TopNCond>("top 3 by computed.x"),
            ParseLeaf<TopNCond>("top 3 by `computed`.x"));
  EXPECT_EQ(Canon("top 3 by `computed`.x"), "top 3 by `computed`.x");
  EXPECT_EQ(Canon("top 3 by `Computed`.x"), "top 3 by `Computed`.x");
  EXPECT_EQ(Err("top 3 by computed."),
            "1:19: expected a computed trait name after 'computed.', "
            "found end of input");
  EXPECT_NE(Err("top 3 by computed.ltv > 5"), "");  // no comparison after a rank value
}

}  // namespace
}  // namespace shoal::rules

namespace shoal::rules {
namespace {

// Aggregates over members' values (docs/language.md, "Accounts").
TEST(ParserTest, MemberAggregates) {
  EXPECT_EQ(Canon("SUM(spend) OF MEMBERS > 10000"), "sum(spend) of members > 10000");
  EXPECT_EQ(Canon(R"(avg(computed.lead_score) of members (title = "buyer") >= 40)"),
            R"(avg(computed.lead_score) of members (title = "buyer") >= 40)");
  EXPECT_EQ(Canon(R"(min(billing.mrr) of members ((plan = "pro")) < 99.5)"),
            R"(min(billing.mrr) of members (plan = "pro") < 99.5)");
  EXPECT_EQ(Canon(R"(max(computed.ltv_90d) of members (a = 1 or b = 2) != -1 and x = 1)"),
            R"(max(computed.ltv_90d) of members (a = 1 or b = 2) != -1 and x = 1)");
  // A user trait under `computed` keeps its meaning through the canonical form.
  EXPECT_EQ(Canon("sum(`computed`.x) of members > 1"), "sum(`computed`.x) of members > 1");
  EXPECT_EQ(Canon("sum(computed) of members > 1"), "sum(computed) of members > 1");
  // `members` stays a trait name, and an event aggregate is unchanged.
  EXPECT_EQ(Canon(R"(sum(total) of "members" > 1 and members = 2)"),
            R"(sum(total) of "members" > 1 and members = 2)");

  auto a =
      ParseLeaf<MemberAggCond>(R"(avg(computed.lead_score) of members (title = "buyer") >= 40)");
  EXPECT_EQ(a.fn, AggCond::Fn::kAvg);
  EXPECT_TRUE(a.computed);
  EXPECT_EQ(a.prop, (Path{"lead_score"}));
  ASSERT_TRUE(a.user);
  EXPECT_EQ(a.op, CmpOp::kGe);
  EXPECT_EQ(a.value, 40);
  auto s = ParseLeaf<MemberAggCond>("sum(billing.mrr) of members > 5");
  EXPECT_FALSE(s.computed);
  EXPECT_EQ(s.prop, (Path{"billing", "mrr"}));
  EXPECT_FALSE(s.user);
  EXPECT_EQ(s.pos.line, 1);
  EXPECT_EQ(s.pos.col, 1);
  auto e = MustParse("x = 1 or\n  max(a) of members > 5");
  EXPECT_EQ(LeafAs<MemberAggCond>(e.children[1]).pos.line, 2);
  EXPECT_EQ(LeafAs<MemberAggCond>(e.children[1]).pos.col, 3);
  // Equality: the filter, the value kind and the comparison all matter.
  EXPECT_NE(ParseLeaf<MemberAggCond>("sum(x) of members > 1"),
            ParseLeaf<MemberAggCond>("sum(computed.x) of members > 1"));
  EXPECT_NE(ParseLeaf<MemberAggCond>("sum(x) of members > 1"),
            ParseLeaf<MemberAggCond>("sum(x) of members (a = 1) > 1"));
  EXPECT_NE(ParseLeaf<MemberAggCond>("sum(x) of members (a = 1) > 1"),
            ParseLeaf<MemberAggCond>("sum(x) of members (a = 2) > 1"));
  EXPECT_NE(ParseLeaf<MemberAggCond>("sum(x) of members > 1"),
            ParseLeaf<MemberAggCond>("avg(x) of members > 1"));

  EXPECT_NE(Err("distinct(x) of members > 1").find("1:1: expected 'sum', 'avg', 'min' or 'max'"),
            std::string::npos);
  EXPECT_NE(Err("sum(x) of members").find("a comparison such as '> 10000'"), std::string::npos);
  EXPECT_NE(Err("sum(x) of members (a = 1 > 3").find("')'"), std::string::npos);
  EXPECT_NE(Err("sum(x) of members > y").find("a number"), std::string::npos);
  EXPECT_NE(Err("sum(computed.) of members > 1").find("a computed trait name"), std::string::npos);
  EXPECT_NE(Err("sum(x) of members between 1 and 2"), "");

  // Ranking accounts by an aggregate over members' values.
  EXPECT_EQ(Canon(R"(TOP 10 BY SUM(computed.ltv_90d) OF MEMBERS (title = "buyer") and x = 1)"),
            R"(top 10 by sum(computed.ltv_90d) of members (title = "buyer") and x = 1)");
  EXPECT_EQ(Canon("bottom 5% by min(spend) of members"), "bottom 5% by min(spend) of members");
  auto t = ParseLeaf<TopNCond>("top 3 by avg(computed.score) of members (a = 1)");
  EXPECT_EQ(t.source, TopNCond::Source::kMemberAgg);
  ASSERT_TRUE(t.member_agg);
  EXPECT_EQ(t.member_agg->fn, AggCond::Fn::kAvg);
  EXPECT_TRUE(t.member_agg->computed);
  EXPECT_TRUE(t.member_agg->user);
  EXPECT_NE(ParseLeaf<TopNCond>("top 3 by sum(x) of members"),
            ParseLeaf<TopNCond>("top 3 by sum(y) of members"));
  EXPECT_NE(ParseLeaf<TopNCond>("top 3 by sum(x) of members"),
            ParseLeaf<TopNCond>(R"(top 3 by sum(x) of "members")"));
  EXPECT_NE(Err("top 3 by distinct(x) of members"), "");
}

}  // namespace
}  // namespace shoal::rules
