// The server's core, below HTTP: one Engine owned by one thread, the durable store, group commit,
// recovery on start, and the fan-out of committed changes to stream readers.
//
// Threads and data flow:
//   HTTP threads ──Run(task)──▶ engine thread: the task reads or changes the Engine; every change
//   the Engine emits, every call it accepts and every definition it saves is appended to the
//   engine thread's open Group (a RocksDB WriteBatch plus the changes and the completions).
//   At the end of each task the Group is sealed and queued for ▶ the commit thread, which writes
//   all queued Groups, fsyncs the WAL once for all of them (group commit), then publishes their
//   changes to the ChangeHub and runs their completions (the HTTP acks). So nothing is
//   acknowledged or streamed before it is durable, and the commit of one group overlaps the
//   engine work of the next.
// Reads that do not change anything (membership lookups, explain) also run on the engine thread
// and answer at once, without waiting for a commit.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "durable/codec.h"
#include "durable/db.h"
#include "server/computed_hub.h"
#include "server/hub.h"
#include "shoal/engine.h"
#include "shoal/event.h"
#include "shoal/status.h"
#include "shoal/time.h"

namespace shoal::server {

// All tunables of the service, each with its default.
struct ServiceOptions {
  std::string data_dir = "shoal-data";
  // Run on a virtual clock that starts at this instant and moves only through AdvanceClock.
  std::optional<Millis> virtual_clock_start;
  // A messageId seen within this much receive time is a duplicate...
  Millis dedup_window = kDay;
  // ...as long as at most this many ids are remembered (about 16 bytes each); beyond, the oldest
  // are forgotten first, so memory stays bounded at any ingest rate.
  size_t dedup_max_ids = 20'000'000;
  // Calls accepted but not yet durable; beyond this, Ingest refuses (HTTP 503).
  size_t max_pending_messages = 200000;
  // Committed changes kept in memory for stream readers; older ones are read from the store.
  size_t hub_capacity = 1 << 17;
  // fsync each group commit (off only for benchmarks that measure the engine without the disk).
  bool sync = true;
};

// Counters for /metrics. Updated by the engine and commit threads, read by any.
struct ServiceMetrics {
  std::atomic<uint64_t> messages{0};          // calls accepted
  std::atomic<uint64_t> duplicates{0};        // calls dropped as duplicates
  std::atomic<uint64_t> rejected{0};          // calls refused: invalid or overloaded
  std::atomic<uint64_t> changes{0};           // changes committed
  std::atomic<uint64_t> computed_changes{0};  // computed value changes committed
  std::atomic<uint64_t> groups{0};            // group commits
  std::atomic<uint64_t> commit_micros{0};
  std::atomic<uint64_t> pending_messages{0};
  // Ack latency histogram (queue + engine + commit): upper bounds in microseconds.
  static constexpr uint64_t kBuckets[] = {250,   500,   1000,   2500,   5000,   10000,
                                          25000, 50000, 100000, 250000, 1000000};
  std::atomic<uint64_t> ack_bucket[std::size(kBuckets) + 1] = {};
  std::atomic<uint64_t> ack_count{0};
  std::atomic<uint64_t> ack_micros_sum{0};
  void ObserveAck(uint64_t micros);
};

class Service;

// What a task on the engine thread may do.
class Txn {
 public:
  Engine& engine() { return *engine_; }
  // Operations that become durable together with this task's changes.
  durable::Batch& batch();
  // Runs on the commit thread once this task's writes are durable (status: the write's result).
  void OnDurable(std::function<void(const Status&)> fn);
  Service& service() { return *service_; }

 private:
  friend class Service;
  Txn(Service* s, Engine* e) : service_(s), engine_(e) {}
  Service* service_;
  Engine* engine_;
};

struct IngestOutcome {
  Status status;  // kInternal when the store failed
  uint64_t accepted = 0;
  uint64_t duplicates = 0;
};

class Service {
 public:
  explicit Service(ServiceOptions options);
  ~Service();  // Stop()s
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Opens the store, rebuilds the engine from it and emits the changes that time made while the
  // server was down, then starts the engine and commit threads. Blocking.
  Status Start();
  // Finishes the queued tasks, commits everything, stops the threads and closes the store.
  void Stop();
  bool Ready() const { return ready_.load(std::memory_order_acquire); }

  // Thread-safe: runs `task` on the engine thread, in submission order.
  void Run(std::function<void(Txn&)> task);

  // Thread-safe: runs `fn(const Engine&)` on the calling thread, between two rounds of engine
  // tasks (a shared lock; the engine thread takes it exclusively while it works). For quick
  // reads, such as the segments of a profile: they skip two thread hand-offs.
  template <typename F>
  auto Read(F&& fn) const {
    std::shared_lock lock(engine_mu_);
    return fn(static_cast<const Engine&>(*engine_));
  }

