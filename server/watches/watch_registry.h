// WatchRegistry owns who waits for which change: ZooKeeper's one-shot data and child watches,
// persistent watches and persistent-recursive watches, per session. Triggered by the changes the
// DataTree reports, it says which session gets which event. Plain data, no locks, no I/O.
//
// Semantics (as ZooKeeper 3.6+):
//   NODE_CREATED / NODE_DATA_CHANGED at P: data watches on P, persistent on P, recursive on P or
//     an ancestor of P.
//   NODE_DELETED at P: data and child watches on P, persistent on P, recursive on P or above.
//   NODE_CHILDREN_CHANGED at P: child watches on P, persistent on P (never recursive ones: they
//     see the child's own NODE_CREATED/NODE_DELETED instead).
// One-shot watches are removed when they fire. A session gets at most one event per trigger even
// when several of its watches match.
#ifndef CONFAB_SERVER_WATCHES_WATCH_REGISTRY_H_
#define CONFAB_SERVER_WATCHES_WATCH_REGISTRY_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "confab/v1/coordination.pb.h"
#include "server/common/types.h"
#include "server/tree/data_tree.h"

namespace confab::watches {

// True if a watch of `kind` on `watch_path` is told of a change of `type` at `changed_path` (the
// semantics above). The
// registry's table lookups and the change history's replay both follow it.
bool Matches(v1::WatchKind kind, absl::string_view watch_path, v1::EventType type,
             absl::string_view changed_path);

struct Delivery {
  SessionId session;
  v1::WatchEvent event;
};

class WatchRegistry {
 public:
  // Adding a watch that is already there is a no-op.
  void Add(SessionId session, absl::string_view path, v1::WatchKind kind);
  // False if there was no such watch.
  bool Remove(SessionId session, absl::string_view path, v1::WatchKind kind);
  void RemoveSession(SessionId session);

  // Appends the events `trigger` (caused by the transaction at `zxid`) delivers, in a
  // deterministic order (by session id), and removes the one-shot watches that fired.
  void Trigger(const tree::WatchTrigger& trigger, Zxid zxid, std::vector<Delivery>* out);

  size_t watch_count() const;
  // The watches a session holds, for re-registration and tests: (path, kind), sorted.
  std::vector<std::pair<std::string, v1::WatchKind>> WatchesOf(SessionId session) const;

 private:
  using SessionSet = absl::flat_hash_set<SessionId>;
  // One table per kind: path -> sessions watching it.
  absl::flat_hash_map<std::string, SessionSet> by_kind_[4];
  // Reverse index for RemoveSession: session -> (kind, path).
  absl::flat_hash_map<SessionId, absl::flat_hash_set<std::pair<int, std::string>>> by_session_;
};

}  // namespace confab::watches

#endif  // CONFAB_SERVER_WATCHES_WATCH_REGISTRY_H_
