// The REST API over a Service, independent of the HTTP library: a Request in, a Response out
// through a callback (the work runs on the engine thread and the answer may wait for a commit).
// The HTTP layer (http_server.h) parses requests, calls Api::Handle, and implements the two
// streaming endpoints (the change stream and the NDJSON import) with the helpers below.
// docs/api.md is the reference for every route.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "durable/codec.h"
#include "server/service.h"
#include "shoal/time.h"

namespace shoal::api {

constexpr size_t kMaxCallBytes = 32 * 1024;  // Segment's limits
constexpr size_t kMaxBatchBytes = 500 * 1024;
constexpr size_t kMaxBatchCalls = 2500;

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // as sent (not percent-decoded), without the query
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  std::string authorization;
  std::string accept;
  std::string last_event_id;
  std::string content_type;
  std::string body;
  Millis received_at = 0;  // the server's clock (virtual under --clock), ms

  // The first value of a query parameter, or "".
  std::string_view Query(std::string_view name) const;
  std::vector<std::string> QueryAll(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct ApiOptions {
  std::string write_key;    // empty: ingest is not checked
  std::string admin_token;  // empty: admin routes are not checked
};

// Decodes %XX escapes (and '+' as a space when plus_is_space, for query strings).
std::string PercentDecode(std::string_view s, bool plus_is_space);

// {"error":{"code":..,"message":..}}
Response ErrorResponse(unsigned status, std::string_view code, std::string_view message);

class Api {
 public:
  Api(server::Service* service, ApiOptions options);

  // Answers every route except the change stream and the import; `reply` is called exactly once,
  // on any thread.
  void Handle(Request req, std::function<void(Response)> reply);

  // Credentials. `body_write_key` is the writeKey member of an ingest body, if any.
  bool IsAdmin(const Request& req) const;
  bool IsWriter(const Request& req, std::string_view body_write_key = {}) const;

  // Decodes one NDJSON import line into a call; errors name the field.
  server::Service& service() { return *service_; }

 private:
  void Ingest(Request& req, std::string_view type, std::function<void(Response)>& reply);
  void Segments(Request& req, const std::vector<std::string>& parts,
                std::function<void(Response)>& reply);
  void ComputedTraits(Request& req, const std::vector<std::string>& parts,
                      std::function<void(Response)>& reply);
  void Profiles(Request& req, const std::vector<std::string>& parts,
                std::function<void(Response)>& reply);
  void Explain(Request& req, const std::string& id, const char* key,
               std::function<void(Response)>& reply);
  void Accounts(Request& req, const std::vector<std::string>& parts,
                std::function<void(Response)>& reply);
  void Lists(Request& req, const std::vector<std::string>& parts,
             std::function<void(Response)>& reply);
  void Debug(Request& req, const std::vector<std::string>& parts,
             std::function<void(Response)>& reply);
  Response Metrics();
  // GET /v1/computed-traits/{name}/changes and GET /v1/{profiles,accounts}/{id}/computed-history.
  void ComputedTraitChanges(Request& req, const std::string& name,
                            std::function<void(Response)>& reply);
  // GET /v1/{profiles,accounts}/{id}/history.
  void MembershipHistory(const std::string& id, SegmentTarget target, const char* key,
                         std::function<void(Response)>& reply);
  void ComputedHistory(const std::string& id, SegmentTarget target, const char* key,
                       std::function<void(Response)>& reply);

  server::Service* service_;
  ApiOptions options_;
};

}  // namespace shoal::api
