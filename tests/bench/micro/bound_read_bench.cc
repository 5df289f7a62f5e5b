// Micro-benchmarks of a typed config read on the hot path: ConfigCache::Bind's BoundValue (no
// lock, no allocation) against ConfigCache::Get<T> (lock, map lookup, JSON copy and conversion
// per call), from one and from several threads. No server: the cache starts stale from its
// fallback file, with its own session aimed at a port where nothing listens.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "confab/config_cache.h"
#include "nlohmann/json.hpp"

namespace confab {
namespace {

constexpr char kRoot[] = "/superset/config";

// A Superset-like configuration, started from its fallback file (the format config_cache.h
// documents). Built once, for every benchmark.
class StaleCache {
 public:
  static StaleCache& Get() {
    static StaleCache* cache = new StaleCache();
    return *cache;
  }
  ConfigCache& cache() { return *cache_; }

 private:
  StaleCache() {
    const std::string path = (std::filesystem::temp_directory_path() /
                              absl::StrCat("bound_read_bench.", getpid(), ".json"))
                                 .string();
    nlohmann::json file = {
        {"root", kRoot},
        {"release_root", ""},
        {"zxid", 42},
        {"release", 0},
        {"values",
         {{"ROW_LIMIT", 50000},
          {"SQLALCHEMY_DATABASE_URI", "postgresql://superset@db:5432/superset"},
          {"FEATURE_FLAGS", {{"ALERT_REPORTS", true}, {"DASHBOARD_RBAC", false}}}}}};
    std::ofstream(path) << file.dump();
    ClientOptions client;
    client.endpoints = "127.0.0.1:1";
    client.connect_timeout = absl::Milliseconds(100);
    // Keep the background reconnects out of the measurement.
    client.reconnect_backoff_initial = absl::Hours(1);
    client.reconnect_backoff_max = absl::Hours(1);
    ConfigCacheOptions options;
    options.fallback_path = path;
    cache_ = std::make_unique<ConfigCache>(std::move(client), kRoot, options);
    absl::Status started = cache_->Start(absl::Milliseconds(200));
    std::filesystem::remove(path);  // read once; the cache changes nothing to write back
    if (!started.ok() || !cache_->IsStale()) std::abort();
  }

  std::unique_ptr<ConfigCache> cache_;
};

void BM_BoundGetInt(benchmark::State& state) {
  static BoundValue<int64_t>* bound =
      new BoundValue<int64_t>(StaleCache::Get().cache().Bind<int64_t>("ROW_LIMIT"));
  for (auto _ : state) benchmark::DoNotOptimize(bound->Get());
}
BENCHMARK(BM_BoundGetInt)->Threads(1)->Threads(2);

void BM_BoundReadString(benchmark::State& state) {
  static BoundValue<std::string>* bound = new BoundValue<std::string>(
      StaleCache::Get().cache().Bind<std::string>("SQLALCHEMY_DATABASE_URI"));
  for (auto _ : state) benchmark::DoNotOptimize(bound->Read()->size());
}
BENCHMARK(BM_BoundReadString)->Threads(1)->Threads(2);

void BM_BoundReadStruct(benchmark::State& state) {
  using Flags = std::map<std::string, bool>;
  static BoundValue<Flags>* bound =
      new BoundValue<Flags>(StaleCache::Get().cache().Bind<Flags>("FEATURE_FLAGS"));
  for (auto _ : state) {
    BoundValue<Flags>::ReadGuard flags = bound->Read();
    benchmark::DoNotOptimize(flags->find("ALERT_REPORTS")->second);
  }
}
BENCHMARK(BM_BoundReadStruct)->Threads(1)->Threads(2);

// The baseline: a typed read converted at each call.
void BM_CacheGetInt(benchmark::State& state) {
  ConfigCache& cache = StaleCache::Get().cache();
  for (auto _ : state) benchmark::DoNotOptimize(cache.Get<int64_t>("ROW_LIMIT"));
}
BENCHMARK(BM_CacheGetInt)->Threads(1)->Threads(2);

}  // namespace
}  // namespace confab

BENCHMARK_MAIN();
