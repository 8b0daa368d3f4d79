#include "ingest/decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "ingest/decode_internal.h"

// Counts heap allocations, to check that a warm Decoder allocates nothing per message. Not under
// ASan, which has its own operator new.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHOAL_NO_ALLOCATION_COUNT 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SHOAL_NO_ALLOCATION_COUNT 1
#endif

static std::atomic<long> g_allocations{0};
#ifndef SHOAL_NO_ALLOCATION_COUNT
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
#endif

namespace shoal::ingest {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr Millis kT0 = 1785715200000;  // 2026-08-03T00:00:00Z
constexpr size_t kPadding = 64;        // simdjson's padding, as in decode.h

class DecodeTest : public ::testing::Test {
 protected:
  // Decodes `json` through the copying path (capacity == len).
  Status Run(std::string_view json, const DecodeOptions& opts = {}) {
    return decoder_.Decode(json, opts, &msg_);
  }
  Message Ok(std::string_view json, const DecodeOptions& opts = {}) {
    Status st = Run(json, opts);
    EXPECT_TRUE(st.ok()) << st.message() << "\n  for " << json;
    return msg_;
  }
  std::string Err(std::string_view json, const DecodeOptions& opts = {}) {
    Status st = Run(json, opts);
    EXPECT_FALSE(st.ok()) << "accepted " << json;
    EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
    return st.message();
  }
  static const Value* Find(const std::vector<Field>& fields, std::string_view path) {
    for (const Field& f : fields)
      if (f.path == path) return &f.value;
    return nullptr;
  }

  Decoder decoder_;
  Message msg_;
};

// The two sample lines of /work/shared/peers/README.md.
constexpr std::string_view kSampleIdentify =
    R"({"type":"identify","userId":"u4","traits":{"country":"FR","plan":"pro","age":41,)"
    R"("signup_at":"2025-05-27T02:23:36Z","job_title":"Analyst","lead_source":"email",)"
    R"("account_id":"a19228"},"timestamp":"2026-08-03T00:00:00Z"})";
constexpr std::string_view kSampleTrack =
    R"({"type":"track","messageId":"m555","userId":"u176810","event":"Order Completed",)"
    R"("properties":{"order_id":"o555","total":20.97,"category":"apparel","currency":"EUR"},)"
    R"("timestamp":"2026-08-03T00:03:03Z"})";

TEST_F(DecodeTest, SampleIdentify) {
  Message m = Ok(kSampleIdentify);
  EXPECT_EQ(m.type, MessageType::kIdentify);
  EXPECT_EQ(m.user_id, "u4");
  EXPECT_EQ(m.anonymous_id, "");
  EXPECT_EQ(m.timestamp, kT0);
  EXPECT_TRUE(m.properties.empty());
  ASSERT_EQ(m.traits.size(), 7u);
  EXPECT_EQ(m.traits[0].path, "country");
  EXPECT_EQ(m.traits[0].value, Value::String("FR"));
  EXPECT_EQ(*Find(m.traits, "age"), Value::Number(41));
  EXPECT_EQ(*Find(m.traits, "signup_at"), Value::String("2025-05-27T02:23:36Z"));
  EXPECT_EQ(*Find(m.traits, "account_id"), Value::String("a19228"));
}

TEST_F(DecodeTest, SampleTrack) {
  Message m = Ok(kSampleTrack);
  EXPECT_EQ(m.type, MessageType::kTrack);
  EXPECT_EQ(m.user_id, "u176810");
  EXPECT_EQ(m.message_id, "m555");
  EXPECT_EQ(m.event, "Order Completed");
  EXPECT_EQ(m.timestamp, kT0 + 3 * kMinute + 3 * kSecond);
  EXPECT_TRUE(m.traits.empty());
  ASSERT_EQ(m.properties.size(), 4u);
  EXPECT_EQ(*Find(m.properties, "order_id"), Value::String("o555"));
  EXPECT_EQ(*Find(m.properties, "total"), Value::Number(20.97));
  EXPECT_EQ(*Find(m.properties, "currency"), Value::String("EUR"));
}

TEST_F(DecodeTest, Page) {
  Message m = Ok(R"({"type":"page","anonymousId":"a-1","name":"Pricing",)"
                 R"("properties":{"path":"/pricing"},"timestamp":"2026-08-03T00:00:00Z"})");
  EXPECT_EQ(m.type, MessageType::kPage);
  EXPECT_EQ(m.anonymous_id, "a-1");
  EXPECT_EQ(m.ProfileKey(), "a-1");
  EXPECT_EQ(m.name, "Pricing");
  EXPECT_EQ(m.event, "");
  EXPECT_EQ(*Find(m.properties, "path"), Value::String("/pricing"));
}

TEST_F(DecodeTest, ScreenWithoutName) {
  Message m = Ok(R"({"type":"screen","userId":"u1","timestamp":"2026-08-03"})");
  EXPECT_EQ(m.type, MessageType::kScreen);
  EXPECT_EQ(m.name, "");
  EXPECT_EQ(m.timestamp, kT0);
}

TEST_F(DecodeTest, Group) {
  Message m =
      Ok(R"({"type":"group","userId":"u3","groupId":"a1754","traits":{"industry":)"
         R"("Healthcare","employees":5,"arr":4548.41},"timestamp":"2026-08-03T00:00:00Z"})");
  EXPECT_EQ(m.type, MessageType::kGroup);
  EXPECT_EQ(m.group_id, "a1754");
  ASSERT_EQ(m.traits.size(), 3u);
  EXPECT_EQ(*Find(m.traits, "arr"), Value::Number(4548.41));
}

TEST_F(DecodeTest, Alias) {
  Message m =
      Ok(R"({"type":"alias","userId":"u1","previousId":"anon-7","timestamp":"2026-08-03"})");
  EXPECT_EQ(m.type, MessageType::kAlias);
  EXPECT_EQ(m.previous_id, "anon-7");
}

TEST_F(DecodeTest, ContextGroupId) {
  Message m = Ok(R"({"type":"track","userId":"u1","event":"E","context":{"ip":"1.2.3.4",)"
                 R"("groupId":"a9","library":{"name":"x"}},"timestamp":"2026-08-03"})");
  EXPECT_EQ(m.group_id, "a9");
  // The group call's own groupId wins over context.groupId, in either order.
  m = Ok(R"({"context":{"groupId":"a9"},"type":"group","userId":"u1","groupId":"a1"})");
  EXPECT_EQ(m.group_id, "a1");
  m = Ok(R"({"type":"group","userId":"u1","groupId":"a1","context":{"groupId":"a9"}})");
  EXPECT_EQ(m.group_id, "a1");
}

TEST_F(DecodeTest, ContextTraitsForIdentify) {
  Message m = Ok(R"({"type":"identify","userId":"u1","context":{"traits":{"plan":"pro"}}})");
  ASSERT_EQ(m.traits.size(), 1u);
  EXPECT_EQ(m.traits[0].path, "plan");
  EXPECT_EQ(m.traits[0].value, Value::String("pro"));
  // Top-level traits win, wherever they appear.
  m = Ok(R"({"context":{"traits":{"plan":"pro"}},"type":"identify","userId":"u1",)"
         R"("traits":{"age":3}})");
  ASSERT_EQ(m.traits.size(), 1u);
  EXPECT_EQ(m.traits[0].path, "age");
  m = Ok(R"({"type":"identify","traits":{"age":3},"userId":"u1",)"
         R"("context":{"traits":{"plan":"pro"}}})");
  ASSERT_EQ(m.traits.size(), 1u);
  EXPECT_EQ(m.traits[0].path, "age");
  // Not for a track call.
  m = Ok(R"({"type":"track","event":"E","userId":"u1","context":{"traits":{"plan":"pro"}}})");
  EXPECT_TRUE(m.traits.empty());
}

TEST_F(DecodeTest, PropertiesAndTraitsOnlyWhereTheyBelong) {
  Message m = Ok(R"({"type":"identify","userId":"u1","properties":{"a":1},"traits":{"b":2}})");
  EXPECT_TRUE(m.properties.empty());
  EXPECT_EQ(m.traits.size(), 1u);
  m = Ok(R"({"type":"track","event":"E","userId":"u1","properties":{"a":1},"traits":{"b":2}})");
  EXPECT_EQ(m.properties.size(), 1u);
  EXPECT_TRUE(m.traits.empty());
}

TEST_F(DecodeTest, FieldOrderDoesNotMatter) {
  Message a = Ok(kSampleTrack);
  Message b = Ok(R"({"timestamp":"2026-08-03T00:03:03Z","properties":{"order_id":"o555",)"
                 R"("total":20.97,"category":"apparel","currency":"EUR"},"unknown":[1,{"x":2}],)"
                 R"("event":"Order Completed","userId":"u176810","messageId":"m555",)"
                 R"("type":"track"})");
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.user_id, b.user_id);
  EXPECT_EQ(a.event, b.event);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.timestamp, b.timestamp);
  ASSERT_EQ(a.properties.size(), b.properties.size());
  for (size_t i = 0; i < a.properties.size(); ++i) {
    EXPECT_EQ(a.properties[i].path, b.properties[i].path);
    EXPECT_EQ(a.properties[i].value, b.properties[i].value);
  }
}

