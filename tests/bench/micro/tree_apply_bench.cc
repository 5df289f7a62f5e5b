// Micro-benchmarks of DataTree::Apply, the state machine every member runs for every committed
// transaction: sets of 256-byte values on trees of growing size, persistent creates, and the
// ephemeral sequential creates of service registration.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "confab/internal/txn.pb.h"
#include "server/common/types.h"
#include "server/tree/data_tree.h"

namespace confab::tree {
namespace {

constexpr int kValueBytes = 256;
constexpr int64_t kSessionId = 7;

// Applies transactions at consecutive zxids, reusing the result and trigger buffers.
class Applier {
 public:
  void Apply(DataTree& tree, const internal::Txn& txn) {
    result_.Clear();
    triggers_.clear();
    zxid_ = zxid_.Next();
    tree.Apply(zxid_, txn, &result_, &triggers_);
  }
  const internal::TxnResult& result() const { return result_; }

 private:
  Zxid zxid_{1, 0};
  internal::TxnResult result_;
  std::vector<WatchTrigger> triggers_;
};

internal::Txn CreateTxn(std::string path, v1::CreateMode mode = v1::PERSISTENT) {
  internal::Txn txn;
  txn.set_time_ms(1);
  txn.set_session_id(kSessionId);
  txn.mutable_create()->set_path(std::move(path));
  txn.mutable_create()->set_data(std::string(kValueBytes, 'v'));
  txn.mutable_create()->set_mode(mode);
  return txn;
}

// A tree of "/b" and `nodes` children of it, and a session that may own ephemerals.
void Populate(DataTree& tree, Applier& applier, int64_t nodes) {
  internal::Txn session;
  session.mutable_create_session()->set_session_id(kSessionId);
  session.mutable_create_session()->set_timeout_ms(10000);
  applier.Apply(tree, session);
  applier.Apply(tree, CreateTxn("/b"));
  for (int64_t i = 0; i < nodes; ++i) applier.Apply(tree, CreateTxn(absl::StrCat("/b/n", i)));
}

void BM_ApplySet(benchmark::State& state) {
  const int64_t nodes = state.range(0);
  DataTree tree;
  Applier applier;
  Populate(tree, applier, nodes);
  // One prepared transaction per node, so the loop measures Apply alone.
  std::vector<internal::Txn> sets(static_cast<size_t>(std::min<int64_t>(nodes, 4096)));
  for (size_t i = 0; i < sets.size(); ++i) {
    sets[i].set_time_ms(2);
    sets[i].set_session_id(kSessionId);
    sets[i].mutable_set()->set_path(
        absl::StrCat("/b/n", i * static_cast<size_t>(nodes) / sets.size()));
    sets[i].mutable_set()->set_data(std::string(kValueBytes, 'w'));
  }
  size_t next = 0;
  for (auto _ : state) {
    applier.Apply(tree, sets[next]);
    next = next + 1 == sets.size() ? 0 : next + 1;
  }
  if (applier.result().has_error()) state.SkipWithError(applier.result().error().message().c_str());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplySet)->Arg(1000)->Arg(100000);

void BM_ApplyCreate(benchmark::State& state) {
  DataTree tree;
  Applier applier;
  Populate(tree, applier, 0);
  internal::Txn txn = CreateTxn("");
  int64_t n = 0;
  for (auto _ : state) {
    txn.mutable_create()->set_path(absl::StrCat("/b/n", n++));
    applier.Apply(tree, txn);
  }
  if (applier.result().has_error()) state.SkipWithError(applier.result().error().message().c_str());
  state.SetItemsProcessed(state.iterations());
  state.counters["nodes"] = static_cast<double>(tree.node_count());
}
BENCHMARK(BM_ApplyCreate);

void BM_ApplyCreateEphemeralSequential(benchmark::State& state) {
  DataTree tree;
  Applier applier;
  Populate(tree, applier, 0);
  const internal::Txn txn = CreateTxn("/b/e-", v1::EPHEMERAL_SEQUENTIAL);
  for (auto _ : state) applier.Apply(tree, txn);
  if (applier.result().has_error()) state.SkipWithError(applier.result().error().message().c_str());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyCreateEphemeralSequential);

}  // namespace
}  // namespace confab::tree

BENCHMARK_MAIN();
