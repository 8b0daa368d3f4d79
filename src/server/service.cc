#include "server/service.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#define XXH_INLINE_ALL
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <xxhash.h>

#include "absl/container/flat_hash_map.h"
#include "server/recent_ids.h"

namespace shoal::server {
namespace {

uint64_t MicrosSince(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count());
}

uint64_t IdHash(std::string_view id) { return XXH3_64bits(id.data(), id.size()); }

// The durable record of a definition (SegmentInfo or ComputedTraitInfo): its creation order is
// the one it got first (`order`, from the counter shared by segments and computed traits).
template <typename Info>
durable::SegmentRecord DefinitionRecord(const Info& info,
                                        absl::flat_hash_map<std::string, uint64_t>* order,
                                        uint64_t* next_order) {
  durable::SegmentRecord r;
  r.name = info.name;
  r.definition = info.definition;
  auto [it, fresh] = order->try_emplace(r.name, *next_order);
  if (fresh) ++*next_order;
  r.order = it->second;
  r.created_at = info.created_at;
  r.updated_at = info.updated_at;
  r.target = info.target;  // users' or accounts'
  return r;
}

}  // namespace

void ServiceMetrics::ObserveAck(uint64_t micros) {
  size_t i = 0;
  while (i < std::size(kBuckets) && micros > kBuckets[i]) ++i;
  ack_bucket[i].fetch_add(1, std::memory_order_relaxed);
  ack_count.fetch_add(1, std::memory_order_relaxed);
  ack_micros_sum.fetch_add(micros, std::memory_order_relaxed);
}

// --- Service internals ------------------------------------------------------------------------

// Everything one commit writes and then announces.
struct Service::Group {
  explicit Group(const durable::Db* db) : batch(db) {}
  durable::Batch batch;
  std::vector<durable::StoredChange> changes;
  std::vector<durable::StoredComputedChange> computed;
  std::vector<std::function<void(const Status&)>> done;
  uint64_t messages = 0;  // calls in this group (for the pending count)
};

struct Service::EngineState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void(Txn&)>> tasks;
  bool stop = false;

  std::unique_ptr<Group> open;  // the group the current tasks write into
  uint64_t next_log_seq = 1;
  uint64_t next_change_seq = 1;
  uint64_t next_segment_order = 1;
  absl::flat_hash_map<std::string, uint64_t> segment_seq;   // last segment_seq per segment
  absl::flat_hash_map<std::string, uint64_t> segment_size;  // members, as the changes say
  absl::flat_hash_map<std::string, uint64_t> segment_order;
  absl::flat_hash_map<std::string, uint64_t> computed_order;  // computed traits, same counter
  uint64_t next_computed_seq = 1;
  absl::flat_hash_map<std::string, uint64_t> trait_seq;  // last trait_seq per computed trait
  // Deduplication: XXH3 hashes of the messageIds received within the window.
  std::unique_ptr<RecentIds> seen;
};

durable::Batch& Txn::batch() { return service_->es_->open->batch; }

void Txn::OnDurable(std::function<void(const Status&)> fn) {
  service_->es_->open->done.push_back(std::move(fn));
}

Service::Service(ServiceOptions options)
    : options_(std::move(options)),
      hub_(options_.hub_capacity),
      computed_hub_(options_.hub_capacity),
      es_(new EngineState) {
  if (options_.virtual_clock_start) {
    auto vc = std::make_unique<class VirtualClock>(*options_.virtual_clock_start);
    virtual_clock_ = vc.get();
    virtual_now_.store(*options_.virtual_clock_start);
    clock_ = std::move(vc);
  } else {
    clock_ = std::make_unique<RealClock>();
  }
  Options eo;
  eo.keep_changes = false;
  engine_ = std::make_unique<Engine>(clock_.get(), eo);
}

Service::~Service() { Stop(); }

