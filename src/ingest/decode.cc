#include "ingest/decode.h"

#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/text.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ingest/decode_internal.h"

namespace shoal::ingest {
namespace {

namespace od = simdjson::ondemand;

// Nesting limit for properties and traits. The properties object itself is level 1.
constexpr size_t kMaxDepth = 32;
// Up to this many fields, duplicate paths are found by a linear scan; beyond it, by a hash index.
constexpr size_t kLinearScanMax = 16;
// Fields kept for reuse by a Decoder beyond those in the caller's Message.
constexpr size_t kMaxSpareFields = 4096;
// How much of a user-supplied text an error message quotes.
constexpr size_t kMaxQuotedBytes = 64;

// `s` as a JSON string for an error message, cut to kMaxQuotedBytes at a UTF-8 boundary.
std::string Quote(std::string_view s) {
  bool cut = s.size() > kMaxQuotedBytes;
  if (cut) {
    size_t n = kMaxQuotedBytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s = s.substr(0, n);
  }
  std::string out;
  AppendJsonString(s, &out);
  if (cut) out.insert(out.size() - 1, "...");
  return out;
}

Status FieldError(std::string_view field, std::string_view what) {
  std::string msg = "field '";
  msg.append(field).append("': ").append(what);
  return Status::InvalidArgument(std::move(msg));
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::optional<MessageType> ParseType(std::string_view s) {
  switch (s.size()) {
    case 4:
      if (s == "page") return MessageType::kPage;
      break;
    case 5:
      if (s == "track") return MessageType::kTrack;
      if (s == "group") return MessageType::kGroup;
      if (s == "alias") return MessageType::kAlias;
      break;
    case 6:
      if (s == "screen") return MessageType::kScreen;
      break;
    case 8:
      if (s == "identify") return MessageType::kIdentify;
      break;
  }
  return std::nullopt;
}

// For ChooseShape, out of line: the length of a key of 16 to 31 bytes at `k` (no quote in its
// first 16 bytes), or SIZE_MAX. Reads up to 15 bytes past `end`, as the caller's first load.
[[gnu::noinline]] size_t LongKeyLength(const char* k, const char* end) {
  if (end - k <= 16) return SIZE_MAX;
#if defined(__SSE2__)
  const unsigned quotes = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(k + 16)), _mm_set1_epi8('"'))));
  return quotes != 0 ? 16 + static_cast<size_t>(__builtin_ctz(quotes)) : SIZE_MAX;
#else
  for (size_t i = 16; i < 32 && i < static_cast<size_t>(end - k); ++i)
    if (k[i] == '"') return i;
  return SIZE_MAX;
#endif
}

// a[0, n) == b[0, n) for 16 < n <= 32, out of line.
[[gnu::noinline]] bool LongKeyEqual(const char* a, const char* b, size_t n) {
  return SmallEqual(a, b, 16) && SmallEqual(a + 16, b + 16, n - 16);
}

// The general case of Assign, out of line.
[[gnu::noinline]] void AssignSlow(std::string* s, std::string_view v) {
  s->clear();
  s->append(v.data(), v.size());
}

// *s = v, reusing the capacity. Most strings of a message are short, and many equal the previous
// message's (the event name, property names, repeated values): those are compared and copied
// inline, the length set with erase(), which is inline too; only a longer string, or one longer
// than the last, goes through append() (out of line, plus memcpy).
// std::string::assign would take the general _M_replace.
[[gnu::always_inline]] inline void Assign(std::string* s, std::string_view v) {
  const size_t n = v.size(), have = s->size();
  if (n <= 16 && n <= have) {
    if (n == have) {  // the same length: the bytes, if they differ (an id), and no erase()
      if (!SmallEqual(s->data(), v.data(), n)) SmallCopy(s->data(), v.data(), n);
      return;
    }
    SmallCopy(s->data(), v.data(), n);
    s->erase(n);
    return;
  }
  AssignSlow(s, v);
}

// Assign, for a string that is mostly empty and stays so (anonymousId, name, groupId,
// previousId): that case costs two compares.
[[gnu::always_inline]] inline void AssignRare(std::string* s, std::string_view v) {
  if (v.empty() && s->empty()) return;
  Assign(s, v);
}

void SetNull(Value* v) {
  v->type = ValueType::kNull;
  v->b = false;
  v->num = 0;
  v->str.clear();
}

// The flattened fields of one object (properties, traits, context.traits), written into a vector
// of a Message. Elements are overwritten in place rather than cleared and re-created, and those no
// longer needed are parked in `spare`, so that their strings keep their heap buffers from one
// message to the next: a steady stream of messages allocates nothing.
class FieldSink {
 public:
  void Begin(std::vector<Field>* v) {
    v_ = v;
    n_ = 0;
    seen_ = 0;
    if (indexed_) {
      std::fill(index_.begin(), index_.end(), 0u);
      indexed_ = false;
    }
  }

  size_t size() const { return n_; }
  // The vector being written.
  std::vector<Field>* fields() const { return v_; }

  // The value of the field named `path`: the existing one if this message already set that path
  // (a later duplicate replaces the earlier value), else a new field.
  [[gnu::always_inline]] Value* Slot(std::string_view path, std::vector<Field>* spare) {
    // The common case inline: a path not seen before, written over a field of an earlier message.
    if (!indexed_ && n_ < kLinearScanMax && n_ < v_->size()) {
      const uint64_t bit = PathBit(path);
      if ((seen_ & bit) == 0) {
        seen_ |= bit;
        Field& f = (*v_)[n_++];
        Assign(&f.path, path);
        return &f.value;
      }
    }
    return SlotSlow(path, spare);
  }

  // Slot, every case.
  [[gnu::noinline]] Value* SlotSlow(std::string_view path, std::vector<Field>* spare) {
    std::vector<Field>& v = *v_;
    if (!indexed_) {
      // Most paths are new: the scan runs only when one with the same length and last byte was
      // seen.
      const uint64_t bit = PathBit(path);
      if ((seen_ & bit) != 0) {
        for (size_t i = 0; i < n_; ++i)
          if (v[i].path == path) return &v[i].value;
      }
      seen_ |= bit;
      if (n_ < kLinearScanMax) return &Append(path, spare)->value;
      Rebuild(n_ * 4);
    }
    size_t mask = index_.size() - 1;
    size_t h = std::hash<std::string_view>()(path) & mask;
    while (index_[h] != 0) {
      Field& f = v[index_[h] - 1];
      if (f.path == path) return &f.value;
      h = (h + 1) & mask;
    }
    Field* f = Append(path, spare);
    index_[h] = static_cast<uint32_t>(n_);
    if (n_ * 2 > index_.size()) Rebuild(index_.size() * 2);
    return &f->value;
  }

  // Trims the vector to the fields of this message.
  void Finish(std::vector<Field>* spare);

 private:
  Field* Append(std::string_view path, std::vector<Field>* spare) {
    std::vector<Field>& v = *v_;
    if (n_ == v.size()) {
      if (spare->empty()) {
        v.emplace_back();
      } else {
        v.push_back(std::move(spare->back()));
        spare->pop_back();
      }
    }
    Field* f = &v[n_++];
    Assign(&f->path, path);
    return f;
  }

  void Rebuild(size_t min_size) {
    size_t size = 64;
    while (size < min_size) size *= 2;
    index_.assign(size, 0u);
    indexed_ = true;
    const size_t mask = size - 1;
    for (size_t i = 0; i < n_; ++i) {
      size_t h = std::hash<std::string_view>()((*v_)[i].path) & mask;
      while (index_[h] != 0) h = (h + 1) & mask;
      index_[h] = static_cast<uint32_t>(i + 1);
    }
  }

  static uint64_t PathBit(std::string_view path) {
    const unsigned last = path.empty() ? 0u : static_cast<unsigned char>(path.back());
    return uint64_t{1} << ((path.size() * 7 + last) & 63);
  }

  std::vector<Field>* v_ = nullptr;
  size_t n_ = 0;
  uint64_t seen_ = 0;            // PathBit of each path in v_[0, n_), while not indexed_
  std::vector<uint32_t> index_;  // open addressing; 1 + index into *v_, 0 = empty
  bool indexed_ = false;
};

