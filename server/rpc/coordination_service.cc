#include "server/rpc/coordination_service.h"

#include <deque>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"
#include "server/common/path.h"
#include "server/common/requests.h"
#include "server/pipeline/admission.h"
#include "spdlog/spdlog.h"

namespace confab::rpc {
namespace {

using pipeline::Replica;

// Responses packed into one ServerMessage (one stream write) at most.
constexpr int kWriteBatchMessagesMax = 512;
// Well under the 4 MiB a gRPC client accepts by default, even with one large response on top.
constexpr size_t kWriteBatchBytesMax = 1 << 20;

grpc::StatusCode ToGrpcCode(absl::StatusCode code) {
  return static_cast<grpc::StatusCode>(static_cast<int>(code));
}

grpc::Status ToGrpcStatus(const absl::Status& status, grpc::CallbackServerContext* context) {
  if (status.ok()) return grpc::Status::OK;
  context->AddTrailingMetadata("confab-error-code", v1::ErrorCode_Name(ErrorCodeOf(status)));
  if (int failed_op = FailedOpOf(status); failed_op >= 0) {
    context->AddTrailingMetadata("confab-failed-op", std::to_string(failed_op));
  }
  return grpc::Status(ToGrpcCode(status.code()), std::string(status.message()));
}

bool IsError(const v1::Error& error) { return error.code() != v1::OK; }

bool IsWrite(const v1::SessionRequest& request) { return IsWriteRequest(request.request_case()); }

// Admits a write request (validate -> transaction); the session is the caller's.
absl::StatusOr<internal::Txn> Admit(v1::SessionRequest request, SessionId session,
                                    const Replica& replica) {
  int64_t now = replica.NowMs();
  const pipeline::Limits& limits = replica.limits();
  switch (request.request_case()) {
    case v1::SessionRequest::kCreate:
      return pipeline::AdmitCreate(std::move(*request.mutable_create()), session, now, limits);
    case v1::SessionRequest::kSet:
      return pipeline::AdmitSet(std::move(*request.mutable_set()), session, now, limits);
    case v1::SessionRequest::kDelete:
      return pipeline::AdmitDelete(std::move(*request.mutable_delete_()), session, now, limits);
    case v1::SessionRequest::kMulti:
      return pipeline::AdmitMulti(std::move(*request.mutable_multi()), session, now, limits);
    default:
      return MakeError(v1::INTERNAL, "Admit called with a request that is not a write");
  }
}

// The path a read request names and whether it sets a watch.
absl::Status ValidateReadRequest(const v1::SessionRequest& request, SessionId session) {
  switch (request.request_case()) {
    case v1::SessionRequest::kGet:
      return pipeline::ValidateRead(request.get().path(), request.get().watch(), session);
    case v1::SessionRequest::kExists:
      return pipeline::ValidateRead(request.exists().path(), request.exists().watch(), session);
    case v1::SessionRequest::kGetChildren:
      return pipeline::ValidateRead(request.get_children().path(), request.get_children().watch(),
                                    session);
    case v1::SessionRequest::kAddWatch:
      return pipeline::ValidateRead(request.add_watch().path(), true, session);
    case v1::SessionRequest::kRemoveWatch:
      return pipeline::ValidateRead(request.remove_watch().path(), true, session);
    case v1::SessionRequest::kSync:
      return request.sync().path().empty() ? absl::OkStatus() : ValidatePath(request.sync().path());
    default:
      return absl::OkStatus();
  }
}

// Reads that must reflect every write acknowledged before they were sent: they wait for a Sync
// with the leader first.
bool NeedsSync(const v1::SessionRequest& request) {
  switch (request.request_case()) {
    case v1::SessionRequest::kSync:
      return true;
    case v1::SessionRequest::kGet:
      return request.get().linearizable();
    case v1::SessionRequest::kExists:
      return request.exists().linearizable();
    case v1::SessionRequest::kGetChildren:
      return request.get_children().linearizable();
    default:
      return false;
  }
}

// Fills a stream response from a write's result.
void ToResponse(internal::TxnResult result, v1::SessionResponse* response) {
  if (result.has_error()) *response->mutable_error() = std::move(*result.mutable_error());
  switch (result.result_case()) {
    case internal::TxnResult::kCreate:
      *response->mutable_create() = std::move(*result.mutable_create());
      break;
    case internal::TxnResult::kSet:
      *response->mutable_set() = std::move(*result.mutable_set());
      break;
    case internal::TxnResult::kDelete:
      *response->mutable_delete_() = std::move(*result.mutable_delete_());
      break;
    case internal::TxnResult::kMulti:
      *response->mutable_multi() = std::move(*result.mutable_multi());
      break;
    case internal::TxnResult::RESULT_NOT_SET:
      break;
  }
}

absl::Status SessionOf(int64_t session_id, Replica* replica) {
  if (session_id == 0) return absl::OkStatus();
  return replica->TouchSession(SessionId(session_id));
}

// A unary write: admit, submit, finish from the result.
grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* context) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(MakeError(v1::UNAVAILABLE, "server is shutting down"), context));
  return reactor;
}

