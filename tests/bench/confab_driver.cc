// The Confab driver: one confab::Client (the SDK, its async API) per session; the leader's log
// counters from the Status RPC.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "confab/client.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/common/errors.h"
#include "tests/bench/driver.h"

namespace confab::bench {
namespace {

class ConfabSession : public ClientSession {
 public:
  explicit ConfabSession(std::unique_ptr<Client> client) : client_(std::move(client)) {}

  void Set(const std::string& path, absl::string_view value, Done done) override {
    client_->SetAsync(path, value, std::nullopt,
                      [done = std::move(done)](absl::StatusOr<Stat> stat) mutable {
                        done(stat.ok() ? OpResult{true, stat->mzxid} : OpResult{});
                      });
  }

  // Linearizable: the SDK does not expose GetRequest.linearizable, so a Sync followed by the read
  // on the same stream, which is what confabd does for that field (and what a ZooKeeper client
  // does).
  void Get(const std::string& path, ReadMode mode, Done done) override {
    if (mode == ReadMode::kLinearizable) client_->SyncAsync(path, [](absl::Status) {});
    client_->GetAsync(path, [done = std::move(done)](absl::StatusOr<NodeData> node) mutable {
      done(OpResult{node.ok(), 0});
    });
  }

  void Create(const std::string& path, absl::string_view value, Done done) override {
    client_->CreateAsync(path, value, CreateMode::kPersistent, CreatedCallback(std::move(done)));
  }

  void Register(const std::string& dir, absl::string_view value, Done done) override {
    client_->CreateAsync(absl::StrCat(dir, "/e-"), value, CreateMode::kEphemeralSequential,
                         CreatedCallback(std::move(done)));
  }

  absl::Status Put(const std::string& path, absl::string_view value) override {
    for (size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      absl::StatusOr<Created> parent = client_->Create(path.substr(0, slash));
      if (!parent.ok() && ErrorCodeOf(parent.status()) != v1::NODE_EXISTS) return parent.status();
    }
    absl::StatusOr<Created> created = client_->Create(path, value);
    if (created.ok() || ErrorCodeOf(created.status()) != v1::NODE_EXISTS) {
      return created.status();
    }
    return client_->Set(path, value).status();
  }

  absl::Status WatchKey(const std::string& path, WatchKind kind, int first_watcher, int count,
                        WatchSink* sink) override {
    for (int i = 0; i < count; ++i) {
      const int watcher = first_watcher + i;
      if (kind == WatchKind::kPersistent) {
        absl::StatusOr<WatchId> id = client_->AddWatch(path, AddWatchMode::kPersistent,
                                                       [sink, watcher](const WatchEvent& e) {
                                                         (*sink)(WatchNotice{watcher, -1, e.zxid});
                                                       });
        if (!id.ok()) return id.status();
      } else {
        absl::Status armed = ArmOneShot(path, watcher, sink, /*blocking=*/true);
        if (!armed.ok()) return armed;
      }
    }
    return absl::OkStatus();
  }

 private:
  static Callback<Created> CreatedCallback(Done done) {
    return [done = std::move(done)](absl::StatusOr<Created> created) mutable {
      done(created.ok() ? OpResult{true, created->stat.czxid} : OpResult{});
    };
  }

  // A one-shot data watch set by a read: it fires for the write after the one the read saw, and
  // the watcher re-arms it with the next read (from the callback thread, asynchronously).
  absl::Status ArmOneShot(const std::string& path, int watcher, WatchSink* sink, bool blocking) {
    auto seen = std::make_shared<int64_t>(-1);  // written by the read's callback, before any fire
    Watcher fire = [this, path, watcher, sink, seen](const WatchEvent& event) {
      if (event.type != EventType::kNodeDataChanged) return;
      (*sink)(WatchNotice{watcher, *seen + 1, -1});
      ArmOneShot(path, watcher, sink, /*blocking=*/false).IgnoreError();
    };
    if (blocking) {
      absl::StatusOr<NodeData> node = client_->Get(path, std::move(fire));
      if (!node.ok()) return node.status();
      *seen = SequenceOf(node->data);
      return absl::OkStatus();
    }
    client_->GetAsync(
        path,
        [seen](absl::StatusOr<NodeData> node) {
          if (node.ok()) *seen = SequenceOf(node->data);
        },
        std::move(fire));
    return absl::OkStatus();
  }

  std::unique_ptr<Client> client_;
};

class ConfabDriver : public Driver {
 public:
  explicit ConfabDriver(const DriverOptions& options) : options_(options) {
    for (const std::string& endpoint : options_.endpoints) {
      status_stubs_.push_back(v1::Coordination::NewStub(
          grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials())));
    }
  }

  absl::StatusOr<std::unique_ptr<ClientSession>> Connect(int index) override {
    ClientOptions client_options;
    client_options.endpoints = options_.endpoints[index % options_.endpoints.size()];
    client_options.session_timeout = absl::Milliseconds(options_.session_timeout_ms);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(std::move(client_options));
    if (!client.ok()) return client.status();
    return std::make_unique<ConfabSession>(*std::move(client));
  }

  // The leader's (or the standalone server's) log: records appended and fsyncs.
  ServerCounters Counters() override {
    for (auto& stub : status_stubs_) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      v1::StatusResponse status;
      if (!stub->Status(&context, v1::StatusRequest(), &status).ok()) continue;
      if (status.role() != v1::LEADING && status.role() != v1::STANDALONE) continue;
      return ServerCounters{static_cast<int64_t>(status.log_records()),
                            static_cast<int64_t>(status.log_fsyncs())};
    }
    return ServerCounters{};
  }

 private:
  DriverOptions options_;
  std::vector<std::unique_ptr<v1::Coordination::Stub>> status_stubs_;
};

}  // namespace

std::unique_ptr<Driver> NewConfabDriver(const DriverOptions& options) {
  return std::make_unique<ConfabDriver>(options);
}

}  // namespace confab::bench
