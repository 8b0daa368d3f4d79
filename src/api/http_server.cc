// Boost 1.74's asio needs <utility> before it with g++ 12 coroutines (DEPENDENCIES.md); harmless
// with 1.81.
#include "api/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <limits>
#include <utility>

#include "api/json.h"
#include "ingest/decode.h"

namespace shoal::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

constexpr size_t kAdminBodyLimit = 64 << 20;  // a CSV upload of a few million ids
constexpr size_t kImportGroup = 2000;         // calls per commit during an import

// Inflates a gzip body (as the RudderStack SDK sends by default). Fails when the result would
// exceed `limit` bytes (a small body can inflate to gigabytes).
bool Gunzip(std::string_view in, size_t limit, std::string* out, std::string* error) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    *error = "cannot start gzip decoding";
    return false;
  }
  out->clear();
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[65536];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      *error = fmt::format("the gzip body is corrupt ({})", z.msg ? z.msg : "truncated");
      inflateEnd(&z);
      return false;
    }
    out->append(buf, sizeof buf - z.avail_out);
    if (out->size() > limit) {
      *error = fmt::format("the body inflates to more than {} bytes", limit);
      inflateEnd(&z);
      return false;
    }
    if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
      *error = "the gzip body is truncated";
      inflateEnd(&z);
      return false;
    }
  }
  inflateEnd(&z);
  return true;
}

Request MakeRequest(const http::request_header<>& h, Millis now) {
  Request req;
  req.method = std::string(h.method_string());
  std::string_view target = h.target();
  size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) {
    std::string_view qs = target.substr(q + 1);
    while (!qs.empty()) {
      size_t amp = qs.find('&');
      std::string_view kv = qs.substr(0, amp);
      qs = amp == std::string_view::npos ? std::string_view{} : qs.substr(amp + 1);
      if (kv.empty()) continue;
      size_t eq = kv.find('=');
      req.query.emplace_back(
          PercentDecode(kv.substr(0, eq), true),
          eq == std::string_view::npos ? std::string() : PercentDecode(kv.substr(eq + 1), true));
    }
  }
  req.authorization = std::string(h[http::field::authorization]);
  req.accept = std::string(h[http::field::accept]);
  req.last_event_id = std::string(h["Last-Event-ID"]);
  req.content_type = std::string(h[http::field::content_type]);
  req.received_at = now;
  return req;
}

// What Impl::Stream needs of a change log: its hub (last seq, waiters), a read from the hub or,
// for changes that left its memory window, the store, and the JSON of one change.
struct MembershipFeed {
  server::Service& svc;
  using Stored = durable::StoredChange;
  static constexpr const char* kFilter = "segment";  // the query parameter that filters
  static constexpr const char* kEvent = "change";    // the SSE event name
  static constexpr const char* kWhat = "change";
  server::ChangeHub& hub() { return svc.hub(); }
  bool Fetch(uint64_t after, const std::vector<std::string>& segments, size_t limit,
             std::vector<Stored>* out, uint64_t* scanned_to) {
    if (svc.hub().Since(after, segments, limit, out, scanned_to)) return true;
    Status st = svc.db().ReadChanges(after, limit, segments, 100000, out, scanned_to);
    if (!st.ok()) spdlog::error("event=change_log_read_error error=\"{}\"", st.ToString());
    return st.ok();
  }
  static void Write(const Stored& c, JsonWriter* w) { WriteChange(c, w); }
};

// The computed value change log (GET /v1/computed-changes).
struct ComputedFeed {
  server::Service& svc;
  using Stored = durable::StoredComputedChange;
  static constexpr const char* kFilter = "trait";           // the query parameter that filters
  static constexpr const char* kEvent = "computed_change";  // the SSE event name
  static constexpr const char* kWhat = "computed change";
  server::ComputedHub& hub() { return svc.computed_hub(); }
  bool Fetch(uint64_t after, const std::vector<std::string>& traits, size_t limit,
             std::vector<Stored>* out, uint64_t* scanned_to) {
    if (svc.computed_hub().Since(after, traits, limit, out, scanned_to)) return true;
    Status st = svc.db().ReadComputedChanges(after, limit, traits, 100000, out, scanned_to);
    if (!st.ok()) spdlog::error("event=computed_log_read_error error=\"{}\"", st.ToString());
    return st.ok();
  }
  static void Write(const Stored& c, JsonWriter* w) { WriteComputedChange(c, w); }
};

