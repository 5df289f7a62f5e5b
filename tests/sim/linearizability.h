// A linearizability checker for client histories of writes and synced reads on single nodes of
// the tree, in the style of Porcupine and Knossos: the Wing & Gong search with Lowe's memoization
// of (operations linearized, model state), run separately for each key (P-compositionality: every
// operation touches one key, so the history is linearizable iff each key's sub-history is).
//
// The model of one key is what a client can observe of one node: whether it exists, the value last
// written and its version. A write whose outcome the client never learned (its leader died) may
// take effect at any point after it was invoked, or never; any output is accepted for it.
//
// It owns no simulator state: histories come from the simulator or from hand-made tests.
#ifndef CONFAB_TESTS_SIM_LINEARIZABILITY_H_
#define CONFAB_TESTS_SIM_LINEARIZABILITY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "confab/v1/coordination.pb.h"

namespace confab::sim {

// What a client can observe of one node.
struct NodeValue {
  bool exists = false;
  int64_t data = 0;     // the id of the write that set the data (values are unique per write)
  int32_t version = 0;  // as Stat.version: 0 at create, +1 per set
  bool operator==(const NodeValue&) const = default;
};

enum class OpKind { kCreate, kSet, kDelete, kRead };

struct Operation {
  int client = 0;
  int key = 0;
  OpKind kind = OpKind::kRead;
  // Input.
  int64_t data = 0;                         // create, set: the value written
  std::optional<int32_t> expected_version;  // set, delete: conditional on this version
  // Output (ignored when `unknown`).
  bool unknown = false;          // a write whose outcome was never learned
  v1::ErrorCode error = v1::OK;  // writes: success or why it failed
  int32_t version_after = 0;     // a successful set: the version it made
  NodeValue read;                // reads: what was seen
  // Real time, on one logical clock: every invoke and response of a history has its own
  // distinct value. `response` is ignored when `unknown` (the operation never returned).
  int64_t invoke = 0;
  int64_t response = 0;
};

struct LinearizabilityResult {
  bool linearizable = true;
  // The search gave up (more than `states_max` states of one key were visited) without finding a
  // linearization or ruling one out: neither a pass nor a failure.
  bool inconclusive = false;
  // For a failure: the key, the longest linearizable prefix the search found, and the
  // operations that could not follow it.
  std::string explanation;
};

// Checks `history` (any order). `states_max` bounds the memoized states per key.
LinearizabilityResult CheckLinearizable(const std::vector<Operation>& history,
                                        size_t states_max = 2'000'000);

std::string DescribeOperation(const Operation& op);

}  // namespace confab::sim

#endif  // CONFAB_TESTS_SIM_LINEARIZABILITY_H_
