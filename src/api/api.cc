#include "api/api.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "api/json.h"
#include "ingest/decode.h"
#include "ingest/envelope.h"
#include "reference/reference.h"
#include "store/store.h"

namespace shoal::api {
namespace {

using server::Txn;
using Reply = std::function<void(Response)>;

Response JsonResponse(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// HTTP status and error code for an engine Status.
Response FromStatus(const Status& st, std::string_view invalid_code = "invalid_argument") {
  switch (st.code()) {
    case Status::Code::kInvalidArgument:
      return ErrorResponse(400, invalid_code, st.message());
    case Status::Code::kNotFound:
      return ErrorResponse(404, "not_found", st.message());
    case Status::Code::kAlreadyExists:
      return ErrorResponse(409, "already_exists", st.message());
    case Status::Code::kFailedPrecondition:
      return ErrorResponse(409, "failed_precondition", st.message());
    default:
      return ErrorResponse(500, "internal", st.message());
  }
}

// A definition error: "L:C: message" gets line and column members.
Response DefinitionError(const Status& st) {
  if (st.code() == Status::Code::kAlreadyExists || st.code() == Status::Code::kFailedPrecondition) {
    return FromStatus(st);
  }
  const std::string& m = st.message();
  int line = 0, col = 0;
  const char* p = m.data();
  const char* end = p + m.size();
  auto r1 = std::from_chars(p, end, line);
  if (r1.ec == std::errc() && r1.ptr < end && *r1.ptr == ':') {
    auto r2 = std::from_chars(r1.ptr + 1, end, col);
    if (r2.ec != std::errc() || r2.ptr >= end || *r2.ptr != ':') line = col = 0;
  }
  JsonWriter w;
  w.BeginObject().Key("error").BeginObject();
  w.Key("code").String("invalid_definition").Key("message").String(m);
  if (line > 0) w.Key("line").Int(line).Key("column").Int(col);
  w.EndObject().EndObject();
  return JsonResponse(400, std::move(w.str()));
}

// The field a decoder error names: "field 'event': ..." -> "event".
std::string FieldOf(const std::string& message) {
  size_t p = message.find("field '");
  if (p == std::string::npos) return {};
  size_t q = message.find('\'', p + 7);
  if (q == std::string::npos) return {};
  return message.substr(p + 7, q - p - 7);
}

struct ParsedBody {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
};

// Parses a JSON object body. On error fills *err.
bool ParseObject(const std::string& body, ParsedBody* out, Response* err) {
  auto r = out->parser.parse(body);
  if (r.error()) {
    *err = ErrorResponse(
        400, "invalid_json",
        fmt::format("the body is not valid JSON: {}", simdjson::error_message(r.error())));
    return false;
  }
  out->root = r.value();
  if (!out->root.is_object()) {
    *err = ErrorResponse(400, "invalid_json", "the body must be a JSON object");
    return false;
  }
  return true;
}

// A required (or optional) string member.
bool GetString(const simdjson::dom::element& obj, const char* key, bool required, std::string* out,
               Response* err) {
  auto v = obj[key];
  if (v.error() == simdjson::NO_SUCH_FIELD) {
    if (!required) return true;
    *err = ErrorResponse(400, "invalid_argument", fmt::format("field '{}': required", key));
    return false;
  }
  std::string_view s;
  if (v.get(s)) {
    *err = ErrorResponse(400, "invalid_argument", fmt::format("field '{}': must be a string", key));
    return false;
  }
  out->assign(s);
  return true;
}

bool GetStringArray(const simdjson::dom::element& obj, const char* key,
                    std::vector<std::string>* out, Response* err) {
  auto v = obj[key];
  if (v.error() == simdjson::NO_SUCH_FIELD) return true;
  simdjson::dom::array arr;
  if (v.get(arr)) {
    *err = ErrorResponse(400, "invalid_argument",
                         fmt::format("field '{}': must be an array of ids", key));
    return false;
  }
  size_t i = 0;
  for (auto e : arr) {
    std::string_view s;
    if (e.get(s) || s.empty() || s.find('\0') != std::string_view::npos) {
      *err = ErrorResponse(400, "invalid_argument",
                           fmt::format("field '{}[{}]': must be a non-empty string", key, i));
      return false;
    }
    out->emplace_back(s);
    ++i;
  }
  return true;
}

// The optional "target" member of a segment body: "users" (the default) or "accounts".
bool GetTarget(const simdjson::dom::element& obj, std::optional<SegmentTarget>* out,
               Response* err) {
  std::string t;
  if (!GetString(obj, "target", false, &t, err)) return false;
  if (t.empty()) return true;
  if (t != "users" && t != "accounts") {
    *err = ErrorResponse(400, "invalid_argument", "field 'target': \"users\" or \"accounts\"");
    return false;
  }
  *out = t == "users" ? SegmentTarget::kUsers : SegmentTarget::kAccounts;
  return true;
}

// A segment or list name: not empty, and without NUL (the store's key separator).
bool ValidName(const std::string& name, Response* err) {
  if (!name.empty() && name.find('\0') == std::string::npos) return true;
  *err =
      ErrorResponse(400, "invalid_argument", "field 'name': must be non-empty and without U+0000");
  return false;
}

void WriteSegment(const SegmentInfo& s, uint64_t last_seq, JsonWriter* w) {
  w->BeginObject()
      .Key("name")
      .String(s.name)
      .Key("definition")
      .String(s.definition)
      .Key("target")
      .String(s.target == SegmentTarget::kAccounts ? "accounts" : "users")
      .Key("size")
      .Uint(s.size)
      .Key("last_seq")
      .Uint(last_seq)
      .Key("created_at")
      .Time(s.created_at)
      .Key("updated_at")
      .Time(s.updated_at)
      .Key("last_change_at");
  if (s.last_change_at) {
    w->Time(s.last_change_at);
  } else {
    w->Null();
  }
  w->EndObject();
}

void WriteExplain(const ExplainNode& n, JsonWriter* w) {
  w->BeginObject().Key("text").String(n.text).Key("value").Bool(n.value).Key("detail").String(
      n.detail);
  w->Key("next_change");
  if (n.next_change) {
    w->Time(*n.next_change);
  } else {
    w->Null();
  }
  w->Key("children").BeginArray();
  for (const ExplainNode& c : n.children) WriteExplain(c, w);
  w->EndArray().EndObject();
}

std::string Base64Decode(std::string_view in) {
  static const auto table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(a[i])] = static_cast<int8_t>(i);
    return t;
  }();
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int8_t v = table[static_cast<uint8_t>(c)];
    if (v < 0) return {};
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char d = 0;
  for (size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
  return d == 0;
}

// The path's segments, each percent-decoded on its own, so that an id may contain an encoded
// '/' (%2F).
std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.push_back(PercentDecode(path.substr(i, j - i), false));
    i = j;
  }
  return parts;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses a query number; *out keeps its value when absent.
bool QueryNumber(const Request& req, std::string_view name, uint64_t* out, Response* err) {
  std::string_view v = req.Query(name);
  if (v.empty()) return true;
  uint64_t n = 0;
  auto r = std::from_chars(v.data(), v.data() + v.size(), n);
  if (r.ec != std::errc() || r.ptr != v.data() + v.size()) {
    *err = ErrorResponse(400, "invalid_argument",
                         fmt::format("query parameter '{}': not a non-negative integer", name));
    return false;
  }
  *out = n;
  return true;
}

thread_local ingest::Decoder tls_decoder;

}  // namespace

