#include "durable/db.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

namespace shoal::durable {
namespace {

enum Cf : size_t {
  kDefault = 0,
  kEvents,
  kChanges,
  kMembers,
  kByProfile,
  kBySegment,
  kComputedChanges,
  kComputedByProfile,
  kComputedByTrait,
  kComputedValues,
  kNumCfs
};

const std::vector<std::string>& CfNames() {
  static const std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName,
                                                 "events",
                                                 "changes",
                                                 "members",
                                                 "by_profile",
                                                 "by_segment",
                                                 "computed_changes",
                                                 "computed_by_profile",
                                                 "computed_by_trait",
                                                 "computed_values"};
  return names;
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  return Status::Internal(std::string(what) + ": " + s.ToString());
}

// "prefix\0name"
std::string MetaKey(std::string_view prefix, std::string_view name) {
  std::string k(prefix);
  k.push_back('\0');
  k.append(name);
  return k;
}

std::string Pair(std::string_view a, std::string_view b) {
  std::string k(a);
  k.push_back('\0');
  k.append(b);
  return k;
}

std::string PairSeq(std::string_view a, uint64_t seq) {
  std::string k(a);
  k.push_back('\0');
  PutBigEndian64(seq, &k);
  return k;
}

bool StartsWith(const rocksdb::Slice& s, std::string_view prefix) {
  return s.size() >= prefix.size() && std::memcmp(s.data(), prefix.data(), prefix.size()) == 0;
}

// The distinct first names (the part before '\0') of the keys of one column family, in key
// order: the segments with persisted members, the traits with persisted values.
Result<std::vector<std::string>> FirstNames(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                            const char* key_kind, const char* reading) {
  std::vector<std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, cf));
  for (it->SeekToFirst(); it->Valid();) {
    std::string_view k = it->key().ToStringView();
    size_t z = k.find('\0');
    if (z == std::string_view::npos) return Status::Internal(std::string("corrupt ") + key_kind);
    out.emplace_back(k.substr(0, z));
    // Skip to the next name: the first key after "name\1".
    std::string next(k.substr(0, z));
    next.push_back('\1');
    it->Seek(next);
  }
  if (!it->status().ok()) return FromRocks(it->status(), reading);
  return out;
}

// Up to `limit` records of a log keyed by big-endian seq with seq > after (those whose key(c) is
// in `keys` only, when it is not empty), scanning at most `max_scan`: the change log, the
// computed change log. *scanned_to: the last seq looked at.
template <typename Stored, typename Decode, typename KeyOf>
Status ReadLog(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, uint64_t after, size_t limit,
               const std::vector<std::string>& keys, size_t max_scan, std::vector<Stored>* out,
               uint64_t* scanned_to, Decode decode, KeyOf key, const char* log) {
  *scanned_to = after;
  // `after` comes from clients (?after=, Last-Event-ID): after + 1 must not wrap to 0.
  if (after == std::numeric_limits<uint64_t>::max()) return Status::Ok();
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, cf));
  std::string start;
  PutBigEndian64(after + 1, &start);
  size_t scanned = 0;
  Stored c;
  for (it->Seek(start); it->Valid() && out->size() < limit && scanned < max_scan; it->Next()) {
    ++scanned;
    if (it->key().size() != 8) return Status::Internal(std::string("corrupt key in ") + log);
    Status st = decode(it->value().ToStringView(), &c);
    if (!st.ok()) return st;
    c.seq = GetBigEndian64(it->key().data());
    *scanned_to = c.seq;
    if (!keys.empty() && std::find(keys.begin(), keys.end(), key(c)) == keys.end()) continue;
    out->push_back(c);
  }
  return FromRocks(it->status(), std::string("reading ") + log);
}

