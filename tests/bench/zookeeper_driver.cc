// The ZooKeeper driver: one zhandle_t of the multi-threaded C client (libzookeeper_mt) per
// session; completions and watchers run on the handle's completion thread. The leader's
// counters come from the `mntr` four-letter word (the servers must whitelist it).
#include <zookeeper/zookeeper.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "tests/bench/driver.h"
#include "tests/bench/server_probe.h"

namespace confab::bench {
namespace {

absl::Status ZooError(int rc, absl::string_view what, const std::string& path) {
  return absl::UnknownError(absl::StrCat("ZooKeeper ", what, " ", path, ": ", zerror(rc)));
}

// Completion contexts own the Done until the completion runs.
void StatCompletion(int rc, const struct Stat* stat, const void* data) {
  std::unique_ptr<Done> done(static_cast<Done*>(const_cast<void*>(data)));
  (*done)(rc == ZOK ? OpResult{true, stat->mzxid} : OpResult{});
}
void DataCompletion(int rc, const char*, int, const struct Stat*, const void* data) {
  std::unique_ptr<Done> done(static_cast<Done*>(const_cast<void*>(data)));
  (*done)(OpResult{rc == ZOK, 0});
}
void StringStatCompletion(int rc, const char*, const struct Stat* stat, const void* data) {
  std::unique_ptr<Done> done(static_cast<Done*>(const_cast<void*>(data)));
  (*done)(rc == ZOK ? OpResult{true, stat->czxid} : OpResult{});
}
void IgnoreStringCompletion(int, const char*, const void*) {}

// A one-shot watcher: armed by zoo_awget, re-armed from its own watcher function.
struct OneShotWatcher {
  std::string path;
  int watcher = 0;
  WatchSink* sink = nullptr;
  int64_t seen = -1;  // the sequence the arming read returned; written before any fire
};

class ZooKeeperSession : public ClientSession {
 public:
  ~ZooKeeperSession() override {
    if (handle_ != nullptr) zookeeper_close(handle_);
  }

  absl::Status Open(const std::string& endpoint, int session_timeout_ms) {
    handle_ = zookeeper_init(endpoint.c_str(), &ZooKeeperSession::OnSessionEvent,
                             session_timeout_ms, nullptr, this, 0);
    if (handle_ == nullptr) return absl::UnavailableError("zookeeper_init " + endpoint);
    if (!connected_.WaitForNotificationWithTimeout(absl::Seconds(10))) {
      return absl::DeadlineExceededError("no ZooKeeper session on " + endpoint);
    }
    return absl::OkStatus();
  }

  void Set(const std::string& path, absl::string_view value, Done done) override {
    auto* context = new Done(std::move(done));
    int rc = zoo_aset(handle_, path.c_str(), value.data(), static_cast<int>(value.size()), -1,
                      &StatCompletion, context);
    if (rc != ZOK) FailInline(context);
  }

  // Linearizable: sync() then the read, pipelined (ZooKeeper's recipe).
  void Get(const std::string& path, ReadMode mode, Done done) override {
    if (mode == ReadMode::kLinearizable) {
      zoo_async(handle_, path.c_str(), &IgnoreStringCompletion, nullptr);
    }
    auto* context = new Done(std::move(done));
    int rc = zoo_aget(handle_, path.c_str(), 0, &DataCompletion, context);
    if (rc != ZOK) FailInline(context);
  }

  void Create(const std::string& path, absl::string_view value, Done done) override {
    CreateAsync(path, value, ZOO_PERSISTENT, std::move(done));
  }

  void Register(const std::string& dir, absl::string_view value, Done done) override {
    CreateAsync(dir + "/e-", value, ZOO_EPHEMERAL_SEQUENTIAL, std::move(done));
  }

  absl::Status Put(const std::string& path, absl::string_view value) override {
    for (size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      std::string parent = path.substr(0, slash);
      int rc = zoo_create(handle_, parent.c_str(), "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT,
                          nullptr, 0);
      if (rc != ZOK && rc != ZNODEEXISTS) return ZooError(rc, "create", parent);
    }
    int rc = zoo_create(handle_, path.c_str(), value.data(), static_cast<int>(value.size()),
                        &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT, nullptr, 0);
    if (rc == ZNODEEXISTS) {
      rc = zoo_set(handle_, path.c_str(), value.data(), static_cast<int>(value.size()), -1);
    }
    return rc == ZOK ? absl::OkStatus() : ZooError(rc, "put", path);
  }