// simdjson reports a malformed atom or number whose first byte gave its type as INCORRECT_TYPE;
// name the real problem instead.
simdjson::error_code ScalarError(simdjson::error_code e, od::value& v) {
  if (e != simdjson::INCORRECT_TYPE) return e;
  std::string_view raw = v.raw_json_token();
  switch (raw.empty() ? '\0' : raw[0]) {
    case 't':
      return simdjson::T_ATOM_ERROR;
    case 'f':
      return simdjson::F_ATOM_ERROR;
    case 'n':
      return simdjson::N_ATOM_ERROR;
    default:
      return simdjson::NUMBER_ERROR;
  }
}

// The text of a string token (as raw_json_token() gives it: quotes, maybe trailing spaces) when
// it has no escapes, straight from the input. This skips simdjson's unescaping copy for the
// common case; stage 1 has already validated UTF-8 and rejected raw control characters.
bool UnescapedToken(std::string_view token, std::string_view* out) {
  token = TrimRight(token);
  if (token.size() < 2 || token.front() != '"' || token.back() != '"') return false;
  token = token.substr(1, token.size() - 2);
  if (std::memchr(token.data(), '\\', token.size()) != nullptr) return false;
  *out = token;
  return true;
}

// The work of TrimTo when there is some, out of line.
[[gnu::noinline]] void TrimToSlow(std::vector<Field>* v, size_t n, std::vector<Field>* spare) {
  for (size_t i = n; i < v->size() && spare->size() < kMaxSpareFields; ++i)
    spare->push_back(std::move((*v)[i]));
  v->resize(std::min(n, v->size()));
}

// Trims `v` to `n` elements, parking the rest in `spare`. The common case, a message of the same
// shape as the last (nothing to trim), is one inline compare.
[[gnu::always_inline]] inline void TrimTo(std::vector<Field>* v, size_t n,
                                          std::vector<Field>* spare) {
  if (v->size() > n) TrimToSlow(v, n, spare);
}

void FieldSink::Finish(std::vector<Field>* spare) { TrimTo(v_, n_, spare); }

// A top-level scalar read from the message: views into the input or into the parser's string
// buffer, both valid until the end of Decode.
struct Text {
  bool present = false;
  std::string_view text;
};

// ---------------------------------------------------------------------------------------------
// The fast path: a hand-written scanner for the common message, tried before simdjson.
//
// It accepts only a strict subset of JSON (no escapes, numbers that convert exactly, strings of
// valid UTF-8 without control characters, nesting up to kFastMaxDepth) and reports anything else,
// including every error, as "not handled" so that the simdjson path decodes the message and words
// the error. What it accepts is valid JSON that the simdjson path reads to the same result; on
// the common message it is several times cheaper (no stage 1, no On-Demand iterator).
//
// Reads may go up to 15 bytes past `end`: the input always has SIMDJSON_PADDING readable bytes
// after it (see Decode), whose values never matter.

constexpr size_t kFastMaxDepth = 16;  // deeper input (still valid) goes to the simdjson path

std::atomic<bool> g_fast_path{true};

// Whether `c` is JSON whitespace.
constexpr bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Reads *end (padding) at most; compact JSON, with no space at all, costs one compare.
inline const char* SkipSpace(const char* p, const char* end) {
  while (static_cast<unsigned char>(*p) <= ' ' && p < end && IsSpace(*p)) ++p;
  return p;
}

// Checks the UTF-8 sequence starting at `p` (whose first byte is >= 0x80), as Unicode's Table 3-7
// (and simdjson) define it: no overlong forms, no surrogates, nothing above U+10FFFF. Returns the
// byte after it, or nullptr.
const char* Utf8Sequence(const char* p, const char* end) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  const unsigned char c = u[0];
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return nullptr;
  }
  if (static_cast<size_t>(end - p) < n) return nullptr;
  if (u[1] < lo || u[1] > hi) return nullptr;
  for (size_t i = 2; i < n; ++i)
    if (u[i] < 0x80 || u[i] > 0xBF) return nullptr;
  return p + n;
}

// `p` is just after an opening quote, at most at `end`. Returns the closing quote, or nullptr when
// the string is unterminated or has an escape, a control character or invalid UTF-8.
inline const char* ScanString(const char* p, const char* end) {
  for (;;) {
#if defined(__SSE2__)
    // Sixteen bytes at a time: stop at a quote, a backslash, or a byte below 0x20 or above 0x7F
    // (a signed compare catches both).
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    // p <= end here (see above), so the load stays within the padding; a hit at or past `end`
    // is refused below.
    for (;;) {
      __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      __m128i hit =
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                       _mm_cmplt_epi8(x, space));
      unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(hit));
      if (mask != 0) {
        p += __builtin_ctz(mask);
        break;
      }
      p += 16;
      if (p >= end) return nullptr;
    }
#else
    while (p < end) {
      unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
      ++p;
    }
#endif
    if (p >= end) return nullptr;
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '"') return p;
    if (c < 0x80) return nullptr;  // an escape or a control character
    p = Utf8Sequence(p, end);
    if (p == nullptr) return nullptr;
  }
}

constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

inline bool IsDigit(char c) { return static_cast<unsigned>(c - '0') <= 9; }

// The top-level members the decoder reads.
enum class RootKey : uint8_t {
  kUnknown,
  kType,
  kName,
  kEvent,
  kUserId,
  kTraits,
  kSentAt,
  kGroupId,
  kContext,
  kMessageId,
  kTimestamp,
  kProperties,
  kPreviousId,
  kAnonymousId,
  kOriginalTimestamp
};

// The key at `k` (after its opening quote): sets *end to its closing quote and returns which one
// it is when it is a key of RootKey written without escapes; else kUnknown, for the caller to
// scan. Compares each candidate with its closing quote at once instead of scanning, then
// comparing.
inline RootKey MatchRootKey(const char* k, const char* end, const char** key_end) {
  // The key and its closing quote. Inlined with a constant literal, SmallEqual becomes two or four
  // loads compared with immediates (keys over 16 bytes take two).
  auto is = [k, end, key_end](std::string_view quoted) {
    const size_t n = quoted.size();
    if (static_cast<size_t>(end - k) < n) return false;
    const bool same = n <= 16 ? SmallEqual(k, quoted.data(), n)
                              : SmallEqual(k, quoted.data(), 16) &&
                                    SmallEqual(k + 16, quoted.data() + 16, n - 16);
    if (!same) return false;
    *key_end = k + n - 1;
    return true;
  };
  switch (*k) {
    case 't':
      if (is("type\"")) return RootKey::kType;
      if (is("timestamp\"")) return RootKey::kTimestamp;
      if (is("traits\"")) return RootKey::kTraits;
      break;
    case 'u':
      if (is("userId\"")) return RootKey::kUserId;
      break;
    case 'e':
      if (is("event\"")) return RootKey::kEvent;
      break;
    case 'm':
      if (is("messageId\"")) return RootKey::kMessageId;
      break;
    case 'p':
      if (is("properties\"")) return RootKey::kProperties;
      if (is("previousId\"")) return RootKey::kPreviousId;
      break;
    case 'a':
      if (is("anonymousId\"")) return RootKey::kAnonymousId;
      break;
    case 'n':
      if (is("name\"")) return RootKey::kName;
      break;
    case 'g':
      if (is("groupId\"")) return RootKey::kGroupId;
      break;
    case 'c':
      if (is("context\"")) return RootKey::kContext;
      break;
    case 's':
      if (is("sentAt\"")) return RootKey::kSentAt;
      break;
    case 'o':
      if (is("originalTimestamp\"")) return RootKey::kOriginalTimestamp;
      break;
  }
  return RootKey::kUnknown;
}

