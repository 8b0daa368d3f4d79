// The message ids seen recently, for deduplication: 64-bit hashes in generations of a set each,
// one generation per eighth of the window. A lookup probes every generation (at most 9); expiry
// drops whole generations, so an id is remembered for at least the window and at most 9/8 of it.
// A cap on the number of ids drops the oldest generations early, so that memory stays bounded
// whatever the ingest rate (about 16 bytes per id).
//
// Threading: not thread-safe; the engine thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "absl/container/flat_hash_set.h"
#include "shoal/time.h"

namespace shoal::server {

class RecentIds {
 public:
  RecentIds(Millis window, size_t max_ids) : window_(window), max_ids_(max_ids) {}

  // Records `id` as seen at `at`; returns false (and changes nothing) when it was already seen
  // within the window. Times should be roughly increasing; an older `at` joins the newest
  // generation.
  bool Insert(uint64_t id, Millis at) {
    if (Contains(id)) return false;
    Millis step = std::max<Millis>(1, window_ / 8);
    if (gens_.empty() || at >= gens_.back().start + step) {
      gens_.push_back({at - at % step, {}});
    }
    gens_.back().ids.insert(id);
    ++size_;
    while (size_ > max_ids_ && gens_.size() > 1) DropOldest();
    return true;
  }

  bool Contains(uint64_t id) const {
    for (auto it = gens_.rbegin(); it != gens_.rend(); ++it) {
      if (it->ids.contains(id)) return true;
    }
    return false;
  }

  // Forgets the generations that ended at or before now - window.
  void Expire(Millis now) {
    Millis step = std::max<Millis>(1, window_ / 8);
    while (!gens_.empty() && gens_.front().start + step <= now - window_) DropOldest();
  }

  size_t size() const { return size_; }

 private:
  // The identity: the ids are XXH3 hashes already.
  struct PreHashed {
    size_t operator()(uint64_t h) const { return h; }
  };
  struct Generation {
    Millis start;
    absl::flat_hash_set<uint64_t, PreHashed> ids;
  };
  void DropOldest() {
    size_ -= gens_.front().ids.size();
    gens_.pop_front();
  }

  Millis window_;
  size_t max_ids_;
  size_t size_ = 0;
  std::deque<Generation> gens_;
};

}  // namespace shoal::server