// Appends the record logged in `log` at big-endian `seq_key` to *out, with its seq; a record no
// longer logged is skipped. `value`: the caller's scratch.
template <typename Stored, typename Decode>
Status AppendLogged(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log,
                    const rocksdb::Slice& seq_key, Decode decode, const char* reading,
                    std::string* value, std::vector<Stored>* out) {
  rocksdb::Status s = db->Get({}, log, seq_key, value);
  if (s.IsNotFound()) return Status::Ok();
  if (!s.ok()) return FromRocks(s, reading);
  Stored c;
  Status st = decode(*value, &c);
  if (!st.ok()) return st;
  c.seq = GetBigEndian64(seq_key.data());
  out->push_back(std::move(c));
  return Status::Ok();
}

// One profile's history through its index (family `index`: profile '\0' big-endian seq -> the
// record in `log`), redacted into *wb: every index entry goes, and each logged record with
// seq < before names "(erased)" instead of the profile (its cause too when that was the profile).
// Records from `before` on (the erasure's own) stay. Returns the index scan's status.
template <typename Stored, typename Decode, typename Encode>
rocksdb::Status RedactHistory(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* index,
                              rocksdb::ColumnFamilyHandle* log, std::string_view profile,
                              uint64_t before, Decode decode, Encode encode,
                              rocksdb::WriteBatch* wb) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, index));
  const std::string prefix = Pair(profile, "");
  std::string value, encoded;
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 8) {
      wb->Delete(index, it->key());
      continue;
    }
    rocksdb::Slice seq_key(it->key().data() + prefix.size(), 8);
    if (GetBigEndian64(seq_key.data()) >= before) break;
    wb->Delete(index, it->key());
    if (!db->Get({}, log, seq_key, &value).ok()) continue;
    Stored c;
    if (!decode(value, &c).ok()) continue;
    c.change.profile = "(erased)";
    if (c.change.cause_ref == profile) c.change.cause_ref = "(erased)";
    encoded.clear();
    encode(c, &encoded);
    wb->Put(log, seq_key, encoded);
  }
  return it->status();
}

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

const char* GetVarint(const char* p, const char* end, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift <= 63 && p < end; shift += 7) {
    uint8_t b = static_cast<uint8_t>(*p++);
    r |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return p;
    }
  }
  return nullptr;
}

void EncodeSegmentRecord(const SegmentRecord& s, std::string* out) {
  out->clear();
  PutVarint(s.order, out);
  PutVarint(static_cast<uint64_t>(s.created_at), out);
  PutVarint(static_cast<uint64_t>(s.updated_at), out);
  PutVarint(static_cast<uint64_t>(s.target), out);
  out->append(s.definition);
}

bool DecodeSegmentRecord(std::string_view name, std::string_view in, SegmentRecord* s) {
  const char* p = in.data();
  const char* end = p + in.size();
  uint64_t order, created, updated, target;
  if (!(p = GetVarint(p, end, &order)) || !(p = GetVarint(p, end, &created)) ||
      !(p = GetVarint(p, end, &updated)) || !(p = GetVarint(p, end, &target)) || target > 1) {
    return false;
  }
  s->target = static_cast<SegmentTarget>(target);
  s->name = name;
  s->order = order;
  s->created_at = static_cast<Millis>(created);
  s->updated_at = static_cast<Millis>(updated);
  s->definition.assign(p, end);
  return true;
}

}  // namespace

// --- Batch ------------------------------------------------------------------------------------

Batch::Batch(const Db* db) : db_(db), wb_(std::make_unique<rocksdb::WriteBatch>()) {}
Batch::~Batch() = default;
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&&) noexcept = default;

void Batch::PutEvent(uint64_t log_seq, const Message& msg) {
  key_.clear();
  PutBigEndian64(log_seq, &key_);
  value_.clear();
  EncodeMessage(msg, &value_);
  wb_->Put(db_->handles_[kEvents], key_, value_);
}

