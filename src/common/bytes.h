// Loads and compares of a few bytes without a libc call: the hot paths' short strings (ids, event
// names, property keys) are mostly at most 16 bytes, which two overlapping loads of each side
// cover, never reading outside [p, p + n). The decoder, the engine's name and key caches and the
// string pool's hash and slots all use them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace shoal {

// Four or eight bytes at `p`, in memory order (any alignment).
[[gnu::always_inline]] inline uint32_t Load4(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
[[gnu::always_inline]] inline uint64_t Load8(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Whether a[0, n) == b[0, n), for n <= 16, without a call: two overlapping loads of each side
// (never outside [0, n)) instead of memcmp.
[[gnu::always_inline]] inline bool SmallEqual(const char* a, const char* b, size_t n) {
  if (n >= 8) return ((Load8(a) ^ Load8(b)) | (Load8(a + n - 8) ^ Load8(b + n - 8))) == 0;
  if (n >= 4) return ((Load4(a) ^ Load4(b)) | (Load4(a + n - 4) ^ Load4(b + n - 4))) == 0;
  if (n == 0) return true;
  return a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1];
}

// Copies n <= 16 bytes from `from` to `to` (not overlapping) without a call, likewise.
[[gnu::always_inline]] inline void SmallCopy(char* to, const char* from, size_t n) {
  if (n >= 8) {
    const uint64_t head = Load8(from), tail = Load8(from + n - 8);
    std::memcpy(to, &head, 8);
    std::memcpy(to + n - 8, &tail, 8);
  } else if (n >= 4) {
    const uint32_t head = Load4(from), tail = Load4(from + n - 4);
    std::memcpy(to, &head, 4);
    std::memcpy(to + n - 4, &tail, 4);
  } else if (n > 0) {
    const char a = from[0], b = from[n / 2], c = from[n - 1];
    to[0] = a;
    to[n / 2] = b;
    to[n - 1] = c;
  }
}

}  // namespace shoal