void Service::OnChange(const Change& c) {
  EngineState& es = *es_;
  durable::StoredChange sc;
  sc.seq = es.next_change_seq++;
  sc.segment_seq = ++es.segment_seq[c.segment];
  uint64_t& size = es.segment_size[c.segment];
  size = c.kind == ChangeKind::kEnter ? size + 1 : (size > 0 ? size - 1 : 0);
  sc.size_after = size;
  sc.change = c;
  sc.change.seq = sc.segment_seq;
  es.open->batch.PutChange(sc);
  es.open->changes.push_back(std::move(sc));
}

uint64_t Service::SegmentSeq(std::string_view segment) const {
  auto it = es_->segment_seq.find(std::string(segment));
  return it == es_->segment_seq.end() ? 0 : it->second;
}

Status Service::Recover() {
  auto t0 = std::chrono::steady_clock::now();
  std::filesystem::create_directories(options_.data_dir);
  Result<std::unique_ptr<durable::Db>> db = durable::Db::Open(options_.data_dir);
  if (!db.ok()) return db.status();
  db_ = std::move(*db);
  EngineState& es = *es_;
  es.open = std::make_unique<Group>(db_.get());
  es.seen = std::make_unique<RecentIds>(options_.dedup_window, options_.dedup_max_ids);

  // Erasures: calls of an erased profile logged before its erasure are skipped.
  Result<std::vector<durable::ErasureRecord>> erasures = db_->ErasureRecords();
  if (!erasures.ok()) return erasures.status();
  absl::flat_hash_map<std::string, uint64_t> erased;
  for (const durable::ErasureRecord& r : *erasures) erased[r.profile] = r.log_seq;

  Result<std::vector<std::pair<std::string, std::vector<std::string>>>> lists = db_->Lists();
  if (!lists.ok()) return lists.status();
  for (auto& [name, members] : *lists) {
    Status st = engine_->CreateList(name);
    if (st.ok()) st = engine_->AddToList(name, members);
    if (!st.ok()) return Status::Internal("restoring list " + name + ": " + st.ToString());
  }

  // The history, into the engine before any segment exists: segments are then built by backfill,
  // which is faster than evaluating them live call by call.
  Millis now = clock_->Now();
  Message msg;
  uint64_t events = 0;
  Status st = db_->ForEachEvent(0, [&](uint64_t seq, std::string_view rec) -> Status {
    msg.Clear();
    Status s = durable::DecodeMessage(rec, &msg);
    if (!s.ok()) return Status::Internal("event " + std::to_string(seq) + ": " + s.ToString());
    es.next_log_seq = seq + 1;
    if (!erased.empty()) {
      auto it = erased.find(msg.ProfileKey());
      if (it != erased.end() && seq < it->second) return Status::Ok();
      // An erased key named beside a live one (a userId's anonymousId, an alias' previousId):
      // its calls were skipped, so it must not be linked now either. An erasure covers every key
      // of a merged profile (Erase), so what is left is exactly what the engine saw.
      auto gone = [&](const std::string& k) {
        auto e = k.empty() ? erased.end() : erased.find(k);
        return e != erased.end() && seq < e->second;
      };
      if (msg.type == MessageType::kAlias && gone(msg.previous_id)) return Status::Ok();
      if (!msg.user_id.empty() && gone(msg.anonymous_id)) msg.anonymous_id.clear();
    }
    if (!msg.message_id.empty() && msg.received_at > now - options_.dedup_window) {
      es.seen->Insert(IdHash(msg.message_id), msg.received_at);
    }
    ++events;
    Status is = engine_->Ingest(msg);
    (void)is;  // it was accepted once: an error now only means the engine ignores it again
    return Status::Ok();
  });
  if (!st.ok()) return st;
  es.next_log_seq = std::max(es.next_log_seq, db_->LastEventSeq() + 1);
  for (auto& [profile, seq] : erased) es.next_log_seq = std::max(es.next_log_seq, seq);

  Result<std::vector<durable::SegmentRecord>> segments = db_->Segments();
  if (!segments.ok()) return segments.status();
  Result<std::vector<durable::SegmentRecord>> computed = db_->ComputedTraits();
  if (!computed.ok()) return computed.status();
  // Create segments and computed traits (which read each other) in saved order; one whose
  // reference was created later (by an update) waits for the next pass.
  struct Def {
    durable::SegmentRecord r;
    bool computed = false;
  };
  std::vector<Def> todo;
  for (auto& r : *segments) {
    es.segment_order[r.name] = r.order;
    todo.push_back({std::move(r), false});
  }
  for (auto& r : *computed) {
    es.computed_order[r.name] = r.order;
    todo.push_back({std::move(r), true});
  }
  std::stable_sort(todo.begin(), todo.end(),
                   [](const Def& a, const Def& b) { return a.r.order < b.r.order; });
  for (const auto& d : todo) es.next_segment_order = std::max(es.next_segment_order, d.r.order + 1);
  while (!todo.empty()) {
    std::vector<Def> later;
    Status last;
    for (auto& d : todo) {
      Status st = d.computed
                      ? engine_->CreateComputedTrait(d.r.name, d.r.definition, d.r.target).status()
                      : engine_->CreateSegment(d.r.name, d.r.definition, d.r.target).status();
      if (!st.ok()) {
        last = st;
        later.push_back(std::move(d));
      } else if (d.r.created_at != 0) {  // the instants it had, not the restart's
        Result<Millis> last =
            d.computed ? Result<Millis>(Millis{0}) : db_->LastSegmentChangeAt(d.r.name);
        if (!last.ok()) return last.status();
        (void)engine_->RestoreDefinitionTimes(d.r.name, d.computed, d.r.created_at, d.r.updated_at,
                                              *last);
      }
    }
    if (later.size() == todo.size()) {
      return Status::Internal(
          std::string(later.front().computed ? "restoring computed trait " : "restoring segment ") +
          later.front().r.name + ": " + last.ToString());
    }
    todo = std::move(later);
  }

  Result<std::vector<std::pair<std::string, uint64_t>>> seqs = db_->SegmentSeqs();
  if (!seqs.ok()) return seqs.status();
  for (auto& [name, seq] : *seqs) es.segment_seq[name] = seq;
  es.next_change_seq = db_->LastChangeSeq() + 1;
  hub_.SetLastSeq(db_->LastChangeSeq());
  Result<std::vector<std::pair<std::string, uint64_t>>> trait_seqs = db_->ComputedSeqs();
  if (!trait_seqs.ok()) return trait_seqs.status();
  for (auto& [name, seq] : *trait_seqs) es.trait_seq[name] = seq;
  es.next_computed_seq = db_->LastComputedSeq() + 1;
  computed_hub_.SetLastSeq(db_->LastComputedSeq());

  // Time kept running while the server was down: the difference between the membership as
  // persisted and as the engine computes it now is what the passing of time did.
  uint64_t reconciled = 0;
  std::vector<SegmentInfo> live = engine_->ListSegments();
  Result<std::vector<std::string>> persisted_segments = db_->MemberSegments();
  if (!persisted_segments.ok()) return persisted_segments.status();
  auto emit = [&](const std::string& segment, SegmentTarget target, const std::string& profile,
                  ChangeKind kind, Cause cause) {
    Change c;
    c.segment = segment;
    c.target = target;
    c.profile = profile;
    c.kind = kind;
    c.cause = cause;
    c.event_time = now;
    c.processed_at = now;
    OnChange(c);
    ++reconciled;
  };
  for (const SegmentInfo& s : live) {
    std::vector<std::string> was;
    st = db_->ForEachMember(s.name, [&](std::string_view p) { was.emplace_back(p); });
    if (!st.ok()) return st;
    es.segment_size[s.name] = was.size();
    Result<std::vector<std::string>> is = engine_->Members(s.name);
    if (!is.ok()) return is.status();
    // Both sorted by key.
    std::vector<std::string> exits, enters;
    std::set_difference(was.begin(), was.end(), is->begin(), is->end(), std::back_inserter(exits));
    std::set_difference(is->begin(), is->end(), was.begin(), was.end(), std::back_inserter(enters));
    for (const auto& p : exits) emit(s.name, s.target, p, ChangeKind::kExit, Cause::kTime);
    for (const auto& p : enters) emit(s.name, s.target, p, ChangeKind::kEnter, Cause::kTime);
  }
  for (const std::string& name : *persisted_segments) {
    if (es.segment_order.contains(name)) continue;
    // Members persisted for a segment that no longer exists (cannot happen with atomic batches;
    // repaired rather than trusted).
    std::vector<std::string> was;
    st = db_->ForEachMember(name, [&](std::string_view p) { was.emplace_back(p); });
    if (!st.ok()) return st;
    es.segment_size[name] = was.size();
    for (const auto& p : was) {
      emit(name, SegmentTarget::kUsers, p, ChangeKind::kExit, Cause::kDeleted);
    }
  }
  st = ReconcileComputed(now, &reconciled);
  if (!st.ok()) return st;
  if (!es.open->batch.Empty()) {
    st = db_->Write(&es.open->batch, true);
    if (!st.ok()) return st;
    hub_.Publish(std::move(es.open->changes));
    computed_hub_.Publish(std::move(es.open->computed));
    es.open = std::make_unique<Group>(db_.get());
  }
  recovery_millis_ = static_cast<Millis>(MicrosSince(t0) / 1000);
  spdlog::info(
      "recovered {} calls, {} segments, {} lists, {} erasures in {} ms; {} changes for the time "
      "the server was down",
      events, live.size(), lists->size(), erased.size(), recovery_millis_, reconciled);
  // Requeue the physical purge of erasures, in case the last run was interrupted.
  for (durable::ErasureRecord& r : *erasures) purges_.push_back(std::move(r));
  return Status::Ok();
}