  // The C client of ZooKeeper 3.8 has no persistent watches (addWatch is Java-only).
  absl::Status WatchKey(const std::string& path, WatchKind kind, int first_watcher, int count,
                        WatchSink* sink) override {
    if (kind != WatchKind::kOneShot) {
      return absl::UnimplementedError("ZooKeeper's C client has one-shot watches only");
    }
    for (int i = 0; i < count; ++i) {
      auto watcher = std::make_unique<OneShotWatcher>();
      watcher->path = path;
      watcher->watcher = first_watcher + i;
      watcher->sink = sink;
      struct Stat stat;
      std::string buffer(1 << 12, '\0');
      int length = static_cast<int>(buffer.size());
      int rc = zoo_wget(handle_, path.c_str(), &ZooKeeperSession::OnWatchFired, watcher.get(),
                        buffer.data(), &length, &stat);
      if (rc != ZOK) return ZooError(rc, "get (watch)", path);
      watcher->seen = SequenceOf(absl::string_view(buffer.data(), length > 0 ? length : 0));
      watchers_.push_back(std::move(watcher));
    }
    return absl::OkStatus();
  }

 private:
  void CreateAsync(const std::string& path, absl::string_view value, int mode, Done done) {
    auto* context = new Done(std::move(done));
    int rc = zoo_acreate2(handle_, path.c_str(), value.data(), static_cast<int>(value.size()),
                          &ZOO_OPEN_ACL_UNSAFE, mode, &StringStatCompletion, context);
    if (rc != ZOK) FailInline(context);
  }

  static void FailInline(Done* context) {
    std::unique_ptr<Done> done(context);
    (*done)(OpResult{});
  }

  static void OnSessionEvent(zhandle_t*, int type, int state, const char*, void* context) {
    auto* self = static_cast<ZooKeeperSession*>(context);
    if (type == ZOO_SESSION_EVENT && state == ZOO_CONNECTED_STATE &&
        !self->connected_.HasBeenNotified()) {
      self->connected_.Notify();
    }
  }

  // Runs on the completion thread: report the write after the one the arming read saw, then
  // re-arm with an asynchronous read whose completion records what it saw. Completions and
  // watchers of one handle run in order on one thread, so `seen` is set before the next fire.
  static void OnWatchFired(zhandle_t* handle, int type, int, const char*, void* context) {
    if (type != ZOO_CHANGED_EVENT) return;
    auto* watcher = static_cast<OneShotWatcher*>(context);
    (*watcher->sink)(WatchNotice{watcher->watcher, watcher->seen + 1, -1});
    zoo_awget(handle, watcher->path.c_str(), &ZooKeeperSession::OnWatchFired, watcher,
              &ZooKeeperSession::OnRearmRead, watcher);
  }
  static void OnRearmRead(int rc, const char* value, int value_len, const struct Stat*,
                          const void* data) {
    if (rc != ZOK) return;
    auto* watcher = static_cast<OneShotWatcher*>(const_cast<void*>(data));
    watcher->seen = SequenceOf(absl::string_view(value, value_len > 0 ? value_len : 0));
  }

  zhandle_t* handle_ = nullptr;
  absl::Notification connected_;
  std::vector<std::unique_ptr<OneShotWatcher>> watchers_;  // outlive the handle's callbacks
};

class ZooKeeperDriver : public Driver {
 public:
  explicit ZooKeeperDriver(const DriverOptions& options) : options_(options) {
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  }

  absl::StatusOr<std::unique_ptr<ClientSession>> Connect(int index) override {
    auto session = std::make_unique<ZooKeeperSession>();
    absl::Status opened = session->Open(options_.endpoints[index % options_.endpoints.size()],
                                        options_.session_timeout_ms);
    if (!opened.ok()) return opened;
    return session;
  }

  // From the leader's mntr: proposals it made, and fsyncs of its log (FileTxnLog.commit).
  ServerCounters Counters() override {
    return LeaderCountersOverTcp(
        options_.endpoints, "mntr",
        [](absl::string_view mntr) {
          return mntr.find("zk_server_state\tleader") != absl::string_view::npos;
        },
        "zk_proposal_count", "zk_cnt_fsynctime");
  }

 private:
  DriverOptions options_;
};

}  // namespace

std::unique_ptr<Driver> NewZooKeeperDriver(const DriverOptions& options) {
  return std::make_unique<ZooKeeperDriver>(options);
}

}  // namespace confab::bench
