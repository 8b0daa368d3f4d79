// The pending deadline of each profile (or account) of one segment: id -> the instant its truth
// next changes. Read and written on every evaluation that schedules, so on the ingest path of
// every event a segment reads.
//
// An open-addressing table with linear probing whose 16-byte slots hold the id and the instant
// together: a lookup touches one cache line, and one page. absl::flat_hash_map keeps its control
// bytes and its slots in two arrays, two pages per lookup; on the project's VM a page whose
// translation misses the TLB costs ~400 ns even when its line is in the cache (docs/benchmarks.md,
// "Round 6"), and at full size the two arrays miss on nearly every event.
// Deletion shifts the following entries back (no tombstones), so probes stay short after many
// erasures. At most 3/4 full.
//
// Threading: not thread-safe; Find/contains/ForEach may run on several readers at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "shoal/time.h"

namespace shoal::engine {

class DeadlineMap {
 public:
  // The deadline of `id`, or nullptr.
  const Millis* Find(uint32_t id) const {
    if (size_ == 0) return nullptr;
    for (size_t i = Home(id);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id == id) return &s.at;
      if (s.id == kEmpty) return nullptr;
    }
  }
  bool contains(uint32_t id) const { return Find(id) != nullptr; }
  // Sets id's deadline; returns false if it already was `at` (nothing changed).
  bool Set(uint32_t id, Millis at) {
    if ((size_ + 1) * 4 > slots_.size() * 3) Grow();
    for (size_t i = Home(id);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id == id) {
        if (s.at == at) return false;
        s.at = at;
        return true;
      }
      if (s.id == kEmpty) {
        s = Slot{id, at};
        ++size_;
        return true;
      }
    }
  }
  // Removes id's deadline; returns whether it had one.
  bool erase(uint32_t id) {
    return EraseIf(id, [](Millis) { return true; });
  }
  // Removes id's deadline if it is `at` (a due timer that was not superseded), in one probe;
  // returns whether it did.
  bool EraseIfAt(uint32_t id, Millis at) {
    return EraseIf(id, [at](Millis due) { return due == at; });
  }
  void clear() {
    slots_.clear();
    mask_ = 0;
    size_ = 0;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t MemoryBytes() const { return slots_.capacity() * sizeof(Slot); }
  // f(id, at) for every entry, in no particular order.
  template <typename F>
  void ForEach(F f) const {
    for (const Slot& s : slots_)
      if (s.id != kEmpty) f(s.id, s.at);
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;  // no profile or account has this id
  struct Slot {
    uint32_t id;
    Millis at;
  };
  static_assert(sizeof(Slot) == 16);

  template <typename Pred>
  bool EraseIf(uint32_t id, Pred pred) {
    if (size_ == 0) return false;
    size_t i = Home(id);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].id == id) break;
      if (slots_[i].id == kEmpty) return false;
    }
    if (!pred(slots_[i].at)) return false;
    // Backward shift: move each later entry of the run into the hole if its home does not lie
    // (cyclically) after the hole, so every entry stays reachable from its home.
    for (size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      if (slots_[j].id == kEmpty) break;
      const size_t home = Home(slots_[j].id);
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i].id = kEmpty;
    --size_;
    return true;
  }

  // Fibonacci hashing: dense ids spread over the table, and ids with a common stride do not
  // pile up in one run.
  size_t Home(uint32_t id) const {
    return static_cast<size_t>((uint64_t{id} * 0x9E3779B97F4A7C15ull) >> shift_) & mask_;
  }
  void Grow() {
    std::vector<Slot> old = std::move(slots_);
    const size_t n = old.empty() ? 16 : old.size() * 2;
    slots_.assign(n, Slot{kEmpty, 0});
    mask_ = n - 1;
    shift_ = 64 - __builtin_ctzll(n);
    size_ = 0;
    for (const Slot& s : old)
      if (s.id != kEmpty) Set(s.id, s.at);
  }

  std::vector<Slot> slots_;  // power-of-two size, or empty
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

}  // namespace shoal::engine