TEST_F(DecodeTest, Flattening) {
  Message m = Ok(R"({"type":"identify","userId":"u1","traits":{"name":"Ann",)"
                 R"("address":{"city":"Paris","geo":{"lat":48.85,"ok":true}},"empty":{},)"
                 R"("nothing":null,"flag":false,"esc":"a\"b\\c\u00e9\n"}})");
  ASSERT_EQ(m.traits.size(), 7u) << "the empty object contributes nothing";
  EXPECT_EQ(*Find(m.traits, "name"), Value::String("Ann"));
  EXPECT_EQ(*Find(m.traits, "address.city"), Value::String("Paris"));
  EXPECT_EQ(*Find(m.traits, "address.geo.lat"), Value::Number(48.85));
  EXPECT_EQ(*Find(m.traits, "address.geo.ok"), Value::Bool(true));
  EXPECT_EQ(*Find(m.traits, "nothing"), Value::Null());
  EXPECT_EQ(*Find(m.traits, "flag"), Value::Bool(false));
  EXPECT_EQ(*Find(m.traits, "esc"), Value::String("a\"b\\c\xc3\xa9\n"));
  EXPECT_EQ(Find(m.traits, "empty"), nullptr);
}

TEST_F(DecodeTest, EscapedKeysAndValues) {
  Message m = Ok(R"({"typ\u0065":"track","\u0075serId":"u\"1","event":"E\u00e9",)"
                 R"("properties":{"a\"b":{"c\\d":"x\/y"},"plain" : "v" , "sp":"  "}})");
  EXPECT_EQ(m.type, MessageType::kTrack);
  EXPECT_EQ(m.user_id, "u\"1");
  EXPECT_EQ(m.event, "E\xc3\xa9");
  ASSERT_EQ(m.properties.size(), 3u);
  EXPECT_EQ(m.properties[0].path, "a\"b.c\\d");
  EXPECT_EQ(m.properties[0].value, Value::String("x/y"));
  EXPECT_EQ(*Find(m.properties, "plain"), Value::String("v"));
  EXPECT_EQ(*Find(m.properties, "sp"), Value::String("  "));
}

TEST_F(DecodeTest, Lists) {
  Message m = Ok(
      R"({"type":"track","event":"E","userId":"u1","properties":{)"
      R"("tags":["a", "b\"q", 1.50, -2e3, true, null, [], {}, [1,[2]], {"k":"v", "n":{"x":[0]}}],)"
      R"("empty":[], "ctl":["\u0001\t"], "big":[123456789012345678901234567890]}})");
  EXPECT_EQ(
      *Find(m.properties, "tags"),
      Value::List(R"(["a","b\"q",1.50,-2e3,true,null,[],{},[1,[2]],{"k":"v","n":{"x":[0]}}])"));
  EXPECT_EQ(*Find(m.properties, "empty"), Value::List("[]"));
  EXPECT_EQ(*Find(m.properties, "ctl"), Value::List(R"(["\u0001\t"])"));
  EXPECT_EQ(*Find(m.properties, "big"), Value::List("[123456789012345678901234567890]"));
}

TEST_F(DecodeTest, DuplicatePathsKeepTheLaterValue) {
  Message m = Ok(R"({"type":"track","event":"E","userId":"u1","properties":{"a":1,"b":2,"a":3,)"
                 R"("c.d":4,"c":{"d":5}}})");
  ASSERT_EQ(m.properties.size(), 3u);
  EXPECT_EQ(m.properties[0].path, "a");
  EXPECT_EQ(m.properties[0].value, Value::Number(3));
  EXPECT_EQ(*Find(m.properties, "c.d"), Value::Number(5));
}

TEST_F(DecodeTest, DuplicatePathsInALargeObject) {
  // Past the linear-scan threshold, duplicates are found through the hash index.
  std::string json = R"({"type":"track","event":"E","userId":"u1","properties":{)";
  for (int i = 0; i < 200; ++i) json += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  for (int i = 0; i < 200; i += 7) json += "\"k" + std::to_string(i) + "\":-1,";
  json += R"("last":true}})";
  Message m = Ok(json);
  ASSERT_EQ(m.properties.size(), 201u);
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(m.properties[i].path, "k" + std::to_string(i));
    EXPECT_EQ(m.properties[i].value, Value::Number(i % 7 == 0 ? -1 : i));
  }
}

TEST_F(DecodeTest, DepthLimit) {
  auto nested = [](int levels) {  // properties plus `levels - 1` objects inside it
    std::string s = R"({"type":"track","event":"E","userId":"u1","properties":)";
    for (int i = 0; i < levels - 1; ++i) s += "{\"a\":";
    s += "{\"x\":1}";
    for (int i = 0; i < levels - 1; ++i) s += "}";
    return s + "}";
  };
  Message m = Ok(nested(32));
  ASSERT_EQ(m.properties.size(), 1u);
  EXPECT_EQ(m.properties[0].path.size(), 31 * 2 + 1u);
  std::string err = Err(nested(33));
  EXPECT_THAT(err, StartsWith("field 'properties.a.a.a."));
  EXPECT_THAT(err, HasSubstr("': nested deeper than 32 levels"));
  // Arrays count as levels too.
  std::string deep_list = R"({"type":"track","event":"E","userId":"u1","properties":{"l":)" +
                          std::string(40, '[') + std::string(40, ']') + "}}";
  EXPECT_EQ(Err(deep_list), "field 'properties.l': nested deeper than 32 levels");
  // Very deep input is rejected, not recursed into.
  std::string very_deep = R"({"type":"track","event":"E","userId":"u1","properties":)" +
                          std::string(10000, '[') + std::string(10000, ']') + "}";
  EXPECT_THAT(Err(very_deep), HasSubstr("field 'properties"));
  // Deep unknown fields are skipped without recursion.
  std::string skipped = R"({"type":"track","event":"E","userId":"u1","x":)" +
                        std::string(10000, '[') + std::string(10000, ']') + "}";
  EXPECT_TRUE(Run(skipped).ok());
}