template <typename Request, typename Response, typename Extract>
grpc::ServerUnaryReactor* UnaryWrite(
    CoordinationService* service, Replica* replica, grpc::CallbackServerContext* context,
    const Request& request, Response* response,
    absl::StatusOr<internal::Txn> (*admit)(Request, SessionId, int64_t, const pipeline::Limits&),
    Extract extract) {
  if (!service->Enter()) return Refuse(context);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  SessionId session(request.session_id());
  absl::Status status = SessionOf(request.session_id(), replica);
  absl::StatusOr<internal::Txn> txn =
      status.ok() ? admit(request, session, replica->NowMs(), replica->limits())
                  : absl::StatusOr<internal::Txn>(status);
  if (!txn.ok()) {
    reactor->Finish(ToGrpcStatus(txn.status(), context));
    service->Exit();
    return reactor;
  }
  replica->Submit(std::move(*txn),
                  [service, reactor, context, response, extract](internal::TxnResult result) {
                    if (result.has_error() && IsError(result.error())) {
                      reactor->Finish(ToGrpcStatus(FromProto(result.error()), context));
                    } else {
                      extract(&result, response);
                      reactor->Finish(grpc::Status::OK);
                    }
                    service->Exit();
                  });
  return reactor;
}

// A unary read: validate, read, finish with the response the stream would have carried.
template <typename Response, typename Extract>
grpc::ServerUnaryReactor* UnaryRead(CoordinationService* service, Replica* replica,
                                    grpc::CallbackServerContext* context,
                                    v1::SessionRequest request, int64_t session_id,
                                    Response* response, Extract extract) {
  if (!service->Enter()) return Refuse(context);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  SessionId session(session_id);
  absl::Status status = SessionOf(session_id, replica);
  if (status.ok()) status = ValidateReadRequest(request, session);
  auto read = [service, replica, reactor, context, response, extract, session](
                  const v1::SessionRequest& wrapped, absl::Status outcome) {
    if (outcome.ok()) {
      v1::SessionResponse out;
      replica->Read(wrapped, session, [&](v1::SessionResponse r) { out = std::move(r); });
      if (out.has_error() && IsError(out.error())) {
        outcome = FromProto(out.error());
      } else {
        extract(&out, response);
      }
    }
    reactor->Finish(ToGrpcStatus(outcome, context));
    service->Exit();
  };
  if (status.ok() && NeedsSync(request)) {
    replica->Sync([request = std::move(request), read](absl::Status synced) mutable {
      read(request, synced);
    });
    return reactor;
  }
  read(request, status);
  return reactor;
}

}  // namespace

// ---- Session stream ------------------------------------------------------------------------

class SessionReactor;

