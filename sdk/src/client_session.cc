#include "sdk/src/client_session.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/errors.h"
#include "server/common/requests.h"

namespace confab {
namespace {

// Requests packed into one ClientMessage (one stream write) at most. The bytes bound stays well
// under the server's message limit (its largest transaction plus 1 MiB); a larger single request
// goes alone.
constexpr int kWriteBatchRequestsMax = 1024;
constexpr size_t kWriteBatchBytesMax = 1 << 20;
// The session thread wakes at its next timer (heartbeat, timeout, reconnect attempt), and at
// least this often.
constexpr absl::Duration kTimerSleepMax = absl::Milliseconds(100);
// How long Close() lets a half-closed stream finish before cancelling it.
constexpr absl::Duration kHalfCloseGrace = absl::Seconds(2);

void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

// Reads (and AddWatch): answering them twice changes nothing, so they are resent after a break.
bool IsResendable(v1::SessionRequest::RequestCase kind) {
  switch (kind) {
    case v1::SessionRequest::kGet:
    case v1::SessionRequest::kExists:
    case v1::SessionRequest::kGetChildren:
    case v1::SessionRequest::kSync:
    case v1::SessionRequest::kAddWatch:
      return true;
    default:
      return false;
  }
}

std::string Describe(const v1::SessionRequest& request) {
  switch (request.request_case()) {
    case v1::SessionRequest::kCreate:
      return absl::StrCat("Create ", request.create().path());
    case v1::SessionRequest::kGet:
      return absl::StrCat("Get ", request.get().path());
    case v1::SessionRequest::kSet:
      return absl::StrCat("Set ", request.set().path());
    case v1::SessionRequest::kDelete:
      return absl::StrCat("Delete ", request.delete_().path());
    case v1::SessionRequest::kExists:
      return absl::StrCat("Exists ", request.exists().path());
    case v1::SessionRequest::kGetChildren:
      return absl::StrCat("GetChildren ", request.get_children().path());
    case v1::SessionRequest::kMulti:
      return absl::StrCat("Multi of ", request.multi().ops_size(), " ops");
    case v1::SessionRequest::kSync:
      return absl::StrCat("Sync ", request.sync().path());
    case v1::SessionRequest::kAddWatch:
      return absl::StrCat("AddWatch ", request.add_watch().path());
    case v1::SessionRequest::kRemoveWatch:
      return absl::StrCat("RemoveWatch ", request.remove_watch().path());
    case v1::SessionRequest::kClose:
      return "CloseSession";
    case v1::SessionRequest::kHeartbeat:
      return "Heartbeat";
    case v1::SessionRequest::kOpen:
      return "OpenSession";
    case v1::SessionRequest::REQUEST_NOT_SET:
      break;
  }
  return "empty request";
}

// The zxid of the state a response reflects (0 if it names none). Not SessionOpened's: on a
// resume it is the server's, past events this client has not seen.
int64_t ZxidOf(const v1::SessionResponse& response) {
  switch (response.response_case()) {
    case v1::SessionResponse::kHeartbeat:
      return response.heartbeat().zxid();
    case v1::SessionResponse::kCreate:
      return response.create().zxid();
    case v1::SessionResponse::kGet:
      return response.get().zxid();
    case v1::SessionResponse::kSet:
      return response.set().zxid();
    case v1::SessionResponse::kDelete:
      return response.delete_().zxid();
    case v1::SessionResponse::kExists:
      return response.exists().zxid();
    case v1::SessionResponse::kGetChildren:
      return response.get_children().zxid();
    case v1::SessionResponse::kMulti:
      return response.multi().zxid();
    case v1::SessionResponse::kSync:
      return response.sync().zxid();
    case v1::SessionResponse::kAddWatch:
      return response.add_watch().zxid();
    default:
      return 0;
  }
}

EventType ToEventType(v1::EventType type) {
  switch (type) {
    case v1::NODE_CREATED:
      return EventType::kNodeCreated;
    case v1::NODE_DELETED:
      return EventType::kNodeDeleted;
    case v1::NODE_DATA_CHANGED:
      return EventType::kNodeDataChanged;
    case v1::NODE_CHILDREN_CHANGED:
      return EventType::kNodeChildrenChanged;
    default:
      return EventType::kEventsMissed;
  }
}

std::vector<std::string> ParseEndpoints(absl::string_view endpoints) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(endpoints, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

}  // namespace

// ---- Lifecycle -------------------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<ClientSession>> ClientSession::Open(ClientOptions options) {
  std::vector<std::string> endpoints = ParseEndpoints(options.endpoints);
  if (endpoints.empty()) {
    return MakeError(v1::INVALID_ARGUMENT,
                     absl::StrCat("ClientOptions.endpoints names no endpoint: \"",
                                  options.endpoints, "\" (want \"host:port,host:port\")"));
  }
  const int64_t timeout_ms = absl::ToInt64Milliseconds(options.session_timeout);
  if (timeout_ms <= 0 || timeout_ms > std::numeric_limits<int32_t>::max()) {
    return MakeError(
        v1::INVALID_ARGUMENT,
        absl::StrCat("ClientOptions.session_timeout ",
                     absl::FormatDuration(options.session_timeout), " is out of range"));
  }
  for (absl::Duration d : {options.connect_timeout, options.request_timeout,
                           options.reconnect_backoff_initial, options.reconnect_backoff_max}) {
    if (d <= absl::ZeroDuration()) {
      return MakeError(v1::INVALID_ARGUMENT,
                       "ClientOptions durations (connect_timeout, request_timeout, "
                       "reconnect_backoff_*) must be positive");
    }
  }
  std::shared_ptr<ClientSession> session(
      new ClientSession(std::move(options), std::move(endpoints)));
  session->Start();
  absl::Status failure;
  {
    absl::MutexLock lock(&session->mu_);
    auto opened = [s = session.get()]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
      return s->phase_ != Phase::kConnecting;
    };
    session->mu_.Await(absl::Condition(&opened));
    if (session->phase_ != Phase::kConnected) {
      failure = MakeError(
          v1::UNAVAILABLE,
          absl::StrCat("could not open a session on any of ",
                       absl::StrJoin(session->endpoints_, ","), " within connect_timeout ",
                       absl::FormatDuration(session->options_.connect_timeout),
                       "; last error: ", session->last_error_));
    }
  }
  if (!failure.ok()) {
    session->Close().IgnoreError();  // nothing was opened: stops the threads
    return failure;
  }
  return session;
}

