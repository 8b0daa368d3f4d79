// Decoding throughput of Segment-spec messages: the first 100k lines of the peers' events.ndjson
// (SHOAL_BENCH_NDJSON; default build/peers-smoke/events.ndjson, which scripts/test.sh writes),
// decoded with one Decoder into one reused Message, as the ingest path does.
//   InPlace: the lines stay in one buffer and are parsed where they are (the bytes after a line
//            serve as simdjson's padding).
//   Copied:  capacity == len, so each line is first copied into the Decoder's padded buffer.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "ingest/decode.h"

namespace {

constexpr size_t kMaxLines = 100000;
constexpr size_t kPadding = 64;

struct Corpus {
  std::string buf;                               // the lines, '\n'-separated, plus padding
  std::vector<std::pair<size_t, size_t>> lines;  // offset, length
  std::string error;
};

const Corpus& Load() {
  static const Corpus corpus = [] {
    Corpus c;
    const char* env = std::getenv("SHOAL_BENCH_NDJSON");
    std::string path = env != nullptr && *env ? env : "build/peers-smoke/events.ndjson";
    std::ifstream in(path);
    if (!in) {
      c.error = "cannot read " + path + " (set SHOAL_BENCH_NDJSON)";
      return c;
    }
    std::string line;
    while (c.lines.size() < kMaxLines && std::getline(in, line)) {
      if (line.empty()) continue;
      c.lines.emplace_back(c.buf.size(), line.size());
      c.buf += line;
      c.buf += '\n';
    }
    c.buf.append(kPadding, '\0');
    if (c.lines.empty()) c.error = path + " has no lines";
    return c;
  }();
  return corpus;
}

void Run(benchmark::State& state, bool in_place) {
  const Corpus& c = Load();
  if (!c.error.empty()) {
    state.SkipWithError(c.error.c_str());
    return;
  }
  shoal::ingest::Decoder decoder;
  shoal::Message msg;
  shoal::ingest::DecodeOptions opts;
  opts.received_at = 1790000000000;
  size_t items = 0, bytes = 0, errors = 0;
  for (auto _ : state) {
    for (const auto& [off, len] : c.lines) {
      const char* p = c.buf.data() + off;
      size_t capacity = in_place ? c.buf.size() - off : len;
      shoal::Status st = decoder.Decode(p, len, capacity, opts, &msg);
      errors += !st.ok();
      benchmark::DoNotOptimize(msg.timestamp);
      bytes += len;
    }
    items += c.lines.size();
  }
  if (errors > 0) state.SkipWithError("some lines failed to decode");
  state.SetItemsProcessed(static_cast<int64_t>(items));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["lines"] = static_cast<double>(c.lines.size());
}

void BM_DecodeInPlace(benchmark::State& state) { Run(state, true); }
void BM_DecodeCopied(benchmark::State& state) { Run(state, false); }

BENCHMARK(BM_DecodeInPlace)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeCopied)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
