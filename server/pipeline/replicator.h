// Replicator is the shell around one member's pure ZAB core (zab::Member): it owns the core, the
// transaction log's writer (group commit) and a view of the log for the core, and runs them on
// one thread ("confab-zab") that takes events in batches (peer messages, local writes, "durable up
// to here", ticks) and carries out each Ready in the order it prescribes: epochs and truncation
// and appends first, then messages, then committed entries to the state machine, then the role.
//
// Writes reaching a follower are forwarded to the leader; the leader proposes them and tells the
// origin the zxid before the proposal itself leaves on the same stream, so the origin answers its
// client when it applies that zxid (a client reads its own writes on its member). Sync asks the
// leader for its commit zxid. A write whose fate a role change makes unknowable (the leader went
// away before committing it) is answered UNAVAILABLE saying the outcome is unknown.
//
// An ensemble of one runs the same code: it elects itself, and commit follows durability.
//
// It never applies anything itself and never holds a lock while calling the state machine or the
// network; it blocks only on its own disk (epochs, truncation, reads for a DIFF).
#ifndef CONFAB_SERVER_PIPELINE_REPLICATOR_H_
#define CONFAB_SERVER_PIPELINE_REPLICATOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "confab/internal/peer_service.pb.h"
#include "confab/internal/txn.pb.h"
#include "server/common/types.h"
#include "server/pipeline/peer_network.h"
#include "server/storage/data_dir.h"
#include "server/storage/log_writer.h"
#include "server/storage/txn_log.h"
#include "server/zab/member.h"

namespace confab::pipeline {

using WriteDone = absl::AnyInvocable<void(internal::TxnResult result) &&>;
// The leader's commit zxid when the barrier reached it, or why there is none.
using BarrierDone = absl::AnyInvocable<void(absl::StatusOr<Zxid> leader_committed) &&>;

// A committed transaction for the state machine, in zxid order.
struct CommittedEntry {
  Zxid zxid;
  std::string payload;               // the serialized Txn, unless `txn` is set
  std::optional<internal::Txn> txn;  // the proposer's own copy (saves a parse)
  WriteDone done;                    // set when a client of this member waits for it
};

struct RoleState {
  zab::Role role = zab::Role::kLooking;
  MemberId leader;
  Epoch epoch = 0;
  bool serving = false;
};

// What the replicator drives. Called on the replicator's thread with no replicator lock held.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Hands committed entries over for apply, in order. May apply a small batch right away (and
  // run its completions) when nothing else is being applied; never waits for other work.
  virtual void Commit(std::vector<CommittedEntry> entries) = 0;
  // Replaces the whole state with the snapshot file at `path` (state at `zxid`) once everything
  // committed before is applied. Blocks until done.
  virtual absl::Status InstallSnapshot(const std::string& path, Zxid zxid) = 0;
  // On the leader: sessions whose clients followers heard since their last report.
  virtual void TouchSessions(const std::vector<SessionId>& sessions) = 0;
  virtual void RoleChanged(const RoleState& state) = 0;
};

struct ReplicatorOptions {
  MemberId self;
  std::vector<MemberId> members;  // every voting member, this one included; {self}: standalone
  int64_t tick_ms = 100;
  int election_timeout_ticks = 5;
  int init_limit_ticks = 100;
  int sync_limit_ticks = 10;
  std::string snap_dir;  // where a snapshot fetched from the leader is written
  // A forwarded write or Sync not answered within this is reported as of unknown outcome.
  absl::Duration forward_timeout = absl::Seconds(10);
};

// What recovery found on disk, handed to the replicator.
struct RecoveredLog {
  std::unique_ptr<storage::TxnLog> log;
  zab::PersistentState epochs;
  Zxid snapshot_zxid;                    // the state machine holds the state at this zxid
  std::vector<internal::LogEntry> tail;  // log entries after it: durable, not known committed
};

