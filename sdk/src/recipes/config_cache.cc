#include "confab/config_cache.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "confab/service_registry.h"
#include "sdk/src/recipes/config_nodes.h"
#include "sdk/src/recipes/session_renewer.h"
#include "server/storage/durable_file.h"

namespace confab {

namespace {

using json = nlohmann::json;
using config_internal::DecodeValue;
using config_internal::kReleasePrefix;
using config_internal::ParseRelease;

// One attempt to load through a session (own session: retried on failure) waits this long.
constexpr absl::Duration kLoadTimeout = absl::Seconds(30);

// The new value of one key: nullopt removes it.
struct KeyUpdate {
  std::string key;
  std::optional<json> value;
};

// Waits for an async call's callback (run on the Client's callback thread).
struct Completion {
  absl::Notification notification;
  absl::Status status;
};

}  // namespace

struct ConfigCache::State : std::enable_shared_from_this<State> {
  struct Listener {
    std::string key;  // a ConfigListener's key ("" = every key)
    std::variant<ConfigListener, ReleaseListener, StaleListener, ErrorListener> fn;
  };
  struct BoundKey {
    std::string key;
    std::shared_ptr<config_internal::Binding> binding;
  };

  std::string root;
  ConfigCacheOptions options;

  // The session followed (with an own session, the current one); set before its watch is added.
  std::atomic<Client*> client{nullptr};
  // The attempt to follow a session: a load of an abandoned attempt does nothing.
  std::atomic<uint64_t> attempt{0};
  // Events before the current session's load are reflected by it.
  std::atomic<bool> loaded{false};
  std::atomic<bool> closed{false};

  mutable absl::Mutex mu;
  std::map<std::string, json> values ABSL_GUARDED_BY(mu);
  int64_t zxid ABSL_GUARDED_BY(mu) = 0;
  int64_t release ABSL_GUARDED_BY(mu) = 0;
  bool has_content ABSL_GUARDED_BY(mu) = false;  // loaded once, or from the fallback file
  bool stale ABSL_GUARDED_BY(mu) = false;
  int64_t loads ABSL_GUARDED_BY(mu) = 0;             // from the ensemble
  std::optional<WatchId> watch ABSL_GUARDED_BY(mu);  // Close() removes it from a borrowed Client
  std::map<uint64_t, std::shared_ptr<Listener>> listeners ABSL_GUARDED_BY(mu);
  std::map<uint64_t, BoundKey> bindings ABSL_GUARDED_BY(mu);
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
  // The fallback writer's work.
  bool fallback_dirty ABSL_GUARDED_BY(mu) = false;
  bool fallback_stopping ABSL_GUARDED_BY(mu) = false;

  bool FollowsReleases() const { return !options.release_root.empty(); }
  const std::string& Followed() const { return FollowsReleases() ? options.release_root : root; }

  std::string KeyOf(absl::string_view path) const {
    if (root == "/") return std::string(absl::StripPrefix(path, "/"));
    return std::string(path.substr(root.size() + 1));
  }

  template <typename F>
  ListenerId AddListener(F fn, std::string key = "") {
    auto listener = std::make_shared<Listener>(
        Listener{std::move(key), decltype(Listener::fn)(std::in_place_type<F>, std::move(fn))});
    absl::MutexLock lock(&mu);
    const uint64_t id = next_id++;
    listeners[id] = std::move(listener);
    return ListenerId{id};
  }

  // Calls `call(fn)` for every listener of kind F that `wants`, outside the lock.
  template <typename F, typename Call>
  void Notify(
      Call call,
      absl::FunctionRef<bool(const Listener&)> wants = [](const Listener&) { return true; }) {
    std::vector<std::shared_ptr<Listener>> to_call;
    {
      absl::MutexLock lock(&mu);
      for (const auto& [id, l] : listeners) {
        if (std::holds_alternative<F>(l->fn) && wants(*l)) to_call.push_back(l);
      }
    }
    for (const auto& l : to_call) call(std::get<F>(l->fn));
  }

  void ReportError(const absl::Status& error) {
    Notify<ErrorListener>([&](ErrorListener& fn) { fn(error); });
  }

  void SetStale(bool now) {
    {
      absl::MutexLock lock(&mu);
      if (stale == now) return;
      stale = now;
    }
    Notify<StaleListener>([&](StaleListener& fn) { fn(now); });
  }

