#include "engine/values.h"

#include <charconv>
#include <cstdlib>

#include "common/text.h"

namespace shoal::engine {

using rules::CmpOp;
using rules::Literal;
using rules::ValuePred;
using store::StoredValue;

bool Compare(int order, CmpOp op) {
  switch (op) {
    case CmpOp::kEq:
      return order == 0;
    case CmpOp::kNe:
      return order != 0;
    case CmpOp::kLt:
      return order < 0;
    case CmpOp::kLe:
      return order <= 0;
    case CmpOp::kGt:
      return order > 0;
    case CmpOp::kGe:
      return order >= 0;
  }
  return false;
}

bool TimeSpec::Contains(Millis x, Millis t, Millis* next) const {
  // x >= t - a  <=>  t <= x + a: leaves the range at x + a + 1.
  // x <  t - b  <=>  t >  x + b: enters the range at x + b + 1.
  bool in = true;
  const rules::TimeBound& f = range.from;
  const rules::TimeBound& to = range.to;
  if (f.kind == rules::TimeBound::Kind::kAbsolute) in = in && x >= f.ms;
  if (to.kind == rules::TimeBound::Kind::kAbsolute) in = in && x < to.ms;
  if (f.kind == rules::TimeBound::Kind::kRelative) {
    Millis leave = x + f.ms + 1;
    if (x < t - f.ms)
      in = false;
    else if (leave > t && leave < *next)
      *next = leave;
  }
  if (to.kind == rules::TimeBound::Kind::kRelative) {
    Millis enter = x + to.ms + 1;
    if (!(x < t - to.ms)) {
      in = false;
      if (enter > t && enter < *next) *next = enter;
    }
  }
  return in;
}

namespace {

// Parses a JSON string starting at s[i] == '"'; returns the index after the closing quote.
size_t ParseJsonString(std::string_view s, size_t i, std::string* out) {
  ++i;
  while (i < s.size() && s[i] != '"') {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      switch (c) {
        case 'n':
          out->push_back('\n');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (i + 4 < s.size()) {
            std::from_chars(s.data() + i + 1, s.data() + i + 5, cp, 16);
            i += 4;
          }
          if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < s.size() && s[i + 1] == '\\' &&
              s[i + 2] == 'u') {
            uint32_t lo = 0;
            std::from_chars(s.data() + i + 3, s.data() + i + 7, lo, 16);
            if (lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              i += 6;
            }
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          out->push_back(c);
      }
      ++i;
    } else {
      out->push_back(s[i++]);
    }
  }
  return i + 1;
}

// Skips a nested array or object starting at s[i]; returns the index after it.
size_t SkipNested(std::string_view s, size_t i) {
  int depth = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == '"') {
      std::string ignore;
      i = ParseJsonString(s, i, &ignore);
      continue;
    }
    if (c == '[' || c == '{') ++depth;
    if (c == ']' || c == '}') {
      if (--depth == 0) return i + 1;
    }
    ++i;
  }
  return i;
}

}  // namespace

std::vector<ListElement> ParseListElements(std::string_view s) {
  std::vector<ListElement> out;
  size_t i = 0;
  while (i < s.size() && s[i] != '[') ++i;
  ++i;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == ',' || c == '\n' || c == '\t' || c == '\r') {
      ++i;
      continue;
    }
    if (c == ']') break;
    ListElement e;
    if (c == '"') {
      e.type = ValueType::kString;
      i = ParseJsonString(s, i, &e.str);
    } else if (c == '[' || c == '{') {
      i = SkipNested(s, i);  // stays kNull: equals nothing
    } else if (s.substr(i, 4) == "true") {
      e.type = ValueType::kBool;
      e.b = true;
      i += 4;
    } else if (s.substr(i, 5) == "false") {
      e.type = ValueType::kBool;
      i += 5;
    } else if (s.substr(i, 4) == "null") {
      i += 4;
    } else {
      size_t j = i;
      while (j < s.size() && s[j] != ',' && s[j] != ']' && s[j] != ' ') ++j;
      std::string num(s.substr(i, j - i));
      char* end = nullptr;
      e.num = std::strtod(num.c_str(), &end);
      e.type = ValueType::kNumber;
      i = j;
    }
    out.push_back(std::move(e));
  }
  return out;
}

