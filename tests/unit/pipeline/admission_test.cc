#include "server/pipeline/admission.h"

#include <string>

#include "gtest/gtest.h"
#include "server/common/errors.h"

namespace confab::pipeline {
namespace {

constexpr SessionId kSession(42);
constexpr int64_t kNow = 1'700'000'000'000;

v1::CreateRequest Create(std::string path, v1::CreateMode mode = v1::PERSISTENT,
                         std::string data = "") {
  v1::CreateRequest request;
  request.set_path(std::move(path));
  request.set_mode(mode);
  request.set_data(std::move(data));
  return request;
}

TEST(AdmissionTest, CreateBecomesATransactionStampedWithTimeAndSession) {
  auto txn = AdmitCreate(Create("/a", v1::EPHEMERAL, "x"), kSession, kNow, Limits());
  ASSERT_TRUE(txn.ok()) << txn.status();
  EXPECT_EQ(txn->time_ms(), kNow);
  EXPECT_EQ(txn->session_id(), kSession.value());
  EXPECT_EQ(txn->create().path(), "/a");
  EXPECT_EQ(txn->create().data(), "x");
}

TEST(AdmissionTest, EphemeralWithoutSessionIsRefused) {
  for (auto mode : {v1::EPHEMERAL, v1::EPHEMERAL_SEQUENTIAL}) {
    auto txn = AdmitCreate(Create("/a", mode), SessionId(), kNow, Limits());
    EXPECT_EQ(ErrorCodeOf(txn.status()), v1::INVALID_ARGUMENT);
    EXPECT_NE(txn.status().message().find("needs a session"), std::string::npos);
  }
}

TEST(AdmissionTest, SequentialCreateMayNameJustTheParent) {
  EXPECT_TRUE(AdmitCreate(Create("/q/", v1::PERSISTENT_SEQUENTIAL), kSession, kNow, Limits()).ok());
  EXPECT_EQ(ErrorCodeOf(AdmitCreate(Create("/q/"), kSession, kNow, Limits()).status()),
            v1::INVALID_PATH);
}

TEST(AdmissionTest, BadPathsAndRootAreRefused) {
  EXPECT_EQ(ErrorCodeOf(AdmitCreate(Create("a"), kSession, kNow, Limits()).status()),
            v1::INVALID_PATH);
  EXPECT_EQ(ErrorCodeOf(AdmitCreate(Create("/"), kSession, kNow, Limits()).status()),
            v1::NODE_EXISTS);
  v1::DeleteRequest del;
  del.set_path("/");
  EXPECT_EQ(ErrorCodeOf(AdmitDelete(del, kSession, kNow, Limits()).status()), v1::INVALID_ARGUMENT);
  v1::SetRequest set;
  set.set_path("/a/../b");
  EXPECT_EQ(ErrorCodeOf(AdmitSet(set, kSession, kNow, Limits()).status()), v1::INVALID_PATH);
}

TEST(AdmissionTest, UnknownCreateModeIsRefused) {
  auto txn = AdmitCreate(Create("/a", static_cast<v1::CreateMode>(17)), kSession, kNow, Limits());
  EXPECT_EQ(ErrorCodeOf(txn.status()), v1::INVALID_ARGUMENT);
}

TEST(AdmissionTest, DataOverTheLimitIsTooLargeAndNamesTheLimit) {
  Limits limits;
  limits.data_bytes_max = 10;
  EXPECT_TRUE(
      AdmitCreate(Create("/a", v1::PERSISTENT, std::string(10, 'x')), kSession, kNow, limits).ok());
  auto txn =
      AdmitCreate(Create("/a", v1::PERSISTENT, std::string(11, 'x')), kSession, kNow, limits);
  EXPECT_EQ(ErrorCodeOf(txn.status()), v1::TOO_LARGE);
  EXPECT_NE(txn.status().message().find("/a is 11 bytes; the limit is 10"), std::string::npos)
      << txn.status();
  v1::SetRequest set;
  set.set_path("/a");
  set.set_data(std::string(11, 'x'));
  EXPECT_EQ(ErrorCodeOf(AdmitSet(set, kSession, kNow, limits).status()), v1::TOO_LARGE);
}

TEST(AdmissionTest, MultiChecksEveryOpAndNamesTheBadOne) {
  v1::MultiRequest multi;
  multi.add_ops()->mutable_check()->set_path("/a");
  *multi.add_ops()->mutable_create() = Create("/a/b");
  multi.add_ops()->mutable_delete_()->set_path("/bad//path");
  auto txn = AdmitMulti(multi, kSession, kNow, Limits());
  EXPECT_EQ(ErrorCodeOf(txn.status()), v1::INVALID_PATH);
  EXPECT_NE(txn.status().message().find("multi op 2: "), std::string::npos) << txn.status();

  multi.mutable_ops()->RemoveLast();
  EXPECT_TRUE(AdmitMulti(multi, kSession, kNow, Limits()).ok());

  multi.add_ops();  // no op set
  EXPECT_EQ(ErrorCodeOf(AdmitMulti(multi, kSession, kNow, Limits()).status()),
            v1::INVALID_ARGUMENT);
}

TEST(AdmissionTest, MultiIsBoundedInOpsAndTotalBytes) {
  Limits limits;
  limits.multi_ops_max = 3;
  limits.data_bytes_max = 100;
  limits.txn_bytes_max = 250;
  v1::MultiRequest multi;
  for (int i = 0; i < 4; ++i) multi.add_ops()->mutable_check()->set_path("/a");
  EXPECT_EQ(ErrorCodeOf(AdmitMulti(multi, kSession, kNow, limits).status()), v1::TOO_LARGE);

  multi.Clear();
  for (int i = 0; i < 3; ++i) {
    *multi.add_ops()->mutable_create() =
        Create("/n" + std::to_string(i), v1::PERSISTENT, std::string(100, 'x'));
  }
  auto txn = AdmitMulti(multi, kSession, kNow, limits);
  EXPECT_EQ(ErrorCodeOf(txn.status()), v1::TOO_LARGE);
  EXPECT_NE(txn.status().message().find("limit for one transaction is 250"), std::string::npos);
}

TEST(AdmissionTest, ReadsNeedAValidPathAndASessionForWatches) {
  EXPECT_TRUE(ValidateRead("/a", false, SessionId()).ok());
  EXPECT_TRUE(ValidateRead("/a", true, kSession).ok());
  EXPECT_EQ(ErrorCodeOf(ValidateRead("/a", true, SessionId())), v1::INVALID_ARGUMENT);
  EXPECT_EQ(ErrorCodeOf(ValidateRead("/a/", false, kSession)), v1::INVALID_PATH);
}

}  // namespace
}  // namespace confab::pipeline
