// Writing JSON for API answers: a small streaming writer (no DOM) and the JSON forms of the
// engine's values and changes. Reading request bodies uses simdjson (api.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/text.h"
#include "durable/codec.h"
#include "shoal/engine.h"
#include "shoal/event.h"
#include "shoal/time.h"

namespace shoal::api {

// Writes one JSON document; commas are placed automatically. Misuse (a value without a key inside
// an object) is a programming error and not checked.
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view k);
  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  JsonWriter& Time(Millis t);              // ISO 8601 string
  JsonWriter& Raw(std::string_view json);  // an already-encoded value
  JsonWriter& Value(const shoal::Value& v);
  std::string& str() { return out_; }

 private:
  void Sep();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

// {"seq":..,"segment":..,"segment_seq":..,"profile":..,"kind":..,"cause":..,...}
void WriteChange(const durable::StoredChange& c, JsonWriter* w);

// {"seq":..,"trait":..,"trait_seq":..,"profile":..,"target":..,"old_value":..,"new_value":..,
//  "cause":..,...}: a computed value change (values are JSON, null for no value).
void WriteComputedChange(const durable::StoredComputedChange& c, JsonWriter* w);

}  // namespace shoal::api