ClientSession::ClientSession(ClientOptions options, std::vector<std::string> endpoints)
    : listener_(std::move(options.state_listener)),
      options_(std::move(options)),
      endpoints_(std::move(endpoints)) {}

void ClientSession::Start() {
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    timeout_ = options_.session_timeout;
    next_endpoint_ = absl::Uniform<size_t>(rng_, 0, endpoints_.size());
    next_attempt_ = now;
    connect_deadline_ = now + options_.connect_timeout;
  }
  // The callback thread keeps the session alive: it may outlive the Client when that is
  // destroyed from a callback.
  callback_thread_ = std::thread([self = shared_from_this()] { self->CallbackLoop(); });
  callback_thread_id_ = callback_thread_.get_id();
  timer_thread_ = std::thread([this] { TimerLoop(); });
}

absl::Status ClientSession::Close() {
  const bool on_callback_thread = std::this_thread::get_id() == callback_thread_id_;
  {
    absl::MutexLock lock(&mu_);
    if (close_started_) {
      // Another Close: wait until it is over (and the callbacks have all run).
      if (!on_callback_thread) {
        auto over = [this]()
                        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ && callbacks_exited_; };
        mu_.Await(absl::Condition(&over));
      }
      return close_status_;
    }
    close_started_ = true;
    if (phase_ == Phase::kConnected) {
      v1::SessionRequest request;
      request.mutable_close();
      Pending pending;
      pending.purpose = Purpose::kClose;
      pending.request = std::move(request);
      EnqueueLocked(std::move(pending));
      auto answered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return close_answered_; };
      if (!mu_.AwaitWithTimeout(absl::Condition(&answered), options_.request_timeout)) {
        close_status_ = MakeError(
            v1::UNAVAILABLE,
            absl::StrCat("no answer to CloseSession within request_timeout ",
                         absl::FormatDuration(options_.request_timeout), "; session ",
                         session_id_.ToString(), " expires on the server after its timeout"));
      }
    } else if (phase_ == Phase::kSuspended) {
      close_status_ =
          MakeError(v1::UNAVAILABLE,
                    absl::StrCat("disconnected: session ", session_id_.ToString(),
                                 " was not closed; it expires on the server after its timeout ",
                                 absl::FormatDuration(timeout_)));
    }
    phase_ = Phase::kClosed;
    FailAllLocked(
        MakeError(v1::SESSION_EXPIRED,
                  absl::StrCat("the client of session ", session_id_.ToString(), " was closed")));
    timer_stop_ = true;
    if (link_.stream != nullptr) {
      // Half-closed, the server finishes the stream once it has answered everything.
      if (link_.ready) {
        link_.half_close = true;
        MaybeWriteLocked();
      } else {
        link_.cancelled = true;
        link_.stream->Cancel();
      }
    }
    auto streams_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_streams_ == 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&streams_done), kHalfCloseGrace) &&
        link_.stream != nullptr) {
      link_.stream->Cancel();
    }
    mu_.Await(absl::Condition(&streams_done));
  }
  timer_thread_.join();
  std::vector<std::shared_ptr<grpc::Channel>> retired;
  {
    absl::MutexLock lock(&mu_);
    retired.swap(retired_channels_);
    callbacks_stop_ = true;
  }
  retired.clear();
  if (on_callback_thread) {
    callback_thread_.detach();  // it finishes the queue after the running callback returns
  } else {
    callback_thread_.join();
  }
  absl::MutexLock lock(&mu_);
  closed_ = true;
  return close_status_;
}

