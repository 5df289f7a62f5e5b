#include "tests/sim/linearizability.h"

#include <algorithm>
#include <limits>
#include <map>
#include <unordered_set>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace confab::sim {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// Operations of the longest linearizable prefix shown in a failure (its tail).
constexpr size_t kExplainedPrefixOpsMax = 12;

// What `op` does to a node holding `value`; false if the op's recorded output cannot be seen from
// that state (an unknown write's output is anything).
bool Step(const Operation& op, NodeValue* value) {
  v1::ErrorCode expected = v1::OK;
  switch (op.kind) {
    case OpKind::kRead:
      return op.read == *value;
    case OpKind::kCreate:
      if (value->exists) expected = v1::NODE_EXISTS;
      if (!op.unknown && op.error != expected) return false;
      if (expected == v1::OK) *value = NodeValue{true, op.data, 0};
      return true;
    case OpKind::kSet:
      if (!value->exists) {
        expected = v1::NO_NODE;
      } else if (op.expected_version && *op.expected_version != value->version) {
        expected = v1::BAD_VERSION;
      }
      if (!op.unknown && (op.error != expected ||
                          (expected == v1::OK && op.version_after != value->version + 1))) {
        return false;
      }
      if (expected == v1::OK) *value = NodeValue{true, op.data, value->version + 1};
      return true;
    case OpKind::kDelete:
      if (!value->exists) {
        expected = v1::NO_NODE;
      } else if (op.expected_version && *op.expected_version != value->version) {
        expected = v1::BAD_VERSION;
      }
      if (!op.unknown && op.error != expected) return false;
      if (expected == v1::OK) *value = NodeValue{};
      return true;
  }
  return false;
}

std::string DescribeValue(const NodeValue& value) {
  return value.exists ? absl::StrCat("w", value.data, " v", value.version) : "none";
}

// One call or return of the history, in a doubly linked list ordered by time (Porcupine's
// layout: linearizing a call lifts it and its return out of the list; backtracking puts them
// back where they were).
struct ListEntry {
  size_t op = 0;
  int64_t time = 0;
  ListEntry* match = nullptr;  // a call's return; null for a return
  ListEntry* prev = nullptr;
  ListEntry* next = nullptr;
};

void Lift(ListEntry* call) {
  call->prev->next = call->next;
  call->next->prev = call->prev;
  ListEntry* ret = call->match;
  ret->prev->next = ret->next;
  if (ret->next != nullptr) ret->next->prev = ret->prev;
}

void Unlift(ListEntry* call) {
  ListEntry* ret = call->match;
  ret->prev->next = ret;
  if (ret->next != nullptr) ret->next->prev = ret;
  call->prev->next = call;
  call->next->prev = call;
}

struct SearchState {
  std::vector<uint64_t> linearized;  // bit per operation
  NodeValue value;
  bool operator==(const SearchState&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const SearchState& s) {
    return H::combine(std::move(h), s.linearized, s.value.exists, s.value.data, s.value.version);
  }
};

struct KeyResult {
  bool linearizable = true;
  bool inconclusive = false;
  std::vector<size_t> longest_prefix;  // indexes into the key's operations
};

// Wing & Gong with Lowe's memoization over the operations of one key.
KeyResult CheckKey(const std::vector<const Operation*>& ops, size_t states_max) {
  const size_t n = ops.size();
  std::vector<ListEntry> entries(2 * n);
  std::vector<ListEntry*> order;
  order.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    ListEntry& call = entries[2 * i];
    ListEntry& ret = entries[2 * i + 1];
    call.op = ret.op = i;
    call.time = ops[i]->invoke;
    ret.time = ops[i]->unknown ? kNever : ops[i]->response;
    call.match = &ret;
    order.push_back(&call);
    order.push_back(&ret);
  }
  // Calls before returns at equal times (only the never-returning ones share a time).
  std::stable_sort(order.begin(), order.end(), [](const ListEntry* a, const ListEntry* b) {
    if (a->time != b->time) return a->time < b->time;
    return a->match != nullptr && b->match == nullptr;
  });
  ListEntry head;
  ListEntry* last = &head;
  for (ListEntry* entry : order) {
    last->next = entry;
    entry->prev = last;
    last = entry;
  }

  KeyResult result;
  SearchState state{std::vector<uint64_t>((n + 63) / 64, 0), NodeValue{}};
  std::unordered_set<SearchState, absl::Hash<SearchState>> visited;
  std::vector<std::pair<ListEntry*, NodeValue>> calls;  // the linearization so far
  ListEntry* entry = head.next;
  while (head.next != nullptr) {
    if (entry->match != nullptr) {
      NodeValue next = state.value;
      if (Step(*ops[entry->op], &next)) {
        SearchState candidate{state.linearized, next};
        candidate.linearized[entry->op / 64] |= uint64_t{1} << (entry->op % 64);
        if (visited.insert(candidate).second) {
          if (visited.size() > states_max) {
            result.inconclusive = true;
            return result;
          }
          calls.emplace_back(entry, state.value);
          state = std::move(candidate);
          Lift(entry);
          if (calls.size() > result.longest_prefix.size()) {
            result.longest_prefix.clear();
            for (const auto& [call, before] : calls) result.longest_prefix.push_back(call->op);
          }
          entry = head.next;
          continue;
        }
      }
      entry = entry->next;
    } else {
      // A return whose call is not linearized yet: undo the last choice.
      if (calls.empty()) {
        result.linearizable = false;
        return result;
      }
      auto [call, before] = calls.back();
      calls.pop_back();
      state.value = before;
      state.linearized[call->op / 64] &= ~(uint64_t{1} << (call->op % 64));
      Unlift(call);
      entry = call->next;
    }
  }
  return result;
}

