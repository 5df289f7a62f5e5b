// ConfigCache: a live local copy of a config subtree of JSON values, on confab::Client, with the
// layout of the Python binding's ConfigCache (bindings/python/README.md, "Recipes"):
//
//   <root>           the cache's root (created empty if missing)
//   <root>/<KEY>     one value: the node's data is JSON ("5000", "true", "{\"A\": true}")
//   <root>/<a>/<b>   nested nodes are keys too: "a/b"; empty data = a folder, no value
//
// Data that is not JSON is the string of its text.
//
// What it follows: the nodes under <root> (the default), or, with options.release_root, the
// releases ConfigPublisher writes there (config_publisher.h).
//
// Following the nodes: Start() first adds ONE persistent recursive watch on the root, then — on
// the Client's callback thread, behind any event already queued — Syncs and reads every node of
// the subtree. Events that arrive before the load are dropped (the load's reads are sent after
// they arrived, so they reflect them); every later event re-reads the node it names. Since the
// watch exists before the first read, no change is missed between load and watch. Because an
// event carries no data, the re-read returns the value of the moment, not of the event's zxid:
// when a key changes and changes back before the re-read (5000 -> 10000 -> 5000), listeners may
// see no change at all, and the keys of one Multi are applied one event at a time. The final
// state is always right; a reader that needs every release, whole, follows the releases. (The
// Python binding instead passes start_zxid = the load's zxid to AddWatch; confab::Client::AddWatch
// has no start_zxid parameter, and this order gives the same guarantee without one.) Across
// reconnects the Client resumes the watch itself; a kEventsMissed event makes the cache reload
// the whole subtree (and report the differences).
//
// Following the releases (options.release_root): the content is the `content` of the newest
// release applied, and release() its number. The cache watches the release area the same way
// and reads each new release node. Release nodes are never modified, so a read returns exactly
// that release, however late it comes: EVERY release is applied, whole (all its keys at once),
// once, in release order — a value changed and changed back is seen twice. A release that skips
// numbers (a missed event, a new session, a start from the fallback file) makes the cache read
// the releases in between from the area and apply them in order first (at most
// kCatchUpReleasesMax; beyond that, and for release nodes deleted from the area, the gap is
// reported to the error listeners). The cache never goes back to an older release: if the
// area's newest is older than what the cache holds (a fallback file of another ensemble), it
// keeps its content and reports an error. Keys written directly under <root>, not through a
// release, are not seen in this mode.
//
// zxid(): the zxid of the newest change applied: after a load of the nodes, the greatest
// mzxid/pzxid of the subtree's nodes; then the zxid of each applied event; with releases, the
// zxid of the release applied.
//
// Sessions: a cache built on a Client borrows it (it must outlive the cache) and follows that one
// session: after LOST it stops following (the Client is final), and the application builds a new
// Client and cache. A cache built from ClientOptions owns its session: it connects in the
// background, retrying while no member answers, and after LOST connects a new session and loads
// again, reporting what changed meanwhile (with releases: every release in between, in order).
// While it has no session it is stale (below).
//
// Fallback file (options.fallback_path): after the initial load and after every applied change,
// the cache writes its content to this file as one JSON object
//   {"root": <root>, "release_root": <release_root>, "zxid": N, "release": N,
//    "values": {<key>: <value>, ...}}
// replacing it atomically and durably (write a temporary, fsync it, rename over the file, fsync
// the directory), on its own thread: changes that come while a write is under way are coalesced
// into the next one, and Close() writes the last state. A failed write is reported to the error
// listeners. A cache that owns its session starts from the file: Start() loads it first, and when
// the ensemble does not answer within the timeout, returns OK with the file's content, IsStale()
// true, until the first load from the ensemble (then the stale listeners are told false, and the
// key and release listeners what changed since the file was written). A file of another root or
// release area is refused. One process per file: concurrent writers would share its temporary.
//
// Typed reads: Get<T>/GetOr<T> convert the JSON value at each call. Bind<T>(key, default_value)
// returns a BoundValue<T> that converts once per change (on the callback thread) and publishes
// the T in a SnapshotCell (snapshot_cell.h): its Read() and Get() take no lock and allocate
// nothing (Get() copies the T). The reader gets the value of the newest change applied before its
// read began (or during it), never a torn one. An unset key gives `default_value`; a value that is
// not a T keeps the last good value, and the conversion error goes to status() and the error
// listeners. T's from_json runs under the cache's lock: it must not call the cache.
//
// Ownership: the cache owns its watch (removed by Close() or destruction), and in the own-session
// mode its Client. A BoundValue unbinds itself when its last copy goes; it may outlive the cache
// (it then keeps its last value).
//
// Threads: Get/GetOr/Raw/Snapshot/zxid/release/IsStale/Bind/AddListener.../RemoveListener may be
// called from any thread, including listeners. Start(), Sync() and Close() block: never call them
// from a Client callback or a listener, nor concurrently with each other. Loading and applying
// events run on the Client's callback thread and make blocking reads there.
//
// Listeners run on the Client's callback thread, one at a time, in the order of the changes:
// key listeners only for actual changes of a value (nullopt old/new for an added/removed key),
// not for the initial load; then, with releases, the release listeners once per release; stale
// listeners when IsStale() changes after Start(); error listeners for what no caller can be told
// (a bound value's type error, a release gap, a failed fallback write — the last on the fallback
// writer's thread, and type errors in the fallback file's content on Start()'s caller). They may
// read the cache (which already shows the change) and call the Client.
// After RemoveListener returns, the listener is not invoked again, except an invocation already
// running.
#ifndef CONFAB_CONFIG_CACHE_H_
#define CONFAB_CONFIG_CACHE_H_

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/config_publisher.h"
#include "confab/snapshot_cell.h"
#include "nlohmann/json.hpp"

