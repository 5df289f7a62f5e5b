#include "server/pipeline/replicator.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/check.h"
#include "server/common/errors.h"
#include "server/storage/snapshot.h"
#include "spdlog/spdlog.h"

namespace confab::pipeline {
namespace {

internal::TxnResult ErrorResult(const absl::Status& status) {
  internal::TxnResult result;
  ToProto(status, result.mutable_error());
  return result;
}

}  // namespace

// ---- The core's view of the log ------------------------------------------------------------

bool Replicator::LogIndex::Contains(Zxid zxid) const {
  return zxid == snapshot_ || std::binary_search(zxids_.begin(), zxids_.end(), zxid);
}

Zxid Replicator::LogIndex::LastAtOrBefore(Zxid zxid) const {
  auto it = std::upper_bound(zxids_.begin(), zxids_.end(), zxid);
  if (it != zxids_.begin()) return *std::prev(it);
  return snapshot_ <= zxid ? snapshot_ : Zxid();
}

std::vector<internal::LogEntry> Replicator::LogIndex::EntriesAfter(Zxid after,
                                                                   size_t max_entries) const {
  CONFAB_CHECK(after >= snapshot_, "EntriesAfter(", after.ToString(), ") below the snapshot at ",
               snapshot_.ToString());
  std::vector<internal::LogEntry> entries;
  if (after >= LastZxid()) return entries;
  auto records = (*writer_)->ReadAfter(after, max_entries);
  // The core asks only for what the index holds; a log that cannot give it back is broken.
  CONFAB_CHECK(records.ok(), "reading the log after ", after.ToString(), ": ",
               records.status().ToString());
  entries.reserve(records->size());
  for (auto& [zxid, payload] : *records) {
    internal::LogEntry& entry = entries.emplace_back();
    entry.set_zxid(zxid.ToInt());
    entry.set_payload(std::move(payload));
  }
  return entries;
}

void Replicator::LogIndex::TruncateAfter(Zxid zxid) {
  while (!zxids_.empty() && zxids_.back() > zxid) zxids_.pop_back();
}

void Replicator::LogIndex::SnapshotAt(Zxid zxid) {
  if (zxid <= snapshot_ || zxid > LastZxid()) return;
  snapshot_ = zxid;
  while (!zxids_.empty() && zxids_.front() <= zxid) zxids_.pop_front();
}

void Replicator::LogIndex::ResetTo(Zxid zxid) {
  snapshot_ = zxid;
  zxids_.clear();
}

// ---- Life cycle ----------------------------------------------------------------------------

Replicator::Replicator(ReplicatorOptions options, RecoveredLog recovered,
                       storage::DataDir* data_dir, StateMachine* state_machine,
                       PeerNetwork* network)
    : options_(std::move(options)),
      data_dir_(data_dir),
      state_machine_(state_machine),
      network_(network),
      recovered_log_(std::move(recovered.log)),
      index_(&log_writer_, recovered.snapshot_zxid) {
  for (internal::LogEntry& entry : recovered.tail) {
    index_.Append(Zxid::FromInt(entry.zxid()));
    uncommitted_.push_back(std::move(entry));
  }
  zab::Config config;
  config.id = options_.self;
  config.members = options_.members;
  config.election_timeout_ticks = options_.election_timeout_ticks;
  config.init_limit_ticks = options_.init_limit_ticks;
  config.sync_limit_ticks = options_.sync_limit_ticks;
  proposal_entries_max_ = config.proposal_entries_max;
  config.seed =
      (static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) << 8) ^ options_.self.value();
  member_ = std::make_unique<zab::Member>(std::move(config), recovered.epochs, &index_);
}

Replicator::~Replicator() {
  Stop(absl::ZeroDuration());
  for (std::thread& fetch : fetch_threads_) fetch.join();
}

void Replicator::Start() {
  log_writer_ = std::make_unique<storage::LogWriter>(
      std::move(recovered_log_), [this](Zxid durable, size_t) { OnDurable(durable); },
      [this](const absl::Status& error) { OnLogFailure(error); });
  {
    absl::MutexLock lock(&mu_);
    accepting_ = true;
  }
  thread_ = std::thread([this] { Run(); });
}

