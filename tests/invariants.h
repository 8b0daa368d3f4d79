// Checks shared by the segment-file runner and the differential test: after any step, the
// incremental engine must agree with the reference evaluator (a full recomputation from the
// stored history), every definition must survive Print -> Parse unchanged, and each segment's
// change stream must replay to its current members.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "reference/reference.h"
#include "rules/ast.h"
#include "rules/parser.h"
#include "shoal/engine.h"
#include "shoal/event.h"
#include "store/store.h"

namespace shoal::testing_util {

inline reference::DefinitionLookup LookupFor(const Engine& engine) {
  return [&engine](std::string_view name) { return engine.Definition(name); };
}

// What the test knows independently of the engine: the static lists' keys and the profiles that
// exist (sent an accepted message since they were last erased). The reference evaluator reads
// list membership from here, so the engine's list bookkeeping (pending keys, erasure) is checked
// rather than trusted.
struct Model {
  std::map<std::string, std::set<std::string>> lists;  // list name -> keys
  std::set<std::string> profiles;                      // known profiles that were not merged away
  // Known accounts -> the profiles whose group calls name them (an account is known while one of
  // its group calls is not erased).
  std::map<std::string, std::set<std::string>> accounts;
  // Identity merges (docs/language.md, "Identity"): merged-away (or only linked) key -> the key
  // of its survivor, always a member of `profiles`.
  std::map<std::string, std::string> merged;

  std::string Resolve(const std::string& key) const {
    auto it = merged.find(key);
    return it == merged.end() ? key : it->second;
  }
  bool Known(const std::string& key) const {
    return profiles.count(key) > 0 || merged.count(key) > 0;
  }
  // The key a list change names: a known key's profile, else the key itself (pending).
  std::string ListKey(const std::string& key) const { return Resolve(key); }

  // A message the engine accepted, by the rules of docs/language.md ("Identity"), written
  // independently of the engine's implementation of them.
  void Accept(const Message& m) {
    if (m.type == MessageType::kAlias) {
      const std::string user = Resolve(m.user_id);
      profiles.insert(user);
      if (!Known(m.previous_id))
        Link(m.previous_id, user);
      else if (Resolve(m.previous_id) != user)
        Merge(Resolve(m.previous_id), user);
      return;
    }
    const std::string user = Resolve(m.ProfileKey());
    profiles.insert(user);
    if (!m.user_id.empty() && !m.anonymous_id.empty()) {
      if (!Known(m.anonymous_id))
        Link(m.anonymous_id, user);
      else if (profiles.count(m.anonymous_id) && m.anonymous_id != user)
        Merge(m.anonymous_id, user);  // an unclaimed profile; a claimed one stays where it is
    }
    if (m.type == MessageType::kGroup) accounts[m.group_id].insert(user);
  }
  // A key never seen resolves to `into` from now on; lists waiting for it hold `into`.
  void Link(const std::string& key, const std::string& into) {
    merged[key] = into;
    Move(key, into);
  }
  // Survivor `from` and everything merged into it become part of `into`.
  void Merge(const std::string& from, const std::string& into) {
    profiles.erase(from);
    for (auto& [k, s] : merged)
      if (s == from) s = into;
    merged[from] = into;
    Move(from, into);
  }
  // Where `from` was in a list or an account, `into` is.
  void Move(const std::string& from, const std::string& into) {
    for (auto& [name, keys] : lists)
      if (keys.erase(from)) keys.insert(into);
    for (auto& [a, users] : accounts)
      if (users.erase(from)) users.insert(into);
  }

  // Live computed traits -> the index in engine.ComputedChanges() at their (last) creation, so a
  // deleted-and-recreated name starts a new change stream.
  std::map<std::string, size_t> computed_born;
  // Erased keys -> engine.ComputedChanges().size() right after the erasure: a later profile with
  // the key is a new profile, whose computed values start from scratch.
  std::map<std::string, size_t> erased_at;