void Batch::PutChange(const StoredChange& c) {
  key_.clear();
  PutBigEndian64(c.seq, &key_);
  value_.clear();
  EncodeChange(c, &value_);
  wb_->Put(db_->handles_[kChanges], key_, value_);

  const Change& ch = c.change;
  if (ch.kind == ChangeKind::kEnter) {
    wb_->Put(db_->handles_[kMembers], Pair(ch.segment, ch.profile), "");
  } else {
    wb_->Delete(db_->handles_[kMembers], Pair(ch.segment, ch.profile));
  }
  wb_->Put(db_->handles_[kByProfile], PairSeq(ch.profile, c.seq), "");
  value_.clear();
  PutBigEndian64(c.seq, &value_);
  PutVarint(c.size_after, &value_);
  PutVarint(static_cast<uint64_t>(ch.processed_at), &value_);
  wb_->Put(db_->handles_[kBySegment], PairSeq(ch.segment, c.segment_seq), value_);
  value_.clear();
  PutBigEndian64(c.segment_seq, &value_);
  wb_->Put(db_->handles_[kDefault], MetaKey("segseq", ch.segment), value_);
}

void Batch::PutComputed(const SegmentRecord& s) {
  EncodeSegmentRecord(s, &value_);
  wb_->Put(db_->handles_[kDefault], MetaKey("computed", s.name), value_);
}

void Batch::DeleteComputed(std::string_view name) {
  wb_->Delete(db_->handles_[kDefault], MetaKey("computed", name));
}

void Batch::PutSegment(const SegmentRecord& s) {
  EncodeSegmentRecord(s, &value_);
  wb_->Put(db_->handles_[kDefault], MetaKey("seg", s.name), value_);
}

void Batch::DeleteSegment(std::string_view name) {
  wb_->Delete(db_->handles_[kDefault], MetaKey("seg", name));
}

void Batch::PutList(std::string_view name) {
  wb_->Put(db_->handles_[kDefault], MetaKey("list", name), "");
}

void Batch::DeleteList(std::string_view name) {
  wb_->Delete(db_->handles_[kDefault], MetaKey("list", name));
}

void Batch::PutListMember(std::string_view list, std::string_view profile) {
  wb_->Put(db_->handles_[kDefault], MetaKey("lm", Pair(list, profile)), "");
}

void Batch::DeleteListMember(std::string_view list, std::string_view profile) {
  wb_->Delete(db_->handles_[kDefault], MetaKey("lm", Pair(list, profile)));
}

void Batch::PutErasure(std::string_view profile, uint64_t log_seq, uint64_t change_seq) {
  value_.clear();
  PutBigEndian64(log_seq, &value_);
  PutBigEndian64(change_seq, &value_);
  wb_->Put(db_->handles_[kDefault], MetaKey("erase", profile), value_);
}

void Batch::PutComputedChange(const StoredComputedChange& c) {
  key_.clear();
  PutBigEndian64(c.seq, &key_);
  value_.clear();
  EncodeComputedChange(c, &value_);
  wb_->Put(db_->handles_[kComputedChanges], key_, value_);

  const ComputedChange& ch = c.change;
  PutComputedValue(ch.trait, ch.profile, ch.target, ch.new_value);
  wb_->Put(db_->handles_[kComputedByProfile], PairSeq(ch.profile, c.seq), "");
  // The trait's last seq is the last key of its index (ComputedSeqs), not a record rewritten with
  // every change: one write less per change, and no pile of versions of one key in the memtable.
  value_.clear();
  PutBigEndian64(c.seq, &value_);
  wb_->Put(db_->handles_[kComputedByTrait], PairSeq(ch.trait, c.trait_seq), value_);
}

void Batch::PutComputedValue(std::string_view trait, std::string_view profile, SegmentTarget target,
                             const Value& v) {
  if (v.type == ValueType::kNull) {
    wb_->Delete(db_->handles_[kComputedValues], Pair(trait, profile));
    return;
  }
  value_.clear();
  value_.push_back(static_cast<char>(target));
  EncodeValue(v, &value_);
  wb_->Put(db_->handles_[kComputedValues], Pair(trait, profile), value_);
}

