// The reference evaluator. Every rule below is a direct transcription of a sentence of
// docs/language.md ("What everything means"); where the doc leaves a choice open the comment says
// which reading was taken. Speed is secondary: each condition rescans the profile's records.
#include "reference/reference.h"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "common/text.h"

namespace shoal::reference {
namespace {

using rules::AccountSegmentCond;
using rules::AccountTraitCond;
using rules::AggCond;
using rules::BucketCond;
using rules::CmpOp;
using rules::ComputedDef;
using rules::ComputedTraitCond;
using rules::ComputedValueDef;
using rules::CountCond;
using rules::EventSpec;
using rules::Expr;
using rules::FirstLastCond;
using rules::LastEventCond;
using rules::ListRefCond;
using rules::Literal;
using rules::MemberCond;
using rules::NotFollowedCond;
using rules::Path;
using rules::PropExpr;
using rules::SegmentRefCond;
using rules::SequenceCond;
using rules::TimeBound;
using rules::TimeRange;
using rules::TopNCond;
using rules::TraitCond;
using rules::TraitHistoryCond;
using rules::ValuePred;
using store::Store;
using store::StoredValue;

// `a OP b` for any totally ordered type.
template <typename T>
bool Holds(const T& a, CmpOp op, const T& b) {
  switch (op) {
    case CmpOp::kEq:
      return a == b;
    case CmpOp::kNe:
      return a != b;
    case CmpOp::kLt:
      return a < b;
    case CmpOp::kLe:
      return a <= b;
    case CmpOp::kGt:
      return a > b;
    case CmpOp::kGe:
      return a >= b;
  }
  return false;
}

// A value that is present (never null): "no value" is std::nullopt.
struct Val {
  ValueType type = ValueType::kString;
  bool b = false;
  double num = 0;
  std::string_view str;  // kString: the text; kList: the JSON array text
};

// --- JSON list elements ------------------------------------------------------------------------

// One element of a list value. Nested arrays and objects are kOther: they equal no literal.
struct ListElem {
  enum class Kind { kNull, kBool, kNumber, kString, kOther };
  Kind kind = Kind::kNull;
  bool b = false;
  double num = 0;
  std::string str;
};

// A small strict JSON reader for the list text stored with kList values.
class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  // The elements of a top-level array; nullopt when the text is not exactly one JSON array.
  std::optional<std::vector<ListElem>> ReadList() {
    std::vector<ListElem> out;
    Ws();
    if (!Eat('[')) return std::nullopt;
    Ws();
    if (!Eat(']')) {
      while (true) {
        ListElem e;
        if (!Element(&e)) return std::nullopt;
        out.push_back(std::move(e));
        Ws();
        if (Eat(']')) break;
        if (!Eat(',')) return std::nullopt;
      }
    }
    Ws();
    if (p_ != s_.size()) return std::nullopt;
    return out;
  }

