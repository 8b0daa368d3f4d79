// A recursive-descent parser over the tokens of lexer.h, one method per grammar rule of
// docs/language.md. Every error is a Status naming the offending token's line:col, what was
// expected and what was found; recursion is bounded by kMaxDepth (nesting of "not" and "(").
#include "rules/parser.h"

#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "rules/lexer.h"

namespace shoal::rules {
namespace {

constexpr size_t kMaxInputBytes = size_t{64} * 1024;
constexpr int kMaxDepth = 100;
// Regular expressions are RE2: linear-time matching with no recursion, so no pattern and no
// value can exhaust the stack (libstdc++'s std::regex recursed once per character and crashed on
// a 30 KB value). The size limits bound compile time and memory per definition.
constexpr size_t kMaxRegexBytes = 1024;
constexpr int64_t kRegexMaxMem = int64_t{1} << 20;  // RE2's program memory budget per pattern

bool IsAggWord(std::string_view w) {
  return w == "sum" || w == "avg" || w == "min" || w == "max" || w == "distinct";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Result<Expr> Run() {
    Expr e;
    SHOAL_RETURN_IF_ERROR(ParseExpr(&e));
    if (Cur().kind != TokKind::kEnd) return Expected("'and', 'or' or the end of the definition");
    return e;
  }

 private:
  // --- Token helpers ---------------------------------------------------------------------------

  const Token& Cur() const { return t_[i_]; }
  const Token& Ahead(size_t k) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const Token& Prev() const { return t_[i_ == 0 ? 0 : i_ - 1]; }
  static bool IsWord(const Token& t, std::string_view w) {
    return t.kind == TokKind::kWord && t.str == w;
  }
  bool AtWord(std::string_view w) const { return IsWord(Cur(), w); }
  void Advance() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  // The source text from token `from` up to the end of the previous token.
  std::string SpanText(size_t from) const {
    if (from >= i_) return std::string(t_[from].text);
    const char* b = t_[from].text.data();
    const char* e = Prev().text.data() + Prev().text.size();
    return std::string(b, static_cast<size_t>(e - b));
  }
  // 'text' for an error message: control characters (a range may span lines) as spaces.
  static std::string Quoted(std::string_view s) {
    std::string out(s.substr(0, 40));
    for (char& c : out)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return "'" + out + (s.size() > 40 ? "...'" : "'");
  }

  Status Expected(std::string_view what) const {
    return SyntaxError(Cur().pos, what, DescribeToken(Cur()));
  }
  // Consumes the keyword `w` or fails with "expected 'w' <context>".
  Status ExpectWord(std::string_view w, std::string_view context) {
    if (!AtWord(w)) return Expected("'" + std::string(w) + "' " + std::string(context));
    Advance();
    return Status::Ok();
  }
  Status ExpectKind(TokKind k, std::string_view what) {
    if (Cur().kind != k) return Expected(what);
    Advance();
    return Status::Ok();
  }
  Status Enter() {
    if (++depth_ > kMaxDepth)
      return SyntaxError(Cur().pos, "at most " + std::to_string(kMaxDepth) + " levels of nesting",
                         "a deeper one at " + DescribeToken(Cur()));
    return Status::Ok();
  }
  void Leave() { --depth_; }

  // --- Boolean structure -----------------------------------------------------------------------

  template <typename Node>
  static void Append(Node* parent, Node child) {
    if (child.kind == parent->kind) {
      for (Node& c : child.children) parent->children.push_back(std::move(c));
    } else {
      parent->children.push_back(std::move(child));
    }
  }

  // chain := operand (word operand)*: one node of `kind` (flattened, see Append) when the word
  // occurs, else the operand itself. Shared by the segment and the property-filter grammars.
  template <typename Node>
  Status ParseChain(const char* word, typename Node::Kind kind, Status (Parser::*operand)(Node*),
                    Node* out) {
    Node first;
    SHOAL_RETURN_IF_ERROR((this->*operand)(&first));
    if (!AtWord(word)) {
      *out = std::move(first);
      return Status::Ok();
    }
    Node e;
    e.kind = kind;
    if constexpr (std::is_same_v<Node, Expr>) e.pos = first.pos;
    Append(&e, std::move(first));
    while (AtWord(word)) {
      Advance();
      Node c;
      SHOAL_RETURN_IF_ERROR((this->*operand)(&c));
      Append(&e, std::move(c));
    }
    *out = std::move(e);
    return Status::Ok();
  }

  // expr := and_expr ("or" and_expr)*
  Status ParseExpr(Expr* out) {
    return ParseChain<Expr>("or", Expr::Kind::kOr, &Parser::ParseAnd, out);
  }
  // and_expr := unary ("and" unary)*
  Status ParseAnd(Expr* out) {
    return ParseChain<Expr>("and", Expr::Kind::kAnd, &Parser::ParseUnary, out);
  }

  // unary := "not" unary | "(" expr ")" | condition
  Status ParseUnary(Expr* out) {
    if (AtWord("not")) {
      Expr e;
      e.kind = Expr::Kind::kNot;
      e.pos = Cur().pos;
      SHOAL_RETURN_IF_ERROR(Enter());
      Advance();
      Expr child;
      SHOAL_RETURN_IF_ERROR(ParseUnary(&child));
      Leave();
      e.children.push_back(std::move(child));
      *out = std::move(e);
      return Status::Ok();
    }
    if (Cur().kind == TokKind::kLParen) return InParens(&Parser::ParseExpr, out);
    return ParseCondition(out);
  }

  static std::string CloseParen(SourcePos open) {
    return "')' to close the '(' at " + std::to_string(open.line) + ":" + std::to_string(open.col);
  }

  // "(" X ")" at the current '(': X parsed by `inner` into *out, one nesting level deeper (Enter),
  // and an error naming where the '(' was when the ')' is missing.
  template <typename T>
  Status InParens(Status (Parser::*inner)(T*), T* out) {
    SourcePos open = Cur().pos;
    SHOAL_RETURN_IF_ERROR(Enter());
    Advance();
    SHOAL_RETURN_IF_ERROR((this->*inner)(out));
    Leave();
    return ExpectKind(TokKind::kRParen, CloseParen(open));
  }

  // prop_expr := prop_and ("or" prop_and)*
  Status ParsePropExpr(PropExpr* out) {
    return ParseChain<PropExpr>("or", PropExpr::Kind::kOr, &Parser::ParsePropAnd, out);
  }
  // prop_and := prop_unary ("and" prop_unary)*
  Status ParsePropAnd(PropExpr* out) {
    return ParseChain<PropExpr>("and", PropExpr::Kind::kAnd, &Parser::ParsePropUnary, out);
  }

  // prop_unary := "not" prop_unary | "(" prop_expr ")" | value_pred
  Status ParsePropUnary(PropExpr* out) {
    if (AtWord("not")) {
      SHOAL_RETURN_IF_ERROR(Enter());
      Advance();
      PropExpr child;
      SHOAL_RETURN_IF_ERROR(ParsePropUnary(&child));
      Leave();
      out->kind = PropExpr::Kind::kNot;
      out->children.push_back(std::move(child));
      return Status::Ok();
    }
    if (Cur().kind == TokKind::kLParen) return InParens(&Parser::ParsePropExpr, out);
    out->kind = PropExpr::Kind::kPred;
    return ParsePathAndPred(&out->pred, "a property condition such as total > 100");
  }

  // filter := value_pred | "(" prop_expr ")"
  Status ParseFilter(PropExpr* out, std::string_view after) {
    if (Cur().kind == TokKind::kLParen) return InParens(&Parser::ParsePropExpr, out);
    out->kind = PropExpr::Kind::kPred;
    return ParsePathAndPred(
        &out->pred,
        "a property condition such as total > 100, or '(', after '" + std::string(after) + "'");
  }

  // --- Conditions ------------------------------------------------------------------------------

  Status ParseCondition(Expr* out) {
    out->kind = Expr::Kind::kLeaf;
    out->pos = Cur().pos;
    const Token& t = Cur();
    if (t.kind == TokKind::kWord) {
      const std::string& w = t.str;
      if (w == "performed") return ParsePerformed(out);
      if (w == "did") return ParseDidNot(out);
      if (w == "last" && IsWord(Ahead(1), "event")) return ParseLastEvent(out);
      if (w == "first" || w == "last") return ParseFirstLast(out);
      if (IsAggWord(w)) return ParseAgg(out);
      if (w == "in") return ParseSegmentRef(out);
      if (w == "bucket") return ParseBucket(out);
      // Not reserved: `top` and `bottom` start a top-N condition only before a number, where no
      // trait name can be followed by one, so traits named top keep working.
      if ((w == "top" || w == "bottom") && Ahead(1).kind == TokKind::kNumber) return ParseTopN(out);
      // Not reserved words: `account`, `any`, `all` and `no` are accounts' conditions only when
      // followed as below, so traits with those names keep working.
      if (w == "account" && (Ahead(1).kind == TokKind::kDot ||
                             (IsWord(Ahead(1), "in") && IsWord(Ahead(2), "segment"))))
        return ParseAccount(out);
      // `computed` is not reserved either: `computed.NAME` reads a computed trait.
      if (w == "computed" && Ahead(1).kind == TokKind::kDot) return ParseComputedRef(out);
      if ((w == "any" || w == "all" || w == "no") &&
          (IsWord(Ahead(1), "member") || IsWord(Ahead(1), "members")))
        return ParseMembers(out);
      if (AtCount()) return ParseMembers(out);
      if (IsReservedWord(w))
        return Expected(
            "a condition such as 'performed \"Event\"' or a trait name (write a trait named "
            "like a keyword in backquotes)");
    }
    // `at least 3 members (...)`: a count word or a comparison starts only member conditions.
    if (AtCount()) return ParseMembers(out);
    if (t.kind == TokKind::kWord || t.kind == TokKind::kQuoted) return ParseTrait(out);
    return Expected("a condition such as 'performed \"Event\"' or a trait name");
  }

  // trait_cond := value_pred [("for at least" | "for less than") DURATION]
  Status ParseTrait(Expr* out) {
    ValuePred pred;
    SHOAL_RETURN_IF_ERROR(ParsePathAndPred(&pred, "a trait name"));
    if (!AtWord("for")) {
      out->leaf = TraitCond{std::move(pred)};
      return Status::Ok();
    }
    Advance();
    TraitHistoryCond h;
    if (AtWord("at")) {
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("least", "after 'for at'"));
      h.at_least = true;
    } else if (AtWord("less")) {
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("than", "after 'for less'"));
      h.at_least = false;
    } else {
      return Expected("'at least' or 'less than' after 'for'");
    }
    if (Cur().kind != TokKind::kDuration)
      return Expected(std::string("a duration such as 7d after ") +
                      (h.at_least ? "'for at least'" : "'for less than'"));
    h.duration = Cur().ms;
    Advance();
    h.pred = std::move(pred);
    out->leaf = std::move(h);
    return Status::Ok();
  }

