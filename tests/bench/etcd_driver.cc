// The etcd driver: one gRPC channel (its own connection) per session, calls through gRPC's
// callback API on etcd's v3 services (tests/bench/etcd_rpc.proto); a Watch stream per session
// carries its watchers. With a lease, each session grants one and keeps it alive on a
// LeaseKeepAlive stream, as an etcd client's session does. The leader's counters come from the
// Prometheus /metrics page on the client port.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "etcd_rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/bench/driver.h"
#include "tests/bench/server_probe.h"

namespace confab::bench {
namespace {

constexpr int64_t kLeaseTtlSeconds = 30;
// Bounds a blocking call (setup), so that an ensemble without a leader fails the run.
constexpr std::chrono::seconds kBlockingCallDeadline(10);

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + kBlockingCallDeadline);
}

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("etcd ", what, ": ", status.error_message()));
}

template <typename Request, typename Response>
struct Call {
  grpc::ClientContext context;
  Request request;
  Response response;
  Done done;
};

class EtcdSession : public ClientSession {
 public:
  explicit EtcdSession(std::shared_ptr<grpc::Channel> channel)
      : channel_(std::move(channel)),
        kv_(etcdserverpb::KV::NewStub(channel_)),
        lease_(etcdserverpb::Lease::NewStub(channel_)),
        watch_(etcdserverpb::Watch::NewStub(channel_)) {}

  ~EtcdSession() override {
    stopping_.Notify();
    if (keep_alive_context_ != nullptr) keep_alive_context_->TryCancel();
    if (keep_alive_thread_.joinable()) keep_alive_thread_.join();
    for (auto& stream : watch_streams_) {
      stream->context.TryCancel();
      stream->reader.join();
    }
  }

  absl::Status GrantLease() {
    grpc::ClientContext context;
    SetDeadline(&context);
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(kLeaseTtlSeconds);
    etcdserverpb::LeaseGrantResponse response;
    absl::Status granted = FromGrpc(lease_->LeaseGrant(&context, request, &response), "grant");
    if (!granted.ok()) return granted;
    lease_id_ = response.id();
    keep_alive_context_ = std::make_unique<grpc::ClientContext>();
    keep_alive_thread_ = std::thread([this] { KeepAlive(); });
    return absl::OkStatus();
  }

  void Set(const std::string& path, absl::string_view value, Done done) override {
    PutAsync(path, value, 0, std::move(done));
  }

  void Get(const std::string& path, ReadMode mode, Done done) override {
    auto* call = new Call<etcdserverpb::RangeRequest, etcdserverpb::RangeResponse>;
    call->request.set_key(path);
    call->request.set_serializable(mode == ReadMode::kLocal);
    call->done = std::move(done);
    kv_->async()->Range(&call->context, &call->request, &call->response,
                        [call](grpc::Status status) {
                          call->done(OpResult{status.ok(), 0});
                          delete call;
                        });
  }

  void Create(const std::string& path, absl::string_view value, Done done) override {
    PutAsync(path, value, 0, std::move(done));
  }

  // A unique key per registration (etcd has no sequential keys), on the lease if there is one.
  void Register(const std::string& dir, absl::string_view value, Done done) override {
    PutAsync(absl::StrCat(dir, "/e-", next_registration_.fetch_add(1)), value, lease_id_,
             std::move(done));
  }

  absl::Status Put(const std::string& path, absl::string_view value) override {
    grpc::ClientContext context;
    SetDeadline(&context);
    etcdserverpb::PutRequest request;
    request.set_key(path);
    request.set_value(std::string(value));
    etcdserverpb::PutResponse response;
    return FromGrpc(kv_->Put(&context, request, &response), "put " + path);
  }

