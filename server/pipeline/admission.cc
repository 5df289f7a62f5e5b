#include "server/pipeline/admission.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"
#include "server/common/path.h"

namespace confab::pipeline {
namespace {

absl::Status CheckData(absl::string_view path, const std::string& data, const Limits& limits) {
  if (data.size() > limits.data_bytes_max) {
    return MakeError(v1::TOO_LARGE,
                     absl::StrCat("data for ", path, " is ", data.size(), " bytes; the limit is ",
                                  limits.data_bytes_max, " (--max-data-bytes)"));
  }
  return absl::OkStatus();
}

bool IsEphemeral(v1::CreateMode mode) {
  return mode == v1::EPHEMERAL || mode == v1::EPHEMERAL_SEQUENTIAL;
}

bool IsSequential(v1::CreateMode mode) {
  return mode == v1::PERSISTENT_SEQUENTIAL || mode == v1::EPHEMERAL_SEQUENTIAL;
}

absl::Status CheckCreate(const v1::CreateRequest& request, SessionId session,
                         const Limits& limits) {
  // As ZooKeeper, a sequential create may name just the parent ("/queue/"): the sequence
  // number is then the whole name.
  absl::string_view path = request.path();
  if (IsSequential(request.mode()) && path.size() > 1 && path.back() == '/') {
    path.remove_suffix(1);
  }
  if (auto status = ValidatePath(path); !status.ok()) return status;
  if (request.path() == "/") {
    return MakeError(v1::NODE_EXISTS, "cannot create /: the root always exists");
  }
  if (!v1::CreateMode_IsValid(request.mode())) {
    return MakeError(v1::INVALID_ARGUMENT,
                     absl::StrCat("unknown create mode ", request.mode(), " for ", request.path()));
  }
  if (IsEphemeral(request.mode()) && session.IsNone()) {
    return MakeError(v1::INVALID_ARGUMENT,
                     absl::StrCat("ephemeral node ", request.path(),
                                  " needs a session: open one on the Session stream or pass "
                                  "session_id"));
  }
  return CheckData(request.path(), request.data(), limits);
}

absl::Status CheckSet(const v1::SetRequest& request, const Limits& limits) {
  if (auto status = ValidatePath(request.path()); !status.ok()) return status;
  return CheckData(request.path(), request.data(), limits);
}

absl::Status CheckDelete(const v1::DeleteRequest& request) {
  if (auto status = ValidatePath(request.path()); !status.ok()) return status;
  if (request.path() == "/") return MakeError(v1::INVALID_ARGUMENT, "cannot delete the root /");
  return absl::OkStatus();
}

absl::Status CheckOp(const v1::Op& op, SessionId session, const Limits& limits) {
  switch (op.op_case()) {
    case v1::Op::kCheck:
      return ValidatePath(op.check().path());
    case v1::Op::kCreate:
      return CheckCreate(op.create(), session, limits);
    case v1::Op::kSet:
      return CheckSet(op.set(), limits);
    case v1::Op::kDelete:
      return CheckDelete(op.delete_());
    case v1::Op::OP_NOT_SET:
      break;
  }
  return MakeError(v1::INVALID_ARGUMENT, "op has none of check, create, set, delete");
}

internal::Txn NewTxn(SessionId session, int64_t now_ms) {
  internal::Txn txn;
  txn.set_time_ms(now_ms);
  txn.set_session_id(session.value());
  return txn;
}

absl::StatusOr<internal::Txn> CheckTxnSize(internal::Txn txn, const Limits& limits) {
  size_t bytes = txn.ByteSizeLong();
  if (bytes > limits.txn_bytes_max) {
    return MakeError(v1::TOO_LARGE, absl::StrCat("request is ", bytes,
                                                 " bytes; the limit for one "
                                                 "transaction is ",
                                                 limits.txn_bytes_max));
  }
  return txn;
}

}  // namespace

absl::StatusOr<internal::Txn> AdmitCreate(v1::CreateRequest request, SessionId session,
                                          int64_t now_ms, const Limits& limits) {
  if (auto status = CheckCreate(request, session, limits); !status.ok()) return status;
  internal::Txn txn = NewTxn(session, now_ms);
  *txn.mutable_create() = std::move(request);
  return CheckTxnSize(std::move(txn), limits);
}

absl::StatusOr<internal::Txn> AdmitSet(v1::SetRequest request, SessionId session, int64_t now_ms,
                                       const Limits& limits) {
  if (auto status = CheckSet(request, limits); !status.ok()) return status;
  internal::Txn txn = NewTxn(session, now_ms);
  *txn.mutable_set() = std::move(request);
  return CheckTxnSize(std::move(txn), limits);
}

absl::StatusOr<internal::Txn> AdmitDelete(v1::DeleteRequest request, SessionId session,
                                          int64_t now_ms, const Limits& limits) {
  if (auto status = CheckDelete(request); !status.ok()) return status;
  internal::Txn txn = NewTxn(session, now_ms);
  *txn.mutable_delete_() = std::move(request);
  return CheckTxnSize(std::move(txn), limits);
}

absl::StatusOr<internal::Txn> AdmitMulti(v1::MultiRequest request, SessionId session,
                                         int64_t now_ms, const Limits& limits) {
  if (static_cast<size_t>(request.ops_size()) > limits.multi_ops_max) {
    return MakeError(v1::TOO_LARGE, absl::StrCat("multi has ", request.ops_size(),
                                                 " ops; the limit is ", limits.multi_ops_max));
  }
  for (int i = 0; i < request.ops_size(); ++i) {
    if (auto status = CheckOp(request.ops(i), session, limits); !status.ok()) {
      return WithFailedOp(
          MakeError(ErrorCodeOf(status), absl::StrCat("multi op ", i, ": ", status.message())), i);
    }
  }
  internal::Txn txn = NewTxn(session, now_ms);
  *txn.mutable_multi() = std::move(request);
  return CheckTxnSize(std::move(txn), limits);
}

absl::Status ValidateRead(absl::string_view path, bool watch, SessionId session) {
  if (auto status = ValidatePath(path); !status.ok()) return status;
  if (watch && session.IsNone()) {
    return MakeError(v1::INVALID_ARGUMENT,
                     absl::StrCat("watch on ", path,
                                  " needs a session to deliver events to: open one on the Session "
                                  "stream or pass session_id"));
  }
  return absl::OkStatus();
}

}  // namespace confab::pipeline
