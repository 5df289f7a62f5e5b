#include "server/common/errors.h"

#include "gtest/gtest.h"

namespace confab {
namespace {

TEST(ErrorsTest, CodeSurvivesStatusAndProto) {
  absl::Status status = MakeError(v1::BAD_VERSION, "version mismatch at /a");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorCodeOf(status), v1::BAD_VERSION);
  v1::Error proto;
  ToProto(status, &proto);
  EXPECT_EQ(proto.code(), v1::BAD_VERSION);
  EXPECT_EQ(proto.message(), "version mismatch at /a");
  absl::Status back = FromProto(proto);
  EXPECT_EQ(ErrorCodeOf(back), v1::BAD_VERSION);
  EXPECT_EQ(back.message(), "version mismatch at /a");
}

TEST(ErrorsTest, OkAndPlainStatuses) {
  EXPECT_TRUE(MakeError(v1::OK, "ignored").ok());
  EXPECT_EQ(ErrorCodeOf(absl::OkStatus()), v1::OK);
  EXPECT_EQ(ErrorCodeOf(absl::NotFoundError("x")), v1::NO_NODE);
  EXPECT_EQ(ErrorCodeOf(absl::InternalError("x")), v1::INTERNAL);
}

TEST(ErrorsTest, FailedOpTravelsWithTheStatusAndTheProto) {
  absl::Status status = WithFailedOp(MakeError(v1::NO_NODE, "multi op 2: no /a"), 2);
  EXPECT_EQ(FailedOpOf(status), 2);
  EXPECT_EQ(ErrorCodeOf(status), v1::NO_NODE);
  v1::Error proto;
  ToProto(status, &proto);
  EXPECT_EQ(proto.failed_op(), 2);
  EXPECT_EQ(FailedOpOf(FromProto(proto)), 2);
  ToProto(MakeError(v1::NO_NODE, "no /a"), &proto);
  EXPECT_EQ(proto.failed_op(), -1);
  EXPECT_EQ(FailedOpOf(FromProto(proto)), -1);
}

}  // namespace
}  // namespace confab