bool IsIngestPath(std::string_view p) {
  return p == "/v1/identify" || p == "/v1/track" || p == "/v1/page" || p == "/v1/screen" ||
         p == "/v1/group" || p == "/v1/alias" || p == "/v1/batch";
}

}  // namespace

struct HttpServer::Impl {
  Api* api;
  HttpOptions opt;
  asio::io_context ioc;
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};  // requests being answered (streams included)

  Impl(Api* a, HttpOptions o) : api(a), opt(std::move(o)), ioc(opt.threads), acceptor(ioc) {}

  awaitable<void> Accept();
  awaitable<void> Session(tcp::socket socket);
  awaitable<bool> Write(beast::tcp_stream& stream, Response r, bool keep_alive);
  awaitable<Response> CallApi(Request req);
  awaitable<std::optional<server::IngestOutcome>> CallIngest(std::vector<Message>& msgs);
  awaitable<bool> Changes(beast::tcp_stream& stream, Request& req, bool keep_alive);
  // The stream of GET /v1/changes (MembershipFeed) or GET /v1/computed-changes (ComputedFeed).
  template <typename Feed>
  awaitable<bool> Stream(Feed& feed, beast::tcp_stream& stream, Request& req, bool keep_alive);
  awaitable<bool> Import(beast::tcp_stream& stream, beast::flat_buffer& buf,
                         http::request_parser<http::empty_body>& hp, Request& req, bool keep_alive);
};

awaitable<void> HttpServer::Impl::Accept() {
  while (!stopping) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec) {
      if (stopping || ec == asio::error::operation_aborted) break;
      spdlog::warn("event=accept_error error=\"{}\"", ec.message());
      continue;
    }
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(asio::make_strand(ioc), Session(std::move(socket)), asio::detached);
  }
}

awaitable<bool> HttpServer::Impl::Write(beast::tcp_stream& stream, Response r, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
  res.set(http::field::server, "shoal");
  if (!r.content_type.empty()) res.set(http::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive && !stopping);
  res.body() = std::move(r.body);
  res.prepare_payload();
  auto [ec, n] = co_await http::async_write(stream, res, kTuple);
  co_return !ec && res.keep_alive();
}

