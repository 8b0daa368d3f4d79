// The stored form of a computed value change and of one value: round trips of every value type,
// and corrupt bytes are errors, never crashes.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "durable/codec.h"

namespace shoal::durable {
namespace {

StoredComputedChange FullComputedChange(Value old_value, Value new_value) {
  StoredComputedChange c;
  c.seq = 77;  // the key, not encoded
  c.trait_seq = 300;
  c.change.seq = 300;
  c.change.trait = "favourite_category";
  c.change.profile = "acme";
  c.change.target = SegmentTarget::kAccounts;
  c.change.old_value = std::move(old_value);
  c.change.new_value = std::move(new_value);
  c.change.cause = Cause::kEvent;
  c.change.cause_ref = "msg-9";
  c.change.event = "Product Viewed";
  c.change.event_time = -1000;  // before 1970: signed
  c.change.processed_at = 1793491200004;
  return c;
}

TEST(ComputedCodecTest, ChangeRoundTripsEveryValueType) {
  const Value kValues[] = {Value::Null(),          Value::Bool(true),        Value::Bool(false),
                           Value::Number(-0.5),    Value::Number(1e300),     Value::String(""),
                           Value::String("Shoes"), Value::List(R"(["a",1])")};
  for (const Value& a : kValues) {
    for (const Value& b : kValues) {
      StoredComputedChange in = FullComputedChange(a, b);
      std::string enc;
      EncodeComputedChange(in, &enc);
      StoredComputedChange out;
      ASSERT_TRUE(DecodeComputedChange(enc, &out).ok());
      EXPECT_EQ(out.seq, 0u);  // not in the value
      EXPECT_EQ(out.trait_seq, 300u);
      EXPECT_EQ(out.change.seq, 300u);
      EXPECT_EQ(out.change.trait, in.change.trait);
      EXPECT_EQ(out.change.profile, "acme");
      EXPECT_EQ(out.change.target, SegmentTarget::kAccounts);
      EXPECT_EQ(out.change.old_value.type, a.type);
      EXPECT_EQ(out.change.old_value, a);
      EXPECT_EQ(out.change.new_value, b);
      EXPECT_EQ(out.change.cause, Cause::kEvent);
      EXPECT_EQ(out.change.cause_ref, "msg-9");
      EXPECT_EQ(out.change.event, "Product Viewed");
      EXPECT_EQ(out.change.event_time, -1000);
      EXPECT_EQ(out.change.processed_at, 1793491200004);
    }
    std::string enc;
    EncodeValue(a, &enc);
    Value v;
    ASSERT_TRUE(DecodeValue(enc, &v).ok());
    EXPECT_EQ(v.type, a.type);
    EXPECT_EQ(v, a);
    EXPECT_FALSE(DecodeValue(enc + "x", &v).ok()) << "trailing bytes";
  }
}

TEST(ComputedCodecTest, TruncatedBadVersionTargetOrCauseIsAnError) {
  std::string enc;
  EncodeComputedChange(FullComputedChange(Value::Number(1), Value::String("x")), &enc);
  StoredComputedChange out;
  for (size_t n = 0; n < enc.size(); ++n) {
    EXPECT_FALSE(DecodeComputedChange(enc.substr(0, n), &out).ok()) << n;
  }
  EXPECT_FALSE(DecodeComputedChange(enc + "x", &out).ok());
  std::string bad = enc;
  bad[0] = 9;  // version
  EXPECT_FALSE(DecodeComputedChange(bad, &out).ok());
  // Layout: version, varint trait_seq (2 bytes for 300), trait (1 + 18), profile (1 + 4), target.
  const size_t kTarget = 1 + 2 + 19 + 5;
  ASSERT_EQ(enc[kTarget], 1);
  bad = enc;
  bad[kTarget] = 2;
  EXPECT_FALSE(DecodeComputedChange(bad, &out).ok());
  // Then the old value (type byte + 8) and the new one (type + 1 + "x"), then the cause.
  const size_t kCause = kTarget + 1 + 9 + 3;
  ASSERT_EQ(enc[kCause], static_cast<char>(Cause::kEvent));
  bad = enc;
  bad[kCause] = static_cast<char>(static_cast<uint8_t>(Cause::kComputed) + 1);
  EXPECT_FALSE(DecodeComputedChange(bad, &out).ok());
  Value v;
  EXPECT_FALSE(DecodeValue("", &v).ok());
  EXPECT_FALSE(DecodeValue("\x09", &v).ok());                      // no such type
  EXPECT_FALSE(DecodeValue(std::string("\x02\x01", 2), &v).ok());  // a number needs 8 bytes
}

TEST(ComputedCodecTest, RandomCorruptionNeverCrashes) {
  std::mt19937_64 rng(7);
  std::string base;
  EncodeComputedChange(FullComputedChange(Value::List("[1,2]"), Value::Number(3)), &base);
  StoredComputedChange out;
  for (int i = 0; i < 20000; ++i) {
    std::string enc = base;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) enc[rng() % enc.size()] ^= static_cast<char>(1 + rng() % 255);
    if (rng() % 4 == 0) enc.resize(rng() % (enc.size() + 1));
    (void)DecodeComputedChange(enc, &out);
  }
}

}  // namespace
}  // namespace shoal::durable
