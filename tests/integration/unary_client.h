// Unary calls for the integration tests: each returns the gRPC status, the response and the
// error trailers ("confab-error-code", "confab-failed-op"). Every call has a deadline.
#ifndef CONFAB_TESTS_INTEGRATION_UNARY_CLIENT_H_
#define CONFAB_TESTS_INTEGRATION_UNARY_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace confab::itest {

// A channel with its own connection (not shared through gRPC's global subchannel pool), so a
// new client after a server restart connects at once instead of inheriting a backoff.
inline std::shared_ptr<grpc::Channel> NewChannel(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

template <typename Response>
struct Reply {
  grpc::Status status;
  Response response;
  std::string error_code;                // the "confab-error-code" trailer; empty if absent
  std::optional<std::string> failed_op;  // the "confab-failed-op" trailer

  bool ok() const { return status.ok(); }
  const Response* operator->() const { return &response; }
  // For failure messages.
  std::string Describe() const {
    return "status " + std::to_string(static_cast<int>(status.error_code())) + " \"" +
           status.error_message() + "\" confab-error-code=" + error_code +
           " confab-failed-op=" + failed_op.value_or("(none)") +
           " response=" + response.ShortDebugString();
  }
};

namespace op {

inline v1::Op Check(absl::string_view path, int32_t version) {
  v1::Op op;
  op.mutable_check()->set_path(std::string(path));
  op.mutable_check()->set_version(version);
  return op;
}
inline v1::Op Create(absl::string_view path, absl::string_view data = "",
                     v1::CreateMode mode = v1::PERSISTENT) {
  v1::Op op;
  op.mutable_create()->set_path(std::string(path));
  op.mutable_create()->set_data(std::string(data));
  op.mutable_create()->set_mode(mode);
  return op;
}
inline v1::Op Set(absl::string_view path, absl::string_view data,
                  std::optional<int32_t> version = std::nullopt) {
  v1::Op op;
  op.mutable_set()->set_path(std::string(path));
  op.mutable_set()->set_data(std::string(data));
  if (version.has_value()) op.mutable_set()->set_version(*version);
  return op;
}
inline v1::Op Delete(absl::string_view path, std::optional<int32_t> version = std::nullopt) {
  v1::Op op;
  op.mutable_delete_()->set_path(std::string(path));
  if (version.has_value()) op.mutable_delete_()->set_version(*version);
  return op;
}

}  // namespace op

class UnaryClient {
 public:
  explicit UnaryClient(const std::string& endpoint)
      : stub_(v1::Coordination::NewStub(NewChannel(endpoint))) {}

  Reply<v1::CreateResponse> Create(const v1::CreateRequest& request) {
    return Invoke(&v1::Coordination::Stub::Create, request);
  }
  Reply<v1::CreateResponse> Create(absl::string_view path, absl::string_view data = "",
                                   v1::CreateMode mode = v1::PERSISTENT, int64_t session_id = 0) {
    v1::CreateRequest request;
    request.set_path(std::string(path));
    request.set_data(std::string(data));
    request.set_mode(mode);
    request.set_session_id(session_id);
    return Create(request);
  }

  Reply<v1::GetResponse> Get(const v1::GetRequest& request) {
    return Invoke(&v1::Coordination::Stub::Get, request);
  }
  Reply<v1::GetResponse> Get(absl::string_view path, bool watch = false, int64_t session_id = 0) {
    v1::GetRequest request;
    request.set_path(std::string(path));
    request.set_watch(watch);
    request.set_session_id(session_id);
    return Get(request);
  }

  Reply<v1::ExistsResponse> Exists(absl::string_view path, bool watch = false,
                                   int64_t session_id = 0) {
    v1::ExistsRequest request;
    request.set_path(std::string(path));
    request.set_watch(watch);
    request.set_session_id(session_id);
    return Invoke(&v1::Coordination::Stub::Exists, request);
  }

  Reply<v1::GetChildrenResponse> GetChildren(absl::string_view path, bool watch = false,
                                             int64_t session_id = 0) {
    v1::GetChildrenRequest request;
    request.set_path(std::string(path));
    request.set_watch(watch);
    request.set_session_id(session_id);
    return Invoke(&v1::Coordination::Stub::GetChildren, request);
  }

  Reply<v1::SetResponse> Set(absl::string_view path, absl::string_view data,
                             std::optional<int32_t> version = std::nullopt,
                             int64_t session_id = 0) {
    v1::SetRequest request;
    request.set_path(std::string(path));
    request.set_data(std::string(data));
    if (version.has_value()) request.set_version(*version);
    request.set_session_id(session_id);
    return Invoke(&v1::Coordination::Stub::Set, request);
  }

  Reply<v1::DeleteResponse> Delete(absl::string_view path,
                                   std::optional<int32_t> version = std::nullopt,
                                   int64_t session_id = 0) {
    v1::DeleteRequest request;
    request.set_path(std::string(path));
    if (version.has_value()) request.set_version(*version);
    request.set_session_id(session_id);
    return Invoke(&v1::Coordination::Stub::Delete, request);
  }

  Reply<v1::MultiResponse> Multi(std::vector<v1::Op> ops, int64_t session_id = 0) {
    v1::MultiRequest request;
    for (v1::Op& o : ops) *request.add_ops() = std::move(o);
    request.set_session_id(session_id);
    return Invoke(&v1::Coordination::Stub::Multi, request);
  }

  Reply<v1::SyncResponse> Sync(absl::string_view path = "", int64_t session_id = 0) {
    v1::SyncRequest request;
    request.set_path(std::string(path));
    request.set_session_id(session_id);
    return Invoke(&v1::Coordination::Stub::Sync, request);
  }

 private:
  template <typename Request, typename Response>
  Reply<Response> Invoke(grpc::Status (v1::Coordination::Stub::*method)(grpc::ClientContext*,
                                                                        const Request&, Response*),
                         const Request& request) {
    Reply<Response> reply;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    reply.status = (stub_.get()->*method)(&context, request, &reply.response);
    for (const auto& [key, value] : context.GetServerTrailingMetadata()) {
      std::string k(key.data(), key.size());
      std::string v(value.data(), value.size());
      if (k == "confab-error-code") reply.error_code = v;
      if (k == "confab-failed-op") reply.failed_op = v;
    }
    return reply;
  }

  std::unique_ptr<v1::Coordination::Stub> stub_;
};

}  // namespace confab::itest

#endif  // CONFAB_TESTS_INTEGRATION_UNARY_CLIENT_H_
