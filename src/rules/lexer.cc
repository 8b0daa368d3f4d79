#include "rules/lexer.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iterator>

#include "common/text.h"

namespace shoal::rules {
namespace {

// Every word the grammar gives a meaning to. "time" (as in "1 time") is accepted by the parser
// but not reserved: it never stands where a trait name could.
constexpr std::string_view kReserved[] = {
    "after",   "ago",     "and",      "at",        "avg",      "before",   "between",
    "bucket",  "by",      "contains", "did",       "distinct", "ends",     "event",
    "exactly", "exists",  "false",    "fewer",     "first",    "followed", "for",
    "has",     "in",      "last",     "least",     "less",     "matches",  "max",
    "min",     "missing", "more",     "most",      "not",      "now",      "null",
    "of",      "or",      "perform",  "performed", "segment",  "starts",   "sum",
    "than",    "then",    "times",    "true",      "where",    "with",     "within",
};

bool IsIdentStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsIdentChar(char c) {
  return IsIdentStart(c) || (c >= '0' && c <= '9') || c == '$' || c == '-';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return IsIdentStart(c) || IsDigit(c); }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Quotes a piece of source text for an error message: printable ASCII as is, anything else as
// \xNN, at most ~40 characters.
std::string QuoteSource(std::string_view s) {
  std::string out = "'";
  size_t n = 0;
  for (char c : s) {
    if (++n > 40) {
      out += "...";
      break;
    }
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) {
      out.push_back(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", u);
      out += buf;
    }
  }
  return out + "'";
}

class Lexer {
 public:
  explicit Lexer(std::string_view text) : s_(text) {}

  Result<std::vector<Token>> Run() {
    std::vector<Token> out;
    for (;;) {
      SkipSpaceAndComments();
      Token t;
      t.pos = Pos();
      if (i_ >= s_.size()) {
        t.kind = TokKind::kEnd;
        t.text = s_.substr(s_.size());
        out.push_back(std::move(t));
        return out;
      }
      size_t start = i_;
      Status st = Next(&t);
      if (!st.ok()) return st;
      t.text = s_.substr(start, i_ - start);
      out.push_back(std::move(t));
    }
  }

 private:
  SourcePos Pos() const { return {line_, static_cast<int>(i_ - line_start_) + 1}; }
  SourcePos PosAt(size_t i) const { return {line_, static_cast<int>(i - line_start_) + 1}; }
  char Peek(size_t k = 0) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }
  bool Has(size_t k) const { return i_ + k < s_.size(); }