namespace confab {

struct ConfigChange {
  std::string key;
  std::optional<nlohmann::json> old_value;  // nullopt: the key was added
  std::optional<nlohmann::json> new_value;  // nullopt: the key was removed
  int64_t zxid = 0;                         // the change's event (0 for a reload)
};

using ConfigListener = absl::AnyInvocable<void(const ConfigChange& change)>;
using ReleaseListener = absl::AnyInvocable<void(const Release& release)>;
using StaleListener = absl::AnyInvocable<void(bool stale)>;
using ErrorListener = absl::AnyInvocable<void(const absl::Status& error)>;
enum class ListenerId : uint64_t {};

struct ConfigCacheOptions {
  // Follow the releases ConfigPublisher writes under this path instead of the nodes under the
  // root (see the header comment). Empty: follow the nodes.
  std::string release_root;
  // Persist the content to this file, and (with an own session) start from it when the ensemble
  // does not answer. Empty: no file.
  std::string fallback_path;
};

// The most releases one catch-up reads and applies (see "Following the releases").
inline constexpr int kCatchUpReleasesMax = 1000;

namespace config_internal {

// The name of T in type-mismatch messages.
template <typename T>
std::string TypeName() {
  if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_integral_v<T>) {
    return std::is_signed_v<T> ? absl::StrCat("int", sizeof(T) * 8)
                               : absl::StrCat("uint", sizeof(T) * 8);
  } else if constexpr (std::is_floating_point_v<T>) {
    return "number";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "string";
  } else if constexpr (std::is_same_v<T, nlohmann::json>) {
    return "json";
  } else {
    return "the requested type";
  }
}

// `value` as T, strictly: a bool is not a number and a number not a bool; an integer must be
// integral and fit T; a float accepts any number; other types go through nlohmann's from_json.
template <typename T>
absl::StatusOr<T> Convert(absl::string_view key, const nlohmann::json& value) {
  auto mismatch = [&]() {
    return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': expected ",
                                                   TypeName<T>(), ", got ", value.type_name(), " ",
                                                   value.dump()));
  };
  if constexpr (std::is_same_v<T, nlohmann::json>) {
    return value;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!value.is_boolean()) return mismatch();
    return value.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (value.is_number_unsigned()) {
      const uint64_t v = value.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<T>::max())) return mismatch();
      return static_cast<T>(v);
    }
    if (value.is_number_integer()) {
      const int64_t v = value.get<int64_t>();
      if constexpr (std::is_unsigned_v<T>) {
        if (v < 0 ||
            static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
          return mismatch();
      } else {
        if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            v > static_cast<int64_t>(std::numeric_limits<T>::max()))
          return mismatch();
      }
      return static_cast<T>(v);
    }
    return mismatch();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!value.is_number()) return mismatch();
    return value.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!value.is_string()) return mismatch();
    return value.get<std::string>();
  } else {
    try {
      return value.get<T>();
    } catch (const nlohmann::json::exception& e) {
      absl::Status s = mismatch();
      return absl::InvalidArgumentError(absl::StrCat(s.message(), " (", e.what(), ")"));
    }
  }
}