std::string_view Request::Query(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return {};
}

std::vector<std::string> Request::QueryAll(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : query) {
    if (k == name) out.push_back(v);
  }
  return out;
}

std::string PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Response ErrorResponse(unsigned status, std::string_view code, std::string_view message) {
  JsonWriter w;
  w.BeginObject().Key("error").BeginObject().Key("code").String(code).Key("message").String(
      message);
  w.EndObject().EndObject();
  return JsonResponse(status, std::move(w.str()));
}

Api::Api(server::Service* service, ApiOptions options)
    : service_(service), options_(std::move(options)) {}

bool Api::IsAdmin(const Request& req) const {
  if (options_.admin_token.empty()) return true;
  std::string_view a = req.authorization;
  if (a.size() < 7 || (a.substr(0, 7) != "Bearer " && a.substr(0, 7) != "bearer ")) return false;
  return ConstantTimeEquals(a.substr(7), options_.admin_token);
}

bool Api::IsWriter(const Request& req, std::string_view body_write_key) const {
  if (options_.write_key.empty()) return true;
  std::string_view a = req.authorization;
  if (a.size() > 6 && (a.substr(0, 6) == "Basic " || a.substr(0, 6) == "basic ")) {
    std::string user = Base64Decode(a.substr(6));
    size_t colon = user.find(':');
    if (colon != std::string::npos) user.resize(colon);
    if (ConstantTimeEquals(user, options_.write_key)) return true;
  }
  return !body_write_key.empty() && ConstantTimeEquals(body_write_key, options_.write_key);
}

void Api::Handle(Request req, Reply reply) {
  std::vector<std::string> parts = SplitPath(req.path);
  for (const std::string& part : parts) {
    if (part.find('\0') != std::string::npos) {
      return reply(ErrorResponse(400, "invalid_argument", "the path must not contain %00"));
    }
  }
  const std::string& m = req.method;
  if (parts.size() == 1 && parts[0] == "healthz") {
    if (!service_->Ready()) return reply(ErrorResponse(503, "starting", "recovery in progress"));
    return reply(JsonResponse(200, R"({"status":"ok"})"));
  }
  if (parts.size() == 1 && parts[0] == "metrics") return reply(Metrics());
  if (parts.empty() || parts[0] != "v1") {
    return reply(ErrorResponse(404, "not_found", "no such route: " + req.path));
  }
  if (parts.size() == 2) {
    static constexpr const char* kIngest[] = {"identify", "track", "page", "screen",
                                              "group",    "alias", "batch"};
    for (const char* t : kIngest) {
      if (parts[1] == t) {
        if (m != "POST") return reply(ErrorResponse(405, "method_not_allowed", "use POST"));
        return Ingest(req, t, reply);
      }
    }
  }
  if (!IsAdmin(req)) {
    return reply(ErrorResponse(401, "unauthorized",
                               "this route needs the admin token: Authorization: Bearer TOKEN"));
  }
  if (parts.size() >= 2 && parts[1] == "segments") return Segments(req, parts, reply);
  if (parts.size() >= 2 && parts[1] == "computed-traits") return ComputedTraits(req, parts, reply);
  if (parts.size() >= 3 && parts[1] == "profiles") return Profiles(req, parts, reply);
  if (parts.size() >= 3 && parts[1] == "accounts") return Accounts(req, parts, reply);
  if (parts.size() >= 2 && parts[1] == "lists") return Lists(req, parts, reply);
  if (parts.size() >= 3 && parts[1] == "debug") return Debug(req, parts, reply);
  reply(ErrorResponse(404, "not_found", "no such route: " + req.method + " " + req.path));
}

// --- Ingest -----------------------------------------------------------------------------------

