// SessionStream is one Session RPC (gRPC callback API): it reads ServerMessages one after the
// other and hands them to its owner, and writes the ClientMessages its owner fills in. It holds
// no session state; the owner (ClientSession) decides what is written and when, under its own
// lock, and must not start an operation after OnStreamBroken returned.
//
// Lifetime: created by the owner with new, it deletes itself when the RPC is over, then tells the
// owner (OnStreamDone), handing over its channel: the owner drops it on a thread of its own, since
// dropping a channel's last reference on a gRPC callback thread shuts down the completion queue
// that thread serves. A hold keeps the RPC from completing until reads have ended and the owner
// has let go of the stream.
#ifndef CONFAB_SDK_SRC_SESSION_STREAM_H_
#define CONFAB_SDK_SRC_SESSION_STREAM_H_

#include <memory>
#include <string>

#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace confab {

class SessionStream final : public grpc::ClientBidiReactor<v1::ClientMessage, v1::ServerMessage> {
 public:
  // Reactions of the stream, run on gRPC threads, never inline from a SessionStream method.
  class Owner {
   public:
    virtual ~Owner() = default;
    virtual void OnStreamMessage(SessionStream* stream, v1::ServerMessage message) = 0;
    virtual void OnStreamWriteDone(SessionStream* stream, bool ok) = 0;
    // Reads ended (the server finished the RPC, it was cancelled or it broke). No operation may
    // be started on the stream once this returns.
    virtual void OnStreamBroken(SessionStream* stream) = 0;
    // The RPC is over and the stream deleted; `channel` is the last reference to its channel
    // outside gRPC.
    virtual void OnStreamDone(const std::string& endpoint, const grpc::Status& status,
                              std::shared_ptr<grpc::Channel> channel) = 0;
  };

  SessionStream(Owner* owner, std::string endpoint, std::shared_ptr<grpc::Channel> channel);

  // Starts the RPC and writes `*write_buffer()` as its first message.
  void Begin();
  // Writes `*write_buffer()`; the owner leaves the buffer alone until OnStreamWriteDone.
  void Write() { StartWrite(&outgoing_); }
  // Half-closes: the server finishes the RPC once it has answered everything.
  void HalfClose() { StartWritesDone(); }
  // Ends the RPC now (thread-safe; reactions follow on gRPC threads).
  void Cancel() { context_.TryCancel(); }

  v1::ClientMessage* write_buffer() { return &outgoing_; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override { owner_->OnStreamWriteDone(this, ok); }
  void OnDone(const grpc::Status& status) override;

  Owner* const owner_;
  const std::string endpoint_;
  const std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordination::Stub> stub_;
  grpc::ClientContext context_;
  v1::ServerMessage incoming_;
  v1::ClientMessage outgoing_;
};

}  // namespace confab

#endif  // CONFAB_SDK_SRC_SESSION_STREAM_H_