void Batch::DeleteComputedValues(std::string_view trait) {
  // Every key "trait\0...": from "trait\0" up to "trait\1".
  std::string from = Pair(trait, ""), to(trait);
  to.push_back('\1');
  wb_->DeleteRange(db_->handles_[kComputedValues], from, to);
}

void Batch::PutComputedErasure(std::string_view profile, uint64_t log_seq, uint64_t change_seq,
                               uint64_t computed_seq) {
  value_.clear();
  PutBigEndian64(log_seq, &value_);
  PutBigEndian64(change_seq, &value_);
  PutBigEndian64(computed_seq, &value_);
  wb_->Put(db_->handles_[kDefault], MetaKey("erase", profile), value_);
}

size_t Batch::Count() const { return static_cast<size_t>(wb_->Count()); }
size_t Batch::ByteSize() const { return wb_->GetDataSize(); }

// --- Db ---------------------------------------------------------------------------------------

Result<std::unique_ptr<Db>> Db::Open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.IncreaseParallelism(2);
  options.OptimizeLevelStyleCompaction(64 << 20);
  options.compression = rocksdb::kLZ4Compression;
  options.max_open_files = 512;

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const std::string& name : CfNames()) {
    rocksdb::ColumnFamilyOptions cf(options);
    cfs.emplace_back(name, cf);
  }
  std::unique_ptr<Db> db(new Db());
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(options), dir, cfs, &db->handles_, &raw);
  if (!s.ok()) return FromRocks(s, "opening the data directory " + dir);
  db->db_.reset(raw);

  // The next sequence numbers continue from the last keys.
  for (auto [cf, out] :
       {std::pair{kEvents, &db->last_event_seq_}, std::pair{kChanges, &db->last_change_seq_},
        std::pair{kComputedChanges, &db->last_computed_seq_}}) {
    std::unique_ptr<rocksdb::Iterator> it(db->db_->NewIterator({}, db->handles_[cf]));
    it->SeekToLast();
    if (it->Valid() && it->key().size() == 8) *out = GetBigEndian64(it->key().data());
    if (!it->status().ok()) return FromRocks(it->status(), "reading the last sequence number");
  }
  return db;
}

Db::~Db() {
  if (!db_) return;
  // Debian's RocksDB keeps assert() on: handles must go before the DB closes.
  for (rocksdb::ColumnFamilyHandle* h : handles_) db_->DestroyColumnFamilyHandle(h);
  handles_.clear();
  db_->Close();
}

Status Db::Write(Batch* batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, batch->wb_.get()), "writing to the store");
}

Status Db::ForEachEvent(uint64_t after,
                        const std::function<Status(uint64_t, std::string_view)>& fn) const {
  rocksdb::ReadOptions ro;
  ro.readahead_size = 4 << 20;
  ro.fill_cache = false;
  if (after == std::numeric_limits<uint64_t>::max()) return Status::Ok();  // after + 1 wraps
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kEvents]));
  std::string start;
  PutBigEndian64(after + 1, &start);
  for (it->Seek(start); it->Valid(); it->Next()) {
    if (it->key().size() != 8) return Status::Internal("corrupt event log key");
    Status st = fn(GetBigEndian64(it->key().data()), it->value().ToStringView());
    if (!st.ok()) return st;
  }
  return FromRocks(it->status(), "reading the event log");
}

Result<std::vector<SegmentRecord>> Db::Segments() const { return Definitions("seg"); }

Result<std::vector<SegmentRecord>> Db::ComputedTraits() const { return Definitions("computed"); }

Result<std::vector<SegmentRecord>> Db::Definitions(std::string_view kind) const {
  std::vector<SegmentRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kDefault]));
  const std::string prefix = MetaKey(kind, "");
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    SegmentRecord r;
    std::string_view name = it->key().ToStringView().substr(prefix.size());
    if (!DecodeSegmentRecord(name, it->value().ToStringView(), &r)) {
      return Status::Internal("corrupt " + std::string(kind) + " record for " + std::string(name));
    }
    out.push_back(std::move(r));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading definitions");
  std::sort(out.begin(), out.end(),
            [](const SegmentRecord& a, const SegmentRecord& b) { return a.order < b.order; });
  return out;
}