SessionId ClientSession::session_id() const {
  absl::MutexLock lock(&mu_);
  return session_id_;
}

absl::Duration ClientSession::session_timeout() const {
  absl::MutexLock lock(&mu_);
  return timeout_;
}

ConnectionState ClientSession::state() const {
  absl::MutexLock lock(&mu_);
  return reported_;
}

// ---- Threads ---------------------------------------------------------------------------------

void ClientSession::TimerLoop() {
  NameThisThread("confab-session");
  std::vector<std::shared_ptr<grpc::Channel>> retired;
  absl::MutexLock lock(&mu_);
  while (!timer_stop_) {
    TickLocked(absl::Now());
    retired.swap(retired_channels_);
    if (!retired.empty()) {
      mu_.Unlock();
      retired.clear();
      mu_.Lock();
    }
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return timer_stop_ || timer_kick_; };
    mu_.AwaitWithDeadline(absl::Condition(&wake), NextWakeLocked(absl::Now()));
    timer_kick_ = false;
  }
}

absl::Time ClientSession::NextWakeLocked(absl::Time now) const {
  absl::Time wake = now + kTimerSleepMax;
  if (!deadlines_.empty()) wake = std::min(wake, deadlines_.front().first);
  const bool attempting = phase_ == Phase::kConnecting || phase_ == Phase::kSuspended;
  if (phase_ == Phase::kConnecting) wake = std::min(wake, connect_deadline_);
  if (phase_ == Phase::kSuspended) wake = std::min(wake, last_heard_ + timeout_);
  if (attempting && link_.stream == nullptr) wake = std::min(wake, next_attempt_);
  if (attempting && link_.stream != nullptr) wake = std::min(wake, link_.attempt_deadline);
  if (phase_ == Phase::kConnected && link_.ready) {
    wake = std::min({wake, next_heartbeat_, last_heard_ + timeout_ * 2 / 3});
  }
  return wake;
}

void ClientSession::CallbackLoop() {
  NameThisThread("confab-callback");
  for (;;) {
    std::deque<absl::AnyInvocable<void() &&>> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !callbacks_.empty() || callbacks_stop_;
      };
      mu_.Await(absl::Condition(&ready));
      if (callbacks_.empty()) {
        callbacks_exited_ = true;
        return;
      }
      batch.swap(callbacks_);
    }
    for (absl::AnyInvocable<void() &&>& callback : batch) std::move(callback)();
  }
}

void ClientSession::TickLocked(absl::Time now) {
  ExpireRequestsLocked(now);
  switch (phase_) {
    case Phase::kConnecting:
      if (now >= connect_deadline_) {
        phase_ = Phase::kClosed;  // Open() reports the failure and closes
        if (link_.stream != nullptr && !link_.cancelled) {
          link_.cancelled = true;
          link_.stream->Cancel();
        }
        return;
      }
      DriveAttemptLocked(now);
      return;
    case Phase::kConnected:
      if (!link_.ready || link_.cancelled) return;
      if (now - last_heard_ >= timeout_ * 2 / 3) {
        // Silent for too long (the server or the path to it is stuck): try another stream before
        // the session expires.
        last_error_ = absl::StrCat(link_.stream->endpoint(), ": nothing heard for ",
                                   absl::FormatDuration(now - last_heard_));
        link_.cancelled = true;
        link_.stream->Cancel();
        return;
      }
      if (now >= next_heartbeat_ && !heartbeat_outstanding_) {
        Pending pending;
        pending.purpose = Purpose::kHeartbeat;
        pending.request.mutable_heartbeat();
        EnqueueLocked(std::move(pending));
        heartbeat_outstanding_ = true;
        next_heartbeat_ = now + timeout_ / 3;
      }
      return;
    case Phase::kSuspended:
      if (now - last_heard_ >= timeout_) {
        LoseLocked(absl::StrCat("no server heard from for the session timeout ",
                                absl::FormatDuration(timeout_), " (last error: ", last_error_,
                                ")"));
        return;
      }
      DriveAttemptLocked(now);
      return;
    case Phase::kLost:
    case Phase::kClosed:
      return;
  }
}

// ---- Attempts to open or resume the session ----------------------------------------------------

void ClientSession::DriveAttemptLocked(absl::Time now) {
  if (link_.stream != nullptr) {
    if (!link_.ready && !link_.cancelled && now >= link_.attempt_deadline) {
      last_error_ = absl::StrCat(link_.stream->endpoint(), ": no answer to OpenSession within ",
                                 absl::FormatDuration(options_.connect_timeout));
      link_.cancelled = true;
      link_.stream->Cancel();
    }
    return;
  }
  if (now >= next_attempt_) StartAttemptLocked(now);
}

