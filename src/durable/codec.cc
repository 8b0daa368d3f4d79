#include "durable/codec.h"

#include <cstring>

namespace shoal::durable {
namespace {

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutSigned(int64_t v, std::string* out) {
  PutVarint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63), out);
}

void PutString(std::string_view s, std::string* out) {
  PutVarint(s.size(), out);
  out->append(s);
}

void PutFields(const std::vector<Field>& fields, std::string* out) {
  PutVarint(fields.size(), out);
  for (const Field& f : fields) {
    PutString(f.path, out);
    out->push_back(static_cast<char>(f.value.type));
    switch (f.value.type) {
      case ValueType::kNull:
        break;
      case ValueType::kBool:
        out->push_back(f.value.b ? 1 : 0);
        break;
      case ValueType::kNumber: {
        char buf[8];
        std::memcpy(buf, &f.value.num, 8);
        out->append(buf, 8);
        break;
      }
      case ValueType::kString:
      case ValueType::kList:
        PutString(f.value.str, out);
        break;
    }
  }
}

void PutValue(const Value& v, std::string* out) {
  out->push_back(static_cast<char>(v.type));
  switch (v.type) {
    case ValueType::kNull:
      break;
    case ValueType::kBool:
      out->push_back(v.b ? 1 : 0);
      break;
    case ValueType::kNumber: {
      char buf[8];
      std::memcpy(buf, &v.num, 8);
      out->append(buf, 8);
      break;
    }
    case ValueType::kString:
    case ValueType::kList:
      PutString(v.str, out);
      break;
  }
}

// Reads from a byte range; every getter fails (returns false) instead of reading past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : p_(in.data()), end_(in.data() + in.size()) {}
  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift <= 63 && p_ < end_; shift += 7) {
      uint8_t byte = static_cast<uint8_t>(*p_++);
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool Signed(int64_t* v) {
    uint64_t u;
    if (!Varint(&u)) return false;
    *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
    return true;
  }
  bool View(std::string_view* s) {
    uint64_t n;
    if (!Varint(&n) || n > static_cast<uint64_t>(end_ - p_)) return false;
    *s = std::string_view(p_, n);
    p_ += n;
    return true;
  }
  bool String(std::string* s) {
    std::string_view v;
    if (!View(&v)) return false;
    s->assign(v);
    return true;
  }
  bool Byte(uint8_t* b) {
    if (p_ >= end_) return false;
    *b = static_cast<uint8_t>(*p_++);
    return true;
  }
  bool Double(double* d) {
    if (end_ - p_ < 8) return false;
    std::memcpy(d, p_, 8);
    p_ += 8;
    return true;
  }
  bool Fields(std::vector<Field>* fields) {
    uint64_t n;
    if (!Varint(&n) || n > static_cast<uint64_t>(end_ - p_)) return false;  // >= 2 bytes each
    fields->resize(n);
    for (Field& f : *fields) {
      uint8_t type;
      if (!String(&f.path) || !Byte(&type) || type > static_cast<uint8_t>(ValueType::kList)) {
        return false;
      }
      f.value = Value();
      f.value.type = static_cast<ValueType>(type);
      switch (f.value.type) {
        case ValueType::kNull:
          break;
        case ValueType::kBool: {
          uint8_t b;
          if (!Byte(&b)) return false;
          f.value.b = b != 0;
          break;
        }
        case ValueType::kNumber:
          if (!Double(&f.value.num)) return false;
          break;
        case ValueType::kString:
        case ValueType::kList:
          if (!String(&f.value.str)) return false;
          break;
      }
    }
    return true;
  }
  // One value as PutValue writes it.
  bool OneValue(Value* v) {
    uint8_t type;
    if (!Byte(&type) || type > static_cast<uint8_t>(ValueType::kList)) return false;
    *v = Value();
    v->type = static_cast<ValueType>(type);
    switch (v->type) {
      case ValueType::kNull:
        return true;
      case ValueType::kBool: {
        uint8_t b;
        if (!Byte(&b)) return false;
        v->b = b != 0;
        return true;
      }
      case ValueType::kNumber:
        return Double(&v->num);
      case ValueType::kString:
      case ValueType::kList:
        return String(&v->str);
    }
    return false;
  }
  bool AtEnd() const { return p_ == end_; }

 private:
  const char* p_;
  const char* end_;
};

constexpr uint8_t kMessageVersion = 1;
// 2 adds the segment's target (users or accounts) after the cause.
constexpr uint8_t kChangeVersion = 2;
constexpr uint8_t kComputedChangeVersion = 1;

}  // namespace

void PutBigEndian64(uint64_t v, std::string* out) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 8);
}

uint64_t GetBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void EncodeMessage(const Message& msg, std::string* out) {
  PutString(msg.ProfileKey(), out);
  out->push_back(static_cast<char>(kMessageVersion));
  out->push_back(static_cast<char>(msg.type));
  PutString(msg.user_id, out);
  PutString(msg.anonymous_id, out);
  PutString(msg.event, out);
  PutString(msg.name, out);
  PutString(msg.message_id, out);
  PutString(msg.group_id, out);
  PutString(msg.previous_id, out);
  PutSigned(msg.timestamp, out);
  PutSigned(msg.received_at, out);
  PutFields(msg.properties, out);
  PutFields(msg.traits, out);
}

