// SessionTracker decides when sessions expire: every session has a deadline (last heard from +
// timeout), rounded up to the next tick boundary as ZooKeeper's ExpiryQueue does so that expiry
// work happens in batches. It owns only deadlines; the sessions themselves (and their ephemerals)
// are replicated state in the DataTree. Pure: the caller passes the time in; no clock, no locks.
#ifndef CONFAB_SERVER_SESSIONS_SESSION_TRACKER_H_
#define CONFAB_SERVER_SESSIONS_SESSION_TRACKER_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "server/common/types.h"

namespace confab::sessions {

class SessionTracker {
 public:
  explicit SessionTracker(int64_t tick_ms) : tick_ms_(tick_ms) {}

  // Starts tracking (or re-tracks) `id`, alive as of `now_ms`.
  void Add(SessionId id, int32_t timeout_ms, int64_t now_ms);
  // Heard from `id` at `now_ms`: pushes its deadline out. False if `id` is not tracked.
  bool Touch(SessionId id, int64_t now_ms);
  void Remove(SessionId id);
  bool Contains(SessionId id) const;

  // Sessions whose deadline is at or before `now_ms`, sorted by id. They stay tracked (and are
  // not returned again) until Remove()d or Touch()ed: the caller proposes their close.
  std::vector<SessionId> TakeExpired(int64_t now_ms);

  // The server itself was not running (paused, stalled) until `now_ms`: its clients could not be
  // heard, so every session not already expiring gets a full timeout from now, as a new leader
  // gives them in ZooKeeper.
  void TouchAll(int64_t now_ms);

  size_t size() const { return sessions_.size(); }

 private:
  struct Entry {
    int32_t timeout_ms = 0;
    int64_t deadline_ms = 0;
    bool expiring = false;
  };
  int64_t RoundUpToTick(int64_t ms) const;

  int64_t tick_ms_;
  absl::flat_hash_map<SessionId, Entry> sessions_;
  std::map<int64_t, absl::flat_hash_set<SessionId>> by_deadline_;
};

}  // namespace confab::sessions

#endif  // CONFAB_SERVER_SESSIONS_SESSION_TRACKER_H_