TEST_F(DecodeTest, NumbersAsIds) {
  Message m = Ok(R"({"type":"group","userId":42,"anonymousId":-7,"groupId":12345678901234567890,)"
                 R"("messageId":1.5})");
  EXPECT_EQ(m.user_id, "42");
  EXPECT_EQ(m.anonymous_id, "-7");
  EXPECT_EQ(m.group_id, "12345678901234567890");
  EXPECT_EQ(m.message_id, "1.5");
  m = Ok(R"({"type":"alias","userId":"u","previousId":7 })");
  EXPECT_EQ(m.previous_id, "7");
}

TEST_F(DecodeTest, NullIsAbsent) {
  Message m = Ok(R"({"type":"track","event":"E","userId":null,"anonymousId":"x",)"
                 R"("properties":null,"context":null,"messageId":null})");
  EXPECT_EQ(m.user_id, "");
  EXPECT_EQ(m.anonymous_id, "x");
}

TEST_F(DecodeTest, DefaultType) {
  DecodeOptions opts;
  opts.default_type = "track";
  Message m = Ok(R"({"userId":"u1","event":"E"})", opts);
  EXPECT_EQ(m.type, MessageType::kTrack);
  m = Ok(R"({"type":"identify","userId":"u1"})", opts);
  EXPECT_EQ(m.type, MessageType::kIdentify);
}

TEST_F(DecodeTest, MissingTimestamp) {
  DecodeOptions opts;
  opts.now = 5000;
  Message m = Ok(R"({"type":"identify","userId":"u1"})", opts);
  EXPECT_EQ(m.timestamp, 5000);
  EXPECT_EQ(m.received_at, 0);
  opts.received_at = 7000;
  m = Ok(R"({"type":"identify","userId":"u1"})", opts);
  EXPECT_EQ(m.timestamp, 7000);
  EXPECT_EQ(m.received_at, 7000);
  // originalTimestamp stands in for timestamp.
  m = Ok(R"({"type":"identify","userId":"u1","originalTimestamp":"2026-08-03"})", opts);
  EXPECT_EQ(m.timestamp, kT0);
  m = Ok(R"({"type":"identify","userId":"u1","originalTimestamp":"2026-08-03",)"
         R"("timestamp":"2026-08-04"})",
         opts);
  EXPECT_EQ(m.timestamp, kT0 + kDay);
  // sentAt without a timestamp does not move received_at.
  m = Ok(R"({"type":"identify","userId":"u1","sentAt":"2026-08-03"})", opts);
  EXPECT_EQ(m.timestamp, 7000);
}

TEST_F(DecodeTest, SentAtSkewCorrection) {
  // The client's clock is 10 minutes fast: it stamped the event at 00:10 and sent it at 00:15;
  // the server received it at 00:05:30. The event happened 5 minutes before receipt.
  DecodeOptions opts;
  opts.received_at = kT0 + 5 * kMinute + 30 * kSecond;
  std::string_view json = R"({"type":"track","event":"E","userId":"u1",)"
                          R"("timestamp":"2026-08-03T00:10:00Z","sentAt":"2026-08-03T00:15:00Z"})";
  Message m = Ok(json, opts);
  EXPECT_EQ(m.timestamp, kT0 + 30 * kSecond);
  EXPECT_EQ(m.received_at, opts.received_at);
  // Without received_at there is nothing to correct against.
  opts.received_at = 0;
  m = Ok(json, opts);
  EXPECT_EQ(m.timestamp, kT0 + 10 * kMinute);
  // Extreme received_at saturates instead of overflowing.
  opts.received_at = INT64_MAX;
  m = Ok(R"({"type":"track","event":"E","userId":"u1",)"
         R"("timestamp":"9999-12-31","sentAt":"0000-01-01"})",
         opts);
  EXPECT_EQ(m.timestamp, kMaxTime);
}

TEST_F(DecodeTest, ErrorMessages) {
  EXPECT_EQ(Err(R"({"userId":"u1"})"), "field 'type': required");
  EXPECT_EQ(Err(R"({"type":"jump","userId":"u1"})"),
            R"(field 'type': unknown message type "jump")");
  EXPECT_EQ(Err(R"({"type":"tr\"ack","userId":"u1"})"),
            R"(field 'type': unknown message type "tr\"ack")");
  EXPECT_EQ(Err(R"({"type":7,"userId":"u1"})"), "field 'type': expected a string");
  DecodeOptions bad_default;
  bad_default.default_type = "nope";
  EXPECT_EQ(Err(R"({"userId":"u1"})", bad_default), R"(field 'type': unknown message type "nope")");
  EXPECT_EQ(Err(R"({"type":"track","event":"E"})"),
            "field 'userId': a userId or anonymousId is required");
  EXPECT_EQ(Err(R"({"type":"track","event":"E","userId":"","anonymousId":""})"),
            "field 'userId': a userId or anonymousId is required");
  EXPECT_EQ(Err(R"({"type":"track","event":"E","userId":true})"),
            "field 'userId': expected a string or number");
  EXPECT_EQ(Err(R"({"type":"track","event":"E","anonymousId":{}})"),
            "field 'anonymousId': expected a string or number");
  EXPECT_EQ(Err(R"({"type":"track","userId":"u1"})"), "field 'event': required for a track call");
  EXPECT_EQ(Err(R"({"type":"track","userId":"u1","event":""})"),
            "field 'event': required for a track call");
  EXPECT_EQ(Err(R"({"type":"track","userId":"u1","event":3})"), "field 'event': expected a string");
  EXPECT_EQ(Err(R"({"type":"page","userId":"u1","name":[]})"), "field 'name': expected a string");
  EXPECT_EQ(Err(R"({"type":"group","userId":"u1"})"), "field 'groupId': required for a group call");
  EXPECT_EQ(Err(R"({"type":"alias","userId":"u1"})"),
            "field 'previousId': required for an alias call");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","messageId":false})"),
            "field 'messageId': expected a string or number");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","timestamp":"yesterday"})"),
            R"(field 'timestamp': not an ISO 8601 time: "yesterday")");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","timestamp":1785715200})"),
            "field 'timestamp': expected a string");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","originalTimestamp":"2026-13-01"})"),
            R"(field 'originalTimestamp': not an ISO 8601 time: "2026-13-01")");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","sentAt":"soon"})"),
            R"(field 'sentAt': not an ISO 8601 time: "soon")");
  EXPECT_EQ(Err(R"({"type":"track","event":"E","userId":"u1","properties":[1]})"),
            "field 'properties': expected an object");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","traits":"x"})"),
            "field 'traits': expected an object");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","context":{"traits":1}})"),
            "field 'context.traits': expected an object");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","context":1})"),
            "field 'context': expected an object");
  EXPECT_EQ(Err(R"({"type":"identify","userId":"u1","context":{"groupId":[]}})"),
            "field 'context.groupId': expected a string or number");
  // A long bad value is quoted only in part.
  std::string long_ts(200, 'x');
  std::string err = Err(R"({"type":"identify","userId":"u1","timestamp":")" + long_ts + "\"}");
  EXPECT_EQ(err, "field 'timestamp': not an ISO 8601 time: \"" + std::string(64, 'x') + "...\"");
}

