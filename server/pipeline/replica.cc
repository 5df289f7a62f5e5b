#include "server/pipeline/replica.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/check.h"
#include "server/common/errors.h"
#include "server/common/stat_proto.h"
#include "server/storage/snapshot.h"
#include "spdlog/spdlog.h"

namespace confab::pipeline {
namespace {

// Nodes copied out of the tree per read-locked step while writing a snapshot.
constexpr size_t kSnapshotChunkNodes = 1024;

void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

// Set on the apply thread while it applies a batch and runs what the batch answers.
thread_local bool applying_batch = false;

void FillOpened(SessionId id, int32_t timeout_ms, bool resumed, Zxid zxid,
                v1::SessionOpened* opened) {
  opened->set_session_id(id.value());
  opened->set_timeout_ms(timeout_ms);
  opened->set_resumed(resumed);
  opened->set_zxid(zxid.ToInt());
}

}  // namespace

Replica::Replica(const ReplicaOptions& options)
    : options_(options),
      tree_(std::make_unique<tree::DataTree>()),
      history_(options.watch_history_events, Zxid()),
      tracker_(options.tick_ms) {}

Replica::~Replica() { Shutdown(); }

int64_t Replica::NowMs() const { return absl::ToUnixMillis(absl::Now()); }

absl::StatusOr<std::unique_ptr<Replica>> Replica::Open(const ReplicaOptions& options) {
  if (options.members.size() > 1 && options.network == nullptr) {
    return absl::InvalidArgumentError("an ensemble of several members needs a peer network");
  }
  if (options.self.value() > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("member id ", options.self.value(), " is above 255"));
  }
  std::unique_ptr<Replica> replica(new Replica(options));
  RecoveredLog recovered;
  if (auto status = replica->Recover(&recovered); !status.ok()) return status;
  replica->Start(std::move(recovered));
  if (replica->standalone()) {
    // An ensemble of one elects itself at once; callers expect it to serve when Open returns.
    const absl::Time deadline = absl::Now() + options.standalone_ready_timeout;
    while (!replica->serving()) {
      if (absl::Now() > deadline) {
        absl::Status health = replica->health();
        return absl::UnavailableError(
            absl::StrCat("the standalone member did not start serving within ",
                         absl::FormatDuration(options.standalone_ready_timeout),
                         health.ok() ? std::string() : absl::StrCat(": ", health.message())));
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  return replica;
}

absl::Status Replica::Recover(RecoveredLog* recovered) {
  absl::Time start = absl::Now();
  auto dir = storage::DataDir::Open(options_.data_dir);
  if (!dir.ok()) return dir.status();
  data_dir_ = std::move(*dir);

  absl::MutexLock tree_lock(&tree_mu_);
  auto snapshot =
      storage::LoadLatestSnapshot(data_dir_->snap_dir(), tree_.get(), &recovery_.warnings);
  if (!snapshot.ok()) return snapshot.status();
  if (snapshot->has_value()) {
    recovery_.snapshot_zxid = (*snapshot)->zxid;
    recovery_.snapshot_path = (*snapshot)->path;
  } else if (!storage::ListSnapshots(data_dir_->snap_dir()).empty()) {
    // The log is purged only up to a snapshot; without any usable one, what it no longer holds
    // would be silently missing.
    return absl::DataLossError(absl::StrCat(
        "no snapshot in ", data_dir_->snap_dir(), " is usable (",
        absl::StrJoin(recovery_.warnings, "; "),
        "); refusing to start from the log alone, which may have been purged up to them"));
  }
  const Zxid snapshot_zxid = tree_->last_applied();
  // Changes applied from here on are remembered: a client resuming after a restart gets what it
  // missed since the snapshot.
  history_ = watches::ChangeHistory(options_.watch_history_events, snapshot_zxid);

  auto log = storage::TxnLog::Open(data_dir_->log_dir(), options_.log, &recovery_.log);
  if (!log.ok()) return log.status();
  if ((*log)->last_zxid() < snapshot_zxid) {
    // A snapshot received from a leader is newer than anything this member logged (it was behind):
    // the log restarts after it. A crash may have come between the two.
    if (auto status = (*log)->TruncateAfter(Zxid()); !status.ok()) return status;
  }

  // Entries after the snapshot are durable but not known to be committed: the replicator applies
  // them once its leader (itself, standalone) says they are. The log must continue the snapshot
  // without a gap.
  absl::Status read =
      (*log)->ReadAfter(snapshot_zxid, [&](Zxid zxid, absl::string_view payload) -> absl::Status {
        Zxid prev =
            recovered->tail.empty() ? snapshot_zxid : Zxid::FromInt(recovered->tail.back().zxid());
        bool contiguous =
            zxid == prev.Next() || (zxid.epoch() > prev.epoch() && zxid.counter() == 1);
        if (!contiguous) {
          return absl::DataLossError(
              absl::StrCat("log in ", data_dir_->log_dir(), " does not continue the state at zxid ",
                           prev.ToString(), ": next record is ", zxid.ToString(),
                           "; refusing to start with a gap in the history"));
        }
        internal::LogEntry& entry = recovered->tail.emplace_back();
        entry.set_zxid(zxid.ToInt());
        entry.set_payload(std::string(payload));
        return absl::OkStatus();
      });
  if (!read.ok()) return read;
  recovery_.log_records_after_snapshot = recovered->tail.size();
  recovery_.last_zxid =
      recovered->tail.empty() ? snapshot_zxid : Zxid::FromInt(recovered->tail.back().zxid());

  auto accepted = data_dir_->ReadEpoch("accepted_epoch");
  if (!accepted.ok()) return accepted.status();
  auto current = data_dir_->ReadEpoch("current_epoch");
  if (!current.ok()) return current.status();
  if (*current > *accepted) {
    return absl::DataLossError(absl::StrCat("current_epoch ", *current, " is above accepted_epoch ",
                                            *accepted, " in ", data_dir_->path()));
  }
  recovery_.accepted_epoch = *accepted;
  recovery_.current_epoch = *current;
  recovered->epochs = zab::PersistentState{*accepted, *current};
  recovered->snapshot_zxid = snapshot_zxid;
  recovered->log = std::move(*log);

  {
    absl::MutexLock lock(&apply_mu_);
    applied_ = snapshot_zxid;
    // ZooKeeper's scheme: member id in the top byte, the start time below, then a counter.
    next_session_id_ = static_cast<int64_t>((static_cast<uint64_t>(options_.self.value()) << 56) |
                                            ((static_cast<uint64_t>(NowMs()) << 24) >> 8));
  }
  {
    absl::MutexLock lock(&tracker_mu_);
    int64_t now = NowMs();
    for (const tree::SessionInfo& session : tree_->Sessions()) {
      tracker_.Add(session.id, session.timeout_ms, now);
    }
  }
  recovery_.duration_ms = absl::ToInt64Milliseconds(absl::Now() - start);
  return absl::OkStatus();
}

void Replica::Start(RecoveredLog recovered) {
  ReplicatorOptions options;
  options.self = options_.self.IsNone() ? MemberId(1) : options_.self;
  options.members =
      options_.members.empty() ? std::vector<MemberId>{options.self} : options_.members;
  options.tick_ms = options_.tick_ms;
  options.election_timeout_ticks = options_.election_timeout_ticks;
  options.init_limit_ticks = options_.init_limit_ticks;
  options.sync_limit_ticks = options_.sync_limit_ticks;
  options.snap_dir = data_dir_->snap_dir();
  StateMachine* state_machine = this;
  replicator_ = std::make_unique<Replicator>(std::move(options), std::move(recovered),
                                             data_dir_.get(), state_machine, options_.network);
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  tick_thread_ = std::thread([this] { TickLoop(); });
  snapshot_thread_ = std::thread([this] { SnapshotLoop(); });
  replicator_->Start();
}

void Replica::SetServingListener(ServingListener listener) {
  absl::MutexLock lock(&apply_mu_);
  serving_listener_ = std::move(listener);
}

void Replica::SetAppliedListener(AppliedListener listener) {
  absl::MutexLock lock(&apply_mu_);
  applied_listener_ = std::move(listener);
}

bool Replica::ApplyingBatch() { return applying_batch; }

absl::Status Replica::NotServing() const {
  RoleState state = role();
  return MakeError(v1::UNAVAILABLE,
                   absl::StrCat("member ", options_.self.value(), " is not serving (",
                                state.role == zab::Role::kLooking ? "electing a leader"
                                                                  : "synchronizing with the leader",
                                "); try another member or retry"));
}

// ---- Write path --------------------------------------------------------------------------

void Replica::Submit(internal::Txn txn, WriteDone done) {
  replicator_->Propose(std::move(txn), std::move(done));
}

void Replica::Sync(StatusDone done) {
  replicator_->Barrier([this, done = std::move(done)](absl::StatusOr<Zxid> target) mutable {
    if (!target.ok()) {
      std::move(done)(target.status());
      return;
    }
    WhenApplied(*target, std::move(done));
  });
}

void Replica::WhenApplied(Zxid zxid, StatusDone done) {
  {
    absl::MutexLock lock(&apply_mu_);
    if (applied_ < zxid && !stopping_) {
      applied_waiters_.emplace(zxid, std::move(done));
      return;
    }
  }
  std::move(done)(absl::OkStatus());
}

// ---- StateMachine: what the replicator hands over ------------------------------------------

void Replica::Commit(std::vector<CommittedEntry> entries) {
  {
    absl::MutexLock lock(&apply_mu_);
    // A small commit that finds the apply thread idle is applied right here, on the replicator's
    // thread: a lone write goes from its commit to its reply without waking another thread (one
    // hop less on the path of every write at low load). Anything queued or being applied, or a
    // larger batch, goes to the apply thread, so that order holds and the replicator's thread is
    // not slowed by applying under load.
    if (applying_ || !committed_.empty() || stopping_ || entries.size() > kInlineApplyEntriesMax) {
      for (CommittedEntry& entry : entries) committed_.push_back(std::move(entry));
      return;
    }
    applying_ = true;
  }
  ApplyBatch(absl::MakeSpan(entries));
}

absl::Status Replica::InstallSnapshot(const std::string& path, Zxid zxid) {
  {
    // Everything committed before the snapshot is applied first (and nothing after it can be
    // committed until the replicator, blocked here, hears the snapshot is installed).
    absl::MutexLock lock(&apply_mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_) {
      return stopping_ || (committed_.empty() && !applying_);
    };
    apply_mu_.Await(absl::Condition(&idle));
  }
  auto fresh = std::make_unique<tree::DataTree>();
  // Exactly the fetched file: the snapshot thread may be writing one of its own meanwhile.
  if (auto loaded = storage::LoadSnapshotFile(path, zxid, fresh.get()); !loaded.ok()) {
    return loaded.status();
  }
  {
    absl::MutexLock tree_lock(&tree_mu_);
    tree_ = std::move(fresh);
    // Watches were set on a state that is gone; their clients re-add them from the zxid they saw
    // and are told what this member cannot replay.
    watches_ = watches::WatchRegistry();
    history_ = watches::ChangeHistory(options_.watch_history_events, zxid);
    absl::MutexLock tracker_lock(&tracker_mu_);
    tracker_ = sessions::SessionTracker(options_.tick_ms);
    const int64_t now = NowMs();
    for (const tree::SessionInfo& session : tree_->Sessions()) {
      tracker_.Add(session.id, session.timeout_ms, now);
    }
  }
  absl::MutexLock lock(&apply_mu_);
  applied_ = zxid;
  return absl::OkStatus();
}

void Replica::TouchSessions(const std::vector<SessionId>& sessions) {
  absl::MutexLock lock(&tracker_mu_);
  const int64_t now = NowMs();
  for (SessionId id : sessions) tracker_.Touch(id, now);
}

void Replica::RoleChanged(const RoleState& state) {
  if (state.role == zab::Role::kLeading && state.serving) {
    // Followers' reports of their clients never reached this member: every session starts a
    // fresh timeout under the new leader (as ZooKeeper's leader does).
    absl::MutexLock lock(&tracker_mu_);
    tracker_.TouchAll(NowMs());
  }
  ServingListener listener;
  {
    absl::MutexLock lock(&apply_mu_);
    listener = serving_listener_;
  }
  if (listener) listener(state);
}

void Replica::ApplyLoop() {
  NameThisThread("confab-apply");
  for (;;) {
    std::vector<CommittedEntry> batch;
    {
      absl::MutexLock lock(&apply_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_) {
        return !applying_ && (stopping_ || !committed_.empty());
      };
      apply_mu_.Await(absl::Condition(&ready));
      if (committed_.empty()) return;  // stopping, and everything committed is applied
      batch.swap(committed_);
      applying_ = true;
    }
    ApplyBatch(absl::MakeSpan(batch));
  }
}

void Replica::ApplyBatch(absl::Span<CommittedEntry> batch) {
  applying_batch = true;
  for (CommittedEntry& entry : batch) Apply(entry);
  std::vector<StatusDone> released;
  AppliedListener applied_listener;
  {
    absl::MutexLock lock(&apply_mu_);
    applying_ = false;
    applied_ = batch.back().zxid;
    while (!applied_waiters_.empty() && applied_waiters_.begin()->first <= applied_) {
      released.push_back(std::move(applied_waiters_.begin()->second));
      applied_waiters_.erase(applied_waiters_.begin());
    }
    applied_since_snapshot_ += batch.size();
    if (options_.snapshot_every_txns > 0 &&
        applied_since_snapshot_ >= options_.snapshot_every_txns && !snapshot_requested_) {
      snapshot_requested_ = true;
      applied_since_snapshot_ = 0;
    }
    applied_listener = applied_listener_;
  }
  for (StatusDone& done : released) std::move(done)(absl::OkStatus());
  applying_batch = false;
  if (applied_listener) applied_listener();
}

void Replica::Apply(CommittedEntry& entry) {
  internal::TxnResult result;
  if (!entry.txn.has_value()) {
    entry.txn.emplace();
    // The log's checksums passed and the leader built it: a payload that does not parse is a bug.
    CONFAB_CHECK(entry.txn->ParseFromString(entry.payload), "committed transaction ",
                 entry.zxid.ToString(), " does not parse");
  }
  const internal::Txn& txn = *entry.txn;
  std::vector<tree::WatchTrigger> triggers;
  std::vector<watches::Delivery> deliveries;
  {
    absl::MutexLock lock(&tree_mu_);
    tree_->Apply(entry.zxid, txn, &result, &triggers);
    result.set_zxid(entry.zxid.ToInt());
    bool ok = !result.has_error() || result.error().code() == v1::OK;
    if (ok && txn.has_create_session()) {
      absl::MutexLock tracker_lock(&tracker_mu_);
      tracker_.Add(SessionId(txn.create_session().session_id()), txn.create_session().timeout_ms(),
                   NowMs());
    }
    for (const tree::WatchTrigger& trigger : triggers) {
      history_.Record(entry.zxid, trigger);
      deliveries.clear();
      watches_.Trigger(trigger, entry.zxid, &deliveries);
      for (watches::Delivery& d : deliveries) {
        v1::SessionResponse message;
        *message.mutable_event() = std::move(d.event);
        DeliverLocked(d.session, std::move(message));
      }
    }
    if (ok && txn.has_close_session()) {
      SessionId id(txn.close_session().session_id());
      watches_.RemoveSession(id);
      v1::SessionResponse notice;
      ToProto(MakeError(v1::SESSION_EXPIRED, absl::StrCat("session ", id.ToString(), " is closed")),
              notice.mutable_error());
      DeliverLocked(id, std::move(notice));
      {
        absl::MutexLock sinks_lock(&sinks_mu_);
        sinks_.erase(id);
      }
      absl::MutexLock tracker_lock(&tracker_mu_);
      tracker_.Remove(id);
    }
  }
  // Answered before the next transaction applies: a request this one's reply releases (a read
  // queued behind it on the same session) sees exactly the state up to this zxid.
  if (entry.done) std::move(entry.done)(std::move(result));
}

void Replica::DeliverLocked(SessionId session, v1::SessionResponse message) {
  absl::MutexLock lock(&sinks_mu_);
  auto it = sinks_.find(session);
  if (it == sinks_.end()) return;
  SinkState& state = it->second;
  if (state.sink != nullptr) {
    state.sink->Deliver(std::move(message));
    return;
  }
  if (state.queued.size() >= options_.detached_events_max) {
    // Keeping more would let one absent client grow the server without bound. Its watches go;
    // it is told so when it comes back and must re-read (ZooKeeper drops them too).
    state.queued.clear();
    watches_.RemoveSession(session);
    v1::SessionResponse lost;
    lost.mutable_event()->set_type(v1::WATCHES_LOST);
    lost.mutable_event()->set_path("/");
    lost.mutable_event()->set_zxid(tree_->last_applied().ToInt());
    state.queued.push_back(std::move(lost));
    return;
  }
  state.queued.push_back(std::move(message));
}

// ---- Sessions ----------------------------------------------------------------------------

absl::Status Replica::TouchSession(SessionId id) {
  absl::MutexLock lock(&tracker_mu_);
  if (!tracker_.Touch(id, NowMs())) {
    return MakeError(v1::SESSION_EXPIRED,
                     absl::StrCat("session ", id.ToString(), " is expired, closed or unknown"));
  }
  touched_.push_back(id);
  return absl::OkStatus();
}

void Replica::OpenSession(int32_t requested_timeout_ms, OpenDone done) {
  int32_t timeout = std::clamp(requested_timeout_ms, options_.session_timeout_min_ms,
                               options_.session_timeout_max_ms);
  SessionId id;
  {
    absl::MutexLock lock(&apply_mu_);
    id = SessionId(++next_session_id_);
  }
  internal::Txn txn;
  txn.set_time_ms(NowMs());
  txn.set_session_id(id.value());
  txn.mutable_create_session()->set_session_id(id.value());
  txn.mutable_create_session()->set_timeout_ms(timeout);
  {
    absl::MutexLock lock(&sinks_mu_);
    sinks_[id];  // events may start arriving before the stream attaches
  }
  Submit(std::move(txn),
         [this, id, timeout, done = std::move(done)](internal::TxnResult result) mutable {
           if (result.has_error() && result.error().code() != v1::OK) {
             {
               absl::MutexLock lock(&sinks_mu_);
               auto it = sinks_.find(id);
               if (it != sinks_.end() && it->second.sink == nullptr) sinks_.erase(it);
             }
             std::move(done)(FromProto(result.error()));
             return;
           }
           v1::SessionOpened opened;
           FillOpened(id, timeout, /*resumed=*/false, Zxid::FromInt(result.zxid()), &opened);
           std::move(done)(std::move(opened));
         });
}

absl::StatusOr<v1::SessionOpened> Replica::TryResume(SessionId id) {
  if (!serving()) return NotServing();
  absl::MutexLock lock(&tree_mu_);
  std::optional<int32_t> timeout_ms = tree_->SessionTimeout(id);
  bool alive = false;
  if (timeout_ms.has_value()) {
    absl::MutexLock tracker_lock(&tracker_mu_);
    alive = tracker_.Touch(id, NowMs());  // false: expired, its close is on the way
    if (alive) touched_.push_back(id);
  }
  if (!alive) {
    return MakeError(v1::SESSION_EXPIRED,
                     absl::StrCat("session ", id.ToString(), " is expired, closed or unknown"));
  }
  // Watches belong to a stream: what was registered or queued for the old one goes, and the
  // client re-adds its watches from the last zxid it saw (AddWatch start_zxid).
  watches_.RemoveSession(id);
  {
    absl::MutexLock sinks_lock(&sinks_mu_);
    sinks_[id].queued.clear();
  }
  v1::SessionOpened opened;
  FillOpened(id, *timeout_ms, /*resumed=*/true, tree_->last_applied(), &opened);
  return opened;
}

void Replica::ResumeSession(SessionId id, OpenDone done) {
  absl::StatusOr<v1::SessionOpened> opened = TryResume(id);
  if (opened.ok() || ErrorCodeOf(opened.status()) != v1::SESSION_EXPIRED || standalone()) {
    std::move(done)(std::move(opened));
    return;
  }
  // Another member may have opened (or touched) it after this member last applied: catch up with
  // the leader before saying it is gone.
  Sync([this, id, done = std::move(done)](absl::Status synced) mutable {
    if (!synced.ok()) {
      std::move(done)(synced);
      return;
    }
    std::move(done)(TryResume(id));
  });
}

void Replica::CloseSession(SessionId id, WriteDone done) {
  internal::Txn txn;
  txn.set_time_ms(NowMs());
  txn.set_session_id(id.value());
  txn.mutable_close_session()->set_session_id(id.value());
  Submit(std::move(txn), std::move(done));
}

void Replica::AttachSink(SessionId id, std::shared_ptr<SessionSink> sink) {
  absl::MutexLock lock(&sinks_mu_);
  SinkState& state = sinks_[id];
  while (!state.queued.empty()) {
    sink->Deliver(std::move(state.queued.front()));
    state.queued.pop_front();
  }
  state.sink = std::move(sink);
}

void Replica::DetachSink(SessionId id, const SessionSink* sink) {
  absl::MutexLock lock(&sinks_mu_);
  auto it = sinks_.find(id);
  if (it != sinks_.end() && it->second.sink.get() == sink) it->second.sink = nullptr;
}

// ---- Reads -------------------------------------------------------------------------------

void Replica::Read(const v1::SessionRequest& request, SessionId session, ReadDeliver deliver) {
  v1::SessionResponse response;
  response.set_request_id(request.request_id());
  auto fail = [&](const absl::Status& status) {
    ToProto(status, response.mutable_error());
    deliver(std::move(response));
  };
  if (!serving()) {
    // A member out of the quorum may be arbitrarily behind: it answers nothing (as ZooKeeper).
    fail(NotServing());
    return;
  }
  // Watch bookkeeping changes under the read lock only through watches_, which apply touches
  // under the write lock; registering needs the tree lock exclusively for that one structure.
  bool registers = (request.has_get() && request.get().watch()) ||
                   (request.has_exists() && request.exists().watch()) ||
                   (request.has_get_children() && request.get_children().watch()) ||
                   request.has_add_watch() || request.has_remove_watch();
  if (registers) {
    tree_mu_.Lock();
  } else {
    tree_mu_.ReaderLock();
  }
  Zxid zxid = tree_->last_applied();
  switch (request.request_case()) {
    case v1::SessionRequest::kGet: {
      const v1::GetRequest& get = request.get();
      auto node = tree_->Get(get.path());
      if (get.watch() && node.ok()) watches_.Add(session, get.path(), v1::DATA_WATCH);
      if (!node.ok()) {
        fail(node.status());
        break;
      }
      v1::GetResponse* out = response.mutable_get();
      *out->mutable_data() = std::move(node->data);
      ToProto(node->stat, out->mutable_stat());
      out->set_zxid(zxid.ToInt());
      deliver(std::move(response));
      break;
    }
    case v1::SessionRequest::kExists: {
      const v1::ExistsRequest& exists = request.exists();
      auto stat = tree_->GetStat(exists.path());
      // As ZooKeeper: exists sets a data watch whether or not the node exists, so the client
      // learns of its creation.
      if (exists.watch()) watches_.Add(session, exists.path(), v1::DATA_WATCH);
      v1::ExistsResponse* out = response.mutable_exists();
      out->set_exists(stat.ok());
      if (stat.ok()) ToProto(*stat, out->mutable_stat());
      out->set_zxid(zxid.ToInt());
      deliver(std::move(response));
      break;
    }
    case v1::SessionRequest::kGetChildren: {
      const v1::GetChildrenRequest& get = request.get_children();
      std::vector<std::string> children;
      Stat stat;
      absl::Status status = tree_->GetChildren(get.path(), &children, &stat);
      if (!status.ok()) {
        fail(status);
        break;
      }
      if (get.watch()) watches_.Add(session, get.path(), v1::CHILD_WATCH);
      v1::GetChildrenResponse* out = response.mutable_get_children();
      for (std::string& child : children) out->add_children(std::move(child));
      ToProto(stat, out->mutable_stat());
      out->set_zxid(zxid.ToInt());
      deliver(std::move(response));
      break;
    }
    case v1::SessionRequest::kSync:
      // The caller ran Sync() first: every write committed before the request is applied.
      response.mutable_sync()->set_zxid(zxid.ToInt());
      deliver(std::move(response));
      break;
    case v1::SessionRequest::kAddWatch: {
      const v1::AddWatchRequest& add = request.add_watch();
      if (!v1::WatchKind_IsValid(add.kind())) {
        fail(MakeError(v1::INVALID_ARGUMENT,
                       absl::StrCat("AddWatch on ", add.path(), ": unknown kind ", add.kind())));
        break;
      }
      bool complete = true;
      bool fired = false;
      if (add.start_zxid() != 0) {
        // What the watch would have seen since start_zxid comes first, in order.
        std::vector<v1::WatchEvent> missed;
        complete = history_.Since(Zxid::FromInt(add.start_zxid()), add.path(), add.kind(), &missed);
        bool one_shot = add.kind() == v1::DATA_WATCH || add.kind() == v1::CHILD_WATCH;
        fired = one_shot && !missed.empty();
        for (v1::WatchEvent& event : missed) {
          v1::SessionResponse message;
          *message.mutable_event() = std::move(event);
          deliver(std::move(message));
        }
      }
      if (!fired) watches_.Add(session, add.path(), add.kind());
      response.mutable_add_watch()->set_zxid(zxid.ToInt());
      response.mutable_add_watch()->set_events_missed(!complete);
      deliver(std::move(response));
      break;
    }
    case v1::SessionRequest::kRemoveWatch: {
      const v1::RemoveWatchRequest& remove = request.remove_watch();
      if (!watches_.Remove(session, remove.path(), remove.kind())) {
        fail(MakeError(v1::NO_NODE, absl::StrCat("no ", v1::WatchKind_Name(remove.kind()),
                                                 " watch on ", remove.path())));
        break;
      }
      response.mutable_remove_watch();
      deliver(std::move(response));
      break;
    }
    default:
      fail(MakeError(v1::INTERNAL, "Read called with a request that is not a read"));
      break;
  }
  if (registers) {
    tree_mu_.Unlock();
  } else {
    tree_mu_.ReaderUnlock();
  }
}

// ---- Ticks and snapshots -----------------------------------------------------------------

void Replica::TickLoop() {
  NameThisThread("confab-tick");
  // A gap far beyond a tick means this process did not run (SIGSTOP, a stall): its clients'
  // heartbeats went unanswered through no fault of theirs.
  const int64_t stall_ms = std::max<int64_t>(1000, 10 * options_.tick_ms);
  int64_t last_tick_ms = NowMs();
  for (;;) {
    {
      absl::MutexLock lock(&apply_mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_) { return stopping_; };
      if (apply_mu_.AwaitWithTimeout(absl::Condition(&stop),
                                     absl::Milliseconds(options_.tick_ms))) {
        return;
      }
    }
    const RoleState state = role();
    const bool leading = state.role == zab::Role::kLeading && state.serving;
    std::vector<SessionId> expired;
    std::vector<SessionId> touched;
    {
      const int64_t now = NowMs();
      absl::MutexLock lock(&tracker_mu_);
      if (now - last_tick_ms > stall_ms) {
        spdlog::warn("the server did not run for {} ms; every session gets a fresh timeout",
                     now - last_tick_ms);
        tracker_.TouchAll(now);
      }
      last_tick_ms = now;
      touched.swap(touched_);
      // Only the leader decides expiry; a follower's clients are reported to it each tick.
      if (leading) expired = tracker_.TakeExpired(now);
    }
    if (!leading && !touched.empty() && !standalone()) {
      std::sort(touched.begin(), touched.end());
      touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
      replicator_->ForwardTouches(std::move(touched));
    }
    for (SessionId id : expired) {
      spdlog::info("session {} expired; closing it and deleting its ephemeral nodes",
                   id.ToString());
      CloseSession(id, [id](internal::TxnResult result) {
        if (result.has_error() && result.error().code() != v1::OK) {
          spdlog::warn("closing expired session {}: {}", id.ToString(), result.error().message());
        }
      });
    }
  }
}

void Replica::SnapshotLoop() {
  NameThisThread("confab-snap");
  for (;;) {
    {
      absl::MutexLock lock(&apply_mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_) {
        return stopping_ || snapshot_requested_;
      };
      apply_mu_.Await(absl::Condition(&wake));
      if (stopping_) return;
    }
    absl::Status status = WriteSnapshot();
    if (!status.ok()) spdlog::error("snapshot failed: {}", status.ToString());
    absl::MutexLock lock(&apply_mu_);
    snapshot_requested_ = false;
    if (status.ok()) ++snapshots_written_;
  }
}

absl::Status Replica::WriteSnapshot() {
  absl::Time start = absl::Now();
  tree::SnapshotCursor cursor;
  {
    absl::MutexLock lock(&tree_mu_);
    cursor = tree_->BeginSnapshot();
  }
  struct NodeCopy {
    std::string path;
    Stat stat;
    std::string data;
  };
  auto write = [&]() -> absl::StatusOr<std::string> {
    auto writer =
        storage::SnapshotWriter::Create(data_dir_->snap_dir(), cursor.zxid(), cursor.digest());
    if (!writer.ok()) return writer.status();
    for (const tree::SessionInfo& session : cursor.sessions()) {
      if (auto status = (*writer)->AddSession(session); !status.ok()) return status;
    }
    std::vector<NodeCopy> chunk;
    bool more = true;
    while (more) {
      chunk.clear();
      {
        absl::ReaderMutexLock lock(&tree_mu_);
        more = tree_->NextSnapshotChunk(
            &cursor, kSnapshotChunkNodes,
            [&](absl::string_view path, const Stat& stat, absl::string_view data) {
              chunk.push_back(NodeCopy{std::string(path), stat, std::string(data)});
            });
      }
      for (const NodeCopy& node : chunk) {
        if (auto status = (*writer)->AddNode(node.path, node.stat, node.data); !status.ok()) {
          return status;
        }
      }
    }
    return (*writer)->Commit();
  };
  absl::StatusOr<std::string> path = write();
  {
    absl::MutexLock lock(&tree_mu_);
    tree_->EndSnapshot();
  }
  if (!path.ok()) return path.status();
  spdlog::info("snapshot {} written: {} nodes at zxid {} in {} ms", *path, cursor.node_count(),
               cursor.zxid().ToString(), absl::ToInt64Milliseconds(absl::Now() - start));
  if (auto status = storage::PurgeSnapshots(data_dir_->snap_dir(), options_.snapshots_kept);
      !status.ok()) {
    return status;
  }
  // The log is needed from the oldest snapshot kept onwards (to recover from it if a newer one
  // turns out to be damaged).
  replicator_->SnapshotWritten(cursor.zxid());
  std::vector<storage::SnapshotInfo> kept = storage::ListSnapshots(data_dir_->snap_dir());
  if (kept.empty()) return absl::OkStatus();
  return replicator_->PurgeLogThrough(kept.back().zxid);
}

absl::StatusOr<std::string> Replica::SnapshotPathAt(Zxid zxid) const {
  for (const storage::SnapshotInfo& info : storage::ListSnapshots(data_dir_->snap_dir())) {
    if (info.zxid == zxid) return info.path;
  }
  return absl::NotFoundError(
      absl::StrCat("member ", options_.self.value(), " has no snapshot at zxid ", zxid.ToString()));
}

// ---- Status and shutdown -------------------------------------------------------------------

Replica::Stats Replica::stats() const {
  Stats stats;
  {
    absl::ReaderMutexLock lock(&tree_mu_);
    stats.last_applied = tree_->last_applied();
    stats.digest = tree_->digest();
    stats.nodes = tree_->node_count();
    stats.sessions = tree_->session_count();
    stats.watches = watches_.watch_count();
  }
  if (replicator_ != nullptr) stats.log = replicator_->log_stats();
  absl::MutexLock lock(&apply_mu_);
  stats.snapshots_written = snapshots_written_;
  return stats;
}

Zxid Replica::last_applied() const {
  absl::ReaderMutexLock lock(&tree_mu_);
  return tree_->last_applied();
}

absl::Status Replica::health() const { return replicator_->health(); }

void Replica::Shutdown(absl::Duration drain) {
  if (shut_down_) return;
  shut_down_ = true;
  // Writes in flight are decided (standalone: durable, hence committed) and handed to apply.
  if (replicator_ != nullptr) replicator_->Stop(drain);
  std::vector<StatusDone> waiting;
  {
    absl::MutexLock lock(&apply_mu_);
    stopping_ = true;  // the apply thread ends once everything committed is applied
    for (auto& [zxid, done] : applied_waiters_) waiting.push_back(std::move(done));
    applied_waiters_.clear();
  }
  for (StatusDone& done : waiting) {
    std::move(done)(MakeError(v1::UNAVAILABLE, "the server is shutting down"));
  }
  if (apply_thread_.joinable()) apply_thread_.join();
  if (tick_thread_.joinable()) tick_thread_.join();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
}

}  // namespace confab::pipeline
