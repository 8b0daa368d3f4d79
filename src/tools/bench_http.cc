// `shoal bench http`: load generator and latency probes against a running `shoal serve`
// (bench/http_bench.sh starts one on a fresh data directory and runs this). Four measurements:
//   ingest   events.ndjson through POST /v1/batch (100 calls per request, each with a messageId,
//            durable acks), from N keep-alive connections: events/s.
//   stream   event accepted (request sent) to its enter delivered on the SSE stream: p50/p99.
//   expiry   a window closing to the exit delivered on the stream: p50/p99, measured from the
//            exact instant the window closes.
//   lookup   GET /v1/profiles/{id}/segments at a fixed request rate: p50/p99 and achieved rate.
// The last line printed is one JSON object with every figure.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shoal/time.h"
#include "tools/commands.h"

namespace shoal::tools {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

struct HttpArgs {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string write_key, admin_token;
  std::string data_dir;  // with events.ndjson; empty: skip the ingest phase
  uint64_t events = 2000000;
  int connections = 4;
  int batch = 100;
  int probes = 2000;
  int lookup_rate = 10000;
  double lookup_seconds = 5;
  int lookup_connections = 4;
  bool skip_ingest = false;
  std::string lookup_path = "/v1/profiles/u{}/segments";  // {} is a user number
};

std::string Base64(std::string_view in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(a[(v >> s) & 63]);
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out.push_back(a[(v >> 18) & 63]);
    out.push_back(a[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? a[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// One blocking keep-alive HTTP/1.1 connection.
class Client {
 public:
  Client(const HttpArgs& a) : stream_(ioc_) {
    tcp::resolver r(ioc_);
    stream_.connect(r.resolve(a.host, std::to_string(a.port)));
    stream_.socket().set_option(tcp::no_delay(true));
    host_ = a.host;
  }
  // Returns the status; the body in *body when given.
  unsigned Send(http::verb verb, const std::string& target, const std::string& auth,
                std::string body, std::string* out = nullptr) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, host_);
    if (!auth.empty()) req.set(http::field::authorization, auth);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    http::write(stream_, req);
    http::response<http::string_body> res;
    http::read(stream_, buf_, res);
    if (out) *out = std::move(res.body());
    return res.result_int();
  }

 private:
  asio::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::string host_;
};

// Reads a server-sent event stream on its own thread and records when each profile's change of
// the wanted kind arrives.
class StreamWatcher {
 public:
  StreamWatcher(const HttpArgs& a, const std::string& segment, const std::string& kind)
      : stream_(ioc_), kind_(kind) {
    tcp::resolver r(ioc_);
    stream_.connect(r.resolve(a.host, std::to_string(a.port)));
    std::string req = fmt::format(
        "GET /v1/changes?segment={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n"
        "Authorization: Bearer {}\r\n\r\n",
        segment, a.host, a.admin_token);
    asio::write(stream_.socket(), asio::buffer(req));
    thread_ = std::thread([this] { Loop(); });
  }
  ~StreamWatcher() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    thread_.join();
  }
  // Waits (up to 10 s) for the header and the first comment: the stream is live.
  bool WaitReady() {
    for (int i = 0; i < 1000 && !ready_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return ready_;
  }
  std::optional<SteadyClock::time_point> Arrival(const std::string& profile) {
    std::lock_guard lock(mu_);
    auto it = arrivals_.find(profile);
    if (it == arrivals_.end()) return std::nullopt;
    return it->second;
  }
  size_t Count() {
    std::lock_guard lock(mu_);
    return arrivals_.size();
  }

 private:
  void Loop() {
    std::string data;
    char buf[65536];
    beast::error_code ec;
    while (true) {
      size_t n = stream_.socket().read_some(asio::buffer(buf), ec);
      if (ec) return;
      auto now = SteadyClock::now();
      data.append(buf, n);
      if (!ready_ && data.find("\r\n\r\n") != std::string::npos &&
          data.find("\n\n", data.find("\r\n\r\n") + 4) != std::string::npos)
        ready_ = true;
      size_t pos;
      while ((pos = data.find("\ndata: ")) != std::string::npos) {
        size_t end = data.find("\n\n", pos);
        if (end == std::string::npos) break;
        std::string_view json(data.data() + pos + 7, end - pos - 7);
        // "profile":"...", "kind":"enter"
        size_t p = json.find("\"profile\":\"");
        size_t k = json.find("\"kind\":\"");
        if (p != std::string_view::npos && k != std::string_view::npos) {
          std::string profile(json.substr(p + 11, json.find('"', p + 11) - p - 11));
          std::string_view kind = json.substr(k + 8, json.find('"', k + 8) - k - 8);
          if (kind == kind_) {
            std::lock_guard lock(mu_);
            arrivals_.try_emplace(profile, now);
          }
        }
        data.erase(0, end + 2);
      }
    }
  }
  asio::io_context ioc_;
  beast::tcp_stream stream_;
  std::string kind_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  std::mutex mu_;
  std::map<std::string, SteadyClock::time_point> arrivals_;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int RunHttpBench(const HttpArgs& a) {
  const std::string basic = "Basic " + Base64(a.write_key + ":");
  const std::string bearer = "Bearer " + a.admin_token;
  std::string json = "{";
  auto field = [&](std::string_view k, const std::string& v) {
    if (json.size() > 1) json += ',';
    json += fmt::format("\"{}\":{}", k, v);
  };
  // A unique prefix per run, so that repeated runs against one server are not deduplicated.
  const std::string run = std::to_string(RealClock().Now());

  // --- ingest ---
  if (!a.skip_ingest && !a.data_dir.empty()) {
    std::ifstream in(a.data_dir + "/events.ndjson");
    if (!in) {
      fmt::print(stderr, "cannot read {}/events.ndjson\n", a.data_dir);
      return 2;
    }
    std::vector<std::string> bodies;
    std::string line, body;
    uint64_t n = 0, in_batch = 0;
    while (n < a.events && std::getline(in, line)) {
      if (line.size() < 2 || line[0] != '{') continue;
      body += in_batch == 0 ? "{\"batch\":[" : ",";
      body += fmt::format("{{\"messageId\":\"b{}-{}\",", run, n);
      body.append(line, 1);
      ++n;
      if (++in_batch == static_cast<uint64_t>(a.batch)) {
        body += "]}";
        bodies.push_back(std::move(body));
        body.clear();
        in_batch = 0;
      }
    }
    if (in_batch) bodies.push_back(body + "]}");
    fmt::print(stderr, "ingest: {} events in {} requests over {} connections\n", n, bodies.size(),
               a.connections);
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> errors{0};
    std::vector<double> latencies_ms;
    std::mutex lat_mu;
    auto t0 = SteadyClock::now();
    std::vector<std::thread> workers;
    for (int c = 0; c < a.connections; ++c) {
      workers.emplace_back([&] {
        Client client(a);
        std::vector<double> local;
        for (size_t i; (i = next.fetch_add(1)) < bodies.size();) {
          auto s = SteadyClock::now();
          unsigned st = client.Send(http::verb::post, "/v1/batch", basic, bodies[i]);
          if (st == 503) {  // overloaded: back off and retry, as an SDK does
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            st = client.Send(http::verb::post, "/v1/batch", basic, bodies[i]);
          }
          if (st != 200) errors.fetch_add(1);
          local.push_back(
              std::chrono::duration<double, std::milli>(SteadyClock::now() - s).count());
        }
        std::lock_guard lock(lat_mu);
        latencies_ms.insert(latencies_ms.end(), local.begin(), local.end());
      });
    }
    for (auto& w : workers) w.join();
    double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    fmt::print(
        stderr,
        "ingest: {:.2f} s, {:.0f} events/s, request p50 {:.2f} ms p99 {:.2f} ms, {} errors\n", secs,
        n / secs, Percentile(latencies_ms, 0.5), Percentile(latencies_ms, 0.99), errors.load());
    field("ingest_events", std::to_string(n));
    field("ingest_seconds", fmt::format("{:.3f}", secs));
    field("ingest_events_per_s", fmt::format("{:.0f}", n / secs));
    field("ingest_request_p50_ms", fmt::format("{:.3f}", Percentile(latencies_ms, 0.5)));
    field("ingest_request_p99_ms", fmt::format("{:.3f}", Percentile(latencies_ms, 0.99)));
    field("ingest_errors", std::to_string(errors.load()));
  }

  Client admin(a);
  // --- stream: event accepted to enter on the stream ---
  {
    std::string seg = "bench_stream_" + run;
    admin.Send(
        http::verb::post, "/v1/segments", bearer,
        fmt::format(R"({{"name":"{}","definition":"performed \"Bench Ping {}\""}})", seg, run));
    StreamWatcher watch(a, seg, "enter");
    if (!watch.WaitReady()) {
      fmt::print(stderr, "stream: no SSE stream\n");
      return 1;
    }
    Client c(a);
    std::vector<SteadyClock::time_point> sent(a.probes);
    for (int i = 0; i < a.probes; ++i) {
      sent[i] = SteadyClock::now();
      c.Send(http::verb::post, "/v1/track", basic,
             fmt::format(R"({{"userId":"p{}-{}","event":"Bench Ping {}","messageId":"p{}-{}"}})",
                         run, i, run, run, i));
    }
    for (int w = 0; w < 500 && watch.Count() < static_cast<size_t>(a.probes); ++w) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::vector<double> lat;
    for (int i = 0; i < a.probes; ++i) {
      if (auto t = watch.Arrival(fmt::format("p{}-{}", run, i))) {
        lat.push_back(std::chrono::duration<double, std::milli>(*t - sent[i]).count());
      }
    }
    fmt::print(stderr, "stream: {} of {} enters seen, p50 {:.2f} ms, p99 {:.2f} ms\n", lat.size(),
               a.probes, Percentile(lat, 0.5), Percentile(lat, 0.99));
    field("stream_seen", std::to_string(lat.size()));
    field("stream_p50_ms", fmt::format("{:.3f}", Percentile(lat, 0.5)));
    field("stream_p99_ms", fmt::format("{:.3f}", Percentile(lat, 0.99)));
    admin.Send(http::verb::delete_, "/v1/segments/" + seg, bearer, "");
  }

  // --- expiry: a window closes, the exit arrives ---
  {
    std::string seg = "bench_expiry_" + run;
    admin.Send(
        http::verb::post, "/v1/segments", bearer,
        fmt::format(R"({{"name":"{}","definition":"performed \"Bench Tick {}\" within 3s"}})", seg,
                    run));
    StreamWatcher watch(a, seg, "exit");
    watch.WaitReady();
    Client c(a);
    int n = std::min(a.probes, 1000);
    std::vector<Millis> closes(n);
    // The wall clock and the steady clock, read together, to turn a close instant into steady.
    auto steady0 = SteadyClock::now();
    Millis wall0 = RealClock().Now();
    std::string batch;
    for (int i = 0; i < n; ++i) {
      Millis ts = RealClock().Now();
      closes[i] = ts + 3000;
      batch += batch.empty() ? "{\"batch\":[" : ",";
      batch += fmt::format(
          R"({{"type":"track","userId":"x{}-{}","event":"Bench Tick {}","messageId":"x{}-{}","timestamp":"{}"}})",
          run, i, run, run, i, FormatTime(ts));
      if ((i + 1) % 100 == 0 || i + 1 == n) {
        c.Send(http::verb::post, "/v1/batch", basic, batch + "]}");
        batch.clear();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // spread the deadlines
      }
    }
    for (int w = 0; w < 1000 && watch.Count() < static_cast<size_t>(n); ++w) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::vector<double> lat;
    for (int i = 0; i < n; ++i) {
      if (auto t = watch.Arrival(fmt::format("x{}-{}", run, i))) {
        auto close = steady0 + std::chrono::milliseconds(closes[i] - wall0);
        lat.push_back(std::chrono::duration<double, std::milli>(*t - close).count());
      }
    }
    fmt::print(stderr,
               "expiry: {} of {} exits seen, p50 {:.2f} ms, p99 {:.2f} ms after the close\n",
               lat.size(), n, Percentile(lat, 0.5), Percentile(lat, 0.99));
    field("expiry_seen", std::to_string(lat.size()));
    field("expiry_p50_ms", fmt::format("{:.3f}", Percentile(lat, 0.5)));
    field("expiry_p99_ms", fmt::format("{:.3f}", Percentile(lat, 0.99)));
    admin.Send(http::verb::delete_, "/v1/segments/" + seg, bearer, "");
  }