TEST_F(DecodeTest, InvalidJson) {
  EXPECT_THAT(Err(""), StartsWith("invalid JSON: "));
  EXPECT_EQ(Err("[1,2]"), "invalid JSON at column 1: expected an object");
  EXPECT_EQ(Err("\"str\""), "invalid JSON at column 1: expected an object");
  EXPECT_EQ(Err("42"), "invalid JSON at column 1: expected an object");
  EXPECT_THAT(Err(R"({"type":"track")"), StartsWith("invalid JSON"));
  EXPECT_THAT(Err(R"({"type":"track",)"), StartsWith("invalid JSON"));
  EXPECT_THAT(Err(R"({"type" "track"})"), StartsWith("invalid JSON at column "));
  // simdjson checks that the last structural character closes the root object before it reads it.
  EXPECT_THAT(Err(R"({"type":"track"} x)"), StartsWith("invalid JSON at column 1: "));
  EXPECT_THAT(Err(R"({"type":"track"}{})"), StartsWith("invalid JSON at column 17: "));
  EXPECT_THAT(Err(R"({"type":"track","userId":"u1","event":"E","properties":{"a":tru}})"),
              StartsWith("invalid JSON"));
  EXPECT_THAT(Err(R"({"type":"track","userId":"u1","event":"E","properties":{"a":1.2.3}})"),
              StartsWith("invalid JSON"));
  std::string err = Err(R"({"type":"track","userId":"u1","event":"E","properties":{"a":{"b":-}}})");
  EXPECT_THAT(err, StartsWith("invalid JSON at column "));
  EXPECT_THAT(err, HasSubstr("field 'properties.a.b'"));
  // Invalid UTF-8 and unterminated strings fail in the first pass: no column.
  EXPECT_THAT(Err("{\"type\":\"tr\xff\xfe\"}"), StartsWith("invalid JSON: "));
  EXPECT_THAT(Err("{\"type\":\"track"), StartsWith("invalid JSON: "));
  // Raw control characters inside strings are rejected by stage 1 too.
  EXPECT_THAT(Err("{\"type\":\"identify\",\"userId\":\"u\x01\"}"), StartsWith("invalid JSON: "));
  // Bad escapes.
  EXPECT_THAT(Err(R"({"type":"tr\qck","userId":"u1"})"), StartsWith("invalid JSON"));
  EXPECT_THAT(Err(R"({"type":"track","userId":"u1","event":"E","properties":{"s":"\ud800"}})"),
              StartsWith("invalid JSON"));
}

TEST_F(DecodeTest, SizeLimit) {
  std::string pad(kMaxMessageBytes, ' ');
  std::string json = R"({"type":"identify","userId":"u1"})";
  std::string at_limit = json + pad.substr(json.size());
  ASSERT_EQ(at_limit.size(), kMaxMessageBytes);
  EXPECT_TRUE(Run(at_limit).ok());
  std::string over = at_limit + " ";
  EXPECT_EQ(Err(over), "message is 32769 bytes, over the 32 KB limit");
}

TEST_F(DecodeTest, InPlaceAndCopiedGiveTheSameResult) {
  std::vector<std::string> lines = {
      std::string(kSampleIdentify),
      std::string(kSampleTrack),
      R"({"type":"page","userId":"u1","name":"P","properties":{"l":[1,"x",{"a":[]}],"o":{"p":null}}})",
      R"({"type":"identify","userId":"u1","traits":{"a":1},"junk"})",
      R"({"type":"identify","userId":"u1"} trailing)",
  };
  for (const std::string& line : lines) {
    Message copied, in_place;
    Decoder d1, d2;
    Status s1 = d1.Decode(line.data(), line.size(), line.size(), {}, &copied);
    std::string padded = line + std::string(kPadding, '\0');
    Status s2 = d2.Decode(padded.data(), line.size(), padded.size(), {}, &in_place);
    ASSERT_EQ(s1.ok(), s2.ok()) << line;
    EXPECT_EQ(s1.message(), s2.message()) << line;
    if (!s1.ok()) continue;
    EXPECT_EQ(copied.user_id, in_place.user_id);
    EXPECT_EQ(copied.event, in_place.event);
    EXPECT_EQ(copied.timestamp, in_place.timestamp);
    ASSERT_EQ(copied.properties.size(), in_place.properties.size());
    for (size_t i = 0; i < copied.properties.size(); ++i) {
      EXPECT_EQ(copied.properties[i].path, in_place.properties[i].path);
      EXPECT_EQ(copied.properties[i].value, in_place.properties[i].value);
    }
    ASSERT_EQ(copied.traits.size(), in_place.traits.size());
    for (size_t i = 0; i < copied.traits.size(); ++i) {
      EXPECT_EQ(copied.traits[i].path, in_place.traits[i].path);
      EXPECT_EQ(copied.traits[i].value, in_place.traits[i].value);
    }
  }
}

TEST_F(DecodeTest, InPlaceWithNextLineAsPadding) {
  // Parsing lines in place inside one NDJSON buffer: the bytes after a line are the next line.
  std::string buf = std::string(kSampleTrack) + "\n" + std::string(kSampleIdentify) + "\n" +
                    std::string(kPadding, '1');
  Message m;
  ASSERT_TRUE(decoder_.Decode(buf.data(), kSampleTrack.size(), buf.size(), {}, &m).ok());
  EXPECT_EQ(m.event, "Order Completed");
  const char* second = buf.data() + kSampleTrack.size() + 1;
  ASSERT_TRUE(
      decoder_.Decode(second, kSampleIdentify.size(), buf.size() - kSampleTrack.size() - 1, {}, &m)
          .ok());
  EXPECT_EQ(m.type, MessageType::kIdentify);
  EXPECT_EQ(m.traits.size(), 7u);
}

TEST_F(DecodeTest, ReuseAcrossMessages) {
  // One Decoder and one Message through messages of different shapes: nothing leaks from one
  // message into the next.
  Decoder d;
  Message m;
  DecodeOptions opts;
  opts.now = 1;
  ASSERT_TRUE(d.Decode(kSampleIdentify, opts, &m).ok());
  EXPECT_EQ(m.traits.size(), 7u);
  ASSERT_TRUE(d.Decode(kSampleTrack, opts, &m).ok());
  EXPECT_TRUE(m.traits.empty());
  EXPECT_EQ(m.properties.size(), 4u);
  EXPECT_EQ(m.group_id, "");
  ASSERT_TRUE(
      d.Decode(R"({"type":"track","event":"X","anonymousId":"a","properties":{"total":"s"}})", opts,
               &m)
          .ok());
  EXPECT_EQ(m.user_id, "");
  EXPECT_EQ(m.message_id, "");
  EXPECT_EQ(m.timestamp, 1);
  ASSERT_EQ(m.properties.size(), 1u);
  EXPECT_EQ(m.properties[0].path, "total");
  EXPECT_EQ(m.properties[0].value, Value::String("s"));
  // An error in between does not disturb the next message.
  EXPECT_FALSE(
      d.Decode(R"({"type":"track","event":"X","userId":"u","properties":{"a":1,"b":[}})", opts, &m)
          .ok());
  ASSERT_TRUE(
      d.Decode(R"({"type":"identify","userId":"u9","context":{"traits":{"k":[1]}}})", opts, &m)
          .ok());
  EXPECT_TRUE(m.properties.empty());
  ASSERT_EQ(m.traits.size(), 1u);
  EXPECT_EQ(m.traits[0].value, Value::List("[1]"));
  ASSERT_TRUE(d.Decode(kSampleIdentify, opts, &m).ok());
  ASSERT_EQ(m.traits.size(), 7u);
  EXPECT_EQ(m.traits[6].path, "account_id");

  // Many messages in a row agree with a fresh Decoder on each.
  std::vector<std::string> lines;
  for (int i = 0; i < 300; ++i) {
    std::string s = R"({"type":")" + std::string(i % 3 == 0 ? "identify" : "track") +
                    R"(","userId":"u)" + std::to_string(i) + R"(","event":"E)" + std::to_string(i) +
                    R"(","properties":{)";
    std::string obj;
    for (int k = 0; k < i % 23; ++k) {
      if (k) obj += ",";
      obj += "\"p" + std::to_string(k * 7 % 5) + "_" + std::to_string(k) + "\":\"" +
             std::string(k * 3, 'v') + "\"";
    }
    s += obj + R"(},"traits":{)" + obj + R"(},"timestamp":"2026-08-03"})";
    lines.push_back(s);
  }
  for (const std::string& line : lines) {
    Message fresh;
    Decoder fd;
    ASSERT_TRUE(fd.Decode(line, opts, &fresh).ok());
    ASSERT_TRUE(d.Decode(line, opts, &m).ok());
    EXPECT_EQ(m.type, fresh.type);
    EXPECT_EQ(m.user_id, fresh.user_id);
    EXPECT_EQ(m.event, fresh.event);
    ASSERT_EQ(m.properties.size(), fresh.properties.size());
    ASSERT_EQ(m.traits.size(), fresh.traits.size());
    for (size_t k = 0; k < m.properties.size(); ++k) {
      EXPECT_EQ(m.properties[k].path, fresh.properties[k].path);
      EXPECT_EQ(m.properties[k].value, fresh.properties[k].value);
    }
    for (size_t k = 0; k < m.traits.size(); ++k) {
      EXPECT_EQ(m.traits[k].path, fresh.traits[k].path);
      EXPECT_EQ(m.traits[k].value, fresh.traits[k].value);
    }
  }
}

