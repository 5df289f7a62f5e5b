// DataTree owns the replicated state: the hierarchical namespace (nodes with data and stat), the
// open sessions and the ephemeral nodes each owns, and a digest of it all. It applies committed
// transactions in zxid order, deterministically: the same transactions give every member the
// same tree, the same results and the same digest.
//
// It must never do I/O, read a clock, or lock: the caller serializes access (the server guards it
// with one reader/writer mutex; the simulator calls it from one thread).
//
// Snapshots are taken without stopping writes: BeginSnapshot() pins the current state and later
// transactions keep applying; a node changed or deleted while pinned is copied rather than
// overwritten (as ClickHouse Keeper's snapshotable hash table), so the pinned image can be read in
// chunks until EndSnapshot().
#ifndef CONFAB_SERVER_TREE_DATA_TREE_H_
#define CONFAB_SERVER_TREE_DATA_TREE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "confab/internal/txn.pb.h"
#include "confab/v1/coordination.pb.h"
#include "server/common/types.h"

namespace confab::tree {

// A change that watches may be waiting for. Produced by Apply in the order the changes happen.
struct WatchTrigger {
  v1::EventType type;
  std::string path;
  bool operator==(const WatchTrigger&) const = default;
};

struct NodeRead {
  std::string data;
  Stat stat;
};

struct SessionInfo {
  SessionId id;
  int32_t timeout_ms = 0;
  bool operator==(const SessionInfo&) const = default;
};

// One node. Its path and data share one allocation: most of a node's memory is its data, and one
// block instead of two strings saves an allocation header and two string objects per node.
class NodeEntry {
 public:
  NodeEntry(absl::string_view path, const Stat& node_stat, absl::string_view data,
            uint64_t made_in);

  absl::string_view path() const { return absl::string_view(bytes_.get(), path_size_); }
  absl::string_view data() const {
    return absl::string_view(bytes_.get() + path_size_, data_size_);
  }
  // Replaces the data, keeping the path.
  void SetData(absl::string_view data);

  Stat stat;
  // The snapshot generation the entry was made in: entries older than the pinned generation
  // belong to the pinned image and are copied, never changed in place; newer ones are not.
  uint64_t generation = 0;

 private:
  std::unique_ptr<char[]> bytes_;  // the path, then the data
  uint32_t path_size_ = 0;
  uint32_t data_size_ = 0;
};

// The pinned image of a snapshot in progress.
class SnapshotCursor {
 public:
  Zxid zxid() const { return zxid_; }
  uint64_t digest() const { return digest_; }
  uint64_t node_count() const { return node_count_; }
  const std::vector<SessionInfo>& sessions() const { return sessions_; }

 private:
  friend class DataTree;
  Zxid zxid_;
  uint64_t digest_ = 0;
  uint64_t node_count_ = 0;
  uint64_t visited_ = 0;
  uint64_t generation_ = 0;  // of the pin this cursor reads; checked on every chunk
  std::vector<SessionInfo> sessions_;
  std::list<NodeEntry>::const_iterator next_;
};

class DataTree {
 public:
  using NodeVisitor =
      std::function<void(absl::string_view path, const Stat& stat, absl::string_view data)>;

  DataTree();  // holds only the root "/"
  DataTree(const DataTree&) = delete;
  DataTree& operator=(const DataTree&) = delete;

  // Applies the committed transaction `txn` at `zxid`, which must be above last_applied()
  // (a broken invariant crashes with both zxids). Fills `result` with what the issuing client
  // gets (success or the error, ordered at this zxid like every other outcome) and appends the
  // changes watches may wait for to `triggers`. A Multi applies all of its ops or none.
  void Apply(Zxid zxid, const internal::Txn& txn, internal::TxnResult* result,
             std::vector<WatchTrigger>* triggers);

  // Reads. NO_NODE naming the path when it does not exist.
  absl::StatusOr<NodeRead> Get(absl::string_view path) const;
  absl::StatusOr<Stat> GetStat(absl::string_view path) const;
  // Child names, sorted, and the parent's stat.
  absl::Status GetChildren(absl::string_view path, std::vector<std::string>* children,
                           Stat* stat) const;

  bool HasSession(SessionId id) const;
  // The timeout of an open session; nullopt when it is not open.
  std::optional<int32_t> SessionTimeout(SessionId id) const;
  size_t session_count() const { return sessions_.size(); }
  std::vector<SessionInfo> Sessions() const;  // sorted by id
  // Paths of the ephemeral nodes `id` owns, sorted.
  std::vector<std::string> EphemeralsOf(SessionId id) const;

  Zxid last_applied() const { return last_applied_; }
  // Sum of a 64-bit hash of every node (path, data, stat) and session, kept incrementally: equal
  // trees have equal digests on every member.
  uint64_t digest() const { return digest_; }
  size_t node_count() const { return index_.size(); }
  // Approximate bytes of node data and paths held (for metrics and memory checks).
  size_t approximate_bytes() const { return approximate_bytes_; }

