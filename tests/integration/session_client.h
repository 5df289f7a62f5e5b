// A small synchronous client over Confab's Session stream, for the integration tests.
//
// A reader thread takes every ServerMessage off the stream and files what it carries in arrival
// order: responses (request_id != 0) by request id, watch events and session notices
// (request_id 0) in a queue. Every item gets an arrival number, so a test can tell whether an
// event came before or after a given response. Every wait is bounded; a wait that times out adds
// a test failure and returns a synthesized error (code UNAVAILABLE) instead of hanging.
#ifndef CONFAB_TESTS_INTEGRATION_SESSION_CLIENT_H_
#define CONFAB_TESTS_INTEGRATION_SESSION_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "unary_client.h"

namespace confab::itest {

inline constexpr absl::Duration kWait = absl::Seconds(10);

// ---- Request builders ------------------------------------------------------------------------

namespace req {

inline v1::SessionRequest Open(int32_t timeout_ms, int64_t session_id = 0) {
  v1::SessionRequest r;
  r.mutable_open()->set_timeout_ms(timeout_ms);
  r.mutable_open()->set_session_id(session_id);
  return r;
}
inline v1::SessionRequest Heartbeat() {
  v1::SessionRequest r;
  r.mutable_heartbeat();
  return r;
}
inline v1::SessionRequest Close() {
  v1::SessionRequest r;
  r.mutable_close();
  return r;
}
inline v1::SessionRequest Create(absl::string_view path, absl::string_view data = "",
                                 v1::CreateMode mode = v1::PERSISTENT) {
  v1::SessionRequest r;
  r.mutable_create()->set_path(std::string(path));
  r.mutable_create()->set_data(std::string(data));
  r.mutable_create()->set_mode(mode);
  return r;
}
inline v1::SessionRequest Get(absl::string_view path, bool watch = false) {
  v1::SessionRequest r;
  r.mutable_get()->set_path(std::string(path));
  r.mutable_get()->set_watch(watch);
  return r;
}
inline v1::SessionRequest Set(absl::string_view path, absl::string_view data,
                              std::optional<int32_t> version = std::nullopt) {
  v1::SessionRequest r;
  r.mutable_set()->set_path(std::string(path));
  r.mutable_set()->set_data(std::string(data));
  if (version.has_value()) r.mutable_set()->set_version(*version);
  return r;
}
inline v1::SessionRequest Delete(absl::string_view path,
                                 std::optional<int32_t> version = std::nullopt) {
  v1::SessionRequest r;
  r.mutable_delete_()->set_path(std::string(path));
  if (version.has_value()) r.mutable_delete_()->set_version(*version);
  return r;
}
inline v1::SessionRequest Exists(absl::string_view path, bool watch = false) {
  v1::SessionRequest r;
  r.mutable_exists()->set_path(std::string(path));
  r.mutable_exists()->set_watch(watch);
  return r;
}
inline v1::SessionRequest GetChildren(absl::string_view path, bool watch = false) {
  v1::SessionRequest r;
  r.mutable_get_children()->set_path(std::string(path));
  r.mutable_get_children()->set_watch(watch);
  return r;
}
inline v1::SessionRequest Sync(absl::string_view path = "") {
  v1::SessionRequest r;
  r.mutable_sync()->set_path(std::string(path));
  return r;
}
inline v1::SessionRequest AddWatch(absl::string_view path, v1::WatchKind kind,
                                   int64_t start_zxid = 0) {
  v1::SessionRequest r;
  r.mutable_add_watch()->set_path(std::string(path));
  r.mutable_add_watch()->set_kind(kind);
  r.mutable_add_watch()->set_start_zxid(start_zxid);
  return r;
}
inline v1::SessionRequest RemoveWatch(absl::string_view path, v1::WatchKind kind) {
  v1::SessionRequest r;
  r.mutable_remove_watch()->set_path(std::string(path));
  r.mutable_remove_watch()->set_kind(kind);
  return r;
}
inline v1::SessionRequest Multi(std::vector<v1::Op> ops) {
  v1::SessionRequest r;
  for (v1::Op& op : ops) *r.mutable_multi()->add_ops() = std::move(op);
  return r;
}

}  // namespace req

// The error code of a stream response (OK when it has none).
inline v1::ErrorCode CodeOf(const v1::SessionResponse& response) {
  return response.has_error() ? response.error().code() : v1::OK;
}

// ---- SessionClient ---------------------------------------------------------------------------

class SessionClient {
 public:
  // A watch event or a session notice (request_id 0), with its arrival number.
  struct Event {
    v1::SessionResponse message;
    int64_t seq = 0;
    bool is_event() const { return message.has_event(); }
    const v1::WatchEvent& event() const { return message.event(); }
  };

