#include "server/rpc/peer_transport.h"

#include <pthread.h>

#include <algorithm>
#include <climits>
#include <deque>
#include <fstream>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/internal/peer_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/storage/durable_file.h"
#include "spdlog/spdlog.h"

namespace confab::rpc {
namespace {

constexpr absl::Duration kReconnectBackoff = absl::Milliseconds(100);
constexpr absl::Duration kReportInterval = absl::Milliseconds(500);
constexpr absl::Duration kMaintenanceInterval = absl::Milliseconds(50);
constexpr absl::Duration kSnapshotFetchDeadline = absl::Minutes(10);

// Dead peers are noticed within seconds even on idle streams; reconnects are quick so that a
// restarted member rejoins within an election timeout.
grpc::ChannelArguments PeerChannelArguments() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per link
  args.SetMaxReceiveMessageSize(INT_MAX);
  args.SetMaxSendMessageSize(INT_MAX);
  return args;
}

}  // namespace

// One outgoing stream to one peer, with its queue; also what was last heard from that peer
// (received on the Service side).
//
// Writes go out on gRPC's callback API with no thread of the link's own: the caller that finds the
// stream idle starts the write itself (in practice the replicator's thread, handing over a round's
// messages), and each write's completion takes whatever was queued meanwhile as the next batch.
// Under load the queue fills while a write is in flight, so batches grow and no thread wakes per
// message. The transport's maintenance thread opens streams and keeps idle links reporting.
//
// A stream holds a hold on its reactor from its start until the link lets go of it (a failed
// write, or Stop), so a write can be started whenever the link says the stream is idle: gRPC
// cannot finish the stream under it. A broken idle stream is found by the next report written on
// it (at most kReportInterval later) or by the channel's keepalive failing that write.
class PeerTransport::Link {
 public:
  Link(MemberId self, PeerEndpoint peer) : self_(self), peer_(std::move(peer)) {}
  ~Link() { Stop(); }

  const PeerEndpoint& peer() const { return peer_; }

  void Start() {
    channel_ = grpc::CreateCustomChannel(peer_.address, grpc::InsecureChannelCredentials(),
                                         PeerChannelArguments());
    stub_ = internal::Peer::NewStub(channel_);
  }