void ClientSession::StartAttemptLocked(absl::Time now) {
  const std::string& endpoint = endpoints_[next_endpoint_ % endpoints_.size()];
  ++next_endpoint_;
  grpc::ChannelArguments args;
  // A channel of its own per attempt: a restarted server is reached at once, not after the
  // backoff of a shared subchannel that saw it down.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The server batches responses into messages of several MiB.
  args.SetMaxReceiveMessageSize(-1);
  auto* stream = new SessionStream(
      this, endpoint,
      grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args));
  ++live_streams_;
  link_ = Link();
  link_.stream = stream;
  link_.id = ++streams_started_;
  link_.write_in_flight = true;
  link_.attempt_deadline = now + options_.connect_timeout;

  Pending pending;
  pending.purpose = Purpose::kOpen;
  pending.written = true;
  const int64_t id = next_request_id_++;
  v1::SessionRequest* open = stream->write_buffer()->add_requests();
  open->set_request_id(id);
  open->mutable_open()->set_timeout_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.session_timeout)));
  open->mutable_open()->set_session_id(session_id_.value());
  pending_.emplace(id, std::move(pending));
  stream->Begin();
}

void ClientSession::AttemptFailedLocked(absl::Time now) {
  ++failed_attempts_;
  const double factor = std::ldexp(1.0, std::min(failed_attempts_ - 1, 20));
  absl::Duration delay =
      std::min(options_.reconnect_backoff_initial * factor, options_.reconnect_backoff_max);
  delay *= absl::Uniform(rng_, 0.8, 1.2);
  next_attempt_ = now + delay;
}

// ---- Requests
// ------------------------------------------------------------------------------------

absl::Status ClientSession::RefusalLocked() const {
  if (phase_ == Phase::kLost) return MakeError(v1::SESSION_EXPIRED, lost_reason_);
  if (close_started_ || phase_ == Phase::kClosed) {
    return MakeError(v1::SESSION_EXPIRED,
                     absl::StrCat("the client of session ", session_id_.ToString(), " was closed"));
  }
  return absl::OkStatus();
}

void ClientSession::Refuse(Completion done, Delivery delivery, const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (!callbacks_stop_ || delivery == Delivery::kDirect) {
      CompleteLocked(std::move(done), delivery, status);
      return;
    }
  }
  std::move(done)(status);
}

void ClientSession::Submit(v1::SessionRequest request, std::optional<ReadWatch> watch,
                           Completion done, Delivery delivery) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    refused = RefusalLocked();
    if (refused.ok()) {
      Pending pending;
      pending.request = std::move(request);
      pending.done = std::move(done);
      pending.delivery = delivery;
      pending.watch = std::move(watch);
      EnqueueLocked(std::move(pending));
      return;
    }
  }
  Refuse(std::move(done), delivery, refused);
}

void ClientSession::AddWatch(v1::SessionRequest request, Watcher watcher, WatchCompletion done,
                             Delivery delivery) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    refused = RefusalLocked();
    if (refused.ok()) {
      AddWatchLocked(std::move(request), std::move(watcher), std::move(done), delivery);
      return;
    }
  }
  Refuse(
      [done = std::move(done)](absl::StatusOr<v1::SessionResponse> response) mutable {
        std::move(done)(response.status());
      },
      delivery, refused);
}

void ClientSession::AddWatchLocked(v1::SessionRequest request, Watcher watcher,
                                   WatchCompletion done, Delivery delivery) {
  // In the table (not armed) from now on, so that a concurrent RemoveWatch of another watcher of
  // the same path knows the server watch is still wanted.
  WatchTable::EntryPtr entry =
      watches_.Add(request.add_watch().path(), request.add_watch().kind(), std::move(watcher));
  Pending pending;
  pending.request = std::move(request);
  pending.done = [done = std::move(done),
                  id = entry->id](absl::StatusOr<v1::SessionResponse> response) mutable {
    if (!response.ok()) {
      std::move(done)(response.status());
    } else {
      std::move(done)(id);
    }
  };
  pending.delivery = delivery;
  pending.watch_id = entry->id;
  EnqueueLocked(std::move(pending));
}

void ClientSession::RemoveWatch(uint64_t id, Completion done, Delivery delivery) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    refused = RefusalLocked();
    if (refused.ok()) {
      RemoveWatchLocked(id, std::move(done), delivery);
      return;
    }
  }
  Refuse(std::move(done), delivery, refused);
}

void ClientSession::RemoveWatchLocked(uint64_t id, Completion done, Delivery delivery) {
  WatchTable::EntryPtr entry = watches_.Find(id);
  if (entry == nullptr ||
      (entry->kind != v1::PERSISTENT_WATCH && entry->kind != v1::PERSISTENT_RECURSIVE_WATCH)) {
    CompleteLocked(std::move(done), delivery,
                   MakeError(v1::NO_NODE, absl::StrCat("no persistent watch with id ", id)));
    return;
  }
  watches_.Remove(id);
  entry->active.store(false);
  if (watches_.Count(entry->path, entry->kind) > 0) {
    // Another watcher of the client still needs the server's watch.
    CompleteLocked(std::move(done), delivery, v1::SessionResponse());
    return;
  }
  Pending pending;
  pending.request.mutable_remove_watch()->set_path(entry->path);
  pending.request.mutable_remove_watch()->set_kind(entry->kind);
  pending.done = std::move(done);
  pending.delivery = delivery;
  EnqueueLocked(std::move(pending));
}