 private:
  void Ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r'))
      ++p_;
  }
  bool Eat(char c) {
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool Word(std::string_view w) {
    if (s_.substr(p_, w.size()) != w) return false;
    p_ += w.size();
    return true;
  }

  bool Element(ListElem* e) {
    Ws();
    if (p_ >= s_.size()) return false;
    char c = s_[p_];
    if (c == '"') {
      e->kind = ListElem::Kind::kString;
      return String(&e->str);
    }
    if (c == '[' || c == '{') {
      e->kind = ListElem::Kind::kOther;
      return SkipValue();
    }
    if (Word("true")) {
      e->kind = ListElem::Kind::kBool;
      e->b = true;
      return true;
    }
    if (Word("false")) {
      e->kind = ListElem::Kind::kBool;
      e->b = false;
      return true;
    }
    if (Word("null")) {
      e->kind = ListElem::Kind::kNull;
      return true;
    }
    e->kind = ListElem::Kind::kNumber;
    return Number(&e->num);
  }

  // Any JSON value, discarded.
  bool SkipValue() {
    Ws();
    if (p_ >= s_.size()) return false;
    char c = s_[p_];
    if (c == '"') {
      std::string ignored;
      return String(&ignored);
    }
    if (c == '[' || c == '{') {
      char close = c == '[' ? ']' : '}';
      ++p_;
      Ws();
      if (Eat(close)) return true;
      while (true) {
        if (c == '{') {
          std::string ignored;
          Ws();
          if (p_ >= s_.size() || s_[p_] != '"' || !String(&ignored)) return false;
          Ws();
          if (!Eat(':')) return false;
        }
        if (!SkipValue()) return false;
        Ws();
        if (Eat(close)) return true;
        if (!Eat(',')) return false;
      }
    }
    if (Word("true") || Word("false") || Word("null")) return true;
    double ignored;
    return Number(&ignored);
  }

  bool Hex4(uint32_t* out) {
    if (p_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[p_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        return false;
    }
    p_ += 4;
    *out = v;
    return true;
  }

  // At '"': reads a string with its escapes decoded (\uXXXX, surrogate pairs, to UTF-8).
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (p_ < s_.size()) {
      char c = s_[p_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (p_ >= s_.size()) return false;
      char esc = s_[p_++];
      switch (esc) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(p_, 2) == "\\u") {
            size_t save = p_;
            p_ += 2;
            uint32_t lo;
            if (Hex4(&lo) && lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              p_ = save;  // a lone high surrogate: kept as its own code point
            }
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool Number(double* out) {
    size_t start = p_;
    auto digits = [&] {
      size_t b = p_;
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      return p_ > b;
    };
    Eat('-');
    if (Eat('0')) {
    } else if (!digits()) {
      return false;
    }
    if (Eat('.') && !digits()) return false;
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
      if (!Eat('+')) Eat('-');
      if (!digits()) return false;
    }
    std::string text(s_.substr(start, p_ - start));
    *out = std::strtod(text.c_str(), nullptr);
    return true;
  }

  std::string_view s_;
  size_t p_ = 0;
};

// --- Values and literals -----------------------------------------------------------------------

// Typed equality (`=`, `!=`, `in`, `not in`). A time literal reads a string value as an instant;
// a string that is not one is unequal. Lists never equal a literal; nothing equals a null literal.
bool Equal(const Val& v, const Literal& lit) {
  switch (lit.type) {
    case Literal::Type::kNumber:
      return v.type == ValueType::kNumber && v.num == lit.num;
    case Literal::Type::kString:
      return v.type == ValueType::kString && v.str == lit.str;
    case Literal::Type::kBool:
      return v.type == ValueType::kBool && v.b == lit.b;
    case Literal::Type::kTime: {
      if (v.type != ValueType::kString) return false;
      std::optional<Millis> t = ParseTime(v.str);
      return t && *t == lit.time;
    }
    case Literal::Type::kNull:
      return false;
  }
  return false;
}

// Order (`<`, `<=`, `>`, `>=`, `between`): number-number, string-string (bytewise; string_view
// compares as unsigned bytes), time-time; anything else is false.
bool Order(const Val& v, CmpOp op, const Literal& lit) {
  if (lit.type == Literal::Type::kNumber && v.type == ValueType::kNumber)
    return Holds(v.num, op, lit.num);
  if (lit.type == Literal::Type::kString && v.type == ValueType::kString)
    return Holds(v.str, op, std::string_view(lit.str));
  if (lit.type == Literal::Type::kTime && v.type == ValueType::kString) {
    std::optional<Millis> t = ParseTime(v.str);
    return t && Holds(*t, op, lit.time);
  }
  return false;
}

// Typed equality of one list element with a literal (for `contains` on a list).
bool ElemEqual(const ListElem& e, const Literal& lit) {
  switch (e.kind) {
    case ListElem::Kind::kNumber:
      return lit.type == Literal::Type::kNumber && e.num == lit.num;
    case ListElem::Kind::kBool:
      return lit.type == Literal::Type::kBool && e.b == lit.b;
    case ListElem::Kind::kString: {
      if (lit.type == Literal::Type::kString) return e.str == lit.str;
      if (lit.type == Literal::Type::kTime) {
        std::optional<Millis> t = ParseTime(e.str);
        return t && *t == lit.time;
      }
      return false;
    }
    case ListElem::Kind::kNull:
    case ListElem::Kind::kOther:
      return false;
  }
  return false;
}

// t in the half-open range [from, to) at `now`; an unbounded side is not checked at all.
bool InRange(Millis t, const TimeRange& r, Millis now) {
  if (r.from.kind != TimeBound::Kind::kNone && t < r.from.Resolve(now, 0)) return false;
  if (r.to.kind != TimeBound::Kind::kNone && t >= r.to.Resolve(now, 0)) return false;
  return true;
}

// Sums and averages: values rounded to millionths, added as integers.
int64_t Fixed(double v) { return std::llround(v * 1e6); }

// --- The evaluator -----------------------------------------------------------------------------

// One profile and its records, in arrival order; or one account (account = true) and its group
// records, whose properties are the account's traits, and its own events: the track records sent
// with its groupId (context.groupId), in arrival order with the group records.
struct ProfileRecords {
  uint32_t id = 0;
  std::string_view key;
  std::vector<uint32_t> records;
  bool account = false;
};

// Who belongs to which account, read off the group records that are not erased (docs/language.md,
// "Accounts"): a user is a member of every account it sent a group call for.
struct Graph {
  std::map<uint32_t, ProfileRecords> users;     // every profile with a record
  std::map<uint32_t, ProfileRecords> accounts;  // every account with a live group record
  std::map<uint32_t, std::set<uint32_t>> accounts_of, users_of;

  explicit Graph(const Store& store) {
    // Every known user, also one with no record of its own (an alias creates its userId's
    // profile): not erased, not merged away.
    for (uint32_t u = 0; u < store.profiles().size(); ++u) {
      if (store.erased(u) || store.merged(u)) continue;
      ProfileRecords& pu = users[u];
      pu.id = u;
      pu.key = store.profiles().Get(u);
    }
    for (size_t i = 0; i < store.size(); ++i) {
      uint32_t r = static_cast<uint32_t>(i);
      if (store.kind(i) == store::RecordKind::kErased) continue;
      // A merged-away user's records and links are its survivor's.
      uint32_t u = store.Resolve(store.profile(i));
      ProfileRecords& pu = users[u];
      pu.id = u;
      pu.key = store.profiles().Get(u);
      pu.records.push_back(r);
      if (store.kind(i) != store::RecordKind::kGroup) continue;
      uint32_t a = store.account(i);
      ProfileRecords& pa = accounts[a];
      pa.id = a;
      pa.key = store.accounts().Get(a);
      pa.account = true;
      pa.records.push_back(r);
      accounts_of[u].insert(a);
      users_of[a].insert(u);
    }
    // An account's own events, whoever sent them and whenever (before its first group call too);
    // erased records are tombstones and no longer count. An account with no live group call is
    // not known, whatever events name it.
    for (size_t i = 0; i < store.size(); ++i) {
      if (store.kind(i) != store::RecordKind::kTrack) continue;
      auto it = accounts.find(store.event_account(i));
      if (it != accounts.end()) it->second.records.push_back(static_cast<uint32_t>(i));
    }
    for (auto& [id, a] : accounts) std::sort(a.records.begin(), a.records.end());
  }
};

class Evaluator {
 public:
  Evaluator(const Store& store, const DefinitionLookup& lookup, const ListLookup& lists, Millis now,
            const ComputedLookup& computed)
      : store_(store), lookup_(lookup), lists_(lists), computed_(computed), now_(now) {}

  const Graph& graph() {
    if (!graph_) graph_ = std::make_unique<Graph>(store_);
    return *graph_;
  }
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  bool Eval(const Expr& e, const ProfileRecords& p) {
    switch (e.kind) {
      case Expr::Kind::kAnd:
        for (const Expr& c : e.children)
          if (!Eval(c, p)) return false;
        return true;
      case Expr::Kind::kOr:
        for (const Expr& c : e.children)
          if (Eval(c, p)) return true;
        return false;
      case Expr::Kind::kNot:
        return e.children.empty() ? false : !Eval(e.children[0], p);
      case Expr::Kind::kLeaf:
        return std::visit([&](const auto& leaf) { return Leaf(leaf, p); }, e.leaf);
    }
    return false;
  }

 private:
  // ---- values

  std::optional<Val> Present(const StoredValue& sv) const {
    Val v;
    v.type = sv.type;
    switch (sv.type) {
      case ValueType::kNull:
        return std::nullopt;
      case ValueType::kBool:
        v.b = sv.b;
        break;
      case ValueType::kNumber:
        v.num = sv.num;
        break;
      case ValueType::kString:
      case ValueType::kList:
        v.str = store_.strings().Get(sv.str);
        break;
    }
    return v;
  }

  // The key id of a path ("address.city"); nullopt if never interned (so missing everywhere).
  std::optional<uint32_t> KeyOf(const Path& path) {
    // Cached by node address; the stored copy guards against a lookup that hands out a
    // different tree at a reused address.
    auto it = key_cache_.find(&path);
    if (it != key_cache_.end() && it->second.first == path) return it->second.second;
    std::string joined;
    for (size_t i = 0; i < path.size(); ++i) {
      if (i) joined.push_back('.');
      joined += path[i];
    }
    std::optional<uint32_t> id = store_.keys().Find(joined);
    key_cache_[&path] = {path, id};
    return id;
  }

  // The property at `path` of record `rec`; nullopt when missing or null.
  std::optional<Val> PropOf(uint32_t rec, const Path& path) {
    std::optional<uint32_t> key = KeyOf(path);
    if (!key) return std::nullopt;
    std::optional<StoredValue> sv = store_.Find(rec, *key);
    if (!sv) return std::nullopt;
    return Present(*sv);
  }

  // RE2, the dialect docs/language.md names; a pattern that does not compile matches nothing.
  const RE2* Regex(const std::string& pattern) {
    auto it = regex_cache_.find(pattern);
    if (it == regex_cache_.end()) {
      RE2::Options opts;
      opts.set_log_errors(false);
      auto re = std::make_unique<RE2>(pattern, opts);
      if (!re->ok()) re.reset();
      it = regex_cache_.emplace(pattern, std::move(re)).first;
    }
    return it->second.get();
  }

  bool Pred(const ValuePred& p, const std::optional<Val>& v) {
    if (p.kind == ValuePred::Kind::kMissing) return !v;
    if (!v) return false;
    const std::vector<Literal>& lits = p.values;
    switch (p.kind) {
      case ValuePred::Kind::kExists:
        return true;
      case ValuePred::Kind::kMissing:
        return false;
      case ValuePred::Kind::kCompare:
        if (lits.empty()) return false;
        if (p.op == CmpOp::kEq) return Equal(*v, lits[0]);
        if (p.op == CmpOp::kNe) return !Equal(*v, lits[0]);
        return Order(*v, p.op, lits[0]);
      case ValuePred::Kind::kBetween:
        if (lits.size() < 2) return false;
        return Order(*v, CmpOp::kGe, lits[0]) && Order(*v, CmpOp::kLe, lits[1]);
      case ValuePred::Kind::kIn:
        for (const Literal& l : lits)
          if (Equal(*v, l)) return true;
        return false;
      case ValuePred::Kind::kNotIn:
        for (const Literal& l : lits)
          if (Equal(*v, l)) return false;
        return true;
      case ValuePred::Kind::kContains: {
        if (lits.empty()) return false;
        if (v->type == ValueType::kString)
          return lits[0].type == Literal::Type::kString &&
                 v->str.find(lits[0].str) != std::string_view::npos;
        if (v->type == ValueType::kList) {
          std::optional<std::vector<ListElem>> elems = JsonReader(v->str).ReadList();
          if (!elems) return false;
          for (const ListElem& e : *elems)
            if (ElemEqual(e, lits[0])) return true;
        }
        return false;
      }
      case ValuePred::Kind::kStartsWith:
        return !lits.empty() && v->type == ValueType::kString &&
               lits[0].type == Literal::Type::kString && v->str.starts_with(lits[0].str);
      case ValuePred::Kind::kEndsWith:
        return !lits.empty() && v->type == ValueType::kString &&
               lits[0].type == Literal::Type::kString && v->str.ends_with(lits[0].str);
      case ValuePred::Kind::kMatches: {
        if (lits.empty() || v->type != ValueType::kString || lits[0].type != Literal::Type::kString)
          return false;
        const RE2* re = Regex(lits[0].str);
        return re && RE2::PartialMatch(v->str, *re);
      }
      case ValuePred::Kind::kTime: {
        if (v->type != ValueType::kString) return false;
        std::optional<Millis> t = ParseTime(v->str);
        return t && InRange(*t, p.time, now_);
      }
    }
    return false;
  }

  bool Filter(const PropExpr& f, uint32_t rec) {
    switch (f.kind) {
      case PropExpr::Kind::kAnd:
        for (const PropExpr& c : f.children)
          if (!Filter(c, rec)) return false;
        return true;
      case PropExpr::Kind::kOr:
        for (const PropExpr& c : f.children)
          if (Filter(c, rec)) return true;
        return false;
      case PropExpr::Kind::kNot:
        return f.children.empty() ? false : !Filter(f.children[0], rec);
      case PropExpr::Kind::kPred:
        return Pred(f.pred, PropOf(rec, f.pred.path));
    }
    return false;
  }

  // ---- events

  // A track record (never an identify, even for an event named "$identify") whose name is
  // exactly spec.name and whose properties satisfy the filter.
  bool Matches(const EventSpec& spec, uint32_t rec) {
    if (store_.kind(rec) != store::RecordKind::kTrack) return false;
    if (store_.strings().Get(store_.name(rec)) != spec.name) return false;
    return !spec.filter || Filter(*spec.filter, rec);
  }

  // An event window: the range at now, further cut at now.
  bool InWindow(Millis ts, const TimeRange& w) const { return InRange(ts, w, now_) && ts < now_; }

  // Matching events in the window, in arrival order.
  std::vector<uint32_t> Matching(const EventSpec& spec, const TimeRange& window,
                                 const ProfileRecords& p) {
    std::vector<uint32_t> out;
    for (uint32_t r : p.records)
      if (InWindow(store_.ts(r), window) && Matches(spec, r)) out.push_back(r);
    return out;
  }

  // ---- traits

  // The current value of a trait: from the identify with the greatest (ts, arrival) that has the
  // path; null clears. Identifies are not cut at now (the doc cuts only event windows).
  std::optional<Val> Trait(const ProfileRecords& p, const Path& path) {
    std::optional<uint32_t> key = KeyOf(path);
    if (!key) return std::nullopt;
    std::optional<uint32_t> best;
    std::optional<StoredValue> best_value;
    for (uint32_t r : p.records) {
      if (store_.kind(r) != TraitKind(p)) continue;
      std::optional<StoredValue> sv = store_.Find(r, *key);
      if (!sv) continue;
      // Records are in arrival order, so ">=" on ts makes the later arrival win a tie.
      if (!best || store_.ts(r) >= store_.ts(*best)) {
        best = r;
        best_value = sv;
      }
    }
    if (!best_value) return std::nullopt;
    return Present(*best_value);
  }

  // A user's traits come from its identify calls, an account's from its group calls.
  static store::RecordKind TraitKind(const ProfileRecords& p) {
    return p.account ? store::RecordKind::kGroup : store::RecordKind::kIdentify;
  }

  // ---- leaves

  bool Leaf(const TraitCond& c, const ProfileRecords& p) {
    return Pred(c.pred, Trait(p, c.pred.path));
  }

  bool Leaf(const TraitHistoryCond& c, const ProfileRecords& p) {
    std::vector<uint32_t> ids;
    for (uint32_t r : p.records)
      if (store_.kind(r) == TraitKind(p)) ids.push_back(r);
    // No identify: "since" does not exist, so the condition is false even for `missing`.
    if (ids.empty()) return false;
    std::stable_sort(ids.begin(), ids.end(),
                     [&](uint32_t a, uint32_t b) { return store_.ts(a) < store_.ts(b); });
    std::optional<uint32_t> key = KeyOf(c.pred.path);
    std::optional<StoredValue> state;  // nullopt or kNull: no value
    std::optional<Millis> since;       // start of the current run of "true"
    for (uint32_t r : ids) {
      if (key) {
        std::optional<StoredValue> sv = store_.Find(r, *key);
        if (sv) state = sv;
      }
      std::optional<Val> v = state ? Present(*state) : std::nullopt;
      if (Pred(c.pred, v)) {
        if (!since) since = store_.ts(r);
      } else {
        since.reset();
      }
    }
    if (!since) return false;  // false after the last identify: false now
    Millis held = now_ - *since;
    return c.at_least ? held >= c.duration : held < c.duration;
  }

  bool Leaf(const CountCond& c, const ProfileRecords& p) {
    int64_t n = static_cast<int64_t>(Matching(c.event, c.window, p).size());
    return Holds(n, c.op, c.n);
  }

  // The number of distinct non-null values of `prop` over `events`. Typed: (type, number) for
  // numbers and bools, (type, text) for strings and lists. Numbers compare by value, so -0 and 0
  // are one value.
  size_t DistinctCount(const std::vector<uint32_t>& events, const Path& prop) {
    std::set<std::tuple<int, double, std::string_view>> seen;
    for (uint32_t r : events) {
      std::optional<Val> v = PropOf(r, prop);
      if (!v) continue;
      double num = v->type == ValueType::kNumber ? (v->num == 0 ? 0.0 : v->num)
                   : v->type == ValueType::kBool ? (v->b ? 1.0 : 0.0)
                                                 : 0.0;
      std::string_view text =
          v->type == ValueType::kString || v->type == ValueType::kList ? v->str : "";
      seen.emplace(static_cast<int>(v->type), num, text);
    }
    return seen.size();
  }

  // The numeric values of `prop` over `events`, in order; other values are skipped.
  std::vector<double> Numbers(const std::vector<uint32_t>& events, const Path& prop) {
    std::vector<double> nums;
    for (uint32_t r : events) {
      std::optional<Val> v = PropOf(r, prop);
      if (v && v->type == ValueType::kNumber) nums.push_back(v->num);
    }
    return nums;
  }

  // sum/avg/min/max of `nums` compared with `value`, as an aggregate condition reads them: sums
  // and averages exact in millionths; the sum of none is 0, avg/min/max of none false.
  static bool AggHolds(AggCond::Fn fn, const std::vector<double>& nums, CmpOp op, double value) {
    __int128 sum = 0;
    for (double x : nums) sum += Fixed(x);
    switch (fn) {
      case AggCond::Fn::kSum:
        return Holds(sum, op, static_cast<__int128>(Fixed(value)));
      case AggCond::Fn::kAvg:
        if (nums.empty()) return false;
        return Holds(sum, op,
                     static_cast<__int128>(Fixed(value)) * static_cast<__int128>(nums.size()));
      case AggCond::Fn::kMin:
        if (nums.empty()) return false;
        return Holds(*std::min_element(nums.begin(), nums.end()), op, value);
      case AggCond::Fn::kMax:
        if (nums.empty()) return false;
        return Holds(*std::max_element(nums.begin(), nums.end()), op, value);
      case AggCond::Fn::kDistinct:
        break;
    }
    return false;
  }

  // The number sum/avg/min/max of `nums` (a ranking's value, a computed value): the sum (0 with
  // none), the others nullopt with none.
  static std::optional<double> AggNumber(AggCond::Fn fn, const std::vector<double>& nums) {
    __int128 sum = 0;
    for (double x : nums) sum += Fixed(x);
    if (fn == AggCond::Fn::kSum) return static_cast<double>(sum) / 1e6;
    if (nums.empty()) return std::nullopt;
    if (fn == AggCond::Fn::kAvg)
      return static_cast<double>(sum) / static_cast<double>(nums.size()) / 1e6;
    if (fn == AggCond::Fn::kMin) return *std::min_element(nums.begin(), nums.end());
    return *std::max_element(nums.begin(), nums.end());
  }

  bool Leaf(const AggCond& c, const ProfileRecords& p) {
    std::vector<uint32_t> events = Matching(c.event, c.window, p);
    if (c.fn == AggCond::Fn::kDistinct)
      return Holds(static_cast<double>(DistinctCount(events, c.prop)), c.op, c.value);
    return AggHolds(c.fn, Numbers(events, c.prop), c.op, c.value);
  }

  bool Leaf(const FirstLastCond& c, const ProfileRecords& p) {
    std::vector<uint32_t> events = Matching(c.event, TimeRange{}, p);  // ever, before now
    if (events.empty()) return false;
    Millis t = store_.ts(events[0]);
    for (uint32_t r : events) t = c.first ? std::min(t, store_.ts(r)) : std::max(t, store_.ts(r));
    return InRange(t, c.when, now_);
  }

  bool Leaf(const LastEventCond& c, const ProfileRecords& p) {
    std::vector<uint32_t> events = Matching(c.event, c.window, p);
    if (events.empty()) return false;
    uint32_t last = events[0];
    for (uint32_t r : events)  // arrival order: ">=" lets the later arrival win a tie
      if (store_.ts(r) >= store_.ts(last)) last = r;
    return Filter(c.has, last);
  }

  bool Leaf(const SequenceCond& c, const ProfileRecords& p) {
    std::vector<uint32_t> as = Matching(c.first, c.window, p);
    std::vector<uint32_t> bs = Matching(c.then, c.window, p);
    std::vector<Millis> bts;
    for (uint32_t b : bs) bts.push_back(store_.ts(b));
    std::sort(bts.begin(), bts.end());
    for (uint32_t a : as) {
      Millis at = store_.ts(a);
      auto it = std::upper_bound(bts.begin(), bts.end(), at);  // first b.ts > a.ts
      if (it != bts.end() && *it <= at + c.within) return true;
    }
    return false;
  }

  bool Leaf(const NotFollowedCond& c, const ProfileRecords& p) {
    std::vector<uint32_t> as = Matching(c.first, c.window, p);
    if (as.empty()) return false;
    Millis a = store_.ts(as[0]);
    for (uint32_t r : as) a = std::max(a, store_.ts(r));
    // B is not restricted to the window: the doc says "no B has ...".
    if (!c.within) {
      for (uint32_t r : p.records) {
        Millis t = store_.ts(r);
        if (t > a && t < now_ && Matches(c.then, r)) return false;
      }
      return true;
    }
    Millis deadline = a + *c.within;
    if (!(now_ > deadline)) return false;
    for (uint32_t r : p.records) {
      Millis t = store_.ts(r);
      if (t > a && t <= deadline && Matches(c.then, r)) return false;
    }
    return true;
  }

  bool Leaf(const SegmentRefCond& c, const ProfileRecords& p) {
    const Expr* def = lookup_ ? lookup_(c.segment) : nullptr;
    if (!def) return false;
    // Cycles are rejected when definitions are created; should one reach us anyway, the
    // reference answers false instead of recursing forever.
    if (std::find(active_.begin(), active_.end(), c.segment) != active_.end()) return false;
    active_.push_back(c.segment);
    bool r = Eval(*def, p);
    active_.pop_back();
    return r;
  }

  bool Leaf(const BucketCond& c, const ProfileRecords& p) {
    return Holds(rules::BucketOf(p.key, c.salt, c.buckets), c.op, c.value);
  }

  // "in list": membership of the key, whatever the profile did; a key added before its first
  // message counts from that message on simply because the profile is not known before it.
  bool Leaf(const ListRefCond& c, const ProfileRecords& p) {
    return lists_ && lists_(c.list, p.key);
  }

  // ---- accounts

  // The number of the account's members for which the user condition holds; `all members`
  // needs at least one member (an account without members satisfies no `all members`).
  bool Leaf(const MemberCond& c, const ProfileRecords& p) {
    if (!p.account) return false;
    const Graph& g = graph();
    auto it = g.users_of.find(p.id);
    int64_t total = 0, yes = 0;
    if (it != g.users_of.end()) {
      for (uint32_t u : it->second) {
        ++total;
        if (Eval(*c.user, g.users.at(u))) ++yes;
      }
    }
    if (c.kind == MemberCond::Kind::kAll) return total > 0 && yes == total;
    return Holds(yes, c.op, c.n);
  }

  // `sum(X) of members [(C)] CMP v`: the numbers X of the account's members that satisfy C,
  // read now from scratch (a trait from the member's identify calls, a computed trait from its
  // definition), aggregated as an event aggregate's values are: sum of none 0, avg/min/max of
  // none no value (false).
  bool Leaf(const rules::MemberAggCond& c, const ProfileRecords& p) {
    if (!p.account) return false;
    return AggHolds(c.fn, MemberNumbers(c, p), c.op, c.value);
  }

  // The numbers X of account p's members that satisfy the filter, in member order.
  std::vector<double> MemberNumbers(const rules::MemberAggCond& c, const ProfileRecords& p) {
    const Graph& g = graph();
    std::vector<double> nums;
    auto it = g.users_of.find(p.id);
    if (it != g.users_of.end()) {
      for (uint32_t u : it->second) {
        const ProfileRecords& user = g.users.at(u);
        if (c.user && !Eval(*c.user, user)) continue;
        std::optional<double> x;
        if (c.computed) {
          std::string name;
          for (size_t i = 0; i < c.prop.size(); ++i) name += (i ? "." : "") + c.prop[i];
          const ComputedDef* def = computed_ ? computed_(name) : nullptr;
          std::string key = "computed." + name;
          if (def && std::find(active_.begin(), active_.end(), key) == active_.end()) {
            active_.push_back(key);
            Value v = Computed(*def, user);
            active_.pop_back();
            if (v.type == ValueType::kNumber) x = v.num;
          }
        } else {
          std::optional<Val> v = Trait(user, c.prop);
          if (v && v->type == ValueType::kNumber) x = v->num;
        }
        if (x && !std::isnan(*x)) nums.push_back(*x);
      }
    }
    return nums;
  }

  bool Leaf(const AccountSegmentCond& c, const ProfileRecords& p) {
    if (p.account) return false;
    const Expr* def = lookup_ ? lookup_(c.segment) : nullptr;
    if (!def) return false;
    if (std::find(active_.begin(), active_.end(), c.segment) != active_.end()) return false;
    const Graph& g = graph();
    auto it = g.accounts_of.find(p.id);
    if (it == g.accounts_of.end()) return false;
    active_.push_back(c.segment);
    bool any = false;
    for (uint32_t a : it->second)
      if (Eval(*def, g.accounts.at(a))) {
        any = true;
        break;
      }
    active_.pop_back();
    return any;
  }

  // ---- computed traits

  // The doc's reading, transcribed: the matching events in the window ordered by (time,
  // arrival); count, sum... over them; first/last is the property of the first/last of them.
  Value Computed(const ComputedDef& def, const ProfileRecords& p) {
    if (def.kind == ComputedDef::Kind::kScore) {
      int64_t total = 0;  // millionths
      for (const rules::ScoreTerm& t : def.terms)
        if (Eval(t.cond, p)) total += Fixed(t.points);
      return Value::Number(total == 0 ? 0.0 : static_cast<double>(total) / 1e6);
    }
    if (def.kind == ComputedDef::Kind::kMemberAgg) {  // an account's aggregate of members' values
      const rules::MemberAggCond& c = def.member_agg;
      std::optional<double> x =
          AggNumber(c.fn, p.account ? MemberNumbers(c, p) : std::vector<double>{});
      if (!x) return Value::Null();
      return Value::Number(*x == 0 ? 0.0 : *x);
    }
    const ComputedValueDef& d = def.value;
    std::vector<uint32_t> events = Matching(d.event, d.window, p);  // arrival order
    std::stable_sort(events.begin(), events.end(),
                     [&](uint32_t a, uint32_t b) { return store_.ts(a) < store_.ts(b); });
    using Fn = ComputedValueDef::Fn;
    if (d.fn == Fn::kCount) return Value::Number(static_cast<double>(events.size()));
    if (d.fn == Fn::kFirst || d.fn == Fn::kLast) {
      if (events.empty()) return Value::Null();
      std::optional<Val> v = PropOf(d.fn == Fn::kFirst ? events.front() : events.back(), d.prop);
      return v ? ToValue(*v) : Value::Null();
    }
    if (d.fn == Fn::kSum || d.fn == Fn::kAvg || d.fn == Fn::kMin || d.fn == Fn::kMax) {
      std::vector<double> nums;
      for (uint32_t r : events) {
        std::optional<Val> v = PropOf(r, d.prop);
        if (v && v->type == ValueType::kNumber) nums.push_back(v->num);
      }
      __int128 sum = 0;
      for (double x : nums) sum += Fixed(x);
      if (d.fn == Fn::kSum) return Value::Number(sum == 0 ? 0.0 : static_cast<double>(sum) / 1e6);
      if (nums.empty()) return Value::Null();
      if (d.fn == Fn::kAvg) {
        double avg = static_cast<double>(sum) / static_cast<double>(nums.size()) / 1e6;
        return Value::Number(avg == 0 ? 0.0 : avg);
      }
      double x = d.fn == Fn::kMin ? *std::min_element(nums.begin(), nums.end())
                                  : *std::max_element(nums.begin(), nums.end());
      return Value::Number(x == 0 ? 0.0 : x);
    }
    // distinct / unique / most frequent: the typed values in (time, arrival) order.
    // Key: (type rank, number, text); the doc's order: numbers, strings, false, true, lists.
    std::map<std::tuple<int, double, std::string>, std::pair<int64_t, size_t>> seen;
    for (size_t i = 0; i < events.size(); ++i) {
      std::optional<Val> v = PropOf(events[i], d.prop);
      if (!v) continue;
      std::tuple<int, double, std::string> key;
      switch (v->type) {
        case ValueType::kNumber:
          key = {0, v->num == 0 ? 0.0 : v->num, ""};
          break;
        case ValueType::kString:
          key = {1, 0, std::string(v->str)};
          break;
        case ValueType::kBool:
          key = {2, v->b ? 1 : 0, ""};
          break;
        default:
          key = {3, 0, std::string(v->str)};
      }
      auto& [n, last] = seen[key];
      ++n;
      last = i;
    }
    if (d.fn == Fn::kDistinct) return Value::Number(static_cast<double>(seen.size()));
    auto value_of = [](const std::tuple<int, double, std::string>& k) {
      switch (std::get<0>(k)) {
        case 0:
          return Value::Number(std::get<1>(k));
        case 1:
          return Value::String(std::get<2>(k));
        case 2:
          return Value::Bool(std::get<1>(k) != 0);
        default:
          return Value::List(std::get<2>(k));
      }
    };
    if (d.fn == Fn::kUnique) {  // the first 100 values in the doc's order
      std::string json = "[";
      size_t written = 0;
      for (const auto& [k, n] : seen) {
        if (written++ == 100) break;
        if (json.size() > 1) json += ",";
        json += JsonText(value_of(k));
      }
      return Value::List(json + "]");
    }
    // most frequent: most occurrences, then the latest occurrence.
    const std::tuple<int, double, std::string>* best = nullptr;
    std::pair<int64_t, size_t> best_rank{0, 0};
    for (const auto& [k, rank] : seen)
      if (!best || rank > best_rank) {
        best = &k;
        best_rank = rank;
      }
    return best ? value_of(*best) : Value::Null();
  }

  Value ToValue(const Val& v) {
    switch (v.type) {
      case ValueType::kBool:
        return Value::Bool(v.b);
      case ValueType::kNumber:
        return Value::Number(v.num);
      case ValueType::kString:
        return Value::String(std::string(v.str));
      default:
        return Value::List(std::string(v.str));
    }
  }

  // JSON for an element of unique(p): shortest round-trip numbers, strings with ", \ and control
  // characters escaped (\u00XX), lists as stored.
  static std::string JsonText(const Value& v) {
    switch (v.type) {
      case ValueType::kNumber: {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, v.num);
        return std::string(buf, r.ptr);
      }
      case ValueType::kBool:
        return v.b ? "true" : "false";
      case ValueType::kString: {
        std::string out = "\"";
        for (unsigned char c : v.str) {
          if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
          } else if (c < 0x20) {
            static const char* kHex = "0123456789abcdef";
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 15];
          } else {
            out += static_cast<char>(c);
          }
        }
        return out + "\"";
      }
      default:
        return v.str;
    }
  }