// The state of one Session stream, shared with the replica's callbacks (which may outlive the
// gRPC reactor). Requests occupy slots in arrival order and their responses leave in that
// order. Writes are pipelined: submitted as soon as every earlier request was started. Reads and
// everything else run once every earlier request is done, so a session reads its own writes.
class StreamState final : public pipeline::SessionSink,
                          public std::enable_shared_from_this<StreamState> {
 public:
  StreamState(CoordinationService* service, SessionReactor* reactor)
      : service_(service), replica_(service->replica_), reactor_(reactor) {}

  // SessionSink: a watch event or the session-closed notice, queued for writing.
  void Deliver(v1::SessionResponse message) override {
    absl::MutexLock lock(&mu_);
    if (message.request_id() == 0 && message.has_error() && IsError(message.error())) {
      session_closed_ = true;
    }
    outbox_.push_back(std::move(message));
    MaybeWriteLocked();
  }

  // Takes a message's requests in arrival order. The reactor calls this before it reads the
  // next message, so slots are in the order the client sent them.
  void Enqueue(v1::ClientMessage* message) {
    absl::MutexLock lock(&mu_);
    for (v1::SessionRequest& request : *message->mutable_requests()) {
      Slot& slot = slots_.emplace_back();
      slot.request = std::move(request);
    }
  }

  // Moves finished slots at the head to the outbox, then starts whatever may start now; repeats
  // until nothing more can start. Runs reads outside mu_ (the replica's lock comes first).
  // One thread pumps at a time (the gRPC thread that read requests, or the apply thread that
  // finished one), so slots start in order: two writes of a session are submitted, and get
  // their zxids, in the order they were sent. A thread that finds another pumping leaves the
  // work to it: the pumping thread rescans under mu_ after each start, so it sees everything
  // that changed meanwhile.
  void Pump() {
    {
      absl::MutexLock lock(&mu_);
      if (pumping_) return;
      pumping_ = true;
    }
    for (;;) {
      Slot* start = nullptr;
      bool finish = false;
      {
        absl::MutexLock lock(&mu_);
        EmitDoneLocked();
        bool all_done_before = true;
        for (Slot& slot : slots_) {
          if (slot.state == SlotState::kNew) {
            // A write starts once the session is established (or fails at once when there is
            // none and nothing earlier could establish it); anything else waits for all before.
            bool may_start =
                IsWrite(slot.request) ? (!session_.IsNone() || all_done_before) : all_done_before;
            if (may_start) {
              slot.state = SlotState::kRunning;
              start = &slot;  // deque elements keep their address while others come and go
            }
            break;
          }
          if (slot.state != SlotState::kDone) all_done_before = false;
        }
        if (start == nullptr) {
          pumping_ = false;
          finish = ShouldFinishLocked();
        }
      }
      if (start == nullptr) {
        if (finish) FinishStream(grpc::Status::OK);
        return;
      }
      Start(start);
    }
  }

  // The apply batch this stream waited for is done.
  void WriteBatched() {
    absl::MutexLock lock(&mu_);
    write_after_batch_ = false;
    MaybeWriteLocked();
  }

  void OnWriteDone(bool ok) {
    bool finish;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) {
        broken_ = true;
        outbox_.clear();
      }
      MaybeWriteLocked();
      finish = ShouldFinishLocked();
    }
    if (finish) FinishStream(grpc::Status::OK);
  }

  void OnReadsEnded() {
    bool finish;
    {
      absl::MutexLock lock(&mu_);
      reads_ended_ = true;
      finish = ShouldFinishLocked();
    }
    if (finish) FinishStream(grpc::Status::OK);
  }

  // Ends the stream now (server shutdown).
  void Close(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || reactor_ == nullptr) return;
      broken_ = true;
      outbox_.clear();
      if (write_in_flight_) {
        // The in-flight write completes (or fails) on its own; finish right after it.
        reads_ended_ = true;
        close_status_ = status;
        return;
      }
    }
    FinishStream(status);
  }

  void OnReactorDone() {
    SessionId session;
    {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
      session = session_;
    }
    if (!session.IsNone()) replica_->DetachSink(session, this);
    service_->Forget(this);
  }

 private:
  enum class SlotState { kNew, kRunning, kDone };
  struct Slot {
    v1::SessionRequest request;
    SlotState state = SlotState::kNew;
    v1::SessionResponse response;
  };

  void Start(Slot* slot) {
    v1::SessionRequest& request = slot->request;
    SessionId session;
    bool closed;
    {
      absl::MutexLock lock(&mu_);
      session = session_;
      closed = session_closed_;
    }
    if (request.has_open()) {
      StartOpen(slot, session);
      return;
    }
    absl::Status status;
    if (session.IsNone()) {
      status = MakeError(v1::SESSION_EXPIRED, "no session on this stream: send OpenSession first");
    } else if (closed) {
      status = MakeError(v1::SESSION_EXPIRED,
                         absl::StrCat("session ", session.ToString(), " is closed"));
    } else {
      status = replica_->TouchSession(session);
    }
    if (!status.ok()) {
      Complete(slot, status);
      return;
    }
    if (request.has_heartbeat()) {
      v1::SessionResponse response;
      response.mutable_heartbeat()->set_zxid(replica_->last_applied().ToInt());
      Complete(slot, std::move(response));
      return;
    }
    if (IsWrite(request)) {
      StartWrite(slot, session);
      return;
    }
    if (status = ValidateReadRequest(request, session); !status.ok()) {
      Complete(slot, status);
      return;
    }
    if (NeedsSync(request)) {
      replica_->Sync([self = shared_from_this(), slot, session](absl::Status synced) {
        if (synced.ok()) {
          self->RunRead(slot, session);
        } else {
          self->Complete(slot, synced);
        }
        self->Pump();
      });
      return;
    }
    RunRead(slot, session);
  }

  // Every earlier slot is done, so this one is at the head: its response goes straight to the
  // outbox under the replica's read lock, ahead of events of later changes.
  void RunRead(Slot* slot, SessionId session) {
    replica_->Read(slot->request, session, [&](v1::SessionResponse response) {
      absl::MutexLock lock(&mu_);
      if (response.has_event()) {  // replayed for AddWatch(start_zxid): ahead of its response
        if (!broken_) outbox_.push_back(std::move(response));
        return;
      }
      slot->state = SlotState::kDone;
      slot->response = std::move(response);
      EmitDoneLocked();
    });
  }

  void StartOpen(Slot* slot, SessionId current) {
    const v1::OpenSession& open = slot->request.open();
    if (!current.IsNone()) {
      Complete(slot,
               MakeError(v1::INVALID_ARGUMENT,
                         absl::StrCat("this stream already has session ", current.ToString())));
      return;
    }
    if (open.session_id() != 0) {
      SessionId id(open.session_id());
      replica_->ResumeSession(
          id, [self = shared_from_this(), slot, id](absl::StatusOr<v1::SessionOpened> opened) {
            if (!opened.ok()) {
              self->Complete(slot, opened.status());
            } else {
              self->Established(slot, id, std::move(*opened));
            }
            self->Pump();
          });
      return;
    }
    replica_->OpenSession(open.timeout_ms(), [self = shared_from_this(),
                                              slot](absl::StatusOr<v1::SessionOpened> opened) {
      if (!opened.ok()) {
        self->Complete(slot, opened.status());
      } else {
        SessionId id(opened->session_id());
        self->Established(slot, id, std::move(*opened));
      }
      self->Pump();
    });
  }

  void Established(Slot* slot, SessionId id, v1::SessionOpened opened) {
    {
      absl::MutexLock lock(&mu_);
      session_ = id;
    }
    // Attach before the response is queued: events queued for the session while it had no
    // stream precede it, as they precede any later response.
    replica_->AttachSink(id, shared_from_this());
    v1::SessionResponse response;
    *response.mutable_opened() = std::move(opened);
    Complete(slot, std::move(response));
  }

  void StartWrite(Slot* slot, SessionId session) {
    if (slot->request.has_close()) {
      replica_->CloseSession(session,
                             [self = shared_from_this(), slot](internal::TxnResult result) {
                               v1::SessionResponse response;
                               if (result.has_error() && IsError(result.error())) {
                                 *response.mutable_error() = std::move(*result.mutable_error());
                               } else {
                                 response.mutable_closed()->set_zxid(result.zxid());
                               }
                               self->Complete(slot, std::move(response));
                               self->Pump();
                             });
      return;
    }
    absl::StatusOr<internal::Txn> txn = Admit(slot->request, session, *replica_);
    if (!txn.ok()) {
      Complete(slot, txn.status());
      return;
    }
    replica_->Submit(std::move(*txn),
                     [self = shared_from_this(), slot](internal::TxnResult result) {
                       v1::SessionResponse response;
                       ToResponse(std::move(result), &response);
                       self->Complete(slot, std::move(response));
                       self->Pump();
                     });
  }

  void Complete(Slot* slot, const absl::Status& status) {
    v1::SessionResponse response;
    ToProto(status, response.mutable_error());
    Complete(slot, std::move(response));
  }

  void Complete(Slot* slot, v1::SessionResponse response) {
    absl::MutexLock lock(&mu_);
    slot->response = std::move(response);
    slot->state = SlotState::kDone;
    EmitDoneLocked();
  }

  void EmitDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!slots_.empty() && slots_.front().state == SlotState::kDone) {
      Slot& slot = slots_.front();
      slot.response.set_request_id(slot.request.request_id());
      if (!broken_) outbox_.push_back(std::move(slot.response));
      slots_.pop_front();
    }
    MaybeWriteLocked();
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  bool ShouldFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || reactor_ == nullptr || !reads_ended_ || write_in_flight_) return false;
    if (broken_) return true;
    return slots_.empty() && outbox_.empty();
  }

  void FinishStream(const grpc::Status& status);

  CoordinationService* const service_;
  Replica* const replica_;
  absl::Mutex mu_;
  SessionReactor* reactor_ ABSL_GUARDED_BY(mu_);
  SessionId session_ ABSL_GUARDED_BY(mu_);
  bool session_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::SessionResponse> outbox_ ABSL_GUARDED_BY(mu_);
  v1::ServerMessage writing_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool write_after_batch_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status close_status_ ABSL_GUARDED_BY(mu_);
};

