// Test support for the service's tests: a Service over a data directory of its own per test
// (removed afterwards) that a test can restart at any instant, and Segment-spec calls to send it.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "ingest/decode.h"
#include "server/service.h"

namespace shoal::server {

class ServiceFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("shoal-service-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    svc_.reset();
    std::filesystem::remove_all(dir_);
  }

  // (Re)starts the service over the test's directory with its virtual clock at `now`.
  void Start(Millis now) {
    svc_.reset();
    ServiceOptions o;
    o.data_dir = dir_.string();
    o.virtual_clock_start = now;
    svc_ = std::make_unique<Service>(o);
    Status st = svc_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  // Decodes the calls, ingests them as one request and waits for its acknowledgement.
  IngestOutcome Send(const std::vector<std::string>& json) {
    ingest::Decoder d;
    std::vector<Message> msgs;
    for (const auto& j : json) {
      Status st = d.Decode(j, {}, &msgs.emplace_back());
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    std::promise<IngestOutcome> p;
    EXPECT_TRUE(svc_->Ingest(std::move(msgs), [&](IngestOutcome o) { p.set_value(o); }));
    return p.get_future().get();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Service> svc_;
};

// A track call's JSON.
inline std::string Track(const std::string& user, const std::string& event, const std::string& ts,
                         const std::string& id) {
  return R"({"type":"track","userId":")" + user + R"(","event":")" + event + R"(","timestamp":")" +
         ts + R"(","messageId":")" + id + R"("})";
}

}  // namespace shoal::server
