// Replica is one member's server shell around the pure modules: it recovers the state from the
// data directory, runs the write path (admitted transaction -> zxid -> durable log with group
// commit -> apply in zxid order -> reply), serves reads against the applied state, tracks session
// expiry, routes watch events to sessions, and takes snapshots without stopping writes.
//
// Today the member is standalone (an ensemble of one): a transaction commits when it is durable on
// this member. The ZAB core slots in between "logged" and "applied" without changing the stages
// on either side.
//
// Threads: callers (gRPC threads) admit and submit; "confab-log" makes batches durable;
// "confab-apply" applies them and replies; "confab-tick" expires sessions; "confab-snap" writes
// snapshots. Lock order: tree_mu_ -> sinks_mu_ -> a sink's own lock, and tree_mu_ -> tracker_mu_;
// propose_mu_ is never held while taking another lock of this class.
#ifndef CONFAB_SERVER_PIPELINE_REPLICA_H_
#define CONFAB_SERVER_PIPELINE_REPLICA_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "confab/internal/txn.pb.h"
#include "confab/v1/coordination.pb.h"
#include "server/common/types.h"
#include "server/pipeline/admission.h"
#include "server/sessions/session_tracker.h"
#include "server/storage/data_dir.h"
#include "server/storage/log_writer.h"
#include "server/storage/txn_log.h"
#include "server/tree/data_tree.h"
#include "server/watches/change_history.h"
#include "server/watches/watch_registry.h"

namespace confab::pipeline {

struct ReplicaOptions {
  std::string data_dir;
  Limits limits;
  int32_t session_timeout_min_ms = 2'000;
  int32_t session_timeout_max_ms = 60'000;
  int64_t tick_ms = 100;                   // session expiry granularity
  uint64_t snapshot_every_txns = 100'000;  // a snapshot after this many applied transactions
  size_t snapshots_kept = 3;
  size_t detached_events_max = 10'000;    // events kept for a session with no stream attached
  size_t watch_history_events = 100'000;  // recent changes kept for watches resumed by zxid
  uint8_t member_id = 0;                  // high byte of the session ids this member hands out
  storage::LogOptions log;
};

// What recovery found, for the startup log line and for tests.
struct RecoveryInfo {
  Zxid snapshot_zxid;
  std::string snapshot_path;  // empty when starting without a snapshot
  uint64_t log_records_replayed = 0;
  Zxid last_zxid;
  Epoch epoch = 0;  // the epoch this run proposes in
  storage::LogRecoveryReport log;
  std::vector<std::string> warnings;
  int64_t duration_ms = 0;
};

// Where a session's watch events go while one of its streams is attached.
class SessionSink {
 public:
  virtual ~SessionSink() = default;
  // Called with replica locks held: must only queue the message, never block or call back.
  virtual void Deliver(v1::SessionResponse message) = 0;
};

class Replica {
 public:
  using WriteDone = absl::AnyInvocable<void(internal::TxnResult result) &&>;
  using OpenDone = absl::AnyInvocable<void(absl::StatusOr<v1::SessionOpened> opened) &&>;
  using ReadDeliver = absl::FunctionRef<void(v1::SessionResponse response)>;

  static absl::StatusOr<std::unique_ptr<Replica>> Open(const ReplicaOptions& options);
  ~Replica();  // Shutdown()

  const RecoveryInfo& recovery() const { return recovery_; }
  const Limits& limits() const { return options_.limits; }
  int64_t NowMs() const;

  // Writes. `done` runs exactly once, on the apply thread with no lock held: after the transaction
  // is durable and applied, with its result; or with UNAVAILABLE when the replica is shutting
  // down or its log failed (then the outcome is unknown only if it was already enqueued).
  void Submit(internal::Txn txn, WriteDone done);

  // Sessions.
  // SESSION_EXPIRED unless `id` is open; otherwise pushes its expiry out.
  absl::Status TouchSession(SessionId id);
  void OpenSession(int32_t requested_timeout_ms, OpenDone done);
  // Resumes an open session. Its watches (and events queued for it) are dropped: the client
  // re-adds them with AddWatch from the last zxid it saw, which replays what it missed.
  absl::StatusOr<v1::SessionOpened> ResumeSession(SessionId id);
  void CloseSession(SessionId id, WriteDone done);
  // Attaches a stream's sink to an open session, replacing any other; events queued while no
  // sink was attached are delivered to it first, in order.
  void AttachSink(SessionId id, std::shared_ptr<SessionSink> sink);
  // Detaches `sink` if it is still the one attached to `id`.
  void DetachSink(SessionId id, const SessionSink* sink);