CompiledPred::CompiledPred(const ValuePred& pred, store::Store* store)
    : kind_(pred.kind), op_(pred.op) {
  std::string path;
  for (size_t i = 0; i < pred.path.size(); ++i) {
    if (i) path.push_back('.');
    path += pred.path[i];
  }
  key_ = store->keys().Intern(path);
  for (const Literal& l : pred.values) {
    CompiledLiteral cl{l, 0};
    if (l.type == Literal::Type::kString) cl.str_id = store->strings().Intern(l.str);
    lits_.push_back(std::move(cl));
  }
  time_.range = pred.time;
  if (kind_ == ValuePred::Kind::kMatches && !lits_.empty()) {
    RE2::Options opts;
    opts.set_log_errors(false);
    opts.set_max_mem(int64_t{1} << 20);
    regex_ = std::make_shared<RE2>(lits_[0].lit.str, opts);
    if (!regex_->ok()) regex_.reset();  // the parser rejects these; an unusable one matches nothing
  }
}

bool CompiledPred::Equal(const StoredValue& v, const CompiledLiteral& l,
                         const store::Store& s) const {
  switch (l.lit.type) {
    case Literal::Type::kNumber:
      return v.type == ValueType::kNumber && v.num == l.lit.num;
    case Literal::Type::kString:
      return v.type == ValueType::kString && v.str == l.str_id;
    case Literal::Type::kBool:
      return v.type == ValueType::kBool && v.b == l.lit.b;
    case Literal::Type::kTime: {
      if (v.type != ValueType::kString) return false;
      auto t = ParseTime(s.strings().Get(v.str));
      return t && *t == l.lit.time;
    }
    case Literal::Type::kNull:
      return false;
  }
  return false;
}

std::optional<int> CompiledPred::Order(const StoredValue& v, const CompiledLiteral& l,
                                       const store::Store& s) const {
  switch (l.lit.type) {
    case Literal::Type::kNumber:
      if (v.type != ValueType::kNumber) return std::nullopt;
      return v.num < l.lit.num ? -1 : (v.num > l.lit.num ? 1 : 0);
    case Literal::Type::kString: {
      if (v.type != ValueType::kString) return std::nullopt;
      int c = s.strings().Get(v.str).compare(l.lit.str);
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    case Literal::Type::kTime: {
      if (v.type != ValueType::kString) return std::nullopt;
      auto t = ParseTime(s.strings().Get(v.str));
      if (!t) return std::nullopt;
      return *t < l.lit.time ? -1 : (*t > l.lit.time ? 1 : 0);
    }
    default:
      return std::nullopt;
  }
}

bool CompiledPred::Eval(const StoredValue* v, Millis t, const store::Store& s, Millis* next) const {
  bool present = v != nullptr && v->type != ValueType::kNull;
  if (kind_ == ValuePred::Kind::kMissing) return !present;
  if (!present) return false;
  switch (kind_) {
    case ValuePred::Kind::kExists:
      return true;
    case ValuePred::Kind::kCompare: {
      if (op_ == rules::CmpOp::kEq) return Equal(*v, lits_[0], s);
      if (op_ == rules::CmpOp::kNe) return !Equal(*v, lits_[0], s);
      auto o = Order(*v, lits_[0], s);
      return o && Compare(*o, op_);
    }
    case ValuePred::Kind::kBetween: {
      auto lo = Order(*v, lits_[0], s);
      auto hi = Order(*v, lits_[1], s);
      return lo && hi && *lo >= 0 && *hi <= 0;
    }
    case ValuePred::Kind::kIn:
    case ValuePred::Kind::kNotIn: {
      bool any = false;
      for (const CompiledLiteral& l : lits_) any = any || Equal(*v, l, s);
      return kind_ == ValuePred::Kind::kIn ? any : !any;
    }
    case ValuePred::Kind::kContains: {
      const CompiledLiteral& l = lits_[0];
      if (v->type == ValueType::kString) {
        return l.lit.type == Literal::Type::kString &&
               s.strings().Get(v->str).find(l.lit.str) != std::string_view::npos;
      }
      if (v->type == ValueType::kList) {
        for (const ListElement& e : ParseListElements(s.strings().Get(v->str))) {
          switch (l.lit.type) {
            case Literal::Type::kString:
              if (e.type == ValueType::kString && e.str == l.lit.str) return true;
              break;
            case Literal::Type::kNumber:
              if (e.type == ValueType::kNumber && e.num == l.lit.num) return true;
              break;
            case Literal::Type::kBool:
              if (e.type == ValueType::kBool && e.b == l.lit.b) return true;
              break;
            case Literal::Type::kTime: {
              if (e.type != ValueType::kString) break;
              auto tt = ParseTime(e.str);
              if (tt && *tt == l.lit.time) return true;
              break;
            }
            default:
              break;
          }
        }
      }
      return false;
    }
    case ValuePred::Kind::kStartsWith:
      return v->type == ValueType::kString && s.strings().Get(v->str).starts_with(lits_[0].lit.str);
    case ValuePred::Kind::kEndsWith:
      return v->type == ValueType::kString && s.strings().Get(v->str).ends_with(lits_[0].lit.str);
    case ValuePred::Kind::kMatches: {
      if (v->type != ValueType::kString || !regex_) return false;
      std::string_view text = s.strings().Get(v->str);
      return RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *regex_);
    }
    case ValuePred::Kind::kTime: {
      if (v->type != ValueType::kString) return false;
      auto x = ParseTime(s.strings().Get(v->str));
      if (!x) return false;
      return time_.Contains(*x, t, next);
    }
    default:
      return false;
  }
}