void Replicator::Stop(absl::Duration drain) {
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_ == 0 || !error_.ok();
    };
    mu_.AwaitWithTimeout(absl::Condition(&drained), drain);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // The thread is gone: what it had in hand is answered here.
  {
    absl::MutexLock lock(&mu_);
    for (LocalWrite& write : inbox_.writes) {
      std::move(write.done)(
          ErrorResult(MakeError(v1::UNAVAILABLE, "the server is shutting down; not applied")));
    }
    inbox_.writes.clear();
    for (BarrierDone& done : inbox_.barriers) {
      std::move(done)(MakeError(v1::UNAVAILABLE, "the server is shutting down"));
    }
    inbox_.barriers.clear();
  }
  FailInFlight("the server shut down before this write was decided");
  if (log_writer_ != nullptr) log_writer_->Stop();
}

// ---- Entry points (any thread) -------------------------------------------------------------

WriteDone Replicator::Tracked(WriteDone done) {
  return [this, done = std::move(done)](internal::TxnResult result) mutable {
    std::move(done)(std::move(result));
    absl::MutexLock lock(&mu_);
    --in_flight_;
  };
}

void Replicator::Propose(internal::Txn txn, WriteDone done) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (accepting_) {
      ++in_flight_;
      inbox_.writes.push_back(LocalWrite{std::move(txn), Tracked(std::move(done))});
      return;
    }
    refused = error_.ok() ? MakeError(v1::UNAVAILABLE, "server is shutting down")
                          : MakeError(v1::UNAVAILABLE, absl::StrCat("server cannot write its log: ",
                                                                    error_.message()));
  }
  std::move(done)(ErrorResult(refused));
}

void Replicator::Barrier(BarrierDone done) {
  {
    absl::MutexLock lock(&mu_);
    if (accepting_) {
      inbox_.barriers.push_back(std::move(done));
      return;
    }
  }
  std::move(done)(MakeError(v1::UNAVAILABLE, "server is shutting down"));
}

void Replicator::Receive(internal::PeerBatch batch) {
  absl::MutexLock lock(&mu_);
  if (!stopping_) inbox_.batches.push_back(std::move(batch));
}

void Replicator::ForwardTouches(std::vector<SessionId> sessions) {
  absl::MutexLock lock(&mu_);
  inbox_.touches.insert(inbox_.touches.end(), sessions.begin(), sessions.end());
}

void Replicator::SnapshotWritten(Zxid zxid) {
  absl::MutexLock lock(&mu_);
  inbox_.snapshot_written = std::max(inbox_.snapshot_written.value_or(zxid), zxid);
}

absl::Status Replicator::PurgeLogThrough(Zxid zxid) { return log_writer_->PurgeThrough(zxid); }

RoleState Replicator::role() const {
  absl::MutexLock lock(&mu_);
  return role_;
}

storage::LogWriterStats Replicator::log_stats() const {
  return log_writer_ != nullptr ? log_writer_->stats() : storage::LogWriterStats{};
}

absl::Status Replicator::health() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

void Replicator::OnDurable(Zxid zxid) {
  absl::MutexLock lock(&mu_);
  inbox_.durable = std::max(inbox_.durable.value_or(zxid), zxid);
}

void Replicator::OnLogFailure(const absl::Status& error) {
  spdlog::critical("transaction log failed: {}; no further writes will be acknowledged",
                   error.ToString());
  absl::MutexLock lock(&mu_);
  if (error_.ok()) error_ = error;
  accepting_ = false;
}

void Replicator::Fatal(const absl::Status& error) {
  OnLogFailure(error);
  // Nothing more may be promised by this member: a restart recovers from what is durable.
  FailInFlight(absl::StrCat("the server's disk failed: ", error.message()));
}

// ---- The replicator thread -----------------------------------------------------------------