 public:
  Value ComputedOf(const ComputedDef& def, const ProfileRecords& p) { return Computed(def, p); }

 private:
  // An account reads account computed traits, a user users' (the engine rejects a definition
  // that reads one of the other kind), so the trait's definition is evaluated over p whatever
  // p is: its own events and traits, or for an account its events, traits and members.
  bool Leaf(const ComputedTraitCond& c, const ProfileRecords& p) {
    std::string name;
    for (size_t i = 0; i < c.pred.path.size(); ++i) name += (i ? "." : "") + c.pred.path[i];
    const ComputedDef* def = computed_ ? computed_(name) : nullptr;
    std::string key = "computed." + name;
    if (!def || std::find(active_.begin(), active_.end(), key) != active_.end())
      return Pred(c.pred, std::nullopt);
    active_.push_back(key);
    Value v = Computed(*def, p);
    active_.pop_back();
    if (v.type == ValueType::kNull) return Pred(c.pred, std::nullopt);
    Val val;
    val.type = v.type;
    val.b = v.b;
    val.num = v.num;
    val.str = v.str;
    return Pred(c.pred, val);
  }

  bool Leaf(const AccountTraitCond& c, const ProfileRecords& p) {
    if (p.account) return false;
    const Graph& g = graph();
    auto it = g.accounts_of.find(p.id);
    if (it == g.accounts_of.end()) return false;
    for (uint32_t a : it->second)
      if (Pred(c.pred, Trait(g.accounts.at(a), c.pred.path))) return true;
    return false;
  }

