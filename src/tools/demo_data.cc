#include "tools/demo_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string_view>
#include <utility>

namespace shoal::tools {

const DemoSegment kDemoSegments[5] = {
    {"buyers_who_click",
     R"(performed "Order Completed" within 30d and performed "Email Clicked" within 30d)"},
    {"cart_abandoners", R"(performed "Product Added" within 1d not followed by "Order Completed")"},
    {"high_value", R"(sum(total) of "Order Completed" within 90d > 500)"},
    {"lapsed", R"(performed "Login" at least 5 times between 90d ago and 30d ago and )"
               R"(did not perform "Login" within 30d)"},
    {"new_signups", R"(signup_at within 7d and did not perform "Activated")"},
};

namespace {

// Raw draws from the engine-independent generator, mapped by hand (see the file comment).
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  uint64_t Below(uint64_t n) { return gen_() % n; }                        // [0, n)
  double Unit() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }  // [0, 1)
  bool Chance(double p) { return Unit() < p; }
  int64_t Between(int64_t lo, int64_t hi) {  // [lo, hi)
    return hi <= lo ? lo : lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo)));
  }
  // An instant in [lo, hi) on a whole second (lo and hi are whole seconds), for readable times.
  Millis TimeBetween(Millis lo, Millis hi) { return Between(lo / kSecond, hi / kSecond) * kSecond; }
  template <typename T, size_t N>
  const char* Weighted(const std::pair<T, int> (&choices)[N]) {
    int total = 0;
    for (const auto& c : choices) total += c.second;
    int r = static_cast<int>(Below(static_cast<uint64_t>(total)));
    for (const auto& c : choices) {
      if ((r -= c.second) < 0) return c.first;
    }
    return choices[N - 1].first;
  }

 private:
  std::mt19937_64 gen_;
};

constexpr std::pair<const char*, int> kCountries[] = {
    {"US", 30}, {"DE", 12}, {"FR", 10}, {"GB", 10}, {"ES", 6}, {"IT", 6},
    {"NL", 5},  {"BR", 5},  {"IN", 6},  {"CA", 4},  {"PT", 4}, {"AU", 2}};
constexpr std::pair<const char*, int> kPlans[] = {{"free", 60}, {"pro", 30}, {"enterprise", 10}};
constexpr std::pair<const char*, int> kPaths[] = {{"/", 30},     {"/pricing", 10}, {"/product", 25},
                                                  {"/blog", 15}, {"/cart", 10},    {"/help", 10}};
constexpr std::pair<const char*, int> kCategories[] = {
    {"apparel", 30}, {"shoes", 20}, {"electronics", 20}, {"home", 20}, {"books", 10}};
constexpr std::pair<const char*, int> kCampaigns[] = {
    {"welcome", 20}, {"weekly", 50}, {"black-friday", 30}};

}  // namespace

