// Binary encodings of what Shoal writes to disk: a Message (the write-ahead log) and a stored
// membership change (the change log). Compact (varints, no field names) and checked on the way
// back in: bytes read from disk go through the safe path, a truncated or corrupt record is an
// error, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shoal/engine.h"
#include "shoal/event.h"
#include "shoal/status.h"

namespace shoal::durable {

// A membership change as the server stores and streams it. `seq` is global over all segments and
// strictly increasing; `segment_seq` counts one segment's changes from 1 and never restarts (the
// engine's own Change::seq is not used). `size_after` is the segment's size after the change.
struct StoredChange {
  uint64_t seq = 0;
  uint64_t segment_seq = 0;
  uint64_t size_after = 0;
  Change change;
};

// The encoded message starts with the profile key (length-prefixed), so that a scan for one
// profile's records reads only that prefix.
void EncodeMessage(const Message& msg, std::string* out);
Status DecodeMessage(std::string_view in, Message* out);
// The profile key of an encoded message, without decoding the rest.
Result<std::string_view> EncodedProfileKey(std::string_view in);

void EncodeChange(const StoredChange& c, std::string* out);  // seq is the key, not encoded
Status DecodeChange(std::string_view in, StoredChange* out);

// A computed trait's value change as the server stores and streams it (the counterpart of
// StoredChange). `seq` is global over all computed traits and strictly increasing, in its own
// sequence (not the membership changes'); `trait_seq` counts one trait's changes from 1 and never
// restarts, also when the trait is deleted and created again (the engine's ComputedChange::seq is
// not used).
struct StoredComputedChange {
  uint64_t seq = 0;
  uint64_t trait_seq = 0;
  ComputedChange change;
};

void EncodeComputedChange(const StoredComputedChange& c, std::string* out);  // seq: the key
Status DecodeComputedChange(std::string_view in, StoredComputedChange* out);

// One value (null, bool, number, string or list), as a computed trait's current value is kept.
void EncodeValue(const Value& v, std::string* out);
Status DecodeValue(std::string_view in, Value* out);

// Big-endian fixed 64-bit integers: keys that sort by number.
void PutBigEndian64(uint64_t v, std::string* out);
uint64_t GetBigEndian64(const char* p);

}  // namespace shoal::durable
