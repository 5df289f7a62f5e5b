// Errors are values: absl::Status carrying our ErrorCode as a payload. Every module returns
// these; the rpc edge maps them to a gRPC status plus the "confab-error-code" trailer, or to an
// in-band confab.v1.Error on the session stream.
#ifndef CONFAB_SERVER_COMMON_ERRORS_H_
#define CONFAB_SERVER_COMMON_ERRORS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "confab/v1/coordination.pb.h"

namespace confab {

// A status with our code, the matching canonical code, and a message that names the problem.
absl::Status MakeError(v1::ErrorCode code, absl::string_view message);

// Our code of a status: OK for ok, the payload if present, else derived from the canonical code.
v1::ErrorCode ErrorCodeOf(const absl::Status& status);

absl::StatusCode CanonicalCodeOf(v1::ErrorCode code);

// A Multi's failing op travels with its status: WithFailedOp marks it, FailedOpOf reads it (-1
// when the status is not about one op of a Multi).
absl::Status WithFailedOp(absl::Status status, int index);
int FailedOpOf(const absl::Status& status);

// Status <-> the wire Error message (code, message and failed_op).
void ToProto(const absl::Status& status, v1::Error* error);
absl::Status FromProto(const v1::Error& error);

}  // namespace confab

#endif  // CONFAB_SERVER_COMMON_ERRORS_H_
