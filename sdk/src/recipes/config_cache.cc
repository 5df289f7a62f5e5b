#include "confab/config_cache.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "confab/service_registry.h"

namespace confab {

namespace {

// A node's data as a config value: nullopt for empty data (a folder), the JSON it holds, else
// the string of its text.
std::optional<nlohmann::json> Decode(const std::string& data) {
  if (data.empty()) return std::nullopt;
  nlohmann::json parsed = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return nlohmann::json(data);
  return parsed;
}

}  // namespace

struct ConfigCache::State {
  struct Listener {
    std::string key;
    std::shared_ptr<ConfigListener> fn;
  };

  Client* client;
  std::string root;

  mutable absl::Mutex mu;
  std::map<std::string, nlohmann::json> values ABSL_GUARDED_BY(mu);
  int64_t zxid ABSL_GUARDED_BY(mu) = 0;
  std::map<uint64_t, Listener> listeners ABSL_GUARDED_BY(mu);
  uint64_t next_listener ABSL_GUARDED_BY(mu) = 1;

  // Only touched on the callback thread.
  bool loaded = false;
  std::atomic<bool> closed{false};

  std::string KeyOf(absl::string_view path) const {
    if (root == "/") return std::string(absl::StripPrefix(path, "/"));
    return std::string(path.substr(root.size() + 1));
  }

  void Notify(const ConfigChange& change) {
    std::vector<std::shared_ptr<ConfigListener>> to_call;
    {
      absl::MutexLock lock(&mu);
      for (const auto& [id, l] : listeners) {
        if (l.key.empty() || l.key == change.key) to_call.push_back(l.fn);
      }
    }
    for (const auto& fn : to_call) (*fn)(change);
  }

  // Reads the whole subtree (blocking; on the callback thread) and replaces the values;
  // reports the differences when `notify`.
  absl::Status Load(bool notify) {
    std::map<std::string, nlohmann::json> loaded_values;
    int64_t max_zxid = 0;
    std::deque<std::string> pending = {root};
    while (!pending.empty()) {
      std::string path = std::move(pending.front());
      pending.pop_front();
      auto got = client->Get(path);
      auto children = got.ok() ? client->GetChildren(path) : got.status();
      if (!got.ok() || !children.ok()) {
        const absl::Status& s = got.ok() ? children.status() : got.status();
        if (ErrorCodeOf(s) == v1::NO_NODE) continue;  // gone meanwhile: its event follows
        return s;
      }
      max_zxid = std::max({max_zxid, got->stat.mzxid, got->stat.pzxid, children->stat.pzxid});
      if (path != root) {
        if (auto value = Decode(got->data)) loaded_values[KeyOf(path)] = *std::move(value);
      }
      for (const std::string& child : children->names) pending.push_back(JoinPath(path, child));
    }
    std::map<std::string, nlohmann::json> old;
    {
      absl::MutexLock lock(&mu);
      old = std::exchange(values, loaded_values);
      zxid = std::max(zxid, max_zxid);
    }
    loaded = true;
    if (notify) {
      std::set<std::string> keys;
      for (const auto& [k, v] : old) keys.insert(k);
      for (const auto& [k, v] : loaded_values) keys.insert(k);
      for (const std::string& key : keys) {
        auto o = old.find(key);
        auto n = loaded_values.find(key);
        std::optional<nlohmann::json> before, after;
        if (o != old.end()) before = o->second;
        if (n != loaded_values.end()) after = n->second;
        if (before != after) Notify(ConfigChange{key, before, after, 0});
      }
    }
    return absl::OkStatus();
  }