int64_t ClientSession::EnqueueLocked(Pending pending) {
  const int64_t id = next_request_id_++;
  pending.request.set_request_id(id);
  pending.kind = pending.request.request_case();
  if (pending.purpose == Purpose::kUser || pending.purpose == Purpose::kClose) {
    pending.what = Describe(pending.request);
    deadlines_.emplace_back(absl::Now() + options_.request_timeout, id);
  }
  pending_.emplace(id, std::move(pending));
  outbox_.push_back(id);
  MaybeWriteLocked();
  return id;
}

void ClientSession::MaybeWriteLocked() {
  if (link_.stream == nullptr || !link_.ready || link_.write_in_flight || link_.cancelled) {
    return;
  }
  v1::ClientMessage* message = link_.stream->write_buffer();
  message->Clear();
  size_t bytes = 0;
  while (!outbox_.empty() && message->requests_size() < kWriteBatchRequestsMax &&
         bytes < kWriteBatchBytesMax) {
    auto it = pending_.find(outbox_.front());
    outbox_.pop_front();
    if (it == pending_.end()) continue;  // timed out while queued
    Pending& pending = it->second;
    pending.written = true;
    bytes += pending.request.ByteSizeLong();
    if (pending.purpose == Purpose::kUser && IsResendable(pending.kind)) {
      *message->add_requests() = pending.request;
    } else {
      *message->add_requests() = std::move(pending.request);
    }
  }
  if (message->requests_size() > 0) {
    link_.write_in_flight = true;
    link_.stream->Write();
    return;
  }
  if (link_.half_close) {
    link_.half_close = false;
    link_.write_in_flight = true;  // nothing may be written after the half-close
    link_.stream->HalfClose();
  }
}

void ClientSession::ExpireRequestsLocked(absl::Time now) {
  while (!deadlines_.empty() && deadlines_.front().first <= now) {
    auto it = pending_.find(deadlines_.front().second);
    deadlines_.pop_front();
    if (it == pending_.end()) continue;
    Pending pending = std::move(it->second);
    pending_.erase(it);
    std::string message = absl::StrCat("no response to ", pending.what, " within request_timeout ",
                                       absl::FormatDuration(options_.request_timeout));
    if (pending.written && IsWriteRequest(pending.kind)) {
      absl::StrAppend(&message, "; its outcome is unknown (it may have been applied)");
    }
    // A timed-out AddWatch leaves no watcher behind (the server may still set its watch).
    if (pending.watch_id != 0) watches_.Remove(pending.watch_id);
    FinishLocked(std::move(pending), MakeError(v1::UNAVAILABLE, message));
  }
}

// ---- Stream reactions --------------------------------------------------------------------------

void ClientSession::OnStreamMessage(SessionStream* stream, v1::ServerMessage message) {
  absl::MutexLock lock(&mu_);
  if (stream != link_.stream || phase_ == Phase::kLost || phase_ == Phase::kClosed) return;
  last_heard_ = absl::Now();
  for (v1::SessionResponse& response : *message.mutable_responses()) {
    HandleResponseLocked(std::move(response));
    if (phase_ == Phase::kLost) return;  // nothing after that matters
  }
}

void ClientSession::OnStreamWriteDone(SessionStream* stream, bool ok) {
  absl::MutexLock lock(&mu_);
  if (stream != link_.stream) return;
  link_.write_in_flight = false;
  if (ok) MaybeWriteLocked();  // else reads fail too, and OnStreamBroken follows
}

void ClientSession::OnStreamBroken(SessionStream* stream) {
  absl::MutexLock lock(&mu_);
  if (stream != link_.stream) return;
  MarkWatchesDeliveredLocked();
  link_ = Link();
  timer_kick_ = true;
  const absl::Time now = absl::Now();
  switch (phase_) {
    case Phase::kConnecting:
      SettleInFlightLocked(stream->endpoint());
      AttemptFailedLocked(now);
      return;
    case Phase::kConnected:
      phase_ = Phase::kSuspended;
      ReportLocked(ConnectionState::kSuspended);
      SettleInFlightLocked(stream->endpoint());
      failed_attempts_ = 0;
      next_attempt_ = now;  // at once: most breaks are one server going away
      return;
    case Phase::kSuspended:
      SettleInFlightLocked(stream->endpoint());
      AttemptFailedLocked(now);
      return;
    case Phase::kLost:
    case Phase::kClosed:
      return;
  }
}

void ClientSession::OnStreamDone(const std::string& endpoint, const grpc::Status& status,
                                 std::shared_ptr<grpc::Channel> channel) {
  absl::MutexLock lock(&mu_);
  if (!status.ok() && !link_.ready) {
    last_error_ = absl::StrCat(endpoint, ": ", status.error_message());
  }
  retired_channels_.push_back(std::move(channel));
  --live_streams_;
}

