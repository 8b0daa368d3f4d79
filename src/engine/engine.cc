// The incremental engine. The flow of one message:
//   Ingest -> fire due deadlines -> append to the store -> update the profile's traits or the
//   series timelines the event matches -> the segments that depend on those series or traits
//   (and, for a profile seen for the first time, the segments an empty profile can satisfy) ->
//   re-evaluate each for this profile only, in reference order -> membership bitmap -> Change
//   -> segments that reference a changed one.
// Each evaluation also yields the next instant its truth can change; a min-heap of
// (instant, segment, profile) deadlines replays the same path when time passes.
#include "shoal/engine.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <queue>
#include <roaring/roaring.hh>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/bytes.h"
#include "engine/accounts.h"
#include "engine/computed.h"
#include "engine/conditions.h"
#include "engine/deadlines.h"
#include "engine/member_agg.h"
#include "engine/parallel.h"
#include "engine/series.h"
#include "engine/topn.h"
#include "ingest/decode.h"
#include "rules/parser.h"
#include "store/store.h"

namespace shoal {

unsigned BackfillThreads(const Options& options) {
  if (options.backfill_threads) return options.backfill_threads;
  return std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
}

const char* CauseName(Cause c) {
  switch (c) {
    case Cause::kEvent:
      return "event";
    case Cause::kTraits:
      return "traits";
    case Cause::kTime:
      return "time";
    case Cause::kDefinition:
      return "definition";
    case Cause::kSegment:
      return "segment";
    case Cause::kDeleted:
      return "deleted";
    case Cause::kList:
      return "list";
    case Cause::kErased:
      return "erased";
    case Cause::kGroup:
      return "group";
    case Cause::kMerged:
      return "merged";
    case Cause::kRank:
      return "rank";
    case Cause::kComputed:
      return "computed";
  }
  return "unknown";
}

namespace {

using engine::Condition;
using engine::EvalContext;
using engine::ProfileState;
using engine::Series;

// The compiled form of a definition: the Expr tree with a Condition at each leaf.
struct Node {
  rules::Expr::Kind kind = rules::Expr::Kind::kLeaf;
  std::vector<Node> children;
  std::unique_ptr<Condition> cond;
  const rules::Expr* expr = nullptr;  // for Explain's text
};

// A computed trait lives in segments_ as a hidden entry (its name "computed.NAME") so that it
// shares the segments' machinery: the dependency index (series, traits, lists, `in segment`
// references), ranks, deadlines and the rank-ordered Drain. Instead of a membership it keeps a
// value per profile; a `computed.NAME` condition references it like an `in segment`.
struct ComputedState {
  std::string name;  // without "computed."
  std::unique_ptr<rules::ComputedDef> def;
  std::vector<int64_t> points;  // a score: the points of each term in millionths (root.children)
  engine::ComputedValues values;
  uint64_t seq = 0;
  Millis last_change_at = 0;
};

struct Segment {
  uint32_t id = 0;
  std::string name;
  std::string text;  // canonical definition
  std::unique_ptr<rules::Expr> expr;
  Node root;
  std::vector<Condition*> conds;  // every leaf of root
  Roaring members;
  uint64_t seq = 0;
  Millis created_at = 0, updated_at = 0, last_change_at = 0;
  int rank = 0;                      // 1 + max rank of the segments it references
  bool on_new_profile = false;       // an empty profile may satisfy it
  std::vector<uint32_t> dependents;  // segments that reference this one
  engine::DeadlineMap deadline;      // earliest pending timer per profile
  // Members are accounts (ids of store.accounts()) for kAccounts: every per-profile map above is
  // then keyed by account id.
  SegmentTarget target = SegmentTarget::kUsers;
  // A member condition's user condition, owned by an account segment (whose name it carries): a
  // user segment that emits no changes and is not listed, whose membership changes adjust the
  // member counts of the user's accounts (engine/accounts.h).
  bool hidden = false;
  std::vector<uint32_t> hidden_segments;  // an account segment's member conditions
  // A top-N leaf's rank segment (engine/topn.h; also hidden): its members are the top set, kept
  // by ranker->ranking() and never by evaluating a definition. Owned by root.cond.
  engine::RankerCondition* ranker = nullptr;
  // A computed trait (then hidden too), see ComputedState.
  std::unique_ptr<ComputedState> computed;
  // The hidden value segment of an aggregate over members' values (engine/member_agg.h): its
  // members satisfy the member filter, and each evaluation also sets the user's contribution to
  // the account aggregates. Owned by root.
  engine::MemberValueCondition* member_value = nullptr;
};

// One (segment, member id) to re-evaluate; via: the changed segment it was reached through.
constexpr uint32_t kNoVia = UINT32_MAX;
struct Item {
  uint32_t seg;
  uint32_t id;
  uint32_t via;
  // Reached because another profile's value change pushed `id` across a top-N boundary: the
  // change's cause is kRank (docs/language.md, "Top-N and percentiles").
  bool rank = false;
};

// A static list: a named set of profile keys. Known profiles are a bitmap of dense ids, so
// `in list` is one bitmap probe; keys whose profile has not sent a message yet wait in `pending`
// and join the bitmap on that profile's first message.
struct List {
  uint32_t id = 0;
  std::string name;
  Roaring members;
  absl::flat_hash_set<std::string> pending;
  std::vector<uint32_t> dependents;  // segments that reference the list
};

struct CauseInfo {
  Cause cause;
  std::string_view ref;
  std::string_view event;
  Millis event_time;
};

// A direct-mapped cache in front of a StringPool for small vocabularies (event names, property
// keys): a hit is a length check and a short compare instead of a hash and a probe.
class InternCache {
 public:
  // The hit inline; a miss (or the empty string) out of line.
  [[gnu::always_inline]] uint32_t Intern(store::StringPool* pool, std::string_view s) {
    if (!s.empty()) {
      const Slot& e = slots_[SlotOf(s)];
      if (e.id != UINT32_MAX && e.text.size() == s.size() &&
          (s.size() <= 16 ? SmallEqual(e.text.data(), s.data(), s.size())
                          : std::memcmp(e.text.data(), s.data(), s.size()) == 0))
        return e.id;
    }
    return Miss(pool, s);
  }

 private:
  static size_t SlotOf(std::string_view s) {
    return (s.size() * 31 + static_cast<unsigned char>(s[0]) * 7 +
            static_cast<unsigned char>(s.back())) %
           kSlots;
  }

  [[gnu::noinline]] uint32_t Miss(store::StringPool* pool, std::string_view s) {
    if (s.empty()) return pool->Intern(s);
    Slot& e = slots_[SlotOf(s)];
    e.id = pool->Intern(s);
    e.text = pool->Get(e.id);  // the pool's copy: stable for its lifetime
    return e.id;
  }

  static constexpr size_t kSlots = 64;
  struct Slot {
    std::string_view text;
    uint32_t id = UINT32_MAX;
  };
  Slot slots_[kSlots];
};

struct Timer {
  Millis at;
  uint32_t segment;
  uint32_t profile;
  bool operator>(const Timer& o) const { return at > o.at; }
};

std::string SeriesKey(uint32_t name, const rules::EventSpec& spec,
                      std::optional<uint32_t> value_key) {
  std::string key = std::to_string(name);
  if (value_key) key += "#" + std::to_string(*value_key);
  if (spec.filter) key += "|" + rules::Print(*spec.filter);
  return key;
}

void CollectConds(Node& n, std::vector<Condition*>* out) {
  if (n.cond) out->push_back(n.cond.get());
  for (Node& c : n.children) CollectConds(c, out);
}

}  // namespace

class Engine::Impl : public engine::CompileContext {
 public:
  Impl(const Clock* clock, Options options)
      : clock_(clock),
        options_(options),
        backfill_threads_(shoal::BackfillThreads(options)),
        backfill_pool_(backfill_threads_) {
    is_member_ = [this](uint32_t seg, uint32_t pid) {
      return segments_[seg] && segments_[seg]->members.contains(pid);
    };
    in_list_ = [this](uint32_t list, uint32_t pid) {
      return lists_[list] && lists_[list]->members.contains(pid);
    };
  }

  // --- CompileContext ---------------------------------------------------------------------------
  store::Store* store() override { return &store_; }

  Series* GetSeries(const rules::EventSpec& spec, std::optional<uint32_t> value_key,
                    engine::Horizon horizon) override {
    if (compiling_target_ == SegmentTarget::kAccounts)  // the account's own events
      return account_events_.GetSeries(spec, value_key, &store_, dry_run_);
    uint32_t name = store_.strings().Intern(spec.name);
    std::string key = SeriesKey(name, spec, value_key);
    auto it = series_.find(key);
    if (it != series_.end()) {
      Series* s = it->second.get();
      // A reader that looks further back than the others: the entries they let go are rebuilt
      // from the history. (A dry run evaluates nothing: the series stays as it is.)
      if (!dry_run_ && s->Widen(horizon)) {
        s->Clear();
        Backfill(s);
      }
      return s;
    }
    auto s = std::make_unique<Series>(name, spec.filter, value_key, &store_);
    s->InitHorizon(horizon);
    if (!dry_run_) {
      Backfill(s.get());
      if (series_by_name_.size() <= name) series_by_name_.resize(name + 1);
      series_by_name_[name].push_back(s.get());
    }
    Series* raw = s.get();
    series_.emplace(std::move(key), std::move(s));
    return raw;
  }

  std::optional<uint32_t> SegmentId(const std::string& name) override {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return std::nullopt;
    return it->second;
  }

  std::optional<uint32_t> ListId(const std::string& name) override {
    auto it = list_by_name_.find(name);
    if (it == list_by_name_.end()) return std::nullopt;
    return it->second;
  }

  std::optional<engine::ComputedRef> ComputedTrait(const std::string& name) override {
    auto it = computed_by_name_.find(name);
    if (it == computed_by_name_.end()) return std::nullopt;
    const uint32_t id = it->second;
    return engine::ComputedRef{id, &segments_[id]->computed->values,
                               [this, id](uint32_t pid) { return ComputedNumber(id, pid); },
                               segments_[id]->target};
  }

  SegmentTarget target() const override { return compiling_target_; }
  SegmentTarget TargetOf(uint32_t seg) const override { return segments_[seg]->target; }

  // Compiles, registers and backfills the hidden user segment of a member condition; the account
  // segment being compiled takes ownership from pending_hidden_ (Create, Update).
  Result<uint32_t> MemberSegment(const rules::Expr& user) override {
    std::unique_ptr<Segment> h = NewHidden(user);
    SHOAL_RETURN_IF_ERROR(CompileForUsers(h.get()));
    if (dry_run_) return UINT32_MAX;
    // After compiling: a top-N leaf in C creates its rank segment first.
    h->id = static_cast<uint32_t>(segments_.size());
    h->text = rules::Print(*h->expr);
    h->created_at = h->updated_at = clock_->Now();
    Segment* raw = h.get();
    segments_.push_back(std::move(h));
    accounts_.AddCounter(raw->id);
    Register(raw);
    Recompute(raw, Cause::kDefinition);
    pending_hidden_.push_back(raw->id);
    return raw->id;
  }

  // A hidden segment over `expr`, not yet compiled, owned by the segment being compiled.
  std::unique_ptr<Segment> NewHidden(const rules::Expr& expr) {
    auto h = std::make_unique<Segment>();
    h->hidden = true;
    h->name = compiling_name_;  // errors that name a referencing segment name the owner
    h->expr = std::make_unique<rules::Expr>(expr);
    return h;
  }

  // Compiles a hidden segment as a user segment, also while an account segment is compiled.
  Status CompileForUsers(Segment* h) {
    const SegmentTarget saved = compiling_target_;
    compiling_target_ = SegmentTarget::kUsers;
    Status st = CompileInto(h);
    compiling_target_ = saved;
    return st;
  }

  // The hidden user segment of `sum(X) of members [(C)] ...` (engine/member_agg.h): C compiled as
  // a member segment's condition (none: every user) and'ed with the value leaf, registered so
  // that changes of C and X reach it, and evaluated for every known user now, which fills the
  // account aggregates. The account segment being compiled takes it from pending_hidden_.
  Result<uint32_t> MemberValueSegment(const rules::MemberAggCond& c) override {
    auto value = engine::CompileMemberValue(c, this);
    if (!value.ok()) return value.status();
    std::unique_ptr<Segment> h = NewHidden(c.user ? *c.user : rules::Expr{});
    if (c.user) SHOAL_RETURN_IF_ERROR(CompileForUsers(h.get()));
    if (dry_run_) return UINT32_MAX;
    Node leaf;
    leaf.kind = rules::Expr::Kind::kLeaf;
    leaf.expr = h->expr.get();
    h->member_value = value->get();
    leaf.cond = std::move(value).value();
    if (c.user) {
      Node both;
      both.kind = rules::Expr::Kind::kAnd;
      both.expr = h->expr.get();
      both.children.push_back(std::move(h->root));
      both.children.push_back(std::move(leaf));
      h->root = std::move(both);
    } else {
      h->root = std::move(leaf);
    }
    h->conds.clear();
    CollectConds(h->root, &h->conds);
    // After compiling: a top-N leaf in C creates its rank segment first.
    h->id = static_cast<uint32_t>(segments_.size());
    rules::Expr whole;
    whole.leaf = c;
    h->text = rules::Print(whole);
    h->created_at = h->updated_at = clock_->Now();
    Segment* raw = h.get();
    segments_.push_back(std::move(h));
    accounts_.aggregates().Add(raw->id, raw->member_value->ordered());
    Register(raw);
    RecomputeMemberValue(raw);
    pending_hidden_.push_back(raw->id);
    return raw->id;
  }

  // A top-N leaf's rank segment: compiled for the current target, ranked over every known
  // profile (or account) now, registered like any segment; the owner takes it from
  // pending_hidden_ as it does member segments.
  Result<std::pair<uint32_t, const engine::RankerCondition*>> RankSegment(
      const rules::TopNCond& c) override {
    auto cond = engine::CompileRanker(c, this);
    if (!cond.ok()) return cond.status();
    if (dry_run_) return std::pair<uint32_t, const engine::RankerCondition*>{UINT32_MAX, nullptr};
    auto h = std::make_unique<Segment>();
    h->hidden = true;
    h->name = compiling_name_;
    h->target = compiling_target_;
    h->expr = std::make_unique<rules::Expr>();
    h->expr->leaf = c;
    h->text = rules::Print(*h->expr);
    h->id = static_cast<uint32_t>(segments_.size());
    h->ranker = cond->get();
    h->root.kind = rules::Expr::Kind::kLeaf;
    h->root.expr = h->expr.get();
    h->root.cond = std::move(cond).value();
    h->conds.push_back(h->root.cond.get());
    h->created_at = h->updated_at = clock_->Now();
    Segment* raw = h.get();
    segments_.push_back(std::move(h));
    Register(raw);
    RecomputeRanker(raw);
    pending_hidden_.push_back(raw->id);
    return std::pair<uint32_t, const engine::RankerCondition*>{raw->id, raw->ranker};
  }