// A JSON number at `p` (which starts with '-' or a digit). Returns its end and its value when the
// grammar is strict JSON and the value converts exactly as simdjson's own fast path does it
// (Clinger: a mantissa below 2^53 and a power of ten within +-22, so one correctly rounded
// multiplication or division), else nullptr.
[[gnu::always_inline]] inline const char* ScanNumber(const char* p, const char* end, double* out) {
  const bool negative = *p == '-';
  if (negative) ++p;
  if (p >= end || !IsDigit(*p)) return nullptr;
  uint64_t m = 0;
  // Digits are counted by where the loops stop, not one by one.
  ptrdiff_t digits = 0;
  ptrdiff_t exp10 = 0;
  if (*p == '0') {
    ++p;
  } else {
    const char* start = p;
    while (p < end && IsDigit(*p)) {
      m = m * 10 + static_cast<unsigned>(*p - '0');
      ++p;
    }
    digits = p - start;
  }
  if (p < end && *p == '.') {
    ++p;
    const char* start = p;
    while (p < end && IsDigit(*p)) {
      m = m * 10 + static_cast<unsigned>(*p - '0');
      ++p;
    }
    if (p == start) return nullptr;
    digits += p - start;
    exp10 = start - p;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    bool exp_negative = false;
    if (p < end && (*p == '+' || *p == '-')) exp_negative = *p++ == '-';
    if (p >= end || !IsDigit(*p)) return nullptr;
    // Up to three exponent digits (simdjson refuses some long exponents such as 1e000...01).
    const char* start = p;
    int e = 0;
    while (p < end && IsDigit(*p)) {
      e = e * 10 + (*p - '0');
      ++p;
      if (p - start > 3) return nullptr;
    }
    exp10 += exp_negative ? -e : e;
  }
  // A digit right after a leading 0 ("01") or any other byte glued to the number is left for the
  // caller's next-token check to reject.
  if (digits > 19 || m > 9007199254740991ull || exp10 < -22 || exp10 > 22) return nullptr;
  double d = static_cast<double>(m);
  d = exp10 < 0 ? d / kPow10[-exp10] : d * kPow10[exp10];
  *out = negative ? -d : d;
  return p;
}

// `p` at "true", "false" or "null": the byte after the literal, or nullptr.
inline const char* ScanLiteral(const char* p, const char* end, std::string_view lit) {
  if (static_cast<size_t>(end - p) < lit.size() || std::memcmp(p, lit.data(), lit.size()) != 0)
    return nullptr;
  return p + lit.size();
}

// Checks the value at `p` (strictly) and returns its end, or nullptr. `depth` is its level.
const char* SkipValue(const char* p, const char* end, size_t depth) {
  switch (*p) {
    case '"':
      p = ScanString(p + 1, end);
      return p == nullptr ? nullptr : p + 1;
    case 't':
      return ScanLiteral(p, end, "true");
    case 'f':
      return ScanLiteral(p, end, "false");
    case 'n':
      return ScanLiteral(p, end, "null");
    case '{':
    case '[': {
      if (depth + 1 > kFastMaxDepth) return nullptr;
      const bool object = *p == '{';
      const char close = object ? '}' : ']';
      p = SkipSpace(p + 1, end);
      if (p < end && *p == close) return p + 1;
      for (;;) {
        if (p >= end) return nullptr;
        if (object) {
          if (*p != '"') return nullptr;
          p = ScanString(p + 1, end);
          if (p == nullptr) return nullptr;
          p = SkipSpace(p + 1, end);
          if (p >= end || *p != ':') return nullptr;
          p = SkipSpace(p + 1, end);
          if (p >= end) return nullptr;
        }
        p = SkipValue(p, end, depth + 1);
        if (p == nullptr) return nullptr;
        p = SkipSpace(p, end);
        if (p >= end) return nullptr;
        if (*p == close) return p + 1;
        if (*p != ',') return nullptr;
        p = SkipSpace(p + 1, end);
      }
    }
    default: {
      if (*p != '-' && !IsDigit(*p)) return nullptr;
      double d;
      return ScanNumber(p, end, &d);
    }
  }
}

}  // namespace

struct Decoder::Impl {
  Impl() : copy(std::make_unique<char[]>(kMaxMessageBytes + simdjson::SIMDJSON_PADDING)) {
    // Sized once for the largest message so that iterate() never reallocates. If this fails
    // (out of memory), iterate() tries again and reports the error.
    simdjson::error_code e = parser.allocate(kMaxMessageBytes);
    (void)e;
  }

  [[gnu::always_inline]] inline Status Decode(const char* data, size_t len, size_t capacity,
                                              const DecodeOptions& opts, Message* out);

  // Parses the message at `base` with simdjson into the state that ReadRoot fills.
  [[gnu::noinline]] Status SlowParse(size_t len, size_t capacity);
  // Reads the message's top-level object.
  Status ReadRoot(od::object root);
  Status ReadContext(od::value v);
  // Reads a string (or, for ids, a number as its text); null counts as absent.
  Status ReadText(od::value v, std::string_view field, bool allow_number, Text* out);
  Status ReadTime(const Text& t, std::string_view field, Millis* out);
  // ReadTime, first trying the minute of the last time read (see minute_prefix).
  Status ReadTimeCached(const Text& t, std::string_view field, Millis* out);
  // Whether `s` is in the minute of minute_prefix; if so sets *out to its time.
  bool SameMinute(std::string_view s, Millis* out) const {
    if (s.size() != 20 || !has_minute || !SmallEqual(s.data(), minute_prefix, 16)) return false;
    const unsigned tens = static_cast<unsigned char>(s[17]) - unsigned{'0'};
    const unsigned ones = static_cast<unsigned char>(s[18]) - unsigned{'0'};
    if (s[16] != ':' || tens > 5 || ones > 9 || s[19] != 'Z') return false;
    *out = minute_start + static_cast<Millis>(tens * 10 + ones) * kSecond;
    return true;
  }
  // Flattens an object value into `sink`; `field` names it in errors ("properties").
  Status ReadObject(od::value v, std::string_view field, FieldSink* sink, bool* present);
  Status Flatten(od::object obj, size_t depth);
  Status FlattenValue(od::value v, size_t depth);
  // Appends the compact JSON text of `v` to `list`.
  Status Serialize(od::value v, size_t depth);

  // The fast path (see ScanString): parses the whole message at `base` into the same state as
  // ReadRoot. Returns false, with that state unspecified, for anything it does not handle.
  bool FastParse();
  [[gnu::always_inline]] inline const char* FastMember(const char* p, const char* end);
  const char* FastText(const char* p, const char* end, bool allow_number, Text* out);
  // kInline: the flattening inline too (for the properties of the common message).
  template <bool kInline = false>
  [[gnu::always_inline]] inline const char* FastObject(const char* p, const char* end,
                                                       FieldSink* into, bool* present);
  // kNested: depth > 1, where paths are built in `path` (the common, flat object skips that).
  template <bool kNested>
  [[gnu::noinline]] const char* FastFlatten(const char* p, const char* end, size_t depth) {
    return FastFlattenInline<kNested>(p, end, depth);
  }
  template <bool kNested>
  [[gnu::always_inline]] inline const char* FastFlattenInline(const char* p, const char* end,
                                                              size_t depth);
  const char* FastContext(const char* p, const char* end);
  // When the key at `k` (after its opening quote) is one of a text member, written without escapes
  // and followed by `":"` (no spaces), the Text it fills, with *value at the first byte of the
  // string value; else nullptr. The common member costs one dispatch and one or two compares.
  Text* CompactTextMember(const char* k, const char* end, const char** value) {
    auto is = [k, end, value](std::string_view key_colon_quote) {
      const size_t n = key_colon_quote.size();
      if (static_cast<size_t>(end - k) < n) return false;
      const bool same = n <= 16 ? SmallEqual(k, key_colon_quote.data(), n)
                                : SmallEqual(k, key_colon_quote.data(), 16) &&
                                      SmallEqual(k + 16, key_colon_quote.data() + 16, n - 16);
      if (!same) return false;
      *value = k + n;
      return true;
    };
    switch (*k) {
      case 't':
        if (is("type\":\"")) return &type;
        if (is("timestamp\":\"")) return &timestamp;
        break;
      case 'u':
        if (is("userId\":\"")) return &user_id;
        break;
      case 'e':
        if (is("event\":\"")) return &event;
        break;
      case 'm':
        if (is("messageId\":\"")) return &message_id;
        break;
      case 'a':
        if (is("anonymousId\":\"")) return &anonymous_id;
        break;
      case 'n':
        if (is("name\":\"")) return &name;
        break;
      case 'g':
        if (is("groupId\":\"")) return &group_id;
        break;
      case 's':
        if (is("sentAt\":\"")) return &sent_at;
        break;
      case 'p':
        if (is("previousId\":\"")) return &previous_id;
        break;
      case 'o':
        if (is("originalTimestamp\":\"")) return &original_timestamp;
        break;
    }
    return nullptr;
  }
  // Before properties are written into *v: `p` is at the value of "properties". Makes *v the
  // vector of fields whose first path is the first key of that object, when *v or one in `shapes`
  // is, so that most fields are overwritten by the same path and a value of about the same length
  // (nothing to copy or move) instead of taking the place of another message's (see shapes).
  [[gnu::always_inline]] inline void ChooseShape(const char* p, const char* end,
                                                 std::vector<Field>* v);
  // The Text a top-level member fills, or nullptr.
  Text* RootText(RootKey key) {
    switch (key) {
      case RootKey::kType:
        return &type;
      case RootKey::kName:
        return &name;
      case RootKey::kEvent:
        return &event;
      case RootKey::kUserId:
        return &user_id;
      case RootKey::kSentAt:
        return &sent_at;
      case RootKey::kGroupId:
        return &group_id;
      case RootKey::kMessageId:
        return &message_id;
      case RootKey::kTimestamp:
        return &timestamp;
      case RootKey::kPreviousId:
        return &previous_id;
      case RootKey::kAnonymousId:
        return &anonymous_id;
      case RootKey::kOriginalTimestamp:
        return &original_timestamp;
      default:
        return nullptr;
    }
  }
  // Resets the state that ReadRoot and FastParse fill.
  [[gnu::always_inline]] inline void ResetFields();