class SessionReactor final : public grpc::ServerBidiReactor<v1::ClientMessage, v1::ServerMessage> {
 public:
  explicit SessionReactor(CoordinationService* service)
      : state_(std::make_shared<StreamState>(service, this)) {}

  std::shared_ptr<StreamState> state() const { return state_; }
  void Begin() { StartRead(&incoming_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      state_->OnReadsEnded();
      return;
    }
    state_->Enqueue(&incoming_);
    incoming_.Clear();
    StartRead(&incoming_);
    state_->Pump();
  }
  void OnWriteDone(bool ok) override { state_->OnWriteDone(ok); }
  void OnDone() override {
    state_->OnReactorDone();
    delete this;
  }

 private:
  std::shared_ptr<StreamState> state_;
  v1::ClientMessage incoming_;
};

void StreamState::MaybeWriteLocked() {
  if (write_in_flight_ || outbox_.empty() || reactor_ == nullptr || finished_ || broken_) return;
  if (Replica::ApplyingBatch()) {
    // More answers of the batch being applied may follow: they leave in the same write.
    if (!write_after_batch_) {
      write_after_batch_ = true;
      service_->WriteAfterBatch(shared_from_this());
    }
    return;
  }
  writing_.Clear();
  size_t bytes = 0;
  while (!outbox_.empty() && writing_.responses_size() < kWriteBatchMessagesMax &&
         bytes < kWriteBatchBytesMax) {
    bytes += outbox_.front().ByteSizeLong();
    *writing_.add_responses() = std::move(outbox_.front());
    outbox_.pop_front();
  }
  write_in_flight_ = true;
  // Write reactions never run inline (gRPC schedules them), so this lock is not re-entered.
  reactor_->StartWrite(&writing_);
}

