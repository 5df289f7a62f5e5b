// confab_sim: runs the deterministic ensemble simulator over many seeds, or replays one.
//
//   confab_sim --seeds=N [--first_seed=S]   run seeds S .. S+N-1 (default 1000 from 1)
//   confab_sim --seed=S [--trace]           replay one seed, printing every event with --trace
//
// The first failing seed is printed with the command that replays it; the exit status is 1.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "tests/sim/simulator.h"

namespace {

constexpr char kUsage[] =
    "usage: confab_sim [--seeds=N] [--first_seed=S] | --seed=S [--trace]\n"
    "  --seeds=N        run N seeds (default 1000)\n"
    "  --first_seed=S   the first of them (default 1)\n"
    "  --seed=S         run only seed S\n"
    "  --trace          print every event of the run (with --seed)\n";

struct Flags {
  uint64_t seeds = 1'000;
  uint64_t first_seed = 1;
  bool trace = false;
};

// Parses `--name=value` into `value`; false if `arg` is not that flag.
bool ParseFlag(absl::string_view arg, absl::string_view name, uint64_t* value, bool* valid) {
  const std::string prefix = std::string("--") + std::string(name) + "=";
  if (!absl::StartsWith(arg, prefix)) return false;
  *valid = absl::SimpleAtoi(arg.substr(prefix.size()), value);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  bool single = false;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    bool valid = true;
    if (arg == "--trace") {
      flags.trace = true;
    } else if (ParseFlag(arg, "seed", &flags.first_seed, &valid)) {
      single = true;
      flags.seeds = 1;
    } else if (!ParseFlag(arg, "seeds", &flags.seeds, &valid) &&
               !ParseFlag(arg, "first_seed", &flags.first_seed, &valid)) {
      valid = false;
    }
    if (!valid) {
      std::fprintf(stderr, "confab_sim: bad argument %s\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (flags.trace && !single) {
    std::fprintf(stderr, "confab_sim: --trace needs --seed\n%s", kUsage);
    return 2;
  }

  const auto start = std::chrono::steady_clock::now();
  confab::sim::SimulationStats total;
  for (uint64_t seed = flags.first_seed; seed < flags.first_seed + flags.seeds; ++seed) {
    confab::sim::ReportSeedOnAbort(seed);
    confab::sim::SimulationOptions options;
    options.seed = seed;
    options.trace = flags.trace ? &std::cout : nullptr;
    const confab::sim::SimulationResult result = confab::sim::RunSimulation(options);
    std::cout.flush();
    if (!result.ok()) {
      std::fprintf(stderr, "seed %llu FAILED: %s\nreplay: %s\n",
                   static_cast<unsigned long long>(seed), result.failure.c_str(),
                   confab::sim::ReplayCommand(seed).c_str());
      return 1;
    }
    total.Add(result.stats);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%llu seeds from %llu passed in %.1f s: %s\n",
              static_cast<unsigned long long>(flags.seeds),
              static_cast<unsigned long long>(flags.first_seed), seconds, total.ToString().c_str());
  return 0;
}