Result<std::string_view> EncodedProfileKey(std::string_view in) {
  Reader r(in);
  std::string_view key;
  if (!r.View(&key)) return Status::Internal("corrupt message record: truncated profile key");
  return key;
}

Status DecodeMessage(std::string_view in, Message* out) {
  Reader r(in);
  std::string_view key;
  uint8_t version, type;
  if (!r.View(&key) || !r.Byte(&version)) return Status::Internal("corrupt message record");
  if (version != kMessageVersion) {
    return Status::Internal("message record of unknown version " + std::to_string(version));
  }
  if (!r.Byte(&type) || type > static_cast<uint8_t>(MessageType::kAlias) ||
      !r.String(&out->user_id) || !r.String(&out->anonymous_id) || !r.String(&out->event) ||
      !r.String(&out->name) || !r.String(&out->message_id) || !r.String(&out->group_id) ||
      !r.String(&out->previous_id) || !r.Signed(&out->timestamp) || !r.Signed(&out->received_at) ||
      !r.Fields(&out->properties) || !r.Fields(&out->traits) || !r.AtEnd()) {
    return Status::Internal("corrupt message record");
  }
  out->type = static_cast<MessageType>(type);
  return Status::Ok();
}

void EncodeChange(const StoredChange& c, std::string* out) {
  out->push_back(static_cast<char>(kChangeVersion));
  PutVarint(c.segment_seq, out);
  PutVarint(c.size_after, out);
  PutString(c.change.segment, out);
  PutString(c.change.profile, out);
  out->push_back(static_cast<char>(c.change.kind));
  out->push_back(static_cast<char>(c.change.cause));
  out->push_back(static_cast<char>(c.change.target));
  PutString(c.change.cause_ref, out);
  PutString(c.change.event, out);
  PutSigned(c.change.event_time, out);
  PutSigned(c.change.processed_at, out);
}

Status DecodeChange(std::string_view in, StoredChange* out) {
  Reader r(in);
  uint8_t version, kind, cause, target = 0;
  if (!r.Byte(&version) || (version != 1 && version != kChangeVersion)) {
    return Status::Internal("change record of unknown version");
  }
  if (!r.Varint(&out->segment_seq) || !r.Varint(&out->size_after) ||
      !r.String(&out->change.segment) || !r.String(&out->change.profile) || !r.Byte(&kind) ||
      kind > 1 || !r.Byte(&cause) || cause > static_cast<uint8_t>(Cause::kComputed) ||
      (version >= 2 && (!r.Byte(&target) || target > 1)) || !r.String(&out->change.cause_ref) ||
      !r.String(&out->change.event) || !r.Signed(&out->change.event_time) ||
      !r.Signed(&out->change.processed_at) || !r.AtEnd()) {
    return Status::Internal("corrupt change record");
  }
  out->change.kind = static_cast<ChangeKind>(kind);
  out->change.cause = static_cast<Cause>(cause);
  out->change.target = static_cast<SegmentTarget>(target);
  out->change.seq = out->segment_seq;
  return Status::Ok();
}

// --- Computed value changes --------------------------------------------------------------------

void EncodeValue(const Value& v, std::string* out) { PutValue(v, out); }

Status DecodeValue(std::string_view in, Value* out) {
  Reader r(in);
  if (!r.OneValue(out) || !r.AtEnd()) return Status::Internal("corrupt value record");
  return Status::Ok();
}

void EncodeComputedChange(const StoredComputedChange& c, std::string* out) {
  const ComputedChange& ch = c.change;
  out->push_back(static_cast<char>(kComputedChangeVersion));
  PutVarint(c.trait_seq, out);
  PutString(ch.trait, out);
  PutString(ch.profile, out);
  out->push_back(static_cast<char>(ch.target));
  PutValue(ch.old_value, out);
  PutValue(ch.new_value, out);
  out->push_back(static_cast<char>(ch.cause));
  PutString(ch.cause_ref, out);
  PutString(ch.event, out);
  PutSigned(ch.event_time, out);
  PutSigned(ch.processed_at, out);
}

Status DecodeComputedChange(std::string_view in, StoredComputedChange* out) {
  Reader r(in);
  ComputedChange& ch = out->change;
  uint8_t version, target, cause;
  if (!r.Byte(&version) || version != kComputedChangeVersion) {
    return Status::Internal("computed change record of unknown version");
  }
  if (!r.Varint(&out->trait_seq) || !r.String(&ch.trait) || !r.String(&ch.profile) ||
      !r.Byte(&target) || target > 1 || !r.OneValue(&ch.old_value) || !r.OneValue(&ch.new_value) ||
      !r.Byte(&cause) || cause > static_cast<uint8_t>(Cause::kComputed) ||
      !r.String(&ch.cause_ref) || !r.String(&ch.event) || !r.Signed(&ch.event_time) ||
      !r.Signed(&ch.processed_at) || !r.AtEnd()) {
    return Status::Internal("corrupt computed change record");
  }
  ch.target = static_cast<SegmentTarget>(target);
  ch.cause = static_cast<Cause>(cause);
  ch.seq = out->trait_seq;
  return Status::Ok();
}

}  // namespace shoal::durable