  // The key of `f`, from the input when it has no escapes.
  simdjson::error_code Key(od::field& f, std::string_view* out);
  // The text of a string value.
  simdjson::error_code String(od::value& v, std::string_view* out);

  // Errors.
  Status JsonError(simdjson::error_code e);
  Status DepthError();

  od::parser parser;
  od::document doc;
  std::unique_ptr<char[]> copy;  // kMaxMessageBytes + simdjson::SIMDJSON_PADDING
  const char* base = nullptr;    // the bytes being parsed
  size_t base_len = 0;

  // Fields of the current message.
  Text type, user_id, anonymous_id, message_id, event, name, group_id, previous_id,
      context_group_id, timestamp, original_timestamp, sent_at;
  bool has_properties = false, has_traits = false, has_context_traits = false;

  // The common wire format of times is "YYYY-MM-DDTHH:MM:SSZ", and a stream's consecutive times
  // mostly share their minute. When the last time read had that exact form, its first 16 bytes
  // ("YYYY-MM-DDTHH:MM", valid as ParseTime checked them) and the time of that minute are kept:
  // a time with the same 16 bytes and ":SSZ" after them is that minute plus SS seconds, which is
  // what ParseTime returns for it, without parsing the date again.
  char minute_prefix[16] = {};
  bool has_minute = false;
  Millis minute_start = 0;
  // When FastParse found the timestamp in that minute: the timestamp's text (as a pointer into the
  // input) and its time; else nullptr. Reset by ResetFields.
  const char* minute_hit = nullptr;
  Millis minute_hit_time = 0;

  // The property vectors of earlier messages, for ChooseShape. The workload interleaves a few
  // kinds of events with different properties: written into one vector, each message would
  // overwrite the fields of the last one with other paths and values, and move the fields it does
  // not need to `spare` and back. Swapping vectors instead (a vector's fields stay together, and
  // its first path names it) keeps each kind's fields in place. Which vector a message is written
  // into changes nothing else: every field written is overwritten whole.
  static constexpr size_t kShapes = 4;
  std::vector<Field> shapes[kShapes];
  size_t next_shape = 0;  // the one replaced next when no vector has the wanted first path

  FieldSink properties, traits, context_traits;
  std::vector<Field> context_traits_fields;
  std::vector<Field> spare;  // fields not in use, kept for their string buffers
  // The fields of the last message that had properties (traits) while the caller's Message has
  // none: a stream that alternates track and identify swaps vectors instead of moving each field
  // to `spare` and back.
  std::vector<Field> parked_properties, parked_traits;

  // Empties *v (which this message does not fill) by swapping it with *parked when that is free.
  void Park(std::vector<Field>* v, std::vector<Field>* parked) {
    if (v->empty()) return;
    if (parked->empty()) {
      std::swap(*v, *parked);  // *parked was empty: *v now is, and keeps no fields
    } else {
      TrimTo(v, 0, &spare);
    }
  }
  // Before decoding into *v: when it is empty, takes the parked fields back for their buffers.
  // Those the message does not fill are trimmed as usual.
  static void Unpark(std::vector<Field>* v, std::vector<Field>* parked) {
    if (v->empty() && !parked->empty()) std::swap(*v, *parked);
  }
  // Before the first traits object of a message is written: unparks the traits (not done for
  // every message, as most have no traits and would only swap them back in Park).
  void BeginTraits() {
    if (has_traits) return;  // a later duplicate goes on in the same fields
    Unpark(traits.fields(), &parked_traits);
    traits.Begin(traits.fields());
  }

  // Flattening state: the sink being written, the name of the object in errors, the dotted path
  // of the current value below it, and the list text being built.
  FieldSink* sink = nullptr;
  std::string_view field_name;
  std::string path;
  std::string list;
};

Status Decoder::Impl::JsonError(simdjson::error_code e) {
  std::string msg = "invalid JSON";
  if (e != simdjson::EMPTY && e != simdjson::UTF8_ERROR && e != simdjson::UNCLOSED_STRING) {
    const char* loc = nullptr;
    if (doc.current_location().get(loc) == simdjson::SUCCESS && loc >= base &&
        loc <= base + base_len) {
      msg.append(" at column ").append(std::to_string(loc - base + 1));
    }
  }
  msg.append(": ").append(simdjson::error_message(e));
  if (!field_name.empty()) {
    msg.append(" (in field '").append(field_name);
    if (!path.empty()) msg.append(".").append(path);
    msg.append("')");
  }
  return Status::InvalidArgument(std::move(msg));
}

simdjson::error_code Decoder::Impl::Key(od::field& f, std::string_view* out) {
  const char* raw = reinterpret_cast<const char*>(f.key().raw());
  const char* end = base + base_len;
  for (const char* p = raw; p >= base && p < end; ++p) {
    if (*p == '"') {
      *out = std::string_view(raw, static_cast<size_t>(p - raw));
      return simdjson::SUCCESS;
    }
    if (*p == '\\') break;
  }
  return f.unescaped_key().get(*out);
}

simdjson::error_code Decoder::Impl::String(od::value& v, std::string_view* out) {
  if (UnescapedToken(v.raw_json_token(), out)) return simdjson::SUCCESS;
  return v.get_string().get(*out);
}

Status Decoder::Impl::DepthError() {
  std::string f(field_name);
  if (!path.empty()) f.append(".").append(path);
  return FieldError(f, "nested deeper than 32 levels");
}

Status Decoder::Impl::ReadText(od::value v, std::string_view field, bool allow_number, Text* out) {
  field_name = field;
  od::json_type t;
  if (auto e = v.type().get(t)) return JsonError(e);
  switch (t) {
    case od::json_type::string: {
      if (auto e = String(v, &out->text)) return JsonError(e);
      out->present = true;
      return Status::Ok();
    }
    case od::json_type::number:
      if (allow_number) {
        std::string_view raw = TrimRight(v.raw_json_token());
        double d;
        if (auto e = v.get_double().get(d))
          return JsonError(ScalarError(e, v));  // validates the token
        out->text = raw;
        out->present = true;
        return Status::Ok();
      }
      break;
    case od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return JsonError(ScalarError(e, v));
      if (!is_null) return JsonError(simdjson::N_ATOM_ERROR);
      out->present = false;
      return Status::Ok();
    }
    default:
      break;
  }
  return FieldError(field, allow_number ? "expected a string or number" : "expected a string");
}

Status Decoder::Impl::ReadTime(const Text& t, std::string_view field, Millis* out) {
  std::optional<Millis> ms = ParseTime(t.text);
  if (!ms) return FieldError(field, "not an ISO 8601 time: " + Quote(t.text));
  *out = *ms;
  return Status::Ok();
}

