#include "durable/codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace shoal::durable {
namespace {

Field F(std::string path, Value v) { return Field{std::move(path), std::move(v)}; }

// A message that uses every value type, in both field vectors.
Message FullMessage(MessageType type) {
  Message m;
  m.type = type;
  m.user_id = "u42";
  m.anonymous_id = "anon-1";
  m.event = "Order Completed";
  m.name = "Checkout";
  m.message_id = "msg-123";
  m.group_id = "acme";
  m.previous_id = "old-id";
  m.timestamp = 1793491200000;  // 2026-11-01
  m.received_at = 1793491200004;
  m.properties = {
      F("null", Value::Null()),        F("t", Value::Bool(true)),
      F("f", Value::Bool(false)),      F("n", Value::Number(42.5)),
      F("neg", Value::Number(-1e300)), F("s", Value::String("text")),
      F("empty", Value::String("")),   F("l", Value::List(R"(["a",1,true,{"k":null}])"))};
  m.traits = {F("address.city", Value::String("Paris")),
              F("plan", Value::String("pro")),
              F("age", Value::Number(37)),
              F("vip", Value::Bool(true)),
              F("tags", Value::List("[]")),
              F("gone", Value::Null())};
  return m;
}

void ExpectFieldsEqual(const std::vector<Field>& a, const std::vector<Field>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].path, b[i].path) << i;
    EXPECT_EQ(a[i].value.type, b[i].value.type) << a[i].path;
    EXPECT_TRUE(a[i].value == b[i].value) << a[i].path;
    if (a[i].value.type == ValueType::kNumber) {
      // Bit-exact: == would accept -0.0 for 0.0.
      EXPECT_EQ(std::signbit(a[i].value.num), std::signbit(b[i].value.num)) << a[i].path;
    }
  }
}

void ExpectMessagesEqual(const Message& a, const Message& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.user_id, b.user_id);
  EXPECT_EQ(a.anonymous_id, b.anonymous_id);
  EXPECT_EQ(a.event, b.event);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.group_id, b.group_id);
  EXPECT_EQ(a.previous_id, b.previous_id);
  EXPECT_EQ(a.timestamp, b.timestamp);
  EXPECT_EQ(a.received_at, b.received_at);
  ExpectFieldsEqual(a.properties, b.properties);
  ExpectFieldsEqual(a.traits, b.traits);
}

Message RoundTrip(const Message& m) {
  std::string enc;
  EncodeMessage(m, &enc);
  Message out;
  Status st = DecodeMessage(enc, &out);
  EXPECT_TRUE(st.ok()) << st.ToString();
  Result<std::string_view> key = EncodedProfileKey(enc);
  EXPECT_TRUE(key.ok());
  if (key.ok()) {
    EXPECT_EQ(*key, m.ProfileKey());
  }
  return out;
}

StoredChange FullChange() {
  StoredChange c;
  c.seq = 1042;
  c.segment_seq = 17;
  c.size_after = 3;
  c.change.segment = "recent_buyers";
  c.change.profile = "u42";
  c.change.kind = ChangeKind::kEnter;
  c.change.cause = Cause::kEvent;
  c.change.cause_ref = "msg-123";
  c.change.event = "Order Completed";
  c.change.event_time = 1793491200000;
  c.change.processed_at = 1793491200004;
  return c;
}

void ExpectChangesEqual(const StoredChange& a, const StoredChange& b) {
  // seq is the record's key and not part of the encoding.
  EXPECT_EQ(a.segment_seq, b.segment_seq);
  EXPECT_EQ(a.size_after, b.size_after);
  EXPECT_EQ(a.change.segment, b.change.segment);
  EXPECT_EQ(a.change.profile, b.change.profile);
  EXPECT_EQ(a.change.kind, b.change.kind);
  EXPECT_EQ(a.change.cause, b.change.cause);
  EXPECT_EQ(a.change.cause_ref, b.change.cause_ref);
  EXPECT_EQ(a.change.event, b.change.event);
  EXPECT_EQ(a.change.event_time, b.change.event_time);
  EXPECT_EQ(a.change.processed_at, b.change.processed_at);
}