  // Applies `updates` (those that change a value): the values, the bindings, the zxid and (with
  // `applied`) the release; then tells the listeners when `notify`, `change_zxid` in each change.
  void Apply(const std::vector<KeyUpdate>& updates, int64_t new_zxid, int64_t change_zxid,
             const Release* applied, bool notify) {
    std::vector<ConfigChange> changes;
    std::vector<absl::Status> errors;
    {
      absl::MutexLock lock(&mu);
      for (const KeyUpdate& update : updates) {
        auto it = values.find(update.key);
        std::optional<json> before;
        if (it != values.end()) before = it->second;
        if (before == update.value) continue;
        if (update.value.has_value()) {
          values[update.key] = *update.value;
        } else {
          values.erase(it);
        }
        for (const auto& [id, bound] : bindings) {
          if (bound.key != update.key) continue;
          if (absl::Status s = bound.binding->Update(update.value); !s.ok()) errors.push_back(s);
        }
        changes.push_back(ConfigChange{update.key, std::move(before), update.value, change_zxid});
      }
      zxid = std::max(zxid, new_zxid);
      if (applied != nullptr) release = applied->number;
      has_content = true;
      fallback_dirty = true;
    }
    if (notify) {
      for (const ConfigChange& change : changes) {
        Notify<ConfigListener>(
            [&](ConfigListener& fn) { fn(change); },
            [&](const Listener& l) { return l.key.empty() || l.key == change.key; });
      }
      if (applied != nullptr) Notify<ReleaseListener>([&](ReleaseListener& fn) { fn(*applied); });
    }
    for (const absl::Status& error : errors) ReportError(error);
  }

  // Replaces the whole content with `next`.
  void Replace(const std::map<std::string, json>& next, int64_t new_zxid, int64_t change_zxid,
               const Release* applied, bool notify) {
    std::vector<KeyUpdate> updates;
    {
      absl::MutexLock lock(&mu);
      for (const auto& [key, value] : values) {
        if (!next.contains(key)) updates.push_back(KeyUpdate{key, std::nullopt});
      }
    }
    for (const auto& [key, value] : next) updates.push_back(KeyUpdate{key, value});
    Apply(updates, new_zxid, change_zxid, applied, notify);
  }

  bool HasContent() {
    absl::MutexLock lock(&mu);
    return has_content;
  }

  // ---- Following the nodes (on the callback thread) ----

  // Reads the whole subtree and replaces the content.
  absl::Status LoadKeys(Client& c) {
    std::map<std::string, json> loaded_values;
    int64_t max_zxid = 0;
    std::deque<std::string> pending = {root};
    while (!pending.empty()) {
      std::string path = std::move(pending.front());
      pending.pop_front();
      auto got = c.Get(path);
      auto children = got.ok() ? c.GetChildren(path) : got.status();
      if (!got.ok() || !children.ok()) {
        const absl::Status& s = got.ok() ? children.status() : got.status();
        if (ErrorCodeOf(s) == v1::NO_NODE) continue;  // gone meanwhile: its event follows
        return s;
      }
      max_zxid = std::max({max_zxid, got->stat.mzxid, got->stat.pzxid, children->stat.pzxid});
      if (path != root) {
        if (auto value = DecodeValue(got->data)) loaded_values[KeyOf(path)] = *std::move(value);
      }
      for (const std::string& child : children->names) pending.push_back(JoinPath(path, child));
    }
    Replace(loaded_values, max_zxid, 0, nullptr, HasContent());
    return absl::OkStatus();
  }

  void OnKeyEvent(Client& c, const WatchEvent& event) {
    if (event.type == EventType::kEventsMissed) {
      if (absl::Status s = LoadKeys(c); !s.ok()) ReportError(s);
      return;
    }
    if (event.path == root || !absl::StartsWith(event.path, root)) return;
    std::optional<json> now;
    if (event.type != EventType::kNodeDeleted) {
      auto got = c.Get(event.path);
      if (got.ok()) {
        now = DecodeValue(got->data);
      } else if (ErrorCodeOf(got.status()) != v1::NO_NODE) {
        // Could not read it (a timeout): reload everything rather than guess.
        if (absl::Status s = LoadKeys(c); !s.ok()) ReportError(s);
        return;
      }
    }
    Apply({KeyUpdate{KeyOf(event.path), std::move(now)}}, event.zxid, event.zxid, nullptr,
          /*notify=*/true);
  }

  // ---- Following the releases (on the callback thread) ----

  void ApplyRelease(const Release& r, bool notify) {
    Replace(r.content, r.zxid, r.zxid, &r, notify);
  }