// Whether `s` is "YYYY-MM-DDTHH:MM:SSZ" with SS in 00-59 (digits and separators only: the
// ranges of the other parts are ParseTime's to check). Sets *sec to SS.
static bool IsSecondForm(std::string_view s, unsigned* sec) {
  static constexpr char kForm[] = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != 20) return false;
  for (size_t i = 0; i < 20; ++i) {
    if (kForm[i] == 'd' ? !IsDigit(s[i]) : s[i] != kForm[i]) return false;
  }
  *sec = static_cast<unsigned>(s[17] - '0') * 10 + static_cast<unsigned>(s[18] - '0');
  return *sec <= 59;
}

Status Decoder::Impl::ReadTimeCached(const Text& t, std::string_view field, Millis* out) {
  if (SameMinute(t.text, out)) return Status::Ok();
  const std::string_view s = t.text;
  SHOAL_RETURN_IF_ERROR(ReadTime(t, field, out));
  unsigned sec;
  if (IsSecondForm(s, &sec)) {
    std::memcpy(minute_prefix, s.data(), 16);
    minute_start = *out - static_cast<Millis>(sec) * kSecond;
    has_minute = true;
  }
  return Status::Ok();
}

Status Decoder::Impl::ReadObject(od::value v, std::string_view field, FieldSink* into,
                                 bool* present) {
  field_name = field;
  od::json_type t;
  if (auto e = v.type().get(t)) return JsonError(e);
  if (t == od::json_type::null) {
    bool is_null = false;
    if (auto e = v.is_null().get(is_null)) return JsonError(ScalarError(e, v));
    if (!is_null) return JsonError(simdjson::N_ATOM_ERROR);
    return Status::Ok();
  }
  if (t != od::json_type::object) return FieldError(field, "expected an object");
  od::object obj;
  if (auto e = v.get_object().get(obj)) return JsonError(e);
  *present = true;
  sink = into;
  path.clear();
  return Flatten(obj, 1);
}

Status Decoder::Impl::Flatten(od::object obj, size_t depth) {
  for (auto f : obj) {
    od::field field;
    if (auto e = std::move(f).get(field)) return JsonError(e);
    std::string_view key;
    if (auto e = Key(field, &key)) return JsonError(e);
    const size_t prefix = path.size();
    if (depth > 1) path.push_back('.');
    path.append(key);
    SHOAL_RETURN_IF_ERROR(FlattenValue(field.value(), depth));
    path.resize(prefix);
  }
  return Status::Ok();
}

// `v` is a member of an object at level `depth`; `path` names it.
Status Decoder::Impl::FlattenValue(od::value v, size_t depth) {
  od::json_type t;
  if (auto e = v.type().get(t)) return JsonError(e);
  switch (t) {
    case od::json_type::object: {
      if (depth + 1 > kMaxDepth) return DepthError();
      od::object obj;
      if (auto e = v.get_object().get(obj)) return JsonError(e);
      return Flatten(obj, depth + 1);
    }
    case od::json_type::array: {
      if (depth + 1 > kMaxDepth) return DepthError();
      list.clear();
      SHOAL_RETURN_IF_ERROR(Serialize(v, depth + 1));
      Value* out = sink->Slot(path, &spare);
      out->type = ValueType::kList;
      out->b = false;
      out->num = 0;
      Assign(&out->str, list);
      return Status::Ok();
    }
    case od::json_type::string: {
      std::string_view s;
      if (auto e = String(v, &s)) return JsonError(e);
      Value* out = sink->Slot(path, &spare);
      out->type = ValueType::kString;
      out->b = false;
      out->num = 0;
      Assign(&out->str, s);
      return Status::Ok();
    }
    case od::json_type::number: {
      double d;
      if (auto e = v.get_double().get(d)) return JsonError(ScalarError(e, v));
      Value* out = sink->Slot(path, &spare);
      SetNull(out);
      out->type = ValueType::kNumber;
      out->num = d;
      return Status::Ok();
    }
    case od::json_type::boolean: {
      bool b;
      if (auto e = v.get_bool().get(b)) return JsonError(ScalarError(e, v));
      Value* out = sink->Slot(path, &spare);
      SetNull(out);
      out->type = ValueType::kBool;
      out->b = b;
      return Status::Ok();
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return JsonError(ScalarError(e, v));
      if (!is_null) return JsonError(simdjson::N_ATOM_ERROR);
      SetNull(sink->Slot(path, &spare));
      return Status::Ok();
    }
  }
  return JsonError(simdjson::TAPE_ERROR);
}

// `v` is at level `depth` (an array or object inside a list when depth > its list's level).
Status Decoder::Impl::Serialize(od::value v, size_t depth) {
  od::json_type t;
  if (auto e = v.type().get(t)) return JsonError(e);
  switch (t) {
    case od::json_type::array: {
      od::array arr;
      if (auto e = v.get_array().get(arr)) return JsonError(e);
      list.push_back('[');
      bool first = true;
      for (auto el : arr) {
        od::value item;
        if (auto e = std::move(el).get(item)) return JsonError(e);
        if (!first) list.push_back(',');
        first = false;
        od::json_type it;
        if (auto e = item.type().get(it)) return JsonError(e);
        if ((it == od::json_type::array || it == od::json_type::object) && depth + 1 > kMaxDepth)
          return DepthError();
        SHOAL_RETURN_IF_ERROR(Serialize(item, depth + 1));
      }
      list.push_back(']');
      return Status::Ok();
    }
    case od::json_type::object: {
      od::object obj;
      if (auto e = v.get_object().get(obj)) return JsonError(e);
      list.push_back('{');
      bool first = true;
      for (auto f : obj) {
        od::field field;
        if (auto e = std::move(f).get(field)) return JsonError(e);
        std::string_view key;
        if (auto e = Key(field, &key)) return JsonError(e);
        if (!first) list.push_back(',');
        first = false;
        AppendJsonString(key, &list);
        list.push_back(':');
        od::value item = field.value();
        od::json_type it;
        if (auto e = item.type().get(it)) return JsonError(e);
        if ((it == od::json_type::array || it == od::json_type::object) && depth + 1 > kMaxDepth)
          return DepthError();
        SHOAL_RETURN_IF_ERROR(Serialize(item, depth + 1));
      }
      list.push_back('}');
      return Status::Ok();
    }
    case od::json_type::string: {
      std::string_view s;
      if (auto e = String(v, &s)) return JsonError(e);
      AppendJsonString(s, &list);
      return Status::Ok();
    }
    case od::json_type::number: {
      std::string_view raw = TrimRight(v.raw_json_token());
      double d;
      if (auto e = v.get_double().get(d))
        return JsonError(ScalarError(e, v));  // validates the token
      list.append(raw);
      return Status::Ok();
    }
    case od::json_type::boolean: {
      bool b;
      if (auto e = v.get_bool().get(b)) return JsonError(ScalarError(e, v));
      list.append(b ? "true" : "false");
      return Status::Ok();
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return JsonError(ScalarError(e, v));
      if (!is_null) return JsonError(simdjson::N_ATOM_ERROR);
      list.append("null");
      return Status::Ok();
    }
  }
  return JsonError(simdjson::TAPE_ERROR);
}

Status Decoder::Impl::ReadContext(od::value v) {
  field_name = "context";
  od::json_type t;
  if (auto e = v.type().get(t)) return JsonError(e);
  if (t == od::json_type::null) {
    bool is_null = false;
    if (auto e = v.is_null().get(is_null)) return JsonError(ScalarError(e, v));
    if (!is_null) return JsonError(simdjson::N_ATOM_ERROR);
    return Status::Ok();
  }
  if (t != od::json_type::object) return FieldError("context", "expected an object");
  od::object obj;
  if (auto e = v.get_object().get(obj)) return JsonError(e);
  for (auto f : obj) {
    field_name = "context";
    od::field field;
    if (auto e = std::move(f).get(field)) return JsonError(e);
    std::string_view key;
    if (auto e = Key(field, &key)) return JsonError(e);
    if (key == "groupId") {
      SHOAL_RETURN_IF_ERROR(ReadText(field.value(), "context.groupId", true, &context_group_id));
    } else if (key == "traits") {
      SHOAL_RETURN_IF_ERROR(
          ReadObject(field.value(), "context.traits", &context_traits, &has_context_traits));
    }
  }
  return Status::Ok();
}

