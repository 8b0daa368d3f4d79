// Time in Shoal: an instant is int64 milliseconds since the Unix epoch, UTC. Durations are
// milliseconds too. The Clock interface lets tests drive time with a VirtualClock.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shoal {

using Millis = int64_t;  // an instant (ms since epoch, UTC) or a duration (ms)

constexpr Millis kSecond = 1000;
constexpr Millis kMinute = 60 * kSecond;
constexpr Millis kHour = 60 * kMinute;
constexpr Millis kDay = 24 * kHour;
constexpr Millis kWeek = 7 * kDay;
constexpr Millis kMinTime = INT64_MIN / 4;  // "minus infinity", safe to add durations to
constexpr Millis kMaxTime = INT64_MAX / 4;  // "plus infinity"

// Parses an ISO 8601 / RFC 3339 instant: "2026-01-02", "2026-01-02T03:04:05Z",
// "2026-01-02T03:04:05.678+02:00", "2026-01-02 03:04:05". Returns nullopt when the text is not
// such an instant (also for out-of-range fields such as month 13).
std::optional<Millis> ParseTime(std::string_view text);

// "2026-01-02T03:04:05Z", with ".678" when the instant has a millisecond part.
std::string FormatTime(Millis t);

// Parses "30d", "24h", "15m", "90s", "2w", "500ms". Returns nullopt on anything else.
std::optional<Millis> ParseDuration(std::string_view text);

// The canonical text of a duration: the largest unit (d, h, m, s, ms) that divides it exactly;
// weeks are read but printed as days (2w prints as 14d).
std::string FormatDuration(Millis d);

// Where "now" comes from. Implementations must be thread-safe for Now().
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Millis Now() const = 0;
};

// Wall-clock time that never goes back. When the system clock steps back (an NTP correction, a
// VM restored from a snapshot), Now() holds at the latest instant it returned until the system
// clock passes it: a window that closed does not reopen, and enters and exits keep their order.
class RealClock final : public Clock {
 public:
  using Source = Millis (*)();
  // `source` reads the system clock; tests pass their own.
  explicit RealClock(Source source = SystemMillis) : source_(source) {}
  Millis Now() const override;
  static Millis SystemMillis();

 private:
  Source source_;
  mutable std::atomic<Millis> last_{kMinTime};
};

// A clock that moves only when told to. Not thread-safe for Set/Advance.
class VirtualClock final : public Clock {
 public:
  explicit VirtualClock(Millis start = 0) : now_(start) {}
  Millis Now() const override { return now_; }
  void Set(Millis t) { now_ = t; }
  void Advance(Millis d) { now_ += d; }

 private:
  Millis now_;
};

}  // namespace shoal