  // Snapshots. At most one at a time; Begin/End and the chunks take the same external lock as
  // Apply (chunks may share it with readers).
  SnapshotCursor BeginSnapshot();
  // Visits up to `max_nodes` more nodes of the pinned image; false once every node was visited
  // (the call that visits the last nodes already returns false).
  bool NextSnapshotChunk(SnapshotCursor* cursor, size_t max_nodes, const NodeVisitor& visit) const;
  void EndSnapshot();

  // Recovery from a snapshot: Load* in any order into a fresh tree, then FinishLoad, which
  // rebuilds the children and ephemeral indexes and checks the image (every parent present,
  // num_children right, digest equal to `expected_digest`), naming what is wrong.
  absl::Status LoadNode(absl::string_view path, const Stat& stat, absl::string_view data);
  absl::Status LoadSession(const SessionInfo& session);
  absl::Status FinishLoad(Zxid zxid, uint64_t expected_digest);

 private:
  struct Undo;  // the state of one path before a Multi changed it
  using UndoLog = std::vector<Undo>;
  using NodeList = std::list<NodeEntry>;

  // The ops. Each checks everything before it changes anything, so a failed op changed nothing;
  // `undo` (null outside a Multi) records what a successful one changed.
  absl::Status ApplyCreate(Zxid zxid, const internal::Txn& txn, const v1::CreateRequest& request,
                           v1::CreateResponse* response, std::vector<WatchTrigger>* triggers,
                           UndoLog* undo);
  absl::Status ApplySet(Zxid zxid, const internal::Txn& txn, const v1::SetRequest& request,
                        v1::SetResponse* response, std::vector<WatchTrigger>* triggers,
                        UndoLog* undo);
  absl::Status ApplyDelete(Zxid zxid, const v1::DeleteRequest& request,
                           v1::DeleteResponse* response, std::vector<WatchTrigger>* triggers,
                           UndoLog* undo);
  absl::Status ApplyCheck(const v1::CheckRequest& request) const;
  absl::Status ApplyOp(Zxid zxid, const internal::Txn& txn, const v1::Op& op, v1::OpResult* result,
                       std::vector<WatchTrigger>* triggers, UndoLog* undo);
  void ApplyMulti(Zxid zxid, const internal::Txn& txn, const v1::MultiRequest& request,
                  internal::TxnResult* result, std::vector<WatchTrigger>* triggers);
  absl::Status ApplyCreateSession(const internal::CreateSessionTxn& request);
  absl::Status ApplyCloseSession(Zxid zxid, const internal::CloseSessionTxn& request,
                                 std::vector<WatchTrigger>* triggers);
  // Deletes `path` (which exists and has no children) and updates its parent.
  void DeleteNode(Zxid zxid, absl::string_view path, std::vector<WatchTrigger>* triggers,
                  UndoLog* undo);

  const NodeEntry* Find(absl::string_view path) const;
  // Write/Remove record the previous state in `undo` (if not null), then call the primitives.
  void Write(absl::string_view path, const Stat& stat, std::optional<absl::string_view> data,
             UndoLog* undo);
  void Remove(absl::string_view path, UndoLog* undo);
  void Rollback(UndoLog* undo);
  // The primitives every change goes through; they keep children, ephemerals, digest and
  // approximate_bytes right and copy-on-write while a snapshot is pinned. `data` nullopt keeps
  // the data of the existing node (a stat-only change need not copy it).
  void PutNode(absl::string_view path, const Stat& stat, std::optional<absl::string_view> data);
  void EraseNode(absl::string_view path);
  void PutSession(SessionId id, int32_t timeout_ms);
  void EraseSession(SessionId id);
  bool IsPinned(const NodeEntry& entry) const;
  uint64_t ComputeDigest() const;  // from scratch, to check the incremental one

  // Index entries are hashed and compared by their node's path, so the index holds only the
  // position in nodes_ (8 bytes a node) and is looked up by any string_view.
  struct PathHash {
    using is_transparent = void;
    size_t operator()(absl::string_view path) const { return absl::HashOf(path); }
    size_t operator()(NodeList::const_iterator entry) const { return absl::HashOf(entry->path()); }
  };
  struct PathEq {
    using is_transparent = void;
    static absl::string_view PathOf(absl::string_view path) { return path; }
    static absl::string_view PathOf(NodeList::const_iterator entry) { return entry->path(); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return PathOf(a) == PathOf(b);
    }
  };

  NodeList nodes_;
  absl::flat_hash_set<NodeList::iterator, PathHash, PathEq> index_;
  absl::flat_hash_map<std::string, absl::btree_set<std::string>> children_;  // only non-empty
  absl::flat_hash_map<SessionId, int32_t> sessions_;
  absl::flat_hash_map<SessionId, absl::btree_set<std::string>> ephemerals_;  // only non-empty
  Zxid last_applied_;
  uint64_t digest_ = 0;
  size_t approximate_bytes_ = 0;
  bool snapshot_pinned_ = false;
  size_t pinned_count_ = 0;
  uint64_t generation_ = 0;  // incremented by BeginSnapshot
  // Inactive entries kept for the pinned image, erased by EndSnapshot. At most one per pinned
  // entry: a copy made while pinned is newer than the pin and is changed in place.
  std::vector<NodeList::iterator> retired_;
};

}  // namespace confab::tree

#endif  // CONFAB_SERVER_TREE_DATA_TREE_H_
