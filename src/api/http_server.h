// The HTTP/1.1 front end (Boost.Beast, C++20 coroutines): accepts connections, parses requests,
// hands them to Api, and serves the two streaming endpoints itself: GET /v1/changes (server-sent
// events or JSON long-poll) and POST /v1/import (an NDJSON body of any length).
//
// Threading: `threads` I/O threads run one io_context; each connection is a coroutine on its own
// strand. Engine work happens on the Service's engine thread; answers come back by post().
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "api/api.h"
#include "shoal/status.h"

namespace shoal::api {

struct HttpOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 8080;  // 0: any free port (see HttpServer::port())
  int threads = 2;
  int idle_timeout_seconds = 120;  // a keep-alive connection with no request is closed
};

class HttpServer {
 public:
  HttpServer(Api* api, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens. Errors: kInternal (address in use, ...).
  Status Listen();
  uint16_t port() const;
  // Serves until Shutdown(); blocks the calling thread (plus threads-1 more).
  void Run();
  // Thread-safe and async-signal-unsafe (call from a signal_set handler or another thread):
  // stops accepting, lets in-flight requests finish (up to `grace_seconds`), closes streams,
  // then makes Run() return.
  void Shutdown(int grace_seconds = 10);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal::api
