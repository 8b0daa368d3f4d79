#include "ingest/envelope.h"

#include <gtest/gtest.h>
#include <simdjson.h>

namespace shoal::ingest {
namespace {

Status Parse(const std::string& body, bool batch, Envelope* env) {
  static std::vector<std::unique_ptr<simdjson::padded_string>> keep;  // views outlive the call
  keep.push_back(std::make_unique<simdjson::padded_string>(body));
  return ParseEnvelope(std::string_view(keep.back()->data(), keep.back()->size()), batch, env);
}

TEST(EnvelopeTest, BatchCallsSentAtAndWriteKey) {
  Envelope env;
  ASSERT_TRUE(Parse(R"({"writeKey":"wk","batch":[{"type":"track","event":"A"}, {"a":[1,{}]}],)"
                    R"("sentAt":"2026-01-01T00:00:01Z","context":{"x":1}})",
                    true, &env)
                  .ok());
  ASSERT_EQ(env.calls.size(), 2u);
  EXPECT_EQ(env.calls[0], R"({"type":"track","event":"A"})");
  EXPECT_EQ(env.calls[1], R"({"a":[1,{}]})");
  EXPECT_EQ(env.write_key, "wk");
  EXPECT_EQ(env.sent_at, *ParseTime("2026-01-01T00:00:01Z"));
}

TEST(EnvelopeTest, ElementsThatAreNotObjectsAreMarkedNotDropped) {
  Envelope env;
  ASSERT_TRUE(Parse(R"({"batch":[1,{"type":"track"},[2,3],"x",null]})", true, &env).ok());
  ASSERT_EQ(env.calls.size(), 5u);
  EXPECT_EQ(env.calls[0].data(), nullptr);
  EXPECT_NE(env.calls[1].data(), nullptr);
  EXPECT_EQ(env.calls[2].data(), nullptr);
  EXPECT_EQ(env.calls[3].data(), nullptr);
  EXPECT_EQ(env.calls[4].data(), nullptr);
}

TEST(EnvelopeTest, ErrorsSayWhatIsWrong) {
  Envelope env;
  Status st = Parse(R"({"sentAt":"2026-01-01T00:00:00Z"})", true, &env);
  EXPECT_NE(st.message().find("field 'batch': required"), std::string::npos) << st.ToString();
  st = Parse(R"({"batch":{"type":"track"}})", true, &env);
  EXPECT_NE(st.message().find("must be an array"), std::string::npos) << st.ToString();
  st = Parse(R"([1,2])", true, &env);
  EXPECT_NE(st.message().find("must be a JSON object"), std::string::npos) << st.ToString();
  st = Parse(R"({"batch":[{"a":1}, {"b":]})", true, &env);
  EXPECT_NE(st.message().find("invalid JSON"), std::string::npos) << st.ToString();
  st = Parse("", false, &env);
  EXPECT_FALSE(st.ok());
}

TEST(EnvelopeTest, ASingleCallIsTheWholeBody) {
  Envelope env;
  std::string body = R"({"userId":"u1","event":"A","writeKey":"k2","batch":[1]})";
  ASSERT_TRUE(Parse(body, false, &env).ok());
  ASSERT_EQ(env.calls.size(), 1u);
  EXPECT_EQ(env.calls[0], body);
  EXPECT_EQ(env.write_key, "k2");
}

TEST(EnvelopeTest, ASentAtThatIsNotATimeIsIgnored) {
  Envelope env;
  ASSERT_TRUE(Parse(R"({"batch":[],"sentAt":"yesterday"})", true, &env).ok());
  EXPECT_EQ(env.sent_at, 0);
  EXPECT_TRUE(env.calls.empty());
}

}  // namespace
}  // namespace shoal::ingest
