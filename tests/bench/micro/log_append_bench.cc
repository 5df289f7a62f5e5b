// Micro-benchmarks of the write path's disk half, in a temporary directory on the disk holding
// $TMPDIR (default /tmp; point it at the data disk to measure that one):
//   BM_TxnLogAppendSync/B   B records appended, then one Sync (write + fdatasync): the fsync
//                           cost, and how it is shared by the records of a batch;
//   BM_LogWriterGroupCommit/K  the LogWriter thread under a producer keeping K records not yet
//                           durable, as K requests in flight do: records/s and records per fsync.
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "confab/internal/txn.pb.h"
#include "server/common/types.h"
#include "server/storage/log_writer.h"
#include "server/storage/txn_log.h"

namespace confab::storage {
namespace {

// A fresh directory, removed with everything in it at the end of the benchmark.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "confab-log-bench-XXXXXX");
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What the server logs for a set of 256 bytes.
std::string SetPayload() {
  internal::Txn txn;
  txn.set_time_ms(1700000000000);
  txn.set_session_id(0x1234567890);
  txn.mutable_set()->set_path("/bench/c3/k17");
  txn.mutable_set()->set_data(std::string(256, 'v'));
  return txn.SerializeAsString();
}

void BM_TxnLogAppendSync(benchmark::State& state) {
  const int64_t batch = state.range(0);
  TempDir dir;
  LogRecoveryReport report;
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), LogOptions(), &report);
  if (dir.path().empty() || !log.ok()) {
    state.SkipWithError("cannot open a log in a temporary directory");
    return;
  }
  const std::string payload = SetPayload();
  Zxid zxid(1, 0);
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i) {
      zxid = zxid.Next();
      if (!(*log)->Append(zxid, payload).ok()) state.SkipWithError("append failed");
    }
    if (!(*log)->Sync().ok()) state.SkipWithError("sync failed");
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * static_cast<int64_t>(payload.size()));
  state.counters["fsyncs_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TxnLogAppendSync)->Arg(1)->Arg(16)->Arg(64)->Arg(256)->UseRealTime();

void BM_LogWriterGroupCommit(benchmark::State& state) {
  const int64_t in_flight = state.range(0);
  TempDir dir;
  LogRecoveryReport report;
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), LogOptions(), &report);
  if (dir.path().empty() || !log.ok()) {
    state.SkipWithError("cannot open a log in a temporary directory");
    return;
  }
  absl::Mutex mu;
  int64_t durable = 0;  // counter of the highest durable zxid (one epoch)
  std::atomic<bool> failed{false};
  LogWriter writer(
      *std::move(log),
      [&](Zxid zxid, size_t) {
        absl::MutexLock lock(&mu);
        durable = zxid.counter();
      },
      [&](const absl::Status&) {
        failed = true;
        absl::MutexLock lock(&mu);
        durable = INT64_MAX;
      });
  const std::string payload = SetPayload();
  int64_t enqueued = 0;
  for (auto _ : state) {
    writer.Enqueue(Zxid(1, static_cast<uint32_t>(++enqueued)), payload);
    absl::MutexLock lock(&mu);
    auto room = [&]() { return enqueued - durable < in_flight; };
    mu.Await(absl::Condition(&room));
  }
  writer.Flush();
  const LogWriterStats stats = writer.stats();
  writer.Stop();
  if (failed) state.SkipWithError("the log writer failed");
  state.SetItemsProcessed(state.iterations());
  state.counters["records_per_fsync"] =
      stats.batches == 0 ? 0
                         : static_cast<double>(stats.records) / static_cast<double>(stats.batches);
  state.counters["fsyncs_per_s"] =
      benchmark::Counter(static_cast<double>(stats.batches), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_LogWriterGroupCommit)->Arg(1)->Arg(16)->Arg(128)->Arg(1024)->UseRealTime();

}  // namespace
}  // namespace confab::storage

BENCHMARK_MAIN();