awaitable<Response> HttpServer::Impl::CallApi(Request req) {
  co_return co_await asio::async_initiate<decltype(use_awaitable), void(Response)>(
      [this, &req](auto handler) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        api->Handle(std::move(req), [h, ex](Response r) {
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      use_awaitable);
}

awaitable<std::optional<server::IngestOutcome>> HttpServer::Impl::CallIngest(
    std::vector<Message>& msgs) {
  co_return co_await asio::async_initiate<decltype(use_awaitable),
                                          void(std::optional<server::IngestOutcome>)>(
      [this, &msgs](auto handler) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto done = [h, ex](std::optional<server::IngestOutcome> o) {
          asio::post(ex, [h, o = std::move(o)]() mutable { (*h)(std::move(o)); });
        };
        if (!api->service().Ingest(std::move(msgs),
                                   [done](server::IngestOutcome o) { done(std::move(o)); })) {
          done(std::nullopt);
        }
      },
      use_awaitable);
}

awaitable<void> HttpServer::Impl::Session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buf;
  while (!stopping) {
    http::request_parser<http::empty_body> hp;
    hp.header_limit(16 * 1024);
    hp.body_limit(std::numeric_limits<uint64_t>::max());
    stream.expires_after(std::chrono::seconds(opt.idle_timeout_seconds));
    auto [ec, n] = co_await http::async_read_header(stream, buf, hp, kTuple);
    if (ec) break;  // closed, timed out or malformed: nothing was asked, nothing to answer
    stream.expires_never();
    struct InFlight {
      std::atomic<int>& n;
      explicit InFlight(std::atomic<int>& c) : n(c) { ++n; }
      ~InFlight() { --n; }
    } in_flight_guard(in_flight);

    Request req = MakeRequest(hp.get(), api->service().ClockNow());
    bool keep_alive = hp.get().keep_alive();
    bool expect_continue = beast::iequals(hp.get()[http::field::expect], "100-continue");

    if (req.path == "/v1/changes" && req.method == "GET") {
      if (!co_await Changes(stream, req, keep_alive)) break;
      continue;
    }
    if (req.path == "/v1/computed-changes" && req.method == "GET") {
      ComputedFeed feed{api->service()};
      if (!co_await Stream(feed, stream, req, keep_alive)) break;
      continue;
    }
    if (req.path == "/v1/import" && req.method == "POST") {
      if (expect_continue) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        co_await http::async_write(stream, cont, kTuple);
      }
      if (!co_await Import(stream, buf, hp, req, keep_alive)) break;
      continue;
    }

    size_t limit = IsIngestPath(req.path) ? kMaxBatchBytes : kAdminBodyLimit;
    if (hp.content_length() && *hp.content_length() > limit) {
      co_await Write(stream,
                     ErrorResponse(413, "limit",
                                   fmt::format("the body is {} bytes; the limit is {} bytes",
                                               *hp.content_length(), limit)),
                     false);
      break;
    }
    if (expect_continue && !hp.is_done()) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      co_await http::async_write(stream, cont, kTuple);
    }
    http::request_parser<http::string_body> p(std::move(hp));
    p.body_limit(limit);
    stream.expires_after(std::chrono::seconds(opt.idle_timeout_seconds));
    auto [ec2, n2] = co_await http::async_read(stream, buf, p, kTuple);
    stream.expires_never();
    if (ec2 == http::error::body_limit) {
      co_await Write(stream,
                     ErrorResponse(413, "limit", fmt::format("the body exceeds {} bytes", limit)),
                     false);
      break;
    }
    if (ec2) {
      co_await Write(stream, ErrorResponse(400, "invalid_request", ec2.message()), false);
      break;
    }
    req.body = std::move(p.get().body());
    if (beast::iequals(p.get()[http::field::content_encoding], "gzip")) {
      std::string plain, error;
      if (!Gunzip(req.body, limit, &plain, &error)) {
        bool too_big = error.find("inflates") != std::string::npos;
        co_await Write(
            stream,
            ErrorResponse(too_big ? 413 : 400, too_big ? "limit" : "invalid_request", error),
            false);
        break;
      }
      req.body = std::move(plain);
    } else if (auto enc = p.get()[http::field::content_encoding];
               !enc.empty() && !beast::iequals(enc, "identity")) {
      if (!co_await Write(stream,
                          ErrorResponse(415, "unsupported_encoding",
                                        "Content-Encoding must be gzip or identity"),
                          keep_alive)) {
        break;
      }
      continue;
    }
    Response r = co_await CallApi(std::move(req));
    if (!co_await Write(stream, std::move(r), keep_alive)) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

awaitable<bool> HttpServer::Impl::Changes(beast::tcp_stream& stream, Request& req,
                                          bool keep_alive) {
  MembershipFeed feed{api->service()};
  co_return co_await Stream(feed, stream, req, keep_alive);
}