  // ---- top-N and percentiles

  // "top N by VALUE": every known profile (account) of p's kind gets its value now, the ones with
  // a number are sorted (value descending, ascending for bottom; ties by key ascending), and the
  // first N, or the first ceil(P/100 x R) of the R sorted, are the top set. Computed once per
  // evaluation instant and condition.
  bool Leaf(const TopNCond& c, const ProfileRecords& p) {
    auto key = std::make_pair(&c, p.account);
    auto it = top_sets_.find(key);
    if (it == top_sets_.end()) it = top_sets_.emplace(key, TopSet(c, p.account)).first;
    return it->second.count(p.id) > 0;
  }

  std::set<uint32_t> TopSet(const TopNCond& c, bool account) {
    struct Ranked {
      double value;
      std::string_view key;
      uint32_t id;
    };
    std::vector<Ranked> ranked;
    const Graph& g = graph();
    for (const auto& [id, q] : account ? g.accounts : g.users) {
      std::optional<double> v = RankValue(c, q);
      if (v && !std::isnan(*v)) ranked.push_back({*v, q.key, id});
    }
    std::sort(ranked.begin(), ranked.end(), [&](const Ranked& a, const Ranked& b) {
      if (a.value != b.value) return c.bottom ? a.value < b.value : a.value > b.value;
      return a.key < b.key;
    });
    size_t r = ranked.size(), k = 0;
    if (c.percent) {
      // The smallest k with k >= P/100 x R, in integers: P has at most 6 decimals.
      __int128 p_micro = std::llround(c.pct * 1e6);
      while (k < r && static_cast<__int128>(k) * 100000000 < p_micro * static_cast<__int128>(r))
        ++k;
    } else {
      k = std::min<size_t>(r, static_cast<size_t>(c.n));
    }
    std::set<uint32_t> top;
    for (size_t i = 0; i < k; ++i) top.insert(ranked[i].id);
    return top;
  }