const MessageType kAllTypes[] = {MessageType::kIdentify, MessageType::kTrack, MessageType::kPage,
                                 MessageType::kScreen,   MessageType::kGroup, MessageType::kAlias};

const Cause kAllCauses[] = {Cause::kEvent,   Cause::kTraits,  Cause::kTime, Cause::kDefinition,
                            Cause::kSegment, Cause::kDeleted, Cause::kList, Cause::kErased,
                            Cause::kGroup,   Cause::kMerged,  Cause::kRank, Cause::kComputed};

const Millis kExtremeTimes[] = {0,
                                1,
                                -1,
                                -62135596800000,  // 0001-01-01
                                253402300799999,  // 9999-12-31T23:59:59.999
                                kMinTime,
                                kMaxTime,
                                std::numeric_limits<Millis>::min(),
                                std::numeric_limits<Millis>::max()};

// --- Message ----------------------------------------------------------------------------------

TEST(CodecTest, MessageRoundTripEveryType) {
  for (MessageType type : kAllTypes) {
    SCOPED_TRACE(static_cast<int>(type));
    Message m = FullMessage(type);
    ExpectMessagesEqual(m, RoundTrip(m));
  }
}

TEST(CodecTest, MessageRoundTripEmpty) {
  Message m;  // every string empty, no fields, times 0
  ExpectMessagesEqual(m, RoundTrip(m));
  std::string enc;
  EncodeMessage(m, &enc);
  Result<std::string_view> key = EncodedProfileKey(enc);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*key, "");
}

TEST(CodecTest, MessageProfileKeyIsAnonymousIdWithoutUserId) {
  Message m = FullMessage(MessageType::kTrack);
  m.user_id.clear();
  std::string enc;
  EncodeMessage(m, &enc);
  Result<std::string_view> key = EncodedProfileKey(enc);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*key, "anon-1");
  ExpectMessagesEqual(m, RoundTrip(m));
}

TEST(CodecTest, MessageRoundTripUnicodeAndBinaryStrings) {
  Message m;
  m.type = MessageType::kIdentify;
  m.user_id = "用户-🐟";
  m.event = "Commande passée ✓";
  m.message_id = std::string("a\0b", 3);  // embedded NUL
  m.traits = {F("naïve.路径", Value::String("Zoë 🌊")),
              F(std::string("\xff\xfe", 2), Value::String(std::string(300, '\x80'))),
              F("", Value::String(""))};
  ExpectMessagesEqual(m, RoundTrip(m));
}

TEST(CodecTest, MessageRoundTripExtremeTimes) {
  for (Millis t : kExtremeTimes) {
    SCOPED_TRACE(t);
    Message m = FullMessage(MessageType::kTrack);
    m.timestamp = t;
    m.received_at = -t == t ? t : -t;  // -INT64_MIN overflows: keep it
    if (t == std::numeric_limits<Millis>::min()) m.received_at = t;
    ExpectMessagesEqual(m, RoundTrip(m));
  }
}

TEST(CodecTest, MessageRoundTripDoubles) {
  const double kDoubles[] = {0.0,
                             -0.0,
                             1.0,
                             -1.0,
                             0.1,
                             1e-310,  // subnormal
                             std::numeric_limits<double>::min(),
                             std::numeric_limits<double>::max(),
                             std::numeric_limits<double>::lowest(),
                             std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::epsilon(),
                             9007199254740993.0,
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity()};
  Message m;
  m.user_id = "u";
  for (double d : kDoubles) m.properties.push_back(F("x", Value::Number(d)));
  Message out = RoundTrip(m);
  ExpectMessagesEqual(m, out);
  ASSERT_EQ(out.properties.size(), std::size(kDoubles));
  for (size_t i = 0; i < std::size(kDoubles); ++i) {
    EXPECT_EQ(std::memcmp(&out.properties[i].value.num, &kDoubles[i], 8), 0) << kDoubles[i];
  }
}

