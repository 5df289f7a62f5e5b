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
#include "server/common/errors.h"
#include "server/common/stat_proto.h"
#include "server/storage/snapshot.h"
#include "spdlog/spdlog.h"

namespace confab::pipeline {
namespace {

// Nodes copied out of the tree per read-locked step while writing a snapshot.
constexpr size_t kSnapshotChunkNodes = 1024;

void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

internal::TxnResult ErrorResult(const absl::Status& status) {
  internal::TxnResult result;
  ToProto(status, result.mutable_error());
  return result;
}

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
      history_(options.watch_history_events, Zxid()),
      tracker_(options.tick_ms) {}

Replica::~Replica() { Shutdown(); }

int64_t Replica::NowMs() const { return absl::ToUnixMillis(absl::Now()); }

absl::StatusOr<std::unique_ptr<Replica>> Replica::Open(const ReplicaOptions& options) {
  std::unique_ptr<Replica> replica(new Replica(options));
  if (auto status = replica->Recover(); !status.ok()) return status;
  replica->Start();
  return replica;
}

absl::Status Replica::Recover() {
  absl::Time start = absl::Now();
  auto dir = storage::DataDir::Open(options_.data_dir);
  if (!dir.ok()) return dir.status();
  data_dir_ = std::move(*dir);

  absl::MutexLock tree_lock(&tree_mu_);
  auto snapshot = storage::LoadLatestSnapshot(data_dir_->snap_dir(), &tree_, &recovery_.warnings);
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

  // Changes replayed from the log are remembered too: a client resuming after a restart gets
  // what it missed.
  history_ = watches::ChangeHistory(options_.watch_history_events, tree_.last_applied());

  auto log = storage::TxnLog::Open(data_dir_->log_dir(), options_.log, &recovery_.log);
  if (!log.ok()) return log.status();
  recovered_log_ = std::move(*log);

  // Replay what the snapshot does not cover. The log must continue the snapshot without a gap.
  std::vector<tree::WatchTrigger> triggers;
  absl::Status replay = recovered_log_->ReadAfter(
      tree_.last_applied(), [&](Zxid zxid, absl::string_view payload) -> absl::Status {
        Zxid prev = tree_.last_applied();
        bool contiguous =
            zxid == prev.Next() || (zxid.epoch() > prev.epoch() && zxid.counter() == 1);
        if (!contiguous) {
          return absl::DataLossError(
              absl::StrCat("log in ", data_dir_->log_dir(), " does not continue the state at zxid ",
                           prev.ToString(), ": next record is ", zxid.ToString(),
                           "; refusing to start with a gap in the history"));
        }
        internal::Txn txn;
        if (!txn.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
          return absl::DataLossError(absl::StrCat("log record ", zxid.ToString(), " in ",
                                                  data_dir_->log_dir(),
                                                  " has a valid checksum but does not parse"));
        }
        internal::TxnResult result;
        triggers.clear();
        tree_.Apply(zxid, txn, &result, &triggers);
        for (const tree::WatchTrigger& trigger : triggers) history_.Record(zxid, trigger);
        ++recovery_.log_records_replayed;
        return absl::OkStatus();
      });
  if (!replay.ok()) return replay;
  recovery_.last_zxid = tree_.last_applied();

  // A new epoch for this run, durable before any zxid of it is used (ZAB: acceptedEpoch, then
  // currentEpoch; never derived from file names).
  auto accepted = data_dir_->ReadEpoch("accepted_epoch");
  if (!accepted.ok()) return accepted.status();
  auto current = data_dir_->ReadEpoch("current_epoch");
  if (!current.ok()) return current.status();
  Epoch epoch = std::max({*accepted, *current, tree_.last_applied().epoch(),
                          recovered_log_->last_zxid().epoch()}) +
                1;
  if (auto status = data_dir_->WriteEpoch("accepted_epoch", epoch); !status.ok()) return status;
  if (auto status = data_dir_->WriteEpoch("current_epoch", epoch); !status.ok()) return status;
  recovery_.epoch = epoch;

  {
    absl::MutexLock lock(&propose_mu_);
    last_proposed_ = Zxid(epoch, 0);
    durable_ = last_proposed_;
    // ZooKeeper's scheme: member id in the top byte, the start time below, then a counter.
    next_session_id_ = static_cast<int64_t>((static_cast<uint64_t>(options_.member_id) << 56) |
                                            ((static_cast<uint64_t>(NowMs()) << 24) >> 8));
  }
  {
    absl::MutexLock lock(&tracker_mu_);
    int64_t now = NowMs();
    for (const tree::SessionInfo& session : tree_.Sessions()) {
      tracker_.Add(session.id, session.timeout_ms, now);
    }
  }
  recovery_.duration_ms = absl::ToInt64Milliseconds(absl::Now() - start);
  return absl::OkStatus();
}

void Replica::Start() {
  log_writer_ = std::make_unique<storage::LogWriter>(
      std::move(recovered_log_), [this](Zxid durable, size_t) { OnDurable(durable); },
      [this](const absl::Status& error) { OnLogFailure(error); });
  {
    absl::MutexLock lock(&propose_mu_);
    accepting_ = true;
  }
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  tick_thread_ = std::thread([this] { TickLoop(); });
  snapshot_thread_ = std::thread([this] { SnapshotLoop(); });
}

// ---- Write path --------------------------------------------------------------------------

void Replica::Submit(internal::Txn txn, WriteDone done) {
  std::string payload = txn.SerializeAsString();
  absl::Status refused;
  {
    absl::MutexLock lock(&propose_mu_);
    if (!accepting_) {
      refused = log_error_.ok()
                    ? MakeError(v1::UNAVAILABLE, "server is shutting down")
                    : MakeError(v1::UNAVAILABLE, absl::StrCat("server cannot write its log: ",
                                                              log_error_.message()));
    } else {
      Zxid zxid = last_proposed_.Next();
      last_proposed_ = zxid;
      // Enqueue under the same lock that assigned the zxid: the log sees zxid order.
      log_writer_->Enqueue(zxid, std::move(payload));
      pending_.push_back(Pending{zxid, std::move(txn), std::move(done)});
      return;
    }
  }
  std::move(done)(ErrorResult(refused));
}

void Replica::OnDurable(Zxid durable) {
  absl::MutexLock lock(&propose_mu_);
  if (durable > durable_) durable_ = durable;
}

void Replica::OnLogFailure(const absl::Status& error) {
  spdlog::critical("transaction log failed: {}; no further writes will be acknowledged",
                   error.ToString());
  absl::MutexLock lock(&propose_mu_);
  log_error_ = error;
  accepting_ = false;
}

void Replica::ApplyLoop() {
  NameThisThread("confab-apply");
  for (;;) {
    std::vector<Pending> batch;
    std::vector<Pending> failed;
    {
      absl::MutexLock lock(&propose_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(propose_mu_) {
        return stopping_ ||
               (!pending_.empty() && (pending_.front().zxid <= durable_ || !log_error_.ok()));
      };
      propose_mu_.Await(absl::Condition(&ready));
      while (!pending_.empty() && pending_.front().zxid <= durable_) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
      if (!log_error_.ok()) {
        // Never durable, never applied: the client is told so.
        while (!pending_.empty()) {
          failed.push_back(std::move(pending_.front()));
          pending_.pop_front();
        }
      }
      if (batch.empty() && failed.empty() && stopping_) return;
    }
    if (!batch.empty()) ApplyBatch(&batch);
    for (Pending& p : failed) {
      std::move(p.done)(
          ErrorResult(MakeError(v1::UNAVAILABLE,
                                "the server's log failed before this write was durable; it was not "
                                "applied, retry against a healthy server")));
    }
  }
}

void Replica::ApplyBatch(std::vector<Pending>* batch) {
  std::vector<tree::WatchTrigger> triggers;
  std::vector<watches::Delivery> deliveries;
  for (Pending& p : *batch) {
    internal::TxnResult result;
    {
      absl::MutexLock lock(&tree_mu_);
      triggers.clear();
      tree_.Apply(p.zxid, p.txn, &result, &triggers);
      result.set_zxid(p.zxid.ToInt());
      bool ok = !result.has_error() || result.error().code() == v1::OK;
      if (ok && p.txn.has_create_session()) {
        absl::MutexLock tracker_lock(&tracker_mu_);
        tracker_.Add(SessionId(p.txn.create_session().session_id()),
                     p.txn.create_session().timeout_ms(), NowMs());
      }
      for (const tree::WatchTrigger& trigger : triggers) {
        history_.Record(p.zxid, trigger);
        deliveries.clear();
        watches_.Trigger(trigger, p.zxid, &deliveries);
        for (watches::Delivery& d : deliveries) {
          v1::SessionResponse message;
          *message.mutable_event() = std::move(d.event);
          DeliverLocked(d.session, std::move(message));
        }
      }
      if (ok && p.txn.has_close_session()) {
        SessionId id(p.txn.close_session().session_id());
        watches_.RemoveSession(id);
        v1::SessionResponse notice;
        ToProto(
            MakeError(v1::SESSION_EXPIRED, absl::StrCat("session ", id.ToString(), " is closed")),
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
    std::move(p.done)(std::move(result));
  }
  absl::MutexLock lock(&propose_mu_);
  applied_since_snapshot_ += batch->size();
  if (options_.snapshot_every_txns > 0 && applied_since_snapshot_ >= options_.snapshot_every_txns &&
      !snapshot_requested_) {
    snapshot_requested_ = true;
    applied_since_snapshot_ = 0;
  }
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
    lost.mutable_event()->set_zxid(tree_.last_applied().ToInt());
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
  return absl::OkStatus();
}

SessionId Replica::NextSessionId() { return SessionId(++next_session_id_); }

void Replica::OpenSession(int32_t requested_timeout_ms, OpenDone done) {
  int32_t timeout = std::clamp(requested_timeout_ms, options_.session_timeout_min_ms,
                               options_.session_timeout_max_ms);
  SessionId id;
  {
    absl::MutexLock lock(&propose_mu_);
    id = NextSessionId();
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
  Submit(std::move(txn), [id, timeout, done = std::move(done)](internal::TxnResult result) mutable {
    if (result.has_error() && result.error().code() != v1::OK) {
      std::move(done)(FromProto(result.error()));
      return;
    }
    v1::SessionOpened opened;
    FillOpened(id, timeout, /*resumed=*/false, Zxid::FromInt(result.zxid()), &opened);
    std::move(done)(std::move(opened));
  });
}

absl::StatusOr<v1::SessionOpened> Replica::ResumeSession(SessionId id) {
  absl::MutexLock lock(&tree_mu_);
  std::optional<int32_t> timeout_ms = tree_.SessionTimeout(id);
  bool alive = false;
  if (timeout_ms.has_value()) {
    absl::MutexLock tracker_lock(&tracker_mu_);
    alive = tracker_.Touch(id, NowMs());  // false: expired, its close is on the way
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
  FillOpened(id, *timeout_ms, /*resumed=*/true, tree_.last_applied(), &opened);
  return opened;
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
  Zxid zxid = tree_.last_applied();
  switch (request.request_case()) {
    case v1::SessionRequest::kGet: {
      const v1::GetRequest& get = request.get();
      auto node = tree_.Get(get.path());
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
      auto stat = tree_.GetStat(exists.path());
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
      absl::Status status = tree_.GetChildren(get.path(), &children, &stat);
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
      // Standalone: every acknowledged write is applied before its acknowledgement.
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
      absl::MutexLock lock(&propose_mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(propose_mu_) { return stopping_; };
      if (propose_mu_.AwaitWithTimeout(absl::Condition(&stop),
                                       absl::Milliseconds(options_.tick_ms))) {
        return;
      }
    }
    std::vector<SessionId> expired;
    {
      const int64_t now = NowMs();
      absl::MutexLock lock(&tracker_mu_);
      if (now - last_tick_ms > stall_ms) {
        spdlog::warn("the server did not run for {} ms; every session gets a fresh timeout",
                     now - last_tick_ms);
        tracker_.TouchAll(now);
      }
      last_tick_ms = now;
      expired = tracker_.TakeExpired(now);
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
      absl::MutexLock lock(&propose_mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(propose_mu_) {
        return stopping_ || snapshot_requested_;
      };
      propose_mu_.Await(absl::Condition(&wake));
      if (stopping_) return;
    }
    absl::Status status = WriteSnapshot();
    if (!status.ok()) spdlog::error("snapshot failed: {}", status.ToString());
    absl::MutexLock lock(&propose_mu_);
    snapshot_requested_ = false;
    if (status.ok()) ++snapshots_written_;
  }
}

absl::Status Replica::WriteSnapshot() {
  absl::Time start = absl::Now();
  tree::SnapshotCursor cursor;
  {
    absl::MutexLock lock(&tree_mu_);
    cursor = tree_.BeginSnapshot();
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
        more = tree_.NextSnapshotChunk(
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
    tree_.EndSnapshot();
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
  std::vector<storage::SnapshotInfo> kept = storage::ListSnapshots(data_dir_->snap_dir());
  if (kept.empty()) return absl::OkStatus();
  return log_writer_->PurgeThrough(kept.back().zxid);
}

// ---- Status and shutdown -------------------------------------------------------------------

Replica::Stats Replica::stats() const {
  Stats stats;
  {
    absl::ReaderMutexLock lock(&tree_mu_);
    stats.last_applied = tree_.last_applied();
    stats.digest = tree_.digest();
    stats.nodes = tree_.node_count();
    stats.sessions = tree_.session_count();
    stats.watches = watches_.watch_count();
  }
  if (log_writer_ != nullptr) stats.log = log_writer_->stats();
  absl::MutexLock lock(&propose_mu_);
  stats.snapshots_written = snapshots_written_;
  return stats;
}

Zxid Replica::last_applied() const {
  absl::ReaderMutexLock lock(&tree_mu_);
  return tree_.last_applied();
}

absl::Status Replica::health() const {
  absl::MutexLock lock(&propose_mu_);
  return log_error_;
}

void Replica::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  {
    absl::MutexLock lock(&propose_mu_);
    accepting_ = false;
  }
  // Everything accepted becomes durable and is applied and answered before the threads end.
  if (log_writer_ != nullptr) log_writer_->Flush();
  {
    absl::MutexLock lock(&propose_mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(propose_mu_) {
      return pending_.empty() || !log_error_.ok();
    };
    propose_mu_.Await(absl::Condition(&drained));
    stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
  if (tick_thread_.joinable()) tick_thread_.join();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  if (log_writer_ != nullptr) log_writer_->Stop();
}

}  // namespace confab::pipeline