Result<std::vector<std::pair<std::string, uint64_t>>> Db::SegmentSeqs() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kDefault]));
  const std::string prefix = MetaKey("segseq", "");
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    if (it->value().size() != 8) return Status::Internal("corrupt segment sequence record");
    out.emplace_back(it->key().ToString().substr(prefix.size()),
                     GetBigEndian64(it->value().data()));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading segment sequences");
  return out;
}

Result<std::vector<std::pair<std::string, std::vector<std::string>>>> Db::Lists() const {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kDefault]));
  const std::string prefix = MetaKey("list", "");
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    out.emplace_back(it->key().ToString().substr(prefix.size()), std::vector<std::string>{});
  }
  for (auto& [name, members] : out) {
    const std::string mp = MetaKey("lm", Pair(name, ""));
    for (it->Seek(mp); it->Valid() && StartsWith(it->key(), mp); it->Next()) {
      members.push_back(it->key().ToString().substr(mp.size()));
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading lists");
  return out;
}

Result<std::vector<ErasureRecord>> Db::ErasureRecords() const {
  std::vector<ErasureRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kDefault]));
  const std::string prefix = MetaKey("erase", "");
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    rocksdb::Slice v = it->value();
    if (v.size() != 8 && v.size() != 16 && v.size() != 24) {
      return Status::Internal("corrupt erasure record");
    }
    out.push_back({it->key().ToString().substr(prefix.size()), GetBigEndian64(v.data()),
                   v.size() >= 16 ? GetBigEndian64(v.data() + 8) : UINT64_MAX,
                   v.size() == 24 ? GetBigEndian64(v.data() + 16) : UINT64_MAX});
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading erasures");
  return out;
}

Result<std::vector<std::pair<std::string, uint64_t>>> Db::Erasures() const {
  Result<std::vector<ErasureRecord>> records = ErasureRecords();
  if (!records.ok()) return records.status();
  std::vector<std::pair<std::string, uint64_t>> out;
  for (ErasureRecord& r : *records) out.emplace_back(std::move(r.profile), r.log_seq);
  return out;
}

Status Db::ForEachMember(std::string_view segment,
                         const std::function<void(std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kMembers]));
  const std::string prefix = Pair(segment, "");
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    fn(it->key().ToStringView().substr(prefix.size()));
  }
  return FromRocks(it->status(), "reading members");
}

Result<std::vector<std::string>> Db::MemberSegments() const {
  return FirstNames(db_.get(), handles_[kMembers], "member key", "reading members");
}

Status Db::ReadChanges(uint64_t after, size_t limit, const std::vector<std::string>& segments,
                       size_t max_scan, std::vector<StoredChange>* out,
                       uint64_t* scanned_to) const {
  return ReadLog(
      db_.get(), handles_[kChanges], after, limit, segments, max_scan, out, scanned_to,
      DecodeChange, [](const StoredChange& c) -> const std::string& { return c.change.segment; },
      "the change log");
}

Status Db::ProfileHistory(std::string_view profile, std::vector<StoredChange>* out) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kByProfile]));
  const std::string prefix = Pair(profile, "");
  std::vector<std::string> keys;
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 8) continue;
    keys.emplace_back(it->key().data() + prefix.size(), 8);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading a profile's history");
  std::string value;
  for (const std::string& k : keys)
    SHOAL_RETURN_IF_ERROR(AppendLogged(db_.get(), handles_[kChanges], k, DecodeChange,
                                       "reading the change log", &value, out));
  return Status::Ok();
}