// Reads each member once, in input order, dispatching on the key: On-Demand is forward-only.
Status Decoder::Impl::ReadRoot(od::object root) {
  for (auto f : root) {
    field_name = {};
    path.clear();
    od::field field;
    if (auto e = std::move(f).get(field)) return JsonError(e);
    std::string_view key;
    if (auto e = Key(field, &key)) return JsonError(e);
    od::value v = field.value();
    switch (key.size()) {
      case 4:
        if (key == "type") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "type", false, &type));
        } else if (key == "name") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "name", false, &name));
        }
        break;
      case 5:
        if (key == "event") SHOAL_RETURN_IF_ERROR(ReadText(v, "event", false, &event));
        break;
      case 6:
        if (key == "userId") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "userId", true, &user_id));
        } else if (key == "traits") {
          BeginTraits();
          SHOAL_RETURN_IF_ERROR(ReadObject(v, "traits", &traits, &has_traits));
        } else if (key == "sentAt") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "sentAt", false, &sent_at));
        }
        break;
      case 7:
        if (key == "groupId") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "groupId", true, &group_id));
        } else if (key == "context") {
          SHOAL_RETURN_IF_ERROR(ReadContext(v));
        }
        break;
      case 9:
        if (key == "messageId") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "messageId", true, &message_id));
        } else if (key == "timestamp") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "timestamp", false, &timestamp));
        }
        break;
      case 10:
        if (key == "properties") {
          SHOAL_RETURN_IF_ERROR(ReadObject(v, "properties", &properties, &has_properties));
        } else if (key == "previousId") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "previousId", true, &previous_id));
        }
        break;
      case 11:
        if (key == "anonymousId") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "anonymousId", true, &anonymous_id));
        }
        break;
      case 17:
        if (key == "originalTimestamp") {
          SHOAL_RETURN_IF_ERROR(ReadText(v, "originalTimestamp", false, &original_timestamp));
        }
        break;
      default:
        break;  // unknown members are skipped by the iterator
    }
  }
  field_name = {};
  path.clear();
  return Status::Ok();
}

void Decoder::Impl::ResetFields() {
  type = user_id = anonymous_id = message_id = event = name = group_id = previous_id =
      context_group_id = timestamp = original_timestamp = sent_at = Text{};
  has_properties = has_traits = has_context_traits = false;
  minute_hit = nullptr;
  field_name = {};
  path.clear();
}

void Decoder::Impl::ChooseShape(const char* p, const char* end, std::vector<Field>* v) {
  if (end - p < 3 || p[0] != '{' || p[1] != '"') return;
  const char* k = p + 2;
  // The length of the first key when its closing quote is among the next 32 bytes (kinds are
  // told apart by first paths of up to 31 bytes, compared inline); found once, not for each
  // candidate. The load may read up to 15 bytes past `end`, into the padding; a longer key is
  // measured out of line (LongKeyLength), as it is compared (LongKeyEqual).
  size_t n = SIZE_MAX;
#if defined(__SSE2__)
  const unsigned quotes = static_cast<unsigned>(_mm_movemask_epi8(
      _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k)), _mm_set1_epi8('"'))));
  n = quotes != 0 ? static_cast<size_t>(__builtin_ctz(quotes)) : LongKeyLength(k, end);
#else
  for (size_t i = 0; i < 16 && i < static_cast<size_t>(end - k); ++i) {
    if (k[i] == '"') {
      n = i;
      break;
    }
  }
  if (n == SIZE_MAX) n = LongKeyLength(k, end);
#endif
  if (n != SIZE_MAX && static_cast<size_t>(end - k) <= n) n = SIZE_MAX;  // matches no kept vector
  auto starts_with_key = [k, n](const std::vector<Field>& fields) {
    if (fields.empty()) return false;
    const std::string& first = fields[0].path;
    if (first.size() != n) return false;
    return n <= 16 ? SmallEqual(k, first.data(), n) : LongKeyEqual(k, first.data(), n);
  };
  if (starts_with_key(*v)) return;
  for (std::vector<Field>& kept : shapes) {
    if (starts_with_key(kept)) {
      std::swap(*v, kept);
      return;
    }
  }
  // None has it: keep *v's fields for a later message of their kind, in place of the oldest kept.
  if (!v->empty()) {
    std::swap(*v, shapes[next_shape]);
    next_shape = (next_shape + 1) % kShapes;
  }
}

// As ReadText, for a value at `p`; returns its end or nullptr.
const char* Decoder::Impl::FastText(const char* p, const char* end, bool allow_number, Text* out) {
  if (*p == '"') {
    const char* q = ScanString(p + 1, end);
    if (q == nullptr) return nullptr;
    out->text = std::string_view(p + 1, static_cast<size_t>(q - p - 1));
    out->present = true;
    return q + 1;
  }
  if (*p == 'n') {
    p = ScanLiteral(p, end, "null");
    if (p != nullptr) out->present = false;  // as ReadText: the text of an earlier duplicate stays
    return p;
  }
  if (allow_number && (*p == '-' || IsDigit(*p))) {
    double d;
    const char* q = ScanNumber(p, end, &d);
    if (q == nullptr) return nullptr;
    out->text = std::string_view(p, static_cast<size_t>(q - p));
    out->present = true;
    return q;
  }
  return nullptr;
}

// As ReadObject.
template <bool kInline>
const char* Decoder::Impl::FastObject(const char* p, const char* end, FieldSink* into,
                                      bool* present) {
  if (*p == 'n') return ScanLiteral(p, end, "null");
  if (*p != '{') return nullptr;
  *present = true;
  sink = into;
  path.clear();
  if constexpr (kInline) return FastFlattenInline<false>(p + 1, end, 1);
  return FastFlatten<false>(p + 1, end, 1);
}

// As Flatten, for the members after an object's '{'; returns the byte after its '}'.
template <bool kNested>
const char* Decoder::Impl::FastFlattenInline(const char* p, const char* end, size_t depth) {
  p = SkipSpace(p, end);
  if (p < end && *p == '}') return p + 1;
  for (;;) {
    if (p >= end || *p != '"') return nullptr;
    const char* k = p + 1;
    const char* q = ScanString(k, end);
    if (q == nullptr) return nullptr;
    const std::string_view key(k, static_cast<size_t>(q - k));
    if (end - q > 2 && q[1] == ':' && static_cast<unsigned char>(q[2]) > ' ') {
      p = q + 2;  // compact: the colon and the value right after the key
    } else {
      p = SkipSpace(q + 1, end);
      if (p >= end || *p != ':') return nullptr;
      p = SkipSpace(p + 1, end);
      if (p >= end) return nullptr;
    }

    // The path of this member: the key itself at level 1, else built in `path`.
    const size_t prefix = kNested ? path.size() : 0;
    std::string_view member_path = key;
    if constexpr (kNested) {
      path.push_back('.');
      path.append(key);
      member_path = path;
    }
    Value* v;
    switch (*p) {
      case '"': {
        q = ScanString(p + 1, end);
        if (q == nullptr) return nullptr;
        v = sink->Slot(member_path, &spare);
        v->type = ValueType::kString;
        v->b = false;
        v->num = 0;
        Assign(&v->str, std::string_view(p + 1, static_cast<size_t>(q - p - 1)));
        p = q + 1;
        break;
      }
      case '{':
        if (depth + 1 > kFastMaxDepth) return nullptr;
        if (!kNested) path.assign(key);  // the nested members' paths start from this key
        p = FastFlatten<true>(p + 1, end, depth + 1);
        if (p == nullptr) return nullptr;
        if (!kNested) path.clear();
        break;
      case 't':
      case 'f': {
        const bool b = *p == 't';
        p = ScanLiteral(p, end, b ? "true" : "false");
        if (p == nullptr) return nullptr;
        v = sink->Slot(member_path, &spare);
        SetNull(v);
        v->type = ValueType::kBool;
        v->b = b;
        break;
      }
      case 'n':
        p = ScanLiteral(p, end, "null");
        if (p == nullptr) return nullptr;
        SetNull(sink->Slot(member_path, &spare));
        break;
      default: {
        if (*p != '-' && !IsDigit(*p)) return nullptr;  // '[' (a list) included
        double d;
        p = ScanNumber(p, end, &d);
        if (p == nullptr) return nullptr;
        v = sink->Slot(member_path, &spare);
        SetNull(v);
        v->type = ValueType::kNumber;
        v->num = d;
        break;
      }
    }
    if (kNested) path.resize(prefix);

    if (end - p > 1 && p[0] == ',' && p[1] == '"') {  // compact: the next key right after
      ++p;
      continue;
    }
    p = SkipSpace(p, end);
    if (p >= end) return nullptr;
    if (*p == '}') return p + 1;
    if (*p != ',') return nullptr;
    p = SkipSpace(p + 1, end);
  }
}

