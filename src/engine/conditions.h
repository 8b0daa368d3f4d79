// Compiled leaf conditions. Each one computes its truth for a profile at an instant t from the
// profile's traits and series timelines, and lowers *next to the next instant after t at which
// that truth can change with no new data. That instant drives the timer heap: it is what makes a
// profile leave "performed X within 30d" at the exact millisecond, without rescanning anybody.
// *next may be earlier than the real change (the engine then re-evaluates and finds nothing to
// do), never later.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/series.h"
#include "engine/values.h"
#include "rules/ast.h"
#include "shoal/engine.h"
#include "shoal/status.h"
#include "store/store.h"

namespace shoal::engine {

// One trait of a profile: the value set by the identify with the greatest (ts, record index).
struct TraitSlot {
  uint32_t key;
  uint32_t idx;  // the identify record that set it
  Millis ts;
  store::StoredValue value;
};
static_assert(sizeof(TraitSlot) == 32);

struct ProfileState {
  std::vector<TraitSlot> traits;     // sorted by key
  std::vector<uint32_t> identifies;  // record indices of this profile's identify calls

  const TraitSlot* Find(uint32_t key) const {
    auto it = std::lower_bound(traits.begin(), traits.end(), key,
                               [](const TraitSlot& s, uint32_t k) { return s.key < k; });
    return it != traits.end() && it->key == key ? &*it : nullptr;
  }
};

class Accounts;
class RankerCondition;
class ComputedValues;

// A live computed trait as a condition sees it: its id in the engine's dependency index (a
// `computed.NAME` condition depends on it as on a referenced segment) and its current values.
struct ComputedRef {
  uint32_t id;
  const ComputedValues* values;
  // The profile's current value if it is a number (the engine's ComputedNumber), for ranking by
  // the computed trait (top N by computed.NAME). Empty when the context has none.
  std::function<std::optional<double>(uint32_t pid)> number;
  // Whose values they are: a user's (dense by profile id) or an account's (by account id).
  SegmentTarget target = SegmentTarget::kUsers;
};

struct EvalContext {
  const store::Store& store;
  const ProfileState& profile;
  uint32_t pid;
  // Whether profile `pid` is a member of segment `segment_id` now.
  const std::function<bool(uint32_t segment_id, uint32_t pid)>& is_member;
  // Whether profile `pid` is in static list `list_id` now.
  const std::function<bool(uint32_t list_id, uint32_t pid)>& in_list;
  // The account graph: a user's accounts, an account's members and member counts. Null: no
  // accounts (an empty profile or account).
  const Accounts* accounts = nullptr;
};

class Condition {
 public:
  virtual ~Condition() = default;
  virtual bool Eval(const EvalContext& ctx, Millis t, Millis* next) const = 0;
  // What the condition sees, for Explain: "count = 3", "sum = 612.5", ...
  virtual std::string Detail(const EvalContext& ctx, Millis t) const = 0;

  // What it depends on, for the engine's dependency index.
  std::vector<Series*> series;
  std::vector<uint32_t> trait_keys;
  std::vector<uint32_t> segment_refs;
  std::vector<uint32_t> list_refs;  // static lists: a list change re-evaluates this condition
  bool every_identify = false;      // re-evaluate on any identify of the profile (trait history)
  // Accounts. A user condition that reads its accounts' traits (account.TRAIT): those trait
  // keys, re-evaluated when an account of the user changes them.
  std::vector<uint32_t> account_trait_keys;
  bool account_links = false;  // user condition reading the user's accounts: re-evaluate on a link
  bool member_links = false;   // account condition reading its members: re-evaluate on a link
};

// Resolves what a condition needs from the engine while compiling.
class CompileContext {
 public:
  virtual ~CompileContext() = default;
  virtual store::Store* store() = 0;
  // The shared series for (event name, filter[, inline value property]); created and
  // backfilled if new. `horizon`: how far back the reader will ever look (Horizon::Of its window;
  // All by default); a series keeps what its widest reader needs.
  virtual Series* GetSeries(const rules::EventSpec& spec,
                            std::optional<uint32_t> value_key = std::nullopt,
                            Horizon horizon = Horizon::All()) = 0;
  // The id of a live segment, or nullopt.
  virtual std::optional<uint32_t> SegmentId(const std::string& name) = 0;
  // The id of a live static list, or nullopt.
  virtual std::optional<uint32_t> ListId(const std::string& name) = 0;
  // Whom the definition being compiled describes, and whom a live segment's members are.
  virtual SegmentTarget target() const { return SegmentTarget::kUsers; }
  virtual SegmentTarget TargetOf(uint32_t segment) const { return SegmentTarget::kUsers; }
  // A live computed trait by name (Engine::CreateComputedTrait), or nullopt.
  virtual std::optional<ComputedRef> ComputedTrait(const std::string& name) { return std::nullopt; }
  // A member condition's user condition, compiled as a hidden user segment owned by the account
  // segment being compiled (created and backfilled here); returns its id.
  virtual Result<uint32_t> MemberSegment(const rules::Expr& user) {
    return Status::InvalidArgument("member conditions need an engine");
  }
  // An aggregate over members' values (engine/member_agg.h): the hidden user segment of its
  // member filter and value, owned by the account segment being compiled (created and evaluated
  // for every known user here); returns its id.
  virtual Result<uint32_t> MemberValueSegment(const rules::MemberAggCond& c) {
    return Status::InvalidArgument("aggregates over members need an engine");
  }
  // A top-N leaf's rank segment (engine/topn.h): a hidden segment of the target being compiled,
  // owned by the segment being compiled, created and ranked here. Returns its id and condition;
  // in a dry run (Validate) the value is checked but nothing is created: {UINT32_MAX, nullptr}.
  virtual Result<std::pair<uint32_t, const RankerCondition*>> RankSegment(
      const rules::TopNCond& c) {
    return Status::InvalidArgument("top-N conditions need an engine");
  }
};

// Compiles one leaf. Errors: unknown segment or list (kNotFound), a relative time predicate inside
// an event filter (kInvalidArgument: the filter is decided when the event arrives).
Result<std::unique_ptr<Condition>> CompileLeaf(const rules::Leaf& leaf, CompileContext* ctx);

// kInvalidArgument when an event filter holds a relative time predicate (see CompileLeaf).
Status CheckEventFilter(const rules::EventSpec& e);

}  // namespace shoal::engine
