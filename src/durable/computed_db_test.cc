// The computed value change log in the store: the record and its indexes, the persisted values,
// reads by seq, by trait and by profile, redaction, and what a reopen finds.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "durable/db.h"
#include "durable/db_test_fixture.h"

namespace shoal::durable {
namespace {

class ComputedDbTest : public DbFixture {
 protected:
  std::map<std::string, Value> Values(std::string_view trait) {
    std::map<std::string, Value> out;
    Status st = db_->ForEachComputedValue(
        trait, [&](std::string_view p, SegmentTarget, const Value& v) { out[std::string(p)] = v; });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }
  std::vector<uint64_t> Seqs(const std::vector<StoredComputedChange>& cs) {
    std::vector<uint64_t> out;
    for (const auto& c : cs) out.push_back(c.seq);
    return out;
  }
};

StoredComputedChange Make(uint64_t seq, std::string trait, uint64_t trait_seq, std::string profile,
                          Value old_value, Value new_value, Cause cause = Cause::kEvent) {
  StoredComputedChange c;
  c.seq = seq;
  c.trait_seq = trait_seq;
  c.change.trait = std::move(trait);
  c.change.profile = std::move(profile);
  c.change.old_value = std::move(old_value);
  c.change.new_value = std::move(new_value);
  c.change.cause = cause;
  c.change.cause_ref = "msg-" + std::to_string(seq);
  c.change.event_time = static_cast<Millis>(seq) * 1000;
  c.change.processed_at = static_cast<Millis>(seq) * 1000 + 3;
  return c;
}

TEST_F(ComputedDbTest, ChangesKeepValuesSeqsAndIndexesAcrossAReopen) {
  {
    Batch b(db_.get());
    b.PutComputedChange(Make(1, "ltv", 1, "u1", Value::Number(0), Value::Number(10)));
    b.PutComputedChange(Make(2, "fav", 1, "u1", Value::Null(), Value::String("Shoes")));
    b.PutComputedChange(Make(3, "ltv", 2, "u2", Value::Number(0), Value::Number(5)));
    b.PutComputedChange(Make(4, "ltv", 3, "u1", Value::Number(10), Value::Number(30)));
    b.PutComputedChange(Make(5, "fav", 2, "u1", Value::String("Shoes"), Value::Null()));
    EXPECT_EQ(db_->LastComputedSeq(), 0u);  // as found at Open
    Write(b);
  }
  Reopen();
  EXPECT_EQ(db_->LastComputedSeq(), 5u);
  EXPECT_EQ(db_->LastChangeSeq(), 0u);  // a sequence of its own
  using TraitSeqs = std::vector<std::pair<std::string, uint64_t>>;
  EXPECT_EQ(*db_->ComputedSeqs(), (TraitSeqs{{"fav", 2}, {"ltv", 3}}));
  // The last value of each (trait, profile); a change to null removes it.
  EXPECT_EQ(Values("ltv"),
            (std::map<std::string, Value>{{"u1", Value::Number(30)}, {"u2", Value::Number(5)}}));
  EXPECT_TRUE(Values("fav").empty());
  EXPECT_EQ(*db_->ComputedValueTraits(), std::vector<std::string>{"ltv"});

  std::vector<StoredComputedChange> out;
  uint64_t scanned = 0;
  ASSERT_TRUE(db_->ReadComputedChanges(1, 2, {}, 100, &out, &scanned).ok());
  EXPECT_EQ(Seqs(out), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(scanned, 3u);
  out.clear();
  ASSERT_TRUE(db_->ReadComputedChanges(0, 100, {"fav"}, 100, &out, &scanned).ok());
  EXPECT_EQ(Seqs(out), (std::vector<uint64_t>{2, 5}));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].change.new_value, Value::String("Shoes"));
  EXPECT_EQ(out[0].change.cause_ref, "msg-2");
  out.clear();
  ASSERT_TRUE(db_->ReadComputedChanges(0, 100, {}, 2, &out, &scanned).ok());
  EXPECT_EQ(scanned, 2u) << "max_scan bounds the work";
  out.clear();
  ASSERT_TRUE(db_->ReadComputedChanges(UINT64_MAX, 100, {}, 100, &out, &scanned).ok());
  EXPECT_TRUE(out.empty());