void StreamState::FinishStream(const grpc::Status& status) {
  SessionReactor* reactor;
  grpc::Status final_status = status;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || reactor_ == nullptr) return;
    finished_ = true;
    reactor = reactor_;
    if (!close_status_.ok()) final_status = close_status_;
  }
  // Outside mu_: Finish may run OnDone inline, which takes mu_.
  reactor->Finish(final_status);
}

grpc::ServerBidiReactor<v1::ClientMessage, v1::ServerMessage>* CoordinationService::Session(
    grpc::CallbackServerContext* /*context*/) {
  auto* reactor = new SessionReactor(this);
  bool closing;
  {
    absl::MutexLock lock(&streams_mu_);
    closing = closing_;
    if (!closing) streams_.insert(reactor->state());
  }
  if (closing) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
  } else {
    reactor->Begin();
  }
  return reactor;
}

void CoordinationService::Forget(StreamState* stream) {
  absl::MutexLock lock(&streams_mu_);
  for (auto it = streams_.begin(); it != streams_.end(); ++it) {
    if (it->get() == stream) {
      streams_.erase(it);
      return;
    }
  }
}

void CoordinationService::WriteAfterBatch(std::shared_ptr<StreamState> stream) {
  absl::MutexLock lock(&batched_mu_);
  batched_.push_back(std::move(stream));
}

