// ConfigCache: a live local copy of a subtree of JSON values, on confab::Client, with the layout
// of the Python binding's ConfigCache (bindings/python/README.md, "Recipes"):
//
//   <root>           the cache's root (created empty if missing)
//   <root>/<KEY>     one value: the node's data is JSON ("5000", "true", "{\"A\": true}")
//   <root>/<a>/<b>   nested nodes are keys too: "a/b"; empty data = a folder, no value
//
// Data that is not JSON is the string of its text.
//
// How it follows the subtree without missing a change: Start() first adds ONE persistent
// recursive watch on the root, then — on the Client's callback thread, behind any event already
// queued — Syncs and reads every node of the subtree. Events that arrive before the load are
// dropped (the load's reads are sent after they arrived, so they reflect them); every later
// event re-reads the node it names. Since the watch exists before the first read, no change is
// missed between load and watch. Because an event carries no data, the re-read returns the value
// of the moment, not of the event's zxid: when a key changes and changes back before the re-read
// (5000 -> 10000 -> 5000), listeners may see no change at all. The final state is always right;
// a reader that needs every intermediate release follows the publisher's release sequence. (The
// Python binding instead passes start_zxid = the load's zxid to AddWatch; confab::Client::AddWatch
// has no start_zxid parameter, and this order gives the same guarantee without one.) Across
// reconnects the Client resumes the watch itself; a kEventsMissed event makes the cache reload the
// whole subtree (and report the differences).
//
// zxid(): the zxid of the newest change applied: after the load, the greatest mzxid/pzxid of the
// subtree's nodes; then the zxid of each applied event.
//
// Ownership: the cache borrows the Client (it must outlive the cache) and owns its watch
// (removed by Close() or destruction).
//
// Threads: Get/GetOr/Keys/zxid/AddListener/RemoveListener may be called from any thread,
// including listeners. Start() and Sync() block for the callback thread: never call them from a
// Client callback or a listener. Loading and applying events run on the Client's callback thread
// and make blocking reads there.
//
// Listeners run on the Client's callback thread, one at a time, in the order of the changes,
// only for actual changes of a value (nullopt old/new for an added/removed key); not for the
// initial load. They may read the cache (which already shows the change) and call the Client.
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
#include <type_traits>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "nlohmann/json.hpp"

namespace confab {

struct ConfigChange {
  std::string key;
  std::optional<nlohmann::json> old_value;  // nullopt: the key was added
  std::optional<nlohmann::json> new_value;  // nullopt: the key was removed
  int64_t zxid = 0;                         // the change's event (0 for a reload)
};

using ConfigListener = absl::AnyInvocable<void(const ConfigChange& change)>;
enum class ListenerId : uint64_t {};

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

}  // namespace config_internal

class ConfigCache {
 public:
  // `root` is an absolute path. Nothing happens before Start().
  ConfigCache(Client* client, std::string root);
  ~ConfigCache();  // Close()
  ConfigCache(const ConfigCache&) = delete;
  ConfigCache& operator=(const ConfigCache&) = delete;

  // Adds the watch, loads the subtree; returns once loaded (or the error; then Close()).
  absl::Status Start(absl::Duration timeout = absl::Seconds(30));

  // Removes the watch; the cache keeps its last values. Idempotent.
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

  std::optional<nlohmann::json> Raw(absl::string_view key) const;
  std::map<std::string, nlohmann::json> Snapshot() const;
  int64_t zxid() const;

  // Waits (bounded) until the cache reflects every write acknowledged before the call. Not from
  // a Client callback or a listener.
  absl::Status Sync(absl::Duration timeout = absl::Seconds(10));

  // Every change (`key` empty) or only `key`'s.
  ListenerId AddListener(ConfigListener listener, std::string key = "");
  void RemoveListener(ListenerId id);

  struct State;  // shared with the Client's callbacks (internal)

 private:
  Client* client_;
  std::string root_;
  std::shared_ptr<State> state_;
  std::optional<WatchId> watch_id_;
};

}  // namespace confab

#endif  // CONFAB_CONFIG_CACHE_H_
