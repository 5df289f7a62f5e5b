// WatchTable is the client's copy of its session's watches: which watcher waits for which event.
// The server sends a session one event per change however many of its watches match, so the
// client fans each event out to its watchers itself, by the same rules as the server's
// WatchRegistry (server/watches/watch_registry.h):
//   NODE_CREATED / NODE_DATA_CHANGED at P: data watches on P, persistent on P, recursive on P or
//     an ancestor of P.
//   NODE_DELETED at P: data and child watches on P, persistent on P, recursive on P or above.
//   NODE_CHILDREN_CHANGED at P: child watches on P, persistent on P.
// One-shot (data, child) entries leave the table when they fire. Plain data: no locks, no I/O;
// the owner (ClientSession) guards it and runs the watchers.
#ifndef CONFAB_SDK_SRC_WATCH_TABLE_H_
#define CONFAB_SDK_SRC_WATCH_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "confab/client.h"
#include "confab/v1/coordination.pb.h"

namespace confab {

class WatchTable {
 public:
  struct Entry {
    uint64_t id = 0;
    std::string path;
    v1::WatchKind kind = v1::DATA_WATCH;
    // Run only on the callback thread, only while `active`.
    Watcher watcher;
    // Cleared when the watch is removed or the session lost: queued events are then dropped.
    std::atomic<bool> active{true};
    // The server has confirmed the watch (a persistent one is in the table from its AddWatch on).
    bool armed = false;
    // One-shot watches: what the read that set the watch saw, to tell after a reconnect whether
    // the event may have been missed.
    bool existed = false;
    int64_t read_zxid = 0;
    // The stream the server last confirmed the watch on, and the zxid through which its events
    // are known delivered as of the end of the stream before that: where a re-add resumes from.
    uint64_t stream = 0;
    int64_t resume_zxid = 0;
  };
  using EntryPtr = std::shared_ptr<Entry>;

  // Adds an entry and returns it (its id is assigned here).
  EntryPtr Add(std::string path, v1::WatchKind kind, Watcher watcher);
  EntryPtr Find(uint64_t id) const;
  // Removes the entry; returns it (null if there was none).
  EntryPtr Remove(uint64_t id);
  // How many entries (armed or not) watch `path` with `kind`.
  int Count(absl::string_view path, v1::WatchKind kind) const;

  // The armed entries `event` fires, in the order they were added per path; the one-shot ones
  // leave the table.
  std::vector<EntryPtr> Route(const v1::WatchEvent& event);

  // The armed entries watching `path` with `kind`.
  std::vector<EntryPtr> Armed(absl::string_view path, v1::WatchKind kind) const;
  // The distinct (path, kind) pairs with armed entries, sorted: what to register on a new stream.
  std::vector<std::pair<std::string, v1::WatchKind>> ArmedKeys() const;
  // Every entry, armed or not, in no particular order.
  std::vector<EntryPtr> All() const;

  // Removes every entry and returns them.
  std::vector<EntryPtr> Clear();

  size_t size() const { return by_id_.size(); }

 private:
  uint64_t next_id_ = 1;
  absl::flat_hash_map<uint64_t, EntryPtr> by_id_;
  // path -> its entries in the order added.
  absl::flat_hash_map<std::string, std::vector<EntryPtr>> by_path_;
};

}  // namespace confab

#endif  // CONFAB_SDK_SRC_WATCH_TABLE_H_