Status Service::Start() {
  Status st = Recover();
  if (!st.ok()) return st;
  engine_->SetChangeListener([this](const Change& c) { OnChange(c); });
  engine_->SetComputedChangeListener([this](const ComputedChange& c) { OnComputedChange(c); });
  RefreshEngineMetrics();
  started_ = true;
  commit_thread_ = std::thread([this] { CommitLoop(); });
  engine_thread_ = std::thread([this] { EngineLoop(); });
  purge_thread_ = std::thread([this] {
    std::unique_lock lock(purge_mu_);
    while (true) {
      purge_cv_.wait(lock, [&] { return stopping_ || !purges_.empty(); });
      if (purges_.empty()) return;  // stopping
      durable::ErasureRecord r = std::move(purges_.front());
      purges_.pop_front();
      lock.unlock();
      Status s = db_->PurgeProfile(r.profile, r.log_seq, r.change_seq);
      if (s.ok()) s = db_->RedactComputed(r.profile, r.computed_seq);
      if (!s.ok()) spdlog::error("purging erased profile: {}", s.ToString());
      lock.lock();
    }
  });
  purge_cv_.notify_all();
  ready_.store(true, std::memory_order_release);
  return Status::Ok();
}

void Service::Stop() {
  if (!started_) {
    if (db_) db_.reset();
    return;
  }
  started_ = false;
  ready_.store(false);
  {
    std::lock_guard lock(es_->mu);
    es_->stop = true;
  }
  es_->cv.notify_all();
  engine_thread_.join();  // runs the queued tasks and seals the last group first
  {
    std::lock_guard lock(commit_mu_);
    stopping_ = true;
  }
  commit_cv_.notify_all();
  commit_thread_.join();
  {
    std::lock_guard lock(purge_mu_);
    stopping_ = true;
    purges_.clear();  // requeued from the erasure records at the next start
  }
  purge_cv_.notify_all();
  purge_thread_.join();
  db_.reset();
}

