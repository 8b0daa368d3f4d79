#include "shoal/time.h"

#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace shoal {
namespace {

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t yy = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yy + (*m <= 2);
}

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

unsigned DaysInMonth(int64_t y, unsigned m) {
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

}  // namespace

namespace {

// Eight bytes at `p` as an integer whose lowest byte is p[0].
inline uint64_t Load8(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// A pattern of eight bytes: 'd' stands for a digit, any other byte for itself.
struct Pattern {
  uint64_t mask = 0;  // the bits compared: the high nibble of a digit, all of a literal byte
  uint64_t bits = 0;  // their expected values
  uint64_t add = 0;   // 6 in each digit byte: pushes ':' to '?' out of the 0x3_ range
};

constexpr Pattern MakePattern(const char (&pat)[9]) {
  Pattern p;
  for (int i = 0; i < 8; ++i) {
    const bool digit = pat[i] == 'd';
    const uint64_t shift = 8 * i;
    p.mask |= uint64_t{digit ? 0xF0u : 0xFFu} << shift;
    p.bits |= uint64_t{digit ? 0x30u : static_cast<unsigned char>(pat[i])} << shift;
    p.add |= uint64_t{digit ? 0x06u : 0u} << shift;
  }
  return p;
}

// Whether `v` matches: the first test leaves digit bytes in 0x30-0x3F, so adding 6 carries out of
// no byte and the second test sees each byte on its own.
inline bool Matches(uint64_t v, const Pattern& p) {
  return ((v & p.mask) ^ p.bits) == 0 && (((v + p.add) & p.mask) ^ p.bits) == 0;
}

constexpr Pattern kDate = MakePattern("dddd-dd-");     // bytes 0-7
constexpr Pattern kDayHour = MakePattern("ddTdd:dd");  // bytes 8-15
constexpr Pattern kSeconds = MakePattern("d:dd:ddZ");  // bytes 12-19

}  // namespace

// The common wire format, "YYYY-MM-DDTHH:MM:SSZ" (s.size() == 20), with the layout checked eight
// bytes at a time. Returns nullopt for anything else, which the general parser then reads.
static std::optional<Millis> ParseTimeFast(std::string_view s) {
  const char* p = s.data();
  if (!Matches(Load8(p), kDate) || !Matches(Load8(p + 8), kDayHour) ||
      !Matches(Load8(p + 12), kSeconds))
    return std::nullopt;
  auto dd = [p](int i) { return static_cast<unsigned>(p[i] - '0') * 10 + (p[i + 1] - '0'); };
  const unsigned y = dd(0) * 100 + dd(2);
  const unsigned mo = dd(5), d = dd(8), h = dd(11), mi = dd(14), sec = dd(17);
  if (mo - 1 > 11 || d == 0 || h > 23 || mi > 59 || sec > 59) return std::nullopt;
  if (d > 28 && d > DaysInMonth(y, mo)) return std::nullopt;
  return ((DaysFromCivil(y, mo, d) * 24 + h) * 60 + mi) * kMinute + sec * kSecond;
}

// Every form ParseTime reads. Out of line, so that the fast path's caller does not pay for its
// stack frame.
[[gnu::noinline]] static std::optional<Millis> ParseTimeGeneral(std::string_view s) {
  int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
  if (!Digits(s, 0, 4, &y) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, &mo) ||
      s[7] != '-' || !Digits(s, 8, 2, &d))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > static_cast<int>(DaysInMonth(y, mo))) return std::nullopt;
  size_t p = 10;
  int64_t offset_min = 0;
  if (p < s.size()) {
    if (s[p] != 'T' && s[p] != 't' && s[p] != ' ') return std::nullopt;
    ++p;
    if (!Digits(s, p, 2, &h) || p + 2 >= s.size() || s[p + 2] != ':' || !Digits(s, p + 3, 2, &mi))
      return std::nullopt;
    p += 5;
    if (p < s.size() && s[p] == ':') {
      if (!Digits(s, p + 1, 2, &sec)) return std::nullopt;
      p += 3;
      if (p < s.size() && (s[p] == '.' || s[p] == ',')) {
        ++p;
        size_t start = p;
        int scale = 100;
        while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
          ms += (s[p] - '0') * scale;  // digits past the third are truncated
          scale /= 10;
          ++p;
        }
        if (p == start) return std::nullopt;
      }
    }
    if (h > 23 || mi > 59 || sec > 60) return std::nullopt;
    if (sec == 60) sec = 59;  // a leap second is clamped
    if (p < s.size()) {
      if (s[p] == 'Z' || s[p] == 'z') {
        ++p;
      } else if (s[p] == '+' || s[p] == '-') {
        int oh, om;
        int sign = s[p] == '-' ? -1 : 1;
        if (!Digits(s, p + 1, 2, &oh)) return std::nullopt;
        size_t q = p + 3;
        if (q < s.size() && s[q] == ':') ++q;
        if (!Digits(s, q, 2, &om) || oh > 23 || om > 59) return std::nullopt;
        offset_min = sign * (oh * 60 + om);
        p = q + 2;
      }
    }
    if (p != s.size()) return std::nullopt;
  }
  int64_t days = DaysFromCivil(y, mo, d);
  return ((days * 24 + h) * 60 + mi - offset_min) * kMinute + sec * kSecond + ms;
}

std::optional<Millis> ParseTime(std::string_view s) {
  if (s.size() == 20) {
    if (auto t = ParseTimeFast(s)) return t;
  }
  return ParseTimeGeneral(s);
}

std::string FormatTime(Millis t) {
  int64_t days = t >= 0 ? t / kDay : -((-t + kDay - 1) / kDay);
  Millis rem = t - days * kDay;
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  int h = static_cast<int>(rem / kHour), mi = static_cast<int>(rem % kHour / kMinute),
      s = static_cast<int>(rem % kMinute / kSecond), ms = static_cast<int>(rem % kSecond);
  char buf[48];
  if (ms)
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ",
                  static_cast<long long>(y), m, d, h, mi, s, ms);
  else
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02dZ", static_cast<long long>(y), m,
                  d, h, mi, s);
  return buf;
}

std::optional<Millis> ParseDuration(std::string_view s) {
  size_t i = 0;
  int64_t n = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    if (n > 1'000'000'000'000LL) return std::nullopt;
    n = n * 10 + (s[i] - '0');
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string_view unit = s.substr(i);
  Millis scale;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = kSecond;
  else if (unit == "m")
    scale = kMinute;
  else if (unit == "h")
    scale = kHour;
  else if (unit == "d")
    scale = kDay;
  else if (unit == "w")
    scale = kWeek;
  else
    return std::nullopt;
  if (n > (kMaxTime / scale)) return std::nullopt;
  return n * scale;
}

std::string FormatDuration(Millis d) {
  struct Unit {
    Millis ms;
    const char* name;
  };
  // Weeks are accepted on input but printed as days: "14d" is how people write windows.
  static const Unit kUnits[] = {{kDay, "d"}, {kHour, "h"}, {kMinute, "m"}, {kSecond, "s"}};
  if (d != 0) {
    for (const Unit& u : kUnits)
      if (d % u.ms == 0) return std::to_string(d / u.ms) + u.name;
  }
  return std::to_string(d) + (d == 0 ? "s" : "ms");
}

Millis RealClock::SystemMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

Millis RealClock::Now() const {
  const Millis t = source_();
  Millis seen = last_.load(std::memory_order_relaxed);
  while (t > seen && !last_.compare_exchange_weak(seen, t, std::memory_order_relaxed)) {
  }
  return t > seen ? t : seen;
}

}  // namespace shoal
