// What this machine's memory costs: the figures that bound the full-size peers replay, which is
// memory-bound (docs/benchmarks.md, "Round 5: the machine's memory"). Nothing of Shoal's code.
//   RandomRead/MB/ahead: independent random 8-byte reads in an array of MB megabytes, each
//     followed by a short chain of arithmetic (a stand-in for an event's other work); with
//     ahead > 0 each address is prefetched that many reads earlier. Reported: time per read.
//   PageSpread/KB/spread: dependent random 8-byte reads among KB kilobytes' worth of cache lines,
//     either packed together (spread = 0: KB / 4 pages) or one line per 4 KB page over 1 GB
//     (spread = 1: KB * 16 pages). The lines fit the caches either way; the difference is what
//     reaching a page costs when its translation is not in the TLB (on this VM, a nested walk).
//     Reported: time per read.
//   FirstTouch/populate: mmap 256 MB in 256 KB pieces (the store's chunk size) and write one
//     byte per 4 KB page; with populate = 1, madvise(MADV_POPULATE_WRITE) first, so each piece
//     costs one call instead of one page fault per page. Reported: time per GB.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; Debian 12's headers may predate it
#endif

namespace {

void RandomRead(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) << 17;  // MB of uint64_t
  const auto ahead = static_cast<size_t>(state.range(1));
  std::vector<uint64_t> a(n, 1);
  std::vector<uint32_t> idx(1 << 20);
  std::mt19937_64 rng(1);
  for (uint32_t& x : idx) x = static_cast<uint32_t>(rng() % n);
  uint64_t sum = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < idx.size(); ++i) {
      if (ahead && i + ahead < idx.size()) __builtin_prefetch(&a[idx[i + ahead]]);
      sum += a[idx[i]];
      for (int k = 0; k < 20; ++k) sum = sum * 31 + k;
    }
  }
  benchmark::DoNotOptimize(sum);
  state.counters["per_read"] =
      benchmark::Counter(static_cast<double>(state.iterations() * idx.size()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(RandomRead)
    ->ArgsProduct({{8, 1024}, {0, 8}})
    ->ArgNames({"MB", "ahead"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

void PageSpread(benchmark::State& state) {
  const size_t lines = static_cast<size_t>(state.range(0)) * 1024 / 64;
  const bool spread = state.range(1) != 0;
  constexpr size_t kSpan = size_t{1} << 30;
  void* m = mmap(nullptr, kSpan, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  auto* p = static_cast<char*>(m);
  madvise(p, kSpan, MADV_HUGEPAGE);  // as the engine's heap (jemalloc, thp:always)
  std::vector<size_t> off(lines);
  const size_t stride = kSpan / lines / 4096 * 4096;
  for (size_t i = 0; i < lines; ++i) off[i] = spread ? i * stride + (i % 64) * 64 : i * 64;
  for (size_t o : off) p[o] = 1;
  std::mt19937_64 rng(1);
  std::vector<size_t> idx(1 << 20);
  for (size_t& x : idx) x = off[rng() % lines];
  uint64_t sum = 0;
  for (auto _ : state)
    for (size_t x : idx) sum += *reinterpret_cast<volatile char*>(p + x + (sum & 1));
  benchmark::DoNotOptimize(sum);
  munmap(p, kSpan);
  state.counters["per_read"] =
      benchmark::Counter(static_cast<double>(state.iterations() * idx.size()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(PageSpread)
    ->ArgsProduct({{1024, 4096}, {0, 1}})
    ->ArgNames({"KB", "spread"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

void FirstTouch(benchmark::State& state) {
  constexpr size_t kPiece = 256 << 10, kTotal = size_t{256} << 20;
  const bool populate = state.range(0) != 0;
  for (auto _ : state) {
    std::vector<char*> pieces;
    for (size_t done = 0; done < kTotal; done += kPiece) {
      void* m = mmap(nullptr, kPiece, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) {
        state.SkipWithError("mmap failed");
        return;
      }
      auto* p = static_cast<char*>(m);
      if (populate && madvise(p, kPiece, MADV_POPULATE_WRITE) != 0) {
        state.SkipWithError("madvise(MADV_POPULATE_WRITE) is not supported here");
        return;
      }
      for (size_t i = 0; i < kPiece; i += 4096) p[i] = 1;
      pieces.push_back(p);
    }
    state.PauseTiming();
    for (char* p : pieces) munmap(p, kPiece);
    state.ResumeTiming();
  }
  state.counters["per_GB"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kTotal / (size_t{1} << 30),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(FirstTouch)->Arg(0)->Arg(1)->ArgNames({"populate"})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