  // --- lookup: which segments is this profile in, at a fixed rate ---
  {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::vector<double> lat, service;
    std::atomic<uint64_t> errors{0};
    double per_conn = static_cast<double>(a.lookup_rate) / a.lookup_connections;
    auto t0 = SteadyClock::now();
    for (int c = 0; c < a.lookup_connections; ++c) {
      workers.emplace_back([&, c] {
        Client client(a);
        std::vector<double> local, local_service;
        auto interval = std::chrono::duration<double>(1.0 / per_conn);
        auto next = t0;
        uint64_t i = static_cast<uint64_t>(c);
        while (SteadyClock::now() - t0 < std::chrono::duration<double>(a.lookup_seconds)) {
          next += std::chrono::duration_cast<SteadyClock::duration>(interval);
          std::this_thread::sleep_until(next);
          // Latency from the scheduled instant: a slow answer delays the next request, and that
          // wait counts (no coordinated omission).
          std::string body;
          auto sent = SteadyClock::now();
          unsigned st = client.Send(
              http::verb::get, fmt::format(fmt::runtime(a.lookup_path), 1 + (i * 7919) % 20000),
              bearer, "", &body);
          if (st != 200) errors.fetch_add(1);
          auto done = SteadyClock::now();
          local.push_back(std::chrono::duration<double, std::milli>(done - next).count());
          // Also from the actual send: the server's answer time plus the loopback, without the
          // client's own late wake-ups (which the scheduled-instant figure includes).
          local_service.push_back(std::chrono::duration<double, std::milli>(done - sent).count());
          i += static_cast<uint64_t>(a.lookup_connections);
        }
        std::lock_guard lock(mu);
        lat.insert(lat.end(), local.begin(), local.end());
        service.insert(service.end(), local_service.begin(), local_service.end());
      });
    }
    for (auto& w : workers) w.join();
    double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    fmt::print(stderr,
               "lookup: {} requests in {:.2f} s ({:.0f}/s), p50 {:.3f} ms, p99 {:.3f} ms, {} "
               "errors; from the send: p50 {:.3f} ms, p99 {:.3f} ms\n",
               lat.size(), secs, lat.size() / secs, Percentile(lat, 0.5), Percentile(lat, 0.99),
               errors.load(), Percentile(service, 0.5), Percentile(service, 0.99));
    field("lookup_sent_p50_ms", fmt::format("{:.3f}", Percentile(service, 0.5)));
    field("lookup_sent_p99_ms", fmt::format("{:.3f}", Percentile(service, 0.99)));
    field("lookup_rate", fmt::format("{:.0f}", lat.size() / secs));
    field("lookup_p50_ms", fmt::format("{:.3f}", Percentile(lat, 0.5)));
    field("lookup_p99_ms", fmt::format("{:.3f}", Percentile(lat, 0.99)));
    field("lookup_errors", std::to_string(errors.load()));
  }
  json += "}";
  fmt::print("{}\n", json);
  return 0;
}

}  // namespace