  // performed E [count] [window] | performed E then E within D [window]
  // | performed E [window] not followed by E [within D]
  Status ParsePerformed(Expr* out) {
    Advance();  // performed
    EventSpec a;
    SHOAL_RETURN_IF_ERROR(ParseEvent(&a, "'performed'"));
    if (AtWord("then")) {
      Advance();
      SequenceCond s;
      s.first = std::move(a);
      SHOAL_RETURN_IF_ERROR(ParseEvent(&s.then, "'then'"));
      if (!AtWord("within"))
        return Expected("'within' and a duration such as 1d after the event following 'then'");
      Advance();
      if (Cur().kind != TokKind::kDuration) return Expected("a duration such as 1d after 'within'");
      s.within = Cur().ms;
      Advance();
      SHOAL_RETURN_IF_ERROR(ParseOptionalWindow(&s.window));
      out->leaf = std::move(s);
      return Status::Ok();
    }
    CountCond c;
    c.event = std::move(a);
    bool has_count = false;
    if (AtCount()) {
      SHOAL_RETURN_IF_ERROR(ParseCount(&c.op, &c.n));
      has_count = true;
    }
    SHOAL_RETURN_IF_ERROR(ParseOptionalWindow(&c.window));
    if (!has_count && AtCount()) {  // also accepted after the window
      SHOAL_RETURN_IF_ERROR(ParseCount(&c.op, &c.n));
      has_count = true;
    }
    if (AtWord("not") && IsWord(Ahead(1), "followed")) {
      if (has_count)
        return Expected(
            "'and', 'or' or the end of the definition ('not followed by' takes no "
            "count)");
      Advance();
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("by", "after 'not followed'"));
      NotFollowedCond nf;
      nf.first = std::move(c.event);
      nf.window = c.window;
      SHOAL_RETURN_IF_ERROR(ParseEvent(&nf.then, "'not followed by'"));
      if (AtWord("within")) {
        Advance();
        if (Cur().kind != TokKind::kDuration)
          return Expected("a duration such as 1h after 'within'");
        nf.within = Cur().ms;
        Advance();
      }
      out->leaf = std::move(nf);
      return Status::Ok();
    }
    out->leaf = std::move(c);
    return Status::Ok();
  }

  // account_cond := "account" "." path pred | "account in segment" STRING
  Status ParseAccount(Expr* out) {
    Advance();  // account
    if (AtWord("in")) {
      Advance();
      Advance();  // segment
      if (Cur().kind != TokKind::kString)
        return Expected("an account segment name in quotes after 'account in segment'");
      out->leaf = AccountSegmentCond{Cur().str};
      Advance();
      return Status::Ok();
    }
    Advance();  // .
    AccountTraitCond c;
    SHOAL_RETURN_IF_ERROR(ParsePathAndPred(&c.pred, "an account trait name after 'account.'"));
    out->leaf = std::move(c);
    return Status::Ok();
  }

  // member_cond := ("any" | "no") "member" "(" expr ")" | "all members" "(" expr ")"
  //              | count_word INT ("member" | "members") "(" expr ")"
  Status ParseMembers(Expr* out) {
    MemberCond m;
    if (AtWord("any") || AtWord("all") || AtWord("no")) {
      if (AtWord("all")) m.kind = MemberCond::Kind::kAll;
      if (AtWord("no")) {
        m.op = CmpOp::kEq;
        m.n = 0;
      }
      Advance();
      Advance();  // member(s)
    } else {
      SHOAL_RETURN_IF_ERROR(ParseCount(&m.op, &m.n, /*members=*/true));
    }
    if (Cur().kind != TokKind::kLParen)
      return Expected("'(' and a user condition after " + Quoted(Prev().text));
    auto user = std::make_shared<Expr>();
    SHOAL_RETURN_IF_ERROR(InParens(&Parser::ParseExpr, user.get()));
    m.user = std::move(user);
    out->leaf = std::move(m);
    return Status::Ok();
  }

  // did not perform E [window]
  Status ParseDidNot(Expr* out) {
    Advance();  // did
    SHOAL_RETURN_IF_ERROR(ExpectWord("not", "after 'did'"));
    SHOAL_RETURN_IF_ERROR(ExpectWord("perform", "after 'did not'"));
    CountCond c;
    c.op = CmpOp::kEq;
    c.n = 0;
    SHOAL_RETURN_IF_ERROR(ParseEvent(&c.event, "'did not perform'"));
    SHOAL_RETURN_IF_ERROR(ParseOptionalWindow(&c.window));
    out->leaf = std::move(c);
    return Status::Ok();
  }

  bool AtCount() const {
    return Cur().kind == TokKind::kOp ||
           (AtWord("at") && (IsWord(Ahead(1), "least") || IsWord(Ahead(1), "most"))) ||
           AtWord("exactly") || AtWord("more") || AtWord("fewer");
  }

  // count := ("at least" | "at most" | "exactly" | "more than" | "fewer than") INT "times"
  //        | cmp INT "times"
  // With `members`, the unit is "member(s)" instead of "time(s)" (member conditions).
  Status ParseCount(CmpOp* op, int64_t* n, bool members = false) {
    size_t start = i_;
    if (Cur().kind == TokKind::kOp) {
      *op = Cur().op;
      Advance();
    } else if (AtWord("at")) {
      Advance();
      *op = AtWord("least") ? CmpOp::kGe : CmpOp::kLe;
      Advance();
    } else if (AtWord("exactly")) {
      *op = CmpOp::kEq;
      Advance();
    } else if (AtWord("more")) {
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("than", "after 'more'"));
      *op = CmpOp::kGt;
    } else {
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("than", "after 'fewer'"));
      *op = CmpOp::kLt;
    }
    std::string after = "after " + Quoted(SpanText(start));
    const Token& t = Cur();
    const char* unit = members ? "members" : "times";
    if (t.kind != TokKind::kNumber)
      return Expected(std::string("a number of ") + unit + " such as 5 " + after);
    if (t.num < 0 || (t.is_int && t.int_val < 0)) return Expected("a count of 0 or more " + after);
    if (!t.is_int) return Expected(std::string("a whole number of ") + unit + " " + after);
    *n = t.int_val;
    Advance();
    if (members ? !AtWord("members") && !AtWord("member") : !AtWord("times") && !AtWord("time"))
      return Expected("'" + std::string(unit) + "' after " + Quoted(SpanText(start)));
    Advance();
    return Status::Ok();
  }

  // agg_cond := ("sum" | "avg" | "min" | "max" | "distinct") "(" path ")" "of" event [window]
  //             cmp NUMBER
  Status ParseAgg(Expr* out) {
    if (AtMemberAgg()) return ParseMemberAgg(out);
    AggCond a;
    std::string fn = Cur().str;
    SHOAL_RETURN_IF_ERROR(ParseAggValue(&a));
    if (Cur().kind != TokKind::kOp)
      return Expected("a comparison such as '> 500' after the events of '" + fn + "'");
    a.op = Cur().op;
    Advance();
    if (Cur().kind != TokKind::kNumber) return Expected("a number after " + Quoted(Prev().text));
    a.value = Cur().num;
    Advance();
    out->leaf = std::move(a);
    return Status::Ok();
  }

  // Whether the aggregate at the cursor is over members' values: `fn "(" ... ")" "of" "members"`.
  // The scan stops at the first parenthesis, so it reads only the path.
  bool AtMemberAgg() const {
    if (Ahead(1).kind != TokKind::kLParen) return false;
    for (size_t k = 2;; ++k) {
      const Token& t = Ahead(k);
      if (t.kind == TokKind::kEnd || t.kind == TokKind::kLParen) return false;
      if (t.kind == TokKind::kRParen)
        return IsWord(Ahead(k + 1), "of") && IsWord(Ahead(k + 2), "members");
    }
  }

  // member_agg := ("sum" | "avg" | "min" | "max") "(" (path | "computed" "." NAME) ")" "of"
  //               "members" ["(" expr ")"] cmp NUMBER          (account segments)
  Status ParseMemberAgg(Expr* out) {
    MemberAggCond m;
    m.pos = out->pos;
    const std::string fn = Cur().str;
    SHOAL_RETURN_IF_ERROR(ParseMemberAggValue(&m));
    if (Cur().kind != TokKind::kOp)
      return Expected("a comparison such as '> 10000' after '" + fn +
                      "(...) of members' (and its optional user condition in parentheses)");
    m.op = Cur().op;
    Advance();
    if (Cur().kind != TokKind::kNumber) return Expected("a number after " + Quoted(Prev().text));
    m.value = Cur().num;
    Advance();
    out->leaf = std::move(m);
    return Status::Ok();
  }

  // fn "(" (path | "computed" "." NAME) ")" "of" "members" ["(" expr ")"]: the value of an
  // aggregate over members (member_agg without its comparison; also a top-N value). AtMemberAgg
  // has checked the tokens up to "members".
  Status ParseMemberAggValue(MemberAggCond* out) {
    MemberAggCond& m = *out;
    const std::string fn = Cur().str;
    if (fn == "distinct")
      return Expected(
          "'sum', 'avg', 'min' or 'max' before '(...) of members' (distinct values "
          "are not an aggregate of members)");
    m.fn = fn == "sum"   ? AggCond::Fn::kSum
           : fn == "avg" ? AggCond::Fn::kAvg
           : fn == "min" ? AggCond::Fn::kMin
                         : AggCond::Fn::kMax;
    Advance();
    Advance();  // (
    if (AtWord("computed") && Ahead(1).kind == TokKind::kDot) {
      m.computed = true;
      Advance();
      Advance();
      SHOAL_RETURN_IF_ERROR(ParsePath(&m.prop, "a computed trait name after 'computed.'"));
    } else {
      SHOAL_RETURN_IF_ERROR(
          ParsePath(&m.prop, "a user trait name or computed.NAME after '" + fn + "('"));
    }
    SHOAL_RETURN_IF_ERROR(ExpectKind(TokKind::kRParen, "')' after the member value"));
    Advance();  // of
    Advance();  // members
    if (Cur().kind == TokKind::kLParen) {
      auto user = std::make_shared<Expr>();
      SHOAL_RETURN_IF_ERROR(InParens(&Parser::ParseExpr, user.get()));
      m.user = std::move(user);
    }
    return Status::Ok();
  }

  // ("sum" | "avg" | "min" | "max" | "distinct") "(" path ")" "of" event [window]: the value of
  // an aggregate (agg_cond without its comparison; also a top-N value).
  Status ParseAggValue(AggCond* out) {
    AggCond& a = *out;
    std::string fn = Cur().str;
    if (fn == "sum")
      a.fn = AggCond::Fn::kSum;
    else if (fn == "avg")
      a.fn = AggCond::Fn::kAvg;
    else if (fn == "min")
      a.fn = AggCond::Fn::kMin;
    else if (fn == "max")
      a.fn = AggCond::Fn::kMax;
    else
      a.fn = AggCond::Fn::kDistinct;
    Advance();
    return ParseAggHead(fn, &a.prop, &a.event, &a.window);
  }

  // topn_cond := ("top" | "bottom") (INT | NUMBER "%") "by" rank_value
  // rank_value := path | agg_value | "count" "of" event [window]
  //             | ("member" | "members") "(" expr ")" | "computed" "." NAME
  Status ParseTopN(Expr* out) {
    TopNCond c;
    const size_t start = i_;
    c.bottom = AtWord("bottom");
    const std::string word = Cur().str;
    Advance();
    const Token num = Cur();  // a number: checked by ParseCondition
    Advance();
    if (Cur().kind == TokKind::kPercent) {
      // At most 6 decimals, so that both evaluators compute ceil(P/100 x R) exactly in integers.
      std::string_view text = num.text;
      size_t dot = text.find('.');
      bool plain = text.find_first_of("eE") == std::string_view::npos &&
                   (dot == std::string_view::npos || text.size() - dot - 1 <= 6);
      if (!(num.num > 0 && num.num <= 100) || !plain)
        return SyntaxError(
            num.pos,
            "a percentage above 0 and at most 100, with at most 6 decimals, after '" + word + "'",
            DescribeToken(num));
      c.percent = true;
      c.pct = num.num;
      Advance();
    } else {
      if (!num.is_int || num.int_val < 1)
        return SyntaxError(
            num.pos,
            "a whole number of at least 1 (or a percentage such as 10%) after '" + word + "'",
            DescribeToken(num));
      c.n = num.int_val;
    }
    SHOAL_RETURN_IF_ERROR(ExpectWord("by", "after " + Quoted(SpanText(start))));
    if (Cur().kind == TokKind::kWord && IsAggWord(Cur().str) && AtMemberAgg()) {
      c.source = TopNCond::Source::kMemberAgg;
      MemberAggCond m;
      m.pos = Cur().pos;
      SHOAL_RETURN_IF_ERROR(ParseMemberAggValue(&m));
      c.member_agg = std::move(m);
    } else if (Cur().kind == TokKind::kWord && IsAggWord(Cur().str)) {
      c.source = TopNCond::Source::kAgg;
      SHOAL_RETURN_IF_ERROR(ParseAggValue(&c.agg));
    } else if (AtWord("count") && IsWord(Ahead(1), "of")) {
      // Not reserved: `count` before anything but `of` is a trait.
      c.source = TopNCond::Source::kCount;
      Advance();
      Advance();
      SHOAL_RETURN_IF_ERROR(ParseEvent(&c.agg.event, "'count of'"));
      SHOAL_RETURN_IF_ERROR(ParseOptionalWindow(&c.agg.window));
    } else if ((AtWord("members") || AtWord("member")) && Ahead(1).kind == TokKind::kLParen) {
      c.source = TopNCond::Source::kMembers;
      Advance();
      auto user = std::make_shared<Expr>();
      SHOAL_RETURN_IF_ERROR(InParens(&Parser::ParseExpr, user.get()));
      c.members = std::move(user);
    } else if (AtWord("computed") && Ahead(1).kind == TokKind::kDot) {
      // As in a condition: `computed` followed by a dot reads a computed trait; alone it is a
      // trait named computed.
      c.source = TopNCond::Source::kComputed;
      Advance();
      Advance();
      SHOAL_RETURN_IF_ERROR(ParsePath(&c.path, "a computed trait name after 'computed.'"));
    } else {
      c.source = TopNCond::Source::kTrait;
      SHOAL_RETURN_IF_ERROR(
          ParsePath(&c.path,
                    "a numeric trait, an aggregate such as 'sum(total) of \"Order Completed\"', "
                    "'count of \"Login\"' or 'members (...)' after 'by'"));
    }
    out->leaf = std::move(c);
    return Status::Ok();
  }

  // The part of an aggregate after its function name: "(" path ")" "of" event [window]. Shared by
  // agg_cond and the values of computed traits.
  Status ParseAggHead(const std::string& fn, Path* prop, EventSpec* event, TimeRange* window) {
    SHOAL_RETURN_IF_ERROR(ExpectKind(TokKind::kLParen, "'(' after '" + fn + "'"));
    SHOAL_RETURN_IF_ERROR(ParsePath(prop, "a property name after '" + fn + "('"));
    SHOAL_RETURN_IF_ERROR(ExpectKind(TokKind::kRParen, "')' after the property name"));
    SHOAL_RETURN_IF_ERROR(ExpectWord("of", "after '" + fn + "(...)'"));
    SHOAL_RETURN_IF_ERROR(ParseEvent(event, "'of'"));
    return ParseOptionalWindow(window);
  }

  // computed_ref := "computed" "." NAME pred
  Status ParseComputedRef(Expr* out) {
    Advance();  // computed
    Advance();  // .
    ComputedTraitCond c;
    SHOAL_RETURN_IF_ERROR(ParsePathAndPred(&c.pred, "a computed trait name after 'computed.'"));
    if (AtWord("for"))
      return Expected(
          "'and', 'or' or the end of the definition ('for at least' applies to traits, not to "
          "computed traits)");
    out->leaf = std::move(c);
    return Status::Ok();
  }

 public:
  // computed := value_def | score (docs/language.md, "Computed traits and scores")
  Result<ComputedDef> RunComputed() {
    ComputedDef d;
    if (Cur().kind == TokKind::kNumber &&
        (IsWord(Ahead(1), "points") || IsWord(Ahead(1), "point"))) {
      d.kind = ComputedDef::Kind::kScore;
      SHOAL_RETURN_IF_ERROR(ParseScore(&d.terms));
    } else if (Cur().kind == TokKind::kWord && IsAggWord(Cur().str) && AtMemberAgg()) {
      d.kind = ComputedDef::Kind::kMemberAgg;  // an account's aggregate over members' values
      d.member_agg.pos = Cur().pos;
      SHOAL_RETURN_IF_ERROR(ParseMemberAggValue(&d.member_agg));
      if (Cur().kind != TokKind::kEnd)
        return Expected(
            "the end of the computed trait definition (an aggregate over members "
            "is a value: no comparison)");
    } else {
      d.kind = ComputedDef::Kind::kValue;
      SHOAL_RETURN_IF_ERROR(ParseComputedValue(&d.value));
      if (Cur().kind != TokKind::kEnd) return Expected("the end of the computed trait definition");
    }
    return d;
  }

 private:
  // value_def := "count" "of" event [window]
  //            | fn "(" path ")" "of" event [window]   fn: sum avg min max distinct unique first
  //                                                        last "most frequent"
  Status ParseComputedValue(ComputedValueDef* v) {
    using Fn = ComputedValueDef::Fn;
    static const std::pair<std::string_view, Fn> kFns[] = {
        {"sum", Fn::kSum},     {"avg", Fn::kAvg},           {"min", Fn::kMin},
        {"max", Fn::kMax},     {"distinct", Fn::kDistinct}, {"unique", Fn::kUnique},
        {"first", Fn::kFirst}, {"last", Fn::kLast}};
    if (AtWord("count")) {
      v->fn = Fn::kCount;
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("of", "after 'count'"));
      SHOAL_RETURN_IF_ERROR(ParseEvent(&v->event, "'count of'"));
      return ParseOptionalWindow(&v->window);
    }
    if (AtWord("most")) {
      v->fn = Fn::kMostFrequent;
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("frequent", "after 'most'"));
      return ParseAggHead("most frequent", &v->prop, &v->event, &v->window);
    }
    for (const auto& [word, fn] : kFns) {
      if (!AtWord(word)) continue;
      v->fn = fn;
      Advance();
      return ParseAggHead(std::string(word), &v->prop, &v->event, &v->window);
    }
    return Expected(
        "a computed value such as 'count of \"Order Completed\" within 30d' or "
        "'sum(total) of \"Order Completed\"', or a score such as '10 points if ...'");
  }

  // score := term (("+" | "-") term)*;  term := NUMBER ("points" | "point") "if" expr
  // A negative first term is a negative number (-20 points if ...); later ones are written
  // "- 20 points", and "-20 points" glued to the sign (a negative number token) reads the same.
  Status ParseScore(std::vector<ScoreTerm>* terms) {
    double sign = 1;
    bool first = true;
    while (true) {
      if (Cur().kind != TokKind::kNumber)
        return Expected(first ? "a number of points" : "a number of points after '+' or '-'");
      ScoreTerm t;
      t.points = sign * Cur().num;
      if (!std::isfinite(t.points)) return Expected("a finite number of points");
      if (t.points == 0) t.points = 0;  // -0 is 0
      Advance();
      if (!AtWord("points") && !AtWord("point"))
        return Expected("'points' after " + Quoted(Prev().text));
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("if", "after 'points'"));
      SHOAL_RETURN_IF_ERROR(ParseExpr(&t.cond));
      terms->push_back(std::move(t));
      first = false;
      if (Cur().kind == TokKind::kEnd) return Status::Ok();
      if (Cur().kind == TokKind::kPlus || Cur().kind == TokKind::kMinus) {
        sign = Cur().kind == TokKind::kPlus ? 1 : -1;
        Advance();
        if (Cur().kind == TokKind::kNumber && Cur().text.starts_with("-"))
          return Expected("a number of points without a sign after " + Quoted(Prev().text));
        continue;
      }
      if (Cur().kind == TokKind::kNumber && Cur().text.starts_with("-") &&
          (IsWord(Ahead(1), "points") || IsWord(Ahead(1), "point"))) {
        sign = 1;  // the number carries the sign
        continue;
      }
      return Expected("'+', '-', 'and', 'or' or the end of the definition");
    }
  }

 private:
  // first_last := ("first" | "last") "performed" event time_pred
  Status ParseFirstLast(Expr* out) {
    FirstLastCond f;
    f.first = AtWord("first");
    std::string word = Cur().str;
    Advance();
    SHOAL_RETURN_IF_ERROR(ExpectWord("performed", "after '" + word + "'"));
    SHOAL_RETURN_IF_ERROR(ParseEvent(&f.event, "'" + word + " performed'"));
    if (!AtRangeStart())
      return Expected("a time predicate such as 'within 7d' or 'before 30d ago' after '" + word +
                      " performed' and its event");
    SHOAL_RETURN_IF_ERROR(ParseRange(&f.when));
    out->leaf = std::move(f);
    return Status::Ok();
  }

  // last_event := "last event" event [window] "has" filter
  Status ParseLastEvent(Expr* out) {
    Advance();
    Advance();
    LastEventCond l;
    SHOAL_RETURN_IF_ERROR(ParseEvent(&l.event, "'last event'"));
    SHOAL_RETURN_IF_ERROR(ParseOptionalWindow(&l.window));
    SHOAL_RETURN_IF_ERROR(ExpectWord("has",
                                     "and a property condition after 'last event' and its "
                                     "event"));
    SHOAL_RETURN_IF_ERROR(ParseFilter(&l.has, "has"));
    out->leaf = std::move(l);
    return Status::Ok();
  }

  // segment_ref := "in segment" STRING
  // list_ref    := "in list" STRING
  // "list" is not reserved: it only ever follows 'in', where no trait name can stand, so a trait
  // named list needs no backquotes.
  Status ParseSegmentRef(Expr* out) {
    Advance();
    if (AtWord("list")) {
      Advance();
      if (Cur().kind != TokKind::kString) return Expected("a list name in quotes after 'in list'");
      out->leaf = ListRefCond{Cur().str};
      Advance();
      return Status::Ok();
    }
    if (!AtWord("segment"))
      return Expected("'segment' or 'list' after 'in' (as in 'in segment \"vip\"')");
    Advance();
    if (Cur().kind != TokKind::kString)
      return Expected("a segment name in quotes after 'in segment'");
    out->leaf = SegmentRefCond{Cur().str};
    Advance();
    return Status::Ok();
  }

  // bucket := "bucket" "(" INT ["," STRING] ")" cmp INT
  Status ParseBucket(Expr* out) {
    Advance();
    BucketCond b;
    SHOAL_RETURN_IF_ERROR(ExpectKind(TokKind::kLParen, "'(' after 'bucket'"));
    const Token& n = Cur();
    if (n.kind != TokKind::kNumber || !n.is_int || n.int_val < 1)
      return Expected("a whole number of buckets of at least 1 after 'bucket('");
    b.buckets = n.int_val;
    Advance();
    if (Cur().kind == TokKind::kComma) {
      Advance();
      if (Cur().kind != TokKind::kString)
        return Expected("a salt in quotes after 'bucket(" + std::to_string(b.buckets) + ",'");
      b.salt = Cur().str;
      Advance();
    }
    SHOAL_RETURN_IF_ERROR(ExpectKind(TokKind::kRParen, "')' or ', \"salt\"' in 'bucket(...)'"));
    if (Cur().kind != TokKind::kOp)
      return Expected("a comparison such as '< 10' after 'bucket(...)'");
    b.op = Cur().op;
    Advance();
    if (Cur().kind != TokKind::kNumber || !Cur().is_int)
      return Expected("a whole number after " + Quoted(Prev().text));
    b.value = Cur().int_val;
    Advance();
    out->leaf = std::move(b);
    return Status::Ok();
  }

  // event := STRING ["where" filter]
  Status ParseEvent(EventSpec* e, std::string_view after) {
    if (Cur().kind != TokKind::kString)
      return Expected("an event name in quotes such as \"Order Completed\" after " +
                      std::string(after));
    e->name = Cur().str;
    Advance();
    if (AtWord("where")) {
      Advance();
      PropExpr f;
      SHOAL_RETURN_IF_ERROR(ParseFilter(&f, "where"));
      e->filter = std::move(f);
    }
    return Status::Ok();
  }

  // --- Value predicates ------------------------------------------------------------------------

  // path := IDENT ("." IDENT)*; the first name must not be a keyword unless backquoted.
  Status ParsePath(Path* p, std::string_view what) {
    const Token& t = Cur();
    if (t.kind == TokKind::kQuoted) {
      p->push_back(t.str);
    } else if (t.kind == TokKind::kWord && !IsReservedWord(t.str)) {
      p->push_back(std::string(t.text));
    } else if (t.kind == TokKind::kWord) {
      return Expected(std::string(what) + " (write a name that is a keyword in backquotes)");
    } else {
      return Expected(what);
    }
    Advance();
    while (Cur().kind == TokKind::kDot) {
      Advance();
      const Token& s = Cur();
      if (s.kind == TokKind::kQuoted)
        p->push_back(s.str);
      else if (s.kind == TokKind::kWord)
        p->push_back(std::string(s.text));
      else
        return Expected("a name after '.'");
      Advance();
    }
    return Status::Ok();
  }

  Status ParsePathAndPred(ValuePred* p, std::string_view what) {
    p->pos = Cur().pos;
    size_t start = i_;
    SHOAL_RETURN_IF_ERROR(ParsePath(&p->path, what));
    return ParsePred(p, SpanText(start));
  }

  // The part of value_pred after the path.
  Status ParsePred(ValuePred* p, const std::string& path_text) {
    const Token& t = Cur();
    if (t.kind == TokKind::kOp) {
      p->kind = ValuePred::Kind::kCompare;
      p->op = t.op;
      std::string after = "after " + Quoted(t.text);
      Advance();
      return ParseLiteralInto(p, after);
    }
    if (t.kind != TokKind::kWord)
      return Expected(
          "a comparison such as '=' or a predicate such as 'in', 'exists' or "
          "'within' after " +
          Quoted(path_text));
    const std::string& w = t.str;
    if (w == "between") {
      const Token& next = Ahead(1);
      if (next.kind == TokKind::kDuration || next.kind == TokKind::kTime || IsWord(next, "now")) {
        p->kind = ValuePred::Kind::kTime;
        return ParseRange(&p->time);
      }
      Advance();
      p->kind = ValuePred::Kind::kBetween;
      SHOAL_RETURN_IF_ERROR(ParseLiteralInto(p, "after 'between'"));
      SHOAL_RETURN_IF_ERROR(ExpectWord("and", "after the first value of 'between'"));
      return ParseLiteralInto(p, "after 'and'");
    }
    if (w == "in" || w == "not") {
      p->kind = w == "in" ? ValuePred::Kind::kIn : ValuePred::Kind::kNotIn;
      Advance();
      if (p->kind == ValuePred::Kind::kNotIn)
        SHOAL_RETURN_IF_ERROR(ExpectWord("in", "after " + Quoted(path_text + " not")));
      SHOAL_RETURN_IF_ERROR(ExpectKind(TokKind::kLParen, "'(' and a list of values after 'in'"));
      SHOAL_RETURN_IF_ERROR(ParseLiteralInto(p, "in the list"));
      while (Cur().kind == TokKind::kComma) {
        Advance();
        SHOAL_RETURN_IF_ERROR(ParseLiteralInto(p, "after ','"));
      }
      return ExpectKind(TokKind::kRParen, "',' or ')' in the list of values");
    }
    if (w == "contains" || w == "matches" || w == "starts" || w == "ends") {
      std::string op = w;
      p->kind = w == "contains"  ? ValuePred::Kind::kContains
                : w == "matches" ? ValuePred::Kind::kMatches
                : w == "starts"  ? ValuePred::Kind::kStartsWith
                                 : ValuePred::Kind::kEndsWith;
      Advance();
      if (op == "starts" || op == "ends") {
        SHOAL_RETURN_IF_ERROR(ExpectWord("with", "after '" + op + "'"));
        op += " with";
      }
      if (Cur().kind != TokKind::kString) return Expected("a string in quotes after '" + op + "'");
      Literal l;
      l.type = Literal::Type::kString;
      l.str = Cur().str;
      if (p->kind == ValuePred::Kind::kMatches) SHOAL_RETURN_IF_ERROR(CheckRegex(l.str));
      p->values.push_back(std::move(l));
      Advance();
      return Status::Ok();
    }
    if (w == "exists" || w == "missing") {
      p->kind = w == "exists" ? ValuePred::Kind::kExists : ValuePred::Kind::kMissing;
      Advance();
      return Status::Ok();
    }
    if (AtRangeStart()) {
      p->kind = ValuePred::Kind::kTime;
      SHOAL_RETURN_IF_ERROR(ParseRange(&p->time));
      // Cannot happen with this grammar; kept so that the AST contract holds if it grows.
      if (p->time.IsEver()) return SyntaxError(p->pos, "a time predicate with a bound", "ever");
      return Status::Ok();
    }
    return Expected(
        "a comparison such as '=' or a predicate such as 'in', 'exists' or "
        "'within' after " +
        Quoted(path_text));
  }

  Status CheckRegex(const std::string& re) {
    std::string why = "longer than the limit";
    if (re.size() <= kMaxRegexBytes) {
      RE2::Options opts;
      opts.set_log_errors(false);
      opts.set_max_mem(kRegexMaxMem);
      RE2 compiled(re, opts);
      if (compiled.ok()) return Status::Ok();
      why = compiled.error();
    }
    return SyntaxError(Cur().pos,
                       "a valid regular expression (RE2 syntax, at most " +
                           std::to_string(kMaxRegexBytes) + " bytes) after 'matches'",
                       DescribeToken(Cur()) + " (" + why + ")");
  }

  // literal := STRING | NUMBER | "true" | "false" | TIME; appended to p->values.
  Status ParseLiteralInto(ValuePred* p, const std::string& where) {
    const Token& t = Cur();
    Literal l;
    switch (t.kind) {
      case TokKind::kString:
        l.type = Literal::Type::kString;
        l.str = t.str;
        break;
      case TokKind::kNumber:
        l.type = Literal::Type::kNumber;
        l.num = t.num;
        break;
      case TokKind::kTime:
        l.type = Literal::Type::kTime;
        l.time = t.ms;
        break;
      case TokKind::kWord:
        if (t.str == "true" || t.str == "false") {
          l.type = Literal::Type::kBool;
          l.b = t.str == "true";
          break;
        }
        if (t.str == "null")
          return Expected("a value (a string, number, true, false or time) " + where +
                          "; test for no value with 'missing' or 'exists'");
        [[fallthrough]];
      default:
        return Expected("a value such as \"text\", 42, true or 2026-01-02 " + where);
    }
    Advance();
    p->values.push_back(std::move(l));
    return Status::Ok();
  }

  // --- Time ranges -----------------------------------------------------------------------------

  bool AtRangeStart() const {
    return AtWord("within") || AtWord("between") || AtWord("before") || AtWord("after");
  }

  Status ParseOptionalWindow(TimeRange* r) {
    if (!AtRangeStart()) return Status::Ok();
    return ParseRange(r);
  }

  // "within" DURATION | "between" point "and" point | "before" point | "after" point; the
  // range must not be empty when that can be decided without a clock.
  Status ParseRange(TimeRange* r) {
    size_t start = i_;
    SourcePos pos = Cur().pos;
    std::string kw = Cur().str;
    Advance();
    if (kw == "within") {
      if (Cur().kind != TokKind::kDuration)
        return Expected("a duration such as 30d after 'within'");
      *r = {TimeBound::Ago(Cur().ms), TimeBound::Ago(0)};
      Advance();
    } else if (kw == "before") {
      r->from = TimeBound::None();
      SHOAL_RETURN_IF_ERROR(ParsePoint(&r->to, "'before'"));
    } else if (kw == "after") {
      SHOAL_RETURN_IF_ERROR(ParsePoint(&r->from, "'after'"));
      r->to = TimeBound::None();
    } else {
      SHOAL_RETURN_IF_ERROR(ParsePoint(&r->from, "'between'"));
      SHOAL_RETURN_IF_ERROR(ExpectWord("and", "after the first time of 'between'"));
      SHOAL_RETURN_IF_ERROR(ParsePoint(&r->to, "'and'"));
    }
    bool empty = false;
    if (r->from.kind == TimeBound::Kind::kRelative && r->to.kind == TimeBound::Kind::kRelative)
      empty = r->from.ms <= r->to.ms;  // from is no earlier than to
    if (r->from.kind == TimeBound::Kind::kAbsolute && r->to.kind == TimeBound::Kind::kAbsolute)
      empty = r->from.ms >= r->to.ms;
    if (empty)
      return SyntaxError(pos, "a non-empty time range (its start before its end)",
                         Quoted(SpanText(start)));
    return Status::Ok();
  }

  // point := DURATION "ago" | TIME | "now"
  Status ParsePoint(TimeBound* b, std::string_view after) {
    const Token& t = Cur();
    if (t.kind == TokKind::kDuration) {
      Millis d = t.ms;
      std::string text(t.text);
      Advance();
      SHOAL_RETURN_IF_ERROR(ExpectWord("ago", "after '" + text + "'"));
      *b = TimeBound::Ago(d);
      return Status::Ok();
    }
    if (t.kind == TokKind::kTime) {
      *b = TimeBound::At(t.ms);
      Advance();
      return Status::Ok();
    }
    if (IsWord(t, "now")) {
      *b = TimeBound::Ago(0);
      Advance();
      return Status::Ok();
    }
    return Expected("a time such as 30d ago, 2026-01-02 or now after " + std::string(after));
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<Expr> Parse(std::string_view text) {
  if (text.size() > kMaxInputBytes)
    return SyntaxError({1, 1},
                       "a definition of at most " + std::to_string(kMaxInputBytes) + " bytes",
                       std::to_string(text.size()) + " bytes");
  Result<std::vector<Token>> tokens = Lex(text);
  if (!tokens.ok()) return tokens.status();
  return Parser(std::move(tokens).value()).Run();
}

Result<ComputedDef> ParseComputed(std::string_view text) {
  if (text.size() > kMaxInputBytes)
    return SyntaxError({1, 1},
                       "a definition of at most " + std::to_string(kMaxInputBytes) + " bytes",
                       std::to_string(text.size()) + " bytes");
  Result<std::vector<Token>> tokens = Lex(text);
  if (!tokens.ok()) return tokens.status();
  return Parser(std::move(tokens).value()).RunComputed();
}

}  // namespace shoal::rules