  explicit SessionClient(const std::string& endpoint) : SessionClient(NewChannel(endpoint)) {}

  explicit SessionClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::Coordination::NewStub(std::move(channel))) {
    // A safety net: no stream of a test outlives this.
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    stream_ = stub_->Session(&context_);
    reader_ = std::thread([this] { ReadLoop(); });
  }

  ~SessionClient() { Abandon(); }

  SessionClient(const SessionClient&) = delete;
  SessionClient& operator=(const SessionClient&) = delete;

  // Opens a new session (session_id 0) and remembers its id on success.
  v1::SessionResponse Open(int32_t timeout_ms) { return OpenOrResume(req::Open(timeout_ms)); }
  // Resumes an existing session on this stream.
  v1::SessionResponse Resume(int64_t session_id, int32_t timeout_ms = 0) {
    return OpenOrResume(req::Open(timeout_ms, session_id));
  }

  int64_t session_id() const { return session_id_; }

  // Sends one request (its request_id is assigned here) and waits for its response. Events and
  // notices arriving meanwhile are queued.
  v1::SessionResponse Call(v1::SessionRequest request, absl::Duration timeout = kWait) {
    std::vector<v1::SessionRequest> requests;
    requests.push_back(std::move(request));
    return std::move(Pipeline(std::move(requests), timeout).front());
  }

  // Sends all requests in ONE ClientMessage; returns their responses in request order.
  std::vector<v1::SessionResponse> Pipeline(std::vector<v1::SessionRequest> requests,
                                            absl::Duration timeout = kWait) {
    v1::ClientMessage message;
    std::vector<int64_t> ids;
    for (v1::SessionRequest& request : requests) {
      int64_t id = next_request_id_++;
      request.set_request_id(id);
      ids.push_back(id);
      *message.add_requests() = std::move(request);
    }
    bool sent = Send(message);
    std::vector<v1::SessionResponse> responses;
    absl::Time deadline = absl::Now() + timeout;
    for (int64_t id : ids) {
      responses.push_back(sent ? WaitResponse(id, deadline)
                               : Synthesized(id, "the stream is closed: request not sent"));
    }
    return responses;
  }

  v1::SessionResponse Heartbeat() { return Call(req::Heartbeat()); }

  // Closes the session (CloseSession), then ends the stream (half-close, bounded wait for the
  // server to finish it). Returns the CloseSession response.
  v1::SessionResponse Close() {
    v1::SessionResponse response = Call(req::Close());
    EndStream(/*cancel=*/false);
    return response;
  }

  // Drops the stream without closing the session (as a client that lost its connection).
  void Abandon() { EndStream(/*cancel=*/true); }

  // Ends the stream cleanly (half-close, then the server finishes it) without closing the
  // session: unlike Abandon, the server has let go of this stream when this returns, so events
  // for the session are queued for its next stream.
  void Detach() { EndStream(/*cancel=*/false); }

  // The next queued event or notice, waiting at most `timeout`.
  std::optional<Event> NextEvent(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !events_.empty() || stream_ended_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (events_.empty()) return std::nullopt;
    Event event = std::move(events_.front());
    events_.pop_front();
    return event;
  }

  // Every event queued now, without waiting.
  std::vector<Event> DrainEvents() {
    absl::MutexLock lock(&mu_);
    std::vector<Event> out(std::make_move_iterator(events_.begin()),
                           std::make_move_iterator(events_.end()));
    events_.clear();
    return out;
  }

  // A barrier: a heartbeat round trip, then every queued event. The server sends a watch event
  // before any response that reflects its change, so after a change acknowledged before this
  // call, the events it causes for this session are all in the result.
  std::vector<Event> SettleEvents() {
    v1::SessionResponse ack = Heartbeat();
    EXPECT_EQ(CodeOf(ack), v1::OK) << ack.ShortDebugString();
    return DrainEvents();
  }

  // The arrival number of the response to `request_id` (-1 if it has not arrived).
  int64_t ArrivalOf(int64_t request_id) {
    absl::MutexLock lock(&mu_);
    auto it = arrival_.find(request_id);
    return it == arrival_.end() ? -1 : it->second;
  }
  int64_t ArrivalOf(const v1::SessionResponse& response) {
    return ArrivalOf(response.request_id());
  }

