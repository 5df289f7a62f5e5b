#include "server/watches/watch_registry.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "server/common/check.h"
#include "server/common/path.h"

namespace confab::watches {
namespace {

int KindIndex(v1::WatchKind kind) {
  const int index = static_cast<int>(kind);
  CONFAB_CHECK(index >= 0 && index < 4, "unknown watch kind ", index);
  return index;
}

}  // namespace

bool Matches(v1::WatchKind kind, absl::string_view watch_path, v1::EventType type,
             absl::string_view changed_path) {
  const bool at_path = changed_path == watch_path;
  switch (kind) {
    case v1::DATA_WATCH:
      return at_path && type != v1::NODE_CHILDREN_CHANGED;
    case v1::CHILD_WATCH:
      return at_path && (type == v1::NODE_CHILDREN_CHANGED || type == v1::NODE_DELETED);
    case v1::PERSISTENT_WATCH:
      return at_path;
    case v1::PERSISTENT_RECURSIVE_WATCH:
      return type != v1::NODE_CHILDREN_CHANGED && IsInSubtree(changed_path, watch_path);
    default:
      return false;
  }
}

void WatchRegistry::Add(SessionId session, absl::string_view path, v1::WatchKind kind) {
  const int k = KindIndex(kind);
  by_kind_[k][path].insert(session);
  by_session_[session].emplace(k, std::string(path));
}

bool WatchRegistry::Remove(SessionId session, absl::string_view path, v1::WatchKind kind) {
  const int k = KindIndex(kind);
  auto watchers = by_kind_[k].find(path);
  if (watchers == by_kind_[k].end() || watchers->second.erase(session) == 0) return false;
  if (watchers->second.empty()) by_kind_[k].erase(watchers);
  auto held = by_session_.find(session);
  CONFAB_CHECK(held != by_session_.end(), "watch of session ", session.ToString(), " on ", path,
               " missing from the session index");
  held->second.erase(std::make_pair(k, std::string(path)));
  if (held->second.empty()) by_session_.erase(held);
  return true;
}

void WatchRegistry::RemoveSession(SessionId session) {
  auto held = by_session_.find(session);
  if (held == by_session_.end()) return;
  for (const auto& [k, path] : held->second) {
    auto watchers = by_kind_[k].find(path);
    CONFAB_CHECK(watchers != by_kind_[k].end(), "watch of session ", session.ToString(), " on ",
                 path, " missing from the kind index");
    watchers->second.erase(session);
    if (watchers->second.empty()) by_kind_[k].erase(watchers);
  }
  by_session_.erase(held);
}

void WatchRegistry::Trigger(const tree::WatchTrigger& trigger, Zxid zxid,
                            std::vector<Delivery>* out) {
  std::vector<SessionId> sessions;
  const absl::string_view path = trigger.path;
  // A matching watch of kind `k` on `at`; one-shot kinds are consumed.
  auto collect = [&](v1::WatchKind kind, absl::string_view at) {
    auto& table = by_kind_[KindIndex(kind)];
    auto watchers = table.find(at);
    if (watchers == table.end()) return;
    sessions.insert(sessions.end(), watchers->second.begin(), watchers->second.end());
    if (kind == v1::PERSISTENT_WATCH || kind == v1::PERSISTENT_RECURSIVE_WATCH) return;
    for (SessionId session : watchers->second) {
      auto held = by_session_.find(session);
      held->second.erase(std::make_pair(KindIndex(kind), std::string(at)));
      if (held->second.empty()) by_session_.erase(held);
    }
    table.erase(watchers);
  };
  auto collect_recursive = [&]() {
    if (by_kind_[v1::PERSISTENT_RECURSIVE_WATCH].empty()) return;
    absl::string_view at = path;
    while (true) {
      collect(v1::PERSISTENT_RECURSIVE_WATCH, at);
      if (at.size() <= 1) break;
      const absl::string_view parent = ParentPath(at);
      if (parent.size() >= at.size()) break;  // not an absolute path: no ancestors
      at = parent;
    }
  };
  switch (trigger.type) {
    case v1::NODE_CREATED:
    case v1::NODE_DATA_CHANGED:
      collect(v1::DATA_WATCH, path);
      collect(v1::PERSISTENT_WATCH, path);
      collect_recursive();
      break;
    case v1::NODE_DELETED:
      collect(v1::DATA_WATCH, path);
      collect(v1::CHILD_WATCH, path);
      collect(v1::PERSISTENT_WATCH, path);
      collect_recursive();
      break;
    case v1::NODE_CHILDREN_CHANGED:
      collect(v1::CHILD_WATCH, path);
      collect(v1::PERSISTENT_WATCH, path);
      break;
    default:
      // WATCHES_LOST and unknown types are not tree changes: nothing waits for them.
      return;
  }
  std::sort(sessions.begin(), sessions.end());
  sessions.erase(std::unique(sessions.begin(), sessions.end()), sessions.end());
  for (SessionId session : sessions) {
    Delivery& delivery = out->emplace_back();
    delivery.session = session;
    delivery.event.set_type(trigger.type);
    delivery.event.set_path(trigger.path);
    delivery.event.set_zxid(zxid.ToInt());
  }
}

size_t WatchRegistry::watch_count() const {
  size_t count = 0;
  for (const auto& [session, held] : by_session_) count += held.size();
  return count;
}

std::vector<std::pair<std::string, v1::WatchKind>> WatchRegistry::WatchesOf(
    SessionId session) const {
  std::vector<std::pair<std::string, v1::WatchKind>> watches;
  auto held = by_session_.find(session);
  if (held == by_session_.end()) return watches;
  watches.reserve(held->second.size());
  for (const auto& [k, path] : held->second) {
    watches.emplace_back(path, static_cast<v1::WatchKind>(k));
  }
  std::sort(watches.begin(), watches.end());
  return watches;
}

}  // namespace confab::watches