  // After a new definition of `self` was compiled into `probe` (Update, UpdateComputed): the name
  // of a referenced segment through which `self` would depend on itself, after dropping what the
  // compile made (the probe's conditions and series, the hidden segments `fresh`); nullopt when
  // there is no cycle.
  std::optional<std::string> DropIfCycle(Segment* probe, uint32_t self,
                                         const std::vector<uint32_t>& fresh) {
    for (Condition* c : probe->conds)
      for (uint32_t ref : c->segment_refs)
        if (Reaches(ref, self)) {
          std::string through = segments_[ref]->name;
          probe->root = Node{};
          probe->conds.clear();
          DeleteHidden(fresh);
          DropUnusedSeries();
          return through;
        }
    return std::nullopt;
  }

  void DeleteHidden(const std::vector<uint32_t>& ids) {
    for (uint32_t id : ids) {
      Segment* h = segments_[id].get();
      if (!h) continue;
      Unregister(h);
      accounts_.DropCounter(id);
      segments_[id].reset();
    }
    if (!ids.empty()) {
      RecomputeRanks();
      DropUnusedSeries();
    }
  }

  // --- Ingest -----------------------------------------------------------------------------------
  void Prefetch(const Message& msg) const {
    const std::string& key = msg.ProfileKey();
    if (!key.empty()) store_.profiles().Prefetch(store::StringPool::Hash(key));
  }

  Status Ingest(const Message& msg) {
    const std::string& key = msg.ProfileKey();
    if (key.empty())
      return Status::InvalidArgument("field 'userId': a userId or anonymousId is required");
    if (msg.type == MessageType::kTrack && msg.event.empty())
      return Status::InvalidArgument("field 'event': required for a track call");
    if (msg.type == MessageType::kAlias) return IngestAlias(msg);
    if (msg.type == MessageType::kGroup) return IngestGroup(msg);
    AdvanceTime();
    const Millis now = clock_->Now();
    // Before the profile is interned: a message that fails here must not create a profile that
    // has no state (the reference would know it, the engine would never have evaluated it).
    // The profile table is the largest pool: start loading its slot now, so the miss overlaps
    // with ToProps (which prefetches its own strings' slots the same way).
    const uint64_t key_hash = store::StringPool::Hash(key);
    store_.profiles().Prefetch(key_hash);
    SHOAL_RETURN_IF_ERROR(ToProps(msg));

    size_t before = store_.profiles().size();
    // A merged-away key's messages go to its survivor: one load when nothing was ever merged.
    uint32_t pid = store_.Resolve(store_.profiles().Intern(key, key_hash));
    bool is_new = store_.profiles().size() != before;
    if (profiles_.size() <= pid) profiles_.resize(pid + 1);
    if (!msg.anonymous_id.empty() && !msg.user_id.empty()) [[unlikely]]
      is_new = LinkAnonymous(pid, is_new, msg.user_id, msg.anonymous_id, now);
    ProfileState& prof = profiles_[pid];

    touched_.clear();
    ++stamp_;
    if (is_new) JoinPendingLists(pid, key);
    CauseInfo cause{Cause::kEvent, msg.message_id, {}, msg.timestamp};
    if (msg.type == MessageType::kIdentify) {
      cause.cause = Cause::kTraits;
      uint32_t idx = store_.Append(pid, store::Store::kIdentifyName, msg.timestamp, props_);
      prof.identifies.push_back(idx);
      // A first identify sizes the traits once rather than growing them by doubling.
      if (prof.traits.empty()) prof.traits.reserve(props_.size());
      for (const store::PropEntry& p : props_) {
        ApplyTrait(&prof, p.key(), p.value(), msg.timestamp, idx);
        auto it = by_trait_.find(p.key());
        if (it != by_trait_.end())
          for (uint32_t seg : it->second) Touch(seg);
      }
      for (uint32_t seg : every_identify_segments_) Touch(seg);
    } else {
      const std::string* name = &msg.event;
      static const std::string kPage = "Page Viewed", kScreen = "Screen Viewed";
      if (msg.type == MessageType::kPage) name = &kPage;
      if (msg.type == MessageType::kScreen) name = &kScreen;
      cause.event = *name;
      uint32_t name_id = name_cache_.Intern(&store_.strings(), *name);
      uint32_t idx = store_.Append(pid, name_id, msg.timestamp, props_);
      if (name_id < series_by_name_.size()) {
        for (Series* s : series_by_name_[name_id]) {
          // Older than every window that reads the series, now and later: nothing to record,
          // nobody to re-evaluate.
          if (s->LeaveOut(msg.timestamp, now) || !s->Matches(props_, store_)) continue;
          s->Add(pid, msg.timestamp, idx, s->has_value() ? s->ValueOf(props_) : 0, s->Cutoff(now));
          for (uint32_t seg : s->segments) Touch(seg);
        }
      }
      if (!msg.group_id.empty()) {
        if (is_new)
          for (uint32_t seg : new_profile_segments_) Touch(seg);
        IngestAccountEvent(msg.group_id, pid, name_id, idx, now, cause);
        return Status::Ok();
      }
    }
    if (is_new)
      for (uint32_t seg : new_profile_segments_) Touch(seg);
    Process(pid, now, cause);
    return Status::Ok();
  }

  // The rest of an event sent with context.groupId, once the user's segments are touched: it is
  // also an event of that account (recorded even while the account is unknown, so it counts from
  // the account's first group call on). One rank-ordered pass evaluates the user's touched
  // segments and, for a known account, the account segments reading the event.
  void IngestAccountEvent(const std::string& group_id, uint32_t pid, uint32_t name_id, uint32_t idx,
                          Millis now, const CauseInfo& cause) {
    const uint32_t aid = store_.accounts().Intern(group_id);
    store_.SetEventAccount(idx, aid);
    const bool known = accounts_.known(aid);
    account_events_.Add(aid, name_id, store_.ts(idx), idx, props_, store_, [&](uint32_t seg) {
      if (known) Touch(seg);
    });
    BeginQueue(pid, aid);
    for (uint32_t seg : touched_)
      queue_.push_back(
          {seg, segments_[seg]->target == SegmentTarget::kAccounts ? aid : pid, kNoVia});
    Drain(now, cause);
  }

  // A key added to lists before its first message joins them now. One hash probe per new
  // profile, and none at all while no key is pending.
  void JoinPendingLists(uint32_t pid, const std::string& key) {
    if (pending_lists_.empty()) return;
    auto it = pending_lists_.find(key);
    if (it == pending_lists_.end()) return;
    for (uint32_t l : it->second) {
      lists_[l]->members.add(pid);
      lists_[l]->pending.erase(key);
      for (uint32_t seg : lists_[l]->dependents) Touch(seg);
    }
    pending_lists_.erase(it);
  }

  // A group call: the user joins the account (a known profile from now on, like any message's
  // user) and the account's traits merge. Re-evaluates, in one rank-ordered pass, the user's
  // segments that read its accounts (on a new link), the account's segments that read its members
  // (new link) or the changed traits (all of them for a new account), and the account's users for
  // the user segments that read those account traits.
  Status IngestGroup(const Message& msg) {
    if (msg.group_id.empty())
      return Status::InvalidArgument("field 'groupId': required for a group call");
    AdvanceTime();
    const Millis now = clock_->Now();
    SHOAL_RETURN_IF_ERROR(ToProps(msg));
    const std::string& key = msg.ProfileKey();
    size_t before = store_.profiles().size();
    uint32_t pid = store_.Resolve(store_.profiles().Intern(key));
    bool is_new = store_.profiles().size() != before;
    if (profiles_.size() <= pid) profiles_.resize(pid + 1);
    if (!msg.anonymous_id.empty() && !msg.user_id.empty())
      is_new = LinkAnonymous(pid, is_new, msg.user_id, msg.anonymous_id, now);
    uint32_t aid = store_.accounts().Intern(msg.group_id);
    uint32_t idx = store_.AppendGroup(pid, aid, msg.timestamp, props_);
    engine::Accounts::Account& acc = accounts_.Get(aid);
    const bool new_account = !acc.known;
    acc.known = true;
    acc.state.identifies.push_back(idx);

    touched_.clear();
    ++stamp_;
    if (is_new) {
      JoinPendingLists(pid, key);
      for (uint32_t seg : new_profile_segments_) Touch(seg);
    }
    const bool linked = accounts_.Link(pid, aid, is_member_);
    if (linked) {
      for (uint32_t seg : user_link_segments_) Touch(seg);
      for (uint32_t seg : acct_member_segments_) Touch(seg);
    }
    if (new_account)
      for (uint32_t seg : acct_segments_) Touch(seg);
    for (uint32_t seg : acct_every_group_) Touch(seg);
    std::vector<uint32_t> user_segs;  // user segments reading a changed account trait
    for (const store::PropEntry& p : props_) {
      ApplyTrait(&acc.state, p.key(), p.value(), msg.timestamp, idx);
      auto it = acct_by_trait_.find(p.key());
      if (it != acct_by_trait_.end())
        for (uint32_t seg : it->second) Touch(seg);
      auto ut = user_by_account_trait_.find(p.key());
      if (ut != user_by_account_trait_.end())
        user_segs.insert(user_segs.end(), ut->second.begin(), ut->second.end());
    }
    BeginQueue(pid, aid);
    for (uint32_t seg : touched_)
      queue_.push_back(
          {seg, segments_[seg]->target == SegmentTarget::kAccounts ? aid : pid, kNoVia});
    for (uint32_t seg : user_segs)
      for (uint32_t u : accounts_.UsersOf(aid)) Push(seg, u, kNoVia);
    Drain(now, CauseInfo{Cause::kGroup, msg.message_id, {}, msg.timestamp});
    return Status::Ok();
  }

  // --- Identity merges (docs/language.md, "Identity") --------------------------------------------
  // The id a key names now: its own, or its survivor's once merged. nullopt for an unknown key.
  std::optional<uint32_t> FindProfile(std::string_view key) const {
    std::optional<uint32_t> id = store_.profiles().Find(key);
    if (id) id = store_.Resolve(*id);
    return id;
  }

  // A message with both ids. `user` is the userId's profile (a survivor), `user_new` whether this
  // message created it. The anonymousId's profile is merged into it when it is a survivor of its
  // own (never claimed: the first identification wins); a key never seen is only linked. Returns
  // whether `user` still needs a new profile's first evaluation.
  bool LinkAnonymous(uint32_t user, bool user_new, const std::string& user_key,
                     const std::string& anon, Millis now) {
    std::optional<uint32_t> a = store_.profiles().Find(anon);
    if (!a) {
      LinkNewKey(anon, user, now);
      return user_new;
    }
    if (*a == user || store_.merged(*a)) return user_new;
    MergeProfiles(*a, user, now, user_new ? &user_key : nullptr);
    return false;
  }

  // An alias call: previousId's profile (with everything merged into it) is merged into userId's,
  // created if new. An explicit link, so an id merged before follows its survivor.
  Status IngestAlias(const Message& msg) {
    if (msg.user_id.empty())
      return Status::InvalidArgument("field 'userId': required for an alias call");
    if (msg.previous_id.empty())
      return Status::InvalidArgument("field 'previousId': required for an alias call");
    AdvanceTime();
    const Millis now = clock_->Now();
    size_t before = store_.profiles().size();
    const uint32_t user = store_.Resolve(store_.profiles().Intern(msg.user_id));
    bool is_new = store_.profiles().size() != before;
    if (profiles_.size() <= user) profiles_.resize(user + 1);
    std::optional<uint32_t> prev = FindProfile(msg.previous_id);
    if (!prev) {
      LinkNewKey(msg.previous_id, user, now);
    } else if (*prev != user) {
      MergeProfiles(*prev, user, now, is_new ? &msg.user_id : nullptr);
      is_new = false;
    }
    if (is_new) {  // a new, empty profile: evaluated like any profile's first message
      touched_.clear();
      ++stamp_;
      JoinPendingLists(user, msg.user_id);
      for (uint32_t seg : new_profile_segments_) Touch(seg);
      Process(user, now, CauseInfo{Cause::kMerged, msg.previous_id, {}, now});
    }
    return Status::Ok();
  }

  // A key never seen (or erased) is linked to `into`: it gets a dense id that resolves to `into`
  // and no state of its own. Only the lists that were waiting for the key change anything.
  void LinkNewKey(const std::string& key, uint32_t into, Millis now) {
    const uint32_t id = store_.profiles().Intern(key);
    if (profiles_.size() <= id) profiles_.resize(id + 1);
    store_.Merge(id, into);
    if (pending_lists_.empty()) return;
    touched_.clear();
    ++stamp_;
    JoinPendingLists(into, key);
    if (!touched_.empty())
      Process(into, now, CauseInfo{Cause::kMerged, store_.profiles().Get(id), {}, now});
  }

