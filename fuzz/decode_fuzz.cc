// libFuzzer target for the Segment-spec decoder: arbitrary bytes must never crash, hang or trip a
// sanitizer, and parsing in place (padded buffer) must agree with parsing a copy (capacity == len),
// with a fresh decoder and with the simdjson path alone (fast path off).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ingest/decode.h"
#include "ingest/decode_internal.h"

namespace {

bool SameFields(const std::vector<shoal::Field>& a, const std::vector<shoal::Field>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].path != b[i].path || !(a[i].value == b[i].value)) return false;
  return true;
}

bool SameMessage(const shoal::Message& x, const shoal::Message& y) {
  return x.type == y.type && x.user_id == y.user_id && x.anonymous_id == y.anonymous_id &&
         x.event == y.event && x.name == y.name && x.group_id == y.group_id &&
         x.previous_id == y.previous_id && x.message_id == y.message_id &&
         x.timestamp == y.timestamp && SameFields(x.properties, y.properties) &&
         SameFields(x.traits, y.traits);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One decoder per process, as on the hot path: state must carry over cleanly. The in-place
  // decoder writes into two messages in turn, as the replay's lookahead does.
  static shoal::ingest::Decoder* copied_decoder = new shoal::ingest::Decoder();
  static shoal::ingest::Decoder* in_place_decoder = new shoal::ingest::Decoder();
  static shoal::Message* copied_msg = new shoal::Message();
  static shoal::Message* in_place_msgs = new shoal::Message[2];
  static size_t calls = 0;
  shoal::Message* in_place_msg = &in_place_msgs[calls++ % 2];

  shoal::ingest::DecodeOptions opts;
  opts.received_at = size % 2 ? 1790000000000 : 0;
  opts.now = 1;
  opts.default_type = size % 3 ? "" : "track";

  // capacity == len: an exact-size heap copy, so ASan sees any read past the end.
  std::unique_ptr<char[]> exact(new char[size == 0 ? 1 : size]);
  if (size) std::memcpy(exact.get(), data, size);
  shoal::Status a = copied_decoder->Decode(exact.get(), size, size, opts, copied_msg);

  // In place: padding filled with bytes that would extend a number or atom if read as input.
  const size_t padding = 64;
  std::unique_ptr<char[]> padded(new char[size + padding]);
  if (size) std::memcpy(padded.get(), data, size);
  std::memset(padded.get() + size, '1', padding);
  shoal::Status b =
      in_place_decoder->Decode(padded.get(), size, size + padding, opts, in_place_msg);

  // A fresh decoder: what the two above keep from earlier inputs must not change a result.
  shoal::ingest::Decoder fresh_decoder;
  shoal::Message fresh_msg;
  shoal::Status c = fresh_decoder.Decode(exact.get(), size, size, opts, &fresh_msg);

  // The simdjson path alone: the hand-written fast path must read what it accepts to the same
  // result (it hands everything else, errors included, to simdjson).
  shoal::ingest::internal::SetFastPathForTesting(false);
  static shoal::ingest::Decoder* slow_decoder = new shoal::ingest::Decoder();
  static shoal::Message* slow_msg = new shoal::Message();
  shoal::Status d = slow_decoder->Decode(exact.get(), size, size, opts, slow_msg);
  shoal::ingest::internal::SetFastPathForTesting(true);

  if (a.ok() != b.ok() || a.message() != b.message()) std::abort();
  if (a.ok() != c.ok() || a.message() != c.message()) std::abort();
  if (a.ok() != d.ok() || a.message() != d.message()) std::abort();
  if (a.ok()) {
    if (!SameMessage(*copied_msg, *in_place_msg) || !SameMessage(*copied_msg, fresh_msg) ||
        !SameMessage(*copied_msg, *slow_msg))
      std::abort();
    if (copied_msg->user_id.empty() && copied_msg->anonymous_id.empty()) std::abort();
  }
  return 0;
}