// A bound key as the cache sees it: updated on each change of the key's value (on the callback
// thread, under the cache's lock).
class Binding {
 public:
  virtual ~Binding() = default;
  virtual const std::string& key() const = 0;
  // Converts the key's new value (nullopt: unset) and publishes it; on a conversion error the
  // last good value stays and the error is returned.
  virtual absl::Status Update(const std::optional<nlohmann::json>& value) = 0;
};

template <typename T>
class TypedBinding final : public Binding {
 public:
  TypedBinding(std::string key, T default_value)
      : key_(std::move(key)), default_value_(default_value), cell_(std::move(default_value)) {}

  const std::string& key() const override { return key_; }

  absl::Status Update(const std::optional<nlohmann::json>& value) override {
    absl::Status status;
    if (!value.has_value()) {
      cell_.Publish(default_value_);
    } else if (absl::StatusOr<T> converted = Convert<T>(key_, *value); converted.ok()) {
      cell_.Publish(*std::move(converted));
    } else {
      status = converted.status();
    }
    absl::MutexLock lock(&status_mu_);
    status_ = status;
    return status;
  }

  const SnapshotCell<T>& cell() const { return cell_; }

  absl::Status status() const {
    absl::MutexLock lock(&status_mu_);
    return status_;
  }

 private:
  const std::string key_;
  const T default_value_;
  SnapshotCell<T> cell_;
  mutable absl::Mutex status_mu_;
  absl::Status status_ ABSL_GUARDED_BY(status_mu_);
};

}  // namespace config_internal

// A key of a ConfigCache bound to a type (ConfigCache::Bind): the current value as a T, read
// without a lock or an allocation. Copies share the binding.
template <typename T>
class BoundValue {
 public:
  using ReadGuard = typename SnapshotCell<T>::ReadGuard;

  // The current value, in place; it stays valid and unchanged while the guard lives. Keep guards
  // short-lived (a long one delays freeing replaced values), and within this handle's life.
  ReadGuard Read() const { return binding_->cell().Read(); }
  // A copy of the current value (allocates only when copying a T does).
  T Get() const { return *Read(); }

  // OK, or the conversion error of the key's newest value (the value read is then the last good
  // one, or the default).
  absl::Status status() const { return binding_->status(); }
  const std::string& key() const { return binding_->key(); }

 private:
  friend class ConfigCache;
  BoundValue(std::shared_ptr<config_internal::TypedBinding<T>> binding,
             std::shared_ptr<void> registration)
      : binding_(std::move(binding)), registration_(std::move(registration)) {}

  std::shared_ptr<config_internal::TypedBinding<T>> binding_;
  std::shared_ptr<void> registration_;  // unbinds from the cache when the last copy goes
};

namespace recipes_internal {
class SessionRenewer;
}  // namespace recipes_internal