void AddHttpBenchCommand(CLI::App* bench) {
  auto* cmd = bench->add_subcommand(
      "http", "Load and latency against a running `shoal serve` (bench/http_bench.sh)");
  auto a = std::make_shared<HttpArgs>();
  cmd->add_option("--host", a->host)->capture_default_str();
  cmd->add_option("--port", a->port)->capture_default_str();
  cmd->add_option("--write-key", a->write_key);
  cmd->add_option("--admin-token", a->admin_token);
  cmd->add_option("--data", a->data_dir, "folder with events.ndjson for the ingest phase");
  cmd->add_option("--events", a->events, "events to send in the ingest phase")
      ->capture_default_str();
  cmd->add_option("--connections", a->connections, "ingest connections")->capture_default_str();
  cmd->add_option("--batch", a->batch, "calls per /v1/batch request")->capture_default_str();
  cmd->add_option("--probes", a->probes, "events for the stream and expiry latencies")
      ->capture_default_str();
  cmd->add_option("--lookup-rate", a->lookup_rate, "profile lookups per second")
      ->capture_default_str();
  cmd->add_option("--lookup-seconds", a->lookup_seconds)->capture_default_str();
  cmd->add_option("--lookup-connections", a->lookup_connections)->capture_default_str();
  cmd->add_flag("--skip-ingest", a->skip_ingest);
  cmd->add_option("--lookup-path", a->lookup_path,
                  "the path the lookup phase requests; {} is replaced by a user number")
      ->capture_default_str();
  cmd->callback([a] {
    int rc = RunHttpBench(*a);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace shoal::tools