  // Ends the stream and waits until gRPC is done with it; cancels snapshot downloads.
  void Stop() {
    Stream* release = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ && streams_ == 0) return;
      stopping_ = true;
      queue_.clear();
      queue_bytes_ = 0;
      for (grpc::ClientContext* fetch : fetches_) fetch->TryCancel();
      if (stream_ != nullptr) {
        stream_->context.TryCancel();
        // A write in flight lets go of the stream when it completes (it sees stopping_).
        if (!writing_) release = stream_;
        stream_ = nullptr;
      }
    }
    if (release != nullptr) release->RemoveHold();
    absl::MutexLock lock(&mu_);
    auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_ == 0; };
    mu_.Await(absl::Condition(&gone));
  }

  void Send(std::vector<internal::PeerEnvelope> envelopes) {
    Stream* stream = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      for (internal::PeerEnvelope& envelope : envelopes) {
        const size_t bytes = envelope.ByteSizeLong();
        if (queue_.size() >= kQueueEnvelopesMax || queue_bytes_ + bytes > kQueueBytesMax) {
          if (dropped_++ % 10'000 == 0) {
            spdlog::warn("peer {} ({}) is not taking messages; dropping what is queued for it",
                         peer_.id.value(), peer_.address);
          }
          queue_.clear();
          queue_bytes_ = 0;
        }
        queue_bytes_ += bytes;
        queue_.push_back(std::move(envelope));
      }
      stream = TakeIdleStream();
    }
    if (stream != nullptr) stream->StartWrite(&stream->batch);
  }

  // From the transport's maintenance thread, every kMaintenanceInterval: this member's current
  // report, sent on the next batch. Opens a stream when there is none and the peer is reachable
  // (a stream opened before that would fail its first write and lose it), and writes the report
  // on a link idle for kReportInterval: every member knows every other's state (followers
  // exchange nothing else), and a dead peer is noticed.
  void Maintain(const internal::MemberReport& report, absl::Time now) {
    Stream* write = nullptr;
    bool open = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      report_ = report;
      report_due_ = true;
      if (stream_ == nullptr) {
        open = now >= next_open_;
      } else if (now - last_write_ >= kReportInterval || !queue_.empty()) {
        write = TakeIdleStream();
      }
    }
    if (write != nullptr) {
      write->StartWrite(&write->batch);
      return;
    }
    if (!open || channel_->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) return;

    auto* stream = new Stream(this);
    stub_->async()->Send(&stream->context, &stream->end, stream);
    stream->AddHold();  // let go of by the link (see the class comment)
    {
      absl::MutexLock lock(&mu_);
      ++streams_;
      stream_ = stream;
      TakeIdleStream();  // the report, and what is queued
    }
    stream->StartWrite(&stream->batch);
    stream->StartCall();
  }

  absl::Status FetchSnapshot(Zxid zxid, const std::string& path) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kSnapshotFetchDeadline));
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::UnavailableError("the peer transport is stopping");
      fetches_.insert(&context);
    }
    struct Forget {
      Link* link;
      grpc::ClientContext* context;
      ~Forget() {
        absl::MutexLock lock(&link->mu_);
        link->fetches_.erase(context);
      }
    } forget{this, &context};
    internal::SnapshotRequest request;
    request.set_from(self_.value());
    request.set_zxid(zxid.ToInt());
    std::unique_ptr<grpc::ClientReader<internal::SnapshotChunk>> reader =
        stub_->FetchSnapshot(&context, request);
    std::string contents;
    internal::SnapshotChunk chunk;
    while (reader->Read(&chunk)) contents += chunk.data();
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      return absl::UnavailableError(absl::StrCat("fetching the snapshot at zxid ", zxid.ToString(),
                                                 " from member ", peer_.id.value(), " (",
                                                 peer_.address, "): ", status.error_message()));
    }
    return storage::WriteFileDurably(path, contents);
  }

  void Heard(const internal::PeerBatch& batch) {
    absl::MutexLock lock(&mu_);
    last_heard_ms_ = absl::ToUnixMillis(absl::Now());
    if (batch.has_report()) report_heard_ = batch.report();
  }

  pipeline::PeerLinkStatus Status() const {
    absl::MutexLock lock(&mu_);
    pipeline::PeerLinkStatus status;
    status.id = peer_.id;
    status.peer_address = peer_.address;
    status.connected = connected_;
    status.last_heard_ms = last_heard_ms_;
    status.report = report_heard_;
    return status;
  }

 private:
  // One client stream; deleted when gRPC is done with it.
  class Stream final : public grpc::ClientWriteReactor<internal::PeerBatch> {
   public:
    explicit Stream(Link* link) : link_(link) {}
    void OnWriteDone(bool ok) override { link_->WriteDone(this, ok); }
    void OnDone(const grpc::Status& /*status*/) override { link_->StreamDone(this); }

    grpc::ClientContext context;
    internal::PeerStreamEnd end;
    internal::PeerBatch batch;  // the write in flight

   private:
    Link* const link_;
  };

  // When the stream is up and no write is in flight: makes the next batch (the report when due,
  // then what is queued, within kBatchBytesMax) and returns the stream, whose caller then starts
  // the write outside the lock (gRPC may run the completion inline). Otherwise null.
  Stream* TakeIdleStream() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stream_ == nullptr || writing_ || (queue_.empty() && !report_due_)) return nullptr;
    internal::PeerBatch& batch = stream_->batch;
    batch.Clear();
    batch.set_from(self_.value());
    if (report_due_) *batch.mutable_report() = report_;
    report_due_ = false;
    size_t bytes = 0;
    while (!queue_.empty() && (batch.envelopes_size() == 0 || bytes < kBatchBytesMax)) {
      const size_t size = queue_.front().ByteSizeLong();
      bytes += size;
      queue_bytes_ -= std::min(queue_bytes_, size);
      *batch.add_envelopes() = std::move(queue_.front());
      queue_.pop_front();
    }
    writing_ = true;
    return stream_;
  }

  void WriteDone(Stream* stream, bool ok) {
    Stream* next = nullptr;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      last_write_ = absl::Now();
      if (ok && stream == stream_) {
        if (!connected_) {
          spdlog::info("connected to peer {} at {}", peer_.id.value(), peer_.address);
        }
        connected_ = true;
        next = TakeIdleStream();
      } else {
        // The batch being written when the stream broke is lost, as on a network; the protocol
        // recovers. What is queued goes on the next stream.
        release = true;
        if (stream == stream_) {
          stream_ = nullptr;
          connected_ = false;
          next_open_ = absl::Now() + kReconnectBackoff;
        }
      }
    }
    if (next != nullptr) next->StartWrite(&next->batch);
    if (release) {
      stream->context.TryCancel();
      stream->RemoveHold();
    }
  }

  void StreamDone(Stream* stream) {
    delete stream;
    absl::MutexLock lock(&mu_);
    --streams_;
  }

  const MemberId self_;
  const PeerEndpoint peer_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<internal::Peer::Stub> stub_;

  mutable absl::Mutex mu_;
  std::deque<internal::PeerEnvelope> queue_ ABSL_GUARDED_BY(mu_);
  size_t queue_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  internal::MemberReport report_ ABSL_GUARDED_BY(mu_);
  bool report_due_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;  // the open stream, if any
  bool writing_ ABSL_GUARDED_BY(mu_) = false;      // a write is in flight on stream_
  int streams_ ABSL_GUARDED_BY(mu_) = 0;           // not yet done with by gRPC
  absl::Time last_write_ ABSL_GUARDED_BY(mu_);
  absl::Time next_open_ ABSL_GUARDED_BY(mu_);
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<grpc::ClientContext*> fetches_ ABSL_GUARDED_BY(mu_);
  int64_t last_heard_ms_ ABSL_GUARDED_BY(mu_) = 0;
  internal::MemberReport report_heard_ ABSL_GUARDED_BY(mu_);
};