  // Every etcd watch is persistent: a watcher on a Watch stream sees every revision.
  absl::Status WatchKey(const std::string& path, WatchKind kind, int first_watcher, int count,
                        WatchSink* sink) override {
    if (kind != WatchKind::kPersistent) {
      return absl::UnimplementedError("etcd watches are persistent streams");
    }
    auto stream = std::make_unique<WatchStream>();
    stream->stream = watch_->Watch(&stream->context);
    for (int i = 0; i < count; ++i) {
      etcdserverpb::WatchRequest request;
      request.mutable_create_request()->set_key(path);
      if (!stream->stream->Write(request)) return FromGrpc(stream->stream->Finish(), "watch");
    }
    // Watchers are created in request order; each is confirmed by a `created` response.
    absl::flat_hash_map<int64_t, int> watcher_of;
    etcdserverpb::WatchResponse response;
    while (static_cast<int>(watcher_of.size()) < count && stream->stream->Read(&response)) {
      if (response.created())
        watcher_of[response.watch_id()] = first_watcher + static_cast<int>(watcher_of.size());
    }
    if (static_cast<int>(watcher_of.size()) < count) {
      return FromGrpc(stream->stream->Finish(), "watch create");
    }
    WatchStream* raw = stream.get();
    raw->reader = std::thread([raw, sink, watcher_of = std::move(watcher_of)] {
      etcdserverpb::WatchResponse update;
      while (raw->stream->Read(&update)) {
        auto watcher = watcher_of.find(update.watch_id());
        if (watcher == watcher_of.end()) continue;
        for (const etcdserverpb::Event& event : update.events()) {
          (*sink)(WatchNotice{watcher->second, -1, event.kv().mod_revision()});
        }
      }
    });
    watch_streams_.push_back(std::move(stream));
    return absl::OkStatus();
  }

 private:
  struct WatchStream {
    grpc::ClientContext context;
    std::unique_ptr<
        grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
        stream;
    std::thread reader;
  };

  void PutAsync(std::string key, absl::string_view value, int64_t lease, Done done) {
    auto* call = new Call<etcdserverpb::PutRequest, etcdserverpb::PutResponse>;
    call->request.set_key(std::move(key));
    call->request.set_value(std::string(value));
    call->request.set_lease(lease);
    call->done = std::move(done);
    kv_->async()->Put(&call->context, &call->request, &call->response, [call](grpc::Status status) {
      call->done(status.ok() ? OpResult{true, call->response.header().revision()} : OpResult{});
      delete call;
    });
  }

  // Renews the lease every third of its TTL until the session ends.
  void KeepAlive() {
    auto stream = lease_->LeaseKeepAlive(keep_alive_context_.get());
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(lease_id_);
    etcdserverpb::LeaseKeepAliveResponse response;
    do {
      if (!stream->Write(request) || !stream->Read(&response)) break;
    } while (!stopping_.WaitForNotificationWithTimeout(absl::Seconds(kLeaseTtlSeconds / 3)));
    stream->WritesDone();
    stream->Finish().IgnoreError();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::atomic<uint64_t> next_registration_{0};
  int64_t lease_id_ = 0;  // 0: no lease
  absl::Notification stopping_;
  std::unique_ptr<grpc::ClientContext> keep_alive_context_;
  std::thread keep_alive_thread_;
  std::vector<std::unique_ptr<WatchStream>> watch_streams_;
};

class EtcdDriver : public Driver {
 public:
  explicit EtcdDriver(const DriverOptions& options) : options_(options) {}

  absl::StatusOr<std::unique_ptr<ClientSession>> Connect(int index) override {
    const std::string& endpoint = options_.endpoints[index % options_.endpoints.size()];
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per session
    auto channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      return absl::UnavailableError("cannot connect to etcd at " + endpoint);
    }
    auto session = std::make_unique<EtcdSession>(std::move(channel));
    if (options_.etcd_lease) {
      absl::Status granted = session->GrantLease();
      if (!granted.ok()) return granted;
    }
    return session;
  }

  // From the leader's /metrics: entries it committed, and fsyncs of its WAL.
  ServerCounters Counters() override {
    return LeaderCountersOverTcp(
        options_.endpoints, "GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n",
        [](absl::string_view metrics) {
          return FindMetric(metrics, "etcd_server_is_leader") == 1.0;
        },
        "etcd_server_proposals_committed_total", "etcd_disk_wal_fsync_duration_seconds_count");
  }

 private:
  DriverOptions options_;
};

}  // namespace

std::unique_ptr<Driver> NewEtcdDriver(const DriverOptions& options) {
  return std::make_unique<EtcdDriver>(options);
}

}  // namespace confab::bench