  // Reads (Get, Exists, GetChildren, Sync, AddWatch, RemoveWatch) against the applied state, with
  // watch registration atomic with the read. `deliver` runs under the read lock, so a response is
  // ordered before any event of a later change. The request was validated by the caller.
  void Read(const v1::SessionRequest& request, SessionId session, ReadDeliver deliver);

  struct Stats {
    Zxid last_applied;
    uint64_t digest = 0;
    size_t nodes = 0;
    size_t sessions = 0;
    size_t watches = 0;
    storage::LogWriterStats log;
    uint64_t snapshots_written = 0;
  };
  Stats stats() const;
  Zxid last_applied() const;
  // OK while healthy; the log's error once it failed (the process should then exit).
  absl::Status health() const;

  // Stops accepting writes, makes durable and applies everything accepted, stops the threads.
  // Idempotent.
  void Shutdown();

 private:
  struct Pending {
    Zxid zxid;
    internal::Txn txn;
    WriteDone done;
  };
  struct SinkState {
    std::shared_ptr<SessionSink> sink;
    std::deque<v1::SessionResponse> queued;  // while detached
  };

  explicit Replica(const ReplicaOptions& options);
  absl::Status Recover();
  void Start();
  void OnDurable(Zxid durable);
  void OnLogFailure(const absl::Status& error);
  void ApplyLoop();
  void ApplyBatch(std::vector<Pending>* batch);
  void DeliverLocked(SessionId session, v1::SessionResponse message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(tree_mu_);
  void TickLoop();
  void SnapshotLoop();
  absl::Status WriteSnapshot();
  SessionId NextSessionId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(propose_mu_);

  const ReplicaOptions options_;
  RecoveryInfo recovery_;
  std::unique_ptr<storage::DataDir> data_dir_;
  std::unique_ptr<storage::TxnLog> recovered_log_;  // handed to log_writer_ by Start()
  std::unique_ptr<storage::LogWriter> log_writer_;

  mutable absl::Mutex tree_mu_;
  tree::DataTree tree_ ABSL_GUARDED_BY(tree_mu_);
  watches::WatchRegistry watches_ ABSL_GUARDED_BY(tree_mu_);
  watches::ChangeHistory history_ ABSL_GUARDED_BY(tree_mu_);

  mutable absl::Mutex sinks_mu_ ABSL_ACQUIRED_AFTER(tree_mu_);
  absl::flat_hash_map<SessionId, SinkState> sinks_ ABSL_GUARDED_BY(sinks_mu_);

  mutable absl::Mutex tracker_mu_ ABSL_ACQUIRED_AFTER(tree_mu_);
  sessions::SessionTracker tracker_ ABSL_GUARDED_BY(tracker_mu_);

  mutable absl::Mutex propose_mu_;
  Zxid last_proposed_ ABSL_GUARDED_BY(propose_mu_);
  Zxid durable_ ABSL_GUARDED_BY(propose_mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(propose_mu_);
  bool accepting_ ABSL_GUARDED_BY(propose_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(propose_mu_) = false;
  absl::Status log_error_ ABSL_GUARDED_BY(propose_mu_);
  int64_t next_session_id_ ABSL_GUARDED_BY(propose_mu_) = 0;
  uint64_t applied_since_snapshot_ ABSL_GUARDED_BY(propose_mu_) = 0;
  bool snapshot_requested_ ABSL_GUARDED_BY(propose_mu_) = false;
  uint64_t snapshots_written_ ABSL_GUARDED_BY(propose_mu_) = 0;

  std::thread apply_thread_;
  std::thread tick_thread_;
  std::thread snapshot_thread_;
  bool shut_down_ = false;
};

}  // namespace confab::pipeline

#endif  // CONFAB_SERVER_PIPELINE_REPLICA_H_