  // Applies the releases of the area newer than the one held, in order; with no content yet,
  // only the newest (the initial load).
  absl::Status CatchUpReleases(Client& c) {
    absl::StatusOr<Children> children = c.GetChildren(options.release_root);
    if (!children.ok()) return children.status();
    std::vector<std::string> names;
    for (const std::string& name : children->names) {
      if (absl::StartsWith(name, kReleasePrefix) && SequenceOf(name) >= 0) names.push_back(name);
    }
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
      return SequenceOf(a) < SequenceOf(b);
    });
    int64_t held = 0;
    bool had_content = false;
    {
      absl::MutexLock lock(&mu);
      held = release;
      had_content = has_content;
    }
    std::vector<Release> newer;  // newest first
    for (auto name = names.rbegin(); name != names.rend(); ++name) {
      const std::string path = JoinPath(options.release_root, *name);
      absl::StatusOr<NodeData> node = c.Get(path);
      if (!node.ok()) {
        if (ErrorCodeOf(node.status()) == v1::NO_NODE) continue;
        return node.status();
      }
      absl::StatusOr<Release> r = ParseRelease(path, *node);
      if (!r.ok()) {
        ReportError(r.status());
        continue;
      }
      if (had_content && r->number <= held) {
        if (newer.empty() && r->number < held) {
          ReportError(absl::FailedPreconditionError(
              absl::StrCat("config cache ", root, ": the newest release under ",
                           options.release_root, " is ", r->number, ", older than release ", held,
                           " the cache holds (from its fallback file?); keeping release ", held)));
        }
        break;
      }
      newer.push_back(*std::move(r));
      if (!had_content || newer.size() >= static_cast<size_t>(kCatchUpReleasesMax)) break;
    }
    if (newer.empty()) {
      if (!had_content) Replace({}, children->stat.pzxid, 0, nullptr, /*notify=*/false);
      return absl::OkStatus();
    }
    std::reverse(newer.begin(), newer.end());
    if (had_content && newer.front().number != held + 1) {
      ReportError(absl::DataLossError(
          absl::StrCat("config cache ", root, ": releases ", held + 1, " to ",
                       newer.front().number - 1, " are not applied (gone from ",
                       options.release_root, ", or more than ", kCatchUpReleasesMax,
                       " to catch up); went from release ", held, " to ", newer.front().number)));
    }
    for (const Release& r : newer) ApplyRelease(r, had_content);
    return absl::OkStatus();
  }

  void OnReleaseEvent(Client& c, const WatchEvent& event) {
    if (event.type == EventType::kEventsMissed) {
      if (absl::Status s = CatchUpReleases(c); !s.ok()) ReportError(s);
      return;
    }
    const std::string release_prefix = JoinPath(options.release_root, kReleasePrefix);
    if (event.type != EventType::kNodeCreated || !absl::StartsWith(event.path, release_prefix) ||
        absl::StrContains(absl::string_view(event.path).substr(release_prefix.size()), '/')) {
      return;
    }
    absl::StatusOr<NodeData> node = c.Get(event.path);
    if (!node.ok()) {
      // Deleted meanwhile: the next catch-up reports the gap. Unreadable: the next release
      // catches up.
      if (ErrorCodeOf(node.status()) != v1::NO_NODE) ReportError(node.status());
      return;
    }
    absl::StatusOr<Release> r = ParseRelease(event.path, *node);
    if (!r.ok()) {
      ReportError(r.status());
      return;
    }
    int64_t held = 0;
    {
      absl::MutexLock lock(&mu);
      held = release;
    }
    if (r->number <= held) return;
    if (r->number == held + 1) {
      ApplyRelease(*r, /*notify=*/true);
    } else if (absl::Status s = CatchUpReleases(c); !s.ok()) {
      ReportError(s);
    }
  }

  // ---- Sessions ----

  void OnEvent(uint64_t of_attempt, const WatchEvent& event) {
    if (closed.load() || attempt.load() != of_attempt || !loaded.load()) return;
    Client* c = client.load();
    if (FollowsReleases()) {
      OnReleaseEvent(*c, event);
    } else {
      OnKeyEvent(*c, event);
    }
  }

  // The load of attempt `of_attempt` (on the callback thread).
  absl::Status Load(uint64_t of_attempt) {
    if (closed.load() || attempt.load() != of_attempt) {
      return absl::CancelledError("config cache: load abandoned");
    }
    Client* c = client.load();
    absl::Status status = FollowsReleases() ? CatchUpReleases(*c) : LoadKeys(*c);
    if (!status.ok()) return status;
    loaded.store(true);
    {
      absl::MutexLock lock(&mu);
      ++loads;
    }
    SetStale(false);
    return absl::OkStatus();
  }

  // Follows `c`: adds the watch, then loads behind any event already queued. On failure the
  // watch is removed again.
  absl::Status Attach(Client& c, absl::Duration timeout) {
    const uint64_t this_attempt = attempt.fetch_add(1) + 1;
    client.store(&c);
    loaded.store(false);
    if (absl::Status s = EnsurePath(c, Followed()); !s.ok()) return s;
    std::shared_ptr<State> self = shared_from_this();
    absl::StatusOr<WatchId> id = c.AddWatch(
        Followed(), AddWatchMode::kPersistentRecursive,
        [self, this_attempt](const WatchEvent& event) { self->OnEvent(this_attempt, event); });
    if (!id.ok()) return id.status();
    auto done = std::make_shared<Completion>();
    c.SyncAsync(Followed(), [self, done, this_attempt](absl::Status status) {
      done->status = status.ok() ? self->Load(this_attempt) : status;
      done->notification.Notify();
    });
    absl::Status status = done->notification.WaitForNotificationWithTimeout(timeout)
                              ? done->status
                              : absl::DeadlineExceededError(absl::StrCat(
                                    "config cache ", root, ": the load did not finish within ",
                                    absl::FormatDuration(timeout)));
    if (!status.ok()) {
      attempt.fetch_add(1);  // a load still under way does nothing
      c.RemoveWatch(*id).IgnoreError();
      return status;
    }
    absl::MutexLock lock(&mu);
    watch = *id;
    return absl::OkStatus();
  }

  // ---- Fallback file ----

  std::string EncodeFallback() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return json({{"root", root},
                 {"release_root", options.release_root},
                 {"zxid", zxid},
                 {"release", release},
                 {"values", json(values)}})
        .dump();
  }

  // Takes the file's content (stale). An error when there is no usable file.
  absl::Status LoadFallback() {
    const std::string& path = options.fallback_path;
    absl::StatusOr<std::string> text = storage::ReadWholeFile(path);
    if (!text.ok()) return text.status();
    json data = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (data.is_discarded() || !data.is_object() || !data.contains("values") ||
        !data["values"].is_object()) {
      return absl::DataLossError(absl::StrCat("fallback file ", path, " is not a config cache's"));
    }
    const std::string file_root = data.value("root", std::string());
    const std::string file_release_root = data.value("release_root", std::string());
    if (file_root != root || file_release_root != options.release_root) {
      return absl::FailedPreconditionError(
          absl::StrCat("fallback file ", path, " is of root '", file_root, "' and release area '",
                       file_release_root, "', not '", root, "' and '", options.release_root, "'"));
    }
    std::map<std::string, json> file_values;
    for (const auto& [key, value] : data["values"].items()) file_values[key] = value;
    Release from_file;  // just its number: no listener is told of it
    from_file.number = data.value("release", int64_t{0});
    Replace(file_values, data.value("zxid", int64_t{0}), 0, &from_file, /*notify=*/false);
    absl::MutexLock lock(&mu);
    stale = true;
    fallback_dirty = false;  // it holds just that
    return absl::OkStatus();
  }

  // The fallback writer's thread: writes the content whenever it changed, until stopped.
  void WriteFallback() {
    while (true) {
      std::string contents;
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(
            +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
              return s->fallback_dirty || s->fallback_stopping;
            },
            this));
        if (!fallback_dirty) return;
        fallback_dirty = false;
        contents = EncodeFallback();
      }
      if (absl::Status s = storage::WriteFileDurably(options.fallback_path, contents); !s.ok()) {
        ReportError(s);
      }
    }
  }
};

