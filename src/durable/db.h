// Shoal's durable state in an embedded RocksDB: the write-ahead log of accepted calls, the change
// log, the persisted membership, segment definitions, static lists and erasures. The engine's
// in-memory state is rebuilt from it on start (see server/service.h for recovery).
//
// Key layout, one column family per kind of record:
//   events      BE64(log seq)                  -> EncodeMessage (profile key first)
//   changes     BE64(change seq)               -> EncodeChange
//   members     segment \0 profile             -> ""     (the membership as last persisted)
//   by_profile  profile \0 BE64(change seq)    -> ""     (a profile's membership history)
//   by_segment  segment \0 BE64(segment seq)   -> BE64(change seq) varint(size) zigzag(time)
//   computed_changes     BE64(computed seq)            -> EncodeComputedChange
//   computed_by_profile  profile \0 BE64(computed seq) -> ""  (a profile's value history)
//   computed_by_trait    trait \0 BE64(trait seq)      -> BE64(computed seq)
//   computed_values      trait \0 profile              -> target byte, EncodeValue (the value as
//                                                        last persisted; no key: no value)
//   default     "seg\0" name -> segment record; "segseq\0" name -> BE64 last segment seq;
//               "list\0" name -> ""; "lm\0" list \0 profile -> ""; "erase\0" profile -> BE64
//               log seq of the erasure.
//
// Threading: reads are thread-safe (RocksDB's own guarantees); writes come from the server's one
// commit thread, in order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "durable/codec.h"
#include "shoal/event.h"
#include "shoal/status.h"
#include "shoal/time.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace shoal::durable {

struct ErasureRecord {
  std::string profile;
  uint64_t log_seq = 0;                // its calls before this log seq are erased
  uint64_t change_seq = 0;             // its changes before this seq are redacted
  uint64_t computed_seq = UINT64_MAX;  // its computed value changes before this seq are redacted
};

struct SegmentRecord {
  std::string name;
  std::string definition;  // canonical text
  uint64_t order = 0;      // creation order: definitions are re-created in this order
  Millis created_at = 0;
  Millis updated_at = 0;
  SegmentTarget target = SegmentTarget::kUsers;
};

class Db;

// Writes that land together or not at all (one RocksDB WriteBatch).
class Batch {
 public:
  explicit Batch(const Db* db);
  ~Batch();
  Batch(Batch&&) noexcept;
  Batch& operator=(Batch&&) noexcept;

  void PutEvent(uint64_t log_seq, const Message& msg);
  // The change itself, its indexes by profile and by segment, the persisted membership and the
  // segment's last sequence number.
  void PutChange(const StoredChange& c);
  void PutSegment(const SegmentRecord& s);
  void DeleteSegment(std::string_view name);
  // A computed trait's definition (its target: users' or accounts'); `order` is drawn from the
  // segments' counter, so that recovery re-creates both in one creation order.
  void PutComputed(const SegmentRecord& s);
  void DeleteComputed(std::string_view name);
  void PutList(std::string_view name);
  void DeleteList(std::string_view name);  // the list's member keys are deleted by the caller
  void PutListMember(std::string_view list, std::string_view profile);
  void DeleteListMember(std::string_view list, std::string_view profile);
  // The profile's calls with log seq < log_seq and its changes with seq < change_seq are the
  // erased ones (the calls and changes of the new profile that reuses the id come later).
  void PutErasure(std::string_view profile, uint64_t log_seq, uint64_t change_seq = UINT64_MAX);
  // A computed value change: the record, its indexes by profile and by trait (whose last key is
  // the trait's last sequence number) and the persisted value (computed_values).
  void PutComputedChange(const StoredComputedChange& c);
  // Sets a persisted computed value without a change record (the values a new trait starts with).
  // A null value deletes it.
  void PutComputedValue(std::string_view trait, std::string_view profile, SegmentTarget target,
                        const Value& v);
  // Forgets every persisted value of a trait (its change history stays).
  void DeleteComputedValues(std::string_view trait);
  // The erasure's position in the computed change log (see ErasureRecord::computed_seq); after
  // PutErasure of the same profile.
  void PutComputedErasure(std::string_view profile, uint64_t log_seq, uint64_t change_seq,
                          uint64_t computed_seq);
  size_t Count() const;
  size_t ByteSize() const;
  bool Empty() const { return Count() == 0; }

 private:
  friend class Db;
  const Db* db_;
  std::unique_ptr<rocksdb::WriteBatch> wb_;
  std::string key_, value_;  // scratch
};

class Db {
 public:
  // Opens the store in `dir`, creating it when missing. Errors: kInternal with RocksDB's message
  // (e.g. the directory is locked by another running server).
  static Result<std::unique_ptr<Db>> Open(const std::string& dir);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Applies the batch atomically. With sync, returns once it is on disk (fsync of the WAL).
  Status Write(Batch* batch, bool sync);