void Replicator::Run() {
  pthread_setname_np(pthread_self(), "confab-zab");
  const absl::Duration tick = absl::Milliseconds(options_.tick_ms);
  next_tick_ = absl::Now() + tick;
  CarryOut();
  FlushOutbox();
  for (;;) {
    Inbox inbox;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !inbox_.Empty(); };
      mu_.AwaitWithDeadline(absl::Condition(&work), next_tick_);
      if (stopping_) return;
      inbox = std::exchange(inbox_, Inbox{});
    }
    Process(std::move(inbox));
    AskLeadershipConfirmation();
    const absl::Time now = absl::Now();
    if (now >= next_tick_) {
      member_->Tick();
      ExpireForwarded();
      // Ticks measure time the member was able to run: a stalled process does not catch up
      // with a burst of ticks that would time out its peers at once.
      next_tick_ = std::max(next_tick_ + tick, now);
    }
    CarryOut();
    absl::Status error = health();
    if (!error.ok() && !failure_answered_) {
      failure_answered_ = true;
      FailInFlight(absl::StrCat("the server's log failed (", error.message(),
                                ") before this write was durable here; its outcome is unknown"));
    }
    FlushOutbox();
  }
}

void Replicator::Process(Inbox inbox) {
  if (inbox.durable) member_->LogDurable(*inbox.durable);
  for (internal::PeerBatch& batch : inbox.batches) {
    const MemberId from(batch.from());
    for (internal::PeerEnvelope& envelope : *batch.mutable_envelopes()) OnEnvelope(from, envelope);
  }
  if (inbox.snapshot_written) index_.SnapshotAt(*inbox.snapshot_written);
  if (inbox.fetched) InstallFetched(std::move(*inbox.fetched));
  if (!inbox.touches.empty() && member_->role() == zab::Role::kFollowing && member_->serving()) {
    internal::PeerEnvelope envelope;
    for (SessionId id : inbox.touches) envelope.mutable_touches()->add_session_ids(id.value());
    Send(member_->leader(), std::move(envelope));
  }
  for (LocalWrite& write : inbox.writes) ProposeLocal(std::move(write));
  for (BarrierDone& done : inbox.barriers) BarrierLocal(std::move(done));
}

void Replicator::OnEnvelope(MemberId from, internal::PeerEnvelope& envelope) {
  switch (envelope.body_case()) {
    case internal::PeerEnvelope::kZab:
      member_->Step(envelope.zab());
      return;
    case internal::PeerEnvelope::kForward:
      ProposeForwarded(from, envelope.forward());
      return;
    case internal::PeerEnvelope::kAccepted: {
      auto it = forwarded_.find(envelope.accepted().seq());
      if (it == forwarded_.end()) return;  // answered already (timed out)
      awaiting_.emplace(Zxid::FromInt(envelope.accepted().zxid()),
                        LocalWrite{std::move(it->second.txn), std::move(it->second.done)});
      forwarded_.erase(it);
      return;
    }
    case internal::PeerEnvelope::kRefused: {
      auto it = forwarded_.find(envelope.refused().seq());
      if (it == forwarded_.end()) return;
      WriteDone done = std::move(it->second.done);
      forwarded_.erase(it);
      std::move(done)(ErrorResult(FromProto(envelope.refused().error())));
      return;
    }
    case internal::PeerEnvelope::kSync: {
      if (member_->role() == zab::Role::kLeading && member_->serving()) {
        LeaderBarrier barrier;
        barrier.target = member_->committed();
        barrier.origin = from;
        barrier.seq = envelope.sync().seq();
        leader_barriers_.push_back(std::move(barrier));
        return;
      }
      internal::PeerEnvelope reply;
      reply.mutable_sync_reply()->set_seq(envelope.sync().seq());
      ToProto(MakeError(v1::UNAVAILABLE,
                        absl::StrCat("member ", options_.self.value(), " is not the leader")),
              reply.mutable_sync_reply()->mutable_error());
      Send(from, std::move(reply));
      return;
    }
    case internal::PeerEnvelope::kSyncReply: {
      auto it = barriers_.find(envelope.sync_reply().seq());
      if (it == barriers_.end()) return;
      BarrierDone done = std::move(it->second.done);
      barriers_.erase(it);
      const internal::SyncReply& reply = envelope.sync_reply();
      if (reply.has_error() && reply.error().code() != v1::OK) {
        std::move(done)(FromProto(reply.error()));
      } else {
        std::move(done)(Zxid::FromInt(reply.committed_zxid()));
      }
      return;
    }
    case internal::PeerEnvelope::kTouches: {
      if (member_->role() != zab::Role::kLeading) return;
      std::vector<SessionId> sessions;
      for (int64_t id : envelope.touches().session_ids()) sessions.emplace_back(id);
      state_machine_->TouchSessions(sessions);
      return;
    }
    case internal::PeerEnvelope::BODY_NOT_SET:
      return;
  }
}

