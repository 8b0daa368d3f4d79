// `shoal serve`: the server. Opens (or creates) the data directory, recovers the engine from it,
// optionally loads the demo data set, and serves the HTTP API (docs/api.md) until SIGTERM/SIGINT,
// which drains in-flight requests and flushes before exiting.
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "api/api.h"
#include "api/http_server.h"
#include "ingest/decode.h"
#include "server/service.h"
#include "tools/commands.h"
#include "tools/demo_data.h"

namespace shoal::tools {
namespace {

struct ServeArgs {
  std::string host = "0.0.0.0";
  uint16_t port = 8080;
  std::string data_dir = "shoal-data";
  std::string write_key;
  std::string admin_token;
  std::string clock;
  std::string dedup_window = "24h";
  size_t dedup_max = 20'000'000;
  size_t max_pending = 200000;
  int threads = 2;
  bool demo = false;
  int demo_users = 2000;
  bool no_fsync = false;
  std::string log_level = "info";
  std::string config;
};

// Reads `key = value` lines (TOML-style: # comments, optional quotes, an optional [serve] section)
// and sets each option that the command line and the environment left unset.
Status ApplyConfigFile(const std::string& path, CLI::App* cmd) {
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("--config: cannot read " + path);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    auto trim = [](std::string s) {
      size_t a = s.find_first_not_of(" \t\r");
      size_t b = s.find_last_not_of(" \t\r");
      return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    };
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t == "[serve]") continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument(
          fmt::format("{}:{}: expected key = value, found \"{}\"", path, line_no, t));
    }
    std::string key = trim(t.substr(0, eq));
    std::string value = trim(t.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    std::replace(key.begin(), key.end(), '_', '-');
    CLI::Option* opt = nullptr;
    try {
      opt = cmd->get_option("--" + key);
    } catch (const CLI::Error&) {
      return Status::InvalidArgument(
          fmt::format("{}:{}: unknown option '{}' (see shoal serve --help)", path, line_no, key));
    }
    if (key == "config") continue;
    // The command line and the environment win over the file.
    if (opt->count() > 0) continue;
    if (!opt->get_envname().empty() && std::getenv(opt->get_envname().c_str())) continue;
    try {
      if (opt->get_type_size() == 0) {  // a flag
        if (value == "true" || value == "1") opt->add_result(std::string("true"));
      } else {
        opt->add_result(value);
      }
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return Status::InvalidArgument(fmt::format("{}:{}: {}: {}", path, line_no, key, e.what()));
    }
  }
  return Status::Ok();
}

// Waits for a task on the engine thread and returns its value.
template <typename T, typename F>
T OnEngine(server::Service& svc, F f) {
  std::promise<T> p;
  svc.Run([&](server::Txn& t) { p.set_value(f(t)); });
  return p.get_future().get();
}

Status LoadDemo(server::Service& svc, int users) {
  bool empty = OnEngine<bool>(svc, [](server::Txn& t) {
    return t.engine().ListSegments().empty() && t.engine().Stats().records == 0;
  });
  if (!empty) {
    spdlog::info("event=demo_skipped reason=\"the data directory already has data\"");
    return Status::Ok();
  }
  Millis now = RealClock().Now();
  DataSet data = GenerateDemoData(users, 42, now - 90 * kDay, now);
  ingest::Decoder decoder;
  ingest::DecodeOptions opts;
  opts.now = now;
  std::vector<Message> msgs;
  auto flush = [&]() -> Status {
    std::promise<server::IngestOutcome> p;
    while (!svc.Ingest(std::move(msgs), [&](server::IngestOutcome o) { p.set_value(o); })) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    server::IngestOutcome o = p.get_future().get();
    msgs.clear();
    return o.status;
  };
  for (const Line& line : data.lines) {
    Status st = decoder.Decode(line.json, opts, &msgs.emplace_back());
    if (!st.ok()) return Status::Internal("demo data: " + st.ToString());
    if (msgs.size() == 2000) {
      if (Status s = flush(); !s.ok()) return s;
    }
  }
  if (!msgs.empty()) {
    if (Status s = flush(); !s.ok()) return s;
  }
  for (const DemoSegment& seg : kDemoSegments) {
    std::promise<Status> p;
    svc.Run([&](server::Txn& t) {
      Result<SegmentInfo> info = t.engine().CreateSegment(seg.name, seg.definition);
      if (!info.ok()) return p.set_value(info.status());
      svc.SaveSegment(t, seg.name);
      t.OnDurable([&p](const Status& s) { p.set_value(s); });
    });
    if (Status s = p.get_future().get(); !s.ok()) return s;
  }
  spdlog::info("event=demo_loaded users={} calls={} segments={}", users, data.lines.size(),
               std::size(kDemoSegments));
  return Status::Ok();
}

