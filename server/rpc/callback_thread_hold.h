// CallbackThreadHold parks all but a few of gRPC's callback threads for the server's lifetime.
//
// gRPC 1.51 runs every callback-API reaction, server and client side, on its "nexting" threads
// (at least two) serving one completion queue. The thread that polls hands polling over to
// another before it runs what it found, so each batch of network events also wakes a second
// thread, which finds nothing and sleeps again: at saturation, the largest source of context
// switches in a member (0.82 wake-ups between them per write, 0.23 with one left). gRPC has no
// setting for their number, so this holds the extra ones, each blocked in the reaction to a
// Status call of our own. The threads left poll and run every reaction, so no reaction may block
// (CoordinationService and PeerTransport never do). `--grpc-callback-threads=0` turns it off.
#ifndef CONFAB_SERVER_RPC_CALLBACK_THREAD_HOLD_H_
#define CONFAB_SERVER_RPC_CALLBACK_THREAD_HOLD_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace confab::rpc {

class CallbackThreadHold {
 public:
  // Holds all but `keep` of gRPC's callback threads (counted by name) through Status calls to
  // the Coordination service at `address`. `keep` 0: holds nothing.
  CallbackThreadHold(const std::string& address, int keep);
  ~CallbackThreadHold();  // Release()

  // Gives the threads back (before the servers shut down). Idempotent.
  void Release();

 private:
  static constexpr absl::Duration kCallDeadline = absl::Seconds(5);
  static constexpr int kCountTries = 50;
  struct Call {
    grpc::ClientContext context;
    v1::StatusRequest request;
    v1::StatusResponse response;
  };

  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
  int returned_ ABSL_GUARDED_BY(mu_) = 0;  // callbacks that have run to their end
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordination::Stub> stub_;
  std::vector<std::unique_ptr<Call>> calls_;
};

}  // namespace confab::rpc

#endif  // CONFAB_SERVER_RPC_CALLBACK_THREAD_HOLD_H_