  // --- Recovery -------------------------------------------------------------------------------
  // Calls fn for every logged call with log seq > after, in log order; stops at fn's first error.
  Status ForEachEvent(uint64_t after,
                      const std::function<Status(uint64_t seq, std::string_view rec)>& fn) const;
  Result<std::vector<SegmentRecord>> Segments() const;        // in creation order
  Result<std::vector<SegmentRecord>> ComputedTraits() const;  // in creation order
  // The last segment seq of every segment that ever had a change (deleted ones included).
  Result<std::vector<std::pair<std::string, uint64_t>>> SegmentSeqs() const;
  // Each list with its members.
  Result<std::vector<std::pair<std::string, std::vector<std::string>>>> Lists() const;
  Result<std::vector<std::pair<std::string, uint64_t>>> Erasures() const;  // (profile, log_seq)
  Result<std::vector<ErasureRecord>> ErasureRecords() const;
  // Persisted members of one segment, in key order.
  Status ForEachMember(std::string_view segment,
                       const std::function<void(std::string_view profile)>& fn) const;
  // Names of the segments that have persisted members (possibly deleted ones, after a crash).
  Result<std::vector<std::string>> MemberSegments() const;
  uint64_t LastEventSeq() const { return last_event_seq_; }        // as found at Open
  uint64_t LastChangeSeq() const { return last_change_seq_; }      // as found at Open
  uint64_t LastComputedSeq() const { return last_computed_seq_; }  // as found at Open
  // The last trait seq of every computed trait that ever had a change (deleted ones included).
  Result<std::vector<std::pair<std::string, uint64_t>>> ComputedSeqs() const;
  // The persisted values of one computed trait, in profile key order.
  Status ForEachComputedValue(
      std::string_view trait,
      const std::function<void(std::string_view profile, SegmentTarget target, const Value& v)>& fn)
      const;
  // Names of the traits that have persisted values (possibly deleted ones, after a crash).
  Result<std::vector<std::string>> ComputedValueTraits() const;

  // --- Reads for the API (any thread) ---------------------------------------------------------
  // Up to `limit` changes with seq > after (of the given segments only, when not empty), scanning
  // at most `max_scan` records. *scanned_to is the last seq looked at (>= after).
  Status ReadChanges(uint64_t after, size_t limit, const std::vector<std::string>& segments,
                     size_t max_scan, std::vector<StoredChange>* out, uint64_t* scanned_to) const;
  // Every change of a profile, oldest first.
  Status ProfileHistory(std::string_view profile, std::vector<StoredChange>* out) const;
  // (processed_at, size after) of each change of a segment with processed_at in [from, to].
  // The first point is the last change before `from` when there is one.
  Status SegmentSizes(std::string_view segment, Millis from, Millis to,
                      std::vector<std::pair<Millis, uint64_t>>* out) const;
  // processed_at of the latest change of a segment (of that name), 0 when it never changed.
  Result<Millis> LastSegmentChangeAt(std::string_view segment) const;
  // Computed value changes with seq > after, as ReadChanges (filtered by trait when `traits` is
  // not empty).
  Status ReadComputedChanges(uint64_t after, size_t limit, const std::vector<std::string>& traits,
                             size_t max_scan, std::vector<StoredComputedChange>* out,
                             uint64_t* scanned_to) const;
  // Up to `limit` changes of one trait with trait seq > after_trait_seq, oldest first.
  Status ComputedTraitHistory(std::string_view trait, uint64_t after_trait_seq, size_t limit,
                              std::vector<StoredComputedChange>* out) const;
  // Every computed value change of a profile (or an account: the key is the id), oldest first.
  Status ComputedProfileHistory(std::string_view profile,
                                std::vector<StoredComputedChange>* out) const;
  // Bytes on disk (SST files and WAL), approximately.
  uint64_t ApproximateBytes() const;

  // --- Erasure --------------------------------------------------------------------------------
  // Physically removes a profile's data: first (fast, through the profile index) its id in the
  // stored change records with seq < before_change becomes "(erased)" and those index entries go;
  // then its list memberships and its logged calls with log seq < before (a scan of the log), and
  // the log is compacted so that the bytes leave the disk. Slow: run it off the commit path. Safe
  // to repeat.
  Status PurgeProfile(std::string_view profile, uint64_t before,
                      uint64_t before_change = UINT64_MAX);
  // The first, fast part of PurgeProfile alone: the change records and the history index.
  Status RedactProfile(std::string_view profile, uint64_t before_change);
  // The same for its computed value changes with seq < before_computed (its persisted values
  // went with the erasure's own changes to no value).
  Status RedactComputed(std::string_view profile, uint64_t before_computed);

 private:
  Db() = default;
  friend class Batch;
  // The definition records of one kind ("seg" or "computed"), in creation order.
  Result<std::vector<SegmentRecord>> Definitions(std::string_view kind) const;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned; destroyed before db_
  uint64_t last_event_seq_ = 0;
  uint64_t last_change_seq_ = 0;
  uint64_t last_computed_seq_ = 0;
};

}  // namespace shoal::durable
