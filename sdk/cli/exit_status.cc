#include "sdk/cli/exit_status.h"

#include "absl/strings/cord.h"

namespace confab::cli {
namespace {

// Payload type URLs; they never leave the process.
constexpr absl::string_view kUsagePayload = "confabctl/usage";
constexpr absl::string_view kCannotConnectPayload = "confabctl/cannot-connect";

}  // namespace

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord());
  return status;
}

absl::Status CannotConnect(absl::Status status) {
  status.SetPayload(kCannotConnectPayload, absl::Cord());
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

ExitCode ExitCodeOf(const absl::Status& status) {
  if (status.ok()) return ExitCode::kOk;
  if (IsUsageError(status)) return ExitCode::kUsage;
  if (status.GetPayload(kCannotConnectPayload).has_value()) return ExitCode::kCannotConnect;
  return ExitCode::kFailed;
}

}  // namespace confab::cli
