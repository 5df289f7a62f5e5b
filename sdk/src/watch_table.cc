#include "sdk/src/watch_table.h"

#include <algorithm>

#include "server/common/path.h"

namespace confab {
namespace {

bool IsOneShot(v1::WatchKind kind) { return kind == v1::DATA_WATCH || kind == v1::CHILD_WATCH; }

// Whether a watch of `kind` on the event's own path fires for an event of `type`.
bool FiresOnPath(v1::WatchKind kind, v1::EventType type) {
  switch (type) {
    case v1::NODE_CREATED:
    case v1::NODE_DATA_CHANGED:
      return kind == v1::DATA_WATCH || kind == v1::PERSISTENT_WATCH ||
             kind == v1::PERSISTENT_RECURSIVE_WATCH;
    case v1::NODE_DELETED:
      return true;
    case v1::NODE_CHILDREN_CHANGED:
      return kind == v1::CHILD_WATCH || kind == v1::PERSISTENT_WATCH;
    default:
      return false;
  }
}

}  // namespace

WatchTable::EntryPtr WatchTable::Add(std::string path, v1::WatchKind kind, Watcher watcher) {
  auto entry = std::make_shared<Entry>();
  entry->id = next_id_++;
  entry->path = std::move(path);
  entry->kind = kind;
  entry->watcher = std::move(watcher);
  by_id_[entry->id] = entry;
  by_path_[entry->path].push_back(entry);
  return entry;
}

WatchTable::EntryPtr WatchTable::Find(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

WatchTable::EntryPtr WatchTable::Remove(uint64_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  EntryPtr entry = std::move(it->second);
  by_id_.erase(it);
  auto path_it = by_path_.find(entry->path);
  std::vector<EntryPtr>& entries = path_it->second;
  entries.erase(std::find(entries.begin(), entries.end(), entry));
  if (entries.empty()) by_path_.erase(path_it);
  return entry;
}

int WatchTable::Count(absl::string_view path, v1::WatchKind kind) const {
  auto it = by_path_.find(path);
  if (it == by_path_.end()) return 0;
  return static_cast<int>(std::count_if(it->second.begin(), it->second.end(),
                                        [kind](const EntryPtr& e) { return e->kind == kind; }));
}

std::vector<WatchTable::EntryPtr> WatchTable::Route(const v1::WatchEvent& event) {
  std::vector<EntryPtr> fired;
  if (auto it = by_path_.find(event.path()); it != by_path_.end()) {
    for (const EntryPtr& entry : it->second) {
      if (entry->armed && FiresOnPath(entry->kind, event.type())) fired.push_back(entry);
    }
  }
  // Recursive watches above the path see its creation, deletion and data changes.
  if (event.type() != v1::NODE_CHILDREN_CHANGED && event.path() != "/") {
    absl::string_view ancestor = event.path();
    do {
      ancestor = ParentPath(ancestor);
      auto it = by_path_.find(ancestor);
      if (it == by_path_.end()) continue;
      for (const EntryPtr& entry : it->second) {
        if (entry->armed && entry->kind == v1::PERSISTENT_RECURSIVE_WATCH) fired.push_back(entry);
      }
    } while (ancestor != "/");
  }
  for (const EntryPtr& entry : fired) {
    if (IsOneShot(entry->kind)) Remove(entry->id);
  }
  return fired;
}

std::vector<WatchTable::EntryPtr> WatchTable::Armed(absl::string_view path,
                                                    v1::WatchKind kind) const {
  std::vector<EntryPtr> out;
  auto it = by_path_.find(path);
  if (it == by_path_.end()) return out;
  for (const EntryPtr& entry : it->second) {
    if (entry->armed && entry->kind == kind) out.push_back(entry);
  }
  return out;
}

std::vector<std::pair<std::string, v1::WatchKind>> WatchTable::ArmedKeys() const {
  std::vector<std::pair<std::string, v1::WatchKind>> keys;
  for (const auto& [path, entries] : by_path_) {
    for (const EntryPtr& entry : entries) {
      if (entry->armed) keys.emplace_back(path, entry->kind);
    }
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

std::vector<WatchTable::EntryPtr> WatchTable::All() const {
  std::vector<EntryPtr> out;
  out.reserve(by_id_.size());
  for (const auto& [id, entry] : by_id_) out.push_back(entry);
  return out;
}

std::vector<WatchTable::EntryPtr> WatchTable::Clear() {
  std::vector<EntryPtr> out = All();
  by_id_.clear();
  by_path_.clear();
  return out;
}

}  // namespace confab