absl::StatusOr<Zxid> Replicator::ProposeOnCore(std::string payload) {
  // The core holds at most proposal_entries_max proposals between two Readys.
  if (++proposed_since_ready_ >= proposal_entries_max_) CarryOut();
  return member_->Propose(std::move(payload));
}

void Replicator::ProposeLocal(LocalWrite write) {
  if (!member_->serving()) {
    std::move(write.done)(ErrorResult(MakeError(
        v1::UNAVAILABLE,
        absl::StrCat(
            "member ", options_.self.value(), " is not serving (", zab::RoleName(member_->role()),
            member_->role() == zab::Role::kLooking ? ": electing a leader" : ": synchronizing",
            "); the write was not applied, retry"))));
    return;
  }
  if (member_->role() == zab::Role::kFollowing) {
    const uint64_t seq = ++next_seq_;
    internal::PeerEnvelope envelope;
    envelope.mutable_forward()->set_seq(seq);
    envelope.mutable_forward()->set_txn(write.txn.SerializeAsString());
    Send(member_->leader(), std::move(envelope));
    forwarded_.emplace(seq, Forwarded{std::move(write.txn), std::move(write.done), absl::Now()});
    return;
  }
  absl::StatusOr<Zxid> zxid = ProposeOnCore(write.txn.SerializeAsString());
  if (!zxid.ok()) {
    std::move(write.done)(ErrorResult(MakeError(
        v1::UNAVAILABLE, absl::StrCat("not proposed: ", zxid.status().message(), "; retry"))));
    return;
  }
  proposed_.emplace(*zxid, std::move(write));
}

void Replicator::ProposeForwarded(MemberId from, const internal::ForwardWrite& forward) {
  internal::PeerEnvelope answer;
  absl::StatusOr<Zxid> zxid =
      member_->role() == zab::Role::kLeading && member_->serving()
          ? ProposeOnCore(forward.txn())
          : absl::StatusOr<Zxid>(absl::FailedPreconditionError("not the serving leader"));
  if (zxid.ok()) {
    // Ahead of the PROPOSAL carrying it, on the same stream: the origin knows it is its own.
    answer.mutable_accepted()->set_seq(forward.seq());
    answer.mutable_accepted()->set_zxid(zxid->ToInt());
  } else {
    answer.mutable_refused()->set_seq(forward.seq());
    ToProto(MakeError(v1::UNAVAILABLE,
                      absl::StrCat("member ", options_.self.value(), " did not propose the write (",
                                   zxid.status().message(), "); it was not applied, retry")),
            answer.mutable_refused()->mutable_error());
  }
  Send(from, std::move(answer));
}

void Replicator::BarrierLocal(BarrierDone done) {
  if (member_->role() == zab::Role::kLeading && member_->serving()) {
    LeaderBarrier barrier;
    barrier.target = member_->committed();
    barrier.done = std::move(done);
    leader_barriers_.push_back(std::move(barrier));
    return;
  }
  if (member_->role() == zab::Role::kFollowing && member_->serving()) {
    const uint64_t seq = ++next_seq_;
    internal::PeerEnvelope envelope;
    envelope.mutable_sync()->set_seq(seq);
    Send(member_->leader(), std::move(envelope));
    barriers_.emplace(seq, RemoteBarrier{std::move(done), absl::Now()});
    return;
  }
  std::move(done)(
      MakeError(v1::UNAVAILABLE, absl::StrCat("member ", options_.self.value(), " is not serving (",
                                              zab::RoleName(member_->role()), "); retry")));
}