DataSet GenerateDemoData(int users, uint64_t seed, Millis start, Millis now) {
  Rng rng(seed);
  DataSet data;
  uint64_t seq = 0;
  auto add = [&](Millis ts, std::string json) {
    if (ts >= now) return;
    ++(json.starts_with(R"({"type":"identify")") ? data.identifies : data.tracks);
    data.lines.push_back({ts, seq++, std::move(json)});
  };
  auto msg_id = [&] { return fmt::format("m{}-{}", seed, seq); };

  struct User {
    Millis from, to;
    double weight;
  };
  std::vector<User> profile(static_cast<size_t>(users));
  std::vector<int> rank(static_cast<size_t>(users));
  for (int i = 0; i < users; ++i) rank[static_cast<size_t>(i)] = i;
  for (int i = users - 1; i > 0; --i) {
    std::swap(rank[static_cast<size_t>(i)], rank[rng.Below(static_cast<uint64_t>(i) + 1)]);
  }
  for (int i = 0; i < users; ++i) {
    const std::string id = fmt::format("u{}", i + 1);
    const bool recent = rng.Chance(0.06);
    const Millis signup =
        recent ? rng.TimeBetween(start, now - kHour) : rng.TimeBetween(now - kDay * 365 * 3, start);
    User& u = profile[static_cast<size_t>(i)];
    u.from = std::max(start, signup);
    u.to = rng.Chance(0.25) ? rng.TimeBetween(u.from, now) : now;
    u.weight = 1.0 / (rank[static_cast<size_t>(i)] + 50.0);
    const char* plan = rng.Weighted(kPlans);
    add(u.from, fmt::format(R"({{"type":"identify","userId":"{}","messageId":"{}",)"
                            R"("timestamp":"{}","traits":{{"country":"{}","plan":"{}",)"
                            R"("age":{},"signup_at":"{}"}}}})",
                            id, msg_id(), FormatTime(u.from), rng.Weighted(kCountries), plan,
                            rng.Between(18, 76), FormatTime(signup)));
    if (std::string_view(plan) == "free" && rng.Chance(0.10)) {
      const Millis at = rng.TimeBetween(u.from, u.to);
      add(at, fmt::format(R"({{"type":"identify","userId":"{}","messageId":"{}","timestamp":"{}",)"
                          R"("traits":{{"plan":"pro"}}}})",
                          id, msg_id(), FormatTime(at)));
    }
  }

  std::vector<double> cumulative(profile.size());
  double total_weight = 0;
  for (size_t i = 0; i < profile.size(); ++i) cumulative[i] = total_weight += profile[i].weight;

  const uint64_t target = static_cast<uint64_t>(users) * 25;
  for (uint64_t generated = 0; generated < target;) {
    const size_t i = static_cast<size_t>(
        std::lower_bound(cumulative.begin(), cumulative.end(), rng.Unit() * total_weight) -
        cumulative.begin());
    const User& u = profile[std::min(i, profile.size() - 1)];
    if (u.to <= u.from) continue;
    const std::string id = fmt::format("u{}", std::min(i, profile.size() - 1) + 1);
    Millis t = rng.TimeBetween(u.from, u.to);
    auto track = [&](const char* event, const std::string& props) {
      ++generated;
      add(t, fmt::format(R"({{"type":"track","userId":"{}","event":"{}","messageId":"{}",)"
                         R"("timestamp":"{}","properties":{{{}}}}})",
                         id, event, msg_id(), FormatTime(t), props));
      t += rng.Between(5, 181) * kSecond;
    };
    auto page = [&] { track("Page Viewed", fmt::format(R"("path":"{}")", rng.Weighted(kPaths))); };
    const uint64_t kind = rng.Below(100);
    if (kind < 45) {  // browse
      track("Login", R"("method":"password")");
      for (int n = static_cast<int>(rng.Between(1, 5)); n > 0; --n) page();
    } else if (kind < 75) {  // cart
      page();
      const char* category = rng.Weighted(kCategories);
      for (int n = static_cast<int>(rng.Between(1, 3)); n > 0; --n) {
        track("Product Added", fmt::format(R"("category":"{}")", category));
      }
      if (rng.Chance(0.4)) {
        // Log-uniform between 15 and 400, in cents.
        const double total = std::round(15.0 * std::pow(400.0 / 15.0, rng.Unit()) * 100) / 100;
        track("Order Completed",
              fmt::format(R"("total":{:.2f},"currency":"EUR","category":"{}")", total, category));
      }
    } else {  // email
      track("Email Clicked", fmt::format(R"("campaign":"{}")", rng.Weighted(kCampaigns)));
      for (int n = static_cast<int>(rng.Between(0, 3)); n > 0; --n) page();
    }
  }
  std::sort(data.lines.begin(), data.lines.end(), [](const Line& a, const Line& b) {
    return a.ts != b.ts ? a.ts < b.ts : a.seq < b.seq;
  });
  return data;
}

}  // namespace shoal::tools
