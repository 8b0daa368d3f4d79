// The committed computed value changes, for stream readers: the counterpart of ChangeHub for
// durable::StoredComputedChange, with its own sequence (docs/api.md, "Computed value changes").
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "durable/codec.h"

namespace shoal::server {

// Thread-safe. A ring of the latest committed changes (seqs consecutive) and the waiters of the
// streams that are up to date.
class ComputedHub {
 public:
  explicit ComputedHub(size_t capacity) : capacity_(capacity) {}
  // Appends committed changes (in seq order) and wakes the waiters.
  void Publish(std::vector<durable::StoredComputedChange> changes);
  // Copies changes with seq > after (of the given traits only, when `traits` is not empty), at
  // most `limit`, into *out. Returns false when changes after `after` have left the memory window
  // (the caller reads them from the store). *scanned_to: the last seq looked at (>= after).
  bool Since(uint64_t after, const std::vector<std::string>& traits, size_t limit,
             std::vector<durable::StoredComputedChange>* out, uint64_t* scanned_to) const;
  uint64_t LastSeq() const;
  void SetLastSeq(uint64_t seq);  // at start: the store's last computed seq

  // `fn` runs (on the publishing thread) at the next Publish. Returns an id to cancel.
  uint64_t AddWaiter(std::function<void()> fn);
  void RemoveWaiter(uint64_t id);
  size_t Waiters() const;
  // Runs every waiter now (at shutdown, so that streams notice it).
  void WakeAll();
  // Replaces `profile` by "(erased)" in the kept changes with seq < before.
  void Redact(std::string_view profile, uint64_t before);

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::deque<durable::StoredComputedChange> ring_;
  uint64_t last_seq_ = 0;
  uint64_t next_waiter_ = 1;
  std::vector<std::pair<uint64_t, std::function<void()>>> waiters_;
};

}  // namespace shoal::server