void CoordinationService::WriteBatched() {
  std::vector<std::shared_ptr<StreamState>> streams;
  {
    absl::MutexLock lock(&batched_mu_);
    streams.swap(batched_);
  }
  for (const std::shared_ptr<StreamState>& stream : streams) stream->WriteBatched();
}

bool CoordinationService::Enter() {
  absl::MutexLock lock(&streams_mu_);
  if (closing_) return false;
  ++unary_in_flight_;
  return true;
}

void CoordinationService::Exit() {
  absl::MutexLock lock(&streams_mu_);
  --unary_in_flight_;
}

CoordinationService::CoordinationService(pipeline::Replica* replica, ServerInfo info)
    : replica_(replica), info_(std::move(info)) {
  replica_->SetServingListener([this](const pipeline::RoleState& role) {
    if (role.serving) return;
    CloseStreams(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "this member stopped serving (it lost its leader or quorum); "
                              "resume the session on another member"));
  });
  replica_->SetAppliedListener([this] { WriteBatched(); });
}

CoordinationService::~CoordinationService() {
  replica_->SetServingListener(nullptr);
  replica_->SetAppliedListener(nullptr);
}

void CoordinationService::CloseStreams(const grpc::Status& status) {
  std::vector<std::shared_ptr<StreamState>> streams;
  {
    absl::MutexLock lock(&streams_mu_);
    streams.assign(streams_.begin(), streams_.end());
  }
  for (auto& stream : streams) stream->Close(status);
}

