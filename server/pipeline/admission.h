// Admission: the first stage of the write path (validate -> transaction). Turns a client's write
// request into the transaction that will be logged, or says precisely why it is refused; nothing
// refused here ever reaches the log, and nothing is applied. Checks only what does not depend on
// the tree (paths, sizes, modes, session presence); conditions on the tree (existence, versions)
// are decided when the transaction is applied at its zxid.
//
// Pure functions: no locks, no I/O, no clock (the caller passes the time in).
#ifndef CONFAB_SERVER_PIPELINE_ADMISSION_H_
#define CONFAB_SERVER_PIPELINE_ADMISSION_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "confab/internal/txn.pb.h"
#include "confab/v1/coordination.pb.h"
#include "server/common/types.h"

namespace confab::pipeline {

struct Limits {
  size_t data_bytes_max = 1 << 20;  // one node's data (--max-data-bytes)
  size_t txn_bytes_max = 4 << 20;   // one whole transaction, e.g. a Multi
  size_t multi_ops_max = 1000;      // ops in one Multi
};

// Each takes the request by value (moved into the transaction) and the session it runs on
// (none for a sessionless unary call).
absl::StatusOr<internal::Txn> AdmitCreate(v1::CreateRequest request, SessionId session,
                                          int64_t now_ms, const Limits& limits);
absl::StatusOr<internal::Txn> AdmitSet(v1::SetRequest request, SessionId session, int64_t now_ms,
                                       const Limits& limits);
absl::StatusOr<internal::Txn> AdmitDelete(v1::DeleteRequest request, SessionId session,
                                          int64_t now_ms, const Limits& limits);
absl::StatusOr<internal::Txn> AdmitMulti(v1::MultiRequest request, SessionId session,
                                         int64_t now_ms, const Limits& limits);

// Reads: a valid path; a watch needs a session to deliver to.
absl::Status ValidateRead(absl::string_view path, bool watch, SessionId session);

}  // namespace confab::pipeline

#endif  // CONFAB_SERVER_PIPELINE_ADMISSION_H_
