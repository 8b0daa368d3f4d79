// The computed-trait grammar (docs/language.md, "Computed traits and scores"): value definitions,
// scores, and `computed.NAME` in segment definitions. Round trips, canonical forms and error
// positions.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "rules/parser.h"

namespace shoal::rules {
namespace {

// The canonical text of a computed definition, after checking the round trip and the fixed point.
std::string CanonComputed(std::string_view text) {
  Result<ComputedDef> r = ParseComputed(text);
  if (!r.ok()) return "ERROR " + r.status().message();
  std::string printed = Print(*r);
  Result<ComputedDef> again = ParseComputed(printed);
  EXPECT_TRUE(again.ok()) << printed << "\n  -> " << again.status().message();
  if (again.ok()) {
    EXPECT_TRUE(*again == *r) << "round trip changed: " << text << "\n  printed: " << printed;
    EXPECT_EQ(Print(*again), printed);
  }
  return printed;
}

std::string ComputedErr(std::string_view text) {
  Result<ComputedDef> r = ParseComputed(text);
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

TEST(ComputedParserTest, ValueDefinitions) {
  EXPECT_EQ(CanonComputed(R"(COUNT OF "Order Completed" WITHIN 720h)"),
            R"(count of "Order Completed" within 30d)");
  EXPECT_EQ(CanonComputed(R"(count of "Login")"), R"(count of "Login")");
  EXPECT_EQ(CanonComputed(R"(sum(total) of "Order Completed" where currency = "EUR" within 90d)"),
            R"(sum(total) of "Order Completed" where currency = "EUR" within 90d)");
  EXPECT_EQ(CanonComputed(R"(avg(total) of "Order Completed")"),
            R"(avg(total) of "Order Completed")");
  EXPECT_EQ(CanonComputed(R"(Min(a.b) of "X" before 2026-01-01)"),
            R"(min(a.b) of "X" before 2026-01-01T00:00:00Z)");
  EXPECT_EQ(CanonComputed(R"(max(`first name`) of "X" between 9d ago and 2d ago)"),
            R"(max(`first name`) of "X" between 9d ago and 2d ago)");
  EXPECT_EQ(CanonComputed(R"(distinct(category) of "Product Viewed" within 30d)"),
            R"(distinct(category) of "Product Viewed" within 30d)");
  EXPECT_EQ(CanonComputed(R"(unique(category) of "Product Viewed")"),
            R"(unique(category) of "Product Viewed")");
  EXPECT_EQ(CanonComputed(R"(first(utm_source) of "Page Viewed")"),
            R"(first(utm_source) of "Page Viewed")");
  EXPECT_EQ(CanonComputed(R"(last(plan) of "Subscribed" after 30d ago)"),
            R"(last(plan) of "Subscribed" after 30d ago)");
  EXPECT_EQ(CanonComputed(R"(most  frequent(category) of "Product Viewed" within 2w)"),
            R"(most frequent(category) of "Product Viewed" within 14d)");
  Result<ComputedDef> d = ParseComputed(R"(most frequent(a.b) of "E" where (x > 1 or y = 2))");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kind, ComputedDef::Kind::kValue);
  EXPECT_EQ(d->value.fn, ComputedValueDef::Fn::kMostFrequent);
  EXPECT_EQ(d->value.prop, (Path{"a", "b"}));
  EXPECT_EQ(d->value.event.name, "E");
  EXPECT_TRUE(d->value.event.filter.has_value());
  EXPECT_TRUE(d->value.window.IsEver());
}

TEST(ComputedParserTest, Scores) {
  const std::string canon =
      R"(10 points if performed "Page Viewed" where path = "/pricing" within 7d + 25 points if )"
      R"(performed "Demo Requested" - 20 points if title = "student")";
  EXPECT_EQ(CanonComputed(canon), canon);
  // "-20" glued to its number reads as "- 20"; "point" and "points" are one word.
  EXPECT_EQ(CanonComputed(R"(10 POINT IF a = 1 -20 points if b = 2 +1 points if c = 3)"),
            R"(10 points if a = 1 - 20 points if b = 2 + 1 point if c = 3)");
  EXPECT_EQ(CanonComputed(R"(-5 points if x exists)"), R"(-5 points if x exists)");
  EXPECT_EQ(CanonComputed(R"(-1 points if x exists - 2.5 points if y > 3)"),
            R"(-1 point if x exists - 2.5 points if y > 3)");
  EXPECT_EQ(CanonComputed(R"(0 points if x exists - 0 points if y exists)"),
            R"(0 points if x exists + 0 points if y exists)");
  // A condition is any user condition: `or` binds inside the term, `+` ends it.
  Result<ComputedDef> d =
      ParseComputed(R"(5 points if a = 1 or b = 2 and not in segment "s" + 3 points if age > 30)");
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->terms.size(), 2u);
  EXPECT_EQ(d->terms[0].points, 5);
  EXPECT_EQ(d->terms[0].cond.kind, Expr::Kind::kOr);
  EXPECT_EQ(d->terms[1].points, 3);
  EXPECT_EQ(
      CanonComputed(R"(5 points if (a = 1 or b = 2) + 1 point if age > 30 -7 points if c = 1)"),
      R"(5 points if a = 1 or b = 2 + 1 point if age > 30 - 7 points if c = 1)");
  // A number ending a condition is not a term: `> 30 - 20 points`.
  d = ParseComputed(R"(10 points if age > 30 - 20 points if age > 60)");
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->terms.size(), 2u);
  EXPECT_EQ(d->terms[1].points, -20);
}