void Service::Run(std::function<void(Txn&)> task) {
  {
    std::lock_guard lock(es_->mu);
    es_->tasks.push_back(std::move(task));
  }
  es_->cv.notify_one();
}

void Service::EngineLoop() {
  EngineState& es = *es_;
  std::deque<std::function<void(Txn&)>> tasks;
  Txn txn(this, engine_.get());
  while (true) {
    {
      std::unique_lock lock(es.mu);
      while (es.tasks.empty() && !es.stop) {
        std::optional<Millis> next = virtual_clock_ ? std::nullopt : engine_->NextDeadline();
        if (next && *next <= clock_->Now()) break;
        // Wake at the deadline, and at least once a second to refresh the metrics.
        Millis wait = next ? std::min<Millis>(*next - clock_->Now() + 1, 1000) : 1000;
        es.cv.wait_for(lock, std::chrono::milliseconds(wait));
        if (es.tasks.empty()) break;  // a deadline, the metrics tick or a spurious wake
      }
      tasks.swap(es.tasks);
      if (tasks.empty() && es.stop) {
        lock.unlock();
        Seal();
        return;
      }
    }
    {
      std::unique_lock writing(engine_mu_);
      for (auto& task : tasks) task(txn);
      if (!virtual_clock_) engine_->AdvanceTime();
    }
    tasks.clear();  // after the lock: destroying a task may be slow (captured bodies)
    Seal();
    // Stats() walks every profile's state (a millisecond or two at 200k profiles): not on every
    // task, and not so often that it shows in the lookup latency.
    if (std::chrono::steady_clock::now() - engine_metrics_at_ > std::chrono::seconds(5)) {
      RefreshEngineMetrics();
    }
  }
}