// The Peer service: incoming streams from every other member, and snapshot downloads.
class PeerTransport::Service final : public internal::Peer::CallbackService {
 public:
  Service(const PeerTransport* transport, BatchHandler on_batch, SnapshotLocator locate)
      : transport_(transport), on_batch_(std::move(on_batch)), locate_(std::move(locate)) {}

  grpc::ServerReadReactor<internal::PeerBatch>* Send(grpc::CallbackServerContext* /*context*/,
                                                     internal::PeerStreamEnd* /*end*/) override {
    return new Reader(this);
  }

  grpc::ServerWriteReactor<internal::SnapshotChunk>* FetchSnapshot(
      grpc::CallbackServerContext* /*context*/, const internal::SnapshotRequest* request) override {
    return new SnapshotSender(locate_(Zxid::FromInt(request->zxid())), request->from());
  }

 private:
  class Reader final : public grpc::ServerReadReactor<internal::PeerBatch> {
   public:
    explicit Reader(Service* service) : service_(service) { StartRead(&batch_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      if (Link* link = service_->transport_->LinkTo(MemberId(batch_.from())); link != nullptr) {
        link->Heard(batch_);
        service_->on_batch_(std::move(batch_));
      }
      batch_ = internal::PeerBatch();
      StartRead(&batch_);
    }
    void OnDone() override { delete this; }

   private:
    Service* service_;
    internal::PeerBatch batch_;
  };

  class SnapshotSender final : public grpc::ServerWriteReactor<internal::SnapshotChunk> {
   public:
    SnapshotSender(absl::StatusOr<std::string> path, uint32_t to) {
      if (!path.ok()) {
        Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, std::string(path.status().message())));
        return;
      }
      spdlog::info("sending snapshot {} to member {}", *path, to);
      file_.open(*path, std::ios::binary);
      if (!file_) {
        Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("cannot open ", *path)));
        return;
      }
      Next();
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the receiver went away"));
        return;
      }
      Next();
    }
    void OnDone() override { delete this; }

   private:
    void Next() {
      std::string* data = chunk_.mutable_data();
      data->resize(kSnapshotChunkBytes);
      file_.read(data->data(), static_cast<std::streamsize>(data->size()));
      data->resize(static_cast<size_t>(file_.gcount()));
      if (data->empty()) {
        Finish(file_.eof() ? grpc::Status::OK
                           : grpc::Status(grpc::StatusCode::INTERNAL, "snapshot read failed"));
        return;
      }
      StartWrite(&chunk_);
    }

    std::ifstream file_;
    internal::SnapshotChunk chunk_;
  };

  const PeerTransport* transport_;
  BatchHandler on_batch_;
  SnapshotLocator locate_;
};

PeerTransport::PeerTransport(MemberId self, std::vector<PeerEndpoint> members) : self_(self) {
  for (PeerEndpoint& member : members) {
    if (member.id == self) {
      listen_address_ = member.address;
    } else {
      links_.push_back(std::make_unique<Link>(self, std::move(member)));
    }
  }
}

PeerTransport::~PeerTransport() { Stop(); }

absl::Status PeerTransport::Start(BatchHandler on_batch, SnapshotLocator locate_snapshot,
                                  ReportSource report) {
  service_ = std::make_unique<Service>(this, std::move(on_batch), std::move(locate_snapshot));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen_address_, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(INT_MAX);
  builder.SetMaxSendMessageSize(INT_MAX);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for peers on ", listen_address_,
                                               " (address in use or not valid?)"));
  }
  report_ = std::move(report);
  for (auto& link : links_) link->Start();
  maintenance_ = std::thread([this] { Maintain(); });
  return absl::OkStatus();
}

void PeerTransport::Maintain() {
  pthread_setname_np(pthread_self(), "confab-peers");
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), kMaintenanceInterval)) return;
    }
    // Outside the lock: the report reads the member's state, and a link may start a write.
    const internal::MemberReport report = report_();
    const absl::Time now = absl::Now();
    for (auto& link : links_) link->Maintain(report, now);
  }
}

void PeerTransport::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (maintenance_.joinable()) maintenance_.join();
  for (auto& link : links_) link->Stop();
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
}

void PeerTransport::Send(MemberId to, std::vector<internal::PeerEnvelope> envelopes) {
  if (Link* link = LinkTo(to); link != nullptr) link->Send(std::move(envelopes));
}

absl::Status PeerTransport::FetchSnapshot(MemberId from, Zxid zxid, const std::string& path) {
  Link* link = LinkTo(from);
  if (link == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("member ", from.value(), " is not a peer"));
  }
  return link->FetchSnapshot(zxid, path);
}

std::vector<pipeline::PeerLinkStatus> PeerTransport::Links() const {
  std::vector<pipeline::PeerLinkStatus> links;
  for (const auto& link : links_) links.push_back(link->Status());
  return links;
}

PeerTransport::Link* PeerTransport::LinkTo(MemberId id) const {
  for (const auto& link : links_) {
    if (link->peer().id == id) return link.get();
  }
  return nullptr;
}

}  // namespace confab::rpc