// An account's value aggregated over its members' values (account computed traits only; the
// engine rejects it for users): the member aggregate without a comparison.
TEST(ComputedParserTest, MemberAggregates) {
  EXPECT_EQ(CanonComputed(R"(SUM(computed.ltv_90d) OF MEMBERS)"),
            R"(sum(computed.ltv_90d) of members)");
  EXPECT_EQ(CanonComputed(R"(avg(age) of members (plan = "pro"))"),
            R"(avg(age) of members (plan = "pro"))");
  EXPECT_EQ(CanonComputed(R"(max(`computed`.x) of members)"), R"(max(`computed`.x) of members)");
  Result<ComputedDef> d = ParseComputed(R"(min(computed.score) of members (title = "buyer"))");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->kind, ComputedDef::Kind::kMemberAgg);
  EXPECT_EQ(d->member_agg.fn, AggCond::Fn::kMin);
  EXPECT_TRUE(d->member_agg.computed);
  EXPECT_NE(d->member_agg.user, nullptr);
  EXPECT_EQ(ComputedErr(R"(sum(computed.ltv) of members > 10)"),
            "1:30: expected the end of the computed trait definition (an aggregate over members "
            "is a value: no comparison), found '>'");
  EXPECT_EQ(ComputedErr(R"(distinct(x) of members)").substr(0, 25), "1:1: expected 'sum', 'avg");
}

TEST(ComputedParserTest, Errors) {
  EXPECT_EQ(ComputedErr(R"(sum(total) of "Order Completed" > 500)"),
            "1:33: expected the end of the computed trait definition, found '>'");
  EXPECT_EQ(ComputedErr(R"(count "X")"), "1:7: expected 'of' after 'count', found '\"X\"'");
  EXPECT_EQ(ComputedErr(R"(most(x) of "X")"), "1:5: expected 'frequent' after 'most', found '('");
  EXPECT_EQ(ComputedErr(R"(median(x) of "X")").substr(0, 30), "1:1: expected a computed value");
  EXPECT_EQ(ComputedErr(R"(10 points a = 1)"), "1:11: expected 'if' after 'points', found 'a'");
  EXPECT_EQ(ComputedErr(R"(10 if a = 1)").substr(0, 30), "1:1: expected a computed value");
  EXPECT_EQ(ComputedErr(R"(10 points if a = 1 +)"),
            "1:21: expected a number of points after '+' or '-', found end of input");
  EXPECT_EQ(ComputedErr(R"(10 points if a = 1 + -5 points if b = 1)"),
            "1:22: expected a number of points without a sign after '+', found '-5'");
  EXPECT_EQ(ComputedErr(R"(10 points if a = 1 * 2)"),
            "1:20: expected a name, string, number, operator or parenthesis, found '*'");
  EXPECT_EQ(ComputedErr(R"(10 points if a = 1 5 points if b = 1)"),
            "1:20: expected '+', '-', 'and', 'or' or the end of the definition, found '5'");
  EXPECT_EQ(ComputedErr("10 points if a = 1\n+ 5 points"),
            "2:11: expected 'if' after 'points', found end of input");
  EXPECT_EQ(ComputedErr(R"(count of "X" where t within 7d extra)"),
            "1:32: expected the end of the computed trait definition, found 'extra'");
  EXPECT_FALSE(ComputedErr(R"(1e999 points if a = 1)").empty());
  EXPECT_FALSE(ComputedErr("").empty());
  // A segment definition takes no `+`.
  EXPECT_EQ(Parse(R"(a = 1 + b = 2)").status().message(),
            "1:7: expected 'and', 'or' or the end of the definition, found '+'");
}