int RunServe(const ServeArgs& a) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(a.log_level));

  server::ServiceOptions so;
  so.data_dir = a.data_dir;
  so.max_pending_messages = a.max_pending;
  so.sync = !a.no_fsync;
  if (!a.clock.empty()) {
    std::optional<Millis> t = ParseTime(a.clock);
    if (!t) {
      fmt::print(stderr, "--clock: not an ISO 8601 time: {}\n", a.clock);
      return 2;
    }
    so.virtual_clock_start = t;
  }
  std::optional<Millis> dw = ParseDuration(a.dedup_window);
  if (!dw) {
    fmt::print(stderr, "--dedup-window: not a duration (e.g. 24h): {}\n", a.dedup_window);
    return 2;
  }
  so.dedup_window = *dw;
  so.dedup_max_ids = a.dedup_max;
  if (a.write_key.empty()) {
    spdlog::warn("event=no_write_key msg=\"ingest accepts any caller: set --write-key\"");
  }
  if (a.admin_token.empty()) {
    spdlog::warn("event=no_admin_token msg=\"the admin API is open: set --admin-token\"");
  }

  // SIGTERM/SIGINT are taken by one thread with sigwait; every other thread blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  server::Service svc(so);
  spdlog::info("event=starting data_dir=\"{}\"", a.data_dir);
  if (Status st = svc.Start(); !st.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", st.ToString());
    return 1;
  }
  if (a.demo) {
    if (Status st = LoadDemo(svc, a.demo_users); !st.ok()) {
      spdlog::critical("event=demo_failed error=\"{}\"", st.ToString());
      return 1;
    }
  }
  api::Api api(&svc, {a.write_key, a.admin_token});
  api::HttpServer http(&api, {a.host, a.port, a.threads});
  if (Status st = http.Listen(); !st.ok()) {
    spdlog::critical("event=listen_failed error=\"{}\"", st.ToString());
    return 1;
  }
  std::string shown_host = a.host == "0.0.0.0" ? "127.0.0.1" : a.host;
  fmt::print("shoal: listening on http://{}:{} (data in {}, recovered in {} ms)\n", shown_host,
             http.port(), a.data_dir, svc.recovery_millis());
  std::fflush(stdout);

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == 0) return;
    spdlog::info("event=shutdown signal={}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http.Shutdown(10);
  });
  http.Run();
  svc.Stop();
  // Release the signal thread if Run returned for another reason.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  spdlog::info("event=stopped");
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Run the server: Segment-compatible ingest (/v1/track, /v1/batch, ...), the REST API for "
      "segments, profiles and lists, and the change stream (docs/api.md)");
  auto a = std::make_shared<ServeArgs>();
  cmd->add_option("--config", a->config,
                  "read options from this file, one `name = value` per line (port = 8080, "
                  "data-dir = \"/var/lib/shoal\"); the command line and the environment win")
      ->envname("SHOAL_CONFIG");
  cmd->add_option("--host", a->host, "address to listen on")
      ->envname("SHOAL_HOST")
      ->capture_default_str();
  cmd->add_option("--port", a->port, "TCP port to listen on (0: any free port)")
      ->envname("SHOAL_PORT")
      ->capture_default_str();
  cmd->add_option("--data-dir", a->data_dir,
                  "where the embedded store (RocksDB) keeps every accepted call, definition and "
                  "change; created if missing")
      ->envname("SHOAL_DATA_DIR")
      ->capture_default_str();
  cmd->add_option("--write-key", a->write_key,
                  "the key tracking clients send (HTTP Basic user or writeKey); it allows ingest "
                  "only. Empty: ingest is open")
      ->envname("SHOAL_WRITE_KEY");
  cmd->add_option("--admin-token", a->admin_token,
                  "the token for everything else (Authorization: Bearer TOKEN). Empty: the admin "
                  "API is open")
      ->envname("SHOAL_ADMIN_TOKEN");
  cmd->add_option("--clock", a->clock,
                  "run on a virtual clock starting at this ISO 8601 time, moved only by POST "
                  "/v1/debug/clock (tests)")
      ->envname("SHOAL_CLOCK");
  cmd->add_option("--dedup-window", a->dedup_window,
                  "a messageId seen within this much receive time is dropped as a duplicate")
      ->envname("SHOAL_DEDUP_WINDOW")
      ->capture_default_str();
  cmd->add_option("--dedup-max", a->dedup_max,
                  "remember at most this many messageIds (about 16 bytes each); beyond, the "
                  "oldest are forgotten first")
      ->envname("SHOAL_DEDUP_MAX")
      ->capture_default_str();
  cmd->add_option("--max-pending", a->max_pending,
                  "calls accepted but not yet durable before ingest answers 503 + Retry-After")
      ->envname("SHOAL_MAX_PENDING")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "HTTP I/O threads")
      ->envname("SHOAL_THREADS")
      ->capture_default_str();
  cmd->add_flag("--demo", a->demo,
                "when the data directory is empty, load a demo data set (90 days of a small "
                "shop) and five example segments");
  cmd->add_option("--demo-users", a->demo_users, "users in the demo data set")
      ->capture_default_str();
  cmd->add_flag("--unsafe-no-fsync", a->no_fsync,
                "acknowledge without fsync (benchmarks only: a power loss can lose acknowledged "
                "data; a process crash cannot)");
  cmd->add_option("--log-level", a->log_level, "trace, debug, info, warn, error")
      ->envname("SHOAL_LOG_LEVEL")
      ->capture_default_str();
  cmd->callback([a, cmd] {
    if (!a->config.empty()) {
      if (Status st = ApplyConfigFile(a->config, cmd); !st.ok()) {
        fmt::print(stderr, "{}\n", st.message());
        std::exit(2);
      }
    }
    int rc = RunServe(*a);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace shoal::tools
