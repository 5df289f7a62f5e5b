#include "server/common/errors.h"

#include <string>
#include <utility>

#include "absl/strings/numbers.h"

namespace confab {
namespace {

constexpr absl::string_view kPayloadUrl = "type.confab.dev/confab.v1.ErrorCode";
constexpr absl::string_view kFailedOpUrl = "type.confab.dev/confab.v1.Error.failed_op";

}  // namespace

absl::StatusCode CanonicalCodeOf(v1::ErrorCode code) {
  switch (code) {
    case v1::OK:
      return absl::StatusCode::kOk;
    case v1::NO_NODE:
      return absl::StatusCode::kNotFound;
    case v1::NODE_EXISTS:
      return absl::StatusCode::kAlreadyExists;
    case v1::BAD_VERSION:
    case v1::NOT_EMPTY:
    case v1::NO_CHILDREN_FOR_EPHEMERALS:
    case v1::SESSION_EXPIRED:
    case v1::RUNTIME_INCONSISTENCY:
      return absl::StatusCode::kFailedPrecondition;
    case v1::INVALID_PATH:
    case v1::TOO_LARGE:
    case v1::INVALID_ARGUMENT:
      return absl::StatusCode::kInvalidArgument;
    case v1::UNAVAILABLE:
      return absl::StatusCode::kUnavailable;
    case v1::UNIMPLEMENTED:
      return absl::StatusCode::kUnimplemented;
    case v1::INTERNAL:
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status MakeError(v1::ErrorCode code, absl::string_view message) {
  if (code == v1::OK) return absl::OkStatus();
  absl::Status status(CanonicalCodeOf(code), message);
  status.SetPayload(kPayloadUrl, absl::Cord(v1::ErrorCode_Name(code)));
  return status;
}

v1::ErrorCode ErrorCodeOf(const absl::Status& status) {
  if (status.ok()) return v1::OK;
  if (auto payload = status.GetPayload(kPayloadUrl)) {
    v1::ErrorCode code;
    if (v1::ErrorCode_Parse(std::string(*payload), &code)) return code;
  }
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return v1::NO_NODE;
    case absl::StatusCode::kAlreadyExists:
      return v1::NODE_EXISTS;
    case absl::StatusCode::kInvalidArgument:
      return v1::INVALID_ARGUMENT;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
      return v1::UNAVAILABLE;
    case absl::StatusCode::kUnimplemented:
      return v1::UNIMPLEMENTED;
    default:
      return v1::INTERNAL;
  }
}

absl::Status WithFailedOp(absl::Status status, int index) {
  status.SetPayload(kFailedOpUrl, absl::Cord(std::to_string(index)));
  return status;
}

int FailedOpOf(const absl::Status& status) {
  int index;
  if (auto payload = status.GetPayload(kFailedOpUrl);
      payload && absl::SimpleAtoi(std::string(*payload), &index)) {
    return index;
  }
  return -1;
}

void ToProto(const absl::Status& status, v1::Error* error) {
  error->set_code(ErrorCodeOf(status));
  error->set_message(std::string(status.message()));
  error->set_failed_op(FailedOpOf(status));
}

absl::Status FromProto(const v1::Error& error) {
  absl::Status status = MakeError(error.code(), error.message());
  if (status.ok() || error.failed_op() < 0) return status;
  return WithFailedOp(std::move(status), error.failed_op());
}

}  // namespace confab
