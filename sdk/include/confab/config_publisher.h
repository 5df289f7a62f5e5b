// ConfigPublisher: validated, atomic, versioned releases of a config subtree, on confab::Client.
// It writes the layout ConfigCache reads (config_cache.h; the Python binding's ConfigCache):
//
//   <config_root>/<KEY>      one value: the node's data is JSON; "a/b" keys are nested nodes
//
// and keeps a release area next to it:
//
//   <release_root>                       the release counter: data {"latest": N}; its VERSION
//                                        is the optimistic-concurrency token of every publish
//   <release_root>/release-<10 digits>   PERSISTENT_SEQUENTIAL, one per release, data
//                                        {"release": N, "who", "when_ms", "message",
//                                         "changes": {key: value or null}, "content": {key: value}}
//
// Publish(changes, who, message):
//   1. validates every change against the schema (type, numeric range, enum, object members,
//      unknown keys, required keys of the resulting content); a refusal names the key, the rule
//      and the value, and nothing is written;
//   2. reads the release counter (its version v) and the current content;
//   3. applies the whole release as ONE Multi: Check(<release_root>, v), the counter's bump, every
//      key's Create/Set/Delete (Set/Delete at the version read) and the release node. A concurrent
//      publisher that released in between makes the Check fail: ABORTED ("release conflict"),
//      nothing applied; re-read and publish again. All keys change at the Multi's one zxid.
//
// Rollback(n) publishes the content of release n as a new release: keys it did not have are
// deleted, the others set to its values.
//
// Ownership: borrows the Client (it must outlive the publisher). Threads: the methods may be
// called from any thread except a Client callback (they block on the Client).
#ifndef CONFAB_CONFIG_PUBLISHER_H_
#define CONFAB_CONFIG_PUBLISHER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "confab/client.h"
#include "nlohmann/json.hpp"

namespace confab {

enum class ValueType { kAny, kString, kInteger, kNumber, kBoolean, kObject, kArray };
absl::string_view ValueTypeName(ValueType type);

// The rules of one key's value. Every set rule must hold.
struct ValueRule {
  ValueType type = ValueType::kAny;
  bool required = false;               // the key must be present in every release
  std::optional<double> minimum;       // numbers only (inclusive)
  std::optional<double> maximum;       // numbers only (inclusive)
  std::vector<nlohmann::json> one_of;  // enum: the value must equal one of these
  // Objects: the type of every member's value (kAny: any), and members that must be present.
  ValueType member_type = ValueType::kAny;
  std::vector<std::string> required_members;

  // Builders: ValueRule::Of(ValueType::kInteger).Required().Range(1, 100000).
  static ValueRule Of(ValueType value_type) {
    ValueRule rule;
    rule.type = value_type;
    return rule;
  }
  ValueRule Required() const {
    ValueRule rule = *this;
    rule.required = true;
    return rule;
  }
  ValueRule Range(std::optional<double> min, std::optional<double> max) const {
    ValueRule rule = *this;
    rule.minimum = min;
    rule.maximum = max;
    return rule;
  }
  ValueRule OneOf(std::vector<nlohmann::json> values) const {
    ValueRule rule = *this;
    rule.one_of = std::move(values);
    return rule;
  }
  ValueRule Members(ValueType value_type, std::vector<std::string> must_have = {}) const {
    ValueRule rule = *this;
    rule.member_type = value_type;
    rule.required_members = std::move(must_have);
    return rule;
  }
};

struct ConfigSchema {
  std::map<std::string, ValueRule> keys;
  bool allow_unknown_keys = false;  // keys not in `keys`: refused unless true

  // The problems of `value` for `key` ("" when fine): "config key 'K': rule R: value V ...".
  std::vector<std::string> Check(absl::string_view key, const nlohmann::json& value) const;
};

// One release, as stored in its node.
struct Release {
  int64_t number = 0;
  int64_t zxid = 0;  // the zxid its Multi applied at (the release node's czxid)
  std::string path;  // the release node
  std::string who;
  int64_t when_ms = 0;
  std::string message;
  nlohmann::json changes = nlohmann::json::object();  // key -> value, null = deleted
  std::map<std::string, nlohmann::json> content;      // the whole config after the release
};

struct PublishResult {
  int64_t release = 0;
  int64_t zxid = 0;
  std::string path;  // the release node
};

class ConfigPublisher {
 public:
  // `config_root` and `release_root` are absolute paths (created on first use).
  ConfigPublisher(Client* client, std::string config_root, std::string release_root,
                  ConfigSchema schema);

  ConfigPublisher(const ConfigPublisher&) = delete;
  ConfigPublisher& operator=(const ConfigPublisher&) = delete;

  // `changes`: key -> new value, or null to delete the key. INVALID_ARGUMENT (listing every
  // problem) when a change breaks the schema; ABORTED when another publisher released first (or
  // a key was written directly) since the state was read; a Client error otherwise. In every
  // error case nothing is applied (UNAVAILABLE from the Client: outcome unknown, see client.h).
  absl::StatusOr<PublishResult> Publish(const std::map<std::string, nlohmann::json>& changes,
                                        absl::string_view who, absl::string_view message);

  // Every release, oldest first.
  absl::StatusOr<std::vector<Release>> History();
  // One release; NOT_FOUND when there is none with that number.
  absl::StatusOr<Release> GetRelease(int64_t number);

  // Publishes release `number`'s content as a new release (message prefixed with
  // "rollback to release N").
  absl::StatusOr<PublishResult> Rollback(int64_t number, absl::string_view who,
                                         absl::string_view message);

  // The current content of the config subtree (keys with a value).
  absl::StatusOr<std::map<std::string, nlohmann::json>> Current();

  // Tests only: runs after Publish has read the counter and content, before its Multi.
  void SetBeforeCommitHookForTesting(absl::AnyInvocable<void()> hook) {
    before_commit_hook_ = std::move(hook);
  }

 private:
  absl::Status EnsureRoots();
  std::vector<std::string> Validate(const std::map<std::string, nlohmann::json>& changes) const;
  // `target` set: a rollback to that content (the changes are computed from the state read).
  absl::StatusOr<PublishResult> PublishImpl(std::map<std::string, nlohmann::json> changes,
                                            const std::map<std::string, nlohmann::json>* target,
                                            absl::string_view who, absl::string_view message);

  Client* client_;
  std::string config_root_;
  std::string release_root_;
  ConfigSchema schema_;
  absl::AnyInvocable<void()> before_commit_hook_;
};

}  // namespace confab

#endif  // CONFAB_CONFIG_PUBLISHER_H_
