// zab::Member is one ensemble member's ZAB protocol: fast leader election, discovery,
// synchronization and broadcast (names as in the ZAB paper), as a deterministic state machine.
//
// It owns only protocol state. It never does I/O, reads a clock, starts a thread or draws
// randomness of its own: the caller feeds it events (Step, Tick, Propose, LogDurable,
// SnapshotInstalled) and carries out what GetReady() asks, in the order the Ready fields say.
// The same inputs give the same outputs, which is what makes the simulator possible and every
// failure a replayable seed (model: etcd-io/raft's RawNode and Ready).
//
// Invariants it checks (a failure is a bug report, crashing with the values):
//   - appends are contiguous (same epoch: counter + 1; a new epoch starts at counter 1);
//   - the committed zxid never goes backwards, and never passes what is durable locally;
//   - a follower acknowledges (ACK, ACKEPOCH, NEWLEADER's ACK) only what it has made durable;
//   - currentEpoch = e' becomes durable only with (never before) the history NEWLEADER(e') names:
//     a follower persists it in the Ready that sends NEWLEADER's ACK, a leader synchronizes only
//     once its own log is durable. Otherwise a restart with e' and a shorter log wins an election
//     and truncates committed entries.
// Input from peers is never trusted to hold an invariant: a message that would break one (a gap, a
// TRUNC below what is committed) is refused with a trace line and the member goes back to LOOKING.
//
// The caller carries out each Ready (persist, send) before it feeds the member its next event, so
// the LogView always reflects every append handed out by earlier GetReady calls.
#ifndef CONFAB_SERVER_ZAB_MEMBER_H_
#define CONFAB_SERVER_ZAB_MEMBER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "confab/internal/peer.pb.h"
#include "server/common/types.h"

namespace confab::zab {

// A read-only view of this member's log, provided by the caller (TxnLog in the server, memory in
// the simulator). It reflects every append the caller carried out from earlier Readys.
class LogView {
 public:
  virtual ~LogView() = default;
  // The last entry appended (durable or not); zero when empty and no snapshot.
  virtual Zxid LastZxid() const = 0;
  // The zxid of the newest snapshot; the log holds every entry after it (zero: no snapshot, the
  // log starts at the beginning of history).
  virtual Zxid SnapshotZxid() const = 0;
  // True if an entry with exactly this zxid is in the log (or it is SnapshotZxid()).
  virtual bool Contains(Zxid zxid) const = 0;
  // The largest zxid <= `zxid` that is in the log or is SnapshotZxid(); zero if none.
  virtual Zxid LastAtOrBefore(Zxid zxid) const = 0;
  // Up to `max_entries` entries with zxid > `after`, in order. `after` must be >= SnapshotZxid().
  virtual std::vector<internal::LogEntry> EntriesAfter(Zxid after, size_t max_entries) const = 0;
};

struct Config {
  MemberId id;
  std::vector<MemberId> members;        // every voting member, this one included
  int election_timeout_ticks = 10;      // base; each round adds up to as much again (seeded jitter)
  int vote_resend_ticks = 2;            // a LOOKING member re-sends its vote this often
  int init_limit_ticks = 20;            // discovery + synchronization must finish within this
  int sync_limit_ticks = 10;            // a follower or leader silent for this long is gone
  int heartbeat_ticks = 2;              // a leader pings its followers this often
  size_t diff_entries_max = 100'000;    // a follower further behind gets a snapshot
  size_t proposal_entries_max = 4'096;  // entries per PROPOSAL message
  uint64_t seed = 1;                    // election jitter
};

// What is durable on this member, read back on (re)start.
struct PersistentState {
  Epoch accepted_epoch = 0;
  Epoch current_epoch = 0;
};

enum class Role { kLooking, kFollowing, kLeading };
// "LOOKING", "FOLLOWING", "LEADING" (the names of the ZAB paper and ZooKeeper's logs).
const char* RoleName(Role role);

// What the caller must do, in this order:
//   1. persist: the epochs (each a durable write), then `truncate_after`, then
//      `install_snapshot`, then `append` (write; durability is reported later via LogDurable);
//   2. send `messages` (and for each entry of `send_snapshot`, stream the newest snapshot to that
//      member right when the SNAP message to it is sent, before later messages to it);
//   3. apply committed entries up to `commit_through`, in order, reading them from the log;
//   4. act on `role` if set: serve (leader), forward writes to the leader (follower), or refuse
//      writes (looking / not yet up to date).
struct Ready {
  std::optional<Epoch> accepted_epoch;
  std::optional<Epoch> current_epoch;
  std::optional<Zxid> truncate_after;
  std::optional<Zxid> install_snapshot;  // wait for the snapshot at this zxid from the leader
  std::vector<internal::LogEntry> append;
  std::vector<internal::PeerMessage> messages;
  std::vector<std::pair<MemberId, Zxid>> send_snapshot;
  std::optional<Zxid> commit_through;
  // Leader: the highest ConfirmLeadership round a quorum (this member included) has answered in
  // this term. Reads waiting for it may go ahead once the state reaches the commit zxid taken
  // when the round was asked for.
  std::optional<uint64_t> leadership_confirmed;
  struct RoleChange {
    Role role;
    MemberId leader;
    Epoch epoch;
    bool serving;  // leader: established (a quorum acknowledged NEWLEADER); follower: UPTODATE
  };
  std::optional<RoleChange> role;

