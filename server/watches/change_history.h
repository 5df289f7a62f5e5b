// ChangeHistory remembers the most recent changes (zxid, event type, path) that watches could
// wait for, so that a client coming back after a disconnect or a failover can re-register its
// watches "from the last zxid it saw" and receive exactly what it missed (what ZooKeeper's
// persistent watches drop and etcd answers with ErrCompacted). Bounded: it keeps the newest
// `capacity` changes and says when a request reaches back further than that.
//
// Plain data, no locks: the server records under the same lock it applies with.
#ifndef CONFAB_SERVER_WATCHES_CHANGE_HISTORY_H_
#define CONFAB_SERVER_WATCHES_CHANGE_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "confab/v1/coordination.pb.h"
#include "server/common/types.h"
#include "server/tree/data_tree.h"

namespace confab::watches {

class ChangeHistory {
 public:
  // Remembers changes after `start` (the state it starts from: nothing at or before it is known).
  ChangeHistory(size_t capacity, Zxid start) : capacity_(capacity), covered_after_(start) {}

  // Records a change; zxids must not go backwards.
  void Record(Zxid zxid, const tree::WatchTrigger& trigger);

  // Appends, in order, the events after `start` that a watch of `kind` on `path` would have been
  // told of (for a one-shot kind only the first, as it would have fired once). Returns false when
  // the history no longer reaches back to `start`: changes between `start` and covered_after()
  // are unknown, and the caller must re-read what the watch covers.
  bool Since(Zxid start, absl::string_view path, v1::WatchKind kind,
             std::vector<v1::WatchEvent>* out) const;

  // Every change after this zxid is remembered.
  Zxid covered_after() const { return covered_after_; }
  size_t size() const { return size_; }

 private:
  // Changes are kept in blocks, each with the paths of its changes in one string: 16 bytes per
  // change plus its path's bytes, instead of a string object and an allocation per change (with
  // the default capacity, the history is the largest thing a member holds after its nodes).
  static constexpr size_t kBlockChanges = 4096;
  static constexpr size_t kBlockPathBytesMax = size_t{1} << 30;  // offsets fit 32 bits
  struct Change {
    Zxid zxid;
    uint32_t path_end;  // the end of its path in the block's paths; it starts where the last ended
    v1::EventType type;
  };
  struct Block {
    std::vector<Change> changes;
    std::string paths;
    absl::string_view PathOf(size_t i) const {
      const uint32_t begin = i == 0 ? 0 : changes[i - 1].path_end;
      return absl::string_view(paths).substr(begin, changes[i].path_end - begin);
    }
  };

  size_t capacity_;
  Zxid covered_after_;
  std::deque<Block> blocks_;
  size_t first_ = 0;  // the first change of blocks_.front() still remembered
  size_t size_ = 0;
};

}  // namespace confab::watches

#endif  // CONFAB_SERVER_WATCHES_CHANGE_HISTORY_H_
