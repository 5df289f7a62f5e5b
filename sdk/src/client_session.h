// ClientSession is the engine behind confab::Client: one session carried by a succession of
// Session streams. It assigns request ids, batches requests into stream writes, matches responses
// to their requests, keeps the client's watch table and fans watch events out, sends heartbeats,
// detects a broken or silent stream, resumes the session on another (or the same) endpoint with
// backoff, and decides what happens to requests in flight when a stream breaks.
//
// Threads: callers (any thread) enqueue; gRPC threads run the stream reactions; "confab-session"
// runs the timers (heartbeats, request and connect timeouts, reconnects, session loss);
// "confab-callback" runs user callbacks in the order they were queued. One mutex, mu_, guards all
// state; user code never runs under it. Blocking callers are completed "directly" (their
// completion only hands the result to a waiter, under mu_) so that they never wait for the
// callback thread.
#ifndef CONFAB_SDK_SRC_CLIENT_SESSION_H_
#define CONFAB_SDK_SRC_CLIENT_SESSION_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/v1/coordination.pb.h"
#include "sdk/src/session_stream.h"
#include "sdk/src/watch_table.h"

namespace confab {

class ClientSession final : public SessionStream::Owner,
                            public std::enable_shared_from_this<ClientSession> {
 public:
  // Runs once with the response (whose error, if any, has become the status) or a local error.
  using Completion = absl::AnyInvocable<void(absl::StatusOr<v1::SessionResponse> response) &&>;

  // How a completion is run: on the callback thread (async calls), or directly by whichever
  // thread completes the request, possibly under mu_ (blocking calls: it must only hand the
  // result over).
  enum class Delivery { kCallbackThread, kDirect };

  // The one-shot watch a read sets when it succeeds.
  struct ReadWatch {
    v1::WatchKind kind = v1::DATA_WATCH;
    Watcher watcher;
  };

  // Opens a new session; blocks until it is open or options.connect_timeout has passed.
  static absl::StatusOr<std::shared_ptr<ClientSession>> Open(ClientOptions options);

  ~ClientSession() override = default;

  // Sends `request` (its request_id is assigned here). `watch`: registered if the read succeeds.
  void Submit(v1::SessionRequest request, std::optional<ReadWatch> watch, Completion done,
              Delivery delivery);
  // Sends an AddWatch for a persistent watch run by `watcher`; `done` gets the watch's id.
  using WatchCompletion = absl::AnyInvocable<void(absl::StatusOr<uint64_t> id) &&>;
  void AddWatch(v1::SessionRequest request, Watcher watcher, WatchCompletion done,
                Delivery delivery);
  // Removes the watch; tells the server when no other watcher of the client needs it.
  void RemoveWatch(uint64_t id, Completion done, Delivery delivery);

  absl::Status Close();

  SessionId session_id() const;
  absl::Duration session_timeout() const;
  ConnectionState state() const;

  // SessionStream::Owner
  void OnStreamMessage(SessionStream* stream, v1::ServerMessage message) override;
  void OnStreamWriteDone(SessionStream* stream, bool ok) override;
  void OnStreamBroken(SessionStream* stream) override;
  void OnStreamDone(const std::string& endpoint, const grpc::Status& status,
                    std::shared_ptr<grpc::Channel> channel) override;

 private:
  // kConnecting: Connect() has not opened the session yet. kConnected: a stream carries it.
  // kSuspended: reconnecting. kLost and kClosed are final.
  enum class Phase { kConnecting, kConnected, kSuspended, kLost, kClosed };
  // kRewatch: AddWatch(start_zxid) re-adding a watch on a new stream. kResync: a re-read telling
  // which one-shot watches fired while the server's history could not say.
  enum class Purpose { kUser, kOpen, kHeartbeat, kRewatch, kResync, kClose };

  struct Pending {
    Purpose purpose = Purpose::kUser;
    // Kept until written; kept after that only while it may have to be resent (reads).
    v1::SessionRequest request;
    v1::SessionRequest::RequestCase kind = v1::SessionRequest::REQUEST_NOT_SET;
    std::string what;  // "Set /a/b", for error messages
    Completion done;
    Delivery delivery = Delivery::kCallbackThread;
    bool written = false;                       // handed to a stream write
    std::optional<ReadWatch> watch;             // kUser reads: registered on success
    uint64_t watch_id = 0;                      // kUser AddWatch: its (not yet armed) table entry
    std::string path;                           // kRewatch, kResync: the watch's path
    v1::WatchKind watch_kind = v1::DATA_WATCH;  // kRewatch, kResync: the watch's kind
  };

  // The current stream. A stream the session let go of may still be finishing; its reactions
  // are ignored.
  struct Link {
    SessionStream* stream = nullptr;
    bool ready = false;  // the session is open on it: requests may flow
    bool write_in_flight = false;
    bool half_close = false;  // Close(): half-close once everything is written
    bool cancelled = false;
    absl::Time attempt_deadline = absl::InfiniteFuture();
    uint64_t id = 0;  // numbers the streams of this session, from 1
  };

  ClientSession(ClientOptions options, std::vector<std::string> endpoints);

  void Start();
  void TimerLoop();
  void CallbackLoop();
  void TickLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time NextWakeLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DriveAttemptLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartAttemptLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AttemptFailedLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireRequestsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The error new requests get, or OK while they are accepted.
  absl::Status RefusalLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Completes a refused request: on the callback thread while it runs, else (after Close)
  // inline, since no callback thread is left to run it.
  void Refuse(Completion done, Delivery delivery, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);
  int64_t EnqueueLocked(Pending pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddWatchLocked(v1::SessionRequest request, Watcher watcher, WatchCompletion done,
                      Delivery delivery) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveWatchLocked(uint64_t id, Completion done, Delivery delivery)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void HandleResponseLocked(v1::SessionResponse response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleEventLocked(const v1::WatchEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleOpenedLocked(const absl::Status& error, const v1::SessionOpened& opened)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleUserResponseLocked(Pending pending, absl::Status error, v1::SessionResponse response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleRewatchLocked(const Pending& pending, const absl::Status& error,
                           const v1::SessionResponse& response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleResyncLocked(const Pending& pending, const absl::Status& error,
                          const v1::SessionResponse& response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The watches confirmed on the current stream got every event up to the last zxid seen on it:
  // that is where they resume.
  void MarkWatchesDeliveredLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues, at the head of the outbox, AddWatch(start_zxid) for every armed watch.
  void RearmWatchesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes an internal request (kRewatch or kResync) for the watch (path, kind) pending; returns
  // its id, for the caller to queue.
  int64_t QueueWatchRequestLocked(Purpose purpose, v1::SessionRequest request,
                                  const std::string& path, v1::WatchKind kind)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The stream broke: reads are resent, writes fail (outcome unknown), the rest is dropped.
  void SettleInFlightLocked(const std::string& endpoint) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoseLocked(absl::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAllLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a request: completes a user request, or records the close's outcome.
  void FinishLocked(Pending pending, absl::StatusOr<v1::SessionResponse> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReportLocked(ConnectionState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FireLocked(const WatchTable::EntryPtr& entry, WatchEvent event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PostLocked(absl::AnyInvocable<void() &&> callback) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteLocked(Completion done, Delivery delivery,
                      absl::StatusOr<v1::SessionResponse> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  StateListener listener_;       // run on the callback thread only
  const ClientOptions options_;  // its state_listener moved to listener_
  const std::vector<std::string> endpoints_;

  mutable absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kConnecting;
  ConnectionState reported_ ABSL_GUARDED_BY(mu_) = ConnectionState::kConnected;
  SessionId session_id_ ABSL_GUARDED_BY(mu_);
  absl::Duration timeout_ ABSL_GUARDED_BY(mu_);   // negotiated
  int64_t resume_zxid_ ABSL_GUARDED_BY(mu_) = 0;  // the server's zxid when last (re)opened
  // The last zxid seen: every watch event of a change at or before it has been received (the
  // server sends an event before any response that reflects its change).
  int64_t last_zxid_ ABSL_GUARDED_BY(mu_) = 0;
  std::string lost_reason_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);  // of the last failed attempt, for messages

  int64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<int64_t> outbox_ ABSL_GUARDED_BY(mu_);  // ids not yet written, in sending order
  // (deadline, id) of user requests in the order made; request_timeout is one value for all, so
  // the front expires first.
  std::deque<std::pair<absl::Time, int64_t>> deadlines_ ABSL_GUARDED_BY(mu_);
  WatchTable watches_ ABSL_GUARDED_BY(mu_);

  Link link_ ABSL_GUARDED_BY(mu_);
  uint64_t streams_started_ ABSL_GUARDED_BY(mu_) = 0;
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;
  // Channels of finished streams, dropped by the session thread or Close() (see SessionStream).
  std::vector<std::shared_ptr<grpc::Channel>> retired_channels_ ABSL_GUARDED_BY(mu_);
  size_t next_endpoint_ ABSL_GUARDED_BY(mu_) = 0;
  int failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_);
  absl::Time connect_deadline_ ABSL_GUARDED_BY(mu_);
  absl::Time last_heard_ ABSL_GUARDED_BY(mu_);
  absl::Time next_heartbeat_ ABSL_GUARDED_BY(mu_);
  bool heartbeat_outstanding_ ABSL_GUARDED_BY(mu_) = false;

  bool close_started_ ABSL_GUARDED_BY(mu_) = false;
  bool close_answered_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;

  bool timer_stop_ ABSL_GUARDED_BY(mu_) = false;
  bool timer_kick_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<absl::AnyInvocable<void() &&>> callbacks_ ABSL_GUARDED_BY(mu_);
  bool callbacks_stop_ ABSL_GUARDED_BY(mu_) = false;
  bool callbacks_exited_ ABSL_GUARDED_BY(mu_) = false;

  std::thread timer_thread_;
  std::thread callback_thread_;
  std::thread::id callback_thread_id_;  // set before any callback can run
};

}  // namespace confab

#endif  // CONFAB_SDK_SRC_CLIENT_SESSION_H_