bool CoordinationService::Drain(absl::Duration timeout) {
  {
    absl::MutexLock lock(&streams_mu_);
    closing_ = true;
  }
  CloseStreams(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "server is shutting down; resume the session on another member"));
  absl::MutexLock lock(&streams_mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(streams_mu_) { return unary_in_flight_ == 0; };
  return streams_mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

// ---- Unary calls ---------------------------------------------------------------------------

grpc::ServerUnaryReactor* CoordinationService::Create(grpc::CallbackServerContext* context,
                                                      const v1::CreateRequest* request,
                                                      v1::CreateResponse* response) {
  return UnaryWrite(this, replica_, context, *request, response, &pipeline::AdmitCreate,
                    [](internal::TxnResult* r, v1::CreateResponse* out) {
                      *out = std::move(*r->mutable_create());
                    });
}

grpc::ServerUnaryReactor* CoordinationService::Set(grpc::CallbackServerContext* context,
                                                   const v1::SetRequest* request,
                                                   v1::SetResponse* response) {
  return UnaryWrite(
      this, replica_, context, *request, response, &pipeline::AdmitSet,
      [](internal::TxnResult* r, v1::SetResponse* out) { *out = std::move(*r->mutable_set()); });
}

grpc::ServerUnaryReactor* CoordinationService::Delete(grpc::CallbackServerContext* context,
                                                      const v1::DeleteRequest* request,
                                                      v1::DeleteResponse* response) {
  return UnaryWrite(this, replica_, context, *request, response, &pipeline::AdmitDelete,
                    [](internal::TxnResult* r, v1::DeleteResponse* out) {
                      *out = std::move(*r->mutable_delete_());
                    });
}

grpc::ServerUnaryReactor* CoordinationService::Multi(grpc::CallbackServerContext* context,
                                                     const v1::MultiRequest* request,
                                                     v1::MultiResponse* response) {
  return UnaryWrite(this, replica_, context, *request, response, &pipeline::AdmitMulti,
                    [](internal::TxnResult* r, v1::MultiResponse* out) {
                      *out = std::move(*r->mutable_multi());
                    });
}

grpc::ServerUnaryReactor* CoordinationService::Get(grpc::CallbackServerContext* context,
                                                   const v1::GetRequest* request,
                                                   v1::GetResponse* response) {
  v1::SessionRequest wrapped;
  *wrapped.mutable_get() = *request;
  return UnaryRead(
      this, replica_, context, std::move(wrapped), request->session_id(), response,
      [](v1::SessionResponse* r, v1::GetResponse* out) { *out = std::move(*r->mutable_get()); });
}

grpc::ServerUnaryReactor* CoordinationService::Exists(grpc::CallbackServerContext* context,
                                                      const v1::ExistsRequest* request,
                                                      v1::ExistsResponse* response) {
  v1::SessionRequest wrapped;
  *wrapped.mutable_exists() = *request;
  return UnaryRead(this, replica_, context, std::move(wrapped), request->session_id(), response,
                   [](v1::SessionResponse* r, v1::ExistsResponse* out) {
                     *out = std::move(*r->mutable_exists());
                   });
}

grpc::ServerUnaryReactor* CoordinationService::GetChildren(grpc::CallbackServerContext* context,
                                                           const v1::GetChildrenRequest* request,
                                                           v1::GetChildrenResponse* response) {
  v1::SessionRequest wrapped;
  *wrapped.mutable_get_children() = *request;
  return UnaryRead(this, replica_, context, std::move(wrapped), request->session_id(), response,
                   [](v1::SessionResponse* r, v1::GetChildrenResponse* out) {
                     *out = std::move(*r->mutable_get_children());
                   });
}

grpc::ServerUnaryReactor* CoordinationService::Sync(grpc::CallbackServerContext* context,
                                                    const v1::SyncRequest* request,
                                                    v1::SyncResponse* response) {
  v1::SessionRequest wrapped;
  *wrapped.mutable_sync() = *request;
  return UnaryRead(
      this, replica_, context, std::move(wrapped), request->session_id(), response,
      [](v1::SessionResponse* r, v1::SyncResponse* out) { *out = std::move(*r->mutable_sync()); });
}

void CoordinationService::SetAddress(std::string address) {
  absl::MutexLock lock(&streams_mu_);
  address_ = std::move(address);
}

grpc::ServerUnaryReactor* CoordinationService::Status(grpc::CallbackServerContext* context,
                                                      const v1::StatusRequest* /*request*/,
                                                      v1::StatusResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  pipeline::Replica::Stats stats = replica_->stats();
  const pipeline::RoleState role = replica_->role();
  const bool standalone = replica_->standalone();
  auto role_of = [standalone](zab::Role r) {
    if (standalone) return v1::STANDALONE;
    switch (r) {
      case zab::Role::kFollowing:
        return v1::FOLLOWING;
      case zab::Role::kLeading:
        return v1::LEADING;
      case zab::Role::kLooking:
        break;
    }
    return v1::LOOKING;
  };
  response->set_version(info_.version);
  response->set_member_id(standalone ? 0 : replica_->options().self.value());
  response->set_role(role_of(role.role));
  response->set_serving(role.serving && replica_->health().ok());
  response->set_leader_id(standalone ? 0 : role.leader.value());
  response->set_epoch(role.epoch);
  response->set_last_zxid(stats.last_applied.ToInt());
  response->set_digest(stats.digest);
  response->set_node_count(stats.nodes);
  response->set_session_count(stats.sessions);
  response->set_watch_count(stats.watches);
  response->set_log_fsyncs(stats.log.batches);
  response->set_log_records(stats.log.records);
  response->set_snapshots_written(stats.snapshots_written);
  response->set_uptime_ms(absl::ToInt64Milliseconds(absl::Now() - info_.started));
  v1::MemberStatus* self = response->add_members();
  self->set_id(response->member_id());
  {
    absl::MutexLock lock(&streams_mu_);
    self->set_address(address_);
  }
  self->set_role(response->role());
  self->set_serving(response->serving());
  self->set_last_zxid(response->last_zxid());
  if (info_.peers != nullptr) {
    // What each peer last said of itself (a peer not heard from shows as LOOKING, not serving).
    for (const pipeline::PeerLinkStatus& link : info_.peers->Links()) {
      v1::MemberStatus* member = response->add_members();
      member->set_id(link.id.value());
      member->set_address(link.report.client_address());
      // Every link carries a report at least twice a second: older news is no news.
      const bool fresh = link.connected && link.last_heard_ms > 0 &&
                         absl::ToUnixMillis(absl::Now()) - link.last_heard_ms < 1500;
      switch (fresh ? link.report.state() : internal::LOOKING) {
        case internal::FOLLOWING:
          member->set_role(v1::FOLLOWING);
          break;
        case internal::LEADING:
          member->set_role(v1::LEADING);
          break;
        default:
          member->set_role(v1::LOOKING);
          break;
      }
      member->set_serving(fresh && link.report.serving());
      member->set_last_zxid(link.report.last_applied());
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace confab::rpc