class Replicator {
 public:
  // `network` may be null for an ensemble of one; `data_dir` outlives the replicator.
  Replicator(ReplicatorOptions options, RecoveredLog recovered, storage::DataDir* data_dir,
             StateMachine* state_machine, PeerNetwork* network);
  ~Replicator();  // Stop()s

  void Start();
  // Stops taking writes, waits up to `drain` for those in flight to be decided, answers the rest
  // UNAVAILABLE, makes the log durable and ends the thread. Idempotent.
  void Stop(absl::Duration drain);

  // Any thread. `done` runs exactly once: from StateMachine apply (via the CommittedEntry) once
  // the write is applied here, or with UNAVAILABLE (not serving, outcome unknown, stopping).
  void Propose(internal::Txn txn, WriteDone done);
  // Any thread. The leader's commit zxid as of now (asked of the leader by a follower), given
  // once a quorum has confirmed that the leader still leads (so a deposed leader that has not
  // noticed yet never answers with a stale zxid).
  void Barrier(BarrierDone done);
  // A batch from a peer (transport threads).
  void Receive(internal::PeerBatch batch);
  // A follower reports sessions its clients touched to the leader, which owns expiry.
  void ForwardTouches(std::vector<SessionId> sessions);
  // The snapshot thread wrote a snapshot of the applied state at `zxid`.
  void SnapshotWritten(Zxid zxid);
  // Deletes log segments covered by the oldest snapshot kept (on the log writer thread).
  absl::Status PurgeLogThrough(Zxid zxid);

  RoleState role() const;
  storage::LogWriterStats log_stats() const;
  // OK while healthy; the log's error once it failed (the process should then exit).
  absl::Status health() const;

 private:
  // The core's view of the log: zxids after the newest snapshot in memory, records read from
  // the log writer. Only touched on the replicator thread.
  class LogIndex final : public zab::LogView {
   public:
    LogIndex(const std::unique_ptr<storage::LogWriter>* writer, Zxid snapshot)
        : writer_(writer), snapshot_(snapshot) {}
    Zxid LastZxid() const override { return zxids_.empty() ? snapshot_ : zxids_.back(); }
    Zxid SnapshotZxid() const override { return snapshot_; }
    bool Contains(Zxid zxid) const override;
    Zxid LastAtOrBefore(Zxid zxid) const override;
    std::vector<internal::LogEntry> EntriesAfter(Zxid after, size_t max_entries) const override;

    void Append(Zxid zxid) { zxids_.push_back(zxid); }
    void TruncateAfter(Zxid zxid);
    // A snapshot at `zxid` now covers the log up to it (newer snapshots only).
    void SnapshotAt(Zxid zxid);
    // The log was emptied and continues the snapshot at `zxid`.
    void ResetTo(Zxid zxid);

   private:
    const std::unique_ptr<storage::LogWriter>* writer_;
    Zxid snapshot_;
    std::deque<Zxid> zxids_;
  };

  struct LocalWrite {
    internal::Txn txn;
    WriteDone done;
  };
  struct Forwarded {
    internal::Txn txn;
    WriteDone done;
    absl::Time sent;
  };
  struct RemoteBarrier {
    BarrierDone done;
    absl::Time sent;
  };
  // A Sync on the leader: answered with `target` (the commit zxid when it arrived) once a quorum
  // confirmed leadership round `round` (0: not asked yet), to `done` (local) or to the follower
  // `origin` that sent Sync `seq`.
  struct LeaderBarrier {
    uint64_t round = 0;
    Zxid target;
    BarrierDone done;
    MemberId origin;
    uint64_t seq = 0;
  };
  struct FetchedSnapshot {
    Zxid zxid;
    std::string path;
    absl::Status status;
  };
  // Events taken by the replicator thread in one go.
  struct Inbox {
    std::vector<internal::PeerBatch> batches;
    std::vector<LocalWrite> writes;
    std::vector<BarrierDone> barriers;
    std::vector<SessionId> touches;
    std::optional<Zxid> durable;
    std::optional<Zxid> snapshot_written;
    std::optional<FetchedSnapshot> fetched;
    bool Empty() const {
      return batches.empty() && writes.empty() && barriers.empty() && touches.empty() && !durable &&
             !snapshot_written && !fetched;
    }
  };