  // By trait: trait seqs after `after`, paged by limit.
  out.clear();
  ASSERT_TRUE(db_->ComputedTraitHistory("ltv", 1, 1, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].trait_seq, 2u);
  EXPECT_EQ(out[0].seq, 3u);
  out.clear();
  ASSERT_TRUE(db_->ComputedTraitHistory("ltv", 0, 100, &out).ok());
  EXPECT_EQ(Seqs(out), (std::vector<uint64_t>{1, 3, 4}));
  out.clear();
  ASSERT_TRUE(db_->ComputedTraitHistory("lt", 0, 100, &out).ok());
  EXPECT_TRUE(out.empty()) << "a prefix of a name is another trait";
  ASSERT_TRUE(db_->ComputedTraitHistory("ltv", UINT64_MAX, 100, &out).ok());
  EXPECT_TRUE(out.empty());

  // By profile.
  out.clear();
  ASSERT_TRUE(db_->ComputedProfileHistory("u1", &out).ok());
  EXPECT_EQ(Seqs(out), (std::vector<uint64_t>{1, 2, 4, 5}));
}

TEST_F(ComputedDbTest, SnapshotValuesAndDeletingATraitsValues) {
  Batch b(db_.get());
  b.PutComputedValue("ltv", "u1", SegmentTarget::kUsers, Value::Number(1));
  b.PutComputedValue("ltv", "u2", SegmentTarget::kUsers, Value::Number(2));
  b.PutComputedValue("ltv2", "u1", SegmentTarget::kAccounts, Value::Bool(true));
  b.PutComputedValue("ltv", "u3", SegmentTarget::kUsers, Value::Null());  // no value: no key
  Write(b);
  EXPECT_EQ(Values("ltv").size(), 2u);
  Batch d(db_.get());
  d.DeleteComputedValues("ltv");
  d.PutComputedValue("ltv", "u9", SegmentTarget::kUsers, Value::Number(9));  // after: kept
  Write(d);
  EXPECT_EQ(Values("ltv"), (std::map<std::string, Value>{{"u9", Value::Number(9)}}));
  SegmentTarget target = SegmentTarget::kUsers;
  ASSERT_TRUE(db_->ForEachComputedValue(
                     "ltv2", [&](std::string_view, SegmentTarget t, const Value&) { target = t; })
                  .ok());
  EXPECT_EQ(target, SegmentTarget::kAccounts) << "the deletion of ltv left ltv2 alone";
}

TEST_F(ComputedDbTest, RedactionKeepsTheErasuresOwnChangesAndTheErasureRecord) {
  Batch b(db_.get());
  b.PutComputedChange(Make(1, "ltv", 1, "u1", Value::Number(0), Value::Number(10)));
  b.PutComputedChange(Make(2, "ltv", 2, "u2", Value::Number(0), Value::Number(3)));
  b.PutComputedChange(Make(3, "ltv", 3, "u1", Value::Number(10), Value::Null(), Cause::kErased));
  b.PutComputedErasure("u1", 40, 7, 3);
  Write(b);
  ASSERT_TRUE(db_->RedactComputed("u1", 3).ok());
  std::vector<StoredComputedChange> out;
  uint64_t scanned = 0;
  ASSERT_TRUE(db_->ReadComputedChanges(0, 100, {}, 100, &out, &scanned).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].change.profile, "(erased)");
  EXPECT_EQ(out[1].change.profile, "u2");
  EXPECT_EQ(out[2].change.profile, "u1");
  out.clear();
  ASSERT_TRUE(db_->ComputedProfileHistory("u1", &out).ok());
  EXPECT_EQ(Seqs(out), std::vector<uint64_t>{3});
  Result<std::vector<ErasureRecord>> erasures = db_->ErasureRecords();
  ASSERT_TRUE(erasures.ok());
  ASSERT_EQ(erasures->size(), 1u);
  EXPECT_EQ((*erasures)[0].log_seq, 40u);
  EXPECT_EQ((*erasures)[0].change_seq, 7u);
  EXPECT_EQ((*erasures)[0].computed_seq, 3u);
  // An erasure written before computed changes were logged has no limit on them.
  Batch old(db_.get());
  old.PutErasure("u5", 2, 4);
  Write(old);
  EXPECT_EQ(db_->ErasureRecords()->at(1).computed_seq, UINT64_MAX);
}

}  // namespace
}  // namespace shoal::durable