// The decoder reads common messages with a hand-written scanner and everything else with
// simdjson; both must give the same result (status, error text and message) on any input.
class FastPathTest : public DecodeTest {
 protected:
  struct Result {
    Status status;
    Message message;
  };
  static Result DecodeWith(bool fast, const std::string& line, bool in_place,
                           const DecodeOptions& opts) {
    internal::SetFastPathForTesting(fast);
    Decoder d;
    Result r;
    std::string buf = line + std::string(kPadding, '1');
    r.status =
        d.Decode(buf.data(), line.size(), in_place ? buf.size() : line.size(), opts, &r.message);
    internal::SetFastPathForTesting(true);
    return r;
  }
  static void ExpectSamePaths(const std::string& line) {
    DecodeOptions opts;
    opts.received_at = 1790000000000;
    opts.default_type = line.size() % 2 ? "track" : "";
    for (bool in_place : {false, true}) {
      Result a = DecodeWith(true, line, in_place, opts);
      Result b = DecodeWith(false, line, in_place, opts);
      ASSERT_EQ(a.status.ok(), b.status.ok()) << line;
      ASSERT_EQ(a.status.message(), b.status.message()) << line;
      if (!a.status.ok()) continue;
      const Message& x = a.message;
      const Message& y = b.message;
      EXPECT_EQ(x.type, y.type) << line;
      EXPECT_EQ(x.user_id, y.user_id) << line;
      EXPECT_EQ(x.anonymous_id, y.anonymous_id) << line;
      EXPECT_EQ(x.event, y.event) << line;
      EXPECT_EQ(x.name, y.name) << line;
      EXPECT_EQ(x.message_id, y.message_id) << line;
      EXPECT_EQ(x.group_id, y.group_id) << line;
      EXPECT_EQ(x.previous_id, y.previous_id) << line;
      EXPECT_EQ(x.timestamp, y.timestamp) << line;
      EXPECT_EQ(x.received_at, y.received_at) << line;
      for (auto [fx, fy] : {std::pair{&x.properties, &y.properties}, {&x.traits, &y.traits}}) {
        ASSERT_EQ(fx->size(), fy->size()) << line;
        for (size_t i = 0; i < fx->size(); ++i) {
          EXPECT_EQ((*fx)[i].path, (*fy)[i].path) << line;
          EXPECT_EQ((*fx)[i].value.type, (*fy)[i].value.type) << line;
          EXPECT_EQ((*fx)[i].value, (*fy)[i].value) << line;
          if ((*fx)[i].value.type == ValueType::kNumber) {  // also the sign of zero
            EXPECT_EQ(std::signbit((*fx)[i].value.num), std::signbit((*fy)[i].value.num)) << line;
          }
        }
      }
    }
  }
};