  // Merges survivor `from` into survivor `into`. `from` exits every segment it is in (cause
  // kMerged, naming `into`), its state joins `into`'s (series timelines: one sorted merge each;
  // traits: recomputed from both profiles' identify calls; list bits and account links move; its
  // deadlines are dropped), the store records the merge, and `into` is re-evaluated for every
  // user segment, and the accounts `from` belonged to for every account segment (cause kMerged,
  // naming `from`). `new_into_key`: `into` was created by this message, so keys waiting in lists
  // join. Costs the two profiles' data plus the number of segments, series and lists.
  void MergeProfiles(uint32_t from, uint32_t into, Millis now, const std::string* new_into_key) {
    const std::string_view from_key = store_.profiles().Get(from);
    const std::string_view into_key = store_.profiles().Get(into);
    if (profiles_.size() <= std::max(from, into)) profiles_.resize(std::max(from, into) + 1);
    std::vector<Segment*> order;
    for (const auto& s : segments_)
      if (s && s->target == SegmentTarget::kUsers) order.push_back(s.get());
    std::stable_sort(order.begin(), order.end(),
                     [](const Segment* a, const Segment* b) { return a->rank < b->rank; });
    // The merged-away profile leaves everything at once, as an erased one does: nothing is
    // re-evaluated for it, so a segment reading another sees no intermediate state.
    for (Segment* s : order) {
      s->deadline.erase(from);  // its heap entries are now stale and skipped when popped
      if (s->ranker) continue;  // Unrank, below
      if (!s->members.contains(from)) continue;
      s->members.remove(from);
      if (s->hidden)
        accounts_.Adjust(s->id, from, false);
      else
        Emit(*s, from, false, CauseInfo{Cause::kMerged, into_key, {}, now}, now);
    }
    // Its computed values go with it (a change to no value, cause merged); the survivor's are
    // recomputed below. It leaves every ranking; whoever that moves across a boundary is
    // re-evaluated (cause rank) before the survivor takes its combined place.
    DropComputedValues(from, CauseInfo{Cause::kMerged, into_key, {}, now}, now);
    Unrank(from, SegmentTarget::kUsers, now);
    for (auto& [k, se] : series_) se->MergeInto(from, into);
    ProfileState gone = std::exchange(profiles_[from], ProfileState{});
    if (!gone.identifies.empty()) {
      ProfileState& p = profiles_[into];
      std::vector<uint32_t> ids;
      ids.reserve(p.identifies.size() + gone.identifies.size());
      std::merge(p.identifies.begin(), p.identifies.end(), gone.identifies.begin(),
                 gone.identifies.end(), std::back_inserter(ids));
      // Replayed in arrival order, the latest-timestamp rule gives what one profile would have.
      p.identifies = std::move(ids);
      p.traits.clear();
      for (uint32_t idx : p.identifies)
        for (const store::PropEntry e : store_.props(idx))
          ApplyTrait(&p, e.key(), e.value(), store_.ts(idx), idx);
    }
    for (auto& l : lists_)
      if (l && l->members.contains(from)) {
        l->members.remove(from);
        l->members.add(into);
      }
    // `from` is in no hidden segment now, so unlinking it leaves the member counts right; Link
    // counts `into` in the hidden segments it is in for each account that is new to it.
    const std::vector<uint32_t> accounts = accounts_.UnlinkUser(from);
    for (uint32_t a : accounts) accounts_.Link(into, a, is_member_);
    store_.Merge(from, into);

    touched_.clear();
    ++stamp_;
    if (new_into_key) JoinPendingLists(into, *new_into_key);
    for (Segment* s : order) Touch(s->id);
    BeginQueue(into, UINT32_MAX);
    for (uint32_t seg : touched_) queue_.push_back({seg, into, kNoVia});
    for (uint32_t a : accounts)
      for (uint32_t seg : acct_segments_) Push(seg, a, kNoVia);
    Drain(now, CauseInfo{Cause::kMerged, from_key, {}, now});
  }

  Status IngestJson(std::string_view json) {
    ingest::DecodeOptions opts;
    opts.now = clock_->Now();
    SHOAL_RETURN_IF_ERROR(decoder_.Decode(json, opts, &scratch_msg_));
    return Ingest(scratch_msg_);
  }

  // --- Time
  // ---------------------------------------------------------------------------------------
  size_t AdvanceTime() {
    const Millis now = clock_->Now();
    size_t before = stats_changes_;
    while (!timers_.empty() && timers_.top().at <= now) {
      Timer tm = timers_.top();
      timers_.pop();
      Segment* s = tm.segment < segments_.size() ? segments_[tm.segment].get() : nullptr;
      if (!s) continue;
      Millis later = 0;
      switch (s->deadline.Take(tm.profile, tm.at, &later)) {
        case engine::DeadlineMap::Due::kStale:  // superseded
          continue;
        case engine::DeadlineMap::Due::kLater:  // the deadline moved later since: wait for it
          timers_.push(Timer{later, tm.segment, tm.profile});
          continue;
        case engine::DeadlineMap::Due::kFire:
          break;
      }
      ++timer_fires_;
      touched_.clear();
      ++stamp_;
      // A rank segment, or a member segment a ranking may read: see FireTogether.
      if (s->ranker || (s->hidden && !s->dependents.empty())) {
        FireTogether(s, tm);
        continue;
      }
      Touch(s->id);
      Process(tm.profile, tm.at, CauseInfo{Cause::kTime, {}, {}, tm.at}, s->target);
    }
    MaybeCompactTimers();
    return stats_changes_ - before;
  }

  // A due deadline of a rank segment (or of a member segment, whose changes move member counts),
  // with every other one of the same segment due at the same instant, in one pass: values that
  // change together move in the ranking together (EvalRanker), so nobody enters and leaves a top
  // set at one instant in between.
  void FireTogether(Segment* s, const Timer& tm) {
    BeginQueue(UINT32_MAX, UINT32_MAX);
    queue_.push_back({s->id, tm.profile, kNoVia});
    std::vector<Timer> others;
    while (!timers_.empty() && timers_.top().at == tm.at) {
      Timer o = timers_.top();
      timers_.pop();
      if (o.segment != s->id || !Live(o)) {
        others.push_back(o);
        continue;
      }
      s->deadline.erase(o.profile);
      ++timer_fires_;
      queue_.push_back({s->id, o.profile, kNoVia});
    }
    for (const Timer& o : others) timers_.push(o);
    Drain(tm.at, CauseInfo{Cause::kTime, {}, {}, tm.at});
  }

  // The earliest deadline. Superseded heap entries on top are dropped, and an anchor on top
  // whose deadline moved later is replaced by a timer at that deadline (DeadlineMap::Take), so
  // the answer is a deadline itself, not an instant at which nothing happens.
  std::optional<Millis> NextDeadline() const {
    while (!timers_.empty()) {
      const Timer tm = timers_.top();
      Segment* s = tm.segment < segments_.size() ? segments_[tm.segment].get() : nullptr;
      Millis later = 0;
      const auto due =
          s ? s->deadline.Check(tm.profile, tm.at, &later) : engine::DeadlineMap::Due::kStale;
      if (due == engine::DeadlineMap::Due::kFire) return tm.at;
      timers_.pop();
      if (due == engine::DeadlineMap::Due::kLater) {
        s->deadline.Take(tm.profile, tm.at, &later);
        timers_.push(Timer{later, tm.segment, tm.profile});
      }
    }
    return std::nullopt;
  }

  // Whether a heap entry is the (segment, profile)'s deadline, due when it is.
  bool Live(const Timer& tm) const {
    const Segment* s = tm.segment < segments_.size() ? segments_[tm.segment].get() : nullptr;
    Millis later = 0;
    return s && s->deadline.Check(tm.profile, tm.at, &later) == engine::DeadlineMap::Due::kFire;
  }

  // --- Segments
  // -----------------------------------------------------------------------------------
  Result<SegmentInfo> Create(std::string_view name, std::string_view text,
                             SegmentTarget target = SegmentTarget::kUsers) {
    if (name.empty()) return Status::InvalidArgument("segment name: must not be empty");
    if (by_name_.count(std::string(name)))
      return Status::AlreadyExists("segment \"" + std::string(name) + "\" already exists");
    AdvanceTime();
    auto parsed = rules::Parse(text);
    if (!parsed.ok()) return parsed.status();
    auto seg = std::make_unique<Segment>();
    seg->name = std::string(name);
    seg->target = target;
    seg->expr = std::make_unique<rules::Expr>(std::move(parsed).value());
    SHOAL_RETURN_IF_ERROR(CompileTarget(seg.get()));
    seg->id = static_cast<uint32_t>(segments_.size());  // after its hidden segments
    seg->hidden_segments = std::exchange(pending_hidden_, {});
    seg->text = rules::Print(*seg->expr);
    seg->created_at = seg->updated_at = clock_->Now();
    Segment* s = seg.get();
    segments_.push_back(std::move(seg));
    by_name_[s->name] = s->id;
    Register(s);
    Recompute(s, Cause::kDefinition);
    return Info(*s);
  }

  Result<SegmentInfo> Update(std::string_view name, std::string_view text) {
    Segment* s = Find(name);
    if (!s) return Status::NotFound("segment \"" + std::string(name) + "\" does not exist");
    AdvanceTime();
    auto parsed = rules::Parse(text);
    if (!parsed.ok()) return parsed.status();
    auto expr = std::make_unique<rules::Expr>(std::move(parsed).value());
    Segment probe;
    probe.id = s->id;
    probe.name = s->name;
    probe.target = s->target;
    probe.expr = std::move(expr);
    SHOAL_RETURN_IF_ERROR(CompileTarget(&probe));
    std::vector<uint32_t> fresh = std::exchange(pending_hidden_, {});
    if (auto through = DropIfCycle(&probe, s->id, fresh))
      return Status::FailedPrecondition("segment \"" + s->name +
                                        "\" would depend on itself through \"" + *through + "\"");
    Unregister(s);
    std::vector<uint32_t> old_hidden = std::exchange(s->hidden_segments, std::move(fresh));
    s->expr = std::move(probe.expr);
    s->root = std::move(probe.root);
    s->conds = std::move(probe.conds);
    // After the new conditions are in place: deleting drops the series no live condition reads.
    DeleteHidden(old_hidden);
    s->text = rules::Print(*s->expr);
    s->updated_at = clock_->Now();
    s->deadline.clear();
    Register(s);
    // Only now: deleting hidden segments drops the series nothing registered reads, which before
    // Register would include the new definition's own (an account segment's event series).
    DeleteHidden(old_hidden);
    DropUnusedSeries();
    Recompute(s, Cause::kDefinition);
    return Info(*s);
  }

  Status Delete(std::string_view name) {
    Segment* s = Find(name);
    if (!s) return Status::NotFound("segment \"" + std::string(name) + "\" does not exist");
    if (!s->dependents.empty())
      return Status::FailedPrecondition("segment \"" + s->name + "\" is referenced by \"" +
                                        segments_[s->dependents[0]]->name + "\"");
    AdvanceTime();
    const Millis now = clock_->Now();
    std::vector<uint32_t> members(s->members.begin(), s->members.end());
    for (uint32_t pid : members) {
      s->members.remove(pid);
      Emit(*s, pid, false, CauseInfo{Cause::kDeleted, {}, {}, now}, now);
    }
    Unregister(s);
    by_name_.erase(s->name);
    std::vector<uint32_t> hidden = std::move(s->hidden_segments);
    segments_[s->id].reset();
    DeleteHidden(hidden);
    DropUnusedSeries();
    return Status::Ok();
  }

  Result<std::string> Validate(std::string_view text) {
    auto parsed = rules::Parse(text);
    if (!parsed.ok()) return parsed.status();
    Segment probe;
    probe.id = UINT32_MAX;
    probe.expr = std::make_unique<rules::Expr>(std::move(parsed).value());
    dry_run_ = true;
    Status st = CompileInto(&probe);
    dry_run_ = false;
    probe.root = Node{};
    probe.conds.clear();
    DropUnusedSeries();
    if (!st.ok()) return st;
    return rules::Print(*probe.expr);
  }

  Result<uint64_t> Estimate(std::string_view text) {
    AdvanceTime();
    auto parsed = rules::Parse(text);
    if (!parsed.ok()) return parsed.status();
    Segment probe;
    probe.id = UINT32_MAX;
    probe.expr = std::make_unique<rules::Expr>(std::move(parsed).value());
    Status st = CompileInto(&probe);
    uint64_t n = 0;
    if (st.ok()) {
      const Millis now = clock_->Now();
      for (uint32_t pid = 0; pid < profiles_.size(); ++pid) {
        if (store_.erased(pid) || store_.merged(pid)) continue;
        Millis next = kMaxTime;
        if (Eval(probe, pid, now, &next)) ++n;
      }
    }
    probe.root = Node{};
    probe.conds.clear();
    // The hidden segments the probe created (member conditions, top-N rankings) go with it.
    DeleteHidden(std::exchange(pending_hidden_, {}));
    DropUnusedSeries();
    if (!st.ok()) return st;
    return n;
  }

  // --- Queries
  // ------------------------------------------------------------------------------------
  Segment* Find(std::string_view name) const {
    auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : segments_[it->second].get();
  }

  SegmentInfo Info(const Segment& s) const {
    SegmentInfo i;
    i.name = s.name;
    i.definition = s.text;
    i.size = s.members.cardinality();
    i.last_seq = s.seq;
    i.created_at = s.created_at;
    i.updated_at = s.updated_at;
    i.last_change_at = s.last_change_at;
    i.target = s.target;
    return i;
  }

  std::vector<std::string> Members(const Segment& s) const {
    std::vector<std::string> out;
    out.reserve(s.members.cardinality());
    for (uint32_t id : s.members) out.emplace_back(KeyOf(s.target, id));
    std::sort(out.begin(), out.end());
    return out;
  }

  ExplainNode ExplainTree(const Node& n, const EvalContext& ctx, Millis t) const {
    ExplainNode e;
    e.text = rules::Print(*n.expr);
    Millis next = kMaxTime;
    if (n.cond) {
      e.value = n.cond->Eval(ctx, t, &next);
      e.detail = n.cond->Detail(ctx, t);
    } else {
      for (const Node& c : n.children) {
        e.children.push_back(ExplainTree(c, ctx, t));
        if (e.children.back().next_change) next = std::min(next, *e.children.back().next_change);
      }
      switch (n.kind) {
        case rules::Expr::Kind::kAnd:
          e.value = std::all_of(e.children.begin(), e.children.end(),
                                [](const ExplainNode& c) { return c.value; });
          break;
        case rules::Expr::Kind::kOr:
          e.value = std::any_of(e.children.begin(), e.children.end(),
                                [](const ExplainNode& c) { return c.value; });
          break;
        default:
          e.value = !e.children[0].value;
      }
    }
    if (next != kMaxTime) e.next_change = next;
    return e;
  }

  Result<ExplainNode> Explain(std::string_view segment, std::string_view profile) const {
    Segment* s = Find(segment);
    if (!s) return Status::NotFound("segment \"" + std::string(segment) + "\" does not exist");
    if (s->target == SegmentTarget::kAccounts) {
      auto aid = store_.accounts().Find(profile);
      if (!aid || !accounts_.known(*aid))
        return Status::NotFound("account \"" + std::string(profile) + "\" does not exist");
      EvalContext ctx{store_, accounts_.Find(*aid)->state, *aid, is_member_, in_list_, &accounts_};
      return ExplainTree(s->root, ctx, clock_->Now());
    }
    auto pid = FindProfile(profile);
    if (!pid) return Status::NotFound("profile \"" + std::string(profile) + "\" does not exist");
    EvalContext ctx{store_, profiles_[*pid], *pid, is_member_, in_list_, &accounts_};
    return ExplainTree(s->root, ctx, clock_->Now());
  }

  std::vector<std::string> SegmentsOf(std::string_view key, SegmentTarget target) const {
    std::vector<std::string> out;
    auto id = target == SegmentTarget::kAccounts ? store_.accounts().Find(key) : FindProfile(key);
    if (!id) return out;
    for (const auto& s : segments_)
      if (s && !s->hidden && s->target == target && s->members.contains(*id))
        out.push_back(s->name);
    std::sort(out.begin(), out.end());
    return out;
  }

