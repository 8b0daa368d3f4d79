#include "engine/accounts.h"

#include <algorithm>

#include "fmt/format.h"
#include "rules/parser.h"

namespace shoal::engine {

const std::vector<uint32_t> Accounts::kNone;

Accounts::Account& Accounts::Get(uint32_t account) {
  if (accounts_.size() <= account) accounts_.resize(account + 1);
  return accounts_[account];
}

size_t Accounts::known_count() const {
  size_t n = 0;
  for (const Account& a : accounts_) n += a.known;
  return n;
}

bool Accounts::Link(uint32_t user, uint32_t account,
                    const std::function<bool(uint32_t, uint32_t)>& is_member) {
  if (user_accounts_.size() <= user) user_accounts_.resize(user + 1);
  std::vector<uint32_t>& mine = user_accounts_[user];
  auto it = std::lower_bound(mine.begin(), mine.end(), account);
  if (it != mine.end() && *it == account) return false;
  mine.insert(it, account);
  std::vector<uint32_t>& users = Get(account).users;
  users.insert(std::lower_bound(users.begin(), users.end(), user), user);
  for (auto& [seg, counts] : counts_) {
    if (!is_member(seg, user)) continue;
    if (counts.size() <= account) counts.resize(account + 1, 0);
    ++counts[account];
  }
  aggregates_.OnLink(user, account);
  return true;
}

std::vector<uint32_t> Accounts::UnlinkUser(uint32_t user) {
  aggregates_.OnUnlink(user, AccountsOf(user));  // also forgets a contribution with no account
  if (user >= user_accounts_.size()) return {};
  std::vector<uint32_t> out = std::move(user_accounts_[user]);
  user_accounts_[user] = {};
  for (uint32_t a : out) {
    std::vector<uint32_t>& users = accounts_[a].users;
    auto it = std::lower_bound(users.begin(), users.end(), user);
    if (it != users.end() && *it == user) users.erase(it);
  }
  return out;
}

uint32_t Accounts::MemberCount(uint32_t seg, uint32_t account) const {
  auto it = counts_.find(seg);
  if (it == counts_.end() || account >= it->second.size()) return 0;
  return it->second[account];
}

void Accounts::Adjust(uint32_t seg, uint32_t user, bool in) {
  auto it = counts_.find(seg);
  if (it == counts_.end()) return;
  std::vector<uint32_t>& counts = it->second;
  for (uint32_t a : AccountsOf(user)) {
    if (counts.size() <= a) counts.resize(a + 1, 0);
    counts[a] += in ? 1 : -1;  // never below 0: an exit follows its enter
  }
}

size_t Accounts::MemoryBytes() const {
  size_t n = accounts_.capacity() * sizeof(Account) + user_accounts_.capacity() * 24;
  for (const Account& a : accounts_)
    n += a.users.capacity() * 4 + a.state.traits.capacity() * sizeof(TraitSlot) +
         a.state.identifies.capacity() * 4;
  for (const auto& u : user_accounts_) n += u.capacity() * 4;
  for (const auto& [seg, c] : counts_) n += c.capacity() * 4;
  return n + aggregates_.MemoryBytes();
}

Series* AccountEvents::GetSeries(const rules::EventSpec& spec, std::optional<uint32_t> value_key,
                                 store::Store* store, bool dry_run) {
  const uint32_t name = store->strings().Intern(spec.name);
  std::string key = std::to_string(name);
  if (value_key) key += "#" + std::to_string(*value_key);
  if (spec.filter) key += "|" + rules::Print(*spec.filter);
  auto it = series_.find(key);
  if (it != series_.end()) return it->second.get();
  auto s = std::make_unique<Series>(name, spec.filter, value_key, store);
  Series* raw = s.get();
  if (!dry_run) {
    // Backfill: the attributed records, in record order (so nearly every Add is an append).
    for (auto [idx, account] : store->event_accounts()) {
      if (store->kind(idx) != store::RecordKind::kTrack || store->name(idx) != name) continue;
      const store::Props props = store->props(idx);
      if (!raw->Matches(props, *store)) continue;
      raw->Add(account, store->ts(idx), idx, raw->has_value() ? raw->ValueOf(props) : 0);
    }
    if (by_name_.size() <= name) by_name_.resize(name + 1);
    by_name_[name].push_back(raw);
  }
  series_.emplace(std::move(key), std::move(s));
  return raw;
}

std::vector<uint32_t> AccountEvents::AccountsOfUserEvents(const store::Store& store,
                                                          uint32_t user) const {
  std::vector<uint32_t> out;
  for (auto [idx, account] : store.event_accounts())
    if (store.Resolve(store.profile(idx)) == user) out.push_back(account);  // merges included
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void AccountEvents::DropErased(const store::Store& store, const std::vector<uint32_t>& accounts) {
  for (auto& [key, s] : series_)
    for (uint32_t a : accounts)
      s->RemoveIf(a, [&](uint32_t idx) { return store.kind(idx) == store::RecordKind::kErased; });
}

void AccountEvents::Unregister(uint32_t seg) {
  for (auto& [key, s] : series_) std::erase(s->segments, seg);
}

void AccountEvents::DropUnused(const std::function<bool(const Series*)>& referenced) {
  for (auto it = series_.begin(); it != series_.end();) {
    Series* s = it->second.get();
    if (!s->segments.empty() || referenced(s)) {
      ++it;
      continue;
    }
    if (s->name() < by_name_.size()) std::erase(by_name_[s->name()], s);
    series_.erase(it++);
  }
}

size_t AccountEvents::MemoryBytes() const {
  size_t n = 0;
  for (const auto& [key, s] : series_) n += s->MemoryBytes();
  return n;
}

namespace {

// How many of the account's members are in the hidden segment. Changes only when a member's
// membership or the links change, both of which re-evaluate the account: no deadline of its own.
class MemberCondition final : public Condition {
 public:
  MemberCondition(uint32_t hidden, const rules::MemberCond& c)
      : hidden_(hidden), all_(c.kind == rules::MemberCond::Kind::kAll), op_(c.op), n_(c.n) {
    segment_refs.push_back(hidden);
    member_links = true;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    if (!ctx.accounts) return all_ ? false : CompareNumbers<int64_t>(0, n_, op_);
    int64_t in = ctx.accounts->MemberCount(hidden_, ctx.pid);
    if (all_) {
      int64_t total = static_cast<int64_t>(ctx.accounts->UsersOf(ctx.pid).size());
      return total > 0 && in == total;
    }
    return CompareNumbers<int64_t>(in, n_, op_);
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    if (!ctx.accounts) return "0 of 0 members";
    return fmt::format("{} of {} members", ctx.accounts->MemberCount(hidden_, ctx.pid),
                       ctx.accounts->UsersOf(ctx.pid).size());
  }

 private:
  uint32_t hidden_;
  bool all_;
  rules::CmpOp op_;
  int64_t n_;
};

// Any of the user's accounts is in the account segment.
class AccountSegmentCondition final : public Condition {
 public:
  explicit AccountSegmentCondition(uint32_t seg) : seg_(seg) {
    segment_refs.push_back(seg);
    account_links = true;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    if (!ctx.accounts) return false;
    for (uint32_t a : ctx.accounts->AccountsOf(ctx.pid))
      if (ctx.is_member(seg_, a)) return true;
    return false;
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    size_t n = 0, in = 0;
    if (ctx.accounts)
      for (uint32_t a : ctx.accounts->AccountsOf(ctx.pid)) {
        ++n;
        in += ctx.is_member(seg_, a);
      }
    return fmt::format("{} of {} accounts in it", in, n);
  }

 private:
  uint32_t seg_;
};

// The trait predicate holds for any of the user's accounts: the account's own trait condition,
// evaluated over each account's state.
class AccountTraitCondition final : public Condition {
 public:
  explicit AccountTraitCondition(std::unique_ptr<Condition> inner) : inner_(std::move(inner)) {
    account_trait_keys = inner_->trait_keys;
    account_links = true;
  }
  bool Eval(const EvalContext& ctx, Millis t, Millis* next) const override {
    if (!ctx.accounts) return false;
    for (uint32_t a : ctx.accounts->AccountsOf(ctx.pid)) {
      const Accounts::Account* acc = ctx.accounts->Find(a);
      EvalContext actx{ctx.store, acc->state, a, ctx.is_member, ctx.in_list, ctx.accounts};
      // Stopping at the first true account is exact: the result stays true at least until that
      // account's next change, which is what *next says.
      if (inner_->Eval(actx, t, next)) return true;
    }
    return false;
  }
  std::string Detail(const EvalContext& ctx, Millis t) const override {
    size_t n = 0, in = 0;
    if (ctx.accounts)
      for (uint32_t a : ctx.accounts->AccountsOf(ctx.pid)) {
        const Accounts::Account* acc = ctx.accounts->Find(a);
        EvalContext actx{ctx.store, acc->state, a, ctx.is_member, ctx.in_list, ctx.accounts};
        Millis next = kMaxTime;
        ++n;
        in += inner_->Eval(actx, t, &next);
      }
    return fmt::format("true for {} of {} accounts", in, n);
  }

 private:
  std::unique_ptr<Condition> inner_;
};

}  // namespace

Result<std::unique_ptr<Condition>> CompileAccountLeaf(const rules::Leaf& leaf,
                                                      CompileContext* ctx) {
  const bool account = ctx->target() == SegmentTarget::kAccounts;
  if (const auto* m = std::get_if<rules::MemberCond>(&leaf)) {
    if (!account)
      return Status::InvalidArgument(
          "member conditions ('any member (...)', 'at least 3 members (...)') belong in account "
          "segments");
    auto id = ctx->MemberSegment(*m->user);
    if (!id.ok()) return id.status();
    return std::unique_ptr<Condition>(new MemberCondition(*id, *m));
  }
  if (account)
    return Status::InvalidArgument(
        "'account in segment' and 'account.TRAIT' belong in user segments; in an account segment "
        "write 'in segment' and the trait itself");
  if (const auto* r = std::get_if<rules::AccountSegmentCond>(&leaf)) {
    std::optional<uint32_t> id = ctx->SegmentId(r->segment);
    if (!id) return Status::NotFound("unknown segment \"" + r->segment + "\"");
    if (ctx->TargetOf(*id) != SegmentTarget::kAccounts)
      return Status::InvalidArgument("\"" + r->segment +
                                     "\" is a user segment: 'account in segment' takes an account "
                                     "segment");
    return std::unique_ptr<Condition>(new AccountSegmentCondition(*id));
  }
  const auto& t = std::get<rules::AccountTraitCond>(leaf);
  auto inner = CompileLeaf(rules::TraitCond{t.pred}, ctx);
  if (!inner.ok()) return inner.status();
  return std::unique_ptr<Condition>(new AccountTraitCondition(std::move(inner).value()));
}

}  // namespace shoal::engine
