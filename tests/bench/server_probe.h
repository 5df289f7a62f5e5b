// What confab_bench learns about the servers from outside them: CPU time and resident memory of
// their processes (from /proc, so any system is measured the same way), and plain-text status
// fetched over TCP (ZooKeeper's `mntr`, etcd's Prometheus `/metrics`).
#ifndef CONFAB_TESTS_BENCH_SERVER_PROBE_H_
#define CONFAB_TESTS_BENCH_SERVER_PROBE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace confab::bench {

// utime + stime of process `pid` (all its threads), in seconds.
absl::StatusOr<double> ProcessCpuSeconds(int pid);
// Resident set size of process `pid`, in bytes.
absl::StatusOr<int64_t> ProcessRssBytes(int pid);
// CPU time of this process (all threads), in seconds.
double SelfCpuSeconds();

// Connects to `host_port`, writes `request`, and returns everything read until the peer closes
// (or `timeout` passes).
absl::StatusOr<std::string> FetchOverTcp(absl::string_view host_port, absl::string_view request,
                                         absl::Duration timeout);
// The value of the first line of `text` of the form "<name><separator><number>", e.g. a
// Prometheus sample "etcd_disk_wal_fsync_duration_seconds_count 42" or a mntr line
// "zk_fsynctime_count\t42".
std::optional<double> FindMetric(absl::string_view text, absl::string_view name);

}  // namespace confab::bench

#endif  // CONFAB_TESTS_BENCH_SERVER_PROBE_H_
