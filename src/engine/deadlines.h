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
// Each deadline also knows its anchor: the instant of the timer the engine pushed for it, at or
// before the deadline. A deadline that moves later keeps its anchor and asks for no new timer;
// when the anchor's timer comes due, Take answers kLater and the engine pushes one timer at the
// deadline then. Most moves are later ("within 30d": each new event moves the exit by the time
// since the last), so most evaluations push nothing onto the timer heap, and fewer superseded
// entries are popped later ("Round 9").
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
    const Slot* s = FindSlot(id);
    return s ? &s->at : nullptr;
  }
  bool contains(uint32_t id) const { return Find(id) != nullptr; }
  // Sets id's deadline. Returns whether the caller must push a timer at `at`, which becomes the
  // anchor: id had no deadline, or `at` is before its anchor or more than 2^32 ms after it.
  // Otherwise the anchor's timer stands for the new deadline (see Take).
  bool Set(uint32_t id, Millis at) {
    if ((size_ + 1) * 4 > slots_.size() * 3) Grow();
    for (size_t i = Home(id);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id == id) {
        if (s.at == at) return false;
        const Millis anchor = s.at - s.lag;
        if (at >= anchor && at - anchor <= Millis{UINT32_MAX}) {
          s.lag = static_cast<uint32_t>(at - anchor);
          s.at = at;
          return false;
        }
        s.at = at;
        s.lag = 0;
        return true;
      }
      if (s.id == kEmpty) {
        s = Slot{id, 0, at};
        ++size_;
        return true;
      }
    }
  }
  // What a due timer (id, t) is. kFire: t is id's deadline. kLater: t is the anchor of the later
  // deadline *later, which Take makes its own anchor (push a timer at *later). kStale: the timer
  // was superseded (id has no deadline, or another anchor).
  enum class Due { kStale, kFire, kLater };
  Due Check(uint32_t id, Millis t, Millis* later) const {
    const Slot* s = FindSlot(id);
    if (!s || s->at - s->lag != t) return Due::kStale;
    if (s->lag == 0) return Due::kFire;
    *later = s->at;
    return Due::kLater;
  }
  // Check, and then: kFire removes the deadline, kLater makes it its own anchor.
  Due Take(uint32_t id, Millis t, Millis* later) {
    const Due d = Check(id, t, later);
    if (d == Due::kFire) {
      erase(id);
    } else if (d == Due::kLater) {
      FindSlot(id)->lag = 0;
    }
    return d;
  }
  // Every deadline its own anchor: the caller has pushed a timer at each (timer compaction).
  void AnchorAll() {
    for (Slot& s : slots_) s.lag = 0;
  }
  // Removes id's deadline; returns whether it had one.
  bool erase(uint32_t id) {
    if (size_ == 0) return false;
    size_t i = Home(id);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].id == id) break;
      if (slots_[i].id == kEmpty) return false;
    }
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
    uint32_t lag;  // at - the anchor
    Millis at;
  };
  static_assert(sizeof(Slot) == 16);
  const Slot* FindSlot(uint32_t id) const {
    if (size_ == 0) return nullptr;
    for (size_t i = Home(id);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id == id) return &s;
      if (s.id == kEmpty) return nullptr;
    }
  }
  Slot* FindSlot(uint32_t id) {
    return const_cast<Slot*>(static_cast<const DeadlineMap*>(this)->FindSlot(id));
  }

  // Places a slot whose id is not in the table (Grow).
  void Insert(const Slot& s) {
    size_t i = Home(s.id);
    while (slots_[i].id != kEmpty) i = (i + 1) & mask_;
    slots_[i] = s;
    ++size_;
  }
  // Fibonacci hashing: dense ids spread over the table, and ids with a common stride do not
  // pile up in one run.
  size_t Home(uint32_t id) const {
    return static_cast<size_t>((uint64_t{id} * 0x9E3779B97F4A7C15ull) >> shift_) & mask_;
  }
  void Grow() {
    std::vector<Slot> old = std::move(slots_);
    const size_t n = old.empty() ? 16 : old.size() * 2;
    slots_.assign(n, Slot{kEmpty, 0, 0});
    mask_ = n - 1;
    shift_ = 64 - __builtin_ctzll(n);
    size_ = 0;
    for (const Slot& s : old)
      if (s.id != kEmpty) Insert(s);
  }

  std::vector<Slot> slots_;  // power-of-two size, or empty
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

}  // namespace shoal::engine