  // The value ranked: a numeric trait; an aggregate (sum and distinct of nothing are 0, avg, min
  // and max of nothing are no value; sums in millionths, as the aggregate conditions); the number
  // of matching events; for an account, how many of its members satisfy the user condition; a
  // computed trait's value when it is a number.
  std::optional<double> RankValue(const TopNCond& c, const ProfileRecords& q) {
    switch (c.source) {
      case TopNCond::Source::kTrait: {
        std::optional<Val> v = Trait(q, c.path);
        if (v && v->type == ValueType::kNumber) return v->num;
        return std::nullopt;
      }
      case TopNCond::Source::kAgg: {
        const AggCond& a = c.agg;
        std::vector<uint32_t> events = Matching(a.event, a.window, q);
        if (a.fn == AggCond::Fn::kDistinct)
          return static_cast<double>(DistinctCount(events, a.prop));
        return AggNumber(a.fn, Numbers(events, a.prop));
      }
      case TopNCond::Source::kCount:  // for an account: its own events (context.groupId)
        return static_cast<double>(Matching(c.agg.event, c.agg.window, q).size());
      case TopNCond::Source::kMembers: {
        if (!q.account || !c.members) return std::nullopt;
        const Graph& g = graph();
        auto it = g.users_of.find(q.id);
        int64_t yes = 0;
        if (it != g.users_of.end())
          for (uint32_t u : it->second)
            if (Eval(*c.members, g.users.at(u))) ++yes;
        return static_cast<double>(yes);
      }
      case TopNCond::Source::kMemberAgg: {
        // The number the member aggregate would compare: sum of none 0, the others no value.
        if (!q.account || !c.member_agg) return std::nullopt;
        return AggNumber(c.member_agg->fn, MemberNumbers(*c.member_agg, q));
      }
      case TopNCond::Source::kComputed: {
        // The computed trait's value now, from its definition (as computed.NAME reads it); only
        // a number is ranked. An account's is an account computed trait, as in Leaf above.
        std::string name;
        for (size_t i = 0; i < c.path.size(); ++i) name += (i ? "." : "") + c.path[i];
        const ComputedDef* def = computed_ ? computed_(name) : nullptr;
        std::string key = "computed." + name;
        if (!def || std::find(active_.begin(), active_.end(), key) != active_.end())
          return std::nullopt;
        active_.push_back(key);
        Value v = Computed(*def, q);
        active_.pop_back();
        if (v.type != ValueType::kNumber) return std::nullopt;
        return v.num;
      }
    }
    return std::nullopt;
  }