// As ReadContext.
const char* Decoder::Impl::FastContext(const char* p, const char* end) {
  if (*p == 'n') return ScanLiteral(p, end, "null");
  if (*p != '{') return nullptr;
  p = SkipSpace(p + 1, end);
  if (p < end && *p == '}') return p + 1;
  for (;;) {
    if (p >= end || *p != '"') return nullptr;
    const char* k = p + 1;
    const char* q = ScanString(k, end);
    if (q == nullptr) return nullptr;
    const std::string_view key(k, static_cast<size_t>(q - k));
    p = SkipSpace(q + 1, end);
    if (p >= end || *p != ':') return nullptr;
    p = SkipSpace(p + 1, end);
    if (p >= end) return nullptr;
    if (key == "groupId") {
      p = FastText(p, end, true, &context_group_id);
    } else if (key == "traits") {
      p = FastObject(p, end, &context_traits, &has_context_traits);
    } else {
      p = SkipValue(p, end, 2);
    }
    if (p == nullptr) return nullptr;
    p = SkipSpace(p, end);
    if (p >= end) return nullptr;
    if (*p == '}') return p + 1;
    if (*p != ',') return nullptr;
    p = SkipSpace(p + 1, end);
  }
}

// As one member of ReadRoot: `p` is at the key's opening quote. Returns the byte after the value,
// or nullptr.
[[gnu::always_inline]] inline const char* Decoder::Impl::FastMember(const char* p,
                                                                    const char* end) {
  if (p >= end || *p != '"') return nullptr;
  const char* next = nullptr;
  // The common member first: a text member with a string value, written compactly.
  const char* value = nullptr;
  if (Text* compact = CompactTextMember(p + 1, end, &value)) {
    next = ScanString(value, end);
    if (next == nullptr) return nullptr;
    compact->text = std::string_view(value, static_cast<size_t>(next - value));
    compact->present = true;
    return next + 1;
  }
  if (end - p > 13 && SmallEqual(p + 1, "properties\":{", 13)) {
    // The other common member, also compact: as the kProperties case below.
    const char* object = p + 13;  // at '{'
    if (properties.size() == 0) ChooseShape(object, end, properties.fields());
    return FastObject(object, end, &properties, &has_properties);
  }
  // A key with escapes is not handled (and may still be one of ours): ScanString refuses it.
  const char* k = p + 1;
  const char* q = nullptr;
  const RootKey key = MatchRootKey(k, end, &q);
  if (key == RootKey::kUnknown) q = ScanString(k, end);
  if (q == nullptr) return nullptr;
  p = SkipSpace(q + 1, end);
  if (p >= end || *p != ':') return nullptr;
  p = SkipSpace(p + 1, end);
  if (p >= end) return nullptr;
  // The dispatch of ReadRoot; a string for a text member, the common case, is read here.
  Text* text = RootText(key);
  if (text != nullptr && *p == '"') {
    next = ScanString(p + 1, end);
    if (next == nullptr) return nullptr;
    text->text = std::string_view(p + 1, static_cast<size_t>(next - p - 1));
    text->present = true;
    return next + 1;
  }
  switch (key) {
    case RootKey::kType:
      return FastText(p, end, false, &type);
    case RootKey::kName:
      return FastText(p, end, false, &name);
    case RootKey::kEvent:
      return FastText(p, end, false, &event);
    case RootKey::kUserId:
      return FastText(p, end, true, &user_id);
    case RootKey::kTraits:
      BeginTraits();
      return FastObject(p, end, &traits, &has_traits);
    case RootKey::kSentAt:
      return FastText(p, end, false, &sent_at);
    case RootKey::kGroupId:
      return FastText(p, end, true, &group_id);
    case RootKey::kContext:
      return FastContext(p, end);
    case RootKey::kMessageId:
      return FastText(p, end, true, &message_id);
    case RootKey::kTimestamp:
      return FastText(p, end, false, &timestamp);
    case RootKey::kProperties:
      if (properties.size() == 0) ChooseShape(p, end, properties.fields());
      return FastObject(p, end, &properties, &has_properties);
    case RootKey::kPreviousId:
      return FastText(p, end, true, &previous_id);
    case RootKey::kAnonymousId:
      return FastText(p, end, true, &anonymous_id);
    case RootKey::kOriginalTimestamp:
      return FastText(p, end, false, &original_timestamp);
    case RootKey::kUnknown:
      return SkipValue(p, end, 1);
  }
  return nullptr;
}

bool Decoder::Impl::FastParse() {
  const char* p = base;
  const char* const end = base + base_len;
  const char* next = nullptr;  // the byte after the value of the last member read
  if (end - p >= 9 && SmallEqual(p, "{\"type\":\"", 9)) {
    // The common message: compact, its members in the usual order. Each is taken with one compare
    // of its key and the punctuation around it (the general dispatch of FastMember costs more),
    // absent ones are passed over, and at the first other member the loop below goes on from
    // there. Reading members in this order is reading them as FastMember does, one after the
    // other, so the state is the same.
    next = p + 8;
    // Whether the bytes at `next` are `lit`, which ends with the value's first byte.
    auto at = [&next, end](std::string_view lit) {
      return static_cast<size_t>(end - next) >= lit.size() &&
             SmallEqual(next, lit.data(), lit.size());
    };
    // Reads the string value starting after the literal of `n` bytes at `next` into *t.
    auto text = [&next, end](size_t n, Text* t) {
      const char* v = next + n;
      const char* q = ScanString(v, end);
      if (q == nullptr) return false;
      t->text = std::string_view(v, static_cast<size_t>(q - v));
      t->present = true;
      next = q + 1;
      return true;
    };
    // The type, most often one of two words that need no scan: "track" or "identify", then a
    // comma (the quote closes the string: no scan needed to know the text has no escape).
    if (end - next >= 12 && SmallEqual(next + 1, "track\",", 7)) {
      type.text = std::string_view(next + 1, 5);
      type.present = true;
      next += 7;
    } else if (end - next >= 12 && SmallEqual(next + 1, "identify\",", 10)) {
      type.text = std::string_view(next + 1, 8);
      type.present = true;
      next += 10;
    } else if (!text(1, &type)) {
      return false;
    }
    if (at(",\"messageId\":\"") && !text(14, &message_id)) return false;
    if (at(",\"userId\":\"") && !text(11, &user_id)) return false;
    if (at(",\"event\":\"") && !text(10, &event)) return false;
    if (at(",\"properties\":{")) {
      const char* object = next + 14;  // at '{'
      if (properties.size() == 0) ChooseShape(object, end, properties.fields());
      next = FastObject<true>(object, end, &properties, &has_properties);
      if (next == nullptr) return false;
    } else {
      // An identify or group call (a track call with traits goes on in the loop below).
      if (at(",\"groupId\":\"") && !text(12, &group_id)) return false;
      if (at(",\"traits\":{")) {
        BeginTraits();
        next = FastObject(next + 10, end, &traits, &has_traits);
        if (next == nullptr) return false;
      }
    }
    if (at(",\"timestamp\":\"")) {
      // A time in the minute of the last one (see minute_prefix) is "YYYY-MM-DDTHH:MM" (no byte
      // that could end the string or need a check), then ":SSZ" and the closing quote: the
      // string ScanString would find, without its scan.
      const char* v = next + 14;
      const unsigned tens = static_cast<unsigned char>(v[17]) - unsigned{'0'};
      const unsigned ones = static_cast<unsigned char>(v[18]) - unsigned{'0'};
      if (has_minute && end - v > 20 && SmallEqual(v, minute_prefix, 16) && v[16] == ':' &&
          tens <= 5 && ones <= 9 && v[19] == 'Z' && v[20] == '"') {
        timestamp.text = std::string_view(v, 20);
        timestamp.present = true;
        next = v + 21;
        // What SameMinute will find for it, found now.
        minute_hit = v;
        minute_hit_time = minute_start + static_cast<Millis>(tens * 10 + ones) * kSecond;
      } else if (!text(14, &timestamp)) {
        return false;
      }
    }
  } else {
    p = SkipSpace(p, end);
    if (p >= end || *p != '{') return false;
    p = SkipSpace(p + 1, end);
    if (p < end && *p == '}') {
      if (SkipSpace(p + 1, end) != end) return false;
      field_name = {};
      path.clear();
      return true;
    }
    next = FastMember(p, end);
    if (next == nullptr) return false;
  }
  for (;;) {
    // Compact: a comma and the next key's quote.
    if (end - next > 1 && next[0] == ',' && next[1] == '"') {
      p = next + 1;
    } else {
      p = SkipSpace(next, end);
      if (p >= end) return false;
      if (*p == '}') {
        ++p;
        break;
      }
      if (*p != ',') return false;
      p = SkipSpace(p + 1, end);
    }
    next = FastMember(p, end);
    if (next == nullptr) return false;
  }
  if (SkipSpace(p, end) != end) return false;
  field_name = {};
  path.clear();
  return true;
}