  bool Empty() const;
};

class Member {
 public:
  // Starts LOOKING with the persisted epochs and the log as it is.
  Member(Config config, PersistentState persisted, const LogView* log);

  // Events.
  void Step(const internal::PeerMessage& message);
  void Tick();
  // Leader, established: assigns the next zxid to `payload` and broadcasts it (one PROPOSAL per
  // follower for everything proposed between two GetReady calls). Otherwise FAILED_PRECONDITION
  // naming the known leader (or none); RESOURCE_EXHAUSTED once proposal_entries_max entries wait
  // for GetReady (the batch bound).
  absl::StatusOr<Zxid> Propose(std::string payload);
  // Leader, serving: asks every follower to confirm that this member still leads (a PING of a
  // new round, answered by a PONG of that round from each follower that still follows it) and
  // returns the round; Ready::leadership_confirmed says when a quorum has. A read that waits for
  // it, and for the commit zxid of the moment it asked, is linearizable even if this member was
  // deposed without noticing yet (etcd's ReadIndex; ZooKeeper's sync lacks the confirmation).
  // FAILED_PRECONDITION otherwise.
  absl::StatusOr<uint64_t> ConfirmLeadership();
  // The caller's disk has made every appended entry up to `zxid` durable.
  void LogDurable(Zxid zxid);
  // The snapshot asked for by Ready::install_snapshot is installed; the log now continues it.
  void SnapshotInstalled(Zxid zxid);

  // Takes what is to be done since the last call (and clears it).
  Ready GetReady();

  Role role() const { return role_; }
  MemberId leader() const { return leader_; }
  Epoch current_epoch() const { return current_epoch_; }
  Epoch accepted_epoch() const { return accepted_epoch_; }
  Zxid committed() const { return committed_; }
  Zxid durable() const { return durable_; }
  bool serving() const { return serving_; }
  // The zxid the log ends at once every Ready handed out so far is carried out.
  Zxid last_zxid() const { return last_zxid_; }
  // One line per role change and per refused message, oldest first; bounded (for test failures
  // and the shell's debug log).
  const std::deque<std::string>& trace() const { return trace_; }

 private:
  // A fast-leader-election vote, ordered by (epoch, zxid, leader).
  struct VoteValue {
    Epoch epoch = 0;
    Zxid zxid;
    MemberId leader;
    auto operator<=>(const VoteValue&) const = default;
  };
  // What a FOLLOWING or LEADING member reported about its established leader.
  struct LeaderReport {
    MemberId leader;
    Epoch epoch = 0;
    bool leading = false;
  };
  enum class FollowerPhase { kDiscovery, kSynchronization, kBroadcast };
  enum class LeaderPhase { kDiscovery, kEpochProposed, kSynchronization, kBroadcast };
  // The leader's view of one follower ("learner" in ZooKeeper), for the current session.
  struct Learner {
    enum class Phase { kConnected, kEpochAcked, kSynchronizing, kUpToDate };
    Phase phase = Phase::kConnected;
    Epoch accepted_epoch = 0;  // from FOLLOWERINFO
    Epoch current_epoch = 0;   // from ACKEPOCH
    Zxid last_zxid;            // from ACKEPOCH
    Zxid new_leader_zxid;      // what its NEWLEADER said the history ends at
    Zxid durable;              // the largest zxid it acknowledged as durable in this epoch
    int64_t heard_tick = 0;
    uint64_t confirmed_round = 0;  // the highest leadership round it answered in this term
  };

  // Role changes: each appends one trace line and sets Ready::role.
  void BecomeLooking(absl::string_view reason);
  void BecomeFollower(MemberId leader);
  void BecomeLeader();
  void ResetRoleState();

  void StepLooking(const internal::PeerMessage& message);
  void StepFollowing(const internal::PeerMessage& message);
  void StepLeading(const internal::PeerMessage& message);

  // Election.
  void StartRound();
  VoteValue SelfVote() const;
  void BroadcastVote();
  void SendVote(MemberId to);
  void SendEstablishedVote(MemberId to);
  void OnLookingVote(MemberId from, const internal::Vote& vote);
  void OnLeaderReport(MemberId from, const internal::Vote& vote);