void Replicator::AskLeadershipConfirmation() {
  // One round for every barrier that arrived since the last: a quorum confirming it proves this
  // member still led after they arrived, so the commit zxid taken then covers every write
  // acknowledged before them, whoever acknowledged it.
  if (leader_barriers_.empty() || leader_barriers_.back().round != 0) return;
  absl::StatusOr<uint64_t> round = member_->ConfirmLeadership();
  if (!round.ok()) {
    FailLeaderBarriers("the leader is no longer serving");
    return;
  }
  for (auto it = leader_barriers_.rbegin(); it != leader_barriers_.rend() && it->round == 0; ++it) {
    it->round = *round;
  }
}

void Replicator::ReleaseLeaderBarriers(uint64_t confirmed) {
  while (!leader_barriers_.empty() && leader_barriers_.front().round != 0 &&
         leader_barriers_.front().round <= confirmed) {
    LeaderBarrier barrier = std::move(leader_barriers_.front());
    leader_barriers_.pop_front();
    if (barrier.done) {
      std::move(barrier.done)(barrier.target);
      continue;
    }
    internal::PeerEnvelope reply;
    reply.mutable_sync_reply()->set_seq(barrier.seq);
    reply.mutable_sync_reply()->set_committed_zxid(barrier.target.ToInt());
    Send(barrier.origin, std::move(reply));
  }
}

void Replicator::FailLeaderBarriers(absl::string_view why) {
  const absl::Status error = MakeError(v1::UNAVAILABLE, why);
  for (LeaderBarrier& barrier : leader_barriers_) {
    if (barrier.done) {
      std::move(barrier.done)(error);
      continue;
    }
    internal::PeerEnvelope reply;
    reply.mutable_sync_reply()->set_seq(barrier.seq);
    ToProto(error, reply.mutable_sync_reply()->mutable_error());
    Send(barrier.origin, std::move(reply));
  }
  leader_barriers_.clear();
}

void Replicator::ExpireForwarded() {
  const absl::Time oldest = absl::Now() - options_.forward_timeout;
  const std::string timeout = absl::FormatDuration(options_.forward_timeout);
  for (auto it = forwarded_.begin(); it != forwarded_.end();) {
    if (it->second.sent > oldest) {
      ++it;
      continue;
    }
    WriteDone done = std::move(it->second.done);
    it = forwarded_.erase(it);
    std::move(done)(ErrorResult(MakeError(
        v1::UNAVAILABLE, absl::StrCat("the leader did not answer this forwarded write within ",
                                      timeout, "; its outcome is unknown (it may be applied)"))));
  }
  for (auto it = barriers_.begin(); it != barriers_.end();) {
    if (it->second.sent > oldest) {
      ++it;
      continue;
    }
    BarrierDone done = std::move(it->second.done);
    it = barriers_.erase(it);
    std::move(done)(MakeError(v1::UNAVAILABLE,
                              absl::StrCat("the leader did not answer Sync within ", timeout)));
  }
}

void Replicator::InstallFetched(FetchedSnapshot fetched) {
  if (!awaiting_snapshot_ || *awaiting_snapshot_ != fetched.zxid) {
    spdlog::info("discarding the snapshot at {} fetched for a synchronization that has ended",
                 fetched.zxid.ToString());
    return;
  }
  if (!fetched.status.ok()) {
    // The core gives up on this leader after init_limit_ticks and looks again.
    spdlog::warn("snapshot transfer failed: {}", fetched.status.ToString());
    awaiting_snapshot_.reset();
    return;
  }
  // The state first (a file that does not load changes nothing), then the log, which holds only
  // entries before the snapshot (SNAP goes to members behind it).
  if (absl::Status status = state_machine_->InstallSnapshot(fetched.path, fetched.zxid);
      !status.ok()) {
    spdlog::error("cannot install the snapshot {} from the leader: {}", fetched.path,
                  status.ToString());
    awaiting_snapshot_.reset();
    return;
  }
  if (absl::Status status = log_writer_->TruncateAfter(Zxid()); !status.ok()) {
    Fatal(status);
    return;
  }
  index_.ResetTo(fetched.zxid);
  uncommitted_.clear();
  awaiting_snapshot_.reset();
  spdlog::info("installed the leader's snapshot at {}", fetched.zxid.ToString());
  member_->SnapshotInstalled(fetched.zxid);
}