ConfigCache::ConfigCache(Client* client, std::string root, ConfigCacheOptions options)
    : client_(client), state_(std::make_shared<State>()) {
  absl::string_view trimmed = absl::StripSuffix(absl::StripPrefix(root, "/"), "/");
  root_ = JoinPath("/", trimmed);
  state_->root = root_;
  state_->options = std::move(options);
}

ConfigCache::ConfigCache(ClientOptions client_options, std::string root, ConfigCacheOptions options)
    : ConfigCache(nullptr, std::move(root), std::move(options)) {
  client_options_ = std::make_unique<ClientOptions>(std::move(client_options));
}

ConfigCache::~ConfigCache() { Close(); }

absl::Status ConfigCache::Start(absl::Duration timeout) {
  if (started_) return absl::FailedPreconditionError("ConfigCache already started");
  started_ = true;
  std::shared_ptr<State> state = state_;
  absl::Status fallback = absl::NotFoundError("no fallback file configured");
  if (client_ == nullptr && !state->options.fallback_path.empty()) {
    fallback = state->LoadFallback();
  }
  if (!state->options.fallback_path.empty()) {
    fallback_writer_ = std::thread([state] {
      pthread_setname_np(pthread_self(), "confab-fallback");
      state->WriteFallback();
    });
  }
  if (client_ != nullptr) {
    absl::Status status = state->Attach(*client_, timeout);
    if (!status.ok()) Close();
    return status;
  }
  renewer_ = std::make_unique<recipes_internal::SessionRenewer>(
      std::move(*client_options_),
      [state](Client& client) { return state->Attach(client, kLoadTimeout); },
      [state](ConnectionState connection) {
        if (connection == ConnectionState::kLost) state->SetStale(true);
      });
  {
    absl::MutexLock lock(&state->mu);
    state->mu.AwaitWithTimeout(
        absl::Condition(
            +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->loads > 0; },
            state.get()),
        timeout);
    if (state->loads > 0 || state->has_content) return absl::OkStatus();
  }
  const absl::Status last_error = renewer_->LastError();
  Close();
  return absl::UnavailableError(absl::StrCat("config cache ", root_, ": not loaded within ",
                                             absl::FormatDuration(timeout),
                                             " (last error: ", last_error.ToString(),
                                             "), and no fallback content: ", fallback.ToString()));
}

