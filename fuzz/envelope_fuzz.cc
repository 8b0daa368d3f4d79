// libFuzzer target for the tracking API's request bodies: the envelope (a batch's calls, sentAt,
// writeKey) and then each call through the decoder, as POST /v1/batch does. Arbitrary bytes must
// never crash, hang or trip a sanitizer, and every call view must lie inside the body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "ingest/decode.h"
#include "ingest/envelope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static shoal::ingest::Decoder* decoder = new shoal::ingest::Decoder();
  static shoal::Message* msg = new shoal::Message();
  // The body with simdjson's padding after it, as the server's padded_string has.
  constexpr size_t kPadding = 64;
  std::unique_ptr<char[]> body(new char[size + kPadding]);
  if (size) std::memcpy(body.get(), data, size);
  std::memset(body.get() + size, 0, kPadding);
  std::string_view view(body.get(), size);

  for (bool batch : {true, false}) {
    shoal::ingest::Envelope env;
    shoal::Status st = shoal::ingest::ParseEnvelope(view, batch, &env);
    if (!st.ok()) continue;
    if (!batch && env.calls.size() != 1) std::abort();
    shoal::ingest::DecodeOptions opts;
    opts.received_at = 1790000000000;
    opts.now = opts.received_at;
    opts.sent_at = env.sent_at;
    for (std::string_view call : env.calls) {
      if (call.data() == nullptr) continue;
      if (call.data() < body.get() || call.data() + call.size() > body.get() + size) std::abort();
      (void)decoder->Decode(call, opts, msg);
    }
  }
  return 0;
}