// ---- Carrying out Readys -------------------------------------------------------------------

void Replicator::CarryOut() {
  for (;;) {
    zab::Ready ready = member_->GetReady();
    proposed_since_ready_ = 0;
    if (ready.Empty()) break;
    Execute(ready);
  }
  LogNewTrace();
}

void Replicator::LogNewTrace() {
  // The core's trace: one line per role change, synchronization and refused message.
  const std::deque<std::string>& trace = member_->trace();
  if (trace.empty() || trace.back() == last_trace_line_) return;
  auto seen = std::find(trace.rbegin(), trace.rend(), last_trace_line_);
  for (auto it = seen.base(); it != trace.end(); ++it) spdlog::info("zab: {}", *it);
  last_trace_line_ = trace.back();
}

void Replicator::Execute(zab::Ready& ready) {
  // 1. Persist: epochs, truncation, snapshot, appends (durability is reported back later).
  if (ready.accepted_epoch) {
    if (auto status = data_dir_->WriteEpoch("accepted_epoch", *ready.accepted_epoch);
        !status.ok()) {
      Fatal(status);
      return;
    }
  }
  if (ready.current_epoch) {
    if (auto status = data_dir_->WriteEpoch("current_epoch", *ready.current_epoch); !status.ok()) {
      Fatal(status);
      return;
    }
  }
  if (ready.truncate_after) {
    const Zxid zxid = *ready.truncate_after;
    spdlog::warn("discarding log entries after {} that the leader's history does not hold",
                 zxid.ToString());
    if (auto status = log_writer_->TruncateAfter(zxid); !status.ok()) {
      Fatal(status);
      return;
    }
    index_.TruncateAfter(zxid);
    while (!uncommitted_.empty() && Zxid::FromInt(uncommitted_.back().zxid()) > zxid) {
      uncommitted_.pop_back();
    }
  }
  // A snapshot asked for before a role change belongs to a synchronization that has ended (a
  // Ready carries only the last of its role changes): installed now, it could roll the member
  // back below what it applied since. Only one asked for in this very Ready is awaited.
  if (ready.role) awaiting_snapshot_.reset();
  if (ready.install_snapshot) {
    const Zxid zxid = *ready.install_snapshot;
    awaiting_snapshot_ = zxid;
    const MemberId leader = member_->leader();
    const std::string path = storage::SnapshotFilePath(options_.snap_dir, zxid);
    spdlog::info("fetching the snapshot at {} from leader {}", zxid.ToString(), leader.value());
    fetch_threads_.emplace_back([this, leader, zxid, path] {
      pthread_setname_np(pthread_self(), "confab-fetch");
      absl::Status status = network_ != nullptr
                                ? network_->FetchSnapshot(leader, zxid, path)
                                : absl::FailedPreconditionError("no peers to fetch from");
      absl::MutexLock lock(&mu_);
      inbox_.fetched = FetchedSnapshot{zxid, path, std::move(status)};
    });
  }
  // A follower's appends may be written on this thread at the end of the round (below).
  std::vector<std::pair<Zxid, std::string>> records;
  if (!ready.append.empty()) {
    records.reserve(ready.append.size());
    for (internal::LogEntry& entry : ready.append) {
      const Zxid zxid = Zxid::FromInt(entry.zxid());
      records.emplace_back(zxid, entry.payload());
      index_.Append(zxid);
      uncommitted_.push_back(std::move(entry));
    }
    if (member_->role() != zab::Role::kFollowing) log_writer_->Enqueue(std::exchange(records, {}));
  }
  // 2. Send.
  for (internal::PeerMessage& message : ready.messages) {
    const MemberId to(message.to());
    internal::PeerEnvelope envelope;
    *envelope.mutable_zab() = std::move(message);
    Send(to, std::move(envelope));
  }
  // 3. Apply; Syncs whose leadership round a quorum confirmed may be answered. The messages go
  // out first: the state machine may apply a small commit on this thread.
  if (ready.commit_through) {
    FlushOutbox();
    CommitThrough(*ready.commit_through);
  }
  if (ready.leadership_confirmed) ReleaseLeaderBarriers(*ready.leadership_confirmed);
  // 4. Role.
  if (ready.role) OnRole(*ready.role);
  // 5. A follower's small append, when the log writer is idle, is made durable right here once
  // the round's messages are out: its ACK then leaves without two thread hops (to the writer and
  // back), which every write pays on the way to its quorum. Nothing in this Ready waits for it
  // (the core asks for nothing that needs these records durable before LogDurable says so).
  if (!records.empty()) {
    FlushOutbox();
    if (!log_writer_->WriteHereIfIdle(records)) log_writer_->Enqueue(std::move(records));
  }
}