  EngineStats Stats() const {
    EngineStats st;
    st.profiles = store_.live_profiles();
    st.accounts = accounts_.known_count();
    st.records = store_.live_records();
    st.changes = stats_changes_;
    st.timer_fires = timer_fires_;
    st.evaluations = evaluations_;
    st.pending_timers = timers_.size();
    st.store_bytes = store_.MemoryBytes();
    size_t state = profiles_.capacity() * sizeof(ProfileState);
    for (const ProfileState& p : profiles_)
      state += p.traits.capacity() * sizeof(engine::TraitSlot) + p.identifies.capacity() * 4;
    for (const auto& [k, s] : series_) state += s->MemoryBytes();
    state += account_events_.MemoryBytes();
    for (const auto& s : segments_)
      if (s)
        state += s->members.getSizeInBytes() + s->deadline.MemoryBytes() +
                 (s->ranker ? s->ranker->ranking().MemoryBytes() : 0);
    for (const auto& l : lists_)
      if (l) state += l->members.getSizeInBytes() + l->pending.capacity() * sizeof(std::string);
    state += accounts_.MemoryBytes();
    for (const auto& s : segments_)
      if (s && s->computed) state += s->computed->values.MemoryBytes();
    st.state_bytes = state;
    return st;
  }

  const Clock* clock_;
  Options options_;
  size_t backfill_threads_;  // Options::backfill_threads resolved
  store::Store store_;
  std::vector<ProfileState> profiles_;
  engine::Accounts accounts_;
  engine::AccountEvents account_events_;            // the accounts' own events (context.groupId)
  std::vector<std::unique_ptr<Segment>> segments_;  // by id; null once deleted
  absl::flat_hash_map<std::string, uint32_t> by_name_;
  std::vector<Change> changes_;
  std::function<void(const Change&)> listener_;
  std::function<bool(uint32_t, uint32_t)> is_member_;
  std::function<bool(uint32_t, uint32_t)> in_list_;
  std::vector<std::unique_ptr<List>> lists_;  // by id; null once deleted
  absl::flat_hash_map<std::string, uint32_t> list_by_name_;
  // Keys waiting for their first message -> the lists that hold them (List::pending, inverted).
  absl::flat_hash_map<std::string, std::vector<uint32_t>> pending_lists_;

  // Computed traits: name -> segments_ id, the kept value changes and their listener.
  absl::flat_hash_map<std::string, uint32_t> computed_by_name_;
  std::vector<ComputedChange> computed_changes_;
  std::function<void(const ComputedChange&)> computed_listener_;
  // Fires on every change of a computed value, with the trait's segments_ id and the profile,
  // after the new value is stored (ComputedNumber reads it): the hook for ranking by a computed
  // trait. Creating a trait fires nothing (read every value with ComputedNumber then).
  std::function<void(uint32_t trait, uint32_t pid)> computed_hook_;

  // --- Profiles ---------------------------------------------------------------------------------
  Result<std::vector<Field>> Traits(std::string_view profile) const {
    auto pid = FindProfile(profile);
    if (!pid) return Status::NotFound("profile \"" + std::string(profile) + "\" does not exist");
    if (*pid >= profiles_.size()) return std::vector<Field>{};
    return TraitFields(profiles_[*pid]);
  }

  std::vector<Field> TraitFields(const ProfileState& state) const {
    std::vector<Field> out;
    for (const engine::TraitSlot& t : state.traits) {
      Value v;
      v.type = t.value.type;
      switch (t.value.type) {
        case ValueType::kNull:
          continue;  // set to null: cleared
        case ValueType::kBool:
          v.b = t.value.b;
          break;
        case ValueType::kNumber:
          v.num = t.value.num;
          break;
        case ValueType::kString:
        case ValueType::kList:
          v.str = std::string(store_.strings().Get(t.value.str));
          break;
      }
      out.push_back(Field{std::string(store_.keys().Get(t.key)), std::move(v)});
    }
    std::sort(out.begin(), out.end(),
              [](const Field& a, const Field& b) { return a.path < b.path; });
    return out;
  }

  // Exits from every segment first (while the key still names the profile in the changes), then
  // drops every piece of state keyed by the dense id, then tombstones the records and the id.
  // Nothing is re-evaluated: the profile is gone from every segment at once, so a segment that
  // references another (even through `not`) has nothing to recompute for it.
  Status Erase(std::string_view profile) {
    auto found = FindProfile(profile);
    if (!found) return Status::NotFound("profile \"" + std::string(profile) + "\" does not exist");
    AdvanceTime();
    const uint32_t pid = *found;
    const Millis now = clock_->Now();
    std::vector<Segment*> order;
    for (const auto& s : segments_)
      if (s) order.push_back(s.get());
    std::stable_sort(order.begin(), order.end(),
                     [](const Segment* a, const Segment* b) { return a->rank < b->rank; });
    for (Segment* s : order) {
      if (s->target != SegmentTarget::kUsers) continue;
      s->deadline.erase(pid);   // its heap entries are now stale and skipped when popped
      if (s->ranker) continue;  // Unrank, below
      if (!s->members.contains(pid)) continue;
      s->members.remove(pid);
      if (s->hidden)
        accounts_.Adjust(s->id, pid, false);
      else
        Emit(*s, pid, false, CauseInfo{Cause::kErased, {}, {}, now}, now);
    }
    DropComputedValues(pid, CauseInfo{Cause::kErased, {}, {}, now}, now);
    for (auto& [k, se] : series_) se->Erase(pid);
    for (auto& l : lists_)
      if (l) l->members.remove(pid);
    if (pid < profiles_.size()) profiles_[pid] = ProfileState{};
    Unrank(pid, SegmentTarget::kUsers, now);
    // Its events stop counting for the accounts they were sent for: its history is erased.
    std::vector<uint32_t> event_accounts = account_events_.AccountsOfUserEvents(store_, pid);
    store_.EraseProfile(pid);
    account_events_.DropErased(store_, event_accounts);
    // The user's accounts lose a member and the traits of its group calls. An account none of
    // whose group calls is left is no longer known: it exits everything, like an erased profile.
    for (uint32_t aid : accounts_.UnlinkUser(pid)) {
      RebuildAccount(aid);
      if (accounts_.known(aid)) {
        // Its traits may have changed too: its other users, for the segments reading them.
        touched_.clear();
        ++stamp_;
        for (uint32_t seg : acct_segments_) Touch(seg);
        BeginQueue(UINT32_MAX, aid);
        for (uint32_t seg : touched_) queue_.push_back({seg, aid, kNoVia});
        for (const auto& [key, segs] : user_by_account_trait_)
          for (uint32_t seg : segs)
            for (uint32_t u : accounts_.UsersOf(aid)) Push(seg, u, kNoVia);
        Drain(now, CauseInfo{Cause::kErased, {}, {}, now});
        continue;
      }
      for (Segment* s : order) {
        if (s->target != SegmentTarget::kAccounts) continue;
        s->deadline.erase(aid);
        if (s->ranker) continue;  // Unrank, below
        if (!s->members.contains(aid)) continue;
        s->members.remove(aid);
        Emit(*s, aid, false, CauseInfo{Cause::kErased, {}, {}, now}, now);
      }
      DropComputedValues(aid, CauseInfo{Cause::kErased, {}, {}, now}, now,
                         SegmentTarget::kAccounts);
      Unrank(aid, SegmentTarget::kAccounts, now);
    }
    ReevaluateAccounts(event_accounts, now, CauseInfo{Cause::kErased, {}, {}, now});
    return Status::Ok();
  }

  // Takes an id that is no longer known (erased) out of every ranking of `target`. Whoever its
  // leaving pushes across a boundary (R shrank, or it held a top place) is re-evaluated with
  // cause kRank and no cause_ref: an erased key must not appear in other profiles' changes. The
  // id itself has already left every segment.
  void Unrank(uint32_t id, SegmentTarget target, Millis now) {
    touched_.clear();
    ++stamp_;
    BeginQueue(UINT32_MAX, UINT32_MAX);
    std::vector<std::pair<uint32_t, bool>> flips;
    for (const auto& s : segments_) {
      if (!s || !s->ranker || s->target != target) continue;
      s->ranker->ranking().Set(id, {}, std::nullopt);
      s->ranker->ranking().TakeFlips(&flips);
      for (auto [fid, in] : flips) {
        if (in)
          s->members.add(fid);
        else
          s->members.remove(fid);
        if (fid != id) PushDependents(*s, fid);
      }
    }
    Drain(now, CauseInfo{Cause::kRank, {}, {}, now});
  }

  // --- Computed traits (docs/language.md, "Computed traits and scores") ------------------------
  Segment* FindComputed(std::string_view name) const {
    auto it = computed_by_name_.find(std::string(name));
    return it == computed_by_name_.end() ? nullptr : segments_[it->second].get();
  }

  static Status ComputedNotFound(std::string_view name) {
    return Status::NotFound("computed trait \"" + std::string(name) + "\" does not exist");
  }

  // Names are plain identifiers so that `computed.NAME` always reads back as the same name.
  static Status CheckComputedName(std::string_view name) {
    auto start = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; };
    auto rest = [&](char c) {
      return start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '$' || c == '-';
    };
    if (name.empty() || name.size() > 200 || !start(name[0]) ||
        !std::all_of(name.begin(), name.end(), rest))
      return Status::InvalidArgument(
          "computed trait name: must match [A-Za-z_][A-Za-z0-9_$-]* (at most 200 bytes), got \"" +
          std::string(name.substr(0, 200)) + "\"");
    return Status::Ok();
  }

  ComputedTraitInfo ComputedInfo(const Segment& s) const {
    ComputedTraitInfo i;
    i.name = s.computed->name;
    i.definition = s.text;
    i.score = s.computed->def->kind == rules::ComputedDef::Kind::kScore;
    i.last_seq = s.computed->seq;
    i.target = s.target;
    i.created_at = s.created_at;
    i.updated_at = s.updated_at;
    return i;
  }

  // Compiles s->computed->def into s->root: a value source as its only leaf, or a score's terms
  // as the children of an `and` node that is never evaluated as such (ComputeValue sums them).
  Status CompileComputed(Segment* s) {
    // An account computed trait compiles as an account segment does: its events are the
    // account's own (GetSeries), its conditions account conditions.
    compiling_target_ = s->target;
    compiling_name_ = s->name;
    pending_hidden_.clear();
    ComputedState& c = *s->computed;
    s->root = Node{};
    Status st;
    if (c.def->kind != rules::ComputedDef::Kind::kScore) {
      auto src = c.def->kind == rules::ComputedDef::Kind::kValue
                     ? engine::CompileComputedValue(c.def->value, this)
                     : engine::CompileMemberAggValue(c.def->member_agg, this);
      if (src.ok())
        s->root.cond = std::move(src).value();
      else
        st = src.status();
    } else {
      s->root.kind = rules::Expr::Kind::kAnd;
      s->root.children.resize(c.def->terms.size());
      c.points.clear();
      for (size_t i = 0; i < c.def->terms.size() && st.ok(); ++i) {
        st = CompileNode(c.def->terms[i].cond, &s->root.children[i]);
        c.points.push_back(std::llround(c.def->terms[i].points * 1e6));
      }
    }
    compiling_target_ = SegmentTarget::kUsers;
    if (!st.ok()) {
      s->root = Node{};
      DeleteHidden(std::exchange(pending_hidden_, {}));
      DropUnusedSeries();
      return st;
    }
    s->conds.clear();
    CollectConds(s->root, &s->conds);
    return Status::Ok();  // the hidden segments it made (a score's top-N) wait in pending_hidden_
  }

  // The value of computed trait `s` for the profile of `ctx` at t; lowers *next.
  store::StoredValue ComputeValue(const Segment& s, const EvalContext& ctx, Millis t,
                                  Millis* next) const {
    const ComputedState& c = *s.computed;
    if (c.def->kind != rules::ComputedDef::Kind::kScore)
      return static_cast<const engine::ComputedSource*>(s.root.cond.get())->Value(ctx, t, next);
    __int128 sum = 0;  // millionths, as sums of money: 0.1 + 0.2 points is 0.3
    for (size_t i = 0; i < s.root.children.size(); ++i) {
      Millis n = kMaxTime;
      if (EvalNodeCtx(s.root.children[i], ctx, t, &n)) sum += c.points[i];
      *next = std::min(*next, n);
    }
    store::StoredValue v;
    v.type = ValueType::kNumber;
    v.num = sum == 0 ? 0.0 : static_cast<double>(sum) / 1e6;
    return v;
  }

  store::StoredValue ComputeFor(const Segment& s, uint32_t pid, Millis t, Millis* next) const {
    static const ProfileState kEmpty;
    const ProfileState* prof = &kEmpty;
    if (s.target == SegmentTarget::kAccounts) {  // pid is an account id
      if (const engine::Accounts::Account* a = accounts_.Find(pid)) prof = &a->state;
    } else if (pid < profiles_.size()) {
      prof = &profiles_[pid];
    }
    const ProfileState& p = *prof;
    EvalContext ctx{store_, p, pid, is_member_, in_list_, &accounts_};
    return ComputeValue(s, ctx, t, next);
  }

  // Drain's step for a computed trait: recompute, reschedule, and on a change record it and queue
  // the segments (and scores) that read it.
  void DrainComputed(Segment& s, const Item& item, Millis t, const CauseInfo& cause) {
    Millis next = kMaxTime;
    store::StoredValue v = ComputeFor(s, item.id, t, &next);
    Schedule(&s, item.id, next);
    ComputedState& c = *s.computed;
    const store::StoredValue old = c.values.Get(item.id);
    if (old == v) return;
    c.values.Set(item.id, v);
    CauseInfo ci = cause;
    if (item.via != kNoVia && !segments_[item.via]->hidden)
      ci = CauseInfo{Cause::kSegment, segments_[item.via]->name, {}, t};
    EmitComputed(s, item.id, old, v, ci, t);
    PushDependents(s, item.id);
  }

  // The cause fields of a change record (Change, ComputedChange): the event time is the message's
  // for a call, otherwise the instant of the change.
  template <typename Record>
  void SetCause(Record* r, const CauseInfo& cause, Millis t) const {
    r->cause = cause.cause;
    r->cause_ref = std::string(cause.ref);
    r->event = std::string(cause.event);
    r->event_time = cause.cause == Cause::kEvent || cause.cause == Cause::kTraits ||
                            cause.cause == Cause::kGroup
                        ? cause.event_time
                        : t;
    r->processed_at = clock_->Now();
  }

  // A profile that is gone (erased, or merged away) has no computed values: a change to no value
  // for each one it had, then the trait's empty value, which is what a new profile starts from.
  void DropComputedValues(uint32_t pid, const CauseInfo& cause, Millis now,
                          SegmentTarget target = SegmentTarget::kUsers) {
    for (auto& s : segments_) {
      if (!s || !s->computed || s->target != target) continue;
      const store::StoredValue old = s->computed->values.Get(pid);
      if (old.type != ValueType::kNull)
        EmitComputed(*s, pid, old, store::StoredValue{}, cause, now);
      s->computed->values.Set(pid, s->computed->values.empty());
    }
  }

