// The envelope of a tracking API request body: for POST /v1/batch, {"batch": [call, ...],
// "sentAt": ..., "writeKey": ...}; for the single-call routes, the body is the call itself (and may
// carry writeKey). The calls are returned as views of their raw JSON, to be decoded one by one
// (Decoder), so that one malformed call is reported by its index while the others are kept.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "shoal/status.h"
#include "shoal/time.h"

namespace shoal::ingest {

struct Envelope {
  // Views into the body. A view with data() == nullptr marks a batch element that is not an
  // object (reported by index, like any malformed call).
  std::vector<std::string_view> calls;
  std::string write_key;  // empty when absent
  Millis sent_at = 0;     // the batch's sentAt; 0 when absent or not a time
};

// Parses `body`, which must have simdjson::SIMDJSON_PADDING readable bytes after its end (a
// simdjson::padded_string). With `batch`, the calls are the elements of "batch" (required);
// otherwise the whole body is the one call. Errors: kInvalidArgument naming what is wrong,
// "invalid JSON: ..." or "field 'batch': ...".
Status ParseEnvelope(std::string_view body, bool batch, Envelope* out);

}  // namespace shoal::ingest