// ---- Responses and events
// ------------------------------------------------------------------------

void ClientSession::HandleResponseLocked(v1::SessionResponse response) {
  if (response.request_id() == 0) {
    if (response.has_event()) {
      if (response.event().type() != v1::WATCHES_LOST) {
        last_zxid_ = std::max(last_zxid_, response.event().zxid());
      }
      HandleEventLocked(response.event());
    } else if (response.has_error() && response.error().code() == v1::SESSION_EXPIRED &&
               !close_started_) {
      LoseLocked(absl::StrCat("the server closed the session: ", response.error().message()));
    }
    return;
  }
  auto it = pending_.find(response.request_id());
  if (it == pending_.end()) return;  // timed out: nobody waits for it any more
  Pending pending = std::move(it->second);
  pending_.erase(it);
  absl::Status error = response.has_error() ? FromProto(response.error()) : absl::OkStatus();
  const bool expired = ErrorCodeOf(error) == v1::SESSION_EXPIRED;
  last_zxid_ = std::max(last_zxid_, ZxidOf(response));
  switch (pending.purpose) {
    case Purpose::kOpen:
      HandleOpenedLocked(error, response.opened());
      return;
    case Purpose::kHeartbeat:
      heartbeat_outstanding_ = false;
      break;
    case Purpose::kRewatch:
      HandleRewatchLocked(pending, error, response);
      break;
    case Purpose::kResync:
      HandleResyncLocked(pending, error, response);
      break;
    case Purpose::kClose:
      FinishLocked(std::move(pending),
                   error.ok() ? absl::StatusOr<v1::SessionResponse>(std::move(response)) : error);
      return;  // the session is closed: SESSION_EXPIRED from now on is expected
    case Purpose::kUser:
      HandleUserResponseLocked(std::move(pending), error, std::move(response));
      break;
  }
  if (expired && !close_started_) {
    LoseLocked(absl::StrCat("the server answered: ", error.message()));
  }
}

void ClientSession::HandleUserResponseLocked(Pending pending, absl::Status error,
                                             v1::SessionResponse response) {
  const v1::SessionRequest& request = pending.request;
  if (pending.watch_id != 0) {  // AddWatch
    if (error.ok()) {
      if (WatchTable::EntryPtr entry = watches_.Find(pending.watch_id)) {
        entry->armed = true;
        entry->stream = link_.id;
        entry->resume_zxid = ZxidOf(response);
      }
    } else {
      watches_.Remove(pending.watch_id);
    }
  } else if (pending.watch.has_value() && error.ok()) {
    // The server set the watch with the read: from here on, its events may come.
    std::string path;
    bool existed = true;
    int64_t zxid = 0;
    if (request.has_get()) {
      path = request.get().path();
      zxid = response.get().zxid();
    } else if (request.has_exists()) {
      path = request.exists().path();
      existed = response.exists().exists();
      zxid = response.exists().zxid();
    } else {
      path = request.get_children().path();
      zxid = response.get_children().zxid();
    }
    WatchTable::EntryPtr entry =
        watches_.Add(std::move(path), pending.watch->kind, std::move(pending.watch->watcher));
    entry->armed = true;
    entry->existed = existed;
    entry->read_zxid = zxid;
    entry->stream = link_.id;
    entry->resume_zxid = zxid;
  }
  if (pending.kind == v1::SessionRequest::kRemoveWatch && ErrorCodeOf(error) == v1::NO_NODE) {
    error = absl::OkStatus();  // the server had already let go of it (e.g. it restarted)
  }
  FinishLocked(std::move(pending),
               error.ok() ? absl::StatusOr<v1::SessionResponse>(std::move(response)) : error);
}

void ClientSession::HandleEventLocked(const v1::WatchEvent& event) {
  if (event.type() == v1::WATCHES_LOST) {
    // The server dropped the session's watches and the events it had queued: add them all again
    // from what each had received, which replays what was dropped.
    MarkWatchesDeliveredLocked();
    RearmWatchesLocked();
    MaybeWriteLocked();
    return;
  }
  for (const WatchTable::EntryPtr& entry : watches_.Route(event)) {
    FireLocked(entry, WatchEvent{ToEventType(event.type()), event.path(), event.zxid()});
  }
}

