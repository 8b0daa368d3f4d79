// Decoding of Segment-spec messages (https://segment.com/docs/connections/spec/) from JSON into
// Message, with simdjson On-Demand. Validation errors name the field and what is wrong.
//
// Threading: a Decoder holds a parser and scratch buffers; use one per thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "shoal/event.h"
#include "shoal/status.h"
#include "shoal/time.h"

namespace shoal::ingest {

constexpr size_t kMaxMessageBytes = 32 * 1024;  // Segment's per-event limit

struct DecodeOptions {
  // When the server received the message; 0 if unknown. With sentAt in the message, the
  // timestamp is corrected for client clock skew: timestamp = received_at - (sentAt - timestamp).
  // A message without timestamp takes received_at (or `now` when received_at is 0).
  Millis received_at = 0;
  Millis now = 0;
  // The sentAt of the envelope (a batch's), used for messages that carry none; 0: none.
  Millis sent_at = 0;
  // The `type` to assume when the message has none (e.g. POST /v1/track). Empty: required.
  std::string_view default_type;
};

class Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes one message. `capacity` is the number of readable bytes at `data` (>= len); when
  // capacity >= len + 64 (simdjson's padding) the bytes are parsed in place (the padding may hold
  // anything, e.g. the next NDJSON line), otherwise copied into the Decoder's padded buffer.
  // Reuses *out's strings and vectors: decoding a stream into one Message allocates nothing once
  // warm. Paths in properties/traits are unique (a later duplicate replaces the earlier value).
  // On error returns kInvalidArgument with a message such as
  //   "field 'event': required for a track call"
  //   "field 'timestamp': not an ISO 8601 time: \"yesterday\""
  //   "invalid JSON at column 17: ..."  (plus " (in field 'properties.a')" inside a value)
  // and leaves *out in an unspecified state. Members the decoder does not read (unknown fields,
  // other context fields) are checked for structure only, as simdjson On-Demand skips them.
  Status Decode(const char* data, size_t len, size_t capacity, const DecodeOptions& opts,
                Message* out);
  Status Decode(std::string_view json, const DecodeOptions& opts, Message* out) {
    return Decode(json.data(), json.size(), json.size(), opts, out);
  }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal::ingest