  std::map<std::pair<const TopNCond*, bool>, std::set<uint32_t>> top_sets_;

  const Store& store_;
  std::unique_ptr<Graph> graph_;
  const DefinitionLookup& lookup_;
  const ListLookup& lists_;
  const ComputedLookup& computed_;
  const Millis now_;
  std::unordered_map<const Path*, std::pair<Path, std::optional<uint32_t>>> key_cache_;
  std::map<std::string, std::unique_ptr<RE2>> regex_cache_;
  std::vector<std::string> active_;  // segment refs being evaluated
};

}  // namespace

std::vector<std::string> Members(const store::Store& store, const rules::Expr& def,
                                 const DefinitionLookup& lookup, Millis now,
                                 const ListLookup& lists, const ComputedLookup& computed) {
  const size_t n_profiles = store.profiles().size();
  std::vector<ProfileRecords> profiles(n_profiles);
  for (uint32_t id = 0; id < n_profiles; ++id) {
    profiles[id].id = id;
    profiles[id].key = store.profiles().Get(id);
  }
  // Identity merges (docs/language.md, "Identity"): a record belongs to the survivor of the id it
  // was appended with, and a merged-away id is not a profile of its own.
  for (size_t i = 0; i < store.size(); ++i) {
    uint32_t id = store.profile(i);
    if (id < n_profiles) profiles[store.Resolve(id)].records.push_back(static_cast<uint32_t>(i));
  }
  Evaluator eval(store, lookup, lists, now, computed);
  std::vector<std::string> out;
  for (const ProfileRecords& p : profiles)
    if (!store.erased(p.id) && !store.merged(p.id) && eval.Eval(def, p)) out.emplace_back(p.key);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> AccountMembers(const store::Store& store, const rules::Expr& def,
                                        const DefinitionLookup& lookup, Millis now,
                                        const ListLookup& lists, const ComputedLookup& computed) {
  Evaluator eval(store, lookup, lists, now, computed);
  std::vector<std::string> out;
  for (const auto& [id, a] : eval.graph().accounts)
    if (eval.Eval(def, a)) out.emplace_back(a.key);
  std::sort(out.begin(), out.end());
  return out;
}

bool IsMember(const store::Store& store, uint32_t profile, const rules::Expr& def,
              const DefinitionLookup& lookup, Millis now, const ListLookup& lists,
              const ComputedLookup& computed) {
  if (profile >= store.profiles().size() || store.erased(profile)) return false;
  profile = store.Resolve(profile);  // a merged-away id answers for its survivor
  ProfileRecords p;
  p.id = profile;
  p.key = store.profiles().Get(profile);
  for (size_t i = 0; i < store.size(); ++i)
    if (store.profile(i) < store.profiles().size() && store.Resolve(store.profile(i)) == profile)
      p.records.push_back(static_cast<uint32_t>(i));
  Evaluator eval(store, lookup, lists, now, computed);
  return eval.Eval(def, p);
}

std::vector<std::pair<std::string, Value>> ComputedValues(const store::Store& store,
                                                          const rules::ComputedDef& def,
                                                          const DefinitionLookup& lookup,
                                                          Millis now, const ListLookup& lists,
                                                          const ComputedLookup& computed) {
  const size_t n_profiles = store.profiles().size();
  std::vector<ProfileRecords> profiles(n_profiles);
  for (uint32_t id = 0; id < n_profiles; ++id) {
    profiles[id].id = id;
    profiles[id].key = store.profiles().Get(id);
  }
  // As in Members: a merged-away id's records are its survivor's, and it has no value of its own.
  for (size_t i = 0; i < store.size(); ++i) {
    uint32_t id = store.profile(i);
    if (id < n_profiles) profiles[store.Resolve(id)].records.push_back(static_cast<uint32_t>(i));
  }
  Evaluator eval(store, lookup, lists, now, computed);
  std::vector<std::pair<std::string, Value>> out;
  for (const ProfileRecords& p : profiles)
    if (!store.erased(p.id) && !store.merged(p.id))
      out.emplace_back(std::string(p.key), eval.ComputedOf(def, p));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

// Account computed traits (docs/language.md, "Account computed traits and scores"): the same
// reading of the definition as ComputedValues, over each known account (its group records, its
// own events and its members, as AccountMembers reads an account).
std::vector<std::pair<std::string, Value>> AccountComputedValues(
    const store::Store& store, const rules::ComputedDef& def, const DefinitionLookup& lookup,
    Millis now, const ListLookup& lists, const ComputedLookup& computed) {
  Evaluator eval(store, lookup, lists, now, computed);
  std::vector<std::pair<std::string, Value>> out;
  for (const auto& [id, a] : eval.graph().accounts)
    out.emplace_back(std::string(a.key), eval.ComputedOf(def, a));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

}  // namespace shoal::reference
