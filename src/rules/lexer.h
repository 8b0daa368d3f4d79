// The lexer of the segment language (docs/language.md, "Grammar"). Internal to src/rules: the
// parser consumes its tokens and the printer shares its notion of a plain identifier and of the
// reserved words, so that every name it prints reads back as the same name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rules/ast.h"
#include "shoal/status.h"

namespace shoal::rules {

enum class TokKind : uint8_t {
  kEnd,       // end of input
  kWord,      // a plain identifier or keyword: [A-Za-z_][A-Za-z0-9_$-]*
  kQuoted,    // a backquoted name: `any text` (never a keyword)
  kString,    // "..." (str holds the decoded bytes)
  kNumber,    // -?[0-9]+(.[0-9]+)?([eE][+-]?[0-9]+)?
  kDuration,  // [0-9]+(ms|s|m|h|d|w) (ms holds the length)
  kTime,      // 2026-01-02[Thh:mm[:ss[.fff]][Z|+hh:mm]] (ms holds the instant)
  kLParen,
  kRParen,
  kComma,
  kDot,
  kOp,       // = != < <= > >= (op holds which)
  kPercent,  // % (top 10% by ...)
  kPlus,     // + (between the terms of a score)
  kMinus,    // - not followed by a digit (between the terms of a score; -5 is a kNumber)
};

struct Token {
  TokKind kind = TokKind::kEnd;
  SourcePos pos;
  std::string_view text;  // the source text of the token
  std::string str;        // kWord: the text lower-cased; kQuoted/kString: the decoded value
  double num = 0;         // kNumber
  bool is_int = false;    // kNumber: no fraction or exponent and fits in int64
  int64_t int_val = 0;    // kNumber with is_int
  Millis ms = 0;          // kDuration, kTime
  CmpOp op = CmpOp::kEq;  // kOp
};

// Splits `text` into tokens, ending with one kEnd token. Comments (# to the end of the line) and
// white space are skipped. Returns kInvalidArgument "LINE:COL: expected X, found Y" on a
// malformed token (unterminated string, bad escape, bad duration or time, stray character).
Result<std::vector<Token>> Lex(std::string_view text);

// True when `word` (any case) is a keyword of the language; such a trait name must be written in
// backquotes.
bool IsReservedWord(std::string_view word);

// True when `name` matches [A-Za-z_][A-Za-z0-9_$-]*.
bool IsPlainIdentifier(std::string_view name);

// "'text'" for a token, "end of input" for kEnd; long texts are shortened. Used after "found".
std::string DescribeToken(const Token& t);

// "LINE:COL: expected <expected>, found <found>".
Status SyntaxError(SourcePos pos, std::string_view expected, std::string_view found);

}  // namespace shoal::rules