  void EmitComputed(Segment& s, uint32_t pid, const store::StoredValue& old,
                    const store::StoredValue& now_value, const CauseInfo& cause, Millis t) {
    ComputedState& c = *s.computed;
    ++c.seq;
    c.last_change_at = clock_->Now();
    if (computed_hook_) computed_hook_(s.id, pid);
    if (!computed_listener_ && !options_.keep_changes) return;
    ComputedChange ch;
    ch.seq = c.seq;
    ch.trait = c.name;
    ch.profile = std::string(KeyOf(s.target, pid));
    ch.target = s.target;
    ch.old_value = engine::ToValue(old, store_);
    ch.new_value = engine::ToValue(now_value, store_);
    SetCause(&ch, cause, t);
    if (computed_listener_) computed_listener_(ch);
    if (options_.keep_changes) computed_changes_.push_back(std::move(ch));
  }

  // Evaluates every known profile (create, update). On update (`emit`) each changed value is a
  // change with cause definition, and the segments reading the trait are re-evaluated for the
  // changed profiles with cause computed.
  void RecomputeComputed(Segment* s, bool emit) {
    const Millis now = clock_->Now();
    ComputedState& c = *s->computed;
    std::vector<uint32_t> changed;
    const bool accounts = s->target == SegmentTarget::kAccounts;
    const size_t n = accounts ? accounts_.size() : profiles_.size();
    for (uint32_t pid = 0; pid < n; ++pid) {
      // Unknown ids as in Recompute: an erased or merged-away profile, an account with no group
      // call left.
      if (accounts ? !accounts_.known(pid) : store_.erased(pid) || store_.merged(pid)) continue;
      Millis next = kMaxTime;
      store::StoredValue v = ComputeFor(*s, pid, now, &next);
      Schedule(s, pid, next);
      const store::StoredValue old = c.values.Get(pid);
      if (old == v) continue;
      c.values.Set(pid, v);
      if (!emit) continue;
      EmitComputed(*s, pid, old, v, CauseInfo{Cause::kDefinition, {}, {}, now}, now);
      changed.push_back(pid);
    }
    if (s->dependents.empty()) return;
    for (uint32_t pid : changed) {
      touched_.clear();
      ++stamp_;
      BeginQueue(UINT32_MAX, UINT32_MAX);
      PushDependents(*s, pid);
      Drain(now, CauseInfo{Cause::kComputed, c.name, {}, now});
    }
  }

  Result<ComputedTraitInfo> CreateComputed(std::string_view name, std::string_view text,
                                           SegmentTarget target = SegmentTarget::kUsers) {
    SHOAL_RETURN_IF_ERROR(CheckComputedName(name));
    if (FindComputed(name))
      return Status::AlreadyExists("computed trait \"" + std::string(name) + "\" already exists");
    AdvanceTime();
    auto parsed = rules::ParseComputed(text);
    if (!parsed.ok()) return parsed.status();
    auto seg = std::make_unique<Segment>();
    seg->name = "computed." + std::string(name);
    seg->hidden = true;
    seg->target = target;
    seg->computed = std::make_unique<ComputedState>();
    seg->computed->name = std::string(name);
    seg->computed->def = std::make_unique<rules::ComputedDef>(std::move(parsed).value());
    SHOAL_RETURN_IF_ERROR(CompileComputed(seg.get()));
    // After compiling: a score term's top-N condition adds hidden rank segments to segments_.
    seg->id = static_cast<uint32_t>(segments_.size());
    seg->hidden_segments = std::exchange(pending_hidden_, {});
    seg->text = rules::Print(*seg->computed->def);
    seg->created_at = seg->updated_at = clock_->Now();
    seg->computed->values.SetEmpty(engine::EmptyComputedValue(*seg->computed->def, &store_), 0);
    Segment* s = seg.get();
    segments_.push_back(std::move(seg));
    computed_by_name_[s->computed->name] = s->id;
    Register(s);
    RecomputeComputed(s, false);
    return ComputedInfo(*s);
  }

  Result<ComputedTraitInfo> UpdateComputed(std::string_view name, std::string_view text) {
    Segment* s = FindComputed(name);
    if (!s) return ComputedNotFound(name);
    AdvanceTime();
    auto parsed = rules::ParseComputed(text);
    if (!parsed.ok()) return parsed.status();
    Segment probe;
    probe.id = s->id;
    probe.name = s->name;
    probe.hidden = true;
    probe.target = s->target;
    probe.computed = std::make_unique<ComputedState>();
    probe.computed->def = std::make_unique<rules::ComputedDef>(std::move(parsed).value());
    SHOAL_RETURN_IF_ERROR(CompileComputed(&probe));
    std::vector<uint32_t> fresh = std::exchange(pending_hidden_, {});
    if (auto through = DropIfCycle(&probe, s->id, fresh))
      return Status::FailedPrecondition("computed trait \"" + s->computed->name +
                                        "\" would depend on itself through \"" + *through + "\"");
    Unregister(s);
    std::vector<uint32_t> old_hidden = std::exchange(s->hidden_segments, std::move(fresh));
    s->computed->def = std::move(probe.computed->def);
    s->computed->points = std::move(probe.computed->points);
    s->root = std::move(probe.root);
    s->conds = std::move(probe.conds);
    DeleteHidden(old_hidden);  // after the new conditions hold their series
    s->text = rules::Print(*s->computed->def);
    s->updated_at = clock_->Now();
    s->deadline.clear();
    s->computed->values.SetEmpty(
        engine::EmptyComputedValue(*s->computed->def, &store_),
        s->target == SegmentTarget::kAccounts ? accounts_.size() : profiles_.size());
    Register(s);
    DropUnusedSeries();
    RecomputeComputed(s, true);
    return ComputedInfo(*s);
  }

  Status DeleteComputed(std::string_view name) {
    Segment* s = FindComputed(name);
    if (!s) return ComputedNotFound(name);
    if (!s->dependents.empty()) {
      const Segment& dep = *segments_[s->dependents[0]];
      // A member condition's hidden segment carries its owner's name; the owner may be an
      // (account) computed trait, whose hidden name is "computed.NAME".
      const Segment* owner = dep.hidden && !dep.computed && dep.name.starts_with("computed.")
                                 ? FindComputed(std::string_view(dep.name).substr(9))
                                 : nullptr;
      if (owner && std::find(owner->hidden_segments.begin(), owner->hidden_segments.end(),
                             dep.id) == owner->hidden_segments.end())
        owner = nullptr;
      const std::string by = owner          ? "computed trait \"" + owner->computed->name + "\""
                             : dep.computed ? "computed trait \"" + dep.computed->name + "\""
                                            : "segment \"" + dep.name + "\"";
      return Status::FailedPrecondition("computed trait \"" + s->computed->name +
                                        "\" is referenced by " + by);
    }
    AdvanceTime();
    Unregister(s);
    computed_by_name_.erase(s->computed->name);
    std::vector<uint32_t> hidden = std::move(s->hidden_segments);
    segments_[s->id].reset();
    DeleteHidden(hidden);
    DropUnusedSeries();
    return Status::Ok();
  }

  // The current values of the computed traits of `target` for a profile (or an account).
  std::vector<ComputedTraitValue> ComputedValuesOf(
      uint32_t pid, SegmentTarget target = SegmentTarget::kUsers) const {
    std::vector<ComputedTraitValue> out;
    for (const auto& [name, id] : computed_by_name_)
      if (segments_[id]->target == target)
        out.push_back({name, engine::ToValue(segments_[id]->computed->values.Get(pid), store_)});
    std::sort(out.begin(), out.end(), [](const ComputedTraitValue& a, const ComputedTraitValue& b) {
      return a.name < b.name;
    });
    return out;
  }

  // For ranking by a computed trait (top N): the profile's current value of computed trait `id`
  // (a segments_ id, see ComputedRef) if it is a number. O(1).
  std::optional<double> ComputedNumber(uint32_t id, uint32_t pid) const {
    const Segment* s = id < segments_.size() ? segments_[id].get() : nullptr;
    if (!s || !s->computed) return std::nullopt;
    return engine::NumberOf(s->computed->values.Get(pid));
  }

  // Re-evaluates every account segment for each known account of `accounts` in one rank-ordered
  // pass per account (their events changed other than by a new event: erasure).
  void ReevaluateAccounts(const std::vector<uint32_t>& accounts, Millis now,
                          const CauseInfo& cause) {
    for (uint32_t aid : accounts) {
      if (!accounts_.known(aid)) continue;
      touched_.clear();
      ++stamp_;
      for (uint32_t seg : acct_segments_) Touch(seg);
      BeginQueue(UINT32_MAX, aid);
      for (uint32_t seg : touched_) queue_.push_back({seg, aid, kNoVia});
      Drain(now, cause);
    }
  }

  // --- Static lists -----------------------------------------------------------------------------
  List* FindList(std::string_view name) const {
    auto it = list_by_name_.find(std::string(name));
    return it == list_by_name_.end() ? nullptr : lists_[it->second].get();
  }

  static Status ListNotFound(std::string_view name) {
    return Status::NotFound("list \"" + std::string(name) + "\" does not exist");
  }

  Status CreateList(std::string_view name) {
    if (name.empty()) return Status::InvalidArgument("list name: must not be empty");
    if (FindList(name))
      return Status::AlreadyExists("list \"" + std::string(name) + "\" already exists");
    auto l = std::make_unique<List>();
    l->id = static_cast<uint32_t>(lists_.size());
    l->name = std::string(name);
    list_by_name_[l->name] = l->id;
    lists_.push_back(std::move(l));
    return Status::Ok();
  }

  Status DeleteList(std::string_view name) {
    List* l = FindList(name);
    if (!l) return ListNotFound(name);
    if (!l->dependents.empty())
      return Status::FailedPrecondition("list \"" + l->name + "\" is referenced by segment \"" +
                                        segments_[l->dependents[0]]->name + "\"");
    for (const std::string& key : l->pending) {
      auto it = pending_lists_.find(key);
      if (it == pending_lists_.end()) continue;
      std::erase(it->second, l->id);
      if (it->second.empty()) pending_lists_.erase(it);
    }
    list_by_name_.erase(l->name);
    lists_[l->id].reset();
    return Status::Ok();
  }

