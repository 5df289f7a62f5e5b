// Builders for transactions and a reader of a whole tree, shared by the DataTree tests.
#ifndef CONFAB_TESTS_UNIT_TREE_TREE_TEST_UTIL_H_
#define CONFAB_TESTS_UNIT_TREE_TREE_TEST_UTIL_H_

#include <deque>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "confab/internal/txn.pb.h"
#include "confab/v1/coordination.pb.h"
#include "gtest/gtest.h"
#include "server/common/types.h"
#include "server/tree/data_tree.h"

namespace confab {

inline void PrintTo(const Stat& s, std::ostream* os) {
  *os << "{czxid=" << s.czxid << " mzxid=" << s.mzxid << " pzxid=" << s.pzxid
      << " ctime=" << s.ctime << " mtime=" << s.mtime << " version=" << s.version
      << " cversion=" << s.cversion << " owner=" << s.ephemeral_owner
      << " data_length=" << s.data_length << " num_children=" << s.num_children << "}";
}

namespace tree {

inline void PrintTo(const WatchTrigger& t, std::ostream* os) {
  *os << v1::EventType_Name(t.type) << "(" << t.path << ")";
}

inline v1::Op CreateOp(absl::string_view path, absl::string_view data,
                       v1::CreateMode mode = v1::PERSISTENT) {
  v1::Op op;
  op.mutable_create()->set_path(std::string(path));
  op.mutable_create()->set_data(std::string(data));
  op.mutable_create()->set_mode(mode);
  return op;
}
inline v1::Op SetOp(absl::string_view path, absl::string_view data,
                    std::optional<int32_t> version = std::nullopt) {
  v1::Op op;
  op.mutable_set()->set_path(std::string(path));
  op.mutable_set()->set_data(std::string(data));
  if (version) op.mutable_set()->set_version(*version);
  return op;
}
inline v1::Op DeleteOp(absl::string_view path, std::optional<int32_t> version = std::nullopt) {
  v1::Op op;
  op.mutable_delete_()->set_path(std::string(path));
  if (version) op.mutable_delete_()->set_version(*version);
  return op;
}
inline v1::Op CheckOp(absl::string_view path, int32_t version) {
  v1::Op op;
  op.mutable_check()->set_path(std::string(path));
  op.mutable_check()->set_version(version);
  return op;
}

// A single op as its own transaction (Check is only valid inside a Multi).
inline internal::Txn TxnOf(const v1::Op& op, int64_t session = 0) {
  internal::Txn txn;
  txn.set_session_id(session);
  switch (op.op_case()) {
    case v1::Op::kCreate:
      *txn.mutable_create() = op.create();
      break;
    case v1::Op::kSet:
      *txn.mutable_set() = op.set();
      break;
    case v1::Op::kDelete:
      *txn.mutable_delete_() = op.delete_();
      break;
    default:
      ADD_FAILURE() << "no single-op transaction for " << op.ShortDebugString();
  }
  return txn;
}
inline internal::Txn MultiTxn(const std::vector<v1::Op>& ops, int64_t session = 0) {
  internal::Txn txn;
  txn.set_session_id(session);
  v1::MultiRequest* multi = txn.mutable_multi();  // set even when empty
  for (const v1::Op& op : ops) *multi->add_ops() = op;
  return txn;
}
inline internal::Txn OpenSessionTxn(int64_t id, int32_t timeout_ms) {
  internal::Txn txn;
  txn.mutable_create_session()->set_session_id(id);
  txn.mutable_create_session()->set_timeout_ms(timeout_ms);
  return txn;
}
inline internal::Txn CloseSessionTxn(int64_t id) {
  internal::Txn txn;
  txn.set_session_id(id);
  txn.mutable_close_session()->set_session_id(id);
  return txn;
}

// Applies transactions at consecutive zxids of epoch 1, with a clock that advances 10 ms each.
class Harness {
 public:
  internal::TxnResult Apply(internal::Txn txn) {
    zxid_ = zxid_.Next();
    now_ms_ += 10;
    txn.set_time_ms(now_ms_);
    internal::TxnResult result;
    triggers_.clear();
    tree_.Apply(zxid_, txn, &result, &triggers_);
    return result;
  }
  internal::TxnResult Apply(const v1::Op& op, int64_t session = 0) {
    return Apply(TxnOf(op, session));
  }

  DataTree& tree() { return tree_; }
  Zxid zxid() const { return zxid_; }         // of the last Apply
  int64_t now_ms() const { return now_ms_; }  // time_ms of the last Apply
  const std::vector<WatchTrigger>& triggers() const { return triggers_; }