void Service::RefreshEngineMetrics() {
  std::string out;
  EngineStats st = engine_->Stats();
  auto line = [&](std::string_view name, std::string_view help, uint64_t v) {
    fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name,
                   help, v);
  };
  line("shoal_profiles", "Profiles known to the engine.", st.profiles);
  line("shoal_records", "Identify and track records retained in memory.", st.records);
  line("shoal_timer_queue_depth", "Deadlines scheduled (window closings and openings).",
       st.pending_timers);
  line("shoal_engine_memory_bytes", "Memory held by the history and the segment state.",
       st.store_bytes + st.state_bytes);
  line("shoal_evaluations_total", "Segment re-evaluations (events and time).", st.evaluations);
  out.append("# HELP shoal_segment_size Members of each segment.\n");
  out.append("# TYPE shoal_segment_size gauge\n");
  for (const SegmentInfo& s : engine_->ListSegments()) {
    std::string name;
    for (char c : s.name) {
      if (c == '\\' || c == '"') name.push_back('\\');
      if (c == '\n') {
        name.append("\\n");
        continue;
      }
      name.push_back(c);
    }
    fmt::format_to(std::back_inserter(out), "shoal_segment_size{{segment=\"{}\"}} {}\n", name,
                   s.size);
  }
  std::lock_guard lock(engine_metrics_mu_);
  engine_metrics_ = std::move(out);
  engine_metrics_at_ = std::chrono::steady_clock::now();
}

std::string Service::EngineMetricsText() const {
  std::lock_guard lock(engine_metrics_mu_);
  return engine_metrics_;
}

void Service::Seal() {
  EngineState& es = *es_;
  if (es.open->batch.Empty() && es.open->done.empty()) return;
  {
    std::lock_guard lock(commit_mu_);
    sealed_.push_back(std::move(es.open));
  }
  commit_cv_.notify_one();
  es.open = std::make_unique<Group>(db_.get());
}