void Api::Ingest(Request& req, std::string_view type, Reply& reply) {
  if (req.body.size() > kMaxBatchBytes) {
    return reply(
        ErrorResponse(413, "limit",
                      fmt::format("the body is {} bytes; the limit is {} bytes per request",
                                  req.body.size(), kMaxBatchBytes)));
  }
  // The envelope: a batch's calls (as raw JSON), sentAt and writeKey; a single call is its own
  // envelope.
  simdjson::padded_string padded(req.body);
  ingest::Envelope env;
  if (Status st = ingest::ParseEnvelope(std::string_view(padded.data(), padded.size()),
                                        type == "batch", &env);
      !st.ok()) {
    bool json = st.message().starts_with("invalid JSON") || st.message().starts_with("the body");
    return reply(ErrorResponse(400, json ? "invalid_json" : "invalid_message", st.message()));
  }
  std::vector<std::string_view>& calls = env.calls;
  const std::string& write_key = env.write_key;
  const Millis sent_at = env.sent_at;
  if (!IsWriter(req, write_key)) {
    return reply(ErrorResponse(401, "unauthorized",
                               "wrong or missing write key (HTTP Basic user, or writeKey)"));
  }
  if (type == "batch" && calls.size() > kMaxBatchCalls) {
    return reply(ErrorResponse(400, "limit",
                               fmt::format("the batch has {} calls; the limit is {} per batch",
                                           calls.size(), kMaxBatchCalls)));
  }

  ingest::DecodeOptions opts;
  opts.received_at = req.received_at;
  opts.now = req.received_at;
  opts.sent_at = sent_at;
  if (type != "batch") opts.default_type = type;
  std::vector<Message> msgs(calls.size());
  size_t n = 0;
  JsonWriter errors;
  errors.BeginArray();
  size_t n_errors = 0;
  std::string first_error;
  for (size_t i = 0; i < calls.size(); ++i) {
    std::string_view raw = calls[i];
    Status st;
    if (raw.data() == nullptr) {
      st = Status::InvalidArgument("field 'batch[" + std::to_string(i) +
                                   "]': a call must be an object");
    } else if (raw.size() > kMaxCallBytes) {
      st = Status::InvalidArgument(fmt::format(
          "the call is {} bytes; the limit is {} bytes per call", raw.size(), kMaxCallBytes));
    } else {
      st = tls_decoder.Decode(raw, opts, &msgs[n]);
    }
    if (st.ok() && msgs[n].ProfileKey().find('\0') != std::string::npos) {
      // Ids are stored in keys where NUL is the separator.
      st = Status::InvalidArgument("field 'userId': an id must not contain U+0000");
    }
    if (st.ok()) {
      ++n;
      continue;
    }
    if (n_errors++ == 0) first_error = st.message();
    errors.BeginObject();
    if (type == "batch") errors.Key("index").Uint(i);
    errors.Key("field").String(FieldOf(st.message())).Key("message").String(st.message());
    if (raw.size() > kMaxCallBytes) errors.Key("code").String("limit");
    errors.EndObject();
  }
  errors.EndArray();
  msgs.resize(n);
  service_->metrics().rejected.fetch_add(n_errors, std::memory_order_relaxed);

  if (type != "batch" && n_errors > 0) {
    // A single call: its one error is the answer.
    return reply(ErrorResponse(400, calls[0].size() > kMaxCallBytes ? "limit" : "invalid_message",
                               first_error));
  }
  auto finish = [reply, errs = std::move(errors.str()), n_errors](server::IngestOutcome o) {
    if (!o.status.ok()) return reply(ErrorResponse(500, "internal", o.status.message()));
    JsonWriter w;
    w.BeginObject().Key("success").Bool(n_errors == 0);
    w.Key("accepted").Uint(o.accepted).Key("duplicates").Uint(o.duplicates);
    if (n_errors > 0) w.Key("errors").Raw(errs);
    w.EndObject();
    reply(JsonResponse(n_errors == 0 ? 200 : 400, std::move(w.str())));
  };
  if (msgs.empty()) return finish(server::IngestOutcome{});
  if (!service_->Ingest(std::move(msgs), finish)) {
    Response r = ErrorResponse(503, "overloaded", "too many calls waiting to be stored; retry");
    r.headers.emplace_back("Retry-After", "1");
    reply(std::move(r));
  }
}

// --- Segments ---------------------------------------------------------------------------------