template <typename Feed>
awaitable<bool> HttpServer::Impl::Stream(Feed& feed, beast::tcp_stream& stream, Request& req,
                                         bool keep_alive) {
  using Stored = typename Feed::Stored;
  if (!api->IsAdmin(req)) {
    co_return co_await Write(stream,
                             ErrorResponse(401, "unauthorized",
                                           "this route needs the admin token: Authorization: "
                                           "Bearer TOKEN"),
                             keep_alive);
  }
  bool sse =
      req.accept.find("text/event-stream") != std::string::npos || req.Query("stream") == "sse";
  auto& hub = feed.hub();
  std::vector<std::string> segments = req.QueryAll(Feed::kFilter);
  auto parse_seq = [](std::string_view s, uint64_t* out) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  };
  uint64_t after = sse ? hub.LastSeq() : 0;
  std::string_view from =
      !req.last_event_id.empty() ? std::string_view(req.last_event_id) : req.Query("after");
  if (!from.empty() && !parse_seq(from, &after)) {
    co_return co_await Write(
        stream,
        ErrorResponse(400, "invalid_argument", "after / Last-Event-ID: not a sequence number"),
        keep_alive);
  }
  // A cursor beyond the log (e.g. kept from a data directory that was since reset) would skip
  // changes silently until the log caught up: start at the end instead.
  after = std::min(after, hub.LastSeq());
  uint64_t limit = 1000, wait = 25;
  if (auto l = req.Query("limit"); !l.empty() && (!parse_seq(l, &limit) || limit == 0)) {
    co_return co_await Write(
        stream, ErrorResponse(400, "invalid_argument", "limit: not a positive integer"),
        keep_alive);
  }
  if (auto w = req.Query("wait"); !w.empty() && !parse_seq(w, &wait)) {
    co_return co_await Write(
        stream, ErrorResponse(400, "invalid_argument", "wait: not a number of seconds"),
        keep_alive);
  }
  limit = std::min<uint64_t>(limit, 10000);
  wait = std::min<uint64_t>(wait, 60);

  auto ex = co_await asio::this_coro::executor;
  // Waits until the hub publishes (or `seconds` pass). Returns false when the server stops.
  auto wait_for_publish = [&](uint64_t cursor, int seconds) -> awaitable<bool> {
    auto timer = std::make_shared<asio::steady_timer>(ex);
    auto notified = std::make_shared<std::atomic<bool>>(false);
    uint64_t id = hub.AddWaiter([timer, notified] {
      notified->store(true);
      asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    });
    if (hub.LastSeq() <= cursor && !notified->load() && !stopping) {
      timer->expires_after(std::chrono::seconds(seconds));
      co_await timer->async_wait(kTuple);
    }
    hub.RemoveWaiter(id);
    co_return !stopping;
  };

  std::vector<Stored> batch;
  if (!sse) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait);
    uint64_t scanned = after;
    while (true) {
      batch.clear();
      if (!feed.Fetch(after, segments, limit, &batch, &scanned)) {
        co_return co_await Write(stream, ErrorResponse(500, "internal", "reading the change log"),
                                 keep_alive);
      }
      after = scanned;
      if (!batch.empty() || std::chrono::steady_clock::now() >= deadline || stopping) break;
      if (scanned < hub.LastSeq()) continue;  // filtered out; more to scan
      auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline -
                                                                   std::chrono::steady_clock::now())
                      .count() +
                  1;
      if (!co_await wait_for_publish(after, static_cast<int>(left))) break;
    }
    JsonWriter w;
    w.BeginObject().Key("changes").BeginArray();
    for (const auto& c : batch) Feed::Write(c, &w);
    w.EndArray().Key("next").Uint(after).EndObject();
    Response r;
    r.body = std::move(w.str());
    co_return co_await Write(stream, std::move(r), keep_alive);
  }

  // Server-sent events: the body never ends; the connection closes with it.
  http::response<http::empty_body> res{http::status::ok, 11};
  res.set(http::field::server, "shoal");
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Accel-Buffering", "no");
  res.keep_alive(false);
  http::response_serializer<http::empty_body> sr{res};
  auto [ec, n] = co_await http::async_write_header(stream, sr, kTuple);
  if (ec) co_return false;
  {
    // Tell the client where the stream starts, so that a reconnect before the first change
    // resumes exactly here.
    std::string hello =
        fmt::format(": shoal {} stream after seq {}\nretry: 1000\n\n", Feed::kWhat, after);
    auto [ec1, n1] = co_await asio::async_write(stream, asio::buffer(hello), kTuple);
    if (ec1) co_return false;
  }
  std::string out;
  while (!stopping) {
    batch.clear();
    uint64_t scanned = after;
    if (!feed.Fetch(after, segments, limit, &batch, &scanned)) break;
    after = scanned;
    out.clear();
    if (batch.empty()) {
      if (scanned < hub.LastSeq()) continue;
      if (!co_await wait_for_publish(after, 15)) break;
      if (hub.LastSeq() <= after) out = ":\n\n";  // heartbeat
    }
    for (const auto& c : batch) {
      fmt::format_to(std::back_inserter(out), "id: {}\nevent: {}\ndata: ", c.seq, Feed::kEvent);
      JsonWriter w;
      Feed::Write(c, &w);
      out.append(w.str());
      out.append("\n\n");
    }
    if (out.empty()) continue;
    auto [ec2, n2] = co_await asio::async_write(stream, asio::buffer(out), kTuple);
    if (ec2) break;
  }
  co_return false;
}

