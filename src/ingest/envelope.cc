#include "ingest/envelope.h"

#include <simdjson.h>

namespace shoal::ingest {

namespace od = simdjson::ondemand;

Status ParseEnvelope(std::string_view body, bool batch, Envelope* out) {
  thread_local od::parser parser;
  out->calls.clear();
  out->write_key.clear();
  out->sent_at = 0;
  auto json_error = [](simdjson::error_code e) {
    return Status::InvalidArgument(std::string("invalid JSON: ") + simdjson::error_message(e));
  };
  od::document doc;
  if (auto e = parser.iterate(body.data(), body.size(), body.size() + simdjson::SIMDJSON_PADDING)
                   .get(doc)) {
    return json_error(e);
  }
  od::object obj;
  if (auto e = doc.get_object().get(obj)) {
    return e == simdjson::INCORRECT_TYPE ? Status::InvalidArgument("the body must be a JSON object")
                                         : json_error(e);
  }
  bool saw_batch = false;
  for (auto field : obj) {
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return json_error(e);
    if (key == "writeKey") {
      std::string_view s;
      if (field.value().get_string().get(s) == simdjson::SUCCESS) out->write_key = s;
    } else if (batch && key == "batch") {
      saw_batch = true;
      od::array arr;
      if (field.value().get_array().get(arr)) {
        return Status::InvalidArgument("field 'batch': must be an array of calls");
      }
      for (auto elem : arr) {
        od::value v;
        if (auto e = elem.get(v)) return json_error(e);
        od::json_type t;
        if (auto e = v.type().get(t)) return json_error(e);
        std::string_view raw;
        if (t == od::json_type::object) {
          od::object o;
          if (auto e = v.get_object().get(o)) return json_error(e);
          if (auto e = o.raw_json().get(raw)) return json_error(e);
          out->calls.push_back(raw);
          continue;
        }
        // Consume the element so that a malformed one is still a JSON error.
        if (t == od::json_type::array) {
          od::array a;
          if (auto e = v.get_array().get(a)) return json_error(e);
          if (auto e = a.raw_json().get(raw)) return json_error(e);
        }  // a scalar is skipped (and checked) by the array iterator
        out->calls.push_back({});
      }
    } else if (batch && key == "sentAt") {
      std::string_view s;
      if (field.value().get_string().get(s) == simdjson::SUCCESS) {
        if (std::optional<Millis> t = ParseTime(s)) out->sent_at = *t;
      }
    }
  }
  if (batch && !saw_batch) return Status::InvalidArgument("field 'batch': required");
  if (!batch) out->calls.push_back(body);
  return Status::Ok();
}

}  // namespace shoal::ingest