TEST_F(FastPathTest, SameResultAsSimdjson) {
  const std::vector<std::string> lines = {
      std::string(kSampleIdentify),
      std::string(kSampleTrack),
      R"({})",
      R"( { } )",
      "\t{\r\n\"type\" : \"track\" ,\n\"userId\":\"u1\" , \"event\" :\"E\" }\n ",
      R"({"type":"track","userId":"u1","event":"E","properties":{}})",
      R"({"type":"track","userId":"u1","event":"E","properties":null})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":{"b":{"c":1}},"a.b":2,"":3}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":1,"a":"x","b":{},"b":{"c":null}}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":1},"properties":{"a":2,"b":3}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"l":[1,"x",{"a":[]}],"t":true,"f":false}})",
      R"({"type":"identify","userId":"u1","traits":{"a":1},"context":{"traits":{"b":2},"groupId":7}})",
      R"({"type":"identify","userId":"u1","context":{"traits":{"b":2},"ip":"1.2.3.4","x":[{}]}})",
      R"({"type":"identify","userId":"u1","context":null})",
      R"({"type":"page","userId":"u1","name":"P","properties":{"a":1}})",
      R"({"type":"group","userId":"u1","groupId":12,"traits":{"n":"x"}})",
      R"({"type":"alias","userId":"u1","previousId":-3.5e2})",
      R"({"type":"track","userId":"u1","userId":null,"event":"E"})",
      R"({"type":"track","userId":null,"anonymousId":"a","event":"E"})",
      R"({"type":"track","userId":"u1","event":"E","timestamp":"2026-08-03T00:00:00Z","sentAt":"2026-08-03T00:00:05Z"})",
      R"({"type":"track","userId":"u1","event":"E","originalTimestamp":"2026-08-03T00:00:00.123+02:00"})",
      R"({"type":"track","userId":"u1","event":"E","timestamp":"2026-02-30T00:00:00Z"})",
      R"({"type":"track","userId":"u1","event":"E","writeKey":"k","integrations":{"All":true},"n":-0.0e-0})",
      // Numbers: at and beyond the exact fast conversion, and not numbers at all.
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":01}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":1.}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":.5}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":-}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":1e}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":1x}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":1e400}})",
      R"({"type":"track","userId":1e400,"event":"E"})",
      R"({"type":"track","userId":0.1,"event":"E"})",
      R"({"type":"track","userId":-0,"event":"E"})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":tru}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":truex}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":nul}})",
      R"({"type":"track","userId":"u1","event":"E","junk":tru})",
      R"({"type":"track","userId":"u1","event":"E","junk":[1,2})",
      R"({"type":"track","userId":"u1","event":"E","junk":{"a" 1}})",
      // Escapes, also in keys (one of ours spelled with an escape).
      R"({"typ\u0065":"track","userId":"u\"1","event":"E\\","properties":{"k\n":"v\u00e9"}})",
      R"({"type":"tr\qck","userId":"u1"})",
      // Bytes: valid and invalid UTF-8, control characters.
      "{\"type\":\"track\",\"userId\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"event\":"
      "\"\xef\xbf\xbf\"}",
      "{\"type\":\"track\",\"userId\":\"u\xc0\x80\",\"event\":\"E\"}",
      "{\"type\":\"track\",\"userId\":\"u\xed\xa0\x80\",\"event\":\"E\"}",
      "{\"type\":\"track\",\"userId\":\"u\xf4\x90\x80\x80\",\"event\":\"E\"}",
      "{\"type\":\"track\",\"userId\":\"u\xe2\x82\",\"event\":\"E\"}",
      "{\"type\":\"track\",\"userId\":\"u\x7f\",\"event\":\"E\"}",
      "{\"type\":\"track\",\"userId\":\"u\x1f\",\"event\":\"E\"}",
      "{\"type\":\"track\",\"userId\":\"u1\",\"event\":\"E\"}\x00",
      "\xef\xbb\xbf{\"type\":\"track\",\"userId\":\"u1\",\"event\":\"E\"}",
      // Structure.
      R"({"type":"track","userId":"u1","event":"E"} x)",
      R"({"type":"track","userId":"u1","event":"E"}{})",
      R"({"type":"track","userId":"u1","event":"E",})",
      R"({"type":"track","userId":"u1","event":"E")",
      R"({"type":"track","userId":"u1","event":"E)",
      R"({"type":"track","userId":"u1","event")",
      R"({"type":"track","userId":"u1","event":})",
      R"([{"type":"track"}])",
      R"("str")",
      "",
      " ",
      "{",
      "}",
      "{\"",
  };
  for (const std::string& line : lines) ExpectSamePaths(line);

  // Numbers, one a message (one the fast path leaves to simdjson sends the whole message there):
  // at and beyond the exact fast conversion.
  for (const char* n : {"-0",
                        "0",
                        "0.1",
                        "-0.0",
                        "1e22",
                        "1e23",
                        "1E+2",
                        "1e-22",
                        "2.5e-23",
                        "9007199254740991",
                        "9007199254740992",
                        "9007199254740993",
                        "1234567890123456789",
                        "12345678901234567890",
                        "0.0000000000000000001",
                        "123456789012345678901234",
                        "1.7976931348623157e308",
                        "4.9e-324",
                        "4548.41",
                        "-82.37",
                        "1e0000000000000000000001",
                        "3.0e-0"}) {
    ExpectSamePaths(std::string(R"({"type":"track","userId":"u1","event":"E","properties":{"a":)") +
                    n + "}}");
    ExpectSamePaths(std::string(R"({"type":"track","event":"E","userId":)") + n + "}");
  }

  // Deep nesting: within and beyond the fast path's and the decoder's limits.
  for (int depth : {14, 15, 16, 17, 31, 32, 33}) {
    std::string nested = R"({"type":"track","userId":"u1","event":"E","properties":)";
    for (int i = 0; i < depth; ++i) nested += "{\"k\":";
    nested += "1";
    for (int i = 0; i < depth; ++i) nested += "}";
    nested += "}";
    ExpectSamePaths(nested);
    std::string skipped = R"({"type":"track","userId":"u1","event":"E","x":)";
    for (int i = 0; i < depth; ++i) skipped += "[";
    for (int i = 0; i < depth; ++i) skipped += "]";
    skipped += "}";
    ExpectSamePaths(skipped);
  }
}

TEST_F(FastPathTest, SameResultOnMutatedMessages) {
  // Random byte edits of valid messages: most become invalid or unusual in some way.
  const std::vector<std::string> seeds = {
      std::string(kSampleIdentify), std::string(kSampleTrack),
      R"({"type":"group","userId":"u3","groupId":"a1754","traits":{"industry":"Health",)"
      R"("employees":5,"arr":4548.41,"n":null,"b":true,"o":{"x":[1]}},"sentAt":"2026-08-03T00:00:01Z"})",
      R"({"type":"identify","anonymousId":12,"context":{"traits":{"a":"b"},"groupId":"g"}})"};
  const std::string alphabet = "{}[]:,\"\\ 0123456789.eE+-tfnrulsaxZT\x01\x80\xc3\xa9";
  std::mt19937 rng(12345);
  for (int round = 0; round < 4000; ++round) {
    std::string line = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !line.empty(); ++e) {
      const size_t at = rng() % line.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          line[at] = c;
          break;
        case 1:
          line.insert(line.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          line.erase(at, 1);
          break;
      }
    }
    ExpectSamePaths(line);
    if (HasFailure()) break;
  }
}

// The top-level members the fast path reads by one compare of the key with its `":"` (and the
// comma with the next key's quote): near misses, other spacing and cut-off input must read as
// simdjson reads them.
TEST_F(FastPathTest, CompactMembersAndNearMisses) {
  const std::vector<std::string> lines = {
      R"({"type":"track","userId":"u1","event":"E"})",
      R"({"type" :"track","userId": "u1" ,"event":"E" })",
      R"({"type":"track", "userId":"u1",	"event":"E"})",
      R"({"types":"x","type":"track","userId":"u1","event":"E"})",
      R"({"typ":"x","type":"track","userId":"u1","event":"E"})",
      R"({"type":"track","userIds":"x","userId":"u1","event":"E"})",
      R"({"type":"track","userId":"u1","event":"E","timestamps":"2026-08-03T00:00:05Z"})",
      R"({"type":"track","userId":"u1","event":"E","timestam":"2026-08-03T00:00:05Z"})",
      R"({"type":"track","userId":"u1","event":"E","originalTimestamp":"2026-08-03T00:00:05Z"})",
      R"({"type":"track","userId":"u1","event":"E","originalTimestampX":"2026-08-03T00:00:05Z"})",
      R"({"type":"track","userId":"u1","event":"E","originalTimestam":"x"})",
      R"({"type":"track","userId":"u1","event":"E","sentAt":"2026-08-03T00:00:05Z"})",
      R"({"type":"track","anonymousId":"a1","event":"E","messageId":"m1"})",
      R"({"type":"page","userId":"u1","name":"Home"})",
      R"({"type":"group","userId":"u1","groupId":"g1"})",
      R"({"type":"alias","userId":"u1","previousId":"p1"})",
      R"({"type":"track","userId":12,"event":"E","messageId":3.5})",
      R"({"type":"track","userId":null,"anonymousId":"a","event":"E"})",
      R"({"type":"track","userId":"u"1","event":"E\n","messageId":"é"})",
      R"({"type":"track","userId":"u1","event":"E",})",
      R"({"type":"track","userId":"u1","event":"E","})",
      R"({"type":"track","userId":"u1","event":"E",")",
      R"({"type":"track","userId":"u1","event":"E",)",
      R"({"type":"track","userId":"u1","event":"E")",
      R"({"type":"track","userId":"u1","event":")",
      R"({"type":"track","userId":"u1","event":)",
      R"({"type":"track","userId":"u1","event)",
      R"({"type":")",
      R"({"type")",
      R"({"originalTimestamp":")",
      R"({"originalTimestamp")",
      R"({"type":"track","userId":"u1","event":"E","properties":{"path":"/"},"properties":{"x":1}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"path" :"/","b" : 2 , "c":3}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"path":"/",}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"path":"/","})",
      R"({"type":"track","userId":"u1","event":"E","properties":{")",
      R"({"type":"track","userId":"u1","event":"E","properties":{)",
      R"({"type":"track","userId":"u1","event":"E","properties":)",
      R"({"type":"track","userId":"u1","event":"E","properties)",
      R"({"type":"track","userId":"u1","event":"E","propertiesX":{"a":1},"properties":{"b":2}})",
      R"({"type":"track","userId":"u1","event":"E","propertie":{"a":1}})",
      R"({"type":"track","userId":"u1","event":"E","properties":[1]})",
      R"({"type":"track","userId":"u1","event":"E","properties":null})",
      R"({"type":"track","userId":"u1","event":"E","properties":{}})",
      R"({"type":"track","userId":"u1","event":"E","properties" :{"a":1}})",
      R"({"type":"track","userId":"u1","event":"E","properties": {"a":1}})",
      R"({"type":"identify","userId":"u1","properties":{"a":1},"traits":{"b":2}})",
  };
  for (const std::string& line : lines) ExpectSamePaths(line);
}