TEST(CodecTest, MessageRoundTripLongStringsAndManyFields) {
  Message m;
  m.user_id = std::string(100000, 'u');  // multi-byte varint length
  m.event = std::string(128, 'e');       // exactly at the one-byte varint boundary
  for (int i = 0; i < 1000; ++i) {
    m.properties.push_back(F("p" + std::to_string(i), Value::Number(i)));
  }
  ExpectMessagesEqual(m, RoundTrip(m));
}

TEST(CodecTest, DecodeOverwritesAReusedMessage) {
  Message first = FullMessage(MessageType::kIdentify);
  Message out = RoundTrip(first);
  Message second;
  second.user_id = "other";
  std::string enc;
  EncodeMessage(second, &enc);
  ASSERT_TRUE(DecodeMessage(enc, &out).ok());
  ExpectMessagesEqual(second, out);
}

TEST(CodecTest, MessageEveryTruncationIsAnError) {
  for (MessageType type : kAllTypes) {
    std::string enc;
    EncodeMessage(FullMessage(type), &enc);
    for (size_t n = 0; n < enc.size(); ++n) {
      // A copy of exactly n bytes, so that ASan catches any read past the prefix.
      std::string prefix = enc.substr(0, n);
      Message out;
      EXPECT_FALSE(DecodeMessage(prefix, &out).ok()) << "prefix of " << n << "/" << enc.size();
    }
  }
}

TEST(CodecTest, MessageTrailingBytesAreAnError) {
  std::string enc;
  EncodeMessage(FullMessage(MessageType::kTrack), &enc);
  enc.push_back('\0');
  Message out;
  EXPECT_FALSE(DecodeMessage(enc, &out).ok());
}

TEST(CodecTest, MessageUnknownVersionIsAnError) {
  Message m;
  m.user_id = "u";
  std::string enc;
  EncodeMessage(m, &enc);
  // Layout: varint(1) 'u' version type ...
  ASSERT_EQ(enc[2], 1);
  enc[2] = 2;
  Message out;
  Status st = DecodeMessage(enc, &out);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("version"), std::string::npos) << st.message();
}

TEST(CodecTest, MessageUnknownTypeOrValueTypeIsAnError) {
  Message m;
  m.user_id = "u";
  m.properties = {F("k", Value::Bool(true))};
  std::string enc;
  EncodeMessage(m, &enc);
  Message out;
  std::string bad = enc;
  bad[3] = static_cast<char>(static_cast<uint8_t>(MessageType::kAlias) + 1);
  EXPECT_FALSE(DecodeMessage(bad, &out).ok());
  // The value type byte follows the field path "k" near the end: ... 01 'k' type value 00.
  bad = enc;
  size_t type_pos = enc.size() - 3;
  ASSERT_EQ(static_cast<uint8_t>(enc[type_pos]), static_cast<uint8_t>(ValueType::kBool));
  bad[type_pos] = static_cast<char>(static_cast<uint8_t>(ValueType::kList) + 1);
  EXPECT_FALSE(DecodeMessage(bad, &out).ok());
}

