// The confab.v1.Coordination gRPC service (callback API): unary calls and the Session stream,
// translated onto the Replica. This is the edge where absl::Status errors become a gRPC status
// plus the "confab-error-code" trailer (unary) or an in-band confab.v1.Error (stream).
//
// It owns no replicated state; it must never block a gRPC thread on disk or on another request.
#ifndef CONFAB_SERVER_RPC_COORDINATION_SERVICE_H_
#define CONFAB_SERVER_RPC_COORDINATION_SERVICE_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "server/pipeline/replica.h"

namespace confab::rpc {

class StreamState;

// What the process knows of itself, for the Status call.
struct ServerInfo {
  std::string version;
  absl::Time started;
  const pipeline::PeerNetwork* peers = nullptr;  // null when standalone
};

class CoordinationService final : public v1::Coordination::CallbackService {
 public:
  // Ends the Session streams whenever the member stops serving, so that clients move to a member
  // that serves (as ZooKeeper closes connections of a member that lost its quorum).
  CoordinationService(pipeline::Replica* replica, ServerInfo info);
  ~CoordinationService() override;

  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* context,
                                   const v1::CreateRequest* request,
                                   v1::CreateResponse* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context, const v1::GetRequest* request,
                                v1::GetResponse* response) override;
  grpc::ServerUnaryReactor* Set(grpc::CallbackServerContext* context, const v1::SetRequest* request,
                                v1::SetResponse* response) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* context,
                                   const v1::DeleteRequest* request,
                                   v1::DeleteResponse* response) override;
  grpc::ServerUnaryReactor* Exists(grpc::CallbackServerContext* context,
                                   const v1::ExistsRequest* request,
                                   v1::ExistsResponse* response) override;
  grpc::ServerUnaryReactor* GetChildren(grpc::CallbackServerContext* context,
                                        const v1::GetChildrenRequest* request,
                                        v1::GetChildrenResponse* response) override;
  grpc::ServerUnaryReactor* Multi(grpc::CallbackServerContext* context,
                                  const v1::MultiRequest* request,
                                  v1::MultiResponse* response) override;
  grpc::ServerUnaryReactor* Sync(grpc::CallbackServerContext* context,
                                 const v1::SyncRequest* request,
                                 v1::SyncResponse* response) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const v1::StatusRequest* request,
                                   v1::StatusResponse* response) override;
  grpc::ServerBidiReactor<v1::ClientMessage, v1::ServerMessage>* Session(
      grpc::CallbackServerContext* context) override;

  // Shutdown, before the gRPC server stops: refuses new calls with UNAVAILABLE, ends every open
  // Session stream (their sessions live on until they expire, so clients can resume them
  // elsewhere), and waits up to `timeout` for in-flight unary calls to be answered. True if
  // none is left.
  bool Drain(absl::Duration timeout);

  // The client address actually listened on (known once the gRPC server has started).
  void SetAddress(std::string address);

  // In-flight unary call accounting: Enter() refuses (false) once draining.
  bool Enter();
  void Exit();

 private:
  friend class StreamState;
  void Forget(StreamState* stream);
  // A stream with answers queued during an apply batch; written once the batch is applied.
  void WriteAfterBatch(std::shared_ptr<StreamState> stream);
  void WriteBatched();
  void CloseStreams(const grpc::Status& status);

  pipeline::Replica* replica_;
  const ServerInfo info_;
  absl::Mutex streams_mu_;
  absl::flat_hash_set<std::shared_ptr<StreamState>> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool closing_ ABSL_GUARDED_BY(streams_mu_) = false;
  int unary_in_flight_ ABSL_GUARDED_BY(streams_mu_) = 0;
  std::string address_ ABSL_GUARDED_BY(streams_mu_);
  absl::Mutex batched_mu_;  // taken under a stream's lock
  std::vector<std::shared_ptr<StreamState>> batched_ ABSL_GUARDED_BY(batched_mu_);
};

}  // namespace confab::rpc

#endif  // CONFAB_SERVER_RPC_COORDINATION_SERVICE_H_