class ConfigCache {
 public:
  // `root` is an absolute path. Nothing happens before Start(). On a borrowed Client:
  ConfigCache(Client* client, std::string root, ConfigCacheOptions options = {});
  // With a session of its own, connected from `client_options` (see "Sessions").
  ConfigCache(ClientOptions client_options, std::string root, ConfigCacheOptions options = {});
  ~ConfigCache();  // Close()
  ConfigCache(const ConfigCache&) = delete;
  ConfigCache& operator=(const ConfigCache&) = delete;

  // Adds the watch, loads; returns once loaded, or the error (then Close()). With an own session:
  // loads the fallback file first (if any) and, when the ensemble does not answer within
  // `timeout`, returns OK stale with the file's content (UNAVAILABLE, and Close(), without one);
  // it keeps trying in the background.
  absl::Status Start(absl::Duration timeout = absl::Seconds(30));

  // Removes the watch (closes the own session), writes the fallback file a last time; the cache
  // keeps its last values. Idempotent.
  void Close();

  // The value of `key` ("KEY" or "a/b") as T. NOT_FOUND when unset; INVALID_ARGUMENT naming the
  // key, the expected type and the value found when it is not a T.
  template <typename T>
  absl::StatusOr<T> Get(absl::string_view key) const {
    std::optional<nlohmann::json> value = Raw(key);
    if (!value.has_value()) {
      return absl::NotFoundError(absl::StrCat("config key '", key, "' is not set under ", root_));
    }
    return config_internal::Convert<T>(key, *value);
  }

  // The value of `key` as T, or `fallback` when unset or not a T.
  template <typename T>
  T GetOr(absl::string_view key, T fallback) const {
    absl::StatusOr<T> got = Get<T>(key);
    return got.ok() ? *std::move(got) : std::move(fallback);
  }

  // `key` bound to T (see "Typed reads"): reads take no lock and allocate nothing. Before Start()
  // and while `key` is unset the value is `default_value`.
  template <typename T>
  BoundValue<T> Bind(absl::string_view key, T default_value = T()) {
    auto binding = std::make_shared<config_internal::TypedBinding<T>>(std::string(key),
                                                                      std::move(default_value));
    std::shared_ptr<void> registration = AddBinding(binding);
    return BoundValue<T>(std::move(binding), std::move(registration));
  }

  std::optional<nlohmann::json> Raw(absl::string_view key) const;
  std::map<std::string, nlohmann::json> Snapshot() const;
  int64_t zxid() const;
  // The number of the release the content is (following releases; else 0).
  int64_t release() const;
  // True while the content comes from the fallback file or the own session is lost, until the
  // next load from the ensemble.
  bool IsStale() const;

  // Waits (bounded) until the cache reflects every write acknowledged before the call. Not from
  // a Client callback or a listener.
  absl::Status Sync(absl::Duration timeout = absl::Seconds(10));

  // Every change (`key` empty) or only `key`'s.
  ListenerId AddListener(ConfigListener listener, std::string key = "");
  // Each release applied, after the key listeners of its changes (following releases).
  ListenerId AddReleaseListener(ReleaseListener listener);
  ListenerId AddStaleListener(StaleListener listener);
  ListenerId AddErrorListener(ErrorListener listener);
  void RemoveListener(ListenerId id);

  struct State;  // shared with the Client's callbacks and the cache's threads (internal)

 private:
  // Registers `binding` with the current value; the token unbinds it when released.
  std::shared_ptr<void> AddBinding(std::shared_ptr<config_internal::Binding> binding);

  Client* client_ = nullptr;                       // borrowed; null with an own session
  std::unique_ptr<ClientOptions> client_options_;  // an own session's, until Start()
  std::string root_;
  std::shared_ptr<State> state_;
  std::unique_ptr<recipes_internal::SessionRenewer> renewer_;
  std::thread fallback_writer_;
  bool started_ = false;
};

}  // namespace confab

#endif  // CONFAB_CONFIG_CACHE_H_