void Service::CommitLoop() {
  std::vector<std::unique_ptr<Group>> groups;
  while (true) {
    {
      std::unique_lock lock(commit_mu_);
      commit_cv_.wait(lock, [&] { return stopping_ || !sealed_.empty(); });
      if (sealed_.empty()) return;
      groups.swap(sealed_);
    }
    auto t0 = std::chrono::steady_clock::now();
    Status st;
    for (size_t i = 0; i < groups.size() && st.ok(); ++i) {
      if (groups[i]->batch.Empty()) continue;
      // One fsync for all: syncing the last write syncs the WAL with the earlier ones in it.
      bool last = true;
      for (size_t j = i + 1; j < groups.size(); ++j) last &= groups[j]->batch.Empty();
      st = db_->Write(&groups[i]->batch, options_.sync && last);
    }
    metrics_.groups.fetch_add(1, std::memory_order_relaxed);
    metrics_.commit_micros.fetch_add(MicrosSince(t0), std::memory_order_relaxed);
    if (!st.ok()) {
      // The engine is now ahead of the disk: nothing of these groups is acknowledged, and the
      // server cannot go on consistently. Crash-only: the restart recovers from the store.
      spdlog::critical("commit failed, exiting: {}", st.ToString());
      for (auto& g : groups) {
        for (auto& fn : g->done) fn(st);
      }
      std::_Exit(70);
    }
    std::vector<durable::StoredChange> changes;
    std::vector<durable::StoredComputedChange> computed;
    uint64_t messages = 0;
    for (auto& g : groups) {
      messages += g->messages;
      for (auto& c : g->computed) computed.push_back(std::move(c));
      if (changes.empty()) {
        changes = std::move(g->changes);
      } else {
        for (auto& c : g->changes) changes.push_back(std::move(c));
      }
    }
    metrics_.changes.fetch_add(changes.size(), std::memory_order_relaxed);
    if (!changes.empty()) hub_.Publish(std::move(changes));
    metrics_.computed_changes.fetch_add(computed.size(), std::memory_order_relaxed);
    if (!computed.empty()) computed_hub_.Publish(std::move(computed));
    for (auto& g : groups) {
      for (auto& fn : g->done) fn(st);
    }
    metrics_.pending_messages.fetch_sub(messages, std::memory_order_relaxed);
    groups.clear();
  }
}