void ClientSession::HandleOpenedLocked(const absl::Status& error, const v1::SessionOpened& opened) {
  // An attempt given up meanwhile (too slow): its stream is going away, the next attempt resumes.
  if (link_.cancelled) return;
  const std::string endpoint = link_.stream->endpoint();
  if (!error.ok()) {
    if (phase_ == Phase::kSuspended && ErrorCodeOf(error) == v1::SESSION_EXPIRED) {
      LoseLocked(absl::StrCat("resuming it on ", endpoint, ": ", error.message()));
      return;
    }
    last_error_ = absl::StrCat(endpoint, ": ", error.message());
    link_.cancelled = true;
    link_.stream->Cancel();  // this attempt failed; OnStreamBroken schedules the next
    return;
  }
  const absl::Time now = absl::Now();
  link_.ready = true;
  link_.attempt_deadline = absl::InfiniteFuture();
  failed_attempts_ = 0;
  last_heard_ = now;
  timeout_ = absl::Milliseconds(opened.timeout_ms());
  next_heartbeat_ = now + timeout_ / 3;
  heartbeat_outstanding_ = false;
  resume_zxid_ = opened.zxid();
  if (phase_ == Phase::kConnecting) {
    session_id_ = SessionId(opened.session_id());
    phase_ = Phase::kConnected;
    ReportLocked(ConnectionState::kConnected);
  } else {
    phase_ = Phase::kConnected;
    ReportLocked(ConnectionState::kReconnected);
    RearmWatchesLocked();
  }
  MaybeWriteLocked();
}

void ClientSession::MarkWatchesDeliveredLocked() {
  for (const WatchTable::EntryPtr& entry : watches_.All()) {
    if (entry->armed && entry->stream == link_.id) entry->resume_zxid = last_zxid_;
  }
}

// Each watch resumes from its own point (see WatchTable::Entry), not simply last_zxid_: a watch
// whose re-add was not yet confirmed when the stream broke again has not had its missed events.
void ClientSession::RearmWatchesLocked() {
  std::vector<int64_t> ids;
  for (const auto& [path, kind] : watches_.ArmedKeys()) {
    v1::SessionRequest request;
    request.mutable_add_watch()->set_path(path);
    request.mutable_add_watch()->set_kind(kind);
    int64_t start = std::numeric_limits<int64_t>::max();
    for (const WatchTable::EntryPtr& entry : watches_.Armed(path, kind)) {
      start = std::min(start, entry->resume_zxid);
    }
    request.mutable_add_watch()->set_start_zxid(start);
    ids.push_back(QueueWatchRequestLocked(Purpose::kRewatch, std::move(request), path, kind));
  }
  outbox_.insert(outbox_.begin(), ids.begin(), ids.end());
}

int64_t ClientSession::QueueWatchRequestLocked(Purpose purpose, v1::SessionRequest request,
                                               const std::string& path, v1::WatchKind kind) {
  Pending pending;
  pending.purpose = purpose;
  pending.path = path;
  pending.watch_kind = kind;
  pending.kind = request.request_case();
  pending.request = std::move(request);
  const int64_t id = next_request_id_++;
  pending.request.set_request_id(id);
  pending_.emplace(id, std::move(pending));
  return id;
}

void ClientSession::HandleRewatchLocked(const Pending& pending, const absl::Status& error,
                                        const v1::SessionResponse& response) {
  // The events the watch missed, as the server remembered them, came before this response and
  // went through HandleEventLocked. Only when its history did not reach back is more to do.
  if (!error.ok()) return;
  std::vector<WatchTable::EntryPtr> armed = watches_.Armed(pending.path, pending.watch_kind);
  for (const WatchTable::EntryPtr& entry : armed) entry->stream = link_.id;
  if (armed.empty() || !response.add_watch().events_missed()) return;
  v1::SessionRequest request;
  switch (pending.watch_kind) {
    case v1::DATA_WATCH:
      request.mutable_exists()->set_path(pending.path);
      break;
    case v1::CHILD_WATCH:
      request.mutable_get_children()->set_path(pending.path);
      break;
    default:
      // A persistent watch cannot be told what it missed: its watchers hear that they did.
      for (const WatchTable::EntryPtr& entry : armed) {
        FireLocked(entry,
                   WatchEvent{EventType::kEventsMissed, pending.path, response.add_watch().zxid()});
      }
      return;
  }
  outbox_.push_back(QueueWatchRequestLocked(Purpose::kResync, std::move(request), pending.path,
                                            pending.watch_kind));
  MaybeWriteLocked();
}

