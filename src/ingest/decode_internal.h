// Test hooks of the decoder; not for use outside tests.
#pragma once

namespace shoal::ingest::internal {

// Whether Decoder::Decode tries its hand-written fast path before simdjson (default: yes). Tests
// turn it off to compare the two paths. Affects every Decoder; not for use while one is decoding.
void SetFastPathForTesting(bool enabled);

}  // namespace shoal::ingest::internal
