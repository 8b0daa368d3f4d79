// The Shoal engine: profiles, their history, segment definitions and exact, incremental,
// time-driven membership. The server is a thin layer over this class.
//
// Threading: an Engine is owned by one thread (the shard's writer). No method is thread-safe;
// callers serialize access. Time comes from the Clock passed at construction, so tests use a
// VirtualClock and never sleep.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shoal/event.h"
#include "shoal/status.h"
#include "shoal/time.h"

namespace shoal {

namespace store {
class Store;
}
namespace rules {
struct Expr;
struct ComputedDef;
}  // namespace rules

// All tunables of the engine, each with its default.
struct Options {
  // Keep every emitted Change in memory so Changes() can return it. The server turns this off
  // and persists changes itself through the listener.
  bool keep_changes = true;
  // Threads that backfill a new or edited segment (its series builds and the evaluation of every
  // profile). 0: the machine's hardware threads, at most 4; 1: everything on the calling thread.
  // The result (members, deadlines, emitted changes and their order) is the same for any value.
  unsigned backfill_threads = 0;
  // The least number of profiles (or records, for a series build) a backfill thread is given:
  // smaller jobs run on fewer threads, down to the calling thread alone.
  size_t backfill_grain = 4096;
};

// Options::backfill_threads resolved: the number of threads a backfill may use.
unsigned BackfillThreads(const Options& options);

// Whom a segment's members are. Users (profiles, keyed by userId/anonymousId) are the default;
// accounts are keyed by groupId and exist from their first group call (docs/language.md,
// "Accounts").
enum class SegmentTarget : uint8_t { kUsers, kAccounts };

enum class ChangeKind : uint8_t { kEnter, kExit };

// Why a membership changed.
enum class Cause : uint8_t {
  kEvent,       // a track/page/screen call (cause_ref: its messageId; event: its name)
  kTraits,      // an identify call (cause_ref: its messageId)
  kTime,        // a deadline passed with no new data: a window closed or opened
  kDefinition,  // the segment was created or its definition changed
  kSegment,     // a segment this one references changed (cause_ref: that segment's name)
  kDeleted,     // the segment was deleted (every member exits)
  kList,        // a static list the segment references changed (cause_ref: the list's name)
  kErased,      // the profile was erased (EraseProfile); it exits every segment
  kGroup,       // a group call linked a user to an account or changed the account's traits
                // (cause_ref: its messageId)
  kMerged,      // an identity merge (docs/language.md, "Identity"): the merged-away profile
                // exits (cause_ref: the survivor's key); the survivor's changes name the
                // merged-away key
  kRank,        // another profile's value change (or R changing) moved a top-N boundary across
                // this one (cause_ref: the messageId of the call that did; event: its name)
  kComputed,    // the definition of a computed trait this one reads changed (cause_ref: its name)
};

// "event", "traits", "time", "definition", "segment", "deleted", "list", "erased", "group",
// "merged", "rank", "computed"
const char* CauseName(Cause c);

// One enter or exit. Changes of one segment have consecutive seq numbers from 1.
struct Change {
  uint64_t seq = 0;
  std::string segment;
  std::string profile;  // the user's key, or for an account segment the account's groupId
  SegmentTarget target = SegmentTarget::kUsers;  // the segment's: whose key `profile` is
  ChangeKind kind = ChangeKind::kEnter;
  Cause cause = Cause::kEvent;
  std::string cause_ref;
  std::string event;        // kEvent: the event name
  Millis event_time = 0;    // kEvent/kTraits: the message timestamp; kTime: the deadline instant;
                            // otherwise equal to processed_at
  Millis processed_at = 0;  // the engine clock when it was emitted
};

struct SegmentInfo {
  std::string name;
  std::string definition;  // canonical text
  uint64_t size = 0;       // current number of members
  uint64_t last_seq = 0;   // seq of the latest change (0: none yet)
  Millis created_at = 0;
  Millis updated_at = 0;
  Millis last_change_at = 0;  // processed_at of the latest change (0: none yet)
  SegmentTarget target = SegmentTarget::kUsers;
};

// Why a profile is in or out: the definition's tree with each node's current value.
struct ExplainNode {
  std::string text;    // the canonical text of this node
  bool value = false;  // its truth now
  std::string detail;  // what it saw: "count = 3", "sum = 612.50", "plan = \"pro\"", ...
  std::optional<Millis> next_change;  // when its truth can next change with no new data
  std::vector<ExplainNode> children;
};

// A computed trait (docs/language.md, "Computed traits and scores").
struct ComputedTraitInfo {
  std::string name;
  std::string definition;                        // canonical text
  bool score = false;                            // a weighted sum of conditions
  SegmentTarget target = SegmentTarget::kUsers;  // whose value it is: users' or accounts'
  uint64_t last_seq = 0;                         // seq of the latest value change (0: none yet)
  Millis created_at = 0;
  Millis updated_at = 0;
};

// A profile's value of one computed trait. kNull: no value (e.g. avg of no events).
struct ComputedTraitValue {
  std::string name;
  Value value;
};

// One change of a profile's value of a computed trait. Changes of one trait have consecutive seq
// numbers from 1. Creating a trait emits none (its values are readable at once); updating its
// definition emits one per profile whose value changed (cause kDefinition).
struct ComputedChange {
  uint64_t seq = 0;
  std::string trait;
  std::string profile;  // the user's key, or the account's groupId when target is kAccounts
  SegmentTarget target = SegmentTarget::kUsers;
  Value old_value;
  Value new_value;
  Cause cause = Cause::kEvent;  // as Change: event, traits, time, definition, segment, list, group
  std::string cause_ref;
  std::string event;
  Millis event_time = 0;
  Millis processed_at = 0;
};

struct EngineStats {
  uint64_t profiles = 0;
  uint64_t accounts = 0;        // accounts with at least one group call
  uint64_t records = 0;         // retained identify + track records
  uint64_t changes = 0;         // changes emitted since start
  uint64_t timer_fires = 0;     // deadlines processed
  uint64_t evaluations = 0;     // (segment, profile) re-evaluations: the work events and time cause
  uint64_t pending_timers = 0;  // deadlines scheduled (including superseded ones not yet popped)
  uint64_t store_bytes = 0;     // memory held by the retained history
  uint64_t state_bytes = 0;     // memory held by per-profile segment state (estimate)
};

class Engine {
 public:
  // `clock` is not owned and must outlive the engine. It must never go back: the engine fires a
  // deadline once the clock passes it and does not undo it. RealClock holds when the system clock
  // steps back; a VirtualClock's owner moves it forward only (the server refuses to move it back).
  explicit Engine(const Clock* clock, Options options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // --- Ingest ---------------------------------------------------------------------------------
  // Applies one message: identify merges traits, track/page/screen append an event (page and
  // screen become the events "Page Viewed" / "Screen Viewed" with the name in property "name"),
  // group links the user to the account (groupId) and merges the account's traits; a
  // track/page/screen with a group_id (context.groupId) is also an event of that account, which
  // account segments read (docs/language.md, "Accounts"). A message with both a userId and an
  // unclaimed anonymousId, and an alias call, merge two profiles into the userId's
  // (docs/language.md, "Identity"); a merge costs the two profiles' data and the number of
  // segments, never the size of the store. Re-evaluates only the segments that depend on what
  // changed. Deadlines due at or before now fire first.
  // Errors: kInvalidArgument when the message has no profile key, a track has no event name, a
  // group has no groupId or an alias has no userId or previousId.
  Status Ingest(const Message& msg);
  // A hint, no effect on state: starts loading what Ingest(msg) will read first (the profile
  // key's slot in the interning table). A replay loop calls it for the next message before
  // ingesting the current one, so that cache miss overlaps with a whole message's work.
  void Prefetch(const Message& msg) const;
  // Decodes one Segment-spec JSON message and ingests it. Errors name the field.
  Status IngestJson(std::string_view json);

  // --- Time -----------------------------------------------------------------------------------
  // Fires every deadline at or before clock->Now(), in time order, emitting the resulting
  // changes. Returns how many changes were emitted. Call after moving a VirtualClock; the server
  // calls it from a timer.
  size_t AdvanceTime();
  // The earliest pending deadline, if any (for a server's timer).
  std::optional<Millis> NextDeadline() const;

  // --- Segments -------------------------------------------------------------------------------
  // Creates a segment and computes its members from the stored history (backfill); every member
  // enters with cause kDefinition. Errors: kInvalidArgument (text, with line:col), kAlreadyExists,
  // kNotFound (an `in segment` that does not exist).
  Result<SegmentInfo> CreateSegment(std::string_view name, std::string_view definition);
  // The same for a segment of `target`: kAccounts makes an account segment, whose members are
  // accounts (member conditions, account traits, `in segment` of account segments). Segment names
  // are one namespace for both targets. The target of a segment never changes: UpdateSegment
  // keeps it.
  Result<SegmentInfo> CreateSegment(std::string_view name, std::string_view definition,
                                    SegmentTarget target);
  // Replaces the definition and recomputes; emits exactly the resulting enters and exits.
  // Errors as CreateSegment, plus kFailedPrecondition for a reference cycle.
  Result<SegmentInfo> UpdateSegment(std::string_view name, std::string_view definition);
  // Deletes the segment; every member exits with cause kDeleted. kFailedPrecondition while
  // another segment references it.
  Status DeleteSegment(std::string_view name);
  Result<SegmentInfo> GetSegment(std::string_view name) const;
  std::vector<SegmentInfo> ListSegments() const;  // sorted by name
  // Parses and checks a definition against the current segments; returns its canonical text.
  Result<std::string> Validate(std::string_view definition) const;
  // The exact number of members `definition` would have now, without saving it.
  Result<uint64_t> Estimate(std::string_view definition);

  // --- Membership -----------------------------------------------------------------------------
  // Member keys, sorted: profile keys, or account keys (groupIds) for an account segment.
  // Count, IsMember and Explain also take an account key for an account segment.
  Result<std::vector<std::string>> Members(std::string_view segment) const;
  Result<uint64_t> Count(std::string_view segment) const;
  // kNotFound for an unknown segment; an unknown profile is simply not a member.
  Result<bool> IsMember(std::string_view segment, std::string_view profile) const;
  // Names of the segments the profile is in, sorted.
  std::vector<std::string> SegmentsOf(std::string_view profile) const;
  // The same for `target`: kAccounts names the account segments the account (groupId) is in.
  std::vector<std::string> SegmentsOf(std::string_view key, SegmentTarget target) const;
  Result<ExplainNode> Explain(std::string_view segment, std::string_view profile) const;

  // --- Profiles -------------------------------------------------------------------------------
  // Every read by profile key (HasProfile, Traits, SegmentsOf, IsMember, Explain, AccountsOf)
  // answers for the merged profile when given a merged-away key.
  bool HasProfile(std::string_view profile) const;
  // The key of the profile that `profile` was merged into (itself when never merged);
  // kNotFound when unknown.
  Result<std::string> SurvivorOf(std::string_view profile) const;
  // Every key of the merged profile `profile` belongs to: the survivor first, then the keys
  // merged into it in merge order. Empty when unknown.
  std::vector<std::string> KeysOf(std::string_view profile) const;
  // The profile's current traits (merged identify calls), as flattened paths sorted by path.
  // kNotFound for an unknown profile.
  Result<std::vector<Field>> Traits(std::string_view profile) const;
  // Removes the profile's traits and events from the retained history and its state from every
  // segment; it exits each segment it was in with cause kErased (and enters none: nothing is
  // re-evaluated for it). It also leaves every static list. A later message with the same key
  // starts a new, empty profile. A merged profile is erased whole, by any of its keys (KeysOf):
  // every key is forgotten. kNotFound when unknown. Costs one scan of the store's profile
  // column.
  Status EraseProfile(std::string_view profile);

  // --- Accounts -------------------------------------------------------------------------------
  // An account exists from its first group call until every group call naming it is erased.
  bool HasAccount(std::string_view account) const;
  // The account's traits (merged group calls, as identify merges a user's), sorted by path.
  // kNotFound for an unknown account.
  Result<std::vector<Field>> AccountTraits(std::string_view account) const;
  // The account's members (users linked by a group call), sorted. kNotFound when unknown.
  Result<std::vector<std::string>> AccountUsers(std::string_view account) const;
  // The accounts of a user, sorted; empty for an unknown user.
  std::vector<std::string> AccountsOf(std::string_view profile) const;

  // --- Static lists ---------------------------------------------------------------------------
  // A static list is a named set of profile keys, referenced in definitions as `in list "name"`.
  // A key may be added before any message for it arrives; the profile is in the list from its
  // first message on. Changing a list re-evaluates only the segments that reference it, for the
  // added or removed profiles only (cause kList).
  // Errors: kInvalidArgument (empty name), kAlreadyExists.
  Status CreateList(std::string_view name);
  // kNotFound; kFailedPrecondition while a segment references the list.
  Status DeleteList(std::string_view name);
  // Adding a present key or removing an absent one is not an error. kNotFound for the list,
  // kInvalidArgument for an empty key (then nothing is changed).
  Status AddToList(std::string_view name, const std::vector<std::string>& profiles);
  Status RemoveFromList(std::string_view name, const std::vector<std::string>& profiles);
  // Member keys, sorted. kNotFound for the list.
  Result<std::vector<std::string>> ListMembers(std::string_view name) const;
  std::vector<std::string> Lists() const;  // names, sorted

  // --- Computed traits --------------------------------------------------------------------------
  // A computed trait is a named per-profile value defined in the language (a count, sum, avg, min,
  // max, distinct count, unique values, first or last value or most frequent value of a property
  // over a window, or a score), kept exact in time and incremental like a segment, and read in
  // segments as `computed.NAME`. Names are [A-Za-z_][A-Za-z0-9_$-]* and a namespace of their own.
  // Errors: kInvalidArgument (bad name, or definition text with line:col), kAlreadyExists,
  // kNotFound (an `in segment`, `in list` or `computed.X` in a score that does not exist).
  Result<ComputedTraitInfo> CreateComputedTrait(std::string_view name, std::string_view definition);
  // The same for `target`: kAccounts makes a per-account computed trait (docs/language.md,
  // "Account computed traits and scores"): a value over the account's own events, or a score whose
  // conditions are account segment conditions (account traits, member conditions, `in segment` of
  // account segments, other account computed traits). Names are one namespace for both targets;
  // UpdateComputedTrait keeps the target. Account segments read it as `computed.NAME`; a segment
  // or score of the other target that reads it is rejected (kInvalidArgument naming the trait and
  // its target).
  Result<ComputedTraitInfo> CreateComputedTrait(std::string_view name, std::string_view definition,
                                                SegmentTarget target);
  // Replaces the definition and recomputes every profile; emits a ComputedChange for each profile
  // whose value changed, and re-evaluates the segments reading it for those profiles (their
  // changes have cause kComputed). Errors as Create, plus kNotFound for the trait and
  // kFailedPrecondition for a reference cycle.
  Result<ComputedTraitInfo> UpdateComputedTrait(std::string_view name, std::string_view definition);
  // kNotFound; kFailedPrecondition while a segment or a score references it. Emits no change.
  Status DeleteComputedTrait(std::string_view name);
  Result<ComputedTraitInfo> GetComputedTrait(std::string_view name) const;
  // Recovery (the server re-creates definitions at start): gives a segment, or a computed trait
  // when `computed`, the creation and last-update instants it had before the restart, instead of
  // the instant it was re-created, and a segment the instant of its latest change (0: none).
  // kNotFound.
  Status RestoreDefinitionTimes(std::string_view name, bool computed, Millis created_at,
                                Millis updated_at, Millis last_change_at = 0);
  std::vector<ComputedTraitInfo> ListComputedTraits() const;  // sorted by name
  // The profile's current value of every computed trait, sorted by name. kNotFound for an
  // unknown profile.
  Result<std::vector<ComputedTraitValue>> ComputedTraits(std::string_view profile) const;
  // One value. kNotFound for an unknown trait or profile. For an account computed trait `profile`
  // is the account's key (groupId), kNotFound when the account is unknown.
  Result<Value> ComputedTraitOf(std::string_view name, std::string_view profile) const;
  // The account's (groupId's) current value of every account computed trait, sorted by name.
  // kNotFound for an unknown account (HasAccount). ComputedTraits(profile) lists users' only.
  Result<std::vector<ComputedTraitValue>> AccountComputedTraits(std::string_view account) const;
  // Kept computed changes (Options::keep_changes) in emission order; for one trait when `trait`
  // is not empty, only those with seq > after_seq.
  std::vector<ComputedChange> ComputedChanges(std::string_view trait = {},
                                              uint64_t after_seq = 0) const;
  // Called synchronously for every computed value change as it is emitted.
  void SetComputedChangeListener(std::function<void(const ComputedChange&)> listener);
  // The parsed definition of a computed trait (null if unknown), valid until it changes.
  const rules::ComputedDef* ComputedDefinition(std::string_view name) const;
  // Calls fn with the current value of a computed trait for every live profile (every account,
  // for an account trait), in id order: a snapshot of all its values, which the server persists
  // at creation and compares with the persisted ones at restart. kNotFound for an unknown trait.
  Status ForEachComputedValue(
      std::string_view name,
      const std::function<void(std::string_view key, const Value& v)>& fn) const;
  // The value of a profile nothing was computed for yet (a new profile's): null, or e.g. 0 for a
  // count. kNotFound for an unknown trait.
  Result<Value> ComputedTraitEmptyValue(std::string_view name) const;

  // --- Changes --------------------------------------------------------------------------------
  // Kept changes (Options::keep_changes) in emission order; for one segment when `segment` is not
  // empty, only those with seq > after_seq.
  std::vector<Change> Changes(std::string_view segment = {}, uint64_t after_seq = 0) const;
  // Called synchronously for every change as it is emitted.
  void SetChangeListener(std::function<void(const Change&)> listener);

  // --- Introspection --------------------------------------------------------------------------
  EngineStats Stats() const;
  Millis Now() const;
  // The retained history and a segment's parsed definition, for the reference evaluator and
  // tests. The pointer is null for an unknown segment and valid until the segment changes.
  const store::Store& store() const;
  const rules::Expr* Definition(std::string_view segment) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shoal