TEST(CodecTest, HugeLengthsAreErrorsNotAllocations) {
  // A string length and a field count far beyond the input must fail before allocating.
  std::string enc;
  enc.append("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10);  // key length 2^64-1
  Message out;
  EXPECT_FALSE(DecodeMessage(enc, &out).ok());
  EXPECT_FALSE(EncodedProfileKey(enc).ok());

  Message m;
  m.user_id = "u";
  std::string good;
  EncodeMessage(m, &good);
  // Replace the final traits count (0) by 2^63.
  ASSERT_EQ(good.back(), 0);
  good.pop_back();
  good.append("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 10);
  EXPECT_FALSE(DecodeMessage(good, &out).ok());
}

TEST(CodecTest, OverlongVarintIsAnError) {
  // Eleven continuation bytes: longer than any 64-bit varint.
  std::string enc(11, '\x80');
  enc.push_back('\0');
  EXPECT_FALSE(EncodedProfileKey(enc).ok());
  Message out;
  EXPECT_FALSE(DecodeMessage(enc, &out).ok());
}

TEST(CodecTest, MessageRandomCorruptionNeverCrashes) {
  std::mt19937_64 rng(20261101);
  std::vector<std::string> encodings;
  for (MessageType type : kAllTypes) {
    EncodeMessage(FullMessage(type), &encodings.emplace_back());
  }
  Message out;
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string enc = encodings[i % encodings.size()];
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      enc[rng() % enc.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    if (rng() % 4 == 0) enc.resize(rng() % (enc.size() + 1));
    // Whatever the outcome, it is a value, not a crash or an out-of-bounds read (ASan).
    if (DecodeMessage(enc, &out).ok()) ++decoded;
    (void)EncodedProfileKey(enc);
  }
  // Some flips land in string contents or doubles and still decode; that is fine.
  EXPECT_GT(decoded, 0);
}

TEST(CodecTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(7);
  Message m;
  StoredChange c;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes(rng() % 64, '\0');
    for (char& b : bytes) b = static_cast<char>(rng());
    (void)DecodeMessage(bytes, &m);
    (void)DecodeChange(bytes, &c);
    (void)EncodedProfileKey(bytes);
  }
}

// --- EncodedProfileKey ------------------------------------------------------------------------

TEST(CodecTest, EncodedProfileKeyReadsOnlyThePrefix) {
  Message m = FullMessage(MessageType::kTrack);
  std::string enc;
  EncodeMessage(m, &enc);
  // The key is readable from the first bytes alone; the rest may be anything.
  std::string head = enc.substr(0, 1 + m.user_id.size());
  Result<std::string_view> key = EncodedProfileKey(head);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*key, "u42");
  EXPECT_EQ(key->data(), head.data() + 1);  // a view into the input, not a copy
  // A prefix that cuts the key is an error.
  for (size_t n = 0; n < 1 + m.user_id.size(); ++n) {
    EXPECT_FALSE(EncodedProfileKey(enc.substr(0, n)).ok()) << n;
  }
}

TEST(CodecTest, EncodedProfileKeyOfLongUnicodeKey) {
  Message m;
  m.user_id = std::string(200, 'x') + "✓";  // two-byte length varint
  std::string enc;
  EncodeMessage(m, &enc);
  Result<std::string_view> key = EncodedProfileKey(enc);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*key, m.user_id);
}

// --- StoredChange -----------------------------------------------------------------------------

TEST(CodecTest, ChangeRoundTripEveryCauseAndKind) {
  for (Cause cause : kAllCauses) {
    for (ChangeKind kind : {ChangeKind::kEnter, ChangeKind::kExit}) {
      SCOPED_TRACE(std::to_string(static_cast<int>(cause)) +
                   (kind == ChangeKind::kEnter ? " enter" : " exit"));
      StoredChange c = FullChange();
      c.change.cause = cause;
      c.change.kind = kind;
      std::string enc;
      EncodeChange(c, &enc);
      StoredChange out;
      ASSERT_TRUE(DecodeChange(enc, &out).ok());
      ExpectChangesEqual(c, out);
      EXPECT_EQ(out.seq, 0u);  // not encoded: the caller sets it from the key
      EXPECT_EQ(out.change.seq, c.segment_seq);
    }
  }
}