CompiledFilter::CompiledFilter(const rules::PropExpr& e, store::Store* store) : kind_(e.kind) {
  if (kind_ == rules::PropExpr::Kind::kPred) {
    pred_ = std::make_unique<CompiledPred>(e.pred, store);
  } else {
    for (const rules::PropExpr& c : e.children) children_.emplace_back(c, store);
  }
}

template <typename PropRange>
bool CompiledFilter::Eval(const PropRange& props, Millis t, const store::Store& s) const {
  switch (kind_) {
    case rules::PropExpr::Kind::kAnd:
      for (const CompiledFilter& c : children_)
        if (!c.Eval(props, t, s)) return false;
      return true;
    case rules::PropExpr::Kind::kOr:
      for (const CompiledFilter& c : children_)
        if (c.Eval(props, t, s)) return true;
      return false;
    case rules::PropExpr::Kind::kNot:
      return !children_[0].Eval(props, t, s);
    case rules::PropExpr::Kind::kPred: {
      uint32_t key = pred_->key();
      for (const store::PropEntry p : props) {
        if (p.key() == key) {
          StoredValue v = p.value();
          Millis ignore = kMaxTime;
          return pred_->Eval(&v, t, s, &ignore);
        }
        if (p.key() > key) break;
      }
      Millis ignore = kMaxTime;
      return pred_->Eval(nullptr, t, s, &ignore);
    }
  }
  return false;
}
template bool CompiledFilter::Eval(const std::span<const store::PropEntry>&, Millis,
                                   const store::Store&) const;
template bool CompiledFilter::Eval(const store::Props&, Millis, const store::Store&) const;

std::string FormatFixed(__int128 v) {
  const bool neg = v < 0;
  unsigned __int128 u = neg ? -static_cast<unsigned __int128>(v) : v;
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(u % 10)));
    u /= 10;
  } while (u);
  while (digits.size() < 7) digits.insert(digits.begin(), '0');
  std::string out = digits.substr(0, digits.size() - 6);
  std::string frac = digits.substr(digits.size() - 6);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (!frac.empty()) out += "." + frac;
  return (neg ? "-" : "") + out;
}

std::string JoinPath(const rules::Path& p) {
  std::string out;
  for (size_t i = 0; i < p.size(); ++i) out += (i ? "." : "") + p[i];
  return out;
}

}  // namespace shoal::engine
