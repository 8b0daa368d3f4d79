// `shoal bench peers DATA_DIR --out OUT_DIR`: the shared/peers workload through the engine.
//
// Pass 1 (live): define the user segments, then replay events.ndjson (parsing included, no
// durability) with the virtual clock at the workload's NOW; the replay rate is events_per_s.
// Members are written to OUT_DIR/sN.txt for shared/peers/check_oracle.sh.
// Pass 2 (backfill): a fresh engine ingests the same events with no segment defined, then the
// segments are created over the stored history; that creation time is backfill_seconds.
// The last line printed is one JSON object with the figures.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "ingest/decode.h"
#include "shoal/engine.h"
#include "tools/commands.h"

namespace shoal::tools {
namespace {

struct PeerSegment {
  const char* id;
  const char* definition;
  SegmentTarget target = SegmentTarget::kUsers;  // account segments are helpers: no sN.txt
};

// The shared/peers segments in the Shoal language. s7 is two: the accounts with 3+ recent email
// clickers, then their users; an account segment comes before the user segment that reads it.
const PeerSegment kPeerSegments[] = {
    {"s1", R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)"},
    {"s2", R"(performed "Product Added" within 1d not followed by "Order Completed")"},
    {"s3",
     R"(performed "Flight Booked" where destination = "Lisbon" and did not perform "Trip Taken" within 180d)"},
    {"s4", R"(performed "Savings Opened" and did not perform "Transfer Set Up")"},
    {"s5", R"(sum(total) of "Order Completed" within 90d > 500)"},
    {"s6", R"(country in ("DE", "FR") and plan = "pro" and age between 25 and 40)"},
    {"s7_accounts", R"(at least 3 members (performed "Email Clicked" within 14d))",
     SegmentTarget::kAccounts},
    {"s7", R"(account in segment "s7_accounts")"},
    {"s8",
     R"(performed "Login" at least 5 times between 90d ago and 30d ago and did not perform "Login" within 30d)"},
};

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU time of this thread, user and system: on a shared machine the wall time of a phase swings
// with the other work on the cores, the CPU time it was given much less.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// CPU time of the whole process: the backfill's worker threads count too.
double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double PeakRssMb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

double RssMb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

struct ReplayResult {
  uint64_t events = 0;
  uint64_t errors = 0;
  double seconds = 0;
  double cpu_seconds = 0;
};

// Streams an NDJSON file through the engine in 16 MiB blocks; each line is parsed in place with
// the block's spare bytes as simdjson padding.
// With `lookahead`, each message is decoded one line ahead and Engine::Prefetch is issued for it
// before the previous one is ingested, so its profile slot's cache miss overlaps with that work.
Status Replay(const std::string& path, Engine* engine, uint64_t limit, ReplayResult* out,
              bool lookahead) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Status::NotFound("cannot open " + path);
  // Lines up to kBlock long; each read() asks for at most kRead, so the bytes it copies are
  // still in the cache when the decoder reads them (with 16 MiB reads the decoder read from
  // memory what the kernel had just written there).
  constexpr size_t kBlock = 16 << 20, kRead = 256 << 10, kPad = 64;
  std::vector<char> buf(kBlock + kPad);
  size_t have = 0;
  ingest::Decoder decoder;
  ingest::DecodeOptions opts;
  opts.now = engine->Now();
  Message msgs[2];
  int cur = 0;           // msgs[cur] is decoded next
  bool waiting = false;  // msgs[cur ^ 1] is decoded and waits to be ingested
  auto report = [&](const Status& st) {
    if (!st.ok() && ++out->errors <= 5)
      fmt::print(stderr, "line {}: {}\n", out->events + out->errors, st.message());
  };
  auto ingest_waiting = [&] {
    if (!waiting) return;
    report(engine->Ingest(msgs[cur ^ 1]));
    waiting = false;
  };
  auto start = std::chrono::steady_clock::now();
  const double cpu_start = ThreadCpuSeconds();
  bool eof = false;
  while (!eof && out->events < limit) {
    ssize_t n = ::read(fd, buf.data() + have, std::min(kRead, kBlock - have));
    if (n < 0) {
      ::close(fd);
      return Status::Internal("read failed on " + path);
    }
    if (n == 0) eof = true;
    have += static_cast<size_t>(n);
    size_t pos = 0;
    while (pos < have && out->events < limit) {
      const char* nl = static_cast<const char*>(std::memchr(buf.data() + pos, '\n', have - pos));
      if (!nl && !eof) break;
      size_t end = nl ? static_cast<size_t>(nl - buf.data()) : have;
      if (end > pos) {
        Message& msg = msgs[cur];
        Status st = decoder.Decode(buf.data() + pos, end - pos, buf.size() - pos, opts, &msg);
        if (!lookahead) {
          if (st.ok()) st = engine->Ingest(msg);
          report(st);
        } else if (st.ok()) {
          engine->Prefetch(msg);
          ingest_waiting();
          waiting = true;
          cur ^= 1;
        } else {
          ingest_waiting();
          report(st);
        }
        ++out->events;
      }
      pos = end + 1;
    }
    if (pos > have) pos = have;
    std::memmove(buf.data(), buf.data() + pos, have - pos);
    have -= pos;
    if (have == kBlock) {
      ::close(fd);
      return Status::InvalidArgument("a line longer than 16 MiB in " + path);
    }
  }
  ingest_waiting();
  out->seconds = Seconds(start, std::chrono::steady_clock::now());
  out->cpu_seconds = ThreadCpuSeconds() - cpu_start;
  ::close(fd);
  return Status::Ok();
}

// The peers segments named in `only` (comma-separated ids; empty: all), in their order.
Result<std::vector<PeerSegment>> SelectSegments(const std::string& only) {
  std::vector<PeerSegment> out;
  if (only.empty())
    return std::vector<PeerSegment>(std::begin(kPeerSegments), std::end(kPeerSegments));
  std::set<std::string> want;
  for (size_t b = 0; b <= only.size();) {
    size_t e = only.find(',', b);
    if (e == std::string::npos) e = only.size();
    if (e > b) want.insert(only.substr(b, e - b));
    b = e + 1;
  }
  for (const PeerSegment& s : kPeerSegments)
    if (want.erase(s.id)) out.push_back(s);
  if (!want.empty())
    return Status::InvalidArgument("--segments: no peers segment \"" + *want.begin() +
                                   "\" (s1 ... s8, s7_accounts)");
  return out;
}

int RunPeers(const std::string& data_dir, const std::string& out_dir, const std::string& now_text,
             uint64_t limit, bool skip_backfill, bool skip_live, unsigned threads, bool lookahead,
             const std::vector<PeerSegment>& segments) {
  auto now = ParseTime(now_text);
  if (!now) {
    fmt::print(stderr, "--now: not an ISO 8601 time: {}\n", now_text);
    return 2;
  }
  const std::string events = data_dir + "/events.ndjson";
  if (!std::filesystem::exists(events)) {
    fmt::print(stderr, "{} does not exist (make it with shared/peers/gen.py --out {})\n", events,
               data_dir);
    return 2;
  }
  std::filesystem::create_directories(out_dir);
  VirtualClock clock(*now);

  // Pass 1: live segments during the replay.
  ReplayResult live;
  std::vector<std::pair<std::string, uint64_t>> counts;
  double state_mb = 0, store_mb = 0, bytes_per_profile = 0, bytes_per_event = 0;
  uint64_t profiles = 0, records = 0;
  double rss_after_live = 0;
  if (!skip_live) {
    Options opts;
    opts.keep_changes = false;
    opts.backfill_threads = threads;
    Engine engine(&clock, opts);
    uint64_t changes = 0;
    engine.SetChangeListener([&](const Change&) { ++changes; });
    for (const PeerSegment& s : segments) {
      auto r = engine.CreateSegment(s.id, s.definition, s.target);
      if (!r.ok()) {
        fmt::print(stderr, "segment {}: {}\n", s.id, r.status().message());
        return 1;
      }
    }
    Status st = Replay(events, &engine, limit, &live, lookahead);
    if (!st.ok()) {
      fmt::print(stderr, "{}\n", st.message());
      return 1;
    }
    fmt::print(stderr,
               "live replay: {} events in {:.2f} s = {:.0f} events/s ({:.2f} s of CPU = {:.0f} "
               "events per CPU second), {} changes\n",
               live.events, live.seconds, live.events / live.seconds, live.cpu_seconds,
               live.events / live.cpu_seconds, changes);
    for (const PeerSegment& s : segments) {
      auto members = engine.Members(s.id);
      counts.emplace_back(s.id, members->size());
      if (s.target != SegmentTarget::kUsers) continue;
      std::ofstream f(out_dir + "/" + s.id + ".txt");
      for (const std::string& m : *members) f << m << '\n';
    }
    EngineStats stats = engine.Stats();
    profiles = stats.profiles;
    records = stats.records;
    store_mb = stats.store_bytes / 1048576.0;
    state_mb = stats.state_bytes / 1048576.0;
    bytes_per_event = records ? static_cast<double>(stats.store_bytes) / records : 0;
    bytes_per_profile = profiles ? static_cast<double>(stats.state_bytes) / profiles : 0;
    rss_after_live = RssMb();
  }

  // Pass 2: ingest with no segments, then create them over the stored history.
  ReplayResult bare;
  double backfill = 0, backfill_cpu = 0, backfill_process_cpu = 0;
  Options resolved;
  resolved.backfill_threads = threads;
  const unsigned backfill_threads = BackfillThreads(resolved);
  if (!skip_backfill) {
    Options opts;
    opts.keep_changes = false;
    opts.backfill_threads = threads;
    Engine engine(&clock, opts);
    Status st = Replay(events, &engine, limit, &bare, lookahead);
    if (!st.ok()) {
      fmt::print(stderr, "{}\n", st.message());
      return 1;
    }
    auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = ThreadCpuSeconds(), process_cpu0 = ProcessCpuSeconds();
    std::string each;
    for (const PeerSegment& s : segments) {
      auto t1 = std::chrono::steady_clock::now();
      auto r = engine.CreateSegment(s.id, s.definition, s.target);
      if (!r.ok()) return 1;
      each +=
          fmt::format(" {} {:.1f} ms", s.id, 1e3 * Seconds(t1, std::chrono::steady_clock::now()));
    }
    backfill = Seconds(t0, std::chrono::steady_clock::now());
    backfill_cpu = ThreadCpuSeconds() - cpu0;
    backfill_process_cpu = ProcessCpuSeconds() - process_cpu0;
    fmt::print(stderr, "backfill per segment:{}\n", each);
    if (skip_live) {  // no live pass to compare with: write the members from here
      for (const PeerSegment& s : segments) {
        auto members = engine.Members(s.id);
        counts.emplace_back(s.id, members->size());
        if (s.target != SegmentTarget::kUsers) continue;
        std::ofstream f(out_dir + "/" + s.id + ".txt");
        for (const std::string& m : *members) f << m << '\n';
      }
    }
    for (size_t i = 0; i < counts.size(); ++i) {
      auto n = engine.Count(counts[i].first);
      if (!n.ok() || *n != counts[i].second) {
        fmt::print(stderr, "backfill of {} gave {} members, the live replay {}\n", counts[i].first,
                   n.ok() ? *n : 0, counts[i].second);
        return 1;
      }
    }
    fmt::print(stderr,
               "ingest without segments: {:.2f} s ({:.2f} s of CPU); backfill of {} segments on "
               "{} thread(s): {:.3f} s ({:.3f} s of CPU on this thread, {:.3f} s in all)\n",
               bare.seconds, bare.cpu_seconds, counts.size(), backfill_threads, backfill,
               backfill_cpu, backfill_process_cpu);
  }

  std::string seg_json;
  for (const auto& [id, n] : counts)
    seg_json += fmt::format("{}\"{}\":{}", seg_json.empty() ? "" : ",", id, n);
  fmt::print(
      "{{\"events\":{},\"errors\":{},\"seconds\":{:.3f},\"events_per_s\":{:.0f},"
      "\"cpu_seconds\":{:.3f},\"ingest_only_seconds\":{:.3f},\"ingest_only_cpu_seconds\":{:.3f},"
      "\"backfill_seconds\":{:.4f},\"backfill_cpu_seconds\":{:.4f},"
      "\"backfill_process_cpu_seconds\":{:.4f},\"backfill_threads\":{},\"peak_rss_mb\":{:.0f},"
      "\"rss_after_live_mb\":{:.0f},\"profiles\":{},\"records\":{},\"store_mb\":{:.0f},"
      "\"state_mb\":{:.0f},\"store_bytes_per_record\":{:.1f},\"state_bytes_per_profile\":{:.1f},"
      "\"members\":{{{}}}}}\n",
      live.events, live.errors, live.seconds, live.seconds > 0 ? live.events / live.seconds : 0.0,
      live.cpu_seconds, bare.seconds, bare.cpu_seconds, backfill, backfill_cpu,
      backfill_process_cpu, backfill_threads, PeakRssMb(), rss_after_live, profiles, records,
      store_mb, state_mb, bytes_per_event, bytes_per_profile, seg_json);
  return 0;
}

// `--compare-threads R`: the backfill on one thread and on `threads` side by side in one process,
// so both see the same machine. Two engines ingest the same events with no segment; then, R
// rounds, each engine creates the segments (timed: wall and process CPU) and deletes them again,
// alternating which goes first. Later rounds reuse memory the allocator kept from the first, so
// round 1 is the one a fresh process pays. Members of the two engines must be equal.
int RunCompareThreads(const std::string& data_dir, const std::string& now_text, uint64_t limit,
                      unsigned threads, int rounds) {
  auto now = ParseTime(now_text);
  if (!now) {
    fmt::print(stderr, "--now: not an ISO 8601 time: {}\n", now_text);
    return 2;
  }
  VirtualClock clock(*now);
  Options one, many;
  one.keep_changes = many.keep_changes = false;
  one.backfill_threads = 1;
  many.backfill_threads = threads;
  const unsigned n = BackfillThreads(many);
  Engine e1(&clock, one), en(&clock, many);
  for (Engine* e : {&e1, &en}) {
    ReplayResult r;
    Status st = Replay(data_dir + "/events.ndjson", e, limit, &r, true);
    if (!st.ok()) {
      fmt::print(stderr, "{}\n", st.message());
      return 1;
    }
  }
  std::vector<double> wall[2], cpu[2];
  for (int round = 0; round < rounds; ++round) {
    for (int k = 0; k < 2; ++k) {
      const int which = (round + k) % 2;  // 0: one thread, 1: n threads
      Engine& e = which ? en : e1;
      auto t0 = std::chrono::steady_clock::now();
      const double c0 = ProcessCpuSeconds();
      for (const PeerSegment& s : kPeerSegments)
        if (!e.CreateSegment(s.id, s.definition, s.target).ok()) return 1;
      wall[which].push_back(Seconds(t0, std::chrono::steady_clock::now()));
      cpu[which].push_back(ProcessCpuSeconds() - c0);
      if (round == rounds - 1 && k == 1) {
        for (const PeerSegment& s : kPeerSegments) {
          auto a = e1.Members(s.id), b = en.Members(s.id);
          if (!a.ok() || !b.ok() || *a != *b) {
            fmt::print(stderr, "segment {}: the {}-thread backfill differs from one thread\n", s.id,
                       n);
            return 1;
          }
        }
      }
    }
    if (round < rounds - 1)
      for (Engine* e : {&e1, &en})
        for (auto it = std::rbegin(kPeerSegments); it != std::rend(kPeerSegments); ++it)
          if (!e->DeleteSegment(it->id).ok()) return 1;
  }
  auto list = [](const std::vector<double>& v) {
    std::string out;
    for (double x : v) out += fmt::format("{}{:.3f}", out.empty() ? "" : ",", x);
    return out;
  };
  for (int round = 0; round < rounds; ++round)
    fmt::print(stderr,
               "round {}: backfill of {} segments, 1 thread {:.3f} s ({:.3f} s CPU), {} threads "
               "{:.3f} s ({:.3f} s CPU): {:.2f}x the wall time\n",
               round + 1, std::size(kPeerSegments), wall[0][round], cpu[0][round], n,
               wall[1][round], cpu[1][round], wall[1][round] / wall[0][round]);
  fmt::print(
      "{{\"threads\":{},\"one_thread_seconds\":[{}],\"one_thread_cpu_seconds\":[{}],"
      "\"threads_seconds\":[{}],\"threads_cpu_seconds\":[{}],\"members_equal\":true}}\n",
      n, list(wall[0]), list(cpu[0]), list(wall[1]), list(cpu[1]));
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "End-to-end benchmarks");
  bench->require_subcommand(1);
  AddHttpBenchCommand(bench);
  auto* peers = bench->add_subcommand(
      "peers", "Replay shared/peers' events.ndjson with its segments live; write OUT_DIR/sN.txt");
  struct Args {
    std::string data_dir, out_dir = "peers-out", now = "2026-11-01T00:00:00Z";
    uint64_t limit = UINT64_MAX;
    bool skip_backfill = false, skip_live = false;
    unsigned threads = 0;
    bool no_lookahead = false;
    int compare_rounds = 0;
    std::string segments;
  };
  auto args = std::make_shared<Args>();
  peers->add_option("DATA_DIR", args->data_dir, "folder with events.ndjson (gen.py --out)")
      ->required();
  peers->add_option("--out", args->out_dir, "where to write s1.txt ... s8.txt");
  peers->add_option("--now", args->now, "the workload's NOW (the engine's virtual clock)");
  peers->add_option("--limit", args->limit, "replay at most this many lines");
  peers->add_flag("--skip-backfill", args->skip_backfill, "skip the second (backfill) pass");
  peers->add_flag("--skip-live", args->skip_live, "skip the first (live replay) pass");
  peers->add_option("--threads", args->threads,
                    "backfill threads (Options::backfill_threads; 0: the hardware threads, at "
                    "most 4; 1: one thread)");
  peers->add_option("--compare-threads", args->compare_rounds,
                    "instead of the passes: R rounds of the backfill on 1 thread and on --threads "
                    "side by side in one process (two engines)");
  peers->add_option("--segments", args->segments,
                    "only these segments, comma-separated (e.g. s1,s2,s3,s4,s5,s6,s8: the 7 user "
                    "segments of the engine issue's replay goal); default: all 9");
  peers->add_flag("--no-lookahead", args->no_lookahead,
                  "ingest each message as soon as it is decoded (no Engine::Prefetch one ahead)");
  peers->callback([args] {
    if (args->skip_live && args->skip_backfill) {
      fmt::print(stderr, "--skip-live and --skip-backfill together leave nothing to run\n");
      std::exit(2);
    }
    if (args->compare_rounds > 0) {
      int rc = RunCompareThreads(args->data_dir, args->now, args->limit, args->threads,
                                 args->compare_rounds);
      if (rc != 0) std::exit(rc);
      return;
    }
    auto segments = SelectSegments(args->segments);
    if (!segments.ok()) {
      fmt::print(stderr, "{}\n", segments.status().message());
      std::exit(2);
    }
    int rc = RunPeers(args->data_dir, args->out_dir, args->now, args->limit, args->skip_backfill,
                      args->skip_live, args->threads, !args->no_lookahead, *segments);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace shoal::tools
