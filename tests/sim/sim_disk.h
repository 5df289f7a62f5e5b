// SimDisk is one simulated member's disk: its durable epoch records, the newest snapshot (an image
// of the tree at a zxid) and the log after it. It is the member's zab::LogView.
//
// Epoch records, truncations and snapshots are durable as soon as they are written (the server
// writes each with its own fsync). Log appends are not: they become durable only when an fsync
// that began after them completes (BeginSync/CompleteSync, driven by the simulator at random
// delays). A crash loses what was never synced, except that some of it may have reached the
// platter anyway, and the record after those may be torn (recovery drops a torn tail).
//
// It never decides when anything happens: the simulator calls it and draws every random choice.
#ifndef CONFAB_TESTS_SIM_SIM_DISK_H_
#define CONFAB_TESTS_SIM_SIM_DISK_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confab/internal/peer.pb.h"
#include "server/common/types.h"
#include "server/tree/data_tree.h"
#include "server/zab/member.h"

namespace confab::sim {

// The state of a tree at a zxid, read through DataTree's snapshot cursor: what a snapshot file
// holds and what a SNAP streams to a follower.
struct TreeImage {
  struct Node {
    std::string path;
    Stat stat;
    std::string data;
  };
  Zxid zxid;
  uint64_t digest = 0;
  std::vector<Node> nodes;
  std::vector<tree::SessionInfo> sessions;
};

TreeImage CaptureTree(tree::DataTree& tree);
// A fresh tree holding `image`, checked by DataTree::FinishLoad (structure and digest).
absl::StatusOr<std::unique_ptr<tree::DataTree>> LoadTree(const TreeImage& image);

class SimDisk : public zab::LogView {
 public:
  // zab::LogView.
  Zxid LastZxid() const override;
  Zxid SnapshotZxid() const override;
  bool Contains(Zxid zxid) const override;
  Zxid LastAtOrBefore(Zxid zxid) const override;
  std::vector<internal::LogEntry> EntriesAfter(Zxid after, size_t max_entries) const override;

  zab::PersistentState epochs() const { return epochs_; }
  void WriteAcceptedEpoch(Epoch epoch) { epochs_.accepted_epoch = epoch; }
  void WriteCurrentEpoch(Epoch epoch) { epochs_.current_epoch = epoch; }

  // Appends after checking contiguity (as TxnLog does); not durable until a sync covers it.
  absl::Status Append(const internal::LogEntry& entry);
  // Discards every entry after `zxid` (which must not be below the snapshot).
  absl::Status TruncateAfter(Zxid zxid);
  // An fsync: BeginSync covers what was written so far; CompleteSync makes it durable and returns
  // the end of the durable log.
  uint64_t BeginSync() const { return writes_; }
  Zxid CompleteSync(uint64_t sync);
  bool HasUnsynced() const { return synced_ < entries_.size(); }
  // The end of the log prefix that survives any crash.
  Zxid DurableZxid() const;

  // A snapshot of this member's own applied state (at or below DurableZxid()): durable, and the
  // log before it is compacted away.
  absl::Status TakeSnapshot(std::shared_ptr<const TreeImage> image);
  // A snapshot received from the leader replaces the whole log.
  void InstallSnapshot(std::shared_ptr<const TreeImage> image);
  // Null when no snapshot was taken yet (the log starts at the beginning of history).
  const std::shared_ptr<const TreeImage>& snapshot() const { return snapshot_; }

  struct CrashLoss {
    size_t lost = 0;      // unsynced entries gone
    size_t survived = 0;  // unsynced entries that reached the platter anyway
    bool torn = false;    // the first lost entry was half written (dropped by recovery)
  };
  // Power loss. What remains is durable from now on (recovery reads and syncs it).
  CrashLoss Crash(std::mt19937_64& rng);

  size_t entry_count() const { return entries_.size(); }

 private:
  size_t LowerBound(Zxid zxid) const;  // index of the first entry with zxid >= `zxid`

  zab::PersistentState epochs_;
  std::shared_ptr<const TreeImage> snapshot_;
  std::vector<internal::LogEntry> entries_;  // after the snapshot, in zxid order
  std::vector<uint64_t> write_numbers_;      // per entry: the write that appended it
  size_t synced_ = 0;                        // entries_[0, synced_) are durable
  uint64_t writes_ = 0;
};

}  // namespace confab::sim

#endif  // CONFAB_TESTS_SIM_SIM_DISK_H_