awaitable<bool> HttpServer::Impl::Import(beast::tcp_stream& stream, beast::flat_buffer& buf,
                                         http::request_parser<http::empty_body>& hp, Request& req,
                                         bool keep_alive) {
  if (!api->IsWriter(req) && !api->IsAdmin(req)) {
    co_await Write(stream, ErrorResponse(401, "unauthorized", "wrong or missing write key"), false);
    co_return false;
  }
  // A gzip body is inflated as it streams in; other encodings are refused.
  bool gzip = false;
  if (auto enc = hp.get()[http::field::content_encoding]; beast::iequals(enc, "gzip")) {
    gzip = true;
  } else if (!enc.empty() && !beast::iequals(enc, "identity")) {
    co_await Write(
        stream,
        ErrorResponse(415, "unsupported_encoding", "Content-Encoding must be gzip or identity"),
        false);
    co_return false;
  }
  struct Inflater {
    z_stream z{};
    bool ok = false;
    ~Inflater() {
      if (ok) inflateEnd(&z);
    }
  } inflater;
  if (gzip) inflater.ok = inflateInit2(&inflater.z, 16 + MAX_WBITS) == Z_OK;
  http::request_parser<http::buffer_body> p(std::move(hp));
  p.body_limit(std::numeric_limits<uint64_t>::max());
  ingest::Decoder decoder;
  std::vector<Message> msgs;
  std::string data;
  std::vector<char> chunk(1 << 16);
  uint64_t line_no = 0, accepted = 0, duplicates = 0, n_errors = 0;
  JsonWriter errors;
  errors.BeginArray();
  Status failure;

  auto submit = [&]() -> awaitable<bool> {
    while (!msgs.empty()) {
      std::optional<server::IngestOutcome> o = co_await CallIngest(msgs);
      if (!o) {  // overloaded: wait for the queue to drain a little
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(20));
        co_await t.async_wait(kTuple);
        continue;
      }
      if (!o->status.ok()) {
        failure = o->status;
        co_return false;
      }
      accepted += o->accepted;
      duplicates += o->duplicates;
      msgs.clear();
    }
    co_return true;
  };
  auto take_line = [&](std::string_view line) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) return;
    ingest::DecodeOptions opts;
    opts.received_at = api->service().ClockNow();
    opts.now = opts.received_at;
    Status st = line.size() > kMaxCallBytes
                    ? Status::InvalidArgument(
                          fmt::format("the call is {} bytes; the limit is {} bytes per call",
                                      line.size(), kMaxCallBytes))
                    : decoder.Decode(line, opts, &msgs.emplace_back());
    if (st.ok()) return;
    if (line.size() <= kMaxCallBytes) msgs.pop_back();
    if (++n_errors <= 100) {
      std::string field;
      size_t f = st.message().find("field '");
      if (f != std::string::npos) {
        field = st.message().substr(f + 7, st.message().find('\'', f + 7) - f - 7);
      }
      errors.BeginObject().Key("line").Uint(line_no).Key("field").String(field);
      errors.Key("message").String(st.message()).EndObject();
    }
  };

  while (!p.is_done()) {
    p.get().body().data = chunk.data();
    p.get().body().size = chunk.size();
    auto [ec, n] = co_await http::async_read(stream, buf, p, kTuple);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      co_await Write(stream, ErrorResponse(400, "invalid_request", ec.message()), false);
      co_return false;
    }
    size_t got = chunk.size() - p.get().body().size;
    if (!gzip) {
      data.append(chunk.data(), got);
    } else {
      z_stream& z = inflater.z;
      z.next_in = reinterpret_cast<Bytef*>(chunk.data());
      z.avail_in = static_cast<uInt>(got);
      char out[65536];
      int rc = inflater.ok ? Z_OK : Z_STREAM_ERROR;
      // zlib's usual loop (zpipe.c): call inflate until it leaves room in the output.
      do {
        if (rc == Z_STREAM_END) break;  // trailing bytes after the gzip member are ignored
        z.next_out = reinterpret_cast<Bytef*>(out);
        z.avail_out = sizeof out;
        if (rc != Z_STREAM_ERROR) rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR) {
          co_await Write(stream,
                         ErrorResponse(400, "invalid_request",
                                       fmt::format("the gzip body is corrupt ({})",
                                                   z.msg ? z.msg : "inflate failed")),
                         false);
          co_return false;
        }
        data.append(out, sizeof out - z.avail_out);
      } while (z.avail_out == 0);
    }
    size_t start = 0;
    for (size_t eol; (eol = data.find('\n', start)) != std::string::npos; start = eol + 1) {
      take_line(std::string_view(data).substr(start, eol - start));
    }
    data.erase(0, start);
    if (msgs.size() >= kImportGroup && !co_await submit()) break;
  }
  if (failure.ok() && !data.empty()) take_line(data);
  if (failure.ok()) co_await submit();
  errors.EndArray();
  if (!failure.ok()) {
    co_await Write(stream, ErrorResponse(500, "internal", failure.message()), false);
    co_return false;
  }
  JsonWriter w;
  w.BeginObject().Key("success").Bool(n_errors == 0).Key("lines").Uint(line_no);
  w.Key("accepted").Uint(accepted).Key("duplicates").Uint(duplicates);
  w.Key("rejected").Uint(n_errors).Key("errors").Raw(errors.str()).EndObject();
  Response r;
  r.status = n_errors == 0 ? 200 : 400;
  r.body = std::move(w.str());
  co_return co_await Write(stream, std::move(r), keep_alive);
}