 private:
  DataTree tree_;
  Zxid zxid_{1, 0};
  int64_t now_ms_ = 1'000'000;
  std::vector<WatchTrigger> triggers_;
};

struct NodeImage {
  std::string data;
  Stat stat;
  bool operator==(const NodeImage&) const = default;
};
inline void PrintTo(const NodeImage& n, std::ostream* os) {
  *os << "{data=\"" << n.data << "\" stat=";
  confab::PrintTo(n.stat, os);
  *os << "}";
}
using TreeImage = std::map<std::string, NodeImage>;

// Every node reachable from the root, read through the public reads.
inline TreeImage ReadImage(const DataTree& tree) {
  TreeImage image;
  std::deque<std::string> pending = {"/"};
  while (!pending.empty()) {
    std::string path = std::move(pending.front());
    pending.pop_front();
    auto read = tree.Get(path);
    EXPECT_TRUE(read.ok()) << read.status();
    if (!read.ok()) continue;
    std::vector<std::string> children;
    EXPECT_TRUE(tree.GetChildren(path, &children, nullptr).ok());
    for (const std::string& child : children) {
      pending.push_back(path == "/" ? absl::StrCat("/", child) : absl::StrCat(path, "/", child));
    }
    image.emplace(path, NodeImage{read->data, read->stat});
  }
  return image;
}

// Loads `image` and `sessions` into `fresh` (nodes in reverse order, to show order does not
// matter) and finishes the load.
inline absl::Status LoadImage(const TreeImage& image, const std::vector<SessionInfo>& sessions,
                              Zxid zxid, uint64_t digest, DataTree* fresh) {
  for (auto it = image.rbegin(); it != image.rend(); ++it) {
    absl::Status status = fresh->LoadNode(it->first, it->second.stat, it->second.data);
    if (!status.ok()) return status;
  }
  for (const SessionInfo& session : sessions) {
    absl::Status status = fresh->LoadSession(session);
    if (!status.ok()) return status;
  }
  return fresh->FinishLoad(zxid, digest);
}

// A seeded source of random transactions over a small namespace (names a, b, c; depth 1 to 3)
// and `session_count` session ids, chosen so that every outcome (success and each error) is
// common. Paths of existing nodes come from a random walk over `tree`'s reads.
class RandomTxns {
 public:
  RandomTxns(uint64_t seed, int session_count) : rng_(seed), session_count_(session_count) {}

  internal::Txn Next(const DataTree& tree) {
    const int kind = Uniform(100);
    const int64_t session = 1 + Uniform(session_count_);
    if (kind < 30) return TxnOf(RandomCreate(tree), session);
    if (kind < 50) return TxnOf(RandomSet(tree), session);
    if (kind < 65) return TxnOf(RandomDelete(tree), session);
    if (kind < 85) {
      std::vector<v1::Op> ops;
      for (int i = Uniform(5); i > 0; --i) ops.push_back(RandomOp(tree));
      return MultiTxn(ops, session);
    }
    if (kind < 93) return OpenSessionTxn(session, 1000 * (1 + Uniform(5)));
    return CloseSessionTxn(session);
  }

  v1::Op RandomOp(const DataTree& tree) {
    switch (Uniform(4)) {
      case 0:
        return RandomCreate(tree);
      case 1:
        return RandomSet(tree);
      case 2:
        return RandomDelete(tree);
      default: {
        const std::string path = AnyPath(tree);
        const int r = Uniform(10);
        return CheckOp(path, r < 3 ? -1 : r < 8 ? ActualVersion(tree, path) : Uniform(3));
      }
    }
  }

  int Uniform(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }

 private:
  v1::Op RandomCreate(const DataTree& tree) {
    const int m = Uniform(10);
    const v1::CreateMode mode = m < 6    ? v1::PERSISTENT
                                : m < 8  ? v1::EPHEMERAL
                                : m == 8 ? v1::PERSISTENT_SEQUENTIAL
                                         : v1::EPHEMERAL_SEQUENTIAL;
    std::string path;
    if (Uniform(2) == 0) {
      path = SpacePath();
    } else {
      const std::string parent = ExistingPath(tree);
      path = absl::StrCat(parent == "/" ? "" : parent, "/", Name());
    }
    return CreateOp(path, Data(), mode);
  }
  v1::Op RandomSet(const DataTree& tree) {
    const std::string path = AnyPath(tree);
    return SetOp(path, Data(), Version(tree, path));
  }
  v1::Op RandomDelete(const DataTree& tree) {
    const std::string path = AnyPath(tree);
    return DeleteOp(path, Version(tree, path));
  }

  std::string Name() { return std::string(1, static_cast<char>('a' + Uniform(3))); }
  std::string Data() { return absl::StrCat("d", Uniform(1000)); }
  std::string SpacePath() {
    std::string path;
    for (int depth = 1 + Uniform(3); depth > 0; --depth) absl::StrAppend(&path, "/", Name());
    return path;
  }
  std::string ExistingPath(const DataTree& tree) {
    std::string path = "/";
    std::vector<std::string> children;
    while (tree.GetChildren(path, &children, nullptr).ok() && !children.empty() &&
           Uniform(3) != 0) {
      const std::string& child =
          children[static_cast<size_t>(Uniform(static_cast<int>(children.size())))];
      path = path == "/" ? absl::StrCat("/", child) : absl::StrCat(path, "/", child);
    }
    return path;
  }
  std::string AnyPath(const DataTree& tree) {
    return Uniform(10) < 7 ? ExistingPath(tree) : SpacePath();
  }
  static int32_t ActualVersion(const DataTree& tree, const std::string& path) {
    auto stat = tree.GetStat(path);
    return stat.ok() ? stat->version : 0;
  }
  std::optional<int32_t> Version(const DataTree& tree, const std::string& path) {
    const int r = Uniform(10);
    if (r < 4) return std::nullopt;
    if (r < 8) return ActualVersion(tree, path);
    return Uniform(3);
  }

  std::mt19937_64 rng_;
  int session_count_;
};

}  // namespace tree
}  // namespace confab

#endif  // CONFAB_TESTS_UNIT_TREE_TREE_TEST_UTIL_H_
