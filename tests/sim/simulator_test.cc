// The simulator over many seeds with every fault on (CONFAB_SIM_SEEDS, default 1000, and
// CONFAB_SIM_FIRST_SEED choose them; `confab_sim --seeds=N` runs more), and exact replay of a seed.
#include "tests/sim/simulator.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace confab::sim {
namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::strtoull(value, nullptr, 10) : fallback;
}

TEST(SimulatorTest, EverySeedKeepsEveryInvariantUnderFaults) {
  const uint64_t seeds = EnvOr("CONFAB_SIM_SEEDS", 1000);
  const uint64_t first = EnvOr("CONFAB_SIM_FIRST_SEED", 1);
  SimulationStats total;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    ReportSeedOnAbort(seed);
    SimulationOptions options;
    options.seed = seed;
    const SimulationResult result = RunSimulation(options);
    ASSERT_TRUE(result.ok()) << "seed " << seed << " failed: " << result.failure
                             << "\nreplay: " << ReplayCommand(seed);
    total.Add(result.stats);
  }
  std::printf("%llu seeds: %s\n", static_cast<unsigned long long>(seeds), total.ToString().c_str());
  // The faults must leave room for progress and reach every synchronization path, or the checks
  // above prove little.
  const auto per_seed = [seeds](int64_t count) {
    return static_cast<double>(count) / static_cast<double>(seeds);
  };
  EXPECT_GT(per_seed(total.writes_acknowledged), 20);
  EXPECT_GT(per_seed(total.synced_reads), 10);
  EXPECT_GT(total.writes_failed, 0);
  EXPECT_GT(total.writes_unknown, 0);
  EXPECT_GT(total.crashes, 0);
  EXPECT_GT(total.partitions, 0);
  EXPECT_GT(total.pauses, 0);
  EXPECT_GT(total.snapshots_installed, 0);
  EXPECT_GT(total.truncations, 0);
  EXPECT_EQ(total.inconclusive, 0);
}

TEST(SimulatorTest, ASeedReplaysExactly) {
  for (uint64_t seed : {3, 4}) {
    std::ostringstream first;
    std::ostringstream second;
    SimulationOptions options;
    options.seed = seed;
    options.trace = &first;
    const SimulationResult a = RunSimulation(options);
    options.trace = &second;
    const SimulationResult b = RunSimulation(options);
    EXPECT_TRUE(a.ok()) << a.failure;
    EXPECT_GT(first.str().size(), 1000u);
    EXPECT_EQ(first.str(), second.str()) << "seed " << seed;
    EXPECT_EQ(a.stats.ToString(), b.stats.ToString());
  }
}

}  // namespace
}  // namespace confab::sim
