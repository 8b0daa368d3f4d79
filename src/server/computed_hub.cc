#include "server/computed_hub.h"

#include <algorithm>

namespace shoal::server {

void ComputedHub::Publish(std::vector<durable::StoredComputedChange> changes) {
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lock(mu_);
    for (durable::StoredComputedChange& c : changes) {
      last_seq_ = c.seq;
      ring_.push_back(std::move(c));
    }
    while (ring_.size() > capacity_) ring_.pop_front();
    if (!changes.empty()) {
      for (auto& [id, fn] : waiters_) wake.push_back(std::move(fn));
      waiters_.clear();
    }
  }
  for (auto& fn : wake) fn();
}

bool ComputedHub::Since(uint64_t after, const std::vector<std::string>& traits, size_t limit,
                        std::vector<durable::StoredComputedChange>* out,
                        uint64_t* scanned_to) const {
  std::lock_guard lock(mu_);
  *scanned_to = after;
  if (after >= last_seq_) return true;
  if (ring_.empty() || ring_.front().seq > after + 1) return false;
  size_t i = static_cast<size_t>(after + 1 - ring_.front().seq);
  for (; i < ring_.size() && out->size() < limit; ++i) {
    const durable::StoredComputedChange& c = ring_[i];
    *scanned_to = c.seq;
    if (!traits.empty() &&
        std::find(traits.begin(), traits.end(), c.change.trait) == traits.end()) {
      continue;
    }
    out->push_back(c);
  }
  return true;
}

uint64_t ComputedHub::LastSeq() const {
  std::lock_guard lock(mu_);
  return last_seq_;
}

void ComputedHub::SetLastSeq(uint64_t seq) {
  std::lock_guard lock(mu_);
  last_seq_ = seq;
}

uint64_t ComputedHub::AddWaiter(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  uint64_t id = next_waiter_++;
  waiters_.emplace_back(id, std::move(fn));
  return id;
}

void ComputedHub::RemoveWaiter(uint64_t id) {
  std::lock_guard lock(mu_);
  std::erase_if(waiters_, [id](const auto& w) { return w.first == id; });
}

size_t ComputedHub::Waiters() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

void ComputedHub::WakeAll() {
  std::vector<std::pair<uint64_t, std::function<void()>>> wake;
  {
    std::lock_guard lock(mu_);
    wake.swap(waiters_);
  }
  for (auto& [id, fn] : wake) fn();
}

void ComputedHub::Redact(std::string_view profile, uint64_t before) {
  std::lock_guard lock(mu_);
  for (durable::StoredComputedChange& c : ring_) {
    if (c.seq >= before) break;
    if (c.change.profile == profile) c.change.profile = "(erased)";
    if (c.change.cause_ref == profile) c.change.cause_ref = "(erased)";
  }
}

}  // namespace shoal::server
