// Fork-join helpers for the backfill (creating or updating a segment over the stored history).
// The engine stays single-writer: worker threads work only inside one create/update call (and
// sleep otherwise), read state that nothing writes while they run, and fill results of their own
// that the calling thread merges in a fixed order, so the outcome never depends on the number of
// threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace shoal::engine {

// How many parts to split `n` items into: at most `threads`, and none smaller than `grain` (a
// grain of 0 counts as 1): waking a worker and merging its results cost something, so a part must
// be worth it. Always >= 1.
inline size_t Parts(size_t n, size_t threads, size_t grain) {
  grain = std::max<size_t>(grain, 1);
  if (threads <= 1 || n < 2 * grain) return 1;
  return std::min(threads, n / grain);
}

// The half-open range of part `i` of `parts` over n items: contiguous, in order, sizes differing
// by at most one.
inline std::pair<size_t, size_t> PartRange(size_t n, size_t parts, size_t i) {
  return {n * i / parts, n * (i + 1) / parts};
}

// A few worker threads that live as long as their engine and run one fork-join job at a time:
// Run(parts, f) runs f(0) .. f(parts - 1) on the caller's thread and the workers, each part
// claimed by whichever thread is free next, and returns when all have finished. Claiming (rather
// than part i on worker i) matters on a loaded machine: a worker that is not scheduled in time
// leaves its parts to the caller instead of making it wait. The workers are started on the first
// job that needs them and then kept: a thread started per job was measured to cost the backfill
// as much CPU again at the smoke size (each fresh thread warms its own allocator cache and arena;
// docs/benchmarks.md, Round 4). A worker that cannot be started leaves its parts to the others.
class WorkerPool {
 public:
  // `threads`: the caller plus at most threads - 1 workers.
  explicit WorkerPool(size_t threads) : max_workers_(threads > 1 ? threads - 1 : 0) {}
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  template <typename F>
  void Run(size_t parts, F&& f) {
    std::atomic<size_t> next{0};
    const std::function<void()> job = [&] {
      for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < parts;) f(i);
    };
    if (parts <= 1 || max_workers_ == 0) return job();
    Grow(std::min(parts - 1, max_workers_));
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      pending_ = workers_.size();
      ++generation_;
    }
    start_.notify_all();
    job();
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void Grow(size_t want) {
    while (workers_.size() < want) {
      try {
        // Started before the job's generation is published: it waits for the next one.
        workers_.emplace_back([this, g = generation_] { Loop(g); });
      } catch (const std::system_error&) {
        return;
      }
    }
  }
  void Loop(uint64_t seen) {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      const std::function<void()>* job = job_;
      lock.unlock();
      (*job)();
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  const size_t max_workers_;
  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<void()>* job_ = nullptr;
  size_t pending_ = 0;  // workers that have not finished the current job
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace shoal::engine