  // Thread-safe. Deduplicates and applies the calls on the engine thread; `done` runs once they
  // are durable. Returns false, leaving `messages` as they were and not calling `done`, when too
  // many calls are pending.
  bool Ingest(std::vector<Message>&& messages, std::function<void(IngestOutcome)> done);

  // --- For tasks (engine thread only) ---------------------------------------------------------
  // Saves a segment's definition after a successful Create/Update on the engine.
  void SaveSegment(Txn& txn, std::string_view name);
  // Saves a computed trait's definition after a successful Create/Update on the engine.
  void SaveComputed(Txn& txn, std::string_view name);
  bool IsDuplicate(std::string_view message_id) const;
  bool VirtualClock() const { return virtual_clock_ != nullptr; }
  // Moves the virtual clock (never backwards) and fires the deadlines; returns the changes.
  Result<size_t> SetClock(Millis t);
  // Erases a profile: engine, durable tombstone, then the physical purge in the background.
  Status Erase(Txn& txn, std::string_view profile);
  // The last segment_seq (0: none). On the engine thread, or inside Read().
  uint64_t SegmentSeq(std::string_view segment) const;

  // --- Computed value changes (engine thread) ---------------------------------------------------
  // Every value change the engine emits is numbered (a global seq and a per-trait seq, both
  // continuing across restarts) and written with the task's group, like the membership changes.
  // After a successful Create/Update on the engine: persists the trait's values as the engine has
  // them now (creating a trait emits no change), for the comparison at restart.
  void SnapshotComputed(Txn& txn, std::string_view name);
  // Deletes a computed trait: as the engine's DeleteComputedTrait, and first each profile with a
  // value gets a change to null with cause kDeleted (as a deleted segment's members exit). The
  // trait's change history stays, and its trait seq goes on if a trait of that name comes back.
  Status DeleteComputed(Txn& txn, std::string_view name);
  // The last trait seq of a computed trait (0: none). On the engine thread, or inside Read().
  uint64_t ComputedSeq(std::string_view trait) const;

  // --- Any thread -----------------------------------------------------------------------------
  // The server's clock: the wall clock, or the virtual one under --clock (what receivedAt uses).
  Millis ClockNow() const;
  const durable::Db& db() const { return *db_; }
  ChangeHub& hub() { return hub_; }
  ComputedHub& computed_hub() { return computed_hub_; }
  ServiceMetrics& metrics() { return metrics_; }
  const ServiceOptions& options() const { return options_; }
  // Engine figures in Prometheus text (segment sizes, timers, profiles, memory), refreshed by the
  // engine thread every 5 seconds.
  std::string EngineMetricsText() const;
  // Millis of wall time spent in Start() (recovery).
  Millis recovery_millis() const { return recovery_millis_; }

 private:
  friend class Txn;
  struct Group;
  void EngineLoop();
  void CommitLoop();
  void OnChange(const Change& c);
  void OnComputedChange(const ComputedChange& c);
  // At recovery: the changes time made to computed values while the server was down.
  Status ReconcileComputed(Millis now, uint64_t* emitted);
  void Seal();
  void RefreshEngineMetrics();
  Status Recover();

  ServiceOptions options_;
  std::unique_ptr<Clock> clock_;
  class VirtualClock* virtual_clock_ = nullptr;  // == clock_ when virtual
  std::atomic<Millis> virtual_now_{0};           // its time, for readers on other threads
  std::unique_ptr<durable::Db> db_;
  std::unique_ptr<Engine> engine_;
  mutable std::shared_mutex engine_mu_;  // exclusive: the engine thread at work; shared: Read()
  ChangeHub hub_;
  ComputedHub computed_hub_;
  ServiceMetrics metrics_;
  std::atomic<bool> ready_{false};
  Millis recovery_millis_ = 0;

  // Engine thread state.
  struct EngineState;
  std::unique_ptr<EngineState> es_;
  std::thread engine_thread_;

  // Commit queue.
  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  std::vector<std::unique_ptr<Group>> sealed_;
  bool stopping_ = false;
  std::thread commit_thread_;
  std::thread purge_thread_;
  std::mutex purge_mu_;
  std::condition_variable purge_cv_;
  std::deque<durable::ErasureRecord> purges_;
  bool started_ = false;
  mutable std::mutex engine_metrics_mu_;
  std::string engine_metrics_;
  std::chrono::steady_clock::time_point engine_metrics_at_{};
};

}  // namespace shoal::server