HttpServer::HttpServer(Api* api, HttpOptions options)
    : impl_(std::make_unique<Impl>(api, std::move(options))) {}

HttpServer::~HttpServer() = default;

Status HttpServer::Listen() {
  beast::error_code ec;
  auto addr = asio::ip::make_address(impl_->opt.host, ec);
  if (ec) return Status::InvalidArgument("--host: not an IP address: " + impl_->opt.host);
  tcp::endpoint ep(addr, impl_->opt.port);
  tcp::acceptor& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Internal(
        fmt::format("cannot listen on {}:{}: {}", impl_->opt.host, impl_->opt.port, ec.message()));
  }
  return Status::Ok();
}

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::Run() {
  asio::co_spawn(impl_->ioc, impl_->Accept(), asio::detached);
  std::vector<std::thread> threads;
  for (int i = 1; i < impl_->opt.threads; ++i) threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : threads) t.join();
}

void HttpServer::Shutdown(int grace_seconds) {
  Impl* impl = impl_.get();
  if (impl->stopping.exchange(true)) return;
  asio::post(impl->ioc, [impl] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
  impl->api->service().hub().WakeAll();
  impl->api->service().computed_hub().WakeAll();
  asio::co_spawn(
      impl->ioc,
      [impl, grace_seconds]() -> awaitable<void> {
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
        asio::steady_timer t(impl->ioc);
        while (impl->in_flight.load() > 0 && std::chrono::steady_clock::now() < until) {
          impl->api->service().hub().WakeAll();
          impl->api->service().computed_hub().WakeAll();
          t.expires_after(std::chrono::milliseconds(20));
          co_await t.async_wait(kTuple);
        }
        impl->ioc.stop();
      },
      asio::detached);
}

}  // namespace shoal::api
