// The seam between confab_bench's workloads (load_runner.h) and the systems they drive: a Driver
// connects ClientSessions to one ensemble, and a ClientSession issues asynchronous operations in
// the system's own client library (the Confab SDK, ZooKeeper's C client, etcd's gRPC API).
//
// Keys are written as ZooKeeper paths ("/bench/c3/k17"); etcd takes them as flat keys. A driver
// never retries, never blocks in an async call, and calls each `done` exactly once, on a thread
// of its client library, never inline from the call that issued it (a failure to even send is
// reported inline only as ok=false, which the runner treats as the end of that request slot).
#ifndef CONFAB_TESTS_BENCH_DRIVER_H_
#define CONFAB_TESTS_BENCH_DRIVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace confab::bench {

// What an operation reports back. `version` orders the change it made, in the system's terms:
// Confab's zxid (mzxid), ZooKeeper's mzxid, etcd's revision; 0 for reads and failures.
struct OpResult {
  bool ok = false;
  int64_t version = 0;
};
using Done = absl::AnyInvocable<void(OpResult result)>;

enum class ReadMode {
  kLocal,         // served by the member the session is on (ZooKeeper's reads, etcd serializable)
  kLinearizable,  // reflects every write acknowledged before it was sent
};

enum class WatchKind {
  kPersistent,  // sees every change (Confab AddWatch, etcd Watch)
  kOneShot,     // fires once and is re-armed by a read (ZooKeeper's getData watch)
};

// A watch notification. Persistent watchers know the version of the change (an event's zxid or
// revision); one-shot watchers know the sequence number of the write that fired them (one after
// the one their arming read returned). The other field is -1.
struct WatchNotice {
  int watcher = 0;  // index given to WatchKey
  int64_t seq = -1;
  int64_t version = -1;
};
using WatchSink = absl::AnyInvocable<void(const WatchNotice& notice)>;

// Values written by the watch workload start with their sequence number, so that a watcher that
// reads the value knows which write it saw.
std::string SequencedValue(int64_t seq, int value_bytes);
int64_t SequenceOf(absl::string_view value);  // -1 if the value carries none

// Leader-side write-path counters, for writes per fsync. Each field is absent where the system
// does not expose it.
struct ServerCounters {
  std::optional<int64_t> writes;  // committed writes (log records, proposals)
  std::optional<int64_t> fsyncs;  // log fsyncs on the leader
};

// Asks each of `endpoints` for its plain-text status (`request` over TCP, see server_probe.h),
// takes the first answer that `is_leader` accepts, and reads the two counters from it by name.
ServerCounters LeaderCountersOverTcp(const std::vector<std::string>& endpoints,
                                     absl::string_view request,
                                     absl::FunctionRef<bool(absl::string_view status)> is_leader,
                                     absl::string_view writes_metric,
                                     absl::string_view fsyncs_metric);

class ClientSession {
 public:
  virtual ~ClientSession() = default;

  // Asynchronous operations; see the header comment for `done`.
  virtual void Set(const std::string& path, absl::string_view value, Done done) = 0;
  virtual void Get(const std::string& path, ReadMode mode, Done done) = 0;
  // A persistent node (etcd: a put).
  virtual void Create(const std::string& path, absl::string_view value, Done done) = 0;
  // A registration that lives as long as the session: ZooKeeper's and Confab's ephemeral
  // sequential node under `dir`; in etcd a put of a new unique key under `dir`, attached to the
  // session's lease when the driver was made with one.
  virtual void Register(const std::string& dir, absl::string_view value, Done done) = 0;

  // Blocking. Creates `path` with `value` (and any missing parents, empty), or sets it if it
  // exists.
  virtual absl::Status Put(const std::string& path, absl::string_view value) = 0;
  // Blocking until all are armed. Adds `count` watchers of `kind` on `path`, numbered from
  // `first_watcher`; each notification goes to `sink` (from client threads, maybe concurrently).
  // UNIMPLEMENTED when the system has no such watch.
  virtual absl::Status WatchKey(const std::string& path, WatchKind kind, int first_watcher,
                                int count, WatchSink* sink) = 0;
};

struct DriverOptions {
  std::vector<std::string> endpoints;  // client addresses, host:port; session i uses i % size
  int session_timeout_ms = 10000;
  bool etcd_lease = false;  // etcd Register: attach the key to a per-session lease
};

class Driver {
 public:
  virtual ~Driver() = default;
  // Connects session number `index` (which picks its endpoint), blocking until it is usable.
  virtual absl::StatusOr<std::unique_ptr<ClientSession>> Connect(int index) = 0;
  // The leader's counters now (all absent when unavailable).
  virtual ServerCounters Counters() = 0;
};

std::unique_ptr<Driver> NewConfabDriver(const DriverOptions& options);
std::unique_ptr<Driver> NewEtcdDriver(const DriverOptions& options);
// Built only where ZooKeeper's C client is installed (CONFAB_BENCH_HAVE_ZOOKEEPER).
std::unique_ptr<Driver> NewZooKeeperDriver(const DriverOptions& options);

}  // namespace confab::bench

#endif  // CONFAB_TESTS_BENCH_DRIVER_H_
