// The reference evaluator: membership of a definition at an instant, computed from scratch from
// the retained history by the plainest code possible. It is the oracle the incremental engine is
// tested against, so it shares none of the engine's evaluation logic: it reads docs/language.md
// and the store, nothing else.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/ast.h"
#include "shoal/event.h"
#include "shoal/time.h"
#include "store/store.h"

namespace shoal::reference {

// Resolves `in segment "name"` to that segment's definition; returns nullptr if unknown (the
// reference then treats the condition as false).
using DefinitionLookup = std::function<const rules::Expr*(std::string_view name)>;

// Resolves `in list "name"`: whether the profile key is in that static list now. Unset, or false
// for an unknown list: the condition is false. The caller owns the lists' contents (the tests
// keep their own model of them, so the engine's list bookkeeping is checked too).
using ListLookup = std::function<bool(std::string_view list, std::string_view profile_key)>;

// Resolves `computed.NAME` to that computed trait's definition; nullptr if unknown (the condition
// then reads no value).
using ComputedLookup = std::function<const rules::ComputedDef*(std::string_view name)>;

// The profile keys (sorted ascending, bytewise) of every known profile for which `def` is true
// at `now`, evaluated over every record in `store`. Erased profiles are not known: their ids
// are skipped and their records are tombstones. A merged profile is its survivor with the records
// of every id merged into it (Store::Resolve); merged-away ids are not profiles of their own.
std::vector<std::string> Members(const store::Store& store, const rules::Expr& def,
                                 const DefinitionLookup& lookup, Millis now,
                                 const ListLookup& lists = {}, const ComputedLookup& computed = {});

// The account keys (groupIds, sorted) of every known account (one with a group call that is not
// erased) for which the account definition `def` is true at `now`.
std::vector<std::string> AccountMembers(const store::Store& store, const rules::Expr& def,
                                        const DefinitionLookup& lookup, Millis now,
                                        const ListLookup& lists = {},
                                        const ComputedLookup& computed = {});

// Whether one profile (by dense id) satisfies `def` at `now`; false for an erased id. A
// merged-away id answers for its survivor.
bool IsMember(const store::Store& store, uint32_t profile, const rules::Expr& def,
              const DefinitionLookup& lookup, Millis now, const ListLookup& lists = {},
              const ComputedLookup& computed = {});

// The value of the computed trait `def` for every known profile at `now` (docs/language.md,
// "Computed traits and scores"), as (profile key, value) sorted by key; kNull is no value.
std::vector<std::pair<std::string, Value>> ComputedValues(const store::Store& store,
                                                          const rules::ComputedDef& def,
                                                          const DefinitionLookup& lookup,
                                                          Millis now, const ListLookup& lists = {},
                                                          const ComputedLookup& computed = {});

// The value of the account computed trait `def` for every known account at `now`, as
// (account key, value) sorted by key (docs/language.md, "Account computed traits and scores").
std::vector<std::pair<std::string, Value>> AccountComputedValues(
    const store::Store& store, const rules::ComputedDef& def, const DefinitionLookup& lookup,
    Millis now, const ListLookup& lists = {}, const ComputedLookup& computed = {});

}  // namespace shoal::reference
