// Fork-join helpers for the backfill (creating or updating a segment over the stored history).
// The engine stays single-writer: worker threads exist only inside one create/update call, read
// state that nothing writes while they run, and fill results of their own that the calling thread
// merges in a fixed order, so the outcome never depends on the number of threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace shoal::engine {

// How many parts to split `n` items into: at most `threads`, and none smaller than `grain`
// (starting a thread costs tens of microseconds; a part must be worth it). Always >= 1.
inline size_t Parts(size_t n, size_t threads, size_t grain) {
  if (threads <= 1 || grain == 0 || n < 2 * grain) return 1;
  return std::min(threads, n / grain);
}

// The half-open range of part `i` of `parts` over n items: contiguous, in order, sizes differing
// by at most one.
inline std::pair<size_t, size_t> PartRange(size_t n, size_t parts, size_t i) {
  return {n * i / parts, n * (i + 1) / parts};
}

// Runs f(0) .. f(parts - 1), each on its own thread (f(0) on the caller's), and returns when all
// have finished. A thread that cannot be started runs its part on the caller's thread instead.
template <typename F>
void RunParts(size_t parts, F&& f) {
  if (parts <= 1) {
    f(size_t{0});
    return;
  }
  std::vector<std::jthread> workers;
  workers.reserve(parts - 1);
  std::vector<size_t> inline_parts;
  for (size_t i = 1; i < parts; ++i) {
    try {
      workers.emplace_back([&f, i] { f(i); });
    } catch (const std::system_error&) {
      inline_parts.push_back(i);
    }
  }
  f(size_t{0});
  for (size_t i : inline_parts) f(i);
  workers.clear();  // joins
}

}  // namespace shoal::engine