  // Adds (or removes) keys, then re-evaluates the list's segments for each profile whose
  // membership changed, and nothing else.
  Status ChangeList(std::string_view name, const std::vector<std::string>& keys, bool add) {
    List* l = FindList(name);
    if (!l) return ListNotFound(name);
    for (const std::string& k : keys)
      if (k.empty()) return Status::InvalidArgument("profile key: must not be empty");
    AdvanceTime();
    const Millis now = clock_->Now();
    std::vector<uint32_t> changed;
    for (const std::string& k : keys) {
      std::optional<uint32_t> pid = FindProfile(k);
      if (pid) {
        if (l->members.contains(*pid) == add) continue;
        if (add)
          l->members.add(*pid);
        else
          l->members.remove(*pid);
        changed.push_back(*pid);
      } else if (add) {
        if (l->pending.insert(k).second) pending_lists_[k].push_back(l->id);
      } else if (l->pending.erase(k)) {
        auto it = pending_lists_.find(k);
        std::erase(it->second, l->id);
        if (it->second.empty()) pending_lists_.erase(it);
      }
    }
    for (uint32_t pid : changed) {
      touched_.clear();
      ++stamp_;
      for (uint32_t seg : l->dependents) Touch(seg);
      if (!touched_.empty()) Process(pid, now, CauseInfo{Cause::kList, l->name, {}, now});
    }
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListMembers(std::string_view name) const {
    List* l = FindList(name);
    if (!l) return ListNotFound(name);
    std::vector<std::string> out(l->pending.begin(), l->pending.end());
    for (uint32_t pid : l->members) out.emplace_back(store_.profiles().Get(pid));
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::string> ListNames() const {
    std::vector<std::string> out;
    for (const auto& l : lists_)
      if (l) out.push_back(l->name);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  // --- Compilation and the dependency index -----------------------------------------------------
  Status CompileNode(const rules::Expr& e, Node* out) {
    out->kind = e.kind;
    out->expr = &e;
    if (e.kind == rules::Expr::Kind::kLeaf) {
      auto c = engine::CompileLeaf(e.leaf, this);
      if (!c.ok()) return c.status();
      out->cond = std::move(c).value();
      return Status::Ok();
    }
    out->children.resize(e.children.size());
    for (size_t i = 0; i < e.children.size(); ++i)
      SHOAL_RETURN_IF_ERROR(CompileNode(e.children[i], &out->children[i]));
    return Status::Ok();
  }

  // CompileInto for the segment's target (its name and target set); on failure, drops the hidden
  // segments the compile created. On success they wait in pending_hidden_ for the caller.
  Status CompileTarget(Segment* s) {
    compiling_target_ = s->target;
    compiling_name_ = s->name;
    pending_hidden_.clear();
    Status st = CompileInto(s);
    compiling_target_ = SegmentTarget::kUsers;
    if (!st.ok()) DeleteHidden(std::exchange(pending_hidden_, {}));
    return st;
  }

  Status CompileInto(Segment* s) {
    Status st = CompileNode(*s->expr, &s->root);
    if (!st.ok()) {
      s->root = Node{};
      DeleteHidden(std::exchange(pending_hidden_, {}));
      DropUnusedSeries();
      return st;
    }
    s->conds.clear();
    CollectConds(s->root, &s->conds);
    return Status::Ok();  // the hidden segments it made (a score's top-N) wait in pending_hidden_
  }

  void Register(Segment* s) {
    for (Condition* c : s->conds) {
      for (Series* se : c->series) {
        auto& segs = se->segments;
        if (std::find(segs.begin(), segs.end(), s->id) == segs.end()) segs.push_back(s->id);
      }
      // An account segment's traits are the account's: indexed by RebuildAccountIndex.
      if (s->target == SegmentTarget::kUsers)
        for (uint32_t key : c->trait_keys) {
          auto& segs = by_trait_[key];
          if (std::find(segs.begin(), segs.end(), s->id) == segs.end()) segs.push_back(s->id);
        }
      for (uint32_t ref : c->segment_refs) {
        auto& deps = segments_[ref]->dependents;
        if (std::find(deps.begin(), deps.end(), s->id) == deps.end()) deps.push_back(s->id);
      }
      for (uint32_t l : c->list_refs) {
        auto& deps = lists_[l]->dependents;
        if (std::find(deps.begin(), deps.end(), s->id) == deps.end()) deps.push_back(s->id);
      }
    }
    RecomputeRanks();
    RebuildNewProfileList();
  }

  void Unregister(Segment* s) {
    for (auto& [key, se] : series_) std::erase(se->segments, s->id);
    account_events_.Unregister(s->id);
    for (auto& [key, segs] : by_trait_) std::erase(segs, s->id);
    for (Condition* c : s->conds)
      for (uint32_t ref : c->segment_refs)
        if (segments_[ref]) std::erase(segments_[ref]->dependents, s->id);
    for (Condition* c : s->conds)
      for (uint32_t l : c->list_refs)
        if (lists_[l]) std::erase(lists_[l]->dependents, s->id);
    s->root = Node{};
    s->conds.clear();
    s->on_new_profile = false;
    RebuildNewProfileList();
  }

  // Which segments a profile seen for the first time must be evaluated against, even when its
  // first message touches none of their dependencies: those an empty profile satisfies, those
  // with a bucket (no fixed answer for an empty profile), and those referencing any of these.
  // Also the segments that every identify re-evaluates.
  void RebuildNewProfileList() {
    std::vector<Segment*> order;
    for (const auto& s : segments_)
      if (s && s->target == SegmentTarget::kUsers) order.push_back(s.get());
    std::sort(order.begin(), order.end(),
              [](const Segment* a, const Segment* b) { return a->rank < b->rank; });
    RebuildAccountIndex();
    ProfileState empty;
    std::function<bool(uint32_t, uint32_t)> empty_member = [](uint32_t, uint32_t) { return false; };
    // An empty profile is in no list: a key pending in a list touches the list's segments itself
    // on its first message (Ingest), so `in list` alone does not put a segment here.
    EvalContext ctx{store_, empty, UINT32_MAX, empty_member, empty_member};
    new_profile_segments_.clear();
    every_identify_segments_.clear();
    for (Segment* s : order) {
      bool flag = false;
      for (Condition* c : s->conds) {
        if (c->series.empty() && c->trait_keys.empty() && c->segment_refs.empty() &&
            c->list_refs.empty() && !c->every_identify && c->account_trait_keys.empty())
          flag = true;  // a bucket
        for (uint32_t ref : c->segment_refs)
          if (segments_[ref] && segments_[ref]->target == SegmentTarget::kUsers &&
              segments_[ref]->on_new_profile)
            flag = true;
        if (c->every_identify &&
            std::find(every_identify_segments_.begin(), every_identify_segments_.end(), s->id) ==
                every_identify_segments_.end())
          every_identify_segments_.push_back(s->id);
      }
      Millis next = kMaxTime;
      if (s->computed && s->conds.empty()) continue;  // being replaced (Unregister)
      if (s->computed) {  // a value default-fills with its empty value; a score may differ
        s->on_new_profile =
            flag || (s->computed->def->kind == rules::ComputedDef::Kind::kScore &&
                     !(ComputeValue(*s, ctx, clock_->Now(), &next) == s->computed->values.empty()));
        if (s->on_new_profile) new_profile_segments_.push_back(s->id);
        continue;
      }
      s->on_new_profile =
          flag || (!s->conds.empty() && EvalNodeCtx(s->root, ctx, clock_->Now(), &next));
      if (s->on_new_profile) new_profile_segments_.push_back(s->id);
    }
  }

  // What a group call can change -> the segments to re-evaluate (IngestGroup). Rebuilt whenever
  // a definition changes, which is rare next to messages.
  void RebuildAccountIndex() {
    acct_by_trait_.clear();
    acct_every_group_.clear();
    acct_member_segments_.clear();
    acct_segments_.clear();
    user_by_account_trait_.clear();
    user_link_segments_.clear();
    auto add = [](std::vector<uint32_t>* v, uint32_t id) {
      if (std::find(v->begin(), v->end(), id) == v->end()) v->push_back(id);
    };
    for (const auto& s : segments_) {
      if (!s || s->conds.empty()) continue;
      const bool account = s->target == SegmentTarget::kAccounts;
      if (account) acct_segments_.push_back(s->id);
      for (Condition* c : s->conds) {
        if (account) {
          for (uint32_t key : c->trait_keys) add(&acct_by_trait_[key], s->id);
          if (c->every_identify) add(&acct_every_group_, s->id);
          if (c->member_links) add(&acct_member_segments_, s->id);
        } else {
          for (uint32_t key : c->account_trait_keys) add(&user_by_account_trait_[key], s->id);
          if (c->account_links) add(&user_link_segments_, s->id);
        }
      }
    }
  }

  // rank = 1 + the highest rank among referenced segments. Memoized: references form a DAG in
  // which a segment can be reached along many paths.
  void RecomputeRanks() {
    std::vector<int> memo(segments_.size(), -1);
    std::function<int(Segment*)> rank = [&](Segment* s) {
      if (memo[s->id] >= 0) return memo[s->id];
      int r = 0;
      for (Condition* c : s->conds)
        for (uint32_t ref : c->segment_refs)
          if (segments_[ref]) r = std::max(r, 1 + rank(segments_[ref].get()));
      return memo[s->id] = s->rank = r;
    };
    for (auto& s : segments_)
      if (s) rank(s.get());
  }

  // Whether segment `from` depends, directly or not, on segment `target`.
  bool Reaches(uint32_t from, uint32_t target) const {
    std::vector<bool> seen(segments_.size(), false);
    std::vector<uint32_t> stack = {from};
    while (!stack.empty()) {
      uint32_t id = stack.back();
      stack.pop_back();
      if (id == target) return true;
      if (seen[id] || !segments_[id]) continue;
      seen[id] = true;
      for (Condition* c : segments_[id]->conds)
        for (uint32_t ref : c->segment_refs) stack.push_back(ref);
    }
    return false;
  }

  void DropUnusedSeries() {
    for (auto it = series_.begin(); it != series_.end();) {
      Series* s = it->second.get();
      bool used = !s->segments.empty();
      if (!used) {
        for (const auto& seg : segments_) {
          if (!seg) continue;
          for (Condition* c : seg->conds)
            if (std::find(c->series.begin(), c->series.end(), s) != c->series.end()) used = true;
        }
      }
      if (used) {
        ++it;
        continue;
      }
      if (s->name() < series_by_name_.size()) std::erase(series_by_name_[s->name()], s);
      series_.erase(it++);
    }
    if (!account_events_.empty())
      account_events_.DropUnused([&](const Series* s) {
        for (const auto& seg : segments_)
          if (seg)
            for (Condition* c : seg->conds)
              if (std::find(c->series.begin(), c->series.end(), s) != c->series.end()) return true;
        return false;
      });
  }

  // Builds a new series from the retained history: the store's per-name record list gives the
  // candidates in record order, so only their columns are read, front to back, and never the
  // whole name column (see Series::Build).
  void Backfill(Series* s) {
    const store::RecordList& records = store_.records_named(s->name());
    const size_t parts = engine::Parts(records.size(), BackfillThreads(), options_.backfill_grain);
    const Millis cutoff = s->Cutoff(clock_->Now());
    if (parts <= 1) return s->Build(records, store_, &backfill_count_, cutoff);
    s->BuildParallel(records, store_, parts, &backfill_scratch_, &backfill_pool_, cutoff);
  }

  // Options::backfill_threads resolved: 0 is the hardware threads, at most 4.
  size_t BackfillThreads() const { return backfill_threads_; }

  // --- Evaluation -------------------------------------------------------------------------------
  // Short-circuits: the deciding child's next change is when the result can next change.
  bool EvalNodeCtx(const Node& n, const EvalContext& ctx, Millis t, Millis* next) const {
    switch (n.kind) {
      case rules::Expr::Kind::kLeaf:
        return n.cond->Eval(ctx, t, next);
      case rules::Expr::Kind::kNot:
        return !EvalNodeCtx(n.children[0], ctx, t, next);
      case rules::Expr::Kind::kAnd:
      case rules::Expr::Kind::kOr: {
        const bool is_and = n.kind == rules::Expr::Kind::kAnd;
        Millis all = kMaxTime;
        for (const Node& c : n.children) {
          Millis cn = kMaxTime;
          bool v = EvalNodeCtx(c, ctx, t, &cn);
          if (v != is_and) {  // false under and, true under or: decides the result
            *next = std::min(*next, cn);
            return v;
          }
          all = std::min(all, cn);
        }
        *next = std::min(*next, all);
        return is_and;
      }
    }
    return false;
  }

  // `id` is a profile, or an account for an account segment.
  bool Eval(const Segment& s, uint32_t id, Millis t, Millis* next) const {
    static const ProfileState kEmpty;
    const ProfileState* p = &kEmpty;
    if (s.target == SegmentTarget::kAccounts) {
      if (const engine::Accounts::Account* a = accounts_.Find(id)) p = &a->state;
    } else if (id < profiles_.size()) {
      p = &profiles_[id];
    }
    EvalContext ctx{store_, *p, id, is_member_, in_list_, &accounts_};
    return EvalNodeCtx(s.root, ctx, t, next);
  }

  std::string_view KeyOf(SegmentTarget target, uint32_t id) const {
    return target == SegmentTarget::kAccounts ? store_.accounts().Get(id)
                                              : store_.profiles().Get(id);
  }

  void Touch(uint32_t seg) {
    if (seg_stamp_.size() <= seg) seg_stamp_.resize(seg + 1, 0);
    if (seg_stamp_[seg] == stamp_) return;
    seg_stamp_[seg] = stamp_;
    touched_.push_back(seg);
  }

  // Re-evaluates the touched segments (all of `target`) for one profile or account at instant t,
  // lowest rank first, and the segments that reference any that changed. Inlined: g++ stops
  // inlining it into Ingest once AdvanceTime grows by a few lines, and the call and its
  // out-of-line queue_.push_back then cost 1 % of the replay's instructions (callgrind).
  [[gnu::always_inline]] void Process(uint32_t id, Millis t, const CauseInfo& cause,
                                      SegmentTarget target = SegmentTarget::kUsers) {
    if (target == SegmentTarget::kUsers)
      BeginQueue(id, UINT32_MAX);
    else
      BeginQueue(UINT32_MAX, id);
    for (uint32_t seg : touched_) queue_.push_back({seg, id, kNoVia});
    Drain(t, cause);
  }

  // Starts a pass. Items of the current stamp's touched segments for `user` (user segments) and
  // `account` (account segments) are deduplicated by seg_stamp_ (Touch); every other item, which
  // only exists when a change crosses from users to accounts or back, through queued_.
  void BeginQueue(uint32_t user, uint32_t account) {
    queue_.clear();
    primary_[0] = user;
    primary_[1] = account;
    if (!queued_.empty()) queued_.clear();
  }

  void Push(uint32_t seg, uint32_t id, uint32_t via, bool rank = false) {
    if (id == primary_[static_cast<int>(segments_[seg]->target)]) {
      if (seg_stamp_.size() <= seg) seg_stamp_.resize(seg + 1, 0);
      if (seg_stamp_[seg] == stamp_) return;
      seg_stamp_[seg] = stamp_;
    } else if (!queued_.insert(uint64_t{seg} << 32 | id).second) {
      return;
    }
    queue_.push_back({seg, id, via, rank});
    if (draining_) std::push_heap(queue_.begin(), queue_.end(), ByRank());
  }

  // Heap order of Items: the lowest rank on top.
  struct RankOrder {
    const Impl* impl;
    bool operator()(const Item& a, const Item& b) const {
      return impl->segments_[a.seg]->rank > impl->segments_[b.seg]->rank;
    }
  };
  RankOrder ByRank() const { return RankOrder{this}; }

  // The segments that read segment s see id's change: the same id for a segment of the same
  // target, the user's accounts for an account segment reading a user segment (a member
  // condition), the account's users for a user segment reading an account segment.
  void PushDependents(const Segment& s, uint32_t id, bool rank = false) {
    for (uint32_t dep : s.dependents) {
      SegmentTarget dt = segments_[dep]->target;
      if (dt == s.target)
        Push(dep, id, s.id, rank);
      else if (dt == SegmentTarget::kAccounts)
        for (uint32_t a : accounts_.AccountsOf(id)) Push(dep, a, s.id);
      else
        for (uint32_t u : accounts_.UsersOf(id)) Push(dep, u, s.id);
    }
  }

  // Evaluates the queued items in rank order. Ranks are global across users and accounts (a
  // member condition ranks above its hidden segment, `account in segment` above the account
  // segment), so an item is evaluated only after everything it reads, for every id, is current.
  void Drain(Millis t, const CauseInfo& cause) {
    auto by_rank = ByRank();
    std::make_heap(queue_.begin(), queue_.end(), by_rank);
    draining_ = true;
    while (!queue_.empty()) {
      std::pop_heap(queue_.begin(), queue_.end(), by_rank);
      Item item = queue_.back();
      queue_.pop_back();
      Segment& s = *segments_[item.seg];
      if (s.ranker) {
        EvalRanker(s, item, t);
        continue;
      }
      Millis next = kMaxTime;
      ++evaluations_;
      if (s.computed) {
        DrainComputed(s, item, t, cause);
        continue;
      }
      if (s.member_value) {
        DrainMemberValue(s, item, t);
        continue;
      }
      bool in = Eval(s, item.id, t, &next);
      Schedule(&s, item.id, next);
      if (in == s.members.contains(item.id)) continue;
      if (in)
        s.members.add(item.id);
      else
        s.members.remove(item.id);
      if (s.hidden) {
        accounts_.Adjust(s.id, item.id, in);
      } else {
        // A segment reached only because a segment it references changed names that one; an
        // account reached through a member condition keeps the cause of its member's change.
        CauseInfo c = cause;
        if (item.via != kNoVia && !segments_[item.via]->hidden)
          c = CauseInfo{Cause::kSegment, segments_[item.via]->name, {}, t};
        // Moved by another profile's change: `rank`, naming the call that made it (its
        // messageId), never the other profile's key, which would outlive that profile's erasure
        // in this profile's change records.
        if (item.rank)
          c = CauseInfo{Cause::kRank,
                        cause.cause == Cause::kEvent || cause.cause == Cause::kTraits ||
                                cause.cause == Cause::kGroup
                            ? cause.ref
                            : std::string_view(),
                        cause.event, t};
        Emit(s, item.id, in, c, t);
      }
      PushDependents(s, item.id);
    }
    draining_ = false;
  }

  // Keeps exactly one live deadline per (segment, profile): the instant its truth next changes.
  // A timer is pushed only for a new deadline or one before its anchor (DeadlineMap::Set); a
  // superseded heap entry stays until popped and is skipped then (see AdvanceTime).
  void Schedule(Segment* s, uint32_t pid, Millis next) {
    if (next == kMaxTime) {
      s->deadline.erase(pid);
      return;
    }
    if (s->deadline.Set(pid, next)) timers_.push(Timer{next, s->id, pid});
  }

  // Superseded timers stay in the heap until popped; rebuild it when they dominate.
  void MaybeCompactTimers() {
    if (timers_.size() < compact_at_) return;
    size_t live = 0;
    for (const auto& s : segments_)
      if (s) live += s->deadline.size();
    compact_at_ = std::max<size_t>(1'000'000, 4 * live);
    if (timers_.size() < compact_at_) return;
    std::vector<Timer> v;
    v.reserve(live);
    for (const auto& s : segments_)
      if (s) {
        s->deadline.ForEach([&](uint32_t pid, Millis at) { v.push_back({at, s->id, pid}); });
        s->deadline.AnchorAll();
      }
    timers_ = decltype(timers_)(std::greater<Timer>(), std::move(v));
  }

  // Whether a from-scratch evaluation covers this id. Unknown: an erased profile (a tombstone: its
  // history is gone), a merged-away one (its survivor answers for it), an account whose group
  // calls were all erased.
  bool Known(uint32_t id, bool account) const {
    return account ? accounts_.known(id) : !store_.erased(id) && !store_.merged(id);
  }

  // Evaluates every known profile from scratch (create, update) and emits the differences.
  void Recompute(Segment* s, Cause cause) {
    if (s->ranker) return RecomputeRanker(s);
    const Millis now = clock_->Now();
    Roaring next_members;
    const bool accounts = s->target == SegmentTarget::kAccounts;
    const size_t n = accounts ? accounts_.size() : profiles_.size();
    // Ranges of at least a grain, several per thread: each thread claims the next range when it
    // is free, so uneven ranges and a thread the machine does not run in time even out.
    const size_t parts = engine::Parts(n, 8 * BackfillThreads(), options_.backfill_grain);
    if (BackfillThreads() > 1 && parts > 1) {
      RecomputeParallel(s, now, n, parts, &next_members);
    } else {
      for (uint32_t id = 0; id < n; ++id) {
        if (!Known(id, accounts)) continue;
        Millis next = kMaxTime;
        if (Eval(*s, id, now, &next)) next_members.add(id);
        Schedule(s, id, next);
      }
    }
    Roaring entered = next_members - s->members;
    Roaring exited = s->members - next_members;
    s->members = std::move(next_members);
    s->members.runOptimize();
    CauseInfo c{cause, {}, {}, now};
    for (uint32_t id : entered)
      s->hidden ? accounts_.Adjust(s->id, id, true) : Emit(*s, id, true, c, now);
    for (uint32_t id : exited)
      s->hidden ? accounts_.Adjust(s->id, id, false) : Emit(*s, id, false, c, now);
    // Segments that reference this one see the changed profiles.
    Roaring changed = entered | exited;
    if (s->dependents.empty()) return;
    for (uint32_t id : changed) {
      touched_.clear();
      ++stamp_;
      BeginQueue(UINT32_MAX, UINT32_MAX);
      PushDependents(*s, id);
      Drain(now, CauseInfo{Cause::kSegment, s->name, {}, now});
    }
  }

  // A hidden value segment's item (engine/member_agg.h): the user's membership in the filter C
  // and its contribution to the aggregates of its accounts. When the contribution changes, the
  // account segments reading it see the user's accounts (PushDependents), with the cause of the
  // user's change (the segment is hidden), at instant t: a computed value that drops at a window
  // boundary moves the account at that same millisecond.
  void DrainMemberValue(Segment& s, const Item& item, Millis t) {
    Millis next = kMaxTime;
    const bool in = Eval(s, item.id, t, &next);
    Schedule(&s, item.id, next);
    if (in)
      s.members.add(item.id);
    else
      s.members.remove(item.id);
    if (accounts_.aggregates().Set(s.id, item.id, in ? MemberValueOf(s, item.id) : std::nullopt,
                                   accounts_.AccountsOf(item.id)))
      PushDependents(s, item.id);
  }

  std::optional<double> MemberValueOf(const Segment& s, uint32_t pid) const {
    static const ProfileState kEmpty;
    const ProfileState& p = pid < profiles_.size() ? profiles_[pid] : kEmpty;
    EvalContext ctx{store_, p, pid, is_member_, in_list_, &accounts_};
    return s.member_value->Value(ctx);
  }

  // Evaluates every known user for a new hidden value segment, which nothing references yet.
  void RecomputeMemberValue(Segment* s) {
    const Millis now = clock_->Now();
    for (uint32_t id = 0; id < profiles_.size(); ++id) {
      if (!Known(id, /*account=*/false)) continue;
      Millis next = kMaxTime;
      const bool in = Eval(*s, id, now, &next);
      Schedule(s, id, next);
      if (in) s->members.add(id);
      accounts_.aggregates().Set(s->id, id, in ? MemberValueOf(*s, id) : std::nullopt,
                                 accounts_.AccountsOf(id));
    }
    s->members.runOptimize();
  }

  // Recompute's evaluation of profiles (or accounts) [0, n) in `parts` ranges on the backfill
  // threads. Evaluation only reads (the store, profile states, series, other segments' members,
  // the account graph), so each range is evaluated into results of its own: its members and the
  // (id, next) pairs to schedule. They are merged on this thread in id order, so the members,
  // deadlines and timer pushes are those of the one-thread loop in Recompute: the pairs it skips
  // are the ones whose Schedule would do nothing (no next change, and no earlier deadline to
  // drop). When the segment has no deadline yet (create, update), evaluation reads nothing that
  // Schedule writes, so this thread merges the finished ranges in order between its own ranges
  // while the workers still evaluate theirs.
  void RecomputeParallel(Segment* s, Millis now, size_t n, size_t parts, Roaring* members) {
    struct Part {
      std::vector<uint32_t> in;
      std::vector<std::pair<uint32_t, Millis>> next;
      std::atomic<bool> done{false};
    };
    std::vector<Part> results(parts);
    const bool accounts = s->target == SegmentTarget::kAccounts;
    const bool had_deadlines = !s->deadline.empty();
    const std::thread::id caller = std::this_thread::get_id();
    size_t merged = 0;  // ranges merged so far (touched by this thread only)
    auto merge_done = [&] {
      while (merged < parts && results[merged].done.load(std::memory_order_acquire)) {
        Part& r = results[merged++];
        members->addMany(r.in.size(), r.in.data());
        for (auto [id, next] : r.next) Schedule(s, id, next);
      }
    };
    backfill_pool_.Run(parts, [&](size_t part) {
      Part& r = results[part];
      auto [lo, hi] = engine::PartRange(n, parts, part);
      for (uint32_t id = static_cast<uint32_t>(lo); id < hi; ++id) {
        if (!Known(id, accounts)) continue;
        Millis next = kMaxTime;
        if (Eval(*s, id, now, &next)) r.in.push_back(id);
        if (next != kMaxTime || (had_deadlines && s->deadline.contains(id)))
          r.next.emplace_back(id, next);
      }
      r.done.store(true, std::memory_order_release);
      if (!had_deadlines && std::this_thread::get_id() == caller) merge_done();
    });
    merge_done();  // every range is done now
  }

  // Ranks every known profile (or account) of a new rank segment, which nothing references yet.
  void RecomputeRanker(Segment* s) {
    const Millis now = clock_->Now();
    const bool accounts = s->target == SegmentTarget::kAccounts;
    const size_t n = accounts ? accounts_.size() : profiles_.size();
    engine::Ranking& r = s->ranker->ranking();
    for (uint32_t id = 0; id < n; ++id) {
      if (!Known(id, accounts)) continue;
      Millis next = kMaxTime;
      std::optional<double> v = RankValue(*s, id, now, &next);
      Schedule(s, id, next);
      r.Set(id, KeyOf(s->target, id), v);
    }
    std::vector<std::pair<uint32_t, bool>> flips;
    r.TakeFlips(&flips);
    for (auto [id, in] : flips) in ? s->members.add(id) : s->members.remove(id);
  }

  std::optional<double> RankValue(const Segment& s, uint32_t id, Millis t, Millis* next) const {
    static const ProfileState kEmpty;
    const ProfileState* p = &kEmpty;
    if (s.target == SegmentTarget::kAccounts) {
      if (const engine::Accounts::Account* a = accounts_.Find(id)) p = &a->state;
    } else if (id < profiles_.size()) {
      p = &profiles_[id];
    }
    EvalContext ctx{store_, *p, id, is_member_, in_list_, &accounts_};
    return s.ranker->source().Value(ctx, t, next);
  }

  // A rank segment's items in a pass: every queued item of the segment (all of one rank, so none
  // can be queued later in the pass) moves its profile in the ranking first; the boundary is read
  // once after, and the profiles that changed sides reach the dependents. A profile moved by
  // another's change gets cause kRank.
  void EvalRanker(Segment& s, const Item& first, Millis t) {
    std::vector<uint32_t> ids = {first.id};
    size_t before = queue_.size();
    for (size_t k = 0; k < queue_.size();) {
      if (queue_[k].seg == s.id) {
        ids.push_back(queue_[k].id);
        queue_[k] = queue_.back();
        queue_.pop_back();
      } else {
        ++k;
      }
    }
    if (queue_.size() != before) std::make_heap(queue_.begin(), queue_.end(), ByRank());
    engine::Ranking& r = s.ranker->ranking();
    for (uint32_t id : ids) {
      Millis next = kMaxTime;
      ++evaluations_;
      std::optional<double> v = RankValue(s, id, t, &next);
      Schedule(&s, id, next);
      r.Set(id, KeyOf(s.target, id), v);
    }
    r.TakeFlips(&flips_);
    for (auto [id, in] : flips_) {
      if (in)
        s.members.add(id);
      else
        s.members.remove(id);
      bool own = std::find(ids.begin(), ids.end(), id) != ids.end();
      PushDependents(s, id, /*rank=*/!own);
    }
  }

  void Emit(Segment& s, uint32_t pid, bool enter, const CauseInfo& cause, Millis t) {
    ++stats_changes_;
    ++s.seq;
    s.last_change_at = clock_->Now();
    if (!listener_ && !options_.keep_changes) return;
    Change c;
    c.seq = s.seq;
    c.segment = s.name;
    c.profile = std::string(KeyOf(s.target, pid));
    c.target = s.target;
    c.kind = enter ? ChangeKind::kEnter : ChangeKind::kExit;
    SetCause(&c, cause, t);
    if (listener_) listener_(c);
    if (options_.keep_changes) changes_.push_back(std::move(c));
  }

  // Rebuilds an account's traits from its group calls that are not erased (EraseProfile); the
  // account is unknown once none is left.
  void RebuildAccount(uint32_t aid) {
    engine::Accounts::Account& a = accounts_.Get(aid);
    std::vector<uint32_t> records = std::move(a.state.identifies);
    a.state = ProfileState{};
    for (uint32_t idx : records) {
      if (store_.kind(idx) != store::RecordKind::kGroup) continue;
      a.state.identifies.push_back(idx);
      for (const store::PropEntry p : store_.props(idx))
        ApplyTrait(&a.state, p.key(), p.value(), store_.ts(idx), idx);
    }
    a.known = !a.state.identifies.empty();
  }

  void ApplyTrait(ProfileState* p, uint32_t key, const store::StoredValue& v, Millis ts,
                  uint32_t idx) {
    auto it = std::lower_bound(p->traits.begin(), p->traits.end(), key,
                               [](const engine::TraitSlot& s, uint32_t k) { return s.key < k; });
    if (it != p->traits.end() && it->key == key) {
      if (ts < it->ts) return;  // a late identify does not override a newer value
      it->value = v;
      it->ts = ts;
      it->idx = idx;
    } else {
      p->traits.insert(it, engine::TraitSlot{key, idx, ts, v});
    }
  }

  // Converts a message's fields into sorted PropEntries in props_. Errors when a new property
  // path would not fit the 24-bit key of a PropEntry (16.7M distinct paths), and when the
  // message has more fields than one record holds (store::kMaxProps).
  Status ToProps(const Message& msg) {
    props_.clear();
    const std::vector<Field>& fields =
        msg.type == MessageType::kIdentify || msg.type == MessageType::kGroup ? msg.traits
                                                                              : msg.properties;
    if (fields.size() >= store::kMaxProps)  // >=: a page or screen call may add its name
      return Status::InvalidArgument(
          std::string("field '") + (&fields == &msg.traits ? "traits" : "properties") +
          "': " + std::to_string(fields.size()) + " properties; a message may have at most " +
          std::to_string(store::kMaxProps - 1));
    // Hash every string value and prefetch its pool slot before interning any (see
    // StringPool::Prefetch): order ids and product ids miss the cache at full size.
    value_hashes_.clear();
    for (const Field& f : fields)
      if (f.value.type == ValueType::kString || f.value.type == ValueType::kList) {
        value_hashes_.push_back(store::StringPool::Hash(f.value.str));
        store_.strings().Prefetch(value_hashes_.back());
      }
    size_t next_hash = 0;
    for (const Field& f : fields) {
      store::StoredValue v;
      v.type = f.value.type;
      switch (f.value.type) {
        case ValueType::kNull:
          break;
        case ValueType::kBool:
          v.b = f.value.b;
          break;
        case ValueType::kNumber:
          v.num = f.value.num;
          break;
        case ValueType::kString:
        case ValueType::kList:
          v.str = store_.strings().Intern(f.value.str, value_hashes_[next_hash++]);
          break;
      }
      uint32_t key = key_cache_.Intern(&store_.keys(), f.path);
      if (key > store::PropEntry::kMaxKey)
        return Status::InvalidArgument("field '" + f.path +
                                       "': too many distinct property and trait names (the limit "
                                       "is 16,777,215); is an id part of a property name?");
      props_.push_back(store::PropEntry::Make(key, v));
    }
    if ((msg.type == MessageType::kPage || msg.type == MessageType::kScreen) && !msg.name.empty()) {
      store::StoredValue v;
      v.type = ValueType::kString;
      v.str = store_.strings().Intern(msg.name);
      uint32_t key = store_.keys().Intern("name");
      bool present = false;
      for (const auto& p : props_) present = present || p.key() == key;
      if (!present) props_.push_back(store::PropEntry::Make(key, v));
    }
    // Sorted by key, one entry a key, the last one winning: an insertion sort in place (a message
    // has a handful of fields, usually in the order their keys were first seen). props_[0, out)
    // is done; out <= i, so what it overwrites was read already.
    size_t out = props_.empty() ? 0 : 1;
    for (size_t i = 1; i < props_.size(); ++i) {
      const store::PropEntry e = props_[i];
      const uint32_t k = e.key();
      size_t j = out;
      while (j > 0 && props_[j - 1].key() > k) --j;
      if (j > 0 && props_[j - 1].key() == k) {
        props_[j - 1] = e;  // a later field of the same path wins
        continue;
      }
      for (size_t m = out; m > j; --m) props_[m] = props_[m - 1];
      props_[j] = e;
      ++out;
    }
    props_.resize(out);
    return Status::Ok();
  }

  bool dry_run_ = false;
  absl::flat_hash_map<std::string, std::unique_ptr<Series>> series_;
  std::vector<std::vector<Series*>> series_by_name_;
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> by_trait_;
  std::vector<uint32_t> new_profile_segments_;
  std::vector<uint32_t> every_identify_segments_;
  // Mutable: NextDeadline() drops superseded entries from the top.
  mutable std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  std::vector<uint32_t> touched_;
  std::vector<Item> queue_;                         // Drain() scratch
  uint32_t primary_[2] = {UINT32_MAX, UINT32_MAX};  // BeginQueue(): by SegmentTarget
  absl::flat_hash_set<uint64_t> queued_;            // (segment, id) queued other than primary_
  bool draining_ = false;
  // Accounts: the graph and per-account state, and the indexes from what a group call changes to
  // the segments it can change (RebuildAccountIndex).
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> acct_by_trait_;  // account segments
  std::vector<uint32_t> acct_every_group_;      // account segments with trait history
  std::vector<uint32_t> acct_member_segments_;  // account segments with member conditions
  std::vector<uint32_t> acct_segments_;         // every account segment (for a new account)
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> user_by_account_trait_;  // account.TRAIT
  std::vector<uint32_t> user_link_segments_;  // user segments reading the user's accounts
  SegmentTarget compiling_target_ = SegmentTarget::kUsers;
  std::string compiling_name_;
  std::vector<uint32_t> pending_hidden_;  // hidden segments created by the compile in progress
  std::vector<uint64_t> seg_stamp_;
  uint64_t stamp_ = 0;
  size_t compact_at_ = 1'000'000;
  uint64_t stats_changes_ = 0, timer_fires_ = 0, evaluations_ = 0;
  std::vector<store::PropEntry> props_;
  std::vector<uint64_t> value_hashes_;            // ToProps() scratch
  std::vector<uint32_t> backfill_count_;          // Backfill(): reused between series builds
  Series::BuildScratch backfill_scratch_;         // the same, for a build on several threads
  engine::WorkerPool backfill_pool_;              // Options::backfill_threads - 1 workers
  std::vector<std::pair<uint32_t, bool>> flips_;  // EvalRanker() scratch
  InternCache name_cache_, key_cache_;
  ingest::Decoder decoder_;
  Message scratch_msg_;
};

Engine::Engine(const Clock* clock, Options options)
    : impl_(std::make_unique<Impl>(clock, options)) {}
Engine::~Engine() = default;

Status Engine::Ingest(const Message& msg) { return impl_->Ingest(msg); }
void Engine::Prefetch(const Message& msg) const { impl_->Prefetch(msg); }
Status Engine::IngestJson(std::string_view json) { return impl_->IngestJson(json); }
size_t Engine::AdvanceTime() { return impl_->AdvanceTime(); }
std::optional<Millis> Engine::NextDeadline() const { return impl_->NextDeadline(); }

Result<SegmentInfo> Engine::CreateSegment(std::string_view name, std::string_view definition) {
  return impl_->Create(name, definition);
}
Result<SegmentInfo> Engine::CreateSegment(std::string_view name, std::string_view definition,
                                          SegmentTarget target) {
  return impl_->Create(name, definition, target);
}
Result<SegmentInfo> Engine::UpdateSegment(std::string_view name, std::string_view definition) {
  return impl_->Update(name, definition);
}
Status Engine::DeleteSegment(std::string_view name) { return impl_->Delete(name); }

bool Engine::HasProfile(std::string_view profile) const {
  return impl_->store_.profiles().Find(profile).has_value();
}
Result<std::string> Engine::SurvivorOf(std::string_view profile) const {
  auto pid = impl_->FindProfile(profile);
  if (!pid) return Status::NotFound("profile \"" + std::string(profile) + "\" does not exist");
  return std::string(impl_->store_.profiles().Get(*pid));
}
std::vector<std::string> Engine::KeysOf(std::string_view profile) const {
  std::vector<std::string> out;
  auto pid = impl_->FindProfile(profile);
  if (!pid) return out;
  out.emplace_back(impl_->store_.profiles().Get(*pid));
  for (uint32_t id : impl_->store_.merged_ids(*pid))
    out.emplace_back(impl_->store_.profiles().Get(id));
  return out;
}
Result<std::vector<Field>> Engine::Traits(std::string_view profile) const {
  return impl_->Traits(profile);
}
Status Engine::EraseProfile(std::string_view profile) { return impl_->Erase(profile); }

Status Engine::CreateList(std::string_view name) { return impl_->CreateList(name); }
Status Engine::DeleteList(std::string_view name) { return impl_->DeleteList(name); }
Status Engine::AddToList(std::string_view name, const std::vector<std::string>& profiles) {
  return impl_->ChangeList(name, profiles, true);
}
Status Engine::RemoveFromList(std::string_view name, const std::vector<std::string>& profiles) {
  return impl_->ChangeList(name, profiles, false);
}
Result<std::vector<std::string>> Engine::ListMembers(std::string_view name) const {
  return impl_->ListMembers(name);
}
std::vector<std::string> Engine::Lists() const { return impl_->ListNames(); }

Result<SegmentInfo> Engine::GetSegment(std::string_view name) const {
  auto* s = impl_->Find(name);
  if (!s) return Status::NotFound("segment \"" + std::string(name) + "\" does not exist");
  return impl_->Info(*s);
}

std::vector<SegmentInfo> Engine::ListSegments() const {
  std::vector<SegmentInfo> out;
  for (const auto& s : impl_->segments_)
    if (s && !s->hidden) out.push_back(impl_->Info(*s));
  std::sort(out.begin(), out.end(),
            [](const SegmentInfo& a, const SegmentInfo& b) { return a.name < b.name; });
  return out;
}

Result<std::string> Engine::Validate(std::string_view definition) const {
  return impl_->Validate(definition);
}
Result<uint64_t> Engine::Estimate(std::string_view definition) {
  return impl_->Estimate(definition);
}

Result<std::vector<std::string>> Engine::Members(std::string_view segment) const {
  auto* s = impl_->Find(segment);
  if (!s) return Status::NotFound("segment \"" + std::string(segment) + "\" does not exist");
  return impl_->Members(*s);
}

Result<uint64_t> Engine::Count(std::string_view segment) const {
  auto* s = impl_->Find(segment);
  if (!s) return Status::NotFound("segment \"" + std::string(segment) + "\" does not exist");
  return s->members.cardinality();
}

Result<bool> Engine::IsMember(std::string_view segment, std::string_view profile) const {
  auto* s = impl_->Find(segment);
  if (!s) return Status::NotFound("segment \"" + std::string(segment) + "\" does not exist");
  auto id = s->target == SegmentTarget::kAccounts ? impl_->store_.accounts().Find(profile)
                                                  : impl_->FindProfile(profile);
  return id.has_value() && s->members.contains(*id);
}

std::vector<std::string> Engine::SegmentsOf(std::string_view profile) const {
  return impl_->SegmentsOf(profile, SegmentTarget::kUsers);
}
std::vector<std::string> Engine::SegmentsOf(std::string_view key, SegmentTarget target) const {
  return impl_->SegmentsOf(key, target);
}

bool Engine::HasAccount(std::string_view account) const {
  auto id = impl_->store_.accounts().Find(account);
  return id && impl_->accounts_.known(*id);
}
Result<std::vector<Field>> Engine::AccountTraits(std::string_view account) const {
  auto id = impl_->store_.accounts().Find(account);
  if (!id || !impl_->accounts_.known(*id))
    return Status::NotFound("account \"" + std::string(account) + "\" does not exist");
  return impl_->TraitFields(impl_->accounts_.Find(*id)->state);
}
Result<std::vector<std::string>> Engine::AccountUsers(std::string_view account) const {
  auto id = impl_->store_.accounts().Find(account);
  if (!id || !impl_->accounts_.known(*id))
    return Status::NotFound("account \"" + std::string(account) + "\" does not exist");
  std::vector<std::string> out;
  for (uint32_t u : impl_->accounts_.UsersOf(*id))
    out.emplace_back(impl_->store_.profiles().Get(u));
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<std::string> Engine::AccountsOf(std::string_view profile) const {
  std::vector<std::string> out;
  auto pid = impl_->FindProfile(profile);
  if (!pid) return out;
  for (uint32_t a : impl_->accounts_.AccountsOf(*pid))
    out.emplace_back(impl_->store_.accounts().Get(a));
  std::sort(out.begin(), out.end());
  return out;
}

Result<ExplainNode> Engine::Explain(std::string_view segment, std::string_view profile) const {
  return impl_->Explain(segment, profile);
}

std::vector<Change> Engine::Changes(std::string_view segment, uint64_t after_seq) const {
  std::vector<Change> out;
  for (const Change& c : impl_->changes_)
    if (segment.empty() || (c.segment == segment && c.seq > after_seq)) out.push_back(c);
  return out;
}

void Engine::SetChangeListener(std::function<void(const Change&)> listener) {
  impl_->listener_ = std::move(listener);
}

EngineStats Engine::Stats() const { return impl_->Stats(); }
Millis Engine::Now() const { return impl_->clock_->Now(); }
const store::Store& Engine::store() const { return impl_->store_; }
Result<ComputedTraitInfo> Engine::CreateComputedTrait(std::string_view name,
                                                      std::string_view definition) {
  return impl_->CreateComputed(name, definition);
}
Result<ComputedTraitInfo> Engine::CreateComputedTrait(std::string_view name,
                                                      std::string_view definition,
                                                      SegmentTarget target) {
  return impl_->CreateComputed(name, definition, target);
}
Result<ComputedTraitInfo> Engine::UpdateComputedTrait(std::string_view name,
                                                      std::string_view definition) {
  return impl_->UpdateComputed(name, definition);
}
Status Engine::DeleteComputedTrait(std::string_view name) { return impl_->DeleteComputed(name); }
Status Engine::RestoreDefinitionTimes(std::string_view name, bool computed, Millis created_at,
                                      Millis updated_at, Millis last_change_at) {
  auto* s = computed ? impl_->FindComputed(name) : impl_->Find(name);
  if (!s)
    return Status::NotFound(std::string(computed ? "computed trait" : "segment") + " \"" +
                            std::string(name) + "\" does not exist");
  s->created_at = created_at;
  s->updated_at = updated_at;
  // Re-creating it emitted its members' enters, which were not changes: the persisted instant
  // (0: it never changed) replaces theirs; what recovery emits next sets it again.
  if (!computed) s->last_change_at = last_change_at;
  return Status::Ok();
}

Result<ComputedTraitInfo> Engine::GetComputedTrait(std::string_view name) const {
  auto* s = impl_->FindComputed(name);
  if (!s) return Impl::ComputedNotFound(name);
  return impl_->ComputedInfo(*s);
}
std::vector<ComputedTraitInfo> Engine::ListComputedTraits() const {
  std::vector<ComputedTraitInfo> out;
  for (const auto& [name, id] : impl_->computed_by_name_)
    out.push_back(impl_->ComputedInfo(*impl_->segments_[id]));
  std::sort(out.begin(), out.end(),
            [](const ComputedTraitInfo& a, const ComputedTraitInfo& b) { return a.name < b.name; });
  return out;
}
Result<std::vector<ComputedTraitValue>> Engine::ComputedTraits(std::string_view profile) const {
  auto pid = impl_->FindProfile(profile);  // a merged-away key reads its survivor's values
  if (!pid) return Status::NotFound("profile \"" + std::string(profile) + "\" does not exist");
  return impl_->ComputedValuesOf(*pid);
}
Result<Value> Engine::ComputedTraitOf(std::string_view name, std::string_view profile) const {
  auto* s = impl_->FindComputed(name);
  if (!s) return Impl::ComputedNotFound(name);
  if (s->target == SegmentTarget::kAccounts) {
    auto aid = impl_->store_.accounts().Find(profile);
    if (!aid || !impl_->accounts_.known(*aid))
      return Status::NotFound("account \"" + std::string(profile) + "\" does not exist");
    return engine::ToValue(s->computed->values.Get(*aid), impl_->store_);
  }
  auto pid = impl_->FindProfile(profile);
  if (!pid) return Status::NotFound("profile \"" + std::string(profile) + "\" does not exist");
  return engine::ToValue(s->computed->values.Get(*pid), impl_->store_);
}
Result<std::vector<ComputedTraitValue>> Engine::AccountComputedTraits(
    std::string_view account) const {
  auto aid = impl_->store_.accounts().Find(account);
  if (!aid || !impl_->accounts_.known(*aid))
    return Status::NotFound("account \"" + std::string(account) + "\" does not exist");
  return impl_->ComputedValuesOf(*aid, SegmentTarget::kAccounts);
}
std::vector<ComputedChange> Engine::ComputedChanges(std::string_view trait,
                                                    uint64_t after_seq) const {
  std::vector<ComputedChange> out;
  for (const ComputedChange& c : impl_->computed_changes_)
    if (trait.empty() || (c.trait == trait && c.seq > after_seq)) out.push_back(c);
  return out;
}
Status Engine::ForEachComputedValue(
    std::string_view name,
    const std::function<void(std::string_view key, const Value& v)>& fn) const {
  const Segment* s = impl_->FindComputed(name);
  if (!s) return Impl::ComputedNotFound(name);
  const store::Store& store = impl_->store_;
  const engine::ComputedValues& values = s->computed->values;
  if (s->target == SegmentTarget::kAccounts) {
    for (uint32_t id = 0; id < store.accounts().size(); ++id) {
      std::string_view key = store.accounts().Get(id);
      if (key.empty() || !HasAccount(key)) continue;
      fn(key, engine::ToValue(values.Get(id), store));
    }
    return Status::Ok();
  }
  for (uint32_t pid = 0; pid < store.profiles().size(); ++pid) {
    if (store.erased(pid) || store.merged(pid)) continue;
    fn(store.profiles().Get(pid), engine::ToValue(values.Get(pid), store));
  }
  return Status::Ok();
}

Result<Value> Engine::ComputedTraitEmptyValue(std::string_view name) const {
  const Segment* s = impl_->FindComputed(name);
  if (!s) return Impl::ComputedNotFound(name);
  return engine::ToValue(s->computed->values.empty(), impl_->store_);
}

void Engine::SetComputedChangeListener(std::function<void(const ComputedChange&)> listener) {
  impl_->computed_listener_ = std::move(listener);
}
const rules::ComputedDef* Engine::ComputedDefinition(std::string_view name) const {
  auto* s = impl_->FindComputed(name);
  return s ? s->computed->def.get() : nullptr;
}

const rules::Expr* Engine::Definition(std::string_view segment) const {
  auto* s = impl_->Find(segment);
  return s ? s->expr.get() : nullptr;
}

}  // namespace shoal
