#include "server/zab/member.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/check.h"

namespace confab::zab {
namespace {

using internal::PeerMessage;

constexpr size_t kTraceLinesMax = 256;
// Leader messages held while a snapshot installs; more means the leader is far ahead of us and a
// fresh synchronization is cheaper than holding them.
constexpr size_t kSnapshotQueueMessagesMax = 4'096;

// Contiguity, as TxnLog enforces it: same epoch, counter + 1; a new epoch starts at counter 1.
bool FollowsContiguously(Zxid last, Zxid next) {
  if (next.epoch() == last.epoch()) {
    return static_cast<uint64_t>(next.counter()) == static_cast<uint64_t>(last.counter()) + 1;
  }
  return next.epoch() > last.epoch() && next.counter() == 1;
}

// Messages only a leader sends; a follower takes them only from its own leader's epoch.
bool IsLeaderMessage(PeerMessage::BodyCase body) {
  switch (body) {
    case PeerMessage::kLeaderInfo:
    case PeerMessage::kTrunc:
    case PeerMessage::kSnap:
    case PeerMessage::kDiff:
    case PeerMessage::kNewLeader:
    case PeerMessage::kUpToDate:
    case PeerMessage::kProposal:
    case PeerMessage::kCommit:
    case PeerMessage::kPing:
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kLooking:
      return "LOOKING";
    case Role::kFollowing:
      return "FOLLOWING";
    case Role::kLeading:
      return "LEADING";
  }
  return "?";
}

bool Ready::Empty() const {
  return !accepted_epoch && !current_epoch && !truncate_after && !install_snapshot &&
         append.empty() && messages.empty() && send_snapshot.empty() && !commit_through &&
         !leadership_confirmed && !role;
}

Member::Member(Config config, PersistentState persisted, const LogView* log)
    : config_(std::move(config)),
      log_(log),
      random_(config_.seed),
      accepted_epoch_(persisted.accepted_epoch),
      current_epoch_(persisted.current_epoch),
      committed_(log->SnapshotZxid()),
      durable_(log->LastZxid()),
      last_zxid_(log->LastZxid()) {
  CONFAB_CHECK(IsMember(config_.id), "member ", config_.id.value(), " is not in its own config");
  CONFAB_CHECK(current_epoch_ <= accepted_epoch_, "current epoch ", current_epoch_,
               " above accepted epoch ", accepted_epoch_);
  CONFAB_CHECK(config_.vote_resend_ticks > 0 && config_.heartbeat_ticks > 0 &&
                   config_.election_timeout_ticks > 0 && config_.proposal_entries_max > 0,
               "tick and batch bounds must be positive");
  BecomeLooking("start");
}

// ---------------------------------------------------------------------------------------------
// Events.

void Member::Step(const PeerMessage& message) {
  const MemberId from(message.from());
  if (MemberId(message.to()) != config_.id || from == config_.id || !IsMember(from) ||
      message.body_case() == PeerMessage::BODY_NOT_SET) {
    return;  // misrouted
  }
  const PeerMessage::BodyCase body = message.body_case();
  // A leader's message from an epoch this member has moved past is stale (LEADERINFO is judged
  // by its own rule: an epoch below the accepted one sends a follower back to election).
  if (IsLeaderMessage(body) && body != PeerMessage::kLeaderInfo &&
      message.epoch() < accepted_epoch_) {
    return;
  }
  // A leader talks with followers of its own epoch only: a newer epoch means another leader got
  // further, an older one is a leftover of an earlier term. FOLLOWERINFO carries the follower's
  // accepted epoch, judged in discovery.
  if (role_ == Role::kLeading && body != PeerMessage::kVote && body != PeerMessage::kFollowerInfo) {
    if (message.epoch() > accepted_epoch_) {
      BecomeLooking(absl::StrCat("member ", from.value(), " is in epoch ", message.epoch(),
                                 " above ours ", accepted_epoch_));
      return;
    }
    if (message.epoch() < accepted_epoch_) return;
  }
  switch (role_) {
    case Role::kLooking:
      StepLooking(message);
      return;
    case Role::kFollowing:
      StepFollowing(message);
      return;
    case Role::kLeading:
      StepLeading(message);
      return;
  }
}

void Member::Tick() {
  ++now_ticks_;
  switch (role_) {
    case Role::kLooking:
      if (now_ticks_ - round_start_tick_ >= round_timeout_ticks_) {
        Trace(absl::StrCat("election round ", round_, " timed out"));
        StartRound();
      } else if (now_ticks_ - vote_sent_tick_ >= config_.vote_resend_ticks) {
        BroadcastVote();
      }
      return;
    case Role::kFollowing: {
      // Discovery is one round trip: a leader that does not answer FOLLOWERINFO within
      // sync_limit_ticks is not leading (a vote counted before it moved on), so look again
      // rather than wait out init_limit_ticks, which is for synchronization (snapshots).
      const int64_t limit_ticks = serving_ || follower_phase_ == FollowerPhase::kDiscovery
                                      ? config_.sync_limit_ticks
                                      : config_.init_limit_ticks;
      if (now_ticks_ - leader_heard_tick_ > limit_ticks) {
        BecomeLooking(
            absl::StrCat("leader ", leader_.value(), " silent for ", limit_ticks, " ticks"));
      } else if (!serving_ && now_ticks_ - role_start_tick_ > config_.init_limit_ticks) {
        BecomeLooking("not up to date within init_limit_ticks");
      }
      return;
    }
    case Role::kLeading: {
      if (leader_phase_ == LeaderPhase::kDiscovery &&
          now_ticks_ - role_start_tick_ > config_.sync_limit_ticks) {
        BecomeLooking("no quorum of followers within sync_limit_ticks");
        return;
      }
      if (!serving_ && now_ticks_ - role_start_tick_ > config_.init_limit_ticks) {
        BecomeLooking("not established within init_limit_ticks");
        return;
      }
      if (serving_) {
        int heard = 1;
        for (const auto& [id, learner] : learners_) {
          if (learner.phase == Learner::Phase::kUpToDate &&
              now_ticks_ - learner.heard_tick <= config_.sync_limit_ticks) {
            ++heard;
          }
        }
        if (heard < Quorum()) {
          BecomeLooking(absl::StrCat("heard from ", heard, " of a quorum of ", Quorum(),
                                     " within sync_limit_ticks"));
          return;
        }
      }
      if (leader_phase_ != LeaderPhase::kDiscovery &&
          now_ticks_ - ping_sent_tick_ >= config_.heartbeat_ticks) {
        RetransmitLostProposals();
        SendPings();
      }
      return;
    }
  }
}

absl::StatusOr<uint64_t> Member::ConfirmLeadership() {
  if (role_ != Role::kLeading || !serving_) {
    return absl::FailedPreconditionError("not the serving leader");
  }
  ++leadership_round_;
  SendPings();
  if (Quorum() == 1) {  // an ensemble of one confirms itself
    leadership_confirmed_ = leadership_round_;
    ready_.leadership_confirmed = leadership_confirmed_;
  }
  return leadership_round_;
}

void Member::SendPings() {
  ping_sent_tick_ = now_ticks_;
  for (const auto& [id, learner] : learners_) {
    internal::Ping* ping = Send(id, accepted_epoch_).mutable_ping();
    ping->set_committed_zxid(committed_.ToInt());
    ping->set_round(leadership_round_);
  }
}

absl::StatusOr<Zxid> Member::Propose(std::string payload) {
  if (role_ != Role::kLeading || !serving_) {
    return absl::FailedPreconditionError(
        leader_.IsNone() || leader_ == config_.id
            ? std::string("not the leader; no leader known")
            : absl::StrCat("not the leader; the leader is member ", leader_.value()));
  }
  if (ready_.append.size() >= config_.proposal_entries_max) {
    return absl::ResourceExhaustedError(absl::StrCat(
        config_.proposal_entries_max, " proposals wait for GetReady (proposal_entries_max)"));
  }
  if (last_zxid_.epoch() == current_epoch_ &&
      last_zxid_.counter() == std::numeric_limits<uint32_t>::max()) {
    // As ZooKeeper: a new epoch (through an election) restarts the counter.
    BecomeLooking(absl::StrCat("zxid counter exhausted at ", last_zxid_.ToString()));
    return absl::UnavailableError("zxid counter exhausted; electing a new epoch");
  }
  const Zxid zxid =
      last_zxid_.epoch() == current_epoch_ ? last_zxid_.Next() : Zxid(current_epoch_, 1);
  if (ready_.append.empty()) batch_prev_zxid_ = last_zxid_;
  internal::LogEntry& entry = ready_.append.emplace_back();
  entry.set_zxid(zxid.ToInt());
  entry.set_payload(std::move(payload));
  last_zxid_ = zxid;
  return zxid;
}

void Member::LogDurable(Zxid zxid) {
  // A report may predate a TRUNC; it never covers more than the log holds now.
  durable_ = std::max(durable_, std::min(zxid, last_zxid_));
  switch (role_) {
    case Role::kLooking:
      return;
    case Role::kFollowing:
      AcknowledgeDurable();
      return;
    case Role::kLeading:
      MaybeSynchronize();
      MaybeEstablish();
      MaybeCommit();
      return;
  }
}

void Member::SnapshotInstalled(Zxid zxid) {
  CONFAB_CHECK(zxid >= committed_, "snapshot ", zxid.ToString(), " below committed ",
               committed_.ToString());
  // The log now continues the snapshot, whatever the role became meanwhile.
  last_zxid_ = zxid;
  durable_ = zxid;
  CommitThrough(zxid);
  if (!awaiting_snapshot_ || *awaiting_snapshot_ != zxid) return;
  awaiting_snapshot_.reset();
  std::vector<PeerMessage> held = std::move(snapshot_queue_);
  snapshot_queue_.clear();
  for (const PeerMessage& message : held) Step(message);
}

Ready Member::GetReady() {
  FlushProposals();
  return std::exchange(ready_, Ready{});
}

// ---------------------------------------------------------------------------------------------
// Role changes.

void Member::ResetRoleState() {
  serving_ = false;
  role_start_tick_ = now_ticks_;
  votes_.clear();
  reports_.clear();
  follower_phase_ = FollowerPhase::kDiscovery;
  sync_started_ = false;
  new_leader_received_ = false;
  owed_new_leader_ack_.reset();
  new_leader_acked_ = false;
  acked_zxid_ = Zxid();
  leader_committed_ = Zxid();
  awaiting_snapshot_.reset();
  snapshot_queue_.clear();
  leader_phase_ = LeaderPhase::kDiscovery;
  learners_.clear();
  new_leader_zxid_ = Zxid();
  heartbeat_log_end_ = Zxid();
}

void Member::BecomeLooking(absl::string_view reason) {
  ResetRoleState();
  role_ = Role::kLooking;
  leader_ = MemberId();
  Trace(absl::StrCat("-> LOOKING: ", reason));
  ready_.role = Ready::RoleChange{Role::kLooking, MemberId(), current_epoch_, false};
  StartRound();
}

void Member::BecomeFollower(MemberId leader) {
  ResetRoleState();
  role_ = Role::kFollowing;
  leader_ = leader;
  leader_heard_tick_ = now_ticks_;
  Trace(absl::StrCat("-> FOLLOWING ", leader.value(), " (accepted epoch ", accepted_epoch_,
                     ", last ", last_zxid_.ToString(), ")"));
  ready_.role = Ready::RoleChange{Role::kFollowing, leader, current_epoch_, false};
  // Discovery: tell the leader what we have promised and hold.
  internal::FollowerInfo* info = Send(leader, accepted_epoch_).mutable_follower_info();
  info->set_accepted_epoch(accepted_epoch_);
  info->set_last_zxid(last_zxid_.ToInt());
}

void Member::BecomeLeader() {
  ResetRoleState();
  role_ = Role::kLeading;
  leader_ = config_.id;
  ping_sent_tick_ = now_ticks_;
  Trace(absl::StrCat("-> LEADING (accepted epoch ", accepted_epoch_, ", last ",
                     last_zxid_.ToString(), ")"));
  ready_.role = Ready::RoleChange{Role::kLeading, config_.id, current_epoch_, false};
  MaybeProposeEpoch();  // an ensemble of one is its own quorum
}

// ---------------------------------------------------------------------------------------------
// Per-role message handling.

void Member::StepLooking(const PeerMessage& message) {
  const MemberId from(message.from());
  switch (message.body_case()) {
    case PeerMessage::kVote:
      if (message.vote().state() == internal::LOOKING) {
        OnLookingVote(from, message.vote());
      } else {
        OnLeaderReport(from, message.vote());
      }
      return;
    default:
      return;  // discovery and later phases need a leader; it will time out and look again
  }
}

void Member::StepFollowing(const PeerMessage& message) {
  const MemberId from(message.from());
  if (message.body_case() == PeerMessage::kVote) {
    if (message.vote().state() == internal::LOOKING) SendEstablishedVote(from);
    return;
  }
  if (from != leader_ || !IsLeaderMessage(message.body_case())) return;
  if (message.body_case() != PeerMessage::kLeaderInfo && message.epoch() != accepted_epoch_) {
    return;  // from a session of this leader before its LEADERINFO reached us
  }
  if (awaiting_snapshot_) {
    // Everything after SNAP continues the snapshot: hold it until the snapshot is installed.
    if (snapshot_queue_.size() >= kSnapshotQueueMessagesMax) {
      Refuse(absl::StrCat("more than ", kSnapshotQueueMessagesMax,
                          " messages while the snapshot installs"));
      return;
    }
    snapshot_queue_.push_back(message);
    return;
  }
  leader_heard_tick_ = now_ticks_;
  switch (message.body_case()) {
    case PeerMessage::kLeaderInfo:
      OnLeaderInfo(message.leader_info());
      return;
    case PeerMessage::kTrunc:
      OnTrunc(message.trunc());
      return;
    case PeerMessage::kSnap:
      OnSnap(message.snap());
      return;
    case PeerMessage::kDiff:
      OnDiff(message.diff());
      return;
    case PeerMessage::kNewLeader:
      OnNewLeader(message.new_leader());
      return;
    case PeerMessage::kUpToDate:
      OnUpToDate(message.up_to_date());
      return;
    case PeerMessage::kProposal:
      OnProposal(message.proposal());
      return;
    case PeerMessage::kCommit:
      OnLeaderCommitted(Zxid::FromInt(message.commit().zxid()), "COMMIT");
      return;
    case PeerMessage::kPing:
      if (!OnLeaderCommitted(Zxid::FromInt(message.ping().committed_zxid()), "PING")) return;
      {
        // Only what was acknowledged counts as durable to the leader (ACK semantics).
        internal::Pong* pong = Send(leader_, accepted_epoch_).mutable_pong();
        pong->set_durable_zxid(acked_zxid_.ToInt());
        pong->set_round(message.ping().round());
        return;
      }
    default:
      return;
  }
}

void Member::StepLeading(const PeerMessage& message) {
  const MemberId from(message.from());
  if (message.body_case() != PeerMessage::kVote &&
      message.body_case() != PeerMessage::kFollowerInfo) {
    auto it = learners_.find(from);
    if (it == learners_.end()) return;  // not a follower of this session
    it->second.heard_tick = now_ticks_;
  }
  switch (message.body_case()) {
    case PeerMessage::kVote:
      if (message.vote().state() == internal::LOOKING) SendEstablishedVote(from);
      return;
    case PeerMessage::kFollowerInfo:
      OnFollowerInfo(from, message.follower_info());
      return;
    case PeerMessage::kAckEpoch:
      OnAckEpoch(from, message.ack_epoch());
      return;
    case PeerMessage::kAckNewLeader:
      OnAckNewLeader(from, message.ack_new_leader());
      return;
    case PeerMessage::kAck:
      OnLearnerDurable(from, Zxid::FromInt(message.ack().zxid()));
      return;
    case PeerMessage::kPong:
      OnLearnerConfirmed(from, message.pong().round());
      OnLearnerDurable(from, Zxid::FromInt(message.pong().durable_zxid()));
      return;
    default:
      return;  // leader messages from an equal epoch: a leftover, not ours to act on
  }
}

// ---------------------------------------------------------------------------------------------
// Election (fast leader election).

Member::VoteValue Member::SelfVote() const {
  return VoteValue{current_epoch_, last_zxid_, config_.id};
}

void Member::StartRound() {
  ++round_;
  vote_ = SelfVote();
  votes_.clear();
  round_start_tick_ = now_ticks_;
  round_timeout_ticks_ =
      config_.election_timeout_ticks +
      static_cast<int64_t>(random_() % (static_cast<uint64_t>(config_.election_timeout_ticks) + 1));
  BroadcastVote();
  if (config_.members.size() == 1) BecomeLeader();
}

void Member::BroadcastVote() {
  vote_sent_tick_ = now_ticks_;
  for (MemberId member : config_.members) {
    if (member != config_.id) SendVote(member);
  }
}

void Member::SendVote(MemberId to) {
  internal::Vote* vote = Send(to, current_epoch_).mutable_vote();
  vote->set_round(round_);
  vote->set_leader(vote_.leader.value());
  vote->set_zxid(vote_.zxid.ToInt());
  vote->set_epoch(vote_.epoch);
  vote->set_state(internal::LOOKING);
}

void Member::SendEstablishedVote(MemberId to) {
  internal::Vote* vote = Send(to, current_epoch_).mutable_vote();
  vote->set_round(round_);
  vote->set_leader(leader_.value());
  vote->set_zxid(last_zxid_.ToInt());
  vote->set_epoch(current_epoch_);
  vote->set_state(role_ == Role::kLeading ? internal::LEADING : internal::FOLLOWING);
}

void Member::OnLookingVote(MemberId from, const internal::Vote& vote) {
  const VoteValue theirs{vote.epoch(), Zxid::FromInt(vote.zxid()), MemberId(vote.leader())};
  if (!IsMember(theirs.leader)) return;
  if (vote.round() > round_) {
    round_ = vote.round();
    votes_.clear();
    vote_ = std::max(SelfVote(), theirs);
    BroadcastVote();
  } else if (vote.round() < round_) {
    SendVote(from);
    return;
  } else if (theirs > vote_) {
    vote_ = theirs;
    BroadcastVote();
  }
  votes_[from] = theirs;
  int agreeing = 1;  // this member
  for (const auto& [member, value] : votes_) {
    if (value == vote_) ++agreeing;
  }
  if (agreeing < Quorum()) return;
  Trace(absl::StrCat("round ", round_, ": quorum of ", agreeing, " for member ",
                     vote_.leader.value(), " (epoch ", vote_.epoch, ", ", vote_.zxid.ToString(),
                     ")"));
  if (vote_.leader == config_.id) {
    BecomeLeader();
  } else {
    BecomeFollower(vote_.leader);
  }
}

void Member::OnLeaderReport(MemberId from, const internal::Vote& vote) {
  const LeaderReport report{MemberId(vote.leader()), vote.epoch(),
                            vote.state() == internal::LEADING};
  if (!IsMember(report.leader) || report.leader == config_.id) return;
  reports_[from] = report;
  int agreeing = 0;
  for (const auto& [member, other] : reports_) {
    // The leader itself counts only if it says it is leading.
    if (other.leader == report.leader && other.epoch == report.epoch &&
        (member != report.leader || other.leading)) {
      ++agreeing;
    }
  }
  if (agreeing < Quorum()) return;
  Trace(absl::StrCat("a quorum of ", agreeing, " reports member ", report.leader.value(),
                     " leading epoch ", report.epoch));
  BecomeFollower(report.leader);
}

// ---------------------------------------------------------------------------------------------
// Follower: discovery and synchronization.

void Member::OnLeaderInfo(const internal::LeaderInfo& info) {
  if (follower_phase_ != FollowerPhase::kDiscovery) return;  // a duplicate
  const Epoch new_epoch = info.new_epoch();
  if (new_epoch < accepted_epoch_) {
    BecomeLooking(absl::StrCat("leader ", leader_.value(), " proposes epoch ", new_epoch,
                               " below accepted ", accepted_epoch_));
    return;
  }
  if (new_epoch > accepted_epoch_) {
    // The promise is durable before ACKEPOCH leaves (Ready: persist, then send).
    accepted_epoch_ = new_epoch;
    ready_.accepted_epoch = new_epoch;
  }
  follower_phase_ = FollowerPhase::kSynchronization;
  internal::AckEpoch* ack = Send(leader_, accepted_epoch_).mutable_ack_epoch();
  ack->set_current_epoch(current_epoch_);
  ack->set_last_zxid(last_zxid_.ToInt());
}

void Member::OnTrunc(const internal::Trunc& trunc) {
  const Zxid zxid = Zxid::FromInt(trunc.zxid());
  if (follower_phase_ != FollowerPhase::kSynchronization || sync_started_ ||
      Zxid::FromInt(trunc.prev_zxid()) != last_zxid_ || zxid > last_zxid_ || zxid < committed_ ||
      !ready_.append.empty()) {
    Refuse(absl::StrCat("TRUNC to ", zxid.ToString(), " expecting last ",
                        Zxid::FromInt(trunc.prev_zxid()).ToString(), " (last ",
                        last_zxid_.ToString(), ", committed ", committed_.ToString(), ")"));
    return;
  }
  sync_started_ = true;
  TruncateAfter(zxid);
}

void Member::OnSnap(const internal::Snap& snap) {
  const Zxid zxid = Zxid::FromInt(snap.zxid());
  if (follower_phase_ != FollowerPhase::kSynchronization || sync_started_ ||
      Zxid::FromInt(snap.prev_zxid()) != last_zxid_ || zxid <= last_zxid_ ||
      !ready_.append.empty()) {
    Refuse(absl::StrCat("SNAP at ", zxid.ToString(), " expecting last ",
                        Zxid::FromInt(snap.prev_zxid()).ToString(), " (last ",
                        last_zxid_.ToString(), ")"));
    return;
  }
  sync_started_ = true;
  ready_.install_snapshot = zxid;
  awaiting_snapshot_ = zxid;
}

void Member::OnDiff(const internal::Diff& diff) {
  if (follower_phase_ != FollowerPhase::kSynchronization || new_leader_received_) {
    Refuse("DIFF outside synchronization");
    return;
  }
  sync_started_ = true;
  AppendFromLeader(Zxid::FromInt(diff.prev_zxid()), diff.entries(), "DIFF");
}

void Member::OnNewLeader(const internal::NewLeader& new_leader) {
  const Zxid zxid = Zxid::FromInt(new_leader.last_zxid());
  if (follower_phase_ != FollowerPhase::kSynchronization || new_leader_received_ ||
      new_leader.epoch() != accepted_epoch_ || zxid != last_zxid_) {
    Refuse(absl::StrCat("NEWLEADER epoch ", new_leader.epoch(), " at ", zxid.ToString(),
                        " (accepted epoch ", accepted_epoch_, ", last ", last_zxid_.ToString(),
                        ")"));
    return;
  }
  new_leader_received_ = true;
  // ACK means durable (ZOOKEEPER-3911, -3023): owed until LogDurable covers the whole history.
  // currentEpoch waits for it too: a member whose currentEpoch is e' claims (in votes and
  // ACKEPOCH) to hold e''s history, and a restart with e' but a shorter log would win an
  // election and truncate committed entries (found by the randomized test).
  owed_new_leader_ack_ = zxid;
  AcknowledgeDurable();
}

void Member::OnUpToDate(const internal::UpToDate& up_to_date) {
  if (follower_phase_ != FollowerPhase::kSynchronization || !new_leader_acked_) return;
  follower_phase_ = FollowerPhase::kBroadcast;
  serving_ = true;
  leader_committed_ = std::max(leader_committed_, Zxid::FromInt(up_to_date.committed_zxid()));
  Trace(absl::StrCat("up to date with leader ", leader_.value(), " epoch ", current_epoch_,
                     ", committed ", leader_committed_.ToString()));
  AdvanceFollowerCommit();
  ready_.role = Ready::RoleChange{Role::kFollowing, leader_, current_epoch_, true};
}

bool Member::OnLeaderCommitted(Zxid zxid, absl::string_view what) {
  if (new_leader_received_ && zxid > last_zxid_) {
    // Past NEWLEADER every proposal reaches us before its commit: we missed some.
    Refuse(
        absl::StrCat(what, " of ", zxid.ToString(), " past the log end ", last_zxid_.ToString()));
    return false;
  }
  leader_committed_ = std::max(leader_committed_, zxid);
  AdvanceFollowerCommit();
  return true;
}

void Member::OnProposal(const internal::Proposal& proposal) {
  if (follower_phase_ == FollowerPhase::kDiscovery) return;
  AppendFromLeader(Zxid::FromInt(proposal.prev_zxid()), proposal.entries(), "PROPOSAL");
}

bool Member::AppendFromLeader(Zxid prev_zxid,
                              const google::protobuf::RepeatedPtrField<internal::LogEntry>& entries,
                              absl::string_view what) {
  // A retransmission or a duplicate repeats entries the log holds. A zxid names one entry (an
  // epoch has one leader), so the held ones are skipped and the rest must continue the log.
  int first_new = 0;
  if (prev_zxid < last_zxid_ && log_->Contains(prev_zxid)) {
    while (first_new < entries.size()) {
      const Zxid zxid = Zxid::FromInt(entries[first_new].zxid());
      if (zxid > last_zxid_ || !log_->Contains(zxid)) break;
      prev_zxid = zxid;
      ++first_new;
    }
    if (first_new == entries.size()) return true;
  }
  if (prev_zxid != last_zxid_) {
    Refuse(absl::StrCat(what, " continues ", prev_zxid.ToString(), " but the log ends at ",
                        last_zxid_.ToString()));
    return false;
  }
  Zxid last = last_zxid_;
  for (int i = first_new; i < entries.size(); ++i) {
    const Zxid zxid = Zxid::FromInt(entries[i].zxid());
    if (!FollowsContiguously(last, zxid)) {
      Refuse(absl::StrCat(what, " entry ", zxid.ToString(), " does not follow ", last.ToString()));
      return false;
    }
    last = zxid;
  }
  ready_.append.insert(ready_.append.end(), entries.begin() + first_new, entries.end());
  last_zxid_ = last;
  return true;
}

void Member::Refuse(absl::string_view what) {
  Trace(absl::StrCat("refused ", what));
  BecomeLooking(absl::StrCat("refused a message from leader ", leader_.value()));
}

void Member::AcknowledgeDurable() {
  if (owed_new_leader_ack_ && durable_ >= *owed_new_leader_ack_) {
    current_epoch_ = accepted_epoch_;
    ready_.current_epoch = current_epoch_;  // durable before the ACK leaves
    internal::AckNewLeader* ack = Send(leader_, accepted_epoch_).mutable_ack_new_leader();
    ack->set_epoch(current_epoch_);
    ack->set_last_zxid(owed_new_leader_ack_->ToInt());
    acked_zxid_ = *owed_new_leader_ack_;
    owed_new_leader_ack_.reset();
    new_leader_acked_ = true;
  }
  if (new_leader_acked_ && durable_ > acked_zxid_) {
    Send(leader_, accepted_epoch_).mutable_ack()->set_zxid(durable_.ToInt());
    acked_zxid_ = durable_;
  }
  AdvanceFollowerCommit();
}

void Member::AdvanceFollowerCommit() {
  if (!serving_) return;
  CommitThrough(std::max(committed_, std::min(leader_committed_, durable_)));
}

// ---------------------------------------------------------------------------------------------
// Leader: discovery, synchronization and broadcast.

void Member::OnFollowerInfo(MemberId from, const internal::FollowerInfo& info) {
  if (leader_phase_ != LeaderPhase::kDiscovery && info.accepted_epoch() > accepted_epoch_) {
    BecomeLooking(absl::StrCat("member ", from.value(), " accepted epoch ", info.accepted_epoch(),
                               " above ours ", accepted_epoch_));
    return;
  }
  // A new session of this follower: what we knew of the last one no longer holds.
  Learner& learner = learners_[from];
  learner = Learner{};
  learner.accepted_epoch = info.accepted_epoch();
  learner.last_zxid = Zxid::FromInt(info.last_zxid());
  learner.heard_tick = now_ticks_;
  if (leader_phase_ == LeaderPhase::kDiscovery) {
    MaybeProposeEpoch();
  } else {
    Send(from, accepted_epoch_).mutable_leader_info()->set_new_epoch(accepted_epoch_);
  }
}

void Member::MaybeProposeEpoch() {
  if (static_cast<int>(learners_.size()) + 1 < Quorum()) return;
  Epoch highest = accepted_epoch_;
  for (const auto& [id, learner] : learners_) highest = std::max(highest, learner.accepted_epoch);
  CONFAB_CHECK(highest < std::numeric_limits<Epoch>::max(), "epochs exhausted");
  accepted_epoch_ = highest + 1;
  ready_.accepted_epoch = accepted_epoch_;  // durable before LEADERINFO leaves
  leader_phase_ = LeaderPhase::kEpochProposed;
  Trace(absl::StrCat("proposes epoch ", accepted_epoch_, " to ", learners_.size(), " followers"));
  for (const auto& [id, learner] : learners_) {
    Send(id, accepted_epoch_).mutable_leader_info()->set_new_epoch(accepted_epoch_);
  }
  MaybeSynchronize();
}

void Member::OnAckEpoch(MemberId from, const internal::AckEpoch& ack) {
  Learner& learner = learners_.at(from);
  if (leader_phase_ == LeaderPhase::kDiscovery || learner.phase != Learner::Phase::kConnected) {
    return;  // a duplicate
  }
  learner.phase = Learner::Phase::kEpochAcked;
  learner.current_epoch = ack.current_epoch();
  learner.last_zxid = Zxid::FromInt(ack.last_zxid());
  if (leader_phase_ == LeaderPhase::kEpochProposed) {
    MaybeSynchronize();
  } else {
    SynchronizeLearner(from, learner);
  }
}

void Member::MaybeSynchronize() {
  // currentEpoch = e' claims e''s history durably, here as on a follower: wait for our log.
  if (leader_phase_ != LeaderPhase::kEpochProposed || durable_ < last_zxid_ ||
      CountLearners(Learner::Phase::kEpochAcked) + 1 < Quorum()) {
    return;
  }
  // The new epoch's history is ours: it must be the most up to date of the quorum (ZAB
  // discovery); fast election's vote order makes this the usual case.
  for (const auto& [id, learner] : learners_) {
    if (learner.phase == Learner::Phase::kEpochAcked &&
        std::pair(learner.current_epoch, learner.last_zxid) >
            std::pair(current_epoch_, last_zxid_)) {
      BecomeLooking(absl::StrCat("member ", id.value(), " is more up to date (epoch ",
                                 learner.current_epoch, ", ", learner.last_zxid.ToString(), ")"));
      return;
    }
  }
  leader_phase_ = LeaderPhase::kSynchronization;
  current_epoch_ = accepted_epoch_;
  ready_.current_epoch = current_epoch_;  // durable before NEWLEADER leaves
  new_leader_zxid_ = last_zxid_;
  Trace(absl::StrCat("synchronizes epoch ", current_epoch_, " to ", new_leader_zxid_.ToString()));
  for (auto& [id, learner] : learners_) {
    if (learner.phase == Learner::Phase::kEpochAcked) SynchronizeLearner(id, learner);
  }
  MaybeEstablish();
}

void Member::SynchronizeLearner(MemberId id, Learner& learner) {
  const Zxid leader_last = log_->LastZxid();
  CONFAB_CHECK(leader_last == (ready_.append.empty() ? last_zxid_ : batch_prev_zxid_),
               "the log ends at ", leader_last.ToString(), " but the member expects ",
               last_zxid_.ToString(), ": a Ready was not carried out before the next event");
  const Zxid snapshot = log_->SnapshotZxid();
  const Zxid follower_last = learner.last_zxid;
  // Where the follower's log will end before the DIFF, and whether it needs the snapshot.
  Zxid from = follower_last;
  bool send_snapshot = false;
  if (follower_last < snapshot) {
    send_snapshot = true;
  } else if (follower_last > leader_last || !log_->Contains(follower_last)) {
    from = log_->LastAtOrBefore(follower_last);  // the end of the common prefix
    CONFAB_CHECK(from >= snapshot, "LastAtOrBefore(", follower_last.ToString(),
                 ") = ", from.ToString(), " below the snapshot ", snapshot.ToString());
  }
  if (!send_snapshot && from != leader_last && snapshot > from &&
      log_->EntriesAfter(from, config_.diff_entries_max + 1).size() > config_.diff_entries_max) {
    send_snapshot = true;
  }
  if (send_snapshot) {
    internal::Snap* snap = Send(id, accepted_epoch_).mutable_snap();
    snap->set_zxid(snapshot.ToInt());
    snap->set_prev_zxid(follower_last.ToInt());
    ready_.send_snapshot.emplace_back(id, snapshot);
    from = snapshot;
  } else if (from != follower_last) {
    internal::Trunc* trunc = Send(id, accepted_epoch_).mutable_trunc();
    trunc->set_zxid(from.ToInt());
    trunc->set_prev_zxid(follower_last.ToInt());
  }
  Trace(absl::StrCat("syncs member ", id.value(), " from ", follower_last.ToString(), ": ",
                     send_snapshot ? "SNAP " : (from != follower_last ? "TRUNC " : "DIFF "),
                     from.ToString(), " .. ", leader_last.ToString()));
  // DIFF in chunks of at most proposal_entries_max; an empty one when already equal.
  Zxid prev = from;
  do {
    std::vector<internal::LogEntry> chunk = log_->EntriesAfter(prev, config_.proposal_entries_max);
    internal::Diff* diff = Send(id, accepted_epoch_).mutable_diff();
    diff->set_prev_zxid(prev.ToInt());
    for (internal::LogEntry& entry : chunk) {
      prev = Zxid::FromInt(entry.zxid());
      *diff->add_entries() = std::move(entry);
    }
    CONFAB_CHECK(!chunk.empty() || prev == leader_last, "the log has no entries after ",
                 prev.ToString(), " though it ends at ", leader_last.ToString());
  } while (prev < leader_last);
  CONFAB_CHECK(prev == leader_last, "DIFF ended at ", prev.ToString(), " not ",
               leader_last.ToString());
  internal::NewLeader* new_leader = Send(id, accepted_epoch_).mutable_new_leader();
  new_leader->set_epoch(accepted_epoch_);
  new_leader->set_last_zxid(leader_last.ToInt());
  learner.phase = Learner::Phase::kSynchronizing;
  learner.new_leader_zxid = leader_last;
}

void Member::OnAckNewLeader(MemberId from, const internal::AckNewLeader& ack) {
  Learner& learner = learners_.at(from);
  const Zxid zxid = Zxid::FromInt(ack.last_zxid());
  if (learner.phase != Learner::Phase::kSynchronizing || ack.epoch() != accepted_epoch_ ||
      zxid < learner.new_leader_zxid) {
    return;  // a duplicate, or a leftover of an earlier session
  }
  learner.phase = Learner::Phase::kUpToDate;
  learner.durable = std::max(learner.durable, zxid);
  if (serving_) {
    Send(from, accepted_epoch_).mutable_up_to_date()->set_committed_zxid(committed_.ToInt());
    MaybeCommit();
  } else {
    MaybeEstablish();
  }
}

void Member::OnLearnerDurable(MemberId from, Zxid durable) {
  Learner& learner = learners_.at(from);
  // ACK and PONG of this epoch come only after NEWLEADER's ACK, so they speak of our history.
  if (learner.phase < Learner::Phase::kSynchronizing) return;
  learner.durable = std::max(learner.durable, durable);
  MaybeCommit();
}

void Member::OnLearnerConfirmed(MemberId from, uint64_t round) {
  Learner& learner = learners_.at(from);
  if (learner.phase != Learner::Phase::kUpToDate || round <= learner.confirmed_round) return;
  learner.confirmed_round = round;
  // The highest round answered by a quorum: this member (which asked every round) and the
  // quorum-1 best-answering followers.
  std::vector<uint64_t> rounds;
  for (const auto& [id, other] : learners_) {
    if (other.phase == Learner::Phase::kUpToDate) rounds.push_back(other.confirmed_round);
  }
  const size_t needed = static_cast<size_t>(Quorum()) - 1;
  if (rounds.size() < needed || needed == 0) return;
  std::nth_element(rounds.begin(), rounds.begin() + static_cast<ptrdiff_t>(needed - 1),
                   rounds.end(), std::greater<>());
  const uint64_t confirmed = rounds[needed - 1];
  if (confirmed > leadership_confirmed_) {
    leadership_confirmed_ = confirmed;
    ready_.leadership_confirmed = confirmed;
  }
}

void Member::MaybeEstablish() {
  if (leader_phase_ != LeaderPhase::kSynchronization) return;
  CONFAB_CHECK(durable_ >= new_leader_zxid_, "leader ", config_.id.value(), " durable ",
               durable_.ToString(), " below the history it synchronizes ",
               new_leader_zxid_.ToString());
  const int acked = CountLearners(Learner::Phase::kUpToDate) + 1;
  if (acked < Quorum()) return;
  leader_phase_ = LeaderPhase::kBroadcast;
  serving_ = true;
  Trace(absl::StrCat("established epoch ", current_epoch_, " with ", acked, " members at ",
                     new_leader_zxid_.ToString()));
  // A quorum holds the whole history durably with this epoch: all of it is committed.
  CommitThrough(new_leader_zxid_);
  for (const auto& [id, learner] : learners_) {
    if (learner.phase == Learner::Phase::kUpToDate) {
      Send(id, accepted_epoch_).mutable_up_to_date()->set_committed_zxid(committed_.ToInt());
    }
  }
  ready_.role = Ready::RoleChange{Role::kLeading, config_.id, current_epoch_, true};
}

void Member::MaybeCommit() {
  if (!serving_) return;
  std::vector<Zxid> durables = {durable_};
  for (const auto& [id, learner] : learners_) {
    if (learner.phase >= Learner::Phase::kSynchronizing) durables.push_back(learner.durable);
  }
  if (static_cast<int>(durables.size()) < Quorum()) return;
  std::nth_element(durables.begin(), durables.begin() + (Quorum() - 1), durables.end(),
                   std::greater<>());
  // Never past what is durable here (the header's invariant), so apply reads durable entries.
  const Zxid zxid = std::min(durables[Quorum() - 1], durable_);
  if (zxid <= committed_) return;
  CommitThrough(zxid);
  for (const auto& [id, learner] : learners_) {
    if (learner.phase >= Learner::Phase::kSynchronizing) {
      Send(id, accepted_epoch_).mutable_commit()->set_zxid(zxid.ToInt());
    }
  }
}

void Member::RetransmitLostProposals() {
  // Entries proposed a heartbeat ago and still not acknowledged were lost on the way (a broken
  // stream loses what was in flight). Below the commit PING reveals the gap and the follower
  // resynchronizes, but an uncommitted tail stays uncommitted until a later proposal reveals it,
  // which may never come. Resend one batch; the follower skips what it already holds. (What is
  // only in the snapshot now is below the commit.)
  for (const auto& [id, learner] : learners_) {
    if (learner.phase != Learner::Phase::kUpToDate || learner.durable >= heartbeat_log_end_ ||
        learner.durable < log_->SnapshotZxid()) {
      continue;
    }
    internal::Proposal* proposal = Send(id, accepted_epoch_).mutable_proposal();
    proposal->set_prev_zxid(learner.durable.ToInt());
    for (internal::LogEntry& entry :
         log_->EntriesAfter(learner.durable, config_.proposal_entries_max)) {
      *proposal->add_entries() = std::move(entry);
    }
  }
  // What the log holds now (proposals since the last GetReady are not in it yet).
  heartbeat_log_end_ = ready_.append.empty() ? last_zxid_ : batch_prev_zxid_;
}

void Member::FlushProposals() {
  if (role_ != Role::kLeading || ready_.append.empty()) return;
  for (const auto& [id, learner] : learners_) {
    if (learner.phase < Learner::Phase::kSynchronizing) continue;
    internal::Proposal* proposal = Send(id, accepted_epoch_).mutable_proposal();
    proposal->set_prev_zxid(batch_prev_zxid_.ToInt());
    proposal->mutable_entries()->Add(ready_.append.begin(), ready_.append.end());
  }
}

int Member::CountLearners(Learner::Phase at_least) const {
  int count = 0;
  for (const auto& [id, learner] : learners_) {
    if (learner.phase >= at_least) ++count;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

void Member::CommitThrough(Zxid zxid) {
  if (zxid == committed_) return;
  CONFAB_CHECK(zxid > committed_, "member ", config_.id.value(), " commit ", zxid.ToString(),
               " below committed ", committed_.ToString());
  CONFAB_CHECK(zxid <= durable_, "member ", config_.id.value(), " commit ", zxid.ToString(),
               " past durable ", durable_.ToString());
  committed_ = zxid;
  ready_.commit_through = zxid;
}

void Member::TruncateAfter(Zxid zxid) {
  ready_.truncate_after = ready_.truncate_after ? std::min(*ready_.truncate_after, zxid) : zxid;
  last_zxid_ = zxid;
  durable_ = std::min(durable_, zxid);
}

PeerMessage& Member::Send(MemberId to, Epoch epoch) {
  PeerMessage& message = ready_.messages.emplace_back();
  message.set_from(config_.id.value());
  message.set_to(to.value());
  message.set_epoch(epoch);
  return message;
}

bool Member::IsMember(MemberId id) const {
  return std::find(config_.members.begin(), config_.members.end(), id) != config_.members.end();
}

void Member::Trace(absl::string_view line) {
  if (trace_.size() >= kTraceLinesMax) trace_.pop_front();
  trace_.push_back(absl::StrCat("t=", now_ticks_, " member ", config_.id.value(), " ",
                                RoleName(role_), ": ", line));
}

}  // namespace confab::zab
