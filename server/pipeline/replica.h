// Replica is one member's server around the pure modules: it recovers the state from the data
// directory, hands writes to the Replicator (the ZAB shell: forwarded to the leader, proposed,
// logged with group commit, committed by a quorum), applies committed transactions in zxid order
// and answers their clients, serves reads against the applied state, tracks session expiry (the
// leader decides it; followers report what their clients touched), routes watch events to
// sessions, and takes snapshots without stopping writes.
//
// Standalone is an ensemble of one on the same path: it elects itself, and a write commits when
// it is durable.
//
// Threads: callers (gRPC threads) admit and submit; "confab-zab" runs the replicator; "confab-log"
// makes batches durable; "confab-apply" applies them and replies; "confab-tick" expires sessions;
// "confab-snap" writes snapshots. Lock order: tree_mu_ -> sinks_mu_ -> a sink's own lock, and
// tree_mu_ -> tracker_mu_; apply_mu_ is never held while taking another lock of this class.
#ifndef CONFAB_SERVER_PIPELINE_REPLICA_H_
#define CONFAB_SERVER_PIPELINE_REPLICA_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
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
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "confab/internal/txn.pb.h"
#include "confab/v1/coordination.pb.h"
#include "server/common/types.h"
#include "server/pipeline/admission.h"
#include "server/pipeline/peer_network.h"
#include "server/pipeline/replicator.h"
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
  int64_t tick_ms = 100;                   // session expiry and ZAB tick granularity
  uint64_t snapshot_every_txns = 100'000;  // a snapshot after this many applied transactions
  size_t snapshots_kept = 3;
  size_t detached_events_max = 10'000;    // events kept for a session with no stream attached
  size_t watch_history_events = 100'000;  // recent changes kept for watches resumed by zxid
  storage::LogOptions log;
  // The ensemble: this member and every voting member (itself included). Standalone: id 1 (or
  // 0, shown as such) and members empty. Ids go in the high byte of the session ids handed out.
  MemberId self;
  std::vector<MemberId> members;
  int election_timeout_ticks = 5;
  int init_limit_ticks = 100;
  int sync_limit_ticks = 10;
  PeerNetwork* network = nullptr;  // required with more than one member; outlives the replica
  // Standalone: Open() returns once the member serves (it elects itself within a few ticks).
  absl::Duration standalone_ready_timeout = absl::Seconds(10);
};

// What recovery found, for the startup log line and for tests.
struct RecoveryInfo {
  Zxid snapshot_zxid;
  std::string snapshot_path;                // empty when starting without a snapshot
  uint64_t log_records_after_snapshot = 0;  // applied once known committed (at once, standalone)
  Zxid last_zxid;                           // the log's last entry (or the snapshot's zxid)
  Epoch accepted_epoch = 0;
  Epoch current_epoch = 0;
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

class Replica final : private StateMachine {
 public:
  using WriteDone = pipeline::WriteDone;
  using OpenDone = absl::AnyInvocable<void(absl::StatusOr<v1::SessionOpened> opened) &&>;
  using ReadDeliver = absl::FunctionRef<void(v1::SessionResponse response)>;
  using StatusDone = absl::AnyInvocable<void(absl::Status status) &&>;
  // Told when this member starts or stops serving (on the replicator thread; must not block).
  using ServingListener = std::function<void(const RoleState& role)>;
  // Told on the thread that applied a batch of committed transactions (the apply thread, or the
  // replicator's for a small commit) once it is applied and answered (must not block): answers and
  // events queued while ApplyingBatch() can leave together, one stream write per batch rather than
  // one per answer.
  using AppliedListener = std::function<void()>;

  static absl::StatusOr<std::unique_ptr<Replica>> Open(const ReplicaOptions& options);
  ~Replica() override;  // Shutdown()

  const RecoveryInfo& recovery() const { return recovery_; }
  const Limits& limits() const { return options_.limits; }
  const ReplicaOptions& options() const { return options_; }
  int64_t NowMs() const;
  void SetServingListener(ServingListener listener);
  void SetAppliedListener(AppliedListener listener);
  // True on the thread applying a batch, while it does (the applied listener is called after).
  static bool ApplyingBatch();

  // Writes. `done` runs exactly once with no replica lock held: after the transaction is
  // committed and applied here, with its result (on the applying thread); or with UNAVAILABLE when
  // this member is not serving, shutting down, its log failed, or the leader went away before
  // deciding it (then the message says the outcome is unknown).
  void Submit(internal::Txn txn, WriteDone done);
  // Runs `done` once every write committed anywhere before the call is applied here (ZooKeeper's
  // sync): reads after it are linearizable. UNAVAILABLE when not serving.
  void Sync(StatusDone done);

  // Sessions.
  // SESSION_EXPIRED unless `id` is open; otherwise pushes its expiry out (on a follower, the
  // leader hears of it at the next tick).
  absl::Status TouchSession(SessionId id);
  void OpenSession(int32_t requested_timeout_ms, OpenDone done);
  // Resumes an open session, possibly opened on another member (a follower that does not know it
  // yet syncs with the leader first). Its watches (and events queued for it) are dropped: the
  // client re-adds them with AddWatch from the last zxid it saw, which replays what it missed.
  void ResumeSession(SessionId id, OpenDone done);
  void CloseSession(SessionId id, WriteDone done);
  // Attaches a stream's sink to an open session, replacing any other; events queued while no
  // sink was attached are delivered to it first, in order.
  void AttachSink(SessionId id, std::shared_ptr<SessionSink> sink);
  // Detaches `sink` if it is still the one attached to `id`.
  void DetachSink(SessionId id, const SessionSink* sink);