  // A profile is erased: it is no longer known, leaves every list, and its group calls are gone.
  // A merged profile goes whole, whichever of its keys names it.
  // Returns every key erased (the merged profile's keys).
  std::vector<std::string> Erase(const std::string& named) {
    const std::string root = Resolve(named);
    std::vector<std::string> keys = {root};
    for (const auto& [k, s] : merged)
      if (s == root) keys.push_back(k);
    for (const std::string& key : keys) {
      profiles.erase(key);
      merged.erase(key);
      for (auto& [name, ks] : lists) ks.erase(key);
      for (auto it = accounts.begin(); it != accounts.end();) {
        it->second.erase(key);
        it = it->second.empty() ? accounts.erase(it) : std::next(it);
      }
    }
    return keys;
  }
  reference::ListLookup Lookup() const {
    return [this](std::string_view list, std::string_view key) {
      auto it = lists.find(std::string(list));
      return it != lists.end() && it->second.count(std::string(key)) > 0;
    };
  }
};

inline reference::ComputedLookup ComputedLookupFor(const Engine& engine) {
  return [&engine](std::string_view name) { return engine.ComputedDefinition(name); };
}

// A computed value as JSON text ("null" for no value), for messages and the test files.
inline std::string ValueJson(const Value& v) {
  switch (v.type) {
    case ValueType::kNull:
      return "null";
    case ValueType::kBool:
      return v.b ? "true" : "false";
    case ValueType::kNumber: {
      std::ostringstream o;
      o.precision(17);
      o << v.num;
      return o.str();
    }
    case ValueType::kString:
      return "\"" + v.str + "\"";
    case ValueType::kList:
      return v.str;
  }
  return "?";
}

// Every computed trait: its values for every known profile equal reference::ComputedValues() at
// engine.Now(); its definition round-trips and is what GetComputedTrait() reports; and its change
// stream chains (each change's old value is the previous change's new value for that profile,
// the latest new value is the current value, seq 1, 2, 3... per creation).
inline std::string CheckComputed(const Engine& engine, const reference::ListLookup& lists,
                                 const Model* model) {
  std::ostringstream err;
  std::vector<ComputedChange> all = engine.ComputedChanges();
  for (const ComputedTraitInfo& info : engine.ListComputedTraits()) {
    const rules::ComputedDef* def = engine.ComputedDefinition(info.name);
    if (!def) {
      err << "computed " << info.name << ": ComputedDefinition() is null\n";
      continue;
    }
    std::string text = rules::Print(*def);
    Result<rules::ComputedDef> again = rules::ParseComputed(text);
    if (!again.ok() || !(*again == *def) || rules::Print(*again) != text)
      err << "computed " << info.name << ": canonical text '" << text << "' does not round-trip\n";
    if (info.definition != text)
      err << "computed " << info.name << ": info.definition '" << info.definition
          << "' is not the canonical text\n";
    // An account computed trait's values are the known accounts' (by groupId).
    const bool accounts = info.target == SegmentTarget::kAccounts;
    auto ref =
        accounts ? reference::AccountComputedValues(engine.store(), *def, LookupFor(engine),
                                                    engine.Now(), lists, ComputedLookupFor(engine))
                 : reference::ComputedValues(engine.store(), *def, LookupFor(engine), engine.Now(),
                                             lists, ComputedLookupFor(engine));
    std::map<std::string, Value> current;
    for (const auto& [key, want] : ref) {
      Result<Value> got = engine.ComputedTraitOf(info.name, key);
      if (!got.ok()) {
        err << "computed " << info.name << "(" << key << "): " << got.status().ToString() << "\n";
        continue;
      }
      current[key] = *got;
      if (!(*got == want))
        err << "computed " << info.name << " (" << text << ") of " << key << " at "
            << FormatTime(engine.Now()) << ": engine " << ValueJson(*got) << " != reference "
            << ValueJson(want) << "\n";
    }
    std::map<std::string, Value> last;  // this generation: profile -> latest new value
    uint64_t seq = 0;
    size_t from = 0;
    if (model) {
      auto it = model->computed_born.find(info.name);
      if (it == model->computed_born.end())
        err << "computed " << info.name << " is live but the test did not create it\n";
      else
        from = it->second;
    }
    for (size_t i = from; i < all.size(); ++i) {
      const ComputedChange& c = all[i];
      if (c.trait != info.name) continue;
      if (c.target != info.target)
        err << "computed " << info.name << ": change seq " << c.seq << " has the wrong target\n";
      if (!accounts && model && model->erased_at.count(c.profile) &&
          i < model->erased_at.at(c.profile)) {
        seq = c.seq;
        continue;  // a change of an erased profile that had the same key
      }
      if (c.seq == 1) {
        last.clear();
        seq = 0;
      }
      if (c.seq != seq + 1)
        err << "computed " << info.name << ": seq " << c.seq << " after " << seq << "\n";
      seq = c.seq;
      auto it = last.find(c.profile);
      if (it != last.end() && !(it->second == c.old_value))
        err << "computed " << info.name << ": change seq " << c.seq << " of " << c.profile
            << " has old value " << ValueJson(c.old_value) << " but the previous new value was "
            << ValueJson(it->second) << "\n";
      if (c.old_value == c.new_value)
        err << "computed " << info.name << ": change seq " << c.seq << " changes nothing\n";
      if (c.cause == Cause::kErased)
        last.erase(c.profile);  // a later profile with the key starts from the empty value
      else
        last[c.profile] = c.new_value;
    }
    if (info.last_seq != seq)
      err << "computed " << info.name << ": last_seq " << info.last_seq << " != " << seq << "\n";
    for (const auto& [key, v] : last) {
      auto it = current.find(key);
      if (it != current.end() && !(it->second == v))
        err << "computed " << info.name << ": the latest change of " << key << " says "
            << ValueJson(v) << " but the value is " << ValueJson(it->second) << "\n";
    }
  }
  return err.str();
}

inline std::string JoinKeys(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + v[i];
  return out + "]";
}

// "engine has [...] that the reference lacks; reference has [...] that the engine lacks".
inline std::string DiffKeys(const std::vector<std::string>& engine,
                            const std::vector<std::string>& ref) {
  std::vector<std::string> only_e, only_r;
  std::set<std::string> se(engine.begin(), engine.end()), sr(ref.begin(), ref.end());
  for (const auto& k : se)
    if (!sr.count(k)) only_e.push_back(k);
  for (const auto& k : sr)
    if (!se.count(k)) only_r.push_back(k);
  return "only in engine " + JoinKeys(only_e) + ", only in reference " + JoinKeys(only_r);
}

inline const char* KindSign(ChangeKind k) { return k == ChangeKind::kEnter ? "+" : "-"; }

// The print/parse round trip of one parsed definition. Empty when it holds.
inline std::string CheckRoundTrip(const rules::Expr& def) {
  std::string text = rules::Print(def);
  Result<rules::Expr> again = rules::Parse(text);
  if (!again.ok())
    return "canonical text does not re-parse: '" + text + "': " + again.status().ToString();
  if (!(*again == def))
    return "canonical text re-parses to a different definition: '" + text + "' prints back as '" +
           rules::Print(*again) + "'";
  std::string twice = rules::Print(*again);
  if (twice != text) return "printing is not stable: '" + text + "' then '" + twice + "'";
  return "";
}

// Every check for every live segment. `born` maps each live segment to the index in
// engine.Changes() at which it was (last) created, so a deleted-and-recreated name starts a new
// change stream. Returns an empty string when everything holds, else a description.
inline std::string CheckAll(const Engine& engine, const std::map<std::string, size_t>& born,
                            const Model* model = nullptr) {
  std::ostringstream err;
  const Millis now = engine.Now();
  reference::ListLookup lists;
  if (model) {
    lists = model->Lookup();
    std::vector<std::string> names;
    for (const auto& [name, keys] : model->lists) names.push_back(name);
    if (engine.Lists() != names)
      err << "Lists() = " << JoinKeys(engine.Lists()) << ", expected " << JoinKeys(names) << "\n";
    for (const auto& [name, keys] : model->lists) {
      Result<std::vector<std::string>> got = engine.ListMembers(name);
      std::vector<std::string> want(keys.begin(), keys.end());
      if (!got.ok())
        err << "ListMembers(" << name << "): " << got.status().ToString() << "\n";
      else if (*got != want)
        err << "ListMembers(" << name << ") = " << JoinKeys(*got) << ", expected " << JoinKeys(want)
            << "\n";
    }
    if (engine.Stats().profiles != model->profiles.size())
      err << "Stats().profiles = " << engine.Stats().profiles << ", expected "
          << model->profiles.size() << " known profiles\n";
    if (engine.Stats().profiles != engine.store().live_profiles())
      err << "Stats().profiles disagrees with the store's live profiles\n";
    for (const std::string& p : model->profiles)
      if (!engine.HasProfile(p)) err << "HasProfile(" << p << ") is false for a known profile\n";
    // A merged-away key is known and answers for its survivor.
    for (const auto& [k, survivor] : model->merged) {
      Result<std::string> got = engine.SurvivorOf(k);
      if (!engine.HasProfile(k) || !got.ok() || *got != survivor)
        err << "SurvivorOf(" << k << ") = " << (got.ok() ? *got : got.status().ToString())
            << ", expected " << survivor << "\n";
      if (engine.SegmentsOf(k) != engine.SegmentsOf(survivor))
        err << "SegmentsOf(" << k << ") = " << JoinKeys(engine.SegmentsOf(k))
            << ", but its survivor " << survivor << " is in "
            << JoinKeys(engine.SegmentsOf(survivor)) << "\n";
    }
    if (engine.Stats().accounts != model->accounts.size())
      err << "Stats().accounts = " << engine.Stats().accounts << ", expected "
          << model->accounts.size() << " known accounts\n";
    for (const auto& [a, senders] : model->accounts) {
      if (!engine.HasAccount(a)) err << "HasAccount(" << a << ") is false for a known account\n";
      Result<std::vector<std::string>> users = engine.AccountUsers(a);
      std::vector<std::string> want(senders.begin(), senders.end());
      if (!users.ok() || *users != want)
        err << "AccountUsers(" << a
            << ") = " << (users.ok() ? JoinKeys(*users) : users.status().ToString())
            << ", expected " << JoinKeys(want) << "\n";
    }
  }
  std::vector<SegmentInfo> infos = engine.ListSegments();
  std::vector<std::string> listed;
  for (const auto& si : infos) listed.push_back(si.name);
  std::vector<std::string> expected_names;
  for (const auto& [name, idx] : born) expected_names.push_back(name);
  if (listed != expected_names)
    err << "ListSegments() = " << JoinKeys(listed) << ", expected " << JoinKeys(expected_names)
        << "\n";
  if (!std::is_sorted(listed.begin(), listed.end()))
    err << "ListSegments() is not sorted by name\n";

  std::vector<Change> all = engine.Changes();
  for (const auto& [name, born_at] : born) {
    const rules::Expr* def = engine.Definition(name);
    if (def == nullptr) {
      err << "segment " << name << ": Definition() is null\n";
      continue;
    }
    Result<std::vector<std::string>> members = engine.Members(name);
    if (!members.ok()) {
      err << "segment " << name << ": Members() failed: " << members.status().ToString() << "\n";
      continue;
    }
    Result<SegmentInfo> info = engine.GetSegment(name);
    const bool accounts = info.ok() && info->target == SegmentTarget::kAccounts;
    std::vector<std::string> ref =
        accounts ? reference::AccountMembers(engine.store(), *def, LookupFor(engine), now, lists,
                                             ComputedLookupFor(engine))
                 : reference::Members(engine.store(), *def, LookupFor(engine), now, lists,
                                      ComputedLookupFor(engine));
    if (*members != ref) {
      err << "segment " << name << " (" << rules::Print(*def) << ") at " << FormatTime(now)
          << ": engine members " << JoinKeys(*members) << " != reference " << JoinKeys(ref) << " ("
          << DiffKeys(*members, ref) << ")\n";
    }
    if (!std::is_sorted(members->begin(), members->end()))
      err << "segment " << name << ": Members() not sorted\n";
    if (model)
      for (const std::string& m : *members)
        if (accounts ? !model->accounts.count(m) : !model->profiles.count(m))
          err << "segment " << name << ": member " << m << " is not a known "
              << (accounts ? "account" : "profile") << "\n";
    Result<uint64_t> count = engine.Count(name);
    if (!count.ok() || *count != members->size())
      err << "segment " << name << ": Count() disagrees with Members().size()\n";
    std::string rt = CheckRoundTrip(*def);
    if (!rt.empty()) err << "segment " << name << ": " << rt << "\n";

    if (!info.ok()) {
      err << "segment " << name << ": GetSegment() failed: " << info.status().ToString() << "\n";
    } else {
      if (info->definition != rules::Print(*def))
        err << "segment " << name << ": SegmentInfo.definition '" << info->definition
            << "' is not the canonical text '" << rules::Print(*def) << "'\n";
      if (info->size != members->size())
        err << "segment " << name << ": SegmentInfo.size " << info->size
            << " != " << members->size() << " members\n";
    }

    // Change-stream invariant for this generation of the segment.
    std::set<std::string> replay;
    uint64_t seq = 0;
    for (size_t i = born_at; i < all.size(); ++i) {
      const Change& c = all[i];
      if (c.segment != name) continue;
      ++seq;
      if (c.seq != seq) {
        err << "segment " << name << ": change #" << seq << " has seq " << c.seq << "\n";
        seq = c.seq;
      }
      if (c.kind == ChangeKind::kEnter) {
        if (!replay.insert(c.profile).second)
          err << "segment " << name << ": " << c.profile << " enters twice (seq " << c.seq
              << ", cause " << CauseName(c.cause) << ")\n";
      } else if (replay.erase(c.profile) == 0) {
        err << "segment " << name << ": " << c.profile << " exits while not a member (seq " << c.seq
            << ", cause " << CauseName(c.cause) << ")\n";
      }
      if (c.processed_at > now)
        err << "segment " << name << ": change seq " << c.seq << " processed in the future\n";
    }
    std::vector<std::string> replayed(replay.begin(), replay.end());
    if (replayed != *members)
      err << "segment " << name << ": replayed changes give " << JoinKeys(replayed)
          << " but members are " << JoinKeys(*members) << "\n";
    if (info.ok() && info->last_seq != seq)
      err << "segment " << name << ": SegmentInfo.last_seq " << info->last_seq
          << " != last change seq " << seq << "\n";
  }
  // SegmentsOf() agrees with the members, for every known profile.
  if (model) {
    std::map<std::string, std::vector<std::string>> of, of_account;
    for (const auto& [name, born_at] : born) {
      Result<std::vector<std::string>> members = engine.Members(name);
      Result<SegmentInfo> info = engine.GetSegment(name);
      bool accounts = info.ok() && info->target == SegmentTarget::kAccounts;
      if (members.ok())
        for (const std::string& m : *members) (accounts ? of_account : of)[m].push_back(name);
    }
    for (const std::string& p : model->profiles)
      if (engine.SegmentsOf(p) != of[p])
        err << "SegmentsOf(" << p << ") = " << JoinKeys(engine.SegmentsOf(p))
            << ", but it is a member of " << JoinKeys(of[p]) << "\n";
    for (const auto& [a, senders] : model->accounts)
      if (engine.SegmentsOf(a, SegmentTarget::kAccounts) != of_account[a])
        err << "SegmentsOf(" << a
            << ", kAccounts) = " << JoinKeys(engine.SegmentsOf(a, SegmentTarget::kAccounts))
            << ", but it is a member of " << JoinKeys(of_account[a]) << "\n";
  }
  err << CheckComputed(engine, lists, model);
  return err.str();
}

}  // namespace shoal::testing_util
