// How confabctl ends: its exit codes, and the two kinds of failure that are not "the operation
// failed" (a usage error, an ensemble that cannot be reached), marked on the absl::Status that
// carries them so that one error path reports every failure.
#ifndef CONFAB_SDK_CLI_EXIT_STATUS_H_
#define CONFAB_SDK_CLI_EXIT_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace confab::cli {

enum class ExitCode {
  kOk = 0,
  kFailed = 1,         // the server refused or failed the operation
  kUsage = 2,          // the command line is wrong; the verb's usage is printed
  kCannotConnect = 3,  // no endpoint of the ensemble answered
};

absl::Status UsageError(absl::string_view message);
// Marks `status` (a failure to reach the ensemble) as kCannotConnect.
absl::Status CannotConnect(absl::Status status);

bool IsUsageError(const absl::Status& status);
ExitCode ExitCodeOf(const absl::Status& status);

}  // namespace confab::cli

#endif  // CONFAB_SDK_CLI_EXIT_STATUS_H_
