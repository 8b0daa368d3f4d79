// Service benchmarks (Google Benchmark): the server below HTTP, with the store, group commit and
// the change logs, without fsync (ServiceOptions::sync = false) so that the figures are the CPU
// and write cost rather than the disk's flush latency.
//
//   BM_IngestComputed/T/P  batches of 100 pre-decoded track calls through Service::Ingest (each
//                          waits for its commit), 10k users, with T live computed traits over
//                          those events (a count, a sum, a last value, a most frequent value;
//                          nearly every event changes each one). P=1 persists and publishes their
//                          value changes (the server's behaviour); P=0 removes the engine's
//                          computed listener, so the values are computed but their changes are
//                          neither recorded nor written: P=1 minus P=0 is the cost of the
//                          durable computed change log. T=0 is the baseline without traits.
//   BM_IngestSegmentChanges/S/P  the same for membership changes at a similar rate (S per call),
//                          for scale: P=1 minus P=0 is the cost of the membership change log.
//                          The machine is noisy: compare instruction counts too, one variant per
//                          run, e.g. `perf stat -e instructions:u build/service_bench
//                          --benchmark_filter=BM_IngestComputed/4/1`.
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "server/service.h"

namespace shoal {
namespace {

const Millis kNow = *ParseTime("2026-11-01T00:00:00Z");

Message Track(int i) {
  static const char* kCategories[] = {"Shoes", "Bags", "Hats", "Coats", "Socks"};
  static const char* kPlans[] = {"free", "pro", "team"};
  Message m;
  m.type = MessageType::kTrack;
  m.user_id = fmt::format("u{}", i % 10000);
  m.event = "Order Completed";
  m.message_id = fmt::format("m{}", i);
  m.timestamp = kNow - kDay + i;
  m.properties = {{"total", Value::Number(5 + i % 97)},
                  {"category", Value::String(kCategories[(i / 7) % 5])},
                  {"plan", Value::String(kPlans[(i / 3) % 3])}};
  return m;
}

// One benchmark run on a fresh service in its own temporary data directory (removed afterwards):
// `define(svc, txn)` creates what the run measures in one transaction, which is made durable
// first; then each iteration sends 100 messages, make(0), make(1), ..., through Service::Ingest
// and waits for the acknowledgement. Reports `counter`: the metric `count` per event.
template <typename Define, typename Make>
void IngestRounds(benchmark::State& state, const std::string& tag, Define define, Make make,
                  const char* counter, std::atomic<uint64_t> server::ServiceMetrics::*count) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    fmt::format("shoal-service-bench-{}-{}", ::getpid(), tag);
  std::filesystem::remove_all(dir);
  server::ServiceOptions o;
  o.data_dir = dir.string();
  o.virtual_clock_start = kNow;
  o.sync = false;
  o.dedup_window = kMinute;  // keep the dedup set small: the ids never repeat
  {
    server::Service svc(o);
    if (!svc.Start().ok()) {
      state.SkipWithError("the service did not start");
      return;
    }
    std::promise<void> ready;
    svc.Run([&](server::Txn& t) {
      define(svc, t);
      t.OnDurable([&](const Status&) { ready.set_value(); });
    });
    ready.get_future().get();
    int next = 0;
    for (auto _ : state) {
      state.PauseTiming();
      std::vector<Message> batch;
      for (int i = 0; i < 100; ++i) batch.push_back(make(next++));
      state.ResumeTiming();
      std::promise<void> done;
      (void)svc.Ingest(std::move(batch), [&](server::IngestOutcome) { done.set_value(); });
      done.get_future().get();
    }
    state.SetItemsProcessed(state.iterations() * 100);
    state.counters[counter] = static_cast<double>((svc.metrics().*count).load()) /
                              static_cast<double>(state.iterations() * 100);
  }
  std::filesystem::remove_all(dir);
}

void BM_IngestComputed(benchmark::State& state) {
  const int traits = static_cast<int>(state.range(0));
  const bool persist = state.range(1) != 0;
  const char* kDefs[] = {R"(count of "Order Completed" within 30d)",
                         R"(sum(total) of "Order Completed")", R"(last(plan) of "Order Completed")",
                         R"(most frequent(category) of "Order Completed" within 90d)"};
  IngestRounds(
      state, fmt::format("computed-{}-{}", traits, persist),
      [&](server::Service& svc, server::Txn& t) {
        for (int i = 0; i < traits; ++i) {
          const std::string name = fmt::format("c{}", i);
          if (t.engine().CreateComputedTrait(name, kDefs[i % 4]).ok()) svc.SaveComputed(t, name);
        }
        if (!persist) t.engine().SetComputedChangeListener(nullptr);
      },
      Track, "computed_changes_per_event", &server::ServiceMetrics::computed_changes);
}

BENCHMARK(BM_IngestComputed)
    ->Args({0, 1})
    ->Args({4, 0})
    ->Args({4, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->Iterations(400);  // fixed work (40k events), so `perf stat -e instructions:u` compares

// For scale: the membership change log at the same rate of changes. Identify calls flip each
// user's plan, and S segments read it (`plan = "a"` and S - 1 copies): every call is S enters or
// exits. P=0 removes the engine's change listener (membership kept, changes not written).
void BM_IngestSegmentChanges(benchmark::State& state) {
  const int segments = static_cast<int>(state.range(0));
  const bool persist = state.range(1) != 0;
  IngestRounds(
      state, fmt::format("seg-{}-{}", segments, persist),
      [&](server::Service& svc, server::Txn& t) {
        for (int i = 0; i < segments; ++i) {
          const std::string name = fmt::format("s{}", i);
          if (t.engine().CreateSegment(name, fmt::format(R"(plan = "a" or plan = "x{}")", i)).ok())
            svc.SaveSegment(t, name);
        }
        if (!persist) t.engine().SetChangeListener(nullptr);
      },
      [](int next) {
        Message m;
        m.type = MessageType::kIdentify;
        m.user_id = fmt::format("u{}", next % 10000);
        m.message_id = fmt::format("m{}", next);
        m.timestamp = kNow - kDay + next;
        m.traits = {{"plan", Value::String((next / 10000) % 2 == 0 ? "a" : "b")}};
        return m;
      },
      "changes_per_event", &server::ServiceMetrics::changes);
}
BENCHMARK(BM_IngestSegmentChanges)
    ->Args({4, 0})
    ->Args({4, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->Iterations(400);

}  // namespace
}  // namespace shoal

BENCHMARK_MAIN();