void Api::Segments(Request& req, const std::vector<std::string>& parts, Reply& reply) {
  const std::string& m = req.method;
  server::Service* svc = service_;
  if (parts.size() == 2) {
    if (m == "GET") {
      return svc->Read([&reply, svc](const Engine& e) {
        JsonWriter w;
        w.BeginObject().Key("segments").BeginArray();
        for (const SegmentInfo& s : e.ListSegments()) {
          WriteSegment(s, svc->SegmentSeq(s.name), &w);
        }
        w.EndArray().EndObject();
        reply(JsonResponse(200, std::move(w.str())));
      });
    }
    if (m != "POST") return reply(ErrorResponse(405, "method_not_allowed", "use GET or POST"));
    ParsedBody body;
    Response err;
    std::string name, definition;
    std::optional<SegmentTarget> target;
    if (!ParseObject(req.body, &body, &err) || !GetString(body.root, "name", true, &name, &err) ||
        !GetString(body.root, "definition", true, &definition, &err) ||
        !GetTarget(body.root, &target, &err)) {
      return reply(std::move(err));
    }
    if (!ValidName(name, &err)) return reply(std::move(err));
    return svc->Run([reply, svc, name, definition, target](Txn& t) {
      Result<SegmentInfo> info =
          t.engine().CreateSegment(name, definition, target.value_or(SegmentTarget::kUsers));
      if (!info.ok()) return reply(DefinitionError(info.status()));
      svc->SaveSegment(t, name);
      t.OnDurable([reply, svc, name, info = *info](const Status& st) {
        if (!st.ok()) return reply(FromStatus(st));
        JsonWriter w;
        SegmentInfo copy = info;
        WriteSegment(copy, svc->SegmentSeq(name), &w);
        reply(JsonResponse(201, std::move(w.str())));
      });
    });
  }
  std::string name(parts[2]);
  if (parts.size() == 3 && m == "POST" && (name == "validate" || name == "estimate")) {
    ParsedBody body;
    Response err;
    std::string definition;
    if (!ParseObject(req.body, &body, &err) ||
        !GetString(body.root, "definition", true, &definition, &err)) {
      return reply(std::move(err));
    }
    bool estimate = name == "estimate";
    return svc->Run([reply, definition, estimate](Txn& t) {
      if (!estimate) {
        Result<std::string> canonical = t.engine().Validate(definition);
        if (!canonical.ok()) return reply(DefinitionError(canonical.status()));
        JsonWriter w;
        w.BeginObject().Key("valid").Bool(true).Key("canonical").String(*canonical).EndObject();
        return reply(JsonResponse(200, std::move(w.str())));
      }
      auto t0 = std::chrono::steady_clock::now();
      Result<uint64_t> count = t.engine().Estimate(definition);
      if (!count.ok()) return reply(DefinitionError(count.status()));
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      JsonWriter w;
      w.BeginObject().Key("count").Uint(*count).Key("millis").Double(ms).EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 3) {
    if (m == "GET") {
      return svc->Read([&reply, svc, &name](const Engine& e) {
        Result<SegmentInfo> info = e.GetSegment(name);
        if (!info.ok()) return reply(FromStatus(info.status()));
        JsonWriter w;
        WriteSegment(*info, svc->SegmentSeq(name), &w);
        reply(JsonResponse(200, std::move(w.str())));
      });
    }
    if (m == "PUT") {
      ParsedBody body;
      Response err;
      std::string definition;
      std::optional<SegmentTarget> target;
      if (!ParseObject(req.body, &body, &err) ||
          !GetString(body.root, "definition", true, &definition, &err) ||
          !GetTarget(body.root, &target, &err)) {
        return reply(std::move(err));
      }
      if (!ValidName(name, &err)) return reply(std::move(err));
      return svc->Run([reply, svc, name, definition, target](Txn& t) {
        Result<SegmentInfo> old = t.engine().GetSegment(name);
        bool exists = old.ok();
        if (exists && target && *target != old->target) {
          return reply(ErrorResponse(409, "failed_precondition",
                                     "the target of a segment cannot change; delete it and "
                                     "create it again"));
        }
        Result<SegmentInfo> info =
            exists ? t.engine().UpdateSegment(name, definition)
                   : t.engine().CreateSegment(name, definition,
                                              target.value_or(SegmentTarget::kUsers));
        if (!info.ok()) return reply(DefinitionError(info.status()));
        svc->SaveSegment(t, name);
        t.OnDurable([reply, svc, name, info = *info, exists](const Status& st) {
          if (!st.ok()) return reply(FromStatus(st));
          JsonWriter w;
          WriteSegment(info, svc->SegmentSeq(name), &w);
          reply(JsonResponse(exists ? 200 : 201, std::move(w.str())));
        });
      });
    }
    if (m == "DELETE") {
      return svc->Run([reply, name](Txn& t) {
        Status st = t.engine().DeleteSegment(name);
        if (!st.ok()) return reply(FromStatus(st));
        t.batch().DeleteSegment(name);
        t.OnDurable([reply](const Status& st) {
          if (!st.ok()) return reply(FromStatus(st));
          Response r;
          r.status = 204;
          r.content_type.clear();
          reply(std::move(r));
        });
      });
    }
    return reply(ErrorResponse(405, "method_not_allowed", "use GET, PUT or DELETE"));
  }
  if (parts.size() != 4 || m != "GET") {
    return reply(ErrorResponse(404, "not_found", "no such route: " + m + " " + req.path));
  }
  if (parts[3] == "count") {
    return svc->Read([&reply, &name](const Engine& e) {
      Result<uint64_t> n = e.Count(name);
      if (!n.ok()) return reply(FromStatus(n.status()));
      reply(JsonResponse(200, fmt::format(R"({{"count":{}}})", *n)));
    });
  }
  if (parts[3] == "members") {
    uint64_t limit = 1000;
    Response err;
    if (!QueryNumber(req, "limit", &limit, &err)) return reply(std::move(err));
    limit = std::clamp<uint64_t>(limit, 1, 10000);
    std::string cursor(req.Query("cursor"));
    return svc->Read([&reply, &name, limit, &cursor](const Engine& e) {
      Result<std::vector<std::string>> members = e.Members(name);
      if (!members.ok()) return reply(FromStatus(members.status()));
      auto it = cursor.empty() ? members->begin()
                               : std::upper_bound(members->begin(), members->end(), cursor);
      JsonWriter w;
      w.BeginObject().Key("members").BeginArray();
      uint64_t n = 0;
      for (; it != members->end() && n < limit; ++it, ++n) w.String(*it);
      w.EndArray().Key("next_cursor");
      if (it != members->end() && n > 0) {
        w.String(*(it - 1));
      } else {
        w.Null();
      }
      w.EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts[3] == "history") {
    Millis from = kMinTime, to = kMaxTime;
    if (auto f = req.Query("from"); !f.empty()) {
      auto t = ParseTime(f);
      if (!t) return reply(ErrorResponse(400, "invalid_argument", "query 'from': not a time"));
      from = *t;
    }
    if (auto f = req.Query("to"); !f.empty()) {
      auto t = ParseTime(f);
      if (!t) return reply(ErrorResponse(400, "invalid_argument", "query 'to': not a time"));
      to = *t;
    }
    uint64_t points = 0;
    Response err;
    if (!QueryNumber(req, "points", &points, &err)) return reply(std::move(err));
    std::vector<std::pair<Millis, uint64_t>> sizes;
    Status st = svc->db().SegmentSizes(name, from, to, &sizes);
    if (!st.ok()) return reply(FromStatus(st));
    // Thin to at most `points` samples (the last change in each slice), when asked.
    if (points > 0 && sizes.size() > points) {
      std::vector<std::pair<Millis, uint64_t>> thin;
      for (uint64_t i = 1; i <= points; ++i) thin.push_back(sizes[i * sizes.size() / points - 1]);
      sizes = std::move(thin);
    }
    JsonWriter w;
    w.BeginObject().Key("segment").String(name).Key("points").BeginArray();
    for (auto [t, n] : sizes) w.BeginObject().Key("time").Time(t).Key("size").Uint(n).EndObject();
    w.EndArray().EndObject();
    return reply(JsonResponse(200, std::move(w.str())));
  }
  reply(ErrorResponse(404, "not_found", "no such route: " + m + " " + req.path));
}

// --- Computed traits ----------------------------------------------------------------------------

void WriteComputedTrait(const ComputedTraitInfo& c, JsonWriter* w) {
  w->BeginObject()
      .Key("name")
      .String(c.name)
      .Key("definition")
      .String(c.definition)
      .Key("score")
      .Bool(c.score)
      .Key("target")
      .String(c.target == SegmentTarget::kAccounts ? "accounts" : "users")
      .Key("last_seq")
      .Uint(c.last_seq)
      .Key("created_at")
      .Time(c.created_at)
      .Key("updated_at")
      .Time(c.updated_at)
      .EndObject();
}

// GET/POST /v1/computed-traits, GET/PUT/DELETE /v1/computed-traits/{name}: as the segment routes.
void Api::ComputedTraits(Request& req, const std::vector<std::string>& parts, Reply& reply) {
  const std::string& m = req.method;
  server::Service* svc = service_;
  if (parts.size() == 4 && parts[3] == "changes") {
    if (m != "GET") return reply(ErrorResponse(405, "method_not_allowed", "use GET"));
    return ComputedTraitChanges(req, parts[2], reply);
  }
  if (parts.size() == 2 && m == "GET") {
    return svc->Read([&reply](const Engine& e) {
      JsonWriter w;
      w.BeginObject().Key("computed_traits").BeginArray();
      for (const ComputedTraitInfo& c : e.ListComputedTraits()) WriteComputedTrait(c, &w);
      w.EndArray().EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 3 && m == "GET") {
    std::string name(parts[2]);
    return svc->Read([&reply, &name](const Engine& e) {
      Result<ComputedTraitInfo> info = e.GetComputedTrait(name);
      if (!info.ok()) return reply(FromStatus(info.status()));
      JsonWriter w;
      WriteComputedTrait(*info, &w);
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if ((parts.size() == 2 && m == "POST") || (parts.size() == 3 && m == "PUT")) {
    ParsedBody body;
    Response err;
    std::string name = parts.size() == 3 ? std::string(parts[2]) : std::string(), definition;
    // "target": "accounts" makes a per-account computed trait (the segments' field and errors).
    std::optional<SegmentTarget> target;
    if (!ParseObject(req.body, &body, &err) ||
        (parts.size() == 2 && !GetString(body.root, "name", true, &name, &err)) ||
        !GetString(body.root, "definition", true, &definition, &err) ||
        !GetTarget(body.root, &target, &err)) {
      return reply(std::move(err));
    }
    const bool put = parts.size() == 3;
    return svc->Run([reply, svc, name, definition, put, target](Txn& t) {
      Result<ComputedTraitInfo> old = t.engine().GetComputedTrait(name);
      const bool exists = put && old.ok();
      if (exists && target && *target != old->target) {
        return reply(ErrorResponse(409, "failed_precondition",
                                   "the target of a computed trait cannot change; delete it and "
                                   "create it again"));
      }
      Result<ComputedTraitInfo> info =
          exists ? t.engine().UpdateComputedTrait(name, definition)
                 : t.engine().CreateComputedTrait(name, definition,
                                                  target.value_or(SegmentTarget::kUsers));
      if (!info.ok()) return reply(DefinitionError(info.status()));
      svc->SaveComputed(t, name);
      t.OnDurable([reply, info = *info, exists](const Status& st) {
        if (!st.ok()) return reply(FromStatus(st));
        JsonWriter w;
        WriteComputedTrait(info, &w);
        reply(JsonResponse(exists ? 200 : 201, std::move(w.str())));
      });
    });
  }
  if (parts.size() == 3 && m == "DELETE") {
    std::string name(parts[2]);
    return svc->Run([reply, svc, name](Txn& t) {
      Status st = svc->DeleteComputed(t, name);
      if (!st.ok()) return reply(FromStatus(st));
      t.OnDurable([reply](const Status& st) {
        if (!st.ok()) return reply(FromStatus(st));
        Response r;
        r.status = 204;
        r.content_type.clear();
        reply(std::move(r));
      });
    });
  }
  if (parts.size() <= 3)
    return reply(ErrorResponse(405, "method_not_allowed",
                               parts.size() == 2 ? "use GET or POST" : "use GET, PUT or DELETE"));
  reply(ErrorResponse(404, "not_found", "no such route: " + m + " " + req.path));
}

// --- Profiles ---------------------------------------------------------------------------------

void Api::Profiles(Request& req, const std::vector<std::string>& parts, Reply& reply) {
  const std::string& m = req.method;
  std::string id(parts[2]);
  server::Service* svc = service_;
  if (parts.size() == 3 && m == "GET") {
    return svc->Read([&reply, &id](const Engine& e) {
      Result<std::vector<Field>> traits = e.Traits(id);
      if (!traits.ok()) return reply(FromStatus(traits.status()));
      JsonWriter w;
      w.BeginObject().Key("id").String(id).Key("traits").BeginObject();
      for (const Field& f : *traits) w.Key(f.path).Value(f.value);
      w.EndObject().Key("segments").BeginArray();
      for (const std::string& s : e.SegmentsOf(id)) w.String(s);
      w.EndArray().Key("accounts").BeginArray();
      for (const std::string& a : e.AccountsOf(id)) w.String(a);
      w.EndArray().Key("computed").BeginObject();
      Result<std::vector<ComputedTraitValue>> computed = e.ComputedTraits(id);
      if (computed.ok())
        for (const ComputedTraitValue& v : *computed) w.Key(v.name).Value(v.value);
      w.EndObject().EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 3 && m == "DELETE") {
    return svc->Run([reply, svc, id](Txn& t) {
      Status st = svc->Erase(t, id);
      if (!st.ok()) return reply(FromStatus(st));
      t.OnDurable([reply](const Status& st) {
        if (!st.ok()) return reply(FromStatus(st));
        reply(JsonResponse(200, R"({"erased":true})"));
      });
    });
  }
  if (parts.size() == 4 && m == "GET" && parts[3] == "segments") {
    return svc->Read([&reply, &id](const Engine& e) {
      JsonWriter w;
      w.BeginObject().Key("segments").BeginArray();
      for (const std::string& s : e.SegmentsOf(id)) w.String(s);
      w.EndArray().EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 4 && m == "GET" && parts[3] == "explain") {
    return Explain(req, id, "profile", reply);
  }
  if (parts.size() == 4 && m == "GET" && parts[3] == "history") {
    return MembershipHistory(id, SegmentTarget::kUsers, "profile", reply);
  }
  if (parts.size() == 4 && m == "GET" && parts[3] == "computed-history") {
    return ComputedHistory(id, SegmentTarget::kUsers, "profile", reply);
  }
  reply(ErrorResponse(404, "not_found", "no such route: " + m + " " + req.path));
}

// GET .../{id}/explain?segment=S for a profile or an account: `key` names the id in the answer.
void Api::Explain(Request& req, const std::string& id, const char* key, Reply& reply) {
  std::string segment(req.Query("segment"));
  if (segment.empty()) {
    return reply(ErrorResponse(400, "invalid_argument", "query 'segment': required"));
  }
  service_->Run([reply, id, segment, key](Txn& t) {
    Result<ExplainNode> tree = t.engine().Explain(segment, id);
    if (!tree.ok()) return reply(FromStatus(tree.status()));
    Result<bool> member = t.engine().IsMember(segment, id);
    JsonWriter w;
    w.BeginObject().Key("segment").String(segment).Key(key).String(id);
    w.Key("member").Bool(member.ok() && *member).Key("tree");
    WriteExplain(*tree, &w);
    w.EndObject();
    reply(JsonResponse(200, std::move(w.str())));
  });
}

// --- Computed value changes ---------------------------------------------------------------------

// GET /v1/computed-traits/{name}/changes?after=TRAIT_SEQ&limit=L: one page of a trait's value
// changes from the store, oldest first. The live stream of all traits is GET
// /v1/computed-changes (http_server.cc).
void Api::ComputedTraitChanges(Request& req, const std::string& name, Reply& reply) {
  server::Service* svc = service_;
  uint64_t after = 0, limit = 1000;
  std::string_view from =
      !req.last_event_id.empty() ? std::string_view(req.last_event_id) : req.Query("after");
  if (!from.empty()) {
    auto r = std::from_chars(from.data(), from.data() + from.size(), after);
    if (r.ec != std::errc() || r.ptr != from.data() + from.size()) {
      return reply(ErrorResponse(400, "invalid_argument",
                                 "query parameter 'after' (or Last-Event-ID): not a sequence "
                                 "number"));
    }
  }
  Response err;
  if (!QueryNumber(req, "limit", &limit, &err)) return reply(std::move(err));
  if (!req.Query("limit").empty() && limit == 0) {
    return reply(ErrorResponse(400, "invalid_argument", "query parameter 'limit': must be > 0"));
  }
  limit = std::min<uint64_t>(limit, 10000);
  // A deleted trait keeps its history: unknown is neither live nor ever changed.
  const bool known = svc->Read(
      [&](const Engine& e) { return e.GetComputedTrait(name).ok() || svc->ComputedSeq(name) > 0; });
  if (!known) {
    return reply(ErrorResponse(404, "not_found", "computed trait \"" + name + "\" does not exist"));
  }
  std::vector<durable::StoredComputedChange> changes;
  Status st = svc->db().ComputedTraitHistory(name, after, limit, &changes);
  if (!st.ok()) return reply(FromStatus(st));
  JsonWriter w;
  w.BeginObject().Key("trait").String(name).Key("changes").BeginArray();
  for (const auto& c : changes) WriteComputedChange(c, &w);
  w.EndArray().Key("next").Uint(changes.empty() ? after : changes.back().trait_seq).EndObject();
  reply(JsonResponse(200, std::move(w.str())));
}

namespace {

// {KEY: id, "changes": [...]}: a profile's (or an account's) change records of one target, oldest
// first. A user key and a groupId may be the same text: the target tells them apart.
template <typename Stored>
Response HistoryResponse(const std::string& id, SegmentTarget target, const char* key,
                         const std::vector<Stored>& changes,
                         void (*write)(const Stored&, JsonWriter*)) {
  JsonWriter w;
  w.BeginObject().Key(key).String(id).Key("changes").BeginArray();
  for (const auto& c : changes) {
    if (c.change.target == target) write(c, &w);
  }
  w.EndArray().EndObject();
  return JsonResponse(200, std::move(w.str()));
}

}  // namespace

// When a profile (or an account) entered and left each of its target's segments, oldest first;
// empty for an unknown id.
void Api::MembershipHistory(const std::string& id, SegmentTarget target, const char* key,
                            Reply& reply) {
  std::vector<durable::StoredChange> changes;
  Status st = service_->db().ProfileHistory(id, &changes);
  if (!st.ok()) return reply(FromStatus(st));
  reply(HistoryResponse(id, target, key, changes, WriteChange));
}

// Every computed value change of a profile (or an account), oldest first; empty for an unknown
// id, as the membership history.
void Api::ComputedHistory(const std::string& id, SegmentTarget target, const char* key,
                          Reply& reply) {
  std::vector<durable::StoredComputedChange> changes;
  Status st = service_->db().ComputedProfileHistory(id, &changes);
  if (!st.ok()) return reply(FromStatus(st));
  reply(HistoryResponse(id, target, key, changes, WriteComputedChange));
}

// --- Accounts ---------------------------------------------------------------------------------

void Api::Accounts(Request& req, const std::vector<std::string>& parts, Reply& reply) {
  const std::string& m = req.method;
  const std::string& id = parts[2];
  server::Service* svc = service_;
  if (m != "GET") return reply(ErrorResponse(405, "method_not_allowed", "use GET"));
  if (parts.size() == 3) {
    return svc->Read([&reply, &id](const Engine& e) {
      Result<std::vector<Field>> traits = e.AccountTraits(id);
      if (!traits.ok()) return reply(FromStatus(traits.status()));
      JsonWriter w;
      w.BeginObject().Key("id").String(id).Key("traits").BeginObject();
      for (const Field& f : *traits) w.Key(f.path).Value(f.value);
      w.EndObject().Key("segments").BeginArray();
      for (const std::string& s : e.SegmentsOf(id, SegmentTarget::kAccounts)) w.String(s);
      w.EndArray().Key("users").BeginArray();
      Result<std::vector<std::string>> users = e.AccountUsers(id);
      if (users.ok()) {
        for (const std::string& u : *users) w.String(u);
      }
      // The account's computed traits, as a profile's "computed".
      w.EndArray().Key("computed").BeginObject();
      Result<std::vector<ComputedTraitValue>> computed = e.AccountComputedTraits(id);
      if (computed.ok())
        for (const ComputedTraitValue& v : *computed) w.Key(v.name).Value(v.value);
      w.EndObject().EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 4 && parts[3] == "segments") {
    return svc->Read([&reply, &id](const Engine& e) {
      JsonWriter w;
      w.BeginObject().Key("segments").BeginArray();
      for (const std::string& s : e.SegmentsOf(id, SegmentTarget::kAccounts)) w.String(s);
      w.EndArray().EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 4 && parts[3] == "explain") return Explain(req, id, "account", reply);
  if (parts.size() == 4 && parts[3] == "history") {
    return MembershipHistory(id, SegmentTarget::kAccounts, "account", reply);
  }
  if (parts.size() == 4 && parts[3] == "computed-history") {
    return ComputedHistory(id, SegmentTarget::kAccounts, "account", reply);
  }
  reply(ErrorResponse(404, "not_found", "no such route: " + m + " " + req.path));
}

// --- Lists ------------------------------------------------------------------------------------

namespace {

// The ids of a CSV body: the first column of each row; a first row naming the column is a header.
std::vector<std::string> CsvIds(std::string_view body) {
  std::vector<std::string> ids;
  if (body.starts_with("\xEF\xBB\xBF")) body.remove_prefix(3);  // Excel's "CSV UTF-8" mark
  size_t pos = 0;
  bool first = true;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    if (eol == std::string_view::npos) eol = body.size();
    std::string_view line = body.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string id;
    if (!line.empty() && line[0] == '"') {
      // A quoted field: "" is a quote.
      for (size_t i = 1; i < line.size(); ++i) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            id.push_back('"');
            ++i;
          } else {
            break;
          }
        } else {
          id.push_back(line[i]);
        }
      }
    } else {
      id = std::string(line.substr(0, line.find(',')));
      while (!id.empty() && id.back() == ' ') id.pop_back();
      while (!id.empty() && id.front() == ' ') id.erase(id.begin());
    }
    if (first) {
      first = false;
      std::string lower;
      for (char c : id)
        lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      if (lower == "id" || lower == "userid" || lower == "user_id") continue;
    }
    if (!id.empty() && id.find('\0') == std::string::npos) ids.push_back(std::move(id));
  }
  return ids;
}

void ListAnswer(Txn& t, const std::string& name, unsigned status, int64_t added,
                const Reply& reply) {
  Result<std::vector<std::string>> members = t.engine().ListMembers(name);
  uint64_t size = members.ok() ? members->size() : 0;
  t.OnDurable([reply, name, size, status, added](const Status& st) {
    if (!st.ok()) return reply(FromStatus(st));
    JsonWriter w;
    w.BeginObject().Key("name").String(name).Key("size").Uint(size);
    if (added >= 0) w.Key("added").Int(added);
    w.EndObject();
    reply(JsonResponse(status, std::move(w.str())));
  });
}

}  // namespace

void Api::Lists(Request& req, const std::vector<std::string>& parts, Reply& reply) {
  const std::string& m = req.method;
  server::Service* svc = service_;
  if (parts.size() == 2 && m == "GET") {
    return svc->Run([reply](Txn& t) {
      JsonWriter w;
      w.BeginObject().Key("lists").BeginArray();
      for (const std::string& name : t.engine().Lists()) {
        Result<std::vector<std::string>> members = t.engine().ListMembers(name);
        w.BeginObject().Key("name").String(name).Key("size").Uint(members.ok() ? members->size()
                                                                               : 0);
        w.EndObject();
      }
      w.EndArray().EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 2 && m == "POST") {
    ParsedBody body;
    Response err;
    std::string name, from_segment;
    if (!ParseObject(req.body, &body, &err) || !GetString(body.root, "name", true, &name, &err) ||
        !GetString(body.root, "from_segment", false, &from_segment, &err)) {
      return reply(std::move(err));
    }
    if (!ValidName(name, &err)) return reply(std::move(err));
    return svc->Run([reply, name, from_segment](Txn& t) {
      std::vector<std::string> members;
      if (!from_segment.empty()) {
        Result<SegmentInfo> info = t.engine().GetSegment(from_segment);
        if (info.ok() && info->target == SegmentTarget::kAccounts) {
          return reply(ErrorResponse(400, "invalid_argument",
                                     "field 'from_segment': a list holds user ids, and \"" +
                                         from_segment + "\" is an account segment"));
        }
        Result<std::vector<std::string>> m = t.engine().Members(from_segment);
        if (!m.ok()) return reply(FromStatus(m.status()));
        members = std::move(*m);
      }
      Status st = t.engine().CreateList(name);
      if (st.ok() && !members.empty()) st = t.engine().AddToList(name, members);
      if (!st.ok()) return reply(FromStatus(st));
      t.batch().PutList(name);
      for (const std::string& p : members) t.batch().PutListMember(name, p);
      ListAnswer(t, name, 201, -1, reply);
    });
  }
  if (parts.size() < 3) return reply(ErrorResponse(405, "method_not_allowed", "use GET or POST"));
  std::string name(parts[2]);
  if (parts.size() == 3 && m == "GET") {
    return svc->Run([reply, name](Txn& t) {
      Result<std::vector<std::string>> members = t.engine().ListMembers(name);
      if (!members.ok()) return reply(FromStatus(members.status()));
      reply(JsonResponse(200, fmt::format(R"({{"name":{},"size":{}}})",
                                          [&] {
                                            std::string s;
                                            AppendJsonString(name, &s);
                                            return s;
                                          }(),
                                          members->size())));
    });
  }
  if (parts.size() == 3 && m == "DELETE") {
    return svc->Run([reply, name](Txn& t) {
      Result<std::vector<std::string>> members = t.engine().ListMembers(name);
      if (!members.ok()) return reply(FromStatus(members.status()));
      Status st = t.engine().DeleteList(name);
      if (!st.ok()) return reply(FromStatus(st));
      t.batch().DeleteList(name);
      for (const std::string& p : *members) t.batch().DeleteListMember(name, p);
      t.OnDurable([reply](const Status& st) {
        if (!st.ok()) return reply(FromStatus(st));
        Response r;
        r.status = 204;
        r.content_type.clear();
        reply(std::move(r));
      });
    });
  }
  if (parts.size() == 4 && parts[3] == "members" && m == "GET") {
    return svc->Run([reply, name](Txn& t) {
      Result<std::vector<std::string>> members = t.engine().ListMembers(name);
      if (!members.ok()) return reply(FromStatus(members.status()));
      JsonWriter w;
      w.BeginObject().Key("name").String(name).Key("members").BeginArray();
      for (const std::string& p : *members) w.String(p);
      w.EndArray().EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 4 && parts[3] == "members" && m == "POST") {
    ParsedBody body;
    Response err;
    std::vector<std::string> add, remove;
    if (!ParseObject(req.body, &body, &err) || !GetStringArray(body.root, "add", &add, &err) ||
        !GetStringArray(body.root, "remove", &remove, &err)) {
      return reply(std::move(err));
    }
    return svc->Run([reply, name, add, remove](Txn& t) {
      Status st = t.engine().AddToList(name, add);
      if (st.ok()) st = t.engine().RemoveFromList(name, remove);
      if (!st.ok()) return reply(FromStatus(st));
      for (const std::string& p : add) t.batch().PutListMember(name, p);
      for (const std::string& p : remove) {
        // A merged profile may have joined the list under any of its keys (docs/language.md,
        // "Identity"): removing it by one removes them all, also from what a restart reloads.
        std::vector<std::string> keys = t.engine().KeysOf(p);
        if (keys.empty()) keys.push_back(p);
        for (const std::string& k : keys) t.batch().DeleteListMember(name, k);
      }
      ListAnswer(t, name, 200, -1, reply);
    });
  }
  if (parts.size() == 4 && parts[3] == "upload" && m == "POST") {
    std::vector<std::string> ids = CsvIds(req.body);
    return svc->Run([reply, name, ids = std::move(ids)](Txn& t) {
      Result<std::vector<std::string>> before = t.engine().ListMembers(name);
      if (!before.ok()) return reply(FromStatus(before.status()));
      Status st = t.engine().AddToList(name, ids);
      if (!st.ok()) return reply(FromStatus(st));
      for (const std::string& p : ids) t.batch().PutListMember(name, p);
      Result<std::vector<std::string>> after = t.engine().ListMembers(name);
      int64_t added = after.ok() ? static_cast<int64_t>(after->size() - before->size()) : 0;
      ListAnswer(t, name, 200, added, reply);
    });
  }
  reply(ErrorResponse(404, "not_found", "no such route: " + m + " " + req.path));
}

// --- Debug ------------------------------------------------------------------------------------

void Api::Debug(Request& req, const std::vector<std::string>& parts, Reply& reply) {
  const std::string& m = req.method;
  server::Service* svc = service_;
  if (parts.size() == 3 && parts[2] == "clock" && m == "POST") {
    ParsedBody body;
    Response err;
    std::string advance, set;
    if (!ParseObject(req.body, &body, &err) ||
        !GetString(body.root, "advance", false, &advance, &err) ||
        !GetString(body.root, "set", false, &set, &err)) {
      return reply(std::move(err));
    }
    std::optional<Millis> d, at;
    if (!advance.empty() && !(d = ParseDuration(advance))) {
      return reply(ErrorResponse(400, "invalid_argument", "field 'advance': not a duration"));
    }
    if (!set.empty() && !(at = ParseTime(set))) {
      return reply(ErrorResponse(400, "invalid_argument", "field 'set': not a time"));
    }
    if (!d && !at) {
      return reply(ErrorResponse(400, "invalid_argument", "give 'advance' or 'set'"));
    }
    return svc->Run([reply, svc, d, at](Txn& t) {
      Millis target = at ? *at : t.engine().Now() + *d;
      Result<size_t> n = svc->SetClock(target);
      if (!n.ok()) return reply(FromStatus(n.status()));
      Millis now = t.engine().Now();
      t.OnDurable([reply, now, n = *n](const Status& st) {
        if (!st.ok()) return reply(FromStatus(st));
        JsonWriter w;
        w.BeginObject().Key("now").Time(now).Key("changes").Uint(n).EndObject();
        reply(JsonResponse(200, std::move(w.str())));
      });
    });
  }
  if (parts.size() == 3 && parts[2] == "verify" && m == "GET") {
    return svc->Run([reply, svc](Txn& t) {
      const Engine& e = t.engine();
      auto lookup = [&e](std::string_view name) { return e.Definition(name); };
      auto lists = [&e](std::string_view list, std::string_view profile) {
        Result<std::vector<std::string>> members = e.ListMembers(list);
        return members.ok() &&
               std::binary_search(members->begin(), members->end(), std::string(profile));
      };
      bool all_ok = true;
      JsonWriter w;
      w.BeginObject().Key("segments").BeginObject();
      for (const SegmentInfo& s : e.ListSegments()) {
        const rules::Expr* def = e.Definition(s.name);
        std::vector<std::string> ref;
        if (def && s.target == SegmentTarget::kAccounts) {
          ref = reference::AccountMembers(e.store(), *def, lookup, e.Now(), lists);
        } else if (def) {
          ref = reference::Members(e.store(), *def, lookup, e.Now(), lists);
        }
        Result<std::vector<std::string>> live = e.Members(s.name);
        std::vector<std::string> persisted;
        Status st =
            svc->db().ForEachMember(s.name, [&](std::string_view p) { persisted.emplace_back(p); });
        // The persisted membership lags the live one by the changes not yet committed.
        bool ok = live.ok() && st.ok() && *live == ref;
        all_ok &= ok;
        w.Key(s.name).BeginObject();
        w.Key("live").Uint(live.ok() ? live->size() : 0).Key("reference").Uint(ref.size());
        w.Key("persisted").Uint(persisted.size()).Key("ok").Bool(ok);
        w.Key("persisted_equal").Bool(live.ok() && persisted == *live);
        w.EndObject();
      }
      w.EndObject().Key("ok").Bool(all_ok).EndObject();
      reply(JsonResponse(200, std::move(w.str())));
    });
  }
  if (parts.size() == 4 && parts[2] == "messages" && m == "GET") {
    std::string id(parts[3]);
    return svc->Run([reply, svc, id](Txn&) {
      reply(JsonResponse(200, svc->IsDuplicate(id) ? R"({"stored":true})" : R"({"stored":false})"));
    });
  }
  reply(ErrorResponse(404, "not_found", "no such route: " + m + " " + req.path));
}

// --- Metrics ----------------------------------------------------------------------------------

Response Api::Metrics() {
  // Counters are read directly; engine figures come from the engine thread's last snapshot.
  server::ServiceMetrics& mt = service_->metrics();
  std::string out;
  auto line = [&](std::string_view name, std::string_view type, std::string_view help, uint64_t v) {
    fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help,
                   type, v);
  };
  line("shoal_ingest_messages_total", "counter", "Calls accepted.", mt.messages.load());
  line("shoal_ingest_duplicates_total", "counter", "Calls dropped as duplicates of a messageId.",
       mt.duplicates.load());
  line("shoal_ingest_rejected_total", "counter", "Calls refused: invalid or overloaded.",
       mt.rejected.load());
  line("shoal_changes_total", "counter", "Membership changes committed.", mt.changes.load());
  line("shoal_computed_changes_total", "counter", "Computed value changes committed.",
       mt.computed_changes.load());
  line("shoal_commit_groups_total", "counter", "Group commits (one fsync each).", mt.groups.load());
  line("shoal_pending_messages", "gauge", "Calls accepted but not yet durable.",
       mt.pending_messages.load());
  line("shoal_change_log_seq", "gauge", "Sequence number of the last committed change.",
       service_->hub().LastSeq());
  line("shoal_stream_clients", "gauge", "Stream and long-poll clients waiting for changes.",
       service_->hub().Waiters() + service_->computed_hub().Waiters());
  line("shoal_computed_change_log_seq", "gauge",
       "Sequence number of the last committed computed value change.",
       service_->computed_hub().LastSeq());
  line("shoal_store_bytes", "gauge", "Bytes of the durable store on disk (approximate).",
       service_->db().ApproximateBytes());
  // Histogram of ack latency.
  out.append("# HELP shoal_ack_latency_seconds Call received to acknowledged durable.\n");
  out.append("# TYPE shoal_ack_latency_seconds histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < std::size(server::ServiceMetrics::kBuckets); ++i) {
    cumulative += mt.ack_bucket[i].load();
    fmt::format_to(std::back_inserter(out), "shoal_ack_latency_seconds_bucket{{le=\"{}\"}} {}\n",
                   server::ServiceMetrics::kBuckets[i] / 1e6, cumulative);
  }
  cumulative += mt.ack_bucket[std::size(server::ServiceMetrics::kBuckets)].load();
  fmt::format_to(std::back_inserter(out), "shoal_ack_latency_seconds_bucket{{le=\"+Inf\"}} {}\n",
                 cumulative);
  fmt::format_to(std::back_inserter(out), "shoal_ack_latency_seconds_sum {}\n",
                 mt.ack_micros_sum.load() / 1e6);
  fmt::format_to(std::back_inserter(out), "shoal_ack_latency_seconds_count {}\n",
                 mt.ack_count.load());
  // Engine figures, sampled by the engine thread.
  out.append(service_->EngineMetricsText());
  Response r;
  r.body = std::move(out);
  r.content_type = "text/plain; version=0.0.4";
  return r;
}

}  // namespace shoal::api