TEST(CodecTest, ChangeRoundTripEmptyUnicodeAndExtremes) {
  StoredChange c;
  c.segment_seq = std::numeric_limits<uint64_t>::max();
  c.size_after = std::numeric_limits<uint64_t>::max() - 1;
  c.change.segment = "сегмент_✓";
  c.change.profile = "";
  c.change.cause = Cause::kTime;
  for (Millis t : kExtremeTimes) {
    SCOPED_TRACE(t);
    c.change.event_time = t;
    c.change.processed_at = t == std::numeric_limits<Millis>::min() ? t : -t;
    std::string enc;
    EncodeChange(c, &enc);
    StoredChange out;
    ASSERT_TRUE(DecodeChange(enc, &out).ok());
    ExpectChangesEqual(c, out);
  }
  StoredChange zero;
  std::string enc;
  EncodeChange(zero, &enc);
  StoredChange out;
  ASSERT_TRUE(DecodeChange(enc, &out).ok());
  ExpectChangesEqual(zero, out);
}

TEST(CodecTest, ChangeEveryTruncationIsAnError) {
  StoredChange c = FullChange();
  c.segment_seq = 1u << 20;  // multi-byte varints
  c.change.event_time = -5;
  std::string enc;
  EncodeChange(c, &enc);
  for (size_t n = 0; n < enc.size(); ++n) {
    std::string prefix = enc.substr(0, n);
    StoredChange out;
    EXPECT_FALSE(DecodeChange(prefix, &out).ok()) << "prefix of " << n << "/" << enc.size();
  }
  enc.push_back('x');
  StoredChange out;
  EXPECT_FALSE(DecodeChange(enc, &out).ok());
}

TEST(CodecTest, ChangeBadVersionKindOrCauseIsAnError) {
  StoredChange c;
  c.change.segment = "s";
  c.change.profile = "p";
  std::string enc;
  EncodeChange(c, &enc);
  // Layout: version, varint segment_seq, varint size_after, "s", "p", kind, cause, ...
  const size_t kVersion = 0, kKind = 7, kCause = 8;
  ASSERT_EQ(enc[kKind], 0);
  StoredChange out;
  std::string bad = enc;
  bad[kVersion] = 9;
  EXPECT_FALSE(DecodeChange(bad, &out).ok());
  bad = enc;
  bad[kKind] = 2;
  EXPECT_FALSE(DecodeChange(bad, &out).ok());
  bad = enc;
  bad[kCause] = static_cast<char>(static_cast<uint8_t>(Cause::kComputed) + 1);
  EXPECT_FALSE(DecodeChange(bad, &out).ok());
  bad[kCause] = static_cast<char>(Cause::kComputed);
  EXPECT_TRUE(DecodeChange(bad, &out).ok());
}

TEST(CodecTest, ChangeRandomCorruptionNeverCrashes) {
  std::mt19937_64 rng(42);
  std::string base;
  EncodeChange(FullChange(), &base);
  StoredChange out;
  for (int i = 0; i < 20000; ++i) {
    std::string enc = base;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) enc[rng() % enc.size()] ^= static_cast<char>(1 + rng() % 255);
    if (rng() % 4 == 0) enc.resize(rng() % (enc.size() + 1));
    (void)DecodeChange(enc, &out);
  }
}

// --- Fixed-width keys -------------------------------------------------------------------------

TEST(CodecTest, BigEndianRoundTripsAndSortsByNumber) {
  const uint64_t kValues[] = {
      0, 1, 255, 256, 1ull << 32, (1ull << 63) + 5, std::numeric_limits<uint64_t>::max()};
  std::string prev;
  for (uint64_t v : kValues) {
    std::string k;
    PutBigEndian64(v, &k);
    ASSERT_EQ(k.size(), 8u);
    EXPECT_EQ(GetBigEndian64(k.data()), v);
    if (!prev.empty()) {
      EXPECT_LT(prev, k) << v;  // byte order is number order
    }
    prev = k;
  }
  std::string k = "prefix";
  PutBigEndian64(0x0102030405060708ull, &k);
  EXPECT_EQ(k, std::string("prefix\x01\x02\x03\x04\x05\x06\x07\x08"));
}

}  // namespace
}  // namespace shoal::durable
