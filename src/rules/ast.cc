#include "rules/ast.h"

#include <xxhash.h>

#include <string>

namespace shoal::rules {

const char* AggName(AggCond::Fn fn) {
  switch (fn) {
    case AggCond::Fn::kSum:
      return "sum";
    case AggCond::Fn::kAvg:
      return "avg";
    case AggCond::Fn::kMin:
      return "min";
    case AggCond::Fn::kMax:
      return "max";
    case AggCond::Fn::kDistinct:
      return "distinct";
  }
  return "sum";
}

int64_t BucketOf(std::string_view profile_key, std::string_view salt, int64_t buckets) {
  if (buckets <= 0) return 0;
  std::string buf;
  buf.reserve(salt.size() + 1 + profile_key.size());
  buf.append(salt).push_back('\x1f');
  buf.append(profile_key);
  uint64_t h = XXH3_64bits(buf.data(), buf.size());
  return static_cast<int64_t>(h % static_cast<uint64_t>(buckets));
}

}  // namespace shoal::rules
