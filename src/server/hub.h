// A hub of committed change records for stream readers: a ring of the latest ones (seqs
// consecutive) and the waiters of the streams that are up to date. One template serves the
// membership changes (durable::StoredChange, filtered by segment) and the computed value changes
// (durable::StoredComputedChange, filtered by trait), each with its own sequence.
#pragma once

#include <algorithm>
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

// The name a stream filters a record by: its segment, or its computed trait.
inline const std::string& FilterKey(const durable::StoredChange& c) { return c.change.segment; }
inline const std::string& FilterKey(const durable::StoredComputedChange& c) {
  return c.change.trait;
}

// Thread-safe.
template <typename Stored>
class RecordHub {
 public:
  explicit RecordHub(size_t capacity) : capacity_(capacity) {}

  // Appends committed records (in seq order) and wakes the waiters.
  void Publish(std::vector<Stored> records) {
    std::vector<std::function<void()>> wake;
    {
      std::lock_guard lock(mu_);
      for (Stored& c : records) {
        last_seq_ = c.seq;
        ring_.push_back(std::move(c));
      }
      while (ring_.size() > capacity_) ring_.pop_front();
      if (!records.empty()) {
        for (auto& [id, fn] : waiters_) wake.push_back(std::move(fn));
        waiters_.clear();
      }
    }
    for (auto& fn : wake) fn();
  }

  // Copies records with seq > after (of the given segments or traits only, when `keys` is not
  // empty), at most `limit`, into *out. Returns false when records after `after` have left the
  // memory window (the caller reads them from the store). *scanned_to: the last seq looked at.
  bool Since(uint64_t after, const std::vector<std::string>& keys, size_t limit,
             std::vector<Stored>* out, uint64_t* scanned_to) const {
    std::lock_guard lock(mu_);
    *scanned_to = after;
    if (after >= last_seq_) return true;
    if (ring_.empty() || ring_.front().seq > after + 1) return false;
    size_t i = static_cast<size_t>(after + 1 - ring_.front().seq);
    for (; i < ring_.size() && out->size() < limit; ++i) {
      const Stored& c = ring_[i];
      *scanned_to = c.seq;
      if (!keys.empty() && std::find(keys.begin(), keys.end(), FilterKey(c)) == keys.end())
        continue;
      out->push_back(c);
    }
    return true;
  }

  uint64_t LastSeq() const {
    std::lock_guard lock(mu_);
    return last_seq_;
  }
  void SetLastSeq(uint64_t seq) {  // at start: the store's last seq of these records
    std::lock_guard lock(mu_);
    last_seq_ = seq;
  }

  // Wake-ups: `fn` runs (on the publishing thread) at the next Publish. Returns an id to cancel.
  uint64_t AddWaiter(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    uint64_t id = next_waiter_++;
    waiters_.emplace_back(id, std::move(fn));
    return id;
  }
  void RemoveWaiter(uint64_t id) {
    std::lock_guard lock(mu_);
    std::erase_if(waiters_, [id](const auto& w) { return w.first == id; });
  }
  size_t Waiters() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }
  // Runs every waiter now (at shutdown, so that streams notice it).
  void WakeAll() {
    std::vector<std::pair<uint64_t, std::function<void()>>> wake;
    {
      std::lock_guard lock(mu_);
      wake.swap(waiters_);
    }
    for (auto& [id, fn] : wake) fn();
  }
  // Replaces `profile` by "(erased)" in the kept records with seq < before.
  void Redact(std::string_view profile, uint64_t before) {
    std::lock_guard lock(mu_);
    for (Stored& c : ring_) {
      if (c.seq >= before) break;
      if (c.change.profile == profile) c.change.profile = "(erased)";
      if (c.change.cause_ref == profile) c.change.cause_ref = "(erased)";
    }
  }

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::deque<Stored> ring_;
  uint64_t last_seq_ = 0;
  uint64_t next_waiter_ = 1;
  std::vector<std::pair<uint64_t, std::function<void()>>> waiters_;
};

// The committed membership changes.
using ChangeHub = RecordHub<durable::StoredChange>;

}  // namespace shoal::server
