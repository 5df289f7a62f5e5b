#include "server/sessions/session_tracker.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "server/common/check.h"

namespace confab::sessions {
// As ZooKeeper's ExpiryQueue.roundToNextInterval: the first tick boundary strictly after `ms`,
// so a session never expires before its timeout has passed.
int64_t SessionTracker::RoundUpToTick(int64_t ms) const {
  CONFAB_CHECK(tick_ms_ > 0, "tick_ms is ", tick_ms_);
  return (ms / tick_ms_ + 1) * tick_ms_;
}

void SessionTracker::Add(SessionId id, int32_t timeout_ms, int64_t now_ms) {
  Remove(id);
  Entry entry;
  entry.timeout_ms = timeout_ms;
  entry.deadline_ms = RoundUpToTick(now_ms + timeout_ms);
  sessions_.emplace(id, entry);
  by_deadline_[entry.deadline_ms].insert(id);
}

bool SessionTracker::Touch(SessionId id, int64_t now_ms) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  Entry& entry = it->second;
  // A touch only pushes the deadline out, even if the caller's clock stepped back.
  const int64_t deadline_ms = std::max(entry.deadline_ms, RoundUpToTick(now_ms + entry.timeout_ms));
  if (!entry.expiring) {
    if (deadline_ms == entry.deadline_ms) return true;
    auto bucket = by_deadline_.find(entry.deadline_ms);
    bucket->second.erase(id);
    if (bucket->second.empty()) by_deadline_.erase(bucket);
  }
  entry.expiring = false;
  entry.deadline_ms = deadline_ms;
  by_deadline_[deadline_ms].insert(id);
  return true;
}

void SessionTracker::TouchAll(int64_t now_ms) {
  std::vector<SessionId> live;
  for (const auto& [id, entry] : sessions_) {
    if (!entry.expiring) live.push_back(id);
  }
  for (SessionId id : live) Touch(id, now_ms);
}

void SessionTracker::Remove(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  // An expiring session has already left the deadline buckets.
  if (!it->second.expiring) {
    auto bucket = by_deadline_.find(it->second.deadline_ms);
    CONFAB_CHECK(bucket != by_deadline_.end(), "session ", id.ToString(), " missing from bucket ",
                 it->second.deadline_ms);
    bucket->second.erase(id);
    if (bucket->second.empty()) by_deadline_.erase(bucket);
  }
  sessions_.erase(it);
}

bool SessionTracker::Contains(SessionId id) const { return sessions_.contains(id); }

std::vector<SessionId> SessionTracker::TakeExpired(int64_t now_ms) {
  std::vector<SessionId> expired;
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now_ms) {
    for (SessionId id : by_deadline_.begin()->second) {
      auto it = sessions_.find(id);
      CONFAB_CHECK(it != sessions_.end(), "expiring session ", id.ToString(), " is not tracked");
      it->second.expiring = true;
      expired.push_back(id);
    }
    by_deadline_.erase(by_deadline_.begin());
  }
  std::sort(expired.begin(), expired.end());
  return expired;
}

}  // namespace confab::sessions
