// The decoded form of a Segment-spec message (identify, track, page, screen, group, alias) and
// the typed values it carries. Nested objects are flattened into dotted paths at decode time
// ("address": {"city": "Paris"} becomes the field "address.city"), so a later identify that sends
// {"address": {"zip": "75001"}} keeps address.city: trait merges are deep.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/time.h"

namespace shoal {

enum class ValueType : uint8_t { kNull = 0, kBool, kNumber, kString, kList };

// A typed scalar. A list is kept as its compact JSON text (e.g. ["a",1,true]); objects inside a
// list stay JSON text too. Timestamps are strings, as in JSON; the language parses them when it
// compares them with times.
struct Value {
  ValueType type = ValueType::kNull;
  bool b = false;
  double num = 0;
  std::string str;  // kString: the text; kList: the JSON array text

  static Value Null() { return {}; }
  static Value Bool(bool v) {
    Value x;
    x.type = ValueType::kBool;
    x.b = v;
    return x;
  }
  static Value Number(double v) {
    Value x;
    x.type = ValueType::kNumber;
    x.num = v;
    return x;
  }
  static Value String(std::string v) {
    Value x;
    x.type = ValueType::kString;
    x.str = std::move(v);
    return x;
  }
  static Value List(std::string json) {
    Value x;
    x.type = ValueType::kList;
    x.str = std::move(json);
    return x;
  }
  bool operator==(const Value& o) const {
    if (type != o.type) return false;
    switch (type) {
      case ValueType::kNull:
        return true;
      case ValueType::kBool:
        return b == o.b;
      case ValueType::kNumber:
        return num == o.num;
      default:
        return str == o.str;
    }
  }
};

struct Field {
  std::string path;  // dotted path, e.g. "address.city"
  Value value;
};

enum class MessageType : uint8_t { kIdentify, kTrack, kPage, kScreen, kGroup, kAlias };

// One message after decoding and validation. Reused across calls on the hot path: Clear() keeps
// the vectors' capacity.
struct Message {
  MessageType type = MessageType::kTrack;
  std::string user_id;       // userId; may be empty when anonymous_id is set
  std::string anonymous_id;  // anonymousId
  std::string event;         // track: the event name; page/screen: see ProfileKey()/EventName()
  std::string name;          // page/screen: the page or screen name
  std::string message_id;
  std::string group_id;           // group: the account; others: context.groupId when present
  std::string previous_id;        // alias
  Millis timestamp = 0;           // event time (after sentAt skew correction, if any)
  Millis received_at = 0;         // when the server received it (0 if unknown)
  std::vector<Field> properties;  // track/page/screen
  std::vector<Field> traits;      // identify/group (identify: context.traits when traits is absent)

  void Clear();
  // userId if set, else anonymousId. The engine resolves it to the profile the key was merged
  // into, if any; a message with both ids may merge the anonymousId's profile into the userId's
  // (docs/language.md, "Identity").
  const std::string& ProfileKey() const { return user_id.empty() ? anonymous_id : user_id; }
};

}  // namespace shoal