  void Run();
  void Process(Inbox inbox);
  void OnEnvelope(MemberId from, internal::PeerEnvelope& envelope);
  void ProposeLocal(LocalWrite write);
  void ProposeForwarded(MemberId from, const internal::ForwardWrite& forward);
  // Proposes on the core, making room by carrying out the Ready when the batch bound is hit.
  absl::StatusOr<Zxid> ProposeOnCore(std::string payload);
  // Wraps a client's completion so that Stop() knows when nothing is in flight.
  WriteDone Tracked(WriteDone done);
  void BarrierLocal(BarrierDone done);
  void AskLeadershipConfirmation();
  void ReleaseLeaderBarriers(uint64_t confirmed);
  void FailLeaderBarriers(absl::string_view why);
  void InstallFetched(FetchedSnapshot fetched);
  void ExpireForwarded();
  // Carries out Readys until the core has nothing more to do.
  void CarryOut();
  void LogNewTrace();
  void Execute(zab::Ready& ready);
  void CommitThrough(Zxid zxid);
  void OnRole(const zab::Ready::RoleChange& change);
  // Answers every write and barrier in flight (own proposals, forwarded writes, remote Syncs) as
  // of unknown outcome.
  void FailInFlight(absl::string_view why);
  // Queues `envelope` in outbox_; FlushOutbox() hands each peer's envelopes to the network.
  void Send(MemberId to, internal::PeerEnvelope envelope);
  void FlushOutbox();
  void OnDurable(Zxid zxid);
  void OnLogFailure(const absl::Status& error);
  void Fatal(const absl::Status& error);

  const ReplicatorOptions options_;
  storage::DataDir* const data_dir_;
  StateMachine* const state_machine_;
  PeerNetwork* const network_;
  std::unique_ptr<storage::LogWriter> log_writer_;
  std::unique_ptr<storage::TxnLog> recovered_log_;  // handed to log_writer_ by Start()

  // Replicator thread only.
  LogIndex index_;
  std::unique_ptr<zab::Member> member_;
  std::deque<internal::LogEntry> uncommitted_;  // appended, not yet committed, in zxid order
  std::map<Zxid, LocalWrite> proposed_;         // leader: own proposals by zxid
  std::map<Zxid, LocalWrite> awaiting_;         // follower: forwarded writes the leader accepted
  std::map<uint64_t, Forwarded> forwarded_;     // follower: forwarded, not yet accepted
  std::map<uint64_t, RemoteBarrier> barriers_;  // follower: Syncs sent to the leader
  std::deque<LeaderBarrier> leader_barriers_;   // leader: Syncs waiting for confirmation
  uint64_t next_seq_ = 0;
  std::optional<Zxid> awaiting_snapshot_;
  std::vector<std::thread> fetch_threads_;  // joined by the destructor
  size_t proposed_since_ready_ = 0;
  size_t proposal_entries_max_ = 0;  // the core's bound on proposals between two Readys
  // Envelopes for each peer from one round of events, sent together at the end of the round: a
  // peer's sender wakes once per round (and the batch carries the proposals, accepted
  // forwards and commits of the round in one write) rather than once per message.
  std::map<MemberId, std::vector<internal::PeerEnvelope>> outbox_;
  std::string last_trace_line_;
  absl::Time next_tick_;

  mutable absl::Mutex mu_;
  Inbox inbox_ ABSL_GUARDED_BY(mu_);
  RoleState role_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // writes taken and not yet answered
  absl::Status error_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
  bool stopped_ = false;
  bool failure_answered_ = false;  // replicator thread: in-flight writes failed after a log failure
};

}  // namespace confab::pipeline

#endif  // CONFAB_SERVER_PIPELINE_REPLICATOR_H_