std::string ExplainFailure(int key, const std::vector<const Operation*>& ops,
                           const std::vector<size_t>& prefix) {
  std::string out = absl::StrCat("key ", key, ": ", ops.size(),
                                 " operations have no linearization; the longest linearizable "
                                 "prefix has ",
                                 prefix.size(), " operations, ending:\n");
  NodeValue value;
  std::vector<bool> in_prefix(ops.size(), false);
  for (size_t i = 0; i < prefix.size(); ++i) {
    in_prefix[prefix[i]] = true;
    Step(*ops[prefix[i]], &value);
    if (i + kExplainedPrefixOpsMax >= prefix.size()) {
      absl::StrAppend(&out, "  ", DescribeOperation(*ops[prefix[i]]), "  => ", DescribeValue(value),
                      "\n");
    }
  }
  // What could have gone next: every operation invoked before the first remaining response.
  int64_t first_response = kNever;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!in_prefix[i] && !ops[i]->unknown)
      first_response = std::min(first_response, ops[i]->response);
  }
  absl::StrAppend(&out, "and none of these can follow it:\n");
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!in_prefix[i] && ops[i]->invoke < first_response) {
      absl::StrAppend(&out, "  ", DescribeOperation(*ops[i]), "\n");
    }
  }
  return out;
}

}  // namespace

std::string DescribeOperation(const Operation& op) {
  std::string version = op.expected_version ? absl::StrCat(", v", *op.expected_version) : "";
  std::string call;
  switch (op.kind) {
    case OpKind::kCreate:
      call = absl::StrCat("create(k", op.key, ", w", op.data, ")");
      break;
    case OpKind::kSet:
      call = absl::StrCat("set(k", op.key, ", w", op.data, version, ")");
      break;
    case OpKind::kDelete:
      call = absl::StrCat("delete(k", op.key, version, ")");
      break;
    case OpKind::kRead:
      call = absl::StrCat("read(k", op.key, ")");
      break;
  }
  std::string outcome;
  if (op.unknown) {
    outcome = "unknown";
  } else if (op.kind == OpKind::kRead) {
    outcome = DescribeValue(op.read);
  } else if (op.error != v1::OK) {
    outcome = v1::ErrorCode_Name(op.error);
  } else {
    outcome = op.kind == OpKind::kSet ? absl::StrCat("OK v", op.version_after) : "OK";
  }
  return absl::StrCat("client ", op.client, " ", call, " -> ", outcome, "  [", op.invoke, "..",
                      op.unknown ? std::string("?") : absl::StrCat(op.response), "]");
}

LinearizabilityResult CheckLinearizable(const std::vector<Operation>& history, size_t states_max) {
  std::map<int, std::vector<const Operation*>> by_key;
  for (const Operation& op : history) by_key[op.key].push_back(&op);
  LinearizabilityResult result;
  std::vector<int> inconclusive_keys;
  for (const auto& [key, ops] : by_key) {
    KeyResult key_result = CheckKey(ops, states_max);
    if (key_result.inconclusive) {
      inconclusive_keys.push_back(key);
    } else if (!key_result.linearizable) {
      result.linearizable = false;
      result.explanation = ExplainFailure(key, ops, key_result.longest_prefix);
      return result;
    }
  }
  if (!inconclusive_keys.empty()) {
    result.inconclusive = true;
    result.explanation = absl::StrCat("search gave up after ", states_max, " states on keys ",
                                      absl::StrJoin(inconclusive_keys, ", "));
  }
  return result;
}

}  // namespace confab::sim