  void SkipSpaceAndComments() {
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == '\n') {
        ++i_;
        ++line_;
        line_start_ = i_;
      } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
        ++i_;
      } else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else {
        return;
      }
    }
  }

  Status Next(Token* t) {
    char c = s_[i_];
    if (IsIdentStart(c)) {
      size_t start = i_;
      while (i_ < s_.size() && IsIdentChar(s_[i_])) ++i_;
      t->kind = TokKind::kWord;
      t->str = Lower(s_.substr(start, i_ - start));
      return Status::Ok();
    }
    if (IsDigit(c) || (c == '-' && IsDigit(Peek(1)))) return Number(t);
    switch (c) {
      case '"':
        return String(t);
      case '`':
        return Backquoted(t);
      case '(':
        ++i_;
        t->kind = TokKind::kLParen;
        return Status::Ok();
      case ')':
        ++i_;
        t->kind = TokKind::kRParen;
        return Status::Ok();
      case ',':
        ++i_;
        t->kind = TokKind::kComma;
        return Status::Ok();
      case '.':
        ++i_;
        t->kind = TokKind::kDot;
        return Status::Ok();
      case '%':
        ++i_;
        t->kind = TokKind::kPercent;
        return Status::Ok();
      case '+':
        ++i_;
        t->kind = TokKind::kPlus;
        return Status::Ok();
      case '-':  // a '-' before a digit was a number above
        ++i_;
        t->kind = TokKind::kMinus;
        return Status::Ok();
      case '=':
        ++i_;
        t->kind = TokKind::kOp;
        t->op = CmpOp::kEq;
        return Status::Ok();
      case '!':
        if (Peek(1) == '=') {
          i_ += 2;
          t->kind = TokKind::kOp;
          t->op = CmpOp::kNe;
          return Status::Ok();
        }
        break;
      case '<':
      case '>': {
        bool lt = c == '<';
        ++i_;
        bool eq = Peek() == '=';
        if (eq) ++i_;
        t->kind = TokKind::kOp;
        t->op = lt ? (eq ? CmpOp::kLe : CmpOp::kLt) : (eq ? CmpOp::kGe : CmpOp::kGt);
        return Status::Ok();
      }
      default:
        break;
    }
    // A stray character: show one UTF-8 sequence, not a broken byte.
    size_t len = 1;
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0xC0) {
      while (len < 4 && Has(len) && (static_cast<unsigned char>(Peek(len)) & 0xC0) == 0x80) ++len;
    }
    return SyntaxError(Pos(), "a name, string, number, operator or parenthesis",
                       QuoteSource(s_.substr(i_, len)));
  }

  // NUMBER, DURATION or TIME: they all start with a digit (or '-' and a digit for NUMBER).
  Status Number(Token* t) {
    size_t start = i_;
    SourcePos pos = Pos();
    // TIME: four digits and a dash.
    if (IsDigit(Peek(0)) && IsDigit(Peek(1)) && IsDigit(Peek(2)) && IsDigit(Peek(3)) &&
        Peek(4) == '-')
      return Time(t);
    bool neg = Peek() == '-';
    if (neg) ++i_;
    while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
    size_t digits_end = i_;
    bool is_int = true;
    if (Peek() == '.' && IsDigit(Peek(1))) {
      is_int = false;
      ++i_;
      while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
    }
    if ((Peek() == 'e' || Peek() == 'E') &&
        (IsDigit(Peek(1)) || ((Peek(1) == '+' || Peek(1) == '-') && IsDigit(Peek(2))))) {
      is_int = false;
      i_ += 2;
      while (i_ < s_.size() && IsDigit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && (IsAlnum(s_[i_]) || s_[i_] == '.')) {
      // A DURATION is digits immediately followed by a unit; anything else glued to a number is
      // a malformed token.
      size_t end = i_;
      while (end < s_.size() && IsAlnum(s_[end])) ++end;
      std::string_view word = s_.substr(start, end - start);
      if (!neg && is_int && digits_end == i_ && s_[i_] != '.') {
        if (auto d = ParseDuration(word)) {
          i_ = end;
          t->kind = TokKind::kDuration;
          t->ms = *d;
          return Status::Ok();
        }
      }
      return SyntaxError(pos, "a number or a duration such as 30d", QuoteSource(word));
    }
    std::string_view num = s_.substr(start, i_ - start);
    double v = 0;
    auto r = std::from_chars(num.data(), num.data() + num.size(), v);
    if (r.ec != std::errc() || r.ptr != num.data() + num.size())
      return SyntaxError(pos, "a number of at most 1.7e308", QuoteSource(num));
    t->kind = TokKind::kNumber;
    t->num = v;
    if (is_int) {
      int64_t n = 0;
      auto ri = std::from_chars(num.data(), num.data() + num.size(), n);
      t->is_int = ri.ec == std::errc() && ri.ptr == num.data() + num.size();
      t->int_val = n;
    }
    return Status::Ok();
  }

  // An unquoted instant: YYYY-MM-DD, optionally followed by Thh:mm[:ss[.fff]] and Z or +hh:mm.
  Status Time(Token* t) {
    size_t start = i_;
    SourcePos pos = Pos();
    i_ += 4;
    auto is_date_char = [](char c) { return IsDigit(c) || c == '-'; };
    while (i_ < s_.size() && is_date_char(s_[i_])) ++i_;
    if ((Peek() == 'T' || Peek() == 't') && IsDigit(Peek(1))) {
      ++i_;
      while (i_ < s_.size() && (IsDigit(s_[i_]) || s_[i_] == ':' || s_[i_] == '.')) ++i_;
      if (Peek() == 'Z' || Peek() == 'z') {
        ++i_;
      } else if (Peek() == '+' || Peek() == '-') {
        ++i_;
        while (i_ < s_.size() && (IsDigit(s_[i_]) || s_[i_] == ':')) ++i_;
      }
    }
    // Whatever else is glued to it belongs to the (bad) token.
    while (i_ < s_.size() && (IsAlnum(s_[i_]) || s_[i_] == ':' || s_[i_] == '.')) ++i_;
    std::string_view text = s_.substr(start, i_ - start);
    auto ms = ParseTime(text);
    // Only years 0000-9999 print back as four digits.
    static const Millis kFirst = *ParseTime("0000-01-01");
    static const Millis kLast = *ParseTime("9999-12-31T23:59:59.999Z");
    if (!ms || *ms < kFirst || *ms > kLast)
      return SyntaxError(pos, "a time such as 2026-01-02 or 2026-01-02T03:04:05Z",
                         QuoteSource(text));
    t->kind = TokKind::kTime;
    t->ms = *ms;
    return Status::Ok();
  }

  Status String(Token* t) {
    SourcePos open = Pos();
    ++i_;
    std::string out;
    for (;;) {
      if (i_ >= s_.size() || s_[i_] == '\n') {
        return SyntaxError(Pos(),
                           "'\"' to close the string opened at " + std::to_string(open.line) + ":" +
                               std::to_string(open.col),
                           i_ >= s_.size() ? "end of input" : "end of line");
      }
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        break;
      }
      if (c != '\\') {
        out.push_back(c);
        ++i_;
        continue;
      }
      SourcePos esc = Pos();
      char e = Peek(1);
      i_ += 2;
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return BadEscape(esc);
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate needs its low half
            uint32_t lo;
            if (Peek() != '\\' || Peek(1) != 'u') return BadEscape(esc);
            i_ += 2;
            if (!Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return BadEscape(esc);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return BadEscape(esc);
          }
          AppendUtf8(cp, &out);
          break;
        }
        default:
          return BadEscape(esc);
      }
    }
    t->kind = TokKind::kString;
    t->str = std::move(out);
    return Status::Ok();
  }

  bool Hex4(uint32_t* cp) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = Peek();
      int d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else
        return false;
      v = v * 16 + static_cast<uint32_t>(d);
      ++i_;
    }
    *cp = v;
    return true;
  }

  Status BadEscape(SourcePos esc) {
    size_t start = static_cast<size_t>(esc.col - 1) + line_start_;
    size_t end = std::min(std::max(i_, start + 2), s_.size());
    return SyntaxError(esc, "an escape such as \\\", \\\\, \\n, \\t or \\u00e9",
                       QuoteSource(s_.substr(start, end - start)));
  }

  Status Backquoted(Token* t) {
    SourcePos open = Pos();
    size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != '`' && s_[i_] != '\n') ++i_;
    if (i_ >= s_.size() || s_[i_] != '`')
      return SyntaxError(Pos(),
                         "'`' to close the name opened at " + std::to_string(open.line) + ":" +
                             std::to_string(open.col),
                         i_ >= s_.size() ? "end of input" : "end of line");
    if (i_ == start) return SyntaxError(open, "a name between the backquotes", "'``'");
    t->kind = TokKind::kQuoted;
    t->str = std::string(s_.substr(start, i_ - start));
    ++i_;
    return Status::Ok();
  }

  std::string_view s_;
  size_t i_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
};

}  // namespace

Result<std::vector<Token>> Lex(std::string_view text) { return Lexer(text).Run(); }

bool IsReservedWord(std::string_view word) {
  std::string w = Lower(word);
  return std::find(std::begin(kReserved), std::end(kReserved), w) != std::end(kReserved);
}

bool IsPlainIdentifier(std::string_view name) {
  if (name.empty() || !IsIdentStart(name[0])) return false;
  return std::all_of(name.begin(), name.end(), IsIdentChar);
}

std::string DescribeToken(const Token& t) {
  if (t.kind == TokKind::kEnd) return "end of input";
  return QuoteSource(t.text);
}

Status SyntaxError(SourcePos pos, std::string_view expected, std::string_view found) {
  std::string msg = std::to_string(pos.line) + ":" + std::to_string(pos.col) + ": expected ";
  msg.append(expected).append(", found ").append(found);
  return Status::InvalidArgument(std::move(msg));
}

}  // namespace shoal::rules