void ClientSession::HandleResyncLocked(const Pending& pending, const absl::Status& error,
                                       const v1::SessionResponse& response) {
  // ZooKeeper's setWatches, synthesized: fire what the node's state says was missed since the
  // read that set each watch; the others stay armed (the server holds the watch again). An event
  // the server sent since AddWatch came before this response and fired its watches already.
  std::vector<std::pair<WatchTable::EntryPtr, WatchEvent>> fired;
  if (pending.watch_kind == v1::DATA_WATCH) {
    if (!error.ok()) return;
    const v1::ExistsResponse& exists = response.exists();
    const v1::Stat& stat = exists.stat();
    for (const WatchTable::EntryPtr& entry : watches_.Armed(pending.path, pending.watch_kind)) {
      if (entry->existed && (!exists.exists() || stat.czxid() > entry->read_zxid)) {
        fired.emplace_back(entry, WatchEvent{EventType::kNodeDeleted, pending.path, exists.zxid()});
      } else if (entry->existed && stat.mzxid() > entry->read_zxid) {
        fired.emplace_back(entry,
                           WatchEvent{EventType::kNodeDataChanged, pending.path, stat.mzxid()});
      } else if (!entry->existed && exists.exists()) {
        fired.emplace_back(entry, WatchEvent{EventType::kNodeCreated, pending.path, stat.czxid()});
      }
    }
  } else {
    const bool gone = ErrorCodeOf(error) == v1::NO_NODE;
    if (!error.ok() && !gone) return;
    const v1::Stat& stat = response.get_children().stat();
    for (const WatchTable::EntryPtr& entry : watches_.Armed(pending.path, pending.watch_kind)) {
      if (gone || stat.czxid() > entry->read_zxid) {
        const int64_t zxid = gone ? resume_zxid_ : response.get_children().zxid();
        fired.emplace_back(entry, WatchEvent{EventType::kNodeDeleted, pending.path, zxid});
      } else if (stat.pzxid() > entry->read_zxid) {
        fired.emplace_back(entry,
                           WatchEvent{EventType::kNodeChildrenChanged, pending.path, stat.pzxid()});
      }
    }
  }
  for (auto& [entry, event] : fired) {
    watches_.Remove(entry->id);
    FireLocked(entry, std::move(event));
  }
}

// ---- Breaks, loss and completion
// -----------------------------------------------------------------

void ClientSession::SettleInFlightLocked(const std::string& endpoint) {
  std::vector<int64_t> resend;
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& pending = it->second;
    if (!pending.written) {
      ++it;
      continue;
    }
    if (pending.purpose == Purpose::kUser && IsResendable(pending.kind)) {
      pending.written = false;
      resend.push_back(it->first);
      ++it;
      continue;
    }
    Pending taken = std::move(pending);
    it = pending_.erase(it);
    switch (taken.purpose) {
      case Purpose::kOpen:
      case Purpose::kRewatch:  // done again from the watch table on the next stream
      case Purpose::kResync:
        break;
      case Purpose::kHeartbeat:
        heartbeat_outstanding_ = false;
        break;
      case Purpose::kClose:
      case Purpose::kUser:
        if (taken.kind == v1::SessionRequest::kRemoveWatch) {
          // The watcher is gone already and the watch is not registered on the next stream.
          FinishLocked(std::move(taken), v1::SessionResponse());
        } else {
          std::string what = taken.what;
          FinishLocked(std::move(taken),
                       MakeError(v1::UNAVAILABLE,
                                 absl::StrCat("the connection to ", endpoint, " broke while ", what,
                                              " was in flight; its outcome is unknown "
                                              "(it may have been applied)")));
        }
        break;
    }
  }
  // Resent first: they were made before anything still queued.
  outbox_.insert(outbox_.begin(), resend.begin(), resend.end());
}

void ClientSession::LoseLocked(absl::string_view reason) {
  if (phase_ == Phase::kLost || phase_ == Phase::kClosed) return;
  phase_ = Phase::kLost;
  lost_reason_ = absl::StrCat("session ", session_id_.ToString(), " is lost: ", reason);
  if (link_.stream != nullptr && !link_.cancelled) {
    link_.cancelled = true;
    link_.stream->Cancel();
  }
  ReportLocked(ConnectionState::kLost);
  FailAllLocked(MakeError(v1::SESSION_EXPIRED, lost_reason_));
  for (const WatchTable::EntryPtr& entry : watches_.Clear()) entry->active.store(false);
}

void ClientSession::FailAllLocked(const absl::Status& status) {
  std::map<int64_t, Pending> pending;
  pending.swap(pending_);
  outbox_.clear();
  deadlines_.clear();
  heartbeat_outstanding_ = false;
  for (auto& [id, p] : pending) FinishLocked(std::move(p), status);
}

void ClientSession::FinishLocked(Pending pending, absl::StatusOr<v1::SessionResponse> result) {
  switch (pending.purpose) {
    case Purpose::kUser:
      CompleteLocked(std::move(pending.done), pending.delivery, std::move(result));
      return;
    case Purpose::kClose:
      close_answered_ = true;
      close_status_ = result.status();
      return;
    default:
      return;
  }
}

void ClientSession::CompleteLocked(Completion done, Delivery delivery,
                                   absl::StatusOr<v1::SessionResponse> result) {
  if (delivery == Delivery::kDirect) {
    std::move(done)(std::move(result));
    return;
  }
  PostLocked([done = std::move(done), result = std::move(result)]() mutable {
    std::move(done)(std::move(result));
  });
}

void ClientSession::ReportLocked(ConnectionState state) {
  reported_ = state;
  PostLocked([this, state] {
    if (listener_) listener_(state);
  });
}

void ClientSession::FireLocked(const WatchTable::EntryPtr& entry, WatchEvent event) {
  PostLocked([entry, event = std::move(event)] {
    if (entry->active.load()) entry->watcher(event);
  });
}

void ClientSession::PostLocked(absl::AnyInvocable<void() &&> callback) {
  callbacks_.push_back(std::move(callback));
}

}  // namespace confab
