// The workloads of confab_bench, the same for every system (they see it only through Driver):
//
//   write   C sessions x K requests in flight, each setting `value_bytes` on its own keys
//   read    the same, getting them (ReadMode: member-local or linearizable)
//   create  registrations: ephemeral sequential nodes (etcd: unique keys, with a lease or not)
//   mixed   `read_fraction` reads, the rest writes, on the session's own keys
//   memory  `memory_nodes` persistent nodes of `value_bytes` created, then the servers' RSS
//   watch   `watchers` watchers over `watch_sessions` sessions on one key, a writer setting it
//           every `watch_interval`: notification latency from the write's send time, events
//           delivered vs expected, and what one-shot watchers could not see
//
// Closed loop: each request slot sends its next request when the previous one is answered. The
// warm-up runs first; then, for `duration`, latencies of requests both sent and answered inside
// the window are kept, and the CPU time of the server processes (utime + stime from /proc, all
// members) and of this process is taken at both ends of it.
//
// The result is one JSON object (see RunWorkload).
#ifndef CONFAB_TESTS_BENCH_LOAD_RUNNER_H_
#define CONFAB_TESTS_BENCH_LOAD_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "tests/bench/driver.h"

namespace confab::bench {

struct LoadOptions {
  std::string workload = "write";
  int clients = 8;
  int inflight = 16;
  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
  int value_bytes = 256;
  int keys_per_client = 100;
  ReadMode read_mode = ReadMode::kLocal;
  double read_fraction = 0.9;
  int memory_nodes = 100000;
  int watchers = 1000;
  int watch_sessions = 10;
  absl::Duration watch_interval = absl::Milliseconds(20);
  WatchKind watch_kind = WatchKind::kPersistent;
  std::vector<int> server_pids;  // the ensemble's processes, for CPU and memory
};

// Runs one workload and returns its results: "ops", "ops_per_s", "p50_us", "p99_us", "p999_us",
// "max_us", "errors", "server_cpu_us_per_op", "server_cpu_cores", "bench_cpu_cores",
// "writes_per_fsync" (where the leader's counters are known), and the workload's own figures.
absl::StatusOr<nlohmann::json> RunWorkload(Driver& driver, const LoadOptions& options);

}  // namespace confab::bench

#endif  // CONFAB_TESTS_BENCH_LOAD_RUNNER_H_
