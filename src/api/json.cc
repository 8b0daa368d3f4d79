#include "api/json.h"

#include <fmt/format.h>

#include <cmath>

namespace shoal::api {

void JsonWriter::Sep() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::BeginObject() {
  Sep();
  out_.push_back('{');
  first_.push_back(true);
  return *this;
}
JsonWriter& JsonWriter::EndObject() {
  out_.push_back('}');
  first_.pop_back();
  return *this;
}
JsonWriter& JsonWriter::BeginArray() {
  Sep();
  out_.push_back('[');
  first_.push_back(true);
  return *this;
}
JsonWriter& JsonWriter::EndArray() {
  out_.push_back(']');
  first_.pop_back();
  return *this;
}
JsonWriter& JsonWriter::Key(std::string_view k) {
  Sep();
  AppendJsonString(k, &out_);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}
JsonWriter& JsonWriter::String(std::string_view s) {
  Sep();
  AppendJsonString(s, &out_);
  return *this;
}
JsonWriter& JsonWriter::Int(int64_t v) {
  Sep();
  fmt::format_to(std::back_inserter(out_), "{}", v);
  return *this;
}
JsonWriter& JsonWriter::Uint(uint64_t v) {
  Sep();
  fmt::format_to(std::back_inserter(out_), "{}", v);
  return *this;
}
JsonWriter& JsonWriter::Double(double v) {
  Sep();
  if (!std::isfinite(v)) {
    out_.append("null");
  } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    fmt::format_to(std::back_inserter(out_), "{}", static_cast<int64_t>(v));
  } else {
    fmt::format_to(std::back_inserter(out_), "{}", v);
  }
  return *this;
}
JsonWriter& JsonWriter::Bool(bool v) {
  Sep();
  out_.append(v ? "true" : "false");
  return *this;
}
JsonWriter& JsonWriter::Null() {
  Sep();
  out_.append("null");
  return *this;
}
JsonWriter& JsonWriter::Time(Millis t) { return String(FormatTime(t)); }
JsonWriter& JsonWriter::Raw(std::string_view json) {
  Sep();
  out_.append(json);
  return *this;
}
JsonWriter& JsonWriter::Value(const shoal::Value& v) {
  switch (v.type) {
    case ValueType::kNull:
      return Null();
    case ValueType::kBool:
      return Bool(v.b);
    case ValueType::kNumber:
      return Double(v.num);
    case ValueType::kString:
      return String(v.str);
    case ValueType::kList:
      return Raw(v.str);
  }
  return Null();
}

void WriteChange(const durable::StoredChange& c, JsonWriter* w) {
  const Change& ch = c.change;
  w->BeginObject()
      .Key("seq")
      .Uint(c.seq)
      .Key("segment")
      .String(ch.segment)
      .Key("segment_seq")
      .Uint(c.segment_seq)
      .Key("profile")
      .String(ch.profile)
      .Key("target")
      .String(ch.target == SegmentTarget::kAccounts ? "accounts" : "users")
      .Key("kind")
      .String(ch.kind == ChangeKind::kEnter ? "enter" : "exit")
      .Key("cause")
      .String(CauseName(ch.cause));
  if (!ch.cause_ref.empty()) w->Key("cause_ref").String(ch.cause_ref);
  if (!ch.event.empty()) w->Key("event").String(ch.event);
  w->Key("event_time").Time(ch.event_time).Key("processed_at").Time(ch.processed_at);
  w->Key("size_after").Uint(c.size_after);
  w->EndObject();
}

void WriteComputedChange(const durable::StoredComputedChange& c, JsonWriter* w) {
  const ComputedChange& ch = c.change;
  w->BeginObject()
      .Key("seq")
      .Uint(c.seq)
      .Key("trait")
      .String(ch.trait)
      .Key("trait_seq")
      .Uint(c.trait_seq)
      .Key("profile")
      .String(ch.profile)
      .Key("target")
      .String(ch.target == SegmentTarget::kAccounts ? "accounts" : "users")
      .Key("old_value")
      .Value(ch.old_value)
      .Key("new_value")
      .Value(ch.new_value)
      .Key("cause")
      .String(CauseName(ch.cause));
  if (!ch.cause_ref.empty()) w->Key("cause_ref").String(ch.cause_ref);
  if (!ch.event.empty()) w->Key("event").String(ch.event);
  w->Key("event_time").Time(ch.event_time).Key("processed_at").Time(ch.processed_at);
  w->EndObject();
}

}  // namespace shoal::api