  // The response to a request sent with Send() (bounded wait).
  v1::SessionResponse ResponseTo(int64_t request_id) {
    return WaitResponse(request_id, absl::Now() + kWait);
  }

  // Sends a raw message (request ids as given). For tests of malformed traffic.
  bool Send(const v1::ClientMessage& message) {
    absl::MutexLock lock(&write_mu_);
    if (write_closed_) return false;
    return stream_->Write(message);
  }

  // Waits (bounded) for the server to end the stream; returns its final status.
  std::optional<grpc::Status> WaitStreamEnd(absl::Duration timeout = kWait) {
    {
      absl::MutexLock lock(&mu_);
      auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_ended_; };
      if (!mu_.AwaitWithTimeout(absl::Condition(&ended), timeout)) return std::nullopt;
    }
    EndStream(/*cancel=*/false);
    return final_status_;
  }

  bool stream_ended() {
    absl::MutexLock lock(&mu_);
    return stream_ended_;
  }

 private:
  v1::SessionResponse OpenOrResume(v1::SessionRequest request) {
    v1::SessionResponse response = Call(std::move(request));
    if (response.has_opened() && CodeOf(response) == v1::OK) {
      session_id_ = response.opened().session_id();
    }
    return response;
  }

  static v1::SessionResponse Synthesized(int64_t id, absl::string_view why) {
    v1::SessionResponse response;
    response.set_request_id(id);
    response.mutable_error()->set_code(v1::UNAVAILABLE);
    response.mutable_error()->set_message(absl::StrCat("test client: ", why));
    return response;
  }

  v1::SessionResponse WaitResponse(int64_t id, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto ready = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return responses_.contains(id) || stream_ended_;
    };
    mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    auto it = responses_.find(id);
    if (it == responses_.end()) {
      std::string why = stream_ended_
                            ? absl::StrCat("the stream ended before the response to request ", id)
                            : absl::StrCat("no response to request ", id, " in time");
      if (!stream_ended_) ADD_FAILURE() << why;
      return Synthesized(id, why);
    }
    v1::SessionResponse response = std::move(it->second);
    responses_.erase(it);
    return response;
  }

  void ReadLoop() {
    v1::ServerMessage message;
    while (stream_->Read(&message)) {
      absl::MutexLock lock(&mu_);
      for (v1::SessionResponse& response : *message.mutable_responses()) {
        int64_t seq = ++seq_;
        if (response.request_id() == 0) {
          events_.push_back(Event{std::move(response), seq});
        } else {
          arrival_[response.request_id()] = seq;
          responses_[response.request_id()] = std::move(response);
        }
      }
      message.Clear();
    }
    absl::MutexLock lock(&mu_);
    stream_ended_ = true;
  }

  // Ends the stream: cancel at once, or half-close and wait (bounded) for the server to finish
  // it, cancelling if it does not. Idempotent.
  void EndStream(bool cancel) {
    if (finished_) return;
    {
      absl::MutexLock lock(&write_mu_);
      if (!write_closed_) {
        write_closed_ = true;
        if (cancel) {
          context_.TryCancel();
        } else {
          stream_->WritesDone();
        }
      }
    }
    {
      absl::MutexLock lock(&mu_);
      auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_ended_; };
      if (!mu_.AwaitWithTimeout(absl::Condition(&ended), kWait)) {
        ADD_FAILURE() << "the server did not end the stream in time";
      }
    }
    context_.TryCancel();  // a no-op once the stream has ended
    if (reader_.joinable()) reader_.join();
    final_status_ = stream_->Finish();
    finished_ = true;
  }

  std::unique_ptr<v1::Coordination::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ClientMessage, v1::ServerMessage>> stream_;
  std::thread reader_;
  int64_t next_request_id_ = 1;
  int64_t session_id_ = 0;
  bool finished_ = false;
  grpc::Status final_status_;

  absl::Mutex write_mu_;
  bool write_closed_ ABSL_GUARDED_BY(write_mu_) = false;

  absl::Mutex mu_;
  int64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stream_ended_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int64_t, v1::SessionResponse> responses_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, int64_t> arrival_ ABSL_GUARDED_BY(mu_);
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace confab::itest

#endif  // CONFAB_TESTS_INTEGRATION_SESSION_CLIENT_H_
