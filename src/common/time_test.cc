#include "shoal/time.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <optional>
#include <string>

namespace shoal {
namespace {

std::string Wire(int y, int mo, int d, int h, int mi, int s, const char* tail = "Z") {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d%s", y, mo, d, h, mi, s, tail);
  return buf;
}

// ParseTime's 20-byte fast path against its general parser, which reads the same instant with a
// millisecond part: both must agree, on valid and invalid fields alike.
void ExpectSameAsGeneral(int y, int mo, int d, int h, int mi, int s) {
  const std::string fast = Wire(y, mo, d, h, mi, s);
  const std::string general = Wire(y, mo, d, h, mi, s, ".000Z");
  ASSERT_EQ(fast.size(), 20u);
  EXPECT_EQ(ParseTime(fast), ParseTime(general)) << fast;
}

TEST(ParseTimeTest, KnownInstants) {
  EXPECT_EQ(ParseTime("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseTime("2026-08-03T00:00:00Z"), 1785715200000);
  EXPECT_EQ(ParseTime("2026-08-03T00:03:03Z"), 1785715200000 + 183000);
  EXPECT_EQ(ParseTime("1969-12-31T23:59:59Z"), -1000);
  EXPECT_EQ(ParseTime("0000-01-01T00:00:00Z"), -62167219200000);
  EXPECT_EQ(ParseTime("9999-12-31T23:59:59Z"), 253402300799000);
  EXPECT_EQ(ParseTime("2024-02-29T12:00:00Z"), 1709208000000);
  EXPECT_EQ(ParseTime("2000-02-29T00:00:00Z"), 951782400000);
}

TEST(ParseTimeTest, FieldRanges) {
  EXPECT_EQ(ParseTime("2026-00-01T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2026-13-01T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2026-01-00T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2026-01-32T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2026-04-31T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2026-02-29T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2100-02-29T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2026-01-01T24:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseTime("2026-01-01T00:60:00Z"), std::nullopt);
  // A leap second is clamped (by the general parser, which the fast path leaves it to).
  EXPECT_EQ(ParseTime("2026-01-01T23:59:60Z"), ParseTime("2026-01-01T23:59:59Z"));
  EXPECT_EQ(ParseTime("2026-01-01T00:00:61Z"), std::nullopt);
}

TEST(ParseTimeTest, LayoutOfTheWireFormat) {
  const std::string good = "2026-08-03T10:20:30Z";
  ASSERT_TRUE(ParseTime(good).has_value());
  // Every byte of the 20, replaced by characters just outside the digit range and by separators.
  for (size_t i = 0; i < good.size(); ++i) {
    for (char c : std::string("/:09TtZz -+\xb0\xba\0", 14)) {
      std::string s = good;
      s[i] = c;
      const bool digit = good[i] >= '0' && good[i] <= '9';
      const bool same_kind = digit ? (c >= '0' && c <= '9') : c == good[i];
      const bool lower = (good[i] == 'T' && c == 't') || (good[i] == 'Z' && c == 'z') ||
                         (good[i] == 'T' && c == ' ');
      if (!same_kind && !lower) {
        EXPECT_EQ(ParseTime(s), std::nullopt) << s;
      }
    }
  }
  // Other forms the general parser reads.
  EXPECT_EQ(ParseTime("2026-08-03t00:00:00z"), 1785715200000);
  EXPECT_EQ(ParseTime("2026-08-03 00:00:00Z"), 1785715200000);
  EXPECT_EQ(ParseTime("2026-08-03T02:00:00+02:00"), 1785715200000);
  EXPECT_EQ(ParseTime("2026-08-03T00:00:00.5Z"), 1785715200500);
  EXPECT_EQ(ParseTime("2026-08-03"), 1785715200000);
  EXPECT_EQ(ParseTime("2026-08-03T00:00:00"), 1785715200000);
  EXPECT_EQ(ParseTime("2026-08-03T00:00:00ZZ"), std::nullopt);
  EXPECT_EQ(ParseTime("yesterday"), std::nullopt);
  EXPECT_EQ(ParseTime(""), std::nullopt);
}

TEST(ParseTimeTest, FastPathAgreesWithGeneralParser) {
  // Every day of years around the century and leap-year boundaries, and of the range's ends.
  for (int y : {0, 1, 4, 99, 100, 399, 400, 1600, 1900, 1969, 1970, 1972, 2000, 2024, 2026, 2100,
                2400, 9999}) {
    for (int mo = 0; mo <= 13; ++mo)
      for (int d = 0; d <= 32; ++d) ExpectSameAsGeneral(y, mo, d, 12, 34, 56);
  }
  // Every year on its month ends.
  for (int y = 0; y <= 9999; ++y) {
    ExpectSameAsGeneral(y, 1, 1, 0, 0, 0);
    ExpectSameAsGeneral(y, 2, 28, 23, 59, 59);
    ExpectSameAsGeneral(y, 2, 29, 23, 59, 59);
    ExpectSameAsGeneral(y, 12, 31, 23, 59, 59);
  }
  // Times of day.
  for (int h = 0; h <= 24; ++h)
    for (int mi = 0; mi <= 60; mi += 1)
      for (int s : {0, 1, 30, 58, 59, 60, 61, 99}) ExpectSameAsGeneral(2026, 8, 3, h, mi, s);
}

// The system time RealClockTest's clocks read: a test sets it, steps it back and forward.
Millis fake_system_now = 0;
Millis FakeSystem() { return fake_system_now; }

TEST(RealClockTest, FollowsTheSystemClockForward) {
  fake_system_now = 1000;
  RealClock clock(FakeSystem);
  EXPECT_EQ(clock.Now(), 1000);
  fake_system_now = 5000;
  EXPECT_EQ(clock.Now(), 5000);
}

TEST(RealClockTest, HoldsWhenTheSystemClockStepsBack) {
  fake_system_now = 10'000;
  RealClock clock(FakeSystem);
  EXPECT_EQ(clock.Now(), 10'000);
  fake_system_now = 4'000;  // an NTP step back of 6 s
  EXPECT_EQ(clock.Now(), 10'000);
  fake_system_now = 9'999;
  EXPECT_EQ(clock.Now(), 10'000);
  fake_system_now = 10'001;  // the system clock passes the held instant: it is followed again
  EXPECT_EQ(clock.Now(), 10'001);
}

TEST(RealClockTest, ReadsTheSystemClockByDefault) {
  RealClock clock;
  const Millis before = RealClock::SystemMillis();
  const Millis now = clock.Now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, RealClock::SystemMillis());
}

}  // namespace
}  // namespace shoal
