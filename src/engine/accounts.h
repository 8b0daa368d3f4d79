// Accounts (B2B): the account graph and the account conditions.
//
// An account is a dense id of store.accounts() (its groupId). A group call links its user to the
// account and merges its traits into the account's, as identify does for a user. Account segments
// evaluate the same condition classes over an account's ProfileState; member conditions read
// MemberCount(), the number of the account's members in a hidden user segment that compiles the
// member condition's user condition. The engine keeps those counts exact: every membership change
// of a hidden segment adjusts the counts of that user's accounts (Adjust), and a link adjusts the
// new account's (OnLink), so an account's member condition is one lookup and never scans users.
// An account's event conditions read its own events (AccountEvents, below).
//
// Threading: owned by the engine's single writer, like everything in it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/conditions.h"
#include "engine/member_agg.h"
#include "engine/series.h"

namespace shoal::engine {

class Accounts {
 public:
  struct Account {
    ProfileState state;           // traits merged from group calls; identifies: group records
    std::vector<uint32_t> users;  // members, sorted
    bool known = false;           // has at least one (live) group call
  };

  Accounts() = default;
  Accounts(const Accounts&) = delete;
  Accounts& operator=(const Accounts&) = delete;

  // The account's state, created empty if new.
  Account& Get(uint32_t account);
  const Account* Find(uint32_t account) const {
    return account < accounts_.size() ? &accounts_[account] : nullptr;
  }
  bool known(uint32_t account) const {
    return account < accounts_.size() && accounts_[account].known;
  }
  size_t size() const { return accounts_.size(); }  // ids below this may be known
  size_t known_count() const;

  const std::vector<uint32_t>& AccountsOf(uint32_t user) const {
    return user < user_accounts_.size() ? user_accounts_[user] : kNone;
  }
  const std::vector<uint32_t>& UsersOf(uint32_t account) const {
    return account < accounts_.size() ? accounts_[account].users : kNone;
  }

  // Links a user to an account; false when already linked. `is_member(seg, user)` tells, for each
  // hidden member segment, whether the user is in it, so the account's counts include the user.
  bool Link(uint32_t user, uint32_t account,
            const std::function<bool(uint32_t seg, uint32_t user)>& is_member);
  // Removes every link of the user (erasure) and returns the accounts it was linked to. The
  // caller has already taken the user out of every hidden segment (Adjust), so counts are right.
  std::vector<uint32_t> UnlinkUser(uint32_t user);

  // Member counts of hidden segment `seg`, one per account.
  void AddCounter(uint32_t seg) { counts_[seg]; }
  void DropCounter(uint32_t seg) {
    counts_.erase(seg);
    aggregates_.Drop(seg);
  }
  uint32_t MemberCount(uint32_t seg, uint32_t account) const;
  // The user entered (in) or left hidden segment `seg`: +-1 for each of its accounts.
  void Adjust(uint32_t seg, uint32_t user, bool in);

  // Aggregates over members' values, one per hidden value segment (engine/member_agg.h). Link
  // and UnlinkUser keep them exact as links change.
  MemberAggregates& aggregates() { return aggregates_; }
  const MemberAggregates& aggregates() const { return aggregates_; }

  size_t MemoryBytes() const;

 private:
  static const std::vector<uint32_t> kNone;
  MemberAggregates aggregates_;
  std::vector<Account> accounts_;
  std::vector<std::vector<uint32_t>> user_accounts_;  // by user id, sorted
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> counts_;
};

// An account's own events: the track/page/screen calls sent with context.groupId count for that
// account as well as for their user (docs/language.md, "Accounts"). They live in series of their
// own, keyed by account id instead of user id, so every event condition compiles unchanged in an
// account segment (CompileContext::GetSeries hands out these series while an account segment is
// compiled) and reads the account's timeline as it reads a user's. A series' `segments` lists the
// account segments that read it: an event re-evaluates those, for its account only.
//
// An event is recorded for its account whether or not the account is known (has a group call):
// the account's history counts from its first group call on, including the events sent before it.
class AccountEvents {
 public:
  AccountEvents() = default;
  AccountEvents(const AccountEvents&) = delete;
  AccountEvents& operator=(const AccountEvents&) = delete;

  // The shared account series for (event, filter[, value property]); a new one is filled from
  // the store's event attributions unless `dry_run` (Validate: compiled, never read).
  Series* GetSeries(const rules::EventSpec& spec, std::optional<uint32_t> value_key,
                    store::Store* store, bool dry_run);
  // Track record `idx` (name id `name`, properties `props`) was sent for `account`: adds it to
  // each matching series and calls touch(segment) for the account segments that read them.
  template <typename Touch>
  void Add(uint32_t account, uint32_t name, Millis ts, uint32_t idx,
           std::span<const store::PropEntry> props, const store::Store& store, Touch touch) {
    if (name >= by_name_.size()) return;
    for (Series* s : by_name_[name]) {
      if (!s->Matches(props, store)) continue;
      s->Add(account, ts, idx, s->has_value() ? s->ValueOf(props) : 0);
      for (uint32_t seg : s->segments) touch(seg);
    }
  }
  // The accounts `user`'s events were sent for (before its erasure: reads store.profile()).
  std::vector<uint32_t> AccountsOfUserEvents(const store::Store& store, uint32_t user) const;
  // After the store erased a user: drops the entries of erased records from those accounts'
  // timelines, so its events no longer count for them.
  void DropErased(const store::Store& store, const std::vector<uint32_t>& accounts);
  // Segment `seg` no longer reads anything (Unregister).
  void Unregister(uint32_t seg);
  // Drops every series that no segment reads and `referenced` does not claim.
  void DropUnused(const std::function<bool(const Series*)>& referenced);
  bool empty() const { return series_.empty(); }
  size_t MemoryBytes() const;

 private:
  absl::flat_hash_map<std::string, std::unique_ptr<Series>> series_;
  std::vector<std::vector<Series*>> by_name_;
};

// Compiles MemberCond (account segments), AccountSegmentCond and AccountTraitCond (user segments).
// Errors: the condition used for the wrong target (kInvalidArgument), an unknown segment
// (kNotFound), and whatever the member condition's user condition fails with.
Result<std::unique_ptr<Condition>> CompileAccountLeaf(const rules::Leaf& leaf, CompileContext* ctx);

}  // namespace shoal::engine