TEST(ComputedParserTest, ComputedTraitConditions) {
  auto canon = [](std::string_view t) {
    Result<Expr> r = Parse(t);
    if (!r.ok()) return "ERROR " + r.status().message();
    std::string p = Print(*r);
    Result<Expr> again = Parse(p);
    EXPECT_TRUE(again.ok() && *again == *r) << p;
    return p;
  };
  EXPECT_EQ(canon("computed.lifetime_value > 500"), "computed.lifetime_value > 500");
  EXPECT_EQ(canon(R"(COMPUTED.favourite_category = "Shoes")"),
            R"(computed.favourite_category = "Shoes")");
  EXPECT_EQ(canon(R"(computed.categories contains "Shoes" and computed.lead_score >= 50)"),
            R"(computed.categories contains "Shoes" and computed.lead_score >= 50)");
  EXPECT_EQ(canon("computed.`min` between 1 and 2"), "computed.`min` between 1 and 2");
  EXPECT_EQ(canon("computed.last_seen within 7d"), "computed.last_seen within 7d");
  EXPECT_EQ(canon("not computed.x missing"), "not computed.x missing");
  // `computed` stays a plain trait name; under a dot it is written in backquotes.
  EXPECT_EQ(canon("computed = 1"), "computed = 1");
  EXPECT_EQ(canon("`computed`.x = 1"), "`computed`.x = 1");
  Result<Expr> e = Parse("computed.ltv >= 10");
  ASSERT_TRUE(e.ok());
  const auto* c = std::get_if<ComputedTraitCond>(&e->leaf);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->pred.path, (Path{"ltv"}));
  EXPECT_EQ(Parse("computed.x > 1 for at least 7d").status().message(),
            "1:16: expected 'and', 'or' or the end of the definition ('for at least' applies to "
            "traits, not to computed traits), found 'for'");
  EXPECT_EQ(Parse("computed. > 1").status().message(),
            "1:11: expected a computed trait name after 'computed.', found '>'");
}

// Random value definitions and scores: every one parses, round-trips and is a fixed point.
TEST(ComputedParserTest, RandomDefinitionsRoundTrip) {
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  const char* fns[] = {"count",    "sum",    "avg",   "min",  "max",
                       "distinct", "unique", "first", "last", "most frequent"};
  const char* windows[] = {"", " within 30d", " between 9d ago and 1d ago", " before 2026-01-01",
                           " after 2d ago"};
  const char* events[] = {R"("A")", R"("Order Completed" where total > 5)",
                          R"("B" where (x = 1 or not y exists))"};
  const char* conds[] = {R"(performed "A" within 7d)",
                         "plan = \"pro\"",
                         "age > 30",
                         R"(in segment "s" or x = -1)",
                         "computed.ltv >= 2.5",
                         R"(not (a = 1 and b = 2))",
                         R"(bucket(10) < 3)"};
  for (int i = 0; i < 500; ++i) {
    std::string text;
    if (pick(2)) {
      std::string fn = fns[pick(10)];
      text = fn + (fn == "count" ? "" : "(p" + std::to_string(pick(3)) + ")") + " of " +
             events[pick(3)] + windows[pick(5)];
    } else {
      int n = 1 + pick(4);
      for (int k = 0; k < n; ++k) {
        int pts = pick(60) - 30;
        if (k == 0)
          text += std::to_string(pts);
        else
          text += pts < 0 ? (pick(2) ? " -" : " - ") + std::to_string(-pts)
                          : " + " + std::to_string(pts);
        text += (pick(2) ? " points if " : " point if ") + std::string(conds[pick(7)]);
      }
    }
    std::string canon = CanonComputed(text);
    ASSERT_NE(canon.substr(0, 5), "ERROR") << text << "\n" << canon;
    ASSERT_EQ(CanonComputed(canon), canon);
  }
}

TEST(ComputedParserTest, NeverCrashesOnPrefixes) {
  const std::string text =
      R"(10 points if performed "P" where (path = "/pricing" or x in (1, 2)) within 7d -20 )"
      R"(points if title = "student" + 2.5 points if computed.ltv > 100)";
  CanonComputed(text);
  for (size_t n = 0; n <= text.size(); ++n) {
    Result<ComputedDef> r = ParseComputed(text.substr(0, n));
    if (r.ok())
      CanonComputed(text.substr(0, n));
    else
      EXPECT_FALSE(r.status().message().empty());
  }
}

}  // namespace
}  // namespace shoal::rules