  // Reads (Get, Exists, GetChildren, Sync's answer, AddWatch, RemoveWatch) against the applied
  // state, with watch registration atomic with the read. `deliver` runs under the read lock, so a
  // response is ordered before any event of a later change. The request was validated by the
  // caller; a Sync or linearizable read must have been preceded by Sync(). UNAVAILABLE when not
  // serving.
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
  RoleState role() const { return replicator_->role(); }
  bool serving() const { return role().serving; }
  bool standalone() const { return options_.members.size() <= 1; }
  // OK while healthy; the log's error once it failed (the process should then exit).
  absl::Status health() const;
  // The replicator, for the peer transport's incoming batches.
  Replicator* replicator() { return replicator_.get(); }
  // The path of this member's snapshot at `zxid` (for a follower fetching it), or NOT_FOUND.
  absl::StatusOr<std::string> SnapshotPathAt(Zxid zxid) const;

  // Stops taking writes, waits up to `drain` for those in flight to be decided (standalone: made
  // durable and applied), applies what is committed, stops the threads. Idempotent.
  void Shutdown(absl::Duration drain = absl::Seconds(5));

 private:
  struct SinkState {
    std::shared_ptr<SessionSink> sink;
    std::deque<v1::SessionResponse> queued;  // while detached
  };

  explicit Replica(const ReplicaOptions& options);
  absl::Status Recover(RecoveredLog* recovered);
  void Start(RecoveredLog recovered);

  // StateMachine (called on the replicator thread).
  void Commit(std::vector<CommittedEntry> entries) override;
  absl::Status InstallSnapshot(const std::string& path, Zxid zxid) override;
  void TouchSessions(const std::vector<SessionId>& sessions) override;
  void RoleChanged(const RoleState& state) override;

  void ApplyLoop();
  // Applies a batch in order, then releases what waited for it; the caller set applying_.
  void ApplyBatch(absl::Span<CommittedEntry> batch);
  void Apply(CommittedEntry& entry);
  // Commits of at most this many entries may be applied on the replicator's thread.
  static constexpr size_t kInlineApplyEntriesMax = 4;
  // Runs `done` once the applied zxid reaches `zxid`.
  void WhenApplied(Zxid zxid, StatusDone done);
  absl::StatusOr<v1::SessionOpened> TryResume(SessionId id);
  void DeliverLocked(SessionId session, v1::SessionResponse message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(tree_mu_);
  void TickLoop();
  void SnapshotLoop();
  absl::Status WriteSnapshot();
  absl::Status NotServing() const;

  const ReplicaOptions options_;
  RecoveryInfo recovery_;
  std::unique_ptr<storage::DataDir> data_dir_;
  std::unique_ptr<Replicator> replicator_;

  mutable absl::Mutex tree_mu_;
  std::unique_ptr<tree::DataTree> tree_ ABSL_GUARDED_BY(tree_mu_);
  watches::WatchRegistry watches_ ABSL_GUARDED_BY(tree_mu_);
  watches::ChangeHistory history_ ABSL_GUARDED_BY(tree_mu_);

  mutable absl::Mutex sinks_mu_ ABSL_ACQUIRED_AFTER(tree_mu_);
  absl::flat_hash_map<SessionId, SinkState> sinks_ ABSL_GUARDED_BY(sinks_mu_);

  mutable absl::Mutex tracker_mu_ ABSL_ACQUIRED_AFTER(tree_mu_);
  sessions::SessionTracker tracker_ ABSL_GUARDED_BY(tracker_mu_);
  std::vector<SessionId> touched_ ABSL_GUARDED_BY(tracker_mu_);  // follower: for the leader

  mutable absl::Mutex apply_mu_;
  std::vector<CommittedEntry> committed_ ABSL_GUARDED_BY(apply_mu_);
  bool applying_ ABSL_GUARDED_BY(apply_mu_) = false;
  Zxid applied_ ABSL_GUARDED_BY(apply_mu_);
  std::multimap<Zxid, StatusDone> applied_waiters_ ABSL_GUARDED_BY(apply_mu_);
  bool stopping_ ABSL_GUARDED_BY(apply_mu_) = false;
  int64_t next_session_id_ ABSL_GUARDED_BY(apply_mu_) = 0;
  uint64_t applied_since_snapshot_ ABSL_GUARDED_BY(apply_mu_) = 0;
  bool snapshot_requested_ ABSL_GUARDED_BY(apply_mu_) = false;
  uint64_t snapshots_written_ ABSL_GUARDED_BY(apply_mu_) = 0;
  ServingListener serving_listener_ ABSL_GUARDED_BY(apply_mu_);
  AppliedListener applied_listener_ ABSL_GUARDED_BY(apply_mu_);

  std::thread apply_thread_;
  std::thread tick_thread_;
  std::thread snapshot_thread_;
  bool shut_down_ = false;
};

}  // namespace confab::pipeline

#endif  // CONFAB_SERVER_PIPELINE_REPLICA_H_