// Every prefix of valid messages, parsed in place with the rest of the message as its padding:
// the bytes after the end are exactly what would complete it, so a check of the end that is
// missing or off by one in the fast path reads on and gives another result than simdjson does on
// the same buffer. (simdjson's own error text for a cut message can depend on the padding, so the
// fast path is compared with it on the same bytes.)
TEST_F(FastPathTest, CutMessagesDoNotReadOnIntoThePadding) {
  const std::vector<std::string> messages = {
      std::string(kSampleTrack), std::string(kSampleIdentify),
      R"({"type":"track","messageId":"m2","userId":"u6853","event":"Login",)"
      R"("properties":{"method":"magic_link"},"timestamp":"2026-08-03T00:00:04Z"})",
      R"({"type":"page","anonymousId":"a1","name":"Home","originalTimestamp":)"
      R"("2026-08-03T00:00:04Z","sentAt":"2026-08-03T00:00:05Z","context":{"groupId":"g"}})",
      R"({"type":"alias","userId":"u1","previousId":"p1","properties":{"a_long_property_key_x":1}})"};
  DecodeOptions opts;
  opts.received_at = 1790000000000;
  for (const std::string& full : messages) {
    const std::string buf = full + std::string(kPadding, '"');
    for (size_t len = 0; len <= full.size(); ++len) {
      Message m[2];
      Status st[2];
      for (bool fast : {true, false}) {
        internal::SetFastPathForTesting(fast);
        Decoder d;
        st[fast] = d.Decode(buf.data(), len, buf.size(), opts, &m[fast]);
      }
      internal::SetFastPathForTesting(true);
      ASSERT_EQ(st[1].ok(), st[0].ok()) << full.substr(0, len);
      ASSERT_EQ(st[1].message(), st[0].message()) << full.substr(0, len);
      if (st[1].ok()) {
        EXPECT_EQ(m[1].user_id, m[0].user_id);
        EXPECT_EQ(m[1].event, m[0].event);
        EXPECT_EQ(m[1].timestamp, m[0].timestamp);
        EXPECT_EQ(m[1].properties.size(), m[0].properties.size());
      }
    }
  }
}

// One Decoder reads a stream, so the state it keeps between messages (the minute of the last time,
// strings and fields reused in place) must never change a result: each message of a sequence
// decodes as it does with a fresh Decoder.
TEST_F(FastPathTest, StreamDecodesAsFreshDecoders) {
  auto track = [](std::string_view member, std::string_view time) {
    return std::string(R"({"type":"track","userId":"u1","event":"E",")") + std::string(member) +
           R"(":")" + std::string(time) + R"("})";
  };
  std::vector<std::string> lines;
  for (std::string_view t :
       {"2026-08-03T00:00:04Z",     "2026-08-03T00:00:05Z",      "2026-08-03T00:00:59Z",
        "2026-08-03T00:00:60Z",  // a leap second: clamped by ParseTime, not in the cached minute
        "2026-08-03T00:00:61Z",     "2026-08-03T00:00:6Z",       "2026-08-03T00:00:5aZ",
        "2026-08-03T00:00:05z",     "2026-08-03T00:00:05+",      "2026-08-03T00:00:05.1Z",
        "2026-08-03T00:00:05.123Z", "2026-08-03T00:00:05+02:00", "2026-08-03t00:00:05Z",
        "2026-08-03 00:00:05Z",     "2026-08-03T00:00:05",       "2026-08-03T00:00",
        "2026-08-03T00:00:00Z",     "2026-08-03T00:01:00Z",      "2026-08-03T00:00:07Z",
        "2026-02-29T00:00:07Z",     "2024-02-29T23:59:59Z",      "2024-02-29T23:59:58Z",
        "0000-01-01T00:00:00Z",     "9999-12-31T23:59:59Z",      "2026-08-03T24:00:00Z",
        "2026-13-03T00:00:00Z"}) {
    lines.push_back(track("timestamp", t));
    lines.push_back(track("originalTimestamp", t));
    lines.push_back(track("sentAt", t));
  }
  // Strings and fields that grow, shrink and repeat from one message to the next; properties of
  // more kinds than the decoder keeps vectors for, some with the same first key, first keys of 16
  // to 32 bytes (kept vectors are found by first keys of up to 31), some alike in their first 16
  // bytes, an empty one, duplicates.
  for (std::string_view props : {R"({"path":"/search"})",
                                 R"({"product_id":"p1015","category":"shoes","price":18.69})",
                                 R"({"path":"/"})",
                                 R"({"path":"/checkout/payment/confirmation"})",
                                 R"({"path":""})",
                                 R"({"method":"magic_link"})",
                                 R"({"method":"magic_link"})",
                                 R"({})",
                                 R"({"a":"0123456789abcdef","b":"0123456789abcdefg"})",
                                 R"({"a":"0123456789abcdeg","b":"0123456789abcdef"})",
                                 R"({"a":1,"a":"x","a":null})",
                                 R"({"a":{"b":1,"c":[1,2]},"a.b":2})",
                                 R"({"campaign_id":"c1"})",
                                 R"({"":1,"x":2})",
                                 R"({"a_property_name_longer_than_16":true,"b":false})",
                                 R"({"a_property_name_longer_than_16":1})",
                                 R"({"exactly_16_bytes":"v","x":1})",
                                 R"({"a_property_name_longer_than_1X":"w","b":2})",
                                 R"({"exactly_16_bytes":2})",
                                 R"({"a_property_name_longer_than_16x":[1]})",
                                 R"({"a_property_name_longer_than_16xy":null,"c":"d"})",
                                 R"({"a_property_name_longer_than_16":"again"})",
                                 R"({"order_id":"o1","total":20.97})",
                                 R"({"p\u0061th":"/escaped"})",
                                 R"({"path":"/x","path":"/y"})",
                                 R"({"amount":1e400})"}) {
    for (std::string_view user : {"u1", "u12345", "u2", "", "u123456789012345678"}) {
      lines.push_back(std::string(R"({"type":"track","messageId":"m)") + std::string(user) +
                      R"(","userId":")" + std::string(user) +
                      R"(","anonymousId":"x","event":"Page Viewed","properties":)" +
                      std::string(props) + "}");
    }
  }
  DecodeOptions opts;
  opts.received_at = 1790000000000;
  for (bool fast : {true, false}) {
    internal::SetFastPathForTesting(fast);
    Decoder stream;
    Message two[2];  // written in turn, as the replay's lookahead does
    size_t i = 0;
    for (const std::string& line : lines) {
      Message& m = two[i++ % 2];
      Status st = stream.Decode(line, opts, &m);
      Decoder fresh;
      Message f;
      Status want = fresh.Decode(line, opts, &f);
      ASSERT_EQ(st.ok(), want.ok()) << line;
      ASSERT_EQ(st.message(), want.message()) << line;
      if (!st.ok()) continue;
      EXPECT_EQ(m.timestamp, f.timestamp) << line;
      EXPECT_EQ(m.user_id, f.user_id) << line;
      EXPECT_EQ(m.anonymous_id, f.anonymous_id) << line;
      EXPECT_EQ(m.message_id, f.message_id) << line;
      EXPECT_EQ(m.event, f.event) << line;
      ASSERT_EQ(m.properties.size(), f.properties.size()) << line;
      for (size_t i = 0; i < m.properties.size(); ++i) {
        EXPECT_EQ(m.properties[i].path, f.properties[i].path) << line;
        EXPECT_EQ(m.properties[i].value, f.properties[i].value) << line;
      }
    }
  }
  internal::SetFastPathForTesting(true);
}