bool Service::Ingest(std::vector<Message>&& messages, std::function<void(IngestOutcome)> done) {
  uint64_t n = messages.size();
  uint64_t pending = metrics_.pending_messages.fetch_add(n, std::memory_order_relaxed);
  if (pending + n > options_.max_pending_messages && pending > 0) {
    metrics_.pending_messages.fetch_sub(n, std::memory_order_relaxed);
    metrics_.rejected.fetch_add(n, std::memory_order_relaxed);
    return false;
  }
  auto t0 = std::chrono::steady_clock::now();
  Run([this, msgs = std::move(messages), done = std::move(done), t0, n](Txn& txn) mutable {
    EngineState& es = *es_;
    Millis now = clock_->Now();
    if (!virtual_clock_) {
      // Windows are half-open, [now - D, now): a call stamped with the current millisecond counts
      // from the next one. Applying it then (at most 2 ms from now) makes its enter an effect of
      // the event, in the same commit, rather than of a timer 1 ms later.
      Millis newest = kMinTime;
      for (const Message& m : msgs) newest = std::max(newest, m.timestamp);
      if (newest >= now && newest <= now + 1) {
        while ((now = clock_->Now()) <= newest) std::this_thread::yield();
      }
    }
    // Expire old message ids.
    es.seen->Expire(now);
    auto outcome = std::make_shared<IngestOutcome>();
    for (Message& m : msgs) {
      if (m.received_at == 0) m.received_at = now;
      if (!m.message_id.empty()) {
        if (!es.seen->Insert(IdHash(m.message_id), m.received_at)) {
          ++outcome->duplicates;
          continue;
        }
      }
      Status st = txn.engine().Ingest(m);
      if (!st.ok()) {
        // Decoded messages are valid; the engine refuses only what the decoder lets through by
        // design (none today). Count it rather than store what the engine did not take.
        metrics_.rejected.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      txn.batch().PutEvent(es.next_log_seq++, m);
      ++outcome->accepted;
    }
    metrics_.messages.fetch_add(outcome->accepted, std::memory_order_relaxed);
    metrics_.duplicates.fetch_add(outcome->duplicates, std::memory_order_relaxed);
    es.open->messages += n;
    txn.OnDurable([this, outcome, done = std::move(done), t0](const Status& st) {
      outcome->status = st;
      metrics_.ObserveAck(MicrosSince(t0));
      done(*outcome);
    });
  });
  return true;
}

Millis Service::ClockNow() const {
  return virtual_clock_ ? virtual_now_.load(std::memory_order_relaxed) : clock_->Now();
}

bool Service::IsDuplicate(std::string_view message_id) const {
  return es_->seen->Contains(IdHash(message_id));
}

void Service::SaveSegment(Txn& txn, std::string_view name) {
  Result<SegmentInfo> info = engine_->GetSegment(name);
  if (!info.ok()) return;
  txn.batch().PutSegment(DefinitionRecord(*info, &es_->segment_order, &es_->next_segment_order));
}

void Service::SaveComputed(Txn& txn, std::string_view name) {
  Result<ComputedTraitInfo> info = engine_->GetComputedTrait(name);
  if (!info.ok()) return;
  txn.batch().PutComputed(DefinitionRecord(*info, &es_->computed_order, &es_->next_segment_order));
  SnapshotComputed(txn, name);
}

Result<size_t> Service::SetClock(Millis t) {
  if (!virtual_clock_) return Status::FailedPrecondition("the server runs on the real clock");
  if (t < virtual_clock_->Now()) {
    return Status::FailedPrecondition("the clock cannot go back (now " +
                                      FormatTime(virtual_clock_->Now()) + ")");
  }
  virtual_clock_->Set(t);
  virtual_now_.store(t);
  return engine_->AdvanceTime();
}

Status Service::Erase(Txn& txn, std::string_view profile) {
  // The exits this erasure emits keep the id, so that downstream tools learn whom to remove;
  // every earlier change of the profile is redacted.
  uint64_t first_exit = es_->next_change_seq;
  uint64_t first_computed = es_->next_computed_seq;
  // A merged profile is erased whole: every key it has (docs/language.md, "Identity").
  std::vector<std::string> keys = engine_->KeysOf(profile);
  Status st = engine_->EraseProfile(profile);
  if (!st.ok()) return st;
  uint64_t before = es_->next_log_seq;
  for (const std::string& key : keys) {
    txn.batch().PutComputedErasure(key, before, first_exit, first_computed);
    for (const std::string& list : engine_->Lists()) txn.batch().DeleteListMember(list, key);
  }
  txn.OnDurable(
      [this, keys = std::move(keys), before, first_exit, first_computed](const Status& s) {
        if (!s.ok()) return;
        // Before the DELETE is answered: the id leaves the stored history and the change log (fast,
        // through the profile index); the scan of the call log runs in the background.
        for (const std::string& p : keys) {
          Status r = db_->RedactProfile(p, first_exit);
          if (!r.ok()) spdlog::error("event=redact_failed error=\"{}\"", r.ToString());
          hub_.Redact(p, first_exit);
          r = db_->RedactComputed(p, first_computed);
          if (!r.ok()) spdlog::error("event=redact_failed error=\"{}\"", r.ToString());
          computed_hub_.Redact(p, first_computed);
          {
            std::lock_guard lock(purge_mu_);
            purges_.push_back({p, before, first_exit, first_computed});
          }
        }
        purge_cv_.notify_one();
      });
  return Status::Ok();
}

// --- Computed value changes --------------------------------------------------------------------

void Service::OnComputedChange(const ComputedChange& c) {
  EngineState& es = *es_;
  durable::StoredComputedChange sc;
  sc.seq = es.next_computed_seq++;
  sc.trait_seq = ++es.trait_seq[c.trait];
  sc.change = c;
  sc.change.seq = sc.trait_seq;
  es.open->batch.PutComputedChange(sc);
  es.open->computed.push_back(std::move(sc));
}

uint64_t Service::ComputedSeq(std::string_view trait) const {
  auto it = es_->trait_seq.find(std::string(trait));
  return it == es_->trait_seq.end() ? 0 : it->second;
}

void Service::SnapshotComputed(Txn& txn, std::string_view name) {
  Result<ComputedTraitInfo> info = engine_->GetComputedTrait(name);
  Result<Value> empty = engine_->ComputedTraitEmptyValue(name);
  if (!info.ok() || !empty.ok()) return;
  // Only the values that differ from a new profile's: a profile without a persisted value has
  // that one (ReconcileComputed). The changes of this task, written before in the same batch,
  // are overwritten by the same values.
  txn.batch().DeleteComputedValues(name);
  Status st = engine_->ForEachComputedValue(name, [&](std::string_view key, const Value& v) {
    if (!(v == *empty)) txn.batch().PutComputedValue(name, key, info->target, v);
  });
  (void)st;  // the trait exists: GetComputedTrait just found it
}

Status Service::DeleteComputed(Txn& txn, std::string_view name) {
  Result<ComputedTraitInfo> info = engine_->GetComputedTrait(name);
  if (!info.ok()) return info.status();
  std::vector<std::pair<std::string, Value>> had;
  Status st = engine_->ForEachComputedValue(name, [&](std::string_view key, const Value& v) {
    if (v.type != ValueType::kNull) had.emplace_back(key, v);
  });
  if (!st.ok()) return st;
  st = engine_->DeleteComputedTrait(name);
  if (!st.ok()) return st;
  const Millis now = clock_->Now();
  ComputedChange c;
  c.trait = info->name;
  c.target = info->target;
  c.cause = Cause::kDeleted;
  c.event_time = now;
  c.processed_at = now;
  for (auto& [key, v] : had) {
    c.profile = std::move(key);
    c.old_value = std::move(v);
    OnComputedChange(c);
  }
  txn.batch().DeleteComputed(name);
  txn.batch().DeleteComputedValues(name);
  return Status::Ok();
}

Status Service::ReconcileComputed(Millis now, uint64_t* emitted) {
  auto emit = [&](const std::string& trait, SegmentTarget target, std::string_view profile,
                  const Value& old, const Value& value, Cause cause) {
    ComputedChange c;
    c.trait = trait;
    c.target = target;
    c.profile = std::string(profile);
    c.old_value = old;
    c.new_value = value;
    c.cause = cause;
    c.event_time = now;
    c.processed_at = now;
    OnComputedChange(c);
    ++*emitted;
  };
  absl::flat_hash_map<std::string, Value> was;
  auto load = [&](const std::string& trait) {
    was.clear();
    return db_->ForEachComputedValue(
        trait, [&](std::string_view p, SegmentTarget, const Value& v) { was.emplace(p, v); });
  };
  std::vector<ComputedTraitInfo> live = engine_->ListComputedTraits();
  for (const ComputedTraitInfo& t : live) {
    Status st = load(t.name);
    if (!st.ok()) return st;
    Result<Value> empty = engine_->ComputedTraitEmptyValue(t.name);
    if (!empty.ok()) return empty.status();
    st = engine_->ForEachComputedValue(t.name, [&](std::string_view key, const Value& v) {
      auto it = was.find(std::string(key));
      const Value& old = it == was.end() ? *empty : it->second;
      if (!(old == v)) emit(t.name, t.target, key, old, v, Cause::kTime);
      if (it != was.end()) was.erase(it);
    });
    if (!st.ok()) return st;
    // Values persisted for a profile the engine no longer has (cannot happen: an erasure's and a
    // merge's changes to no value are in the same batch; repaired rather than trusted).
    for (const auto& [p, v] : was) emit(t.name, t.target, p, v, Value::Null(), Cause::kErased);
  }
  // Values persisted for a trait that no longer exists (cannot happen either: the deletion
  // removes them in its batch).
  Result<std::vector<std::string>> persisted = db_->ComputedValueTraits();
  if (!persisted.ok()) return persisted.status();
  for (const std::string& name : *persisted) {
    if (engine_->GetComputedTrait(name).ok()) continue;
    std::vector<std::pair<std::string, std::pair<SegmentTarget, Value>>> gone;
    Status st = db_->ForEachComputedValue(
        name, [&](std::string_view p, SegmentTarget target, const Value& v) {
          gone.push_back({std::string(p), {target, v}});
        });
    if (!st.ok()) return st;
    for (const auto& [p, tv] : gone)
      emit(name, tv.first, p, tv.second, Value::Null(), Cause::kDeleted);
  }
  return Status::Ok();
}

}  // namespace shoal::server