  // Follower: discovery, synchronization, broadcast.
  void OnLeaderInfo(const internal::LeaderInfo& info);
  void OnTrunc(const internal::Trunc& trunc);
  void OnSnap(const internal::Snap& snap);
  void OnDiff(const internal::Diff& diff);
  void OnNewLeader(const internal::NewLeader& new_leader);
  void OnUpToDate(const internal::UpToDate& up_to_date);
  void OnProposal(const internal::Proposal& proposal);
  // COMMIT and PING: what the leader has committed. False if refused (it is past our log).
  bool OnLeaderCommitted(Zxid zxid, absl::string_view what);
  // Appends peer-sent entries after checking they continue the log at `prev_zxid` without a gap;
  // false (after refusing: trace line, LOOKING) otherwise.
  bool AppendFromLeader(Zxid prev_zxid,
                        const google::protobuf::RepeatedPtrField<internal::LogEntry>& entries,
                        absl::string_view what);
  void Refuse(absl::string_view what);
  // Sends what durability now allows: NEWLEADER's ACK, then cumulative ACK; advances committed.
  void AcknowledgeDurable();
  void AdvanceFollowerCommit();

  // Leader: discovery, synchronization, broadcast.
  void OnFollowerInfo(MemberId from, const internal::FollowerInfo& info);
  void OnAckEpoch(MemberId from, const internal::AckEpoch& ack);
  void OnAckNewLeader(MemberId from, const internal::AckNewLeader& ack);
  void OnLearnerDurable(MemberId from, Zxid durable);
  void OnLearnerConfirmed(MemberId from, uint64_t round);
  void SendPings();
  void MaybeProposeEpoch();
  void MaybeSynchronize();
  void SynchronizeLearner(MemberId id, Learner& learner);
  void MaybeEstablish();
  void MaybeCommit();
  void RetransmitLostProposals();
  void FlushProposals();
  int CountLearners(Learner::Phase at_least) const;

  void CommitThrough(Zxid zxid);
  void TruncateAfter(Zxid zxid);
  internal::PeerMessage& Send(MemberId to, Epoch epoch);
  bool IsMember(MemberId id) const;
  int Quorum() const { return static_cast<int>(config_.members.size()) / 2 + 1; }
  void Trace(absl::string_view line);

  Config config_;
  const LogView* log_;
  std::mt19937_64 random_;
  Role role_ = Role::kLooking;
  MemberId leader_;
  Epoch accepted_epoch_ = 0;
  Epoch current_epoch_ = 0;
  Zxid committed_;
  Zxid durable_;
  Zxid last_zxid_;
  bool serving_ = false;
  Ready ready_;
  int64_t now_ticks_ = 0;
  int64_t role_start_tick_ = 0;
  std::deque<std::string> trace_;

  // LOOKING.
  uint64_t round_ = 0;
  VoteValue vote_;
  absl::flat_hash_map<MemberId, VoteValue> votes_;  // LOOKING peers' votes in this round
  absl::flat_hash_map<MemberId, LeaderReport> reports_;
  int64_t round_start_tick_ = 0;
  int64_t round_timeout_ticks_ = 0;
  int64_t vote_sent_tick_ = 0;

  // FOLLOWING.
  FollowerPhase follower_phase_ = FollowerPhase::kDiscovery;
  int64_t leader_heard_tick_ = 0;
  bool sync_started_ = false;  // a TRUNC, SNAP or DIFF of this session arrived
  bool new_leader_received_ = false;
  std::optional<Zxid> owed_new_leader_ack_;  // NEWLEADER's zxid, acknowledged once durable
  bool new_leader_acked_ = false;
  Zxid acked_zxid_;        // the largest zxid acknowledged to the leader
  Zxid leader_committed_;  // the largest commit the leader announced
  std::optional<Zxid> awaiting_snapshot_;
  std::vector<internal::PeerMessage> snapshot_queue_;  // leader messages held until it is installed

  // LEADING.
  LeaderPhase leader_phase_ = LeaderPhase::kDiscovery;
  // Ordered: messages to followers go out in the same order in every run (replayable seeds).
  std::map<MemberId, Learner> learners_;
  Zxid new_leader_zxid_;  // the history the quorum synchronizes to (NEWLEADER's last_zxid)
  Zxid batch_prev_zxid_;  // the log's last zxid before ready_.append (the pending proposals)
  int64_t ping_sent_tick_ = 0;
  uint64_t leadership_round_ = 0;      // the last round asked for (never reset: rounds only grow)
  uint64_t leadership_confirmed_ = 0;  // the last round a quorum answered in this term
  Zxid heartbeat_log_end_;             // where the log ended at the last heartbeat
};

}  // namespace confab::zab

#endif  // CONFAB_SERVER_ZAB_MEMBER_H_