void ConfigCache::Close() {
  if (state_->closed.exchange(true)) return;
  if (renewer_ != nullptr) renewer_->Stop();
  std::optional<WatchId> watch;
  {
    absl::MutexLock lock(&state_->mu);
    watch = state_->watch;
    state_->fallback_stopping = true;
  }
  if (client_ != nullptr && watch.has_value()) client_->RemoveWatch(*watch).IgnoreError();
  if (fallback_writer_.joinable()) fallback_writer_.join();
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

int64_t ConfigCache::release() const {
  absl::MutexLock lock(&state_->mu);
  return state_->release;
}

bool ConfigCache::IsStale() const {
  absl::MutexLock lock(&state_->mu);
  return state_->stale;
}

absl::Status ConfigCache::Sync(absl::Duration timeout) {
  // The Sync's callback runs after every event of a change acknowledged before it (events come
  // before the responses that reflect them, on the one callback thread), and each event is
  // applied by the time its handler returns.
  auto done = std::make_shared<Completion>();
  auto sync = [&](Client& client) {
    client.SyncAsync(state_->Followed(), [done](absl::Status status) {
      done->status = status;
      done->notification.Notify();
    });
    return absl::OkStatus();
  };
  absl::Status started = client_ != nullptr ? sync(*client_)
                         : renewer_ != nullptr
                             ? renewer_->WithClient(sync)
                             : absl::FailedPreconditionError("ConfigCache not started");
  if (!started.ok()) return started;
  if (!done->notification.WaitForNotificationWithTimeout(timeout)) {
    return absl::DeadlineExceededError("ConfigCache::Sync: not answered in time");
  }
  return done->status;
}

std::shared_ptr<void> ConfigCache::AddBinding(std::shared_ptr<config_internal::Binding> binding) {
  uint64_t id = 0;
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->values.find(binding->key());
    std::optional<json> value;
    if (it != state_->values.end()) value = it->second;
    binding->Update(value).IgnoreError();  // status() tells
    id = state_->next_id++;
    state_->bindings[id] = State::BoundKey{binding->key(), std::move(binding)};
  }
  std::weak_ptr<State> weak = state_;
  return std::shared_ptr<void>(nullptr, [weak, id](void*) {
    if (std::shared_ptr<State> state = weak.lock()) {
      absl::MutexLock lock(&state->mu);
      state->bindings.erase(id);
    }
  });
}

ListenerId ConfigCache::AddListener(ConfigListener listener, std::string key) {
  return state_->AddListener(std::move(listener), std::move(key));
}

ListenerId ConfigCache::AddReleaseListener(ReleaseListener listener) {
  return state_->AddListener(std::move(listener));
}

ListenerId ConfigCache::AddStaleListener(StaleListener listener) {
  return state_->AddListener(std::move(listener));
}

ListenerId ConfigCache::AddErrorListener(ErrorListener listener) {
  return state_->AddListener(std::move(listener));
}

void ConfigCache::RemoveListener(ListenerId id) {
  absl::MutexLock lock(&state_->mu);
  state_->listeners.erase(static_cast<uint64_t>(id));
}

}  // namespace confab