// The common-order path takes the usual type words without a scan and a timestamp in the minute
// of the last one without ParseTime, keeping what it found for Decode: a stream that hits, nearly
// misses and overrides those (later duplicates, other orders) reads as fresh decoders and the
// simdjson path read each message.
TEST_F(FastPathTest, CommonOrderStreamWithNearMisses) {
  const std::string head =
      R"({"type":"track","messageId":"m1","userId":"u1","event":"E","properties":{"a":1},)";
  auto at = [&head](std::string_view time, std::string_view rest = "}") {
    return head + R"("timestamp":")" + std::string(time) + "\"" + std::string(rest);
  };
  const std::vector<std::string> lines = {
      at("2026-08-03T00:00:30Z"),
      at("2026-08-03T00:00:31Z"),
      at("2026-08-03T00:00:60Z"),
      at("2026-08-03T00:00:6Z"),
      at("2026-08-03T00:00:3xZ"),
      at("2026-08-03T00:00:x1Z"),
      at("2026-08-03T00:00:31z"),
      at("2026-08-03T00:00:32Z", R"(,"timestamp":"2026-08-03T00:01:00Z"})"),
      at("2026-08-03T00:00:33Z", R"(,"timestamp":null})"),
      at("2026-08-03T00:00:34Z", R"(,"originalTimestamp":"2026-08-03T00:00:01Z"})"),
      at("2026-08-03T00:00:35Z", R"(,"sentAt":"2026-08-03T00:00:36Z"})"),
      at("2026-08-03T00:00:31.5Z"),
      at("2026-08-03T00:00:37Z\\u0022"),
      at("2026-08-03T00:00:38Z", " }"),
      at("2026-08-03T00:00:39Z", ""),
      at("2026-08-03T00:00:40Z", "}x"),
      head + R"("timestamp":"2026-08-03T00:00:41Z)",
      head + R"("timestamp":"2026-08-03T00:00:4)",
      head + R"("timestamp" :"2026-08-03T00:00:42Z"})",
      R"({"type":"track","userId":"u1","event":"E","timestamp":"2026-08-03T00:00:43Z"})",
      R"({"type":"track","type":"identify","userId":"u1","event":"E"})",
      R"({"type":"identify","type":"track","userId":"u1","event":"E"})",
      R"({"type":"track","type":null,"userId":"u1","event":"E"})",
      R"({"type":"identify","userId":"u1","traits":{"a":1},"timestamp":"2026-08-03T00:00:44Z"})",
      R"({"type":"identify\",","userId":"u1"})",
      R"({"type":"tracks","userId":"u1","event":"E"})",
      R"({"type":"trac","userId":"u1","event":"E"})",
      R"({"type":"track"})",
      R"({"type":"track",)",
      R"({"type":"identify")",
      R"({"type":"identify" ,"userId":"u1"})",
      R"({"type":"track","userId":"u1","event":"E","groupId":"g","properties":{"a":1},)"
      R"("traits":{"b":2},"timestamp":"2026-08-03T00:00:45Z"})",
      R"({"type":"group","userId":"u1","groupId":"g","traits":{"b":2},)"
      R"("timestamp":"2026-08-03T00:00:46Z"})",
      R"({"type":"group","userId":"u1","groupId":"g","traits":{"b":2},"traits":{"b":3}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"a":1},"properties":{"b":2}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"n":12.5,"m":-0.25,"k":007}})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"n":12.})",
      R"({"type":"track","userId":"u1","event":"E","properties":{"n":1.5e3,"m":2E-2}})",
      at("2026-08-03T00:00:47Z"),
  };
  DecodeOptions opts;
  opts.received_at = 1790000000000;
  for (bool in_place : {false, true}) {
    Decoder stream;
    Message m;
    for (const std::string& line : lines) {
      std::string buf = line + std::string(kPadding, '1');
      Status st =
          stream.Decode(buf.data(), line.size(), in_place ? buf.size() : line.size(), opts, &m);
      for (bool fast : {true, false}) {
        Result want = DecodeWith(fast, line, in_place, opts);
        ASSERT_EQ(st.ok(), want.status.ok()) << line;
        ASSERT_EQ(st.message(), want.status.message()) << line;
        if (!st.ok()) continue;
        EXPECT_EQ(m.type, want.message.type) << line;
        EXPECT_EQ(m.timestamp, want.message.timestamp) << line;
        EXPECT_EQ(m.user_id, want.message.user_id) << line;
        EXPECT_EQ(m.message_id, want.message.message_id) << line;
        EXPECT_EQ(m.event, want.message.event) << line;
        EXPECT_EQ(m.group_id, want.message.group_id) << line;
        ASSERT_EQ(m.properties.size(), want.message.properties.size()) << line;
        for (size_t i = 0; i < m.properties.size(); ++i) {
          EXPECT_EQ(m.properties[i].path, want.message.properties[i].path) << line;
          EXPECT_EQ(m.properties[i].value, want.message.properties[i].value) << line;
        }
        ASSERT_EQ(m.traits.size(), want.message.traits.size()) << line;
        for (size_t i = 0; i < m.traits.size(); ++i) {
          EXPECT_EQ(m.traits[i].path, want.message.traits[i].path) << line;
          EXPECT_EQ(m.traits[i].value, want.message.traits[i].value) << line;
        }
      }
    }
  }
}

TEST_F(DecodeTest, WarmDecoderDoesNotAllocate) {
#ifdef SHOAL_NO_ALLOCATION_COUNT
  GTEST_SKIP() << "allocations are not counted under ASan";
#endif
  const std::vector<std::string_view> lines = {
      kSampleIdentify, kSampleTrack,
      R"({"type":"group","userId":"u3","groupId":"a1754","traits":{"industry":"Healthcare and more",)"
      R"("employees":5,"arr":4548.41,"tags":["x","y"]},"timestamp":"2026-08-03T00:00:00Z"})",
      R"({"type":"identify","userId":"u9","context":{"traits":{"long_trait_name_here":"long value text"}}})",
      R"({"type":"page","anonymousId":"anonymous-id-longer-than-sso","name":"A page name, long enough"})"};
  Decoder d;
  Message m;
  // Warm-up: pooled fields change places between messages, so each string reaches the largest
  // size it is given only after a few rounds.
  for (int round = 0; round < 20; ++round)
    for (std::string_view line : lines) ASSERT_TRUE(d.Decode(line, {}, &m).ok());
  long before = g_allocations.load();
  for (int round = 0; round < 100; ++round)
    for (std::string_view line : lines) ASSERT_TRUE(d.Decode(line, {}, &m).ok());
  EXPECT_EQ(g_allocations.load() - before, 0);
}

}  // namespace
}  // namespace shoal::ingest
