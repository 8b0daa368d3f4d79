// Accounts (B2B): the account graph and the account conditions.
//
// An account is a dense id of store.accounts() (its groupId). A group call links its user to the
// account and merges its traits into the account's, as identify does for a user. Account segments
// evaluate the same condition classes over an account's ProfileState; member conditions read
// MemberCount(), the number of the account's members in a hidden user segment that compiles the
// member condition's user condition. The engine keeps those counts exact: every membership change
// of a hidden segment adjusts the counts of that user's accounts (Adjust), and a link adjusts the
// new account's (OnLink), so an account's member condition is one lookup and never scans users.
//
// Threading: owned by the engine's single writer, like everything in it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/conditions.h"

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
  void DropCounter(uint32_t seg) { counts_.erase(seg); }
  uint32_t MemberCount(uint32_t seg, uint32_t account) const;
  // The user entered (in) or left hidden segment `seg`: +-1 for each of its accounts.
  void Adjust(uint32_t seg, uint32_t user, bool in);

  size_t MemoryBytes() const;

 private:
  static const std::vector<uint32_t> kNone;
  std::vector<Account> accounts_;
  std::vector<std::vector<uint32_t>> user_accounts_;  // by user id, sorted
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> counts_;
};

// Compiles MemberCond (account segments), AccountSegmentCond and AccountTraitCond (user segments).
// Errors: the condition used for the wrong target (kInvalidArgument), an unknown segment
// (kNotFound), and whatever the member condition's user condition fails with.
Result<std::unique_ptr<Condition>> CompileAccountLeaf(const rules::Leaf& leaf, CompileContext* ctx);

}  // namespace shoal::engine
