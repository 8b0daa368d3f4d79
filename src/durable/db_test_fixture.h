// Test support for the durable store's tests: a Db over a fresh directory per test under
// testing::TempDir(), removed afterwards, that a test can reopen (as after a restart).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "durable/db.h"

namespace shoal::durable {

class DbFixture : public testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (std::filesystem::path(testing::TempDir()) /
            ("shoal_durable_" + std::string(info->test_suite_name()) + "_" +
             std::string(info->name()) + "_" + std::to_string(getpid()) + "_" +
             std::to_string(counter++)))
               .string();
    std::filesystem::remove_all(dir_);
    Reopen();
  }

  void TearDown() override {
    db_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Closes the store and opens it again over the same directory.
  void Reopen() {
    db_.reset();
    Result<std::unique_ptr<Db>> db = Db::Open(dir_);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
  }

  // Writes the batch with sync on; it must succeed.
  void Write(Batch& b) {
    Status st = db_->Write(&b, /*sync=*/true);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  std::string dir_;
  std::unique_ptr<Db> db_;
};

}  // namespace shoal::durable
