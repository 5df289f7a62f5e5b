#include "sdk/src/session_stream.h"

#include <utility>

namespace confab {

SessionStream::SessionStream(Owner* owner, std::string endpoint,
                             std::shared_ptr<grpc::Channel> channel)
    : owner_(owner),
      endpoint_(std::move(endpoint)),
      channel_(std::move(channel)),
      stub_(v1::Coordination::NewStub(channel_)) {}

void SessionStream::Begin() {
  stub_->async()->Session(&context_, this);
  AddHold();  // removed once reads have ended and the owner let go (OnReadDone(false))
  StartRead(&incoming_);
  StartWrite(&outgoing_);
  StartCall();
}

void SessionStream::OnReadDone(bool ok) {
  if (!ok) {
    owner_->OnStreamBroken(this);
    RemoveHold();
    return;
  }
  v1::ServerMessage message = std::move(incoming_);
  incoming_.Clear();
  owner_->OnStreamMessage(this, std::move(message));
  StartRead(&incoming_);
}

void SessionStream::OnDone(const grpc::Status& status) {
  Owner* owner = owner_;
  std::string endpoint = endpoint_;
  std::shared_ptr<grpc::Channel> channel = channel_;
  delete this;  // drops the stub's and the context's references to the channel
  owner->OnStreamDone(endpoint, status, std::move(channel));
}

}  // namespace confab