Status Decoder::Impl::Decode(const char* data, size_t len, size_t capacity,
                             const DecodeOptions& opts, Message* out) {
  // Parse in place when the caller's buffer has simdjson's padding, else from a padded copy.
  if (data != nullptr && capacity >= len && capacity - len >= simdjson::SIMDJSON_PADDING) {
    base = data;
  } else {
    if (len > 0) std::memcpy(copy.get(), data, len);
    std::memset(copy.get() + len, 0, simdjson::SIMDJSON_PADDING);
    base = copy.get();
    capacity = len + simdjson::SIMDJSON_PADDING;
  }
  base_len = len;

  ResetFields();
  Unpark(&out->properties, &parked_properties);  // the traits: in BeginTraits, if any
  properties.Begin(&out->properties);
  traits.Begin(&out->traits);
  context_traits.Begin(&context_traits_fields);

  bool parsed = false;
  if (g_fast_path.load(std::memory_order_relaxed)) {
    parsed = FastParse();
    if (!parsed) {  // not handled: start again with simdjson
      ResetFields();
      properties.Begin(&out->properties);
      traits.Begin(&out->traits);
      context_traits.Begin(&context_traits_fields);
    }
  }
  // On an error, the fields written so far are trimmed as usual.
  auto fail = [this](Status st) {
    properties.Finish(&spare);
    traits.Finish(&spare);
    return st;
  };
  if (!parsed) {
    Status st = SlowParse(len, capacity);
    if (!st.ok()) return fail(std::move(st));
  }

  // Type.
  std::string_view type_text = type.present ? type.text : opts.default_type;
  if (!type.present && type_text.empty()) return fail(FieldError("type", "required"));
  std::optional<MessageType> mt = ParseType(type_text);
  if (!mt) return fail(FieldError("type", "unknown message type " + Quote(type_text)));
  if (user_id.text.empty() && anonymous_id.text.empty())
    return fail(FieldError("userId", "a userId or anonymousId is required"));
  if (*mt == MessageType::kTrack && event.text.empty())
    return fail(FieldError("event", "required for a track call"));
  if (*mt == MessageType::kGroup && group_id.text.empty())
    return fail(FieldError("groupId", "required for a group call"));
  if (*mt == MessageType::kAlias && previous_id.text.empty())
    return fail(FieldError("previousId", "required for an alias call"));

  // Times.
  Millis ts = 0, sent = 0;
  bool has_ts = false;
  if (timestamp.present) {
    if (minute_hit != nullptr && timestamp.text.data() == minute_hit) {
      ts = minute_hit_time;
    } else if (!SameMinute(timestamp.text, &ts)) {
      Status st = ReadTimeCached(timestamp, "timestamp", &ts);
      if (!st.ok()) return fail(std::move(st));
    }
    has_ts = true;
  } else if (original_timestamp.present) {
    Status st = ReadTimeCached(original_timestamp, "originalTimestamp", &ts);
    if (!st.ok()) return fail(std::move(st));
    has_ts = true;
  }
  if (sent_at.present) {
    Status st = ReadTimeCached(sent_at, "sentAt", &sent);
    if (!st.ok()) return fail(std::move(st));
  }
  if (!has_ts) {
    ts = opts.received_at != 0 ? opts.received_at : opts.now;
  } else if ((sent_at.present || opts.sent_at != 0) && opts.received_at > 0) {
    if (!sent_at.present) sent = opts.sent_at;
    // Client clock skew: the client's clock read sentAt when the server's read received_at.
    // Both times come from ParseTime (years 0000-9999), so only received_at can overflow.
    Millis skew = sent - ts;
    if (__builtin_sub_overflow(opts.received_at, skew, &ts)) ts = skew > 0 ? kMinTime : kMaxTime;
  }

  // Each string is assigned once (not cleared, then assigned), so that one equal to the last
  // message's is left as it is (see Assign).
  out->type = *mt;
  Assign(&out->user_id, user_id.text);
  AssignRare(&out->anonymous_id, anonymous_id.text);
  Assign(&out->message_id, message_id.text);
  out->timestamp = ts;
  out->received_at = opts.received_at;
  const std::string_view none;
  Assign(&out->event, *mt == MessageType::kTrack ? event.text : none);
  AssignRare(&out->name,
             *mt == MessageType::kPage || *mt == MessageType::kScreen ? name.text : none);
  std::string_view group = *mt == MessageType::kGroup ? group_id.text : none;
  if (group.empty()) group = context_group_id.text;
  AssignRare(&out->group_id, group);
  AssignRare(&out->previous_id, *mt == MessageType::kAlias ? previous_id.text : none);

  const bool keeps_properties =
      *mt == MessageType::kTrack || *mt == MessageType::kPage || *mt == MessageType::kScreen;
  if (keeps_properties) {
    properties.Finish(&spare);
  } else {
    Park(&out->properties, &parked_properties);
  }

  const bool keeps_traits = *mt == MessageType::kIdentify || *mt == MessageType::kGroup;
  if (*mt == MessageType::kIdentify && !has_traits && has_context_traits) {
    // Hand context.traits over by swapping the vectors, so that no string is copied.
    const size_t n = context_traits.size();
    traits.Begin(&out->traits);
    traits.Finish(&spare);
    std::swap(out->traits, context_traits_fields);
    TrimTo(&out->traits, n, &spare);
  } else if (keeps_traits) {
    traits.Finish(&spare);
  } else {
    Park(&out->traits, &parked_traits);
  }
  return Status::Ok();
}

Status Decoder::Impl::SlowParse(size_t len, size_t capacity) {
  if (auto e = parser.iterate(base, len, capacity).get(doc)) {
    return Status::InvalidArgument(std::string("invalid JSON: ") + simdjson::error_message(e));
  }
  od::json_type t;
  if (auto e = doc.type().get(t)) return JsonError(e);
  if (t != od::json_type::object) {
    return Status::InvalidArgument("invalid JSON at column 1: expected an object");
  }
  od::object root;
  if (auto e = doc.get_object().get(root)) return JsonError(e);
  SHOAL_RETURN_IF_ERROR(ReadRoot(root));
  const char* rest = nullptr;
  if (doc.current_location().get(rest) == simdjson::SUCCESS)
    return JsonError(simdjson::TRAILING_CONTENT);
  return Status::Ok();
}

namespace internal {
void SetFastPathForTesting(bool enabled) { g_fast_path.store(enabled); }
}  // namespace internal

Decoder::Decoder() : impl_(std::make_unique<Impl>()) {}

Decoder::~Decoder() = default;

Status Decoder::Decode(const char* data, size_t len, size_t capacity, const DecodeOptions& opts,
                       Message* out) {
  if (len > kMaxMessageBytes) {
    return Status::InvalidArgument("message is " + std::to_string(len) +
                                   " bytes, over the 32 KB limit");
  }
  return impl_->Decode(data, len, capacity, opts, out);
}

}  // namespace shoal::ingest
