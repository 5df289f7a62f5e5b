// Randomized runs of the ZAB core: from a seed, a 3- or 5-member ensemble suffers dropped,
// duplicated and reordered messages, partitions, slow disks, snapshots, and crashes and restarts
// of up to a minority, while clients propose. Checked all along (by the Ensemble): one established
// leader per epoch, every delivered history a prefix of one global history, the Ready ordering
// rules. Checked at the end, once the network heals: every entry whose commit a leader reported
// survives, and all members converge. A failure prints its seed and every member's trace.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/zab/ensemble.h"

namespace confab::zab::testing {
namespace {

const int kSeeds = std::getenv("ZAB_SEEDS") ? std::atoi(std::getenv("ZAB_SEEDS")) : 200;
const uint64_t kFirstSeed =
    std::getenv("ZAB_FIRST_SEED") ? std::strtoull(std::getenv("ZAB_FIRST_SEED"), nullptr, 10) : 1;
constexpr int kStepsPerSeed = 8'000;

struct SeedStats {
  size_t acknowledged = 0;
  Epoch final_epoch = 0;
};

SeedStats RunSeed(uint64_t seed, NetworkFaults faults) {
  std::mt19937_64 rng(seed);
  auto chance = [&rng](int percent) { return static_cast<int>(rng() % 1000) < percent * 10; };
  const int n = seed % 3 == 0 ? 5 : 3;
  const int minority = (n - 1) / 2;
  Ensemble ensemble(n, seed);
  ensemble.set_record_sent(false);
  for (int i = 1; i <= n; ++i) ensemble.node(i).auto_durable = rng() % 3 != 0;
  ensemble.faults() = faults;
  std::set<int> down;
  int proposals = 0;
  for (int step = 0; step < kStepsPerSeed && !::testing::Test::HasFailure(); ++step) {
    const int id = 1 + static_cast<int>(rng() % static_cast<uint64_t>(n));
    const int action = static_cast<int>(rng() % 1000);
    if (action < 600) {
      ensemble.DeliverOne();
    } else if (action < 700) {
      ensemble.TickAll();
    } else if (action < 850) {
      if (std::optional<int> leader = ensemble.Leader()) {
        ensemble.Propose(*leader, absl::StrCat("s", seed, "-", proposals++));
      }
    } else if (action < 940) {
      ensemble.MakeDurable(id);
    } else if (action < 955) {
      if (down.count(id) == 0 && static_cast<int>(down.size()) < minority) {
        ensemble.Crash(id);
        down.insert(id);
      }
    } else if (action < 975) {
      if (down.count(id) != 0) {
        ensemble.Start(id);
        down.erase(id);
      }
    } else if (action < 985) {
      if (chance(50)) {
        std::set<int> side = {id};
        if (n == 5 && chance(50)) side.insert(1 + (id % n));
        std::set<int> rest;
        for (int i = 1; i <= n; ++i) {
          if (side.count(i) == 0) rest.insert(i);
        }
        ensemble.Partition({side, rest});
      } else {
        ensemble.Heal();
      }
    } else {
      ensemble.TakeSnapshot(id);
    }
  }
  if (::testing::Test::HasFailure()) {
    std::printf("%s\n", ensemble.Dump().c_str());
    return {};
  }
  // Heal everything; the ensemble must converge and keep every acknowledged entry.
  ensemble.faults() = NetworkFaults{};
  ensemble.Heal();
  for (int id : down) ensemble.Start(id);
  for (int i = 1; i <= n; ++i) {
    ensemble.node(i).auto_durable = true;
    ensemble.MakeDurable(i);
  }
  EXPECT_TRUE(ensemble.RunUntilStable(600)) << ensemble.Dump();
  if (!ensemble.Leader()) return {};
  EXPECT_TRUE(ensemble.Propose(*ensemble.Leader(), "final").has_value());
  ensemble.Stabilize();
  ensemble.ExpectConverged();
  return SeedStats{ensemble.acknowledged().size(),
                   ensemble.member(*ensemble.Leader()).current_epoch()};
}

// Runs kSeeds seeds (ZAB_SEEDS and ZAB_FIRST_SEED override, to hunt or to replay one seed).
void RunSeeds(NetworkFaults faults, size_t acknowledged_per_seed_min) {
  size_t acknowledged = 0;
  Epoch epochs = 0;
  for (uint64_t seed = kFirstSeed; seed < kFirstSeed + static_cast<uint64_t>(kSeeds); ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    const SeedStats stats = RunSeed(seed, faults);
    acknowledged += stats.acknowledged;
    epochs += stats.final_epoch;
    if (::testing::Test::HasFailure()) return;  // one seed's report is enough to replay
  }
  // The faults must leave room for progress, or the checks above prove little.
  std::printf("%zu acknowledged entries, %u epochs over %d seeds\n", acknowledged, epochs, kSeeds);
  EXPECT_GE(acknowledged, static_cast<size_t>(kSeeds) * acknowledged_per_seed_min);
  EXPECT_GT(epochs, static_cast<Epoch>(kSeeds) * 2);
}

TEST(RandomizedTest, FaultsNeverBreakSafetyAndTheEnsembleConverges) {
  RunSeeds(NetworkFaults{0.03, 0.02, 0.1}, 50);
}

TEST(RandomizedTest, HeavyNetworkFaultsNeverBreakSafety) {
  RunSeeds(NetworkFaults{0.15, 0.1, 0.5}, 2);
}

}  // namespace
}  // namespace confab::zab::testing