void Replicator::CommitThrough(Zxid zxid) {
  std::vector<CommittedEntry> committed;
  while (!uncommitted_.empty() && Zxid::FromInt(uncommitted_.front().zxid()) <= zxid) {
    internal::LogEntry& entry = uncommitted_.front();
    CommittedEntry& out = committed.emplace_back();
    out.zxid = Zxid::FromInt(entry.zxid());
    std::map<Zxid, LocalWrite>* waiting = &proposed_;
    auto it = proposed_.find(out.zxid);
    if (it == proposed_.end()) {
      waiting = &awaiting_;
      it = awaiting_.find(out.zxid);
    }
    if (it != waiting->end()) {
      out.txn = std::move(it->second.txn);
      out.done = std::move(it->second.done);
      waiting->erase(it);
    } else {
      out.payload = std::move(*entry.mutable_payload());
    }
    uncommitted_.pop_front();
  }
  if (!committed.empty()) state_machine_->Commit(std::move(committed));
}

void Replicator::OnRole(const zab::Ready::RoleChange& change) {
  const RoleState next{change.role, change.leader, change.epoch, change.serving};
  RoleState previous;
  {
    absl::MutexLock lock(&mu_);
    previous = role_;
    role_ = next;
  }
  // The state machine hears first: its clients' streams end, so they see a lost connection
  // (and retry what is idempotent elsewhere) rather than answers from a member that is leaving.
  state_machine_->RoleChanged(next);
  if (previous.serving) {
    FailInFlight(absl::StrCat("member ", options_.self.value(), " stopped serving (now ",
                              zab::RoleName(change.role),
                              ") before this write was decided; its outcome is unknown (it "
                              "may be applied)"));
  }
  if (change.role == zab::Role::kLeading && change.serving) {
    spdlog::info("member {} leads epoch {}", options_.self.value(), change.epoch);
  } else if (change.role == zab::Role::kFollowing && change.serving) {
    spdlog::info("member {} follows leader {} in epoch {}", options_.self.value(),
                 change.leader.value(), change.epoch);
  }
}

void Replicator::FailInFlight(absl::string_view why) {
  const absl::Status unknown = MakeError(v1::UNAVAILABLE, why);
  for (auto& [zxid, write] : proposed_) std::move(write.done)(ErrorResult(unknown));
  proposed_.clear();
  for (auto& [zxid, write] : awaiting_) std::move(write.done)(ErrorResult(unknown));
  awaiting_.clear();
  for (auto& [seq, write] : forwarded_) std::move(write.done)(ErrorResult(unknown));
  forwarded_.clear();
  for (auto& [seq, barrier] : barriers_) {
    std::move(barrier.done)(MakeError(v1::UNAVAILABLE, "the leader went away; retry the Sync"));
  }
  barriers_.clear();
  FailLeaderBarriers("this member stopped leading before its leadership was confirmed; retry");
}

void Replicator::Send(MemberId to, internal::PeerEnvelope envelope) {
  if (network_ != nullptr) outbox_[to].push_back(std::move(envelope));
}

void Replicator::FlushOutbox() {
  for (auto& [to, envelopes] : outbox_) {
    if (!envelopes.empty()) network_->Send(to, std::exchange(envelopes, {}));
  }
}

}  // namespace confab::pipeline