  // One event of the recursive watch (on the callback thread).
  void OnEvent(const WatchEvent& event) {
    if (closed.load() || !loaded) return;  // before the load: the load reflects it
    if (event.type == EventType::kEventsMissed) {
      Load(/*notify=*/true).IgnoreError();
      return;
    }
    if (event.path == root || !absl::StartsWith(event.path, root)) return;
    std::optional<nlohmann::json> now;
    if (event.type != EventType::kNodeDeleted) {
      auto got = client->Get(event.path);
      if (got.ok()) {
        now = Decode(got->data);
      } else if (ErrorCodeOf(got.status()) != v1::NO_NODE) {
        // Could not read it (a timeout): reload everything rather than guess.
        Load(/*notify=*/true).IgnoreError();
        return;
      }
    }
    const std::string key = KeyOf(event.path);
    std::optional<nlohmann::json> before;
    {
      absl::MutexLock lock(&mu);
      auto it = values.find(key);
      if (it != values.end()) before = it->second;
      if (now.has_value()) {
        values[key] = *now;
      } else if (it != values.end()) {
        values.erase(it);
      }
      zxid = std::max(zxid, event.zxid);
    }
    if (before != now) Notify(ConfigChange{key, before, now, event.zxid});
  }
};

ConfigCache::ConfigCache(Client* client, std::string root)
    : client_(client), state_(std::make_shared<State>()) {
  absl::string_view trimmed = absl::StripSuffix(absl::StripPrefix(root, "/"), "/");
  root_ = JoinPath("/", trimmed);
  state_->client = client;
  state_->root = root_;
}

ConfigCache::~ConfigCache() { Close(); }

absl::Status ConfigCache::Start(absl::Duration timeout) {
  if (watch_id_.has_value()) return absl::FailedPreconditionError("ConfigCache already started");
  if (absl::Status s = EnsurePath(*client_, root_); !s.ok()) return s;
  std::shared_ptr<State> state = state_;
  auto id = client_->AddWatch(root_, AddWatchMode::kPersistentRecursive,
                              [state](const WatchEvent& event) { state->OnEvent(event); });
  if (!id.ok()) return id.status();
  watch_id_ = *id;
  struct Done {
    absl::Notification notification;
    absl::Status status;
  };
  auto done = std::make_shared<Done>();
  client_->SyncAsync(root_, [state, done](absl::Status status) {
    done->status = status.ok() ? state->Load(/*notify=*/false) : status;
    done->notification.Notify();
  });
  if (!done->notification.WaitForNotificationWithTimeout(timeout)) {
    Close();
    return absl::DeadlineExceededError("ConfigCache: the load did not finish in time");
  }
  if (!done->status.ok()) Close();
  return done->status;
}

void ConfigCache::Close() {
  if (state_->closed.exchange(true)) return;
  if (watch_id_.has_value()) client_->RemoveWatch(*watch_id_).IgnoreError();
}

std::optional<nlohmann::json> ConfigCache::Raw(absl::string_view key) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->values.find(std::string(key));
  if (it == state_->values.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, nlohmann::json> ConfigCache::Snapshot() const {
  absl::MutexLock lock(&state_->mu);
  return state_->values;
}

int64_t ConfigCache::zxid() const {
  absl::MutexLock lock(&state_->mu);
  return state_->zxid;
}

absl::Status ConfigCache::Sync(absl::Duration timeout) {
  // The Sync's callback runs after every event of a change acknowledged before it (events come
  // before the responses that reflect them, on the one callback thread), and each event is
  // applied by the time its handler returns.
  struct Done {
    absl::Notification notification;
    absl::Status status;
  };
  auto done = std::make_shared<Done>();
  client_->SyncAsync(root_, [done](absl::Status status) {
    done->status = status;
    done->notification.Notify();
  });
  if (!done->notification.WaitForNotificationWithTimeout(timeout)) {
    return absl::DeadlineExceededError("ConfigCache::Sync: not answered in time");
  }
  return done->status;
}

ListenerId ConfigCache::AddListener(ConfigListener listener, std::string key) {
  absl::MutexLock lock(&state_->mu);
  const uint64_t id = state_->next_listener++;
  state_->listeners[id] =
      State::Listener{std::move(key), std::make_shared<ConfigListener>(std::move(listener))};
  return ListenerId{id};
}

void ConfigCache::RemoveListener(ListenerId id) {
  absl::MutexLock lock(&state_->mu);
  state_->listeners.erase(static_cast<uint64_t>(id));
}

}  // namespace confab
