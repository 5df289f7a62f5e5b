// The deterministic whole-ensemble simulator (model: TigerBeetle's VOPR, FoundationDB's
// simulation). One process runs 3 or 5 members, each the real zab::Member core with a SimDisk and
// the real tree::DataTree applying committed transactions (with snapshots and log compaction),
// over a simulated network (delay, drop, duplicate, reorder, partitions that come and heal), with
// crashes, restarts and pauses, while simulated clients write (create, set and delete, some
// conditional on a version), read after a sync, and read locally. Time is simulated and every
// random choice comes from the seed, so a seed replays exactly, event by event with a trace.
//
// Checked all along: at most one established leader per epoch; every member applies a prefix of
// one global history and reaches the same digest and the same results at each zxid; only
// proposed transactions are applied; a message leaves only once what it promises is durable;
// nothing applied is truncated; synced and local reads see the state of the history at the zxid
// their member applied, and a client's local reads on one member never go back. Checked once the
// faults stop and the ensemble is quiet: every member converges on the same zxid and digest,
// every acknowledged write is in the history, and the clients' history of writes and synced reads
// is linearizable.
#ifndef CONFAB_TESTS_SIM_SIMULATOR_H_
#define CONFAB_TESTS_SIM_SIMULATOR_H_

#include <cstdint>
#include <ostream>
#include <string>

namespace confab::sim {

struct SimulationOptions {
  uint64_t seed = 1;
  std::ostream* trace = nullptr;  // every event of the run, when set
};

struct SimulationStats {
  int64_t simulated_ms = 0;
  int64_t writes_acknowledged = 0;  // of which some failed conditionally (below)
  int64_t writes_failed = 0;        // acknowledged with an error (BAD_VERSION, NO_NODE, ...)
  int64_t writes_unknown = 0;       // the leader died or stepped down first
  int64_t synced_reads = 0;
  int64_t local_reads = 0;
  int64_t crashes = 0;
  int64_t partitions = 0;
  int64_t pauses = 0;
  int64_t snapshots_taken = 0;
  int64_t snapshots_installed = 0;  // SNAP synchronization
  int64_t truncations = 0;          // TRUNC synchronization
  int64_t messages_delivered = 0;
  int64_t messages_dropped = 0;
  int64_t established_epoch = 0;  // the highest one
  int64_t history_length = 0;     // committed transactions
  int64_t inconclusive = 0;       // linearizability searches that gave up (not failures)

  void Add(const SimulationStats& other);
  std::string ToString() const;
};

struct SimulationResult {
  std::string failure;  // empty when every check passed; else what broke and the members' state
  SimulationStats stats;
  bool ok() const { return failure.empty(); }
};

SimulationResult RunSimulation(const SimulationOptions& options);

// The command line that replays `seed` with its trace.
std::string ReplayCommand(uint64_t seed);

// Names `seed` and its replay command on stderr if the process aborts while it runs: a broken
// invariant in the core (CONFAB_CHECK) aborts the process, leaving no result to report.
void ReportSeedOnAbort(uint64_t seed);

}  // namespace confab::sim

#endif  // CONFAB_TESTS_SIM_SIMULATOR_H_