Status Db::SegmentSizes(std::string_view segment, Millis from, Millis to,
                        std::vector<std::pair<Millis, uint64_t>>* out) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kBySegment]));
  const std::string prefix = Pair(segment, "");
  std::optional<std::pair<Millis, uint64_t>> before;
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    std::string_view v = it->value().ToStringView();
    uint64_t size, t;
    const char* p = v.size() > 8 ? GetVarint(v.data() + 8, v.data() + v.size(), &size) : nullptr;
    if (!p || !GetVarint(p, v.data() + v.size(), &t)) {
      return Status::Internal("corrupt segment history record");
    }
    Millis at = static_cast<Millis>(t);
    if (at < from) {
      before = {at, size};
    } else if (at <= to) {
      if (before) {
        out->push_back(*before);
        before.reset();
      }
      out->emplace_back(at, size);
    } else {
      break;
    }
  }
  if (before) out->push_back(*before);
  return FromRocks(it->status(), "reading a segment's history");
}

Result<Millis> Db::LastSegmentChangeAt(std::string_view segment) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kBySegment]));
  it->SeekForPrev(PairSeq(segment, UINT64_MAX));
  if (!it->Valid() || !StartsWith(it->key(), Pair(segment, ""))) {
    Status st = FromRocks(it->status(), "reading a segment's history");
    if (!st.ok()) return st;
    return Millis{0};
  }
  std::string_view v = it->value().ToStringView();
  uint64_t size, t;
  const char* p = v.size() > 8 ? GetVarint(v.data() + 8, v.data() + v.size(), &size) : nullptr;
  if (!p || !GetVarint(p, v.data() + v.size(), &t)) {
    return Status::Internal("corrupt segment history record");
  }
  return static_cast<Millis>(t);
}

uint64_t Db::ApproximateBytes() const {
  uint64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, "rocksdb.total-sst-files-size", &v)) total += v;
    if (db_->GetIntProperty(h, "rocksdb.cur-size-all-mem-tables", &v)) total += v;
  }
  return total;
}

Status Db::RedactProfile(std::string_view profile, uint64_t before_change) {
  rocksdb::WriteBatch wb;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status it =
      RedactHistory<StoredChange>(db_.get(), handles_[kByProfile], handles_[kChanges], profile,
                                  before_change, DecodeChange, EncodeChange, &wb);
  if (!it.ok()) return FromRocks(it, "erasing a profile's history");
  return FromRocks(db_->Write(wo, &wb), "erasing a profile's history");
}

Status Db::PurgeProfile(std::string_view profile, uint64_t before, uint64_t before_change) {
  Status first = RedactProfile(profile, before_change);
  if (!first.ok()) return first;
  rocksdb::WriteBatch wb;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  // List memberships.
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kDefault]));
    const std::string prefix = MetaKey("lm", "");
    for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
      std::string_view k = it->key().ToStringView().substr(prefix.size());
      size_t z = k.find('\0');
      if (z != std::string_view::npos && k.substr(z + 1) == profile) {
        wb.Delete(handles_[kDefault], it->key());
      }
    }
  }
  // The logged calls.
  {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    ro.readahead_size = 4 << 20;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kEvents]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() != 8 || GetBigEndian64(it->key().data()) >= before) break;
      Result<std::string_view> key = EncodedProfileKey(it->value().ToStringView());
      if (key.ok() && *key == profile) wb.Delete(handles_[kEvents], it->key());
    }
    if (!it->status().ok()) return FromRocks(it->status(), "erasing a profile's events");
  }
  Status st = FromRocks(db_->Write(wo, &wb), "erasing a profile");
  if (!st.ok()) return st;
  // Deleted keys leave the files only when compaction rewrites them.
  rocksdb::CompactRangeOptions co;
  for (Cf cf : {kEvents, kChanges, kByProfile}) {
    st = FromRocks(db_->CompactRange(co, handles_[cf], nullptr, nullptr), "compacting");
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

// --- Computed value changes --------------------------------------------------------------------

Result<std::vector<std::pair<std::string, uint64_t>>> Db::ComputedSeqs() const {
  // One seek to each trait's last index key ("trait\0" BE64), then past it to the next trait.
  std::vector<std::pair<std::string, uint64_t>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kComputedByTrait]));
  for (it->SeekToFirst(); it->Valid();) {
    std::string_view k = it->key().ToStringView();
    size_t z = k.find('\0');
    if (z == std::string_view::npos) return Status::Internal("corrupt computed trait index key");
    std::string next(k.substr(0, z));
    next.push_back('\1');
    it->SeekForPrev(next);
    if (!it->Valid() || it->key().size() != z + 9) {
      return Status::Internal("corrupt computed trait index key");
    }
    out.emplace_back(next.substr(0, z), GetBigEndian64(it->key().data() + z + 1));
    it->Seek(next);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading computed sequences");
  return out;
}

