// confab_bench: one load generator for Confab, ZooKeeper and etcd. It drives a running ensemble
// through the system's own client (the Confab SDK's async API, ZooKeeper's C client, etcd's gRPC
// API), runs one workload (tests/bench/load_runner.h) and prints one JSON line: the system, the
// workload and its parameters, ops/s, latency percentiles in µs, server CPU per operation (all
// members, from /proc/<pid>/stat of --server_pids), its own CPU, and the workload's own figures.
//
//   confab_bench --system=confab --endpoints=127.0.0.1:2281 --workload=write
//       --clients=8 --inflight=16 --warmup_s=2 --duration_s=10 --server_pids=1234
//
// tests/bench/run_matrix.sh starts each system as a 3-member ensemble and runs the whole matrix.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/bench/driver.h"
#include "tests/bench/load_runner.h"

ABSL_FLAG(std::string, system, "confab", "confab | zookeeper | etcd");
ABSL_FLAG(std::string, endpoints, "127.0.0.1:2281",
          "client addresses of the members, host:port,...; session i uses member i % count");
ABSL_FLAG(std::string, workload, "write", "write | read | create | mixed | memory | watch");
ABSL_FLAG(int, clients, 8, "sessions (each its own connection)");
ABSL_FLAG(int, inflight, 16, "requests in flight per session");
ABSL_FLAG(double, warmup_s, 2, "seconds of load before the measured window");
ABSL_FLAG(double, duration_s, 10, "seconds measured");
ABSL_FLAG(int, value_bytes, 256, "bytes per value");
ABSL_FLAG(int, keys_per_client, 100, "keys each session writes or reads (write, read, mixed)");
ABSL_FLAG(std::string, read_mode, "local",
          "local (member-local: ZooKeeper reads, etcd serializable) | linearizable (etcd's "
          "default Range; Confab and ZooKeeper: sync then read)");
ABSL_FLAG(double, read_fraction, 0.9, "share of reads in the mixed workload");
ABSL_FLAG(int, memory_nodes, 100000, "nodes created by the memory workload");
ABSL_FLAG(int, watchers, 1000, "watchers on the one key of the watch workload");
ABSL_FLAG(int, watch_sessions, 10, "sessions the watchers are spread over");
ABSL_FLAG(int, watch_interval_ms, 20, "the watch workload's writer sets the key this often");
ABSL_FLAG(std::string, watch_kind, "persistent",
          "persistent (Confab AddWatch, etcd Watch) | oneshot (Confab and ZooKeeper, re-armed "
          "by a read after each event)");
ABSL_FLAG(bool, etcd_lease, false, "etcd create: attach each key to its session's lease");
ABSL_FLAG(int, session_timeout_ms, 10000, "session timeout (Confab, ZooKeeper)");
ABSL_FLAG(std::string, server_pids, "",
          "pids of the ensemble's server processes, comma-separated: CPU and memory are read "
          "from /proc");
ABSL_FLAG(std::string, label, "", "free text copied into the JSON line (e.g. the ensemble mode)");

namespace confab::bench {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "confab_bench: %s\n", message.c_str());
  return 2;
}

int Main() {
  DriverOptions driver_options;
  driver_options.endpoints = absl::StrSplit(absl::GetFlag(FLAGS_endpoints), ',', absl::SkipEmpty());
  driver_options.session_timeout_ms = absl::GetFlag(FLAGS_session_timeout_ms);
  driver_options.etcd_lease = absl::GetFlag(FLAGS_etcd_lease);
  if (driver_options.endpoints.empty()) return Fail("--endpoints is empty");

  const std::string system = absl::GetFlag(FLAGS_system);
  std::unique_ptr<Driver> driver;
  if (system == "confab") {
    driver = NewConfabDriver(driver_options);
  } else if (system == "etcd") {
    driver = NewEtcdDriver(driver_options);
  } else if (system == "zookeeper") {
#ifdef CONFAB_BENCH_HAVE_ZOOKEEPER
    driver = NewZooKeeperDriver(driver_options);
#else
    return Fail("built without ZooKeeper's C client (install libzookeeper-mt-dev, re-run cmake)");
#endif
  } else {
    return Fail("unknown --system " + system + " (confab, zookeeper or etcd)");
  }

  LoadOptions options;
  options.workload = absl::GetFlag(FLAGS_workload);
  options.clients = absl::GetFlag(FLAGS_clients);
  options.inflight = absl::GetFlag(FLAGS_inflight);
  options.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_s));
  options.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  options.value_bytes = absl::GetFlag(FLAGS_value_bytes);
  options.keys_per_client = absl::GetFlag(FLAGS_keys_per_client);
  const std::string read_mode = absl::GetFlag(FLAGS_read_mode);
  if (read_mode != "local" && read_mode != "linearizable") {
    return Fail("--read_mode is local or linearizable");
  }
  options.read_mode = read_mode == "local" ? ReadMode::kLocal : ReadMode::kLinearizable;
  options.read_fraction = absl::GetFlag(FLAGS_read_fraction);
  options.memory_nodes = absl::GetFlag(FLAGS_memory_nodes);
  options.watchers = absl::GetFlag(FLAGS_watchers);
  options.watch_sessions = absl::GetFlag(FLAGS_watch_sessions);
  options.watch_interval = absl::Milliseconds(absl::GetFlag(FLAGS_watch_interval_ms));
  const std::string watch_kind = absl::GetFlag(FLAGS_watch_kind);
  if (watch_kind != "persistent" && watch_kind != "oneshot") {
    return Fail("--watch_kind is persistent or oneshot");
  }
  options.watch_kind = watch_kind == "persistent" ? WatchKind::kPersistent : WatchKind::kOneShot;
  for (absl::string_view pid :
       absl::StrSplit(absl::GetFlag(FLAGS_server_pids), ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(pid, &value))
      return Fail(absl::StrCat("bad pid in --server_pids: ", pid));
    options.server_pids.push_back(value);
  }
  if (options.clients < 1 || options.inflight < 1 || options.watch_sessions < 1) {
    return Fail("--clients, --inflight and --watch_sessions must be at least 1");
  }

  absl::StatusOr<nlohmann::json> result = RunWorkload(*driver, options);
  if (!result.ok()) return Fail(result.status().ToString());

  nlohmann::json line = {
      {"system", system},
      {"workload", options.workload},
      {"label", absl::GetFlag(FLAGS_label)},
      {"members", driver_options.endpoints.size()},
      {"value_bytes", options.value_bytes},
  };
  if (options.workload == "watch") {
    line["watch_kind"] = watch_kind;
    line["watch_sessions"] = options.watch_sessions;
    line["watch_interval_ms"] = absl::GetFlag(FLAGS_watch_interval_ms);
  } else {
    line["clients"] = options.clients;
    line["inflight"] = options.inflight;
  }
  if (options.workload == "read" || options.workload == "mixed") line["read_mode"] = read_mode;
  if (options.workload == "mixed") line["read_fraction"] = options.read_fraction;
  if (options.workload == "create" && system == "etcd") {
    line["etcd_lease"] = driver_options.etcd_lease;
  }
  line.update(*result);
  std::printf("%s\n", line.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace confab::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "drives a Confab, ZooKeeper or etcd ensemble and prints one JSON line of results");
  absl::ParseCommandLine(argc, argv);
  return confab::bench::Main();
}