Status Db::ForEachComputedValue(
    std::string_view trait,
    const std::function<void(std::string_view, SegmentTarget, const Value&)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kComputedValues]));
  const std::string prefix = Pair(trait, "");
  Value v;
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    std::string_view rec = it->value().ToStringView();
    if (rec.empty() || static_cast<uint8_t>(rec[0]) > 1 || !DecodeValue(rec.substr(1), &v).ok()) {
      return Status::Internal("corrupt computed value record of " + std::string(trait));
    }
    fn(it->key().ToStringView().substr(prefix.size()),
       static_cast<SegmentTarget>(static_cast<uint8_t>(rec[0])), v);
  }
  return FromRocks(it->status(), "reading computed values");
}

Result<std::vector<std::string>> Db::ComputedValueTraits() const {
  return FirstNames(db_.get(), handles_[kComputedValues], "computed value key",
                    "reading computed values");
}

Status Db::ReadComputedChanges(uint64_t after, size_t limit, const std::vector<std::string>& traits,
                               size_t max_scan, std::vector<StoredComputedChange>* out,
                               uint64_t* scanned_to) const {
  return ReadLog(
      db_.get(), handles_[kComputedChanges], after, limit, traits, max_scan, out, scanned_to,
      DecodeComputedChange,
      [](const StoredComputedChange& c) -> const std::string& { return c.change.trait; },
      "the computed change log");
}

Status Db::ComputedTraitHistory(std::string_view trait, uint64_t after_trait_seq, size_t limit,
                                std::vector<StoredComputedChange>* out) const {
  if (after_trait_seq == std::numeric_limits<uint64_t>::max()) return Status::Ok();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kComputedByTrait]));
  const std::string prefix = Pair(trait, "");
  std::string value;
  for (it->Seek(PairSeq(trait, after_trait_seq + 1));
       it->Valid() && StartsWith(it->key(), prefix) && out->size() < limit; it->Next()) {
    if (it->value().size() != 8) return Status::Internal("corrupt computed trait index");
    SHOAL_RETURN_IF_ERROR(AppendLogged(db_.get(), handles_[kComputedChanges], it->value(),
                                       DecodeComputedChange, "reading the computed change log",
                                       &value, out));
  }
  return FromRocks(it->status(), "reading a computed trait's history");
}

Status Db::ComputedProfileHistory(std::string_view profile,
                                  std::vector<StoredComputedChange>* out) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kComputedByProfile]));
  const std::string prefix = Pair(profile, "");
  std::string value;
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 8) continue;
    rocksdb::Slice seq_key(it->key().data() + prefix.size(), 8);
    SHOAL_RETURN_IF_ERROR(AppendLogged(db_.get(), handles_[kComputedChanges], seq_key,
                                       DecodeComputedChange, "reading the computed change log",
                                       &value, out));
  }
  return FromRocks(it->status(), "reading a profile's computed history");
}

Status Db::RedactComputed(std::string_view profile, uint64_t before_computed) {
  rocksdb::WriteBatch wb;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status it = RedactHistory<StoredComputedChange>(
      db_.get(), handles_[kComputedByProfile], handles_[kComputedChanges], profile, before_computed,
      DecodeComputedChange, EncodeComputedChange, &wb);
  if (!it.ok()) return FromRocks(it, "erasing a profile's computed history");
  return FromRocks(db_->Write(wo, &wb), "erasing a profile's computed history");
}

}  // namespace shoal::durable
