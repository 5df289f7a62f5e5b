#include "confab/config_publisher.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "confab/service_registry.h"
#include "sdk/src/recipes/config_nodes.h"

namespace confab {

namespace {

using json = nlohmann::json;
using config_internal::DecodeValue;
using config_internal::kReleasePrefix;
using config_internal::ParseRelease;

bool HasType(const json& value, ValueType type) {
  switch (type) {
    case ValueType::kAny:
      return true;
    case ValueType::kString:
      return value.is_string();
    case ValueType::kInteger:
      return value.is_number_integer();
    case ValueType::kNumber:
      return value.is_number();
    case ValueType::kBoolean:
      return value.is_boolean();
    case ValueType::kObject:
      return value.is_object();
    case ValueType::kArray:
      return value.is_array();
  }
  return false;
}

std::string Show(const json& value) {
  std::string text = value.dump();
  if (text.size() > 200) text = absl::StrCat(text.substr(0, 200), "...");
  return text;
}

// A key's node under the config root, and the key validation: relative, no empty segments.
absl::Status CheckKey(absl::string_view key) {
  if (key.empty() || key.front() == '/' || key.back() == '/' || absl::StrContains(key, "//")) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key '", key, "': rule key-syntax: not a relative node path"));
  }
  return absl::OkStatus();
}

struct KeyNode {
  json value;
  int32_t version = 0;
};

// The config subtree as read: keys with a value, and every node path (folders too).
struct Snapshot {
  std::map<std::string, KeyNode> keys;
  std::set<std::string> nodes;  // relative paths of every existing node under the root
};

absl::Status ReadSubtree(Client& client, const std::string& root, const std::string& relative,
                         Snapshot& out) {
  const std::string path = relative.empty() ? root : JoinPath(root, relative);
  absl::StatusOr<Children> children = client.GetChildren(path);
  if (!children.ok()) {
    if (ErrorCodeOf(children.status()) == v1::NO_NODE) return absl::OkStatus();
    return children.status();
  }
  for (const std::string& name : children->names) {
    const std::string key = relative.empty() ? name : absl::StrCat(relative, "/", name);
    absl::StatusOr<NodeData> node = client.Get(JoinPath(root, key));
    if (!node.ok()) {
      if (ErrorCodeOf(node.status()) == v1::NO_NODE) continue;
      return node.status();
    }
    out.nodes.insert(key);
    if (std::optional<json> value = DecodeValue(node->data); value.has_value()) {
      out.keys[key] = KeyNode{*std::move(value), node->stat.version};
    }
    if (node->stat.num_children > 0) {
      if (absl::Status s = ReadSubtree(client, root, key, out); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kAny:
      return "any";
    case ValueType::kString:
      return "string";
    case ValueType::kInteger:
      return "integer";
    case ValueType::kNumber:
      return "number";
    case ValueType::kBoolean:
      return "boolean";
    case ValueType::kObject:
      return "object";
    case ValueType::kArray:
      return "array";
  }
  return "?";
}

std::vector<std::string> ConfigSchema::Check(absl::string_view key, const json& value) const {
  std::vector<std::string> problems;
  auto problem = [&](absl::string_view rule, absl::string_view what) {
    problems.push_back(
        absl::StrCat("config key '", key, "': rule ", rule, ": value ", Show(value), " ", what));
  };
  auto it = keys.find(std::string(key));
  if (it == keys.end()) {
    if (!allow_unknown_keys) problem("known-key", "is for a key the schema does not declare");
    return problems;
  }
  const ValueRule& rule = it->second;
  if (value.is_null()) {
    if (rule.required) problem("required", "would delete a required key");
    return problems;
  }
  if (!HasType(value, rule.type)) {
    problem(absl::StrCat("type=", ValueTypeName(rule.type)),
            absl::StrCat("is a ", value.type_name(), ", not a ", ValueTypeName(rule.type)));
    return problems;
  }
  if (rule.minimum.has_value() || rule.maximum.has_value()) {
    if (!value.is_number()) {
      problem("range", "is not a number");
    } else {
      const double v = value.get<double>();
      if (rule.minimum.has_value() && v < *rule.minimum) {
        problem(absl::StrCat("minimum=", *rule.minimum),
                absl::StrCat("is less than ", *rule.minimum));
      }
      if (rule.maximum.has_value() && v > *rule.maximum) {
        problem(absl::StrCat("maximum=", *rule.maximum),
                absl::StrCat("is greater than ", *rule.maximum));
      }
    }
  }
  if (!rule.one_of.empty() &&
      std::find(rule.one_of.begin(), rule.one_of.end(), value) == rule.one_of.end()) {
    std::vector<std::string> allowed;
    for (const json& a : rule.one_of) allowed.push_back(a.dump());
    problem(absl::StrCat("enum=[", absl::StrJoin(allowed, ", "), "]"), "is not one of them");
  }
  if (value.is_object()) {
    for (const auto& [member, member_value] : value.items()) {
      if (!HasType(member_value, rule.member_type)) {
        problem(absl::StrCat("member-type=", ValueTypeName(rule.member_type)),
                absl::StrCat("has member '", member, "' = ", Show(member_value), ", not a ",
                             ValueTypeName(rule.member_type)));
      }
    }
    for (const std::string& member : rule.required_members) {
      if (!value.contains(member)) {
        problem(absl::StrCat("required-member=", member),
                absl::StrCat("lacks member '", member, "'"));
      }
    }
  }
  return problems;
}

ConfigPublisher::ConfigPublisher(Client* client, std::string config_root, std::string release_root,
                                 ConfigSchema schema)
    : client_(client),
      config_root_(std::move(config_root)),
      release_root_(std::move(release_root)),
      schema_(std::move(schema)) {}

absl::Status ConfigPublisher::EnsureRoots() {
  if (absl::Status s = EnsurePath(*client_, config_root_); !s.ok()) return s;
  return EnsurePath(*client_, release_root_);
}

absl::StatusOr<std::map<std::string, json>> ConfigPublisher::Current() {
  Snapshot snapshot;
  if (absl::Status s = ReadSubtree(*client_, config_root_, "", snapshot); !s.ok()) return s;
  std::map<std::string, json> content;
  for (auto& [key, node] : snapshot.keys) content[key] = std::move(node.value);
  return content;
}

absl::StatusOr<PublishResult> ConfigPublisher::Publish(const std::map<std::string, json>& changes,
                                                       absl::string_view who,
                                                       absl::string_view message) {
  return PublishImpl(changes, nullptr, who, message);
}

std::vector<std::string> ConfigPublisher::Validate(
    const std::map<std::string, json>& changes) const {
  std::vector<std::string> problems;
  for (const auto& [key, value] : changes) {
    if (absl::Status s = CheckKey(key); !s.ok()) {
      problems.emplace_back(s.message());
      continue;
    }
    std::vector<std::string> p = schema_.Check(key, value);
    problems.insert(problems.end(), p.begin(), p.end());
  }
  return problems;
}

absl::StatusOr<PublishResult> ConfigPublisher::PublishImpl(
    std::map<std::string, json> changes, const std::map<std::string, json>* target,
    absl::string_view who, absl::string_view message) {
  // 1. The schema, change by change (all problems at once), before anything is read.
  std::vector<std::string> problems = Validate(changes);
  if (!problems.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("release refused, nothing applied: ", absl::StrJoin(problems, "; ")));
  }

  // 2. The counter (its version is the token), then the content it guards.
  if (absl::Status s = EnsureRoots(); !s.ok()) return s;
  if (absl::Status s = client_->Sync(release_root_); !s.ok()) return s;
  absl::StatusOr<NodeData> counter = client_->Get(release_root_);
  if (!counter.ok()) return counter.status();
  int64_t latest = 0;
  if (std::optional<json> data = DecodeValue(counter->data);
      data.has_value() && data->is_object() && data->contains("latest")) {
    latest = data->value("latest", int64_t{0});
  }
  const int32_t token = counter->stat.version;
  Snapshot snapshot;
  if (absl::Status s = ReadSubtree(*client_, config_root_, "", snapshot); !s.ok()) return s;

  // A rollback: the changes that turn what was read into `target`, under the same token.
  if (target != nullptr) {
    changes.clear();
    for (const auto& [key, node] : snapshot.keys) {
      if (!target->contains(key)) changes[key] = nullptr;
    }
    for (const auto& [key, value] : *target) {
      auto it = snapshot.keys.find(key);
      if (it == snapshot.keys.end() || it->second.value != value) changes[key] = value;
    }
    problems = Validate(changes);
  }

  // The content after the release; required keys must all be there.
  std::map<std::string, json> content;
  for (const auto& [key, node] : snapshot.keys) content[key] = node.value;
  for (const auto& [key, value] : changes) {
    if (value.is_null()) {
      content.erase(key);
    } else {
      content[key] = value;
    }
  }
  for (const auto& [key, rule] : schema_.keys) {
    if (rule.required && !content.contains(key)) {
      problems.push_back(absl::StrCat("config key '", key,
                                      "': rule required: value (missing) is required in every "
                                      "release"));
    }
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("release refused, nothing applied: ", absl::StrJoin(problems, "; ")));
  }

  // 3. One Multi: guard, counter, keys, release node.
  const int64_t number = latest + 1;
  std::vector<Op> ops;
  ops.push_back(Op::Check(release_root_, token));
  ops.push_back(Op::Set(release_root_, json({{"latest", number}}).dump()));
  std::set<std::string> created;  // folders this Multi creates
  json recorded_changes = json::object();
  for (const auto& [key, value] : changes) {
    recorded_changes[key] = value;
    const std::string path = JoinPath(config_root_, key);
    auto existing = snapshot.keys.find(key);
    if (value.is_null()) {
      if (existing != snapshot.keys.end()) {
        ops.push_back(Op::Delete(path, existing->second.version));
      }
      continue;
    }
    if (existing != snapshot.keys.end()) {
      ops.push_back(Op::Set(path, value.dump(), existing->second.version));
      continue;
    }
    if (snapshot.nodes.contains(key)) {  // a folder (empty data) becomes a value
      ops.push_back(Op::Set(path, value.dump()));
      continue;
    }
    // Missing parents of a nested key first.
    std::vector<std::string> segments = absl::StrSplit(key, '/');
    std::string prefix;
    for (size_t i = 0; i + 1 < segments.size(); ++i) {
      prefix = prefix.empty() ? segments[i] : absl::StrCat(prefix, "/", segments[i]);
      if (!snapshot.nodes.contains(prefix) && created.insert(prefix).second) {
        ops.push_back(Op::Create(JoinPath(config_root_, prefix)));
      }
    }
    ops.push_back(Op::Create(path, value.dump()));
    created.insert(key);
  }
  json record = {{"release", number},
                 {"who", std::string(who)},
                 {"when_ms", absl::ToUnixMillis(absl::Now())},
                 {"message", std::string(message)},
                 {"changes", recorded_changes},
                 {"content", json(content)}};
  const size_t release_op = ops.size();
  ops.push_back(Op::Create(JoinPath(release_root_, kReleasePrefix), record.dump(),
                           CreateMode::kPersistentSequential));

  if (before_commit_hook_) before_commit_hook_();

  absl::StatusOr<std::vector<OpResult>> applied = client_->Multi(std::move(ops));
  if (!applied.ok()) {
    const v1::ErrorCode code = ErrorCodeOf(applied.status());
    const int failed = FailedOpOf(applied.status());
    if (failed == 0 && (code == v1::BAD_VERSION || code == v1::NO_NODE)) {
      return absl::AbortedError(absl::StrCat(
          "release conflict: the release counter ", release_root_, " moved past version ", token,
          " (release ", latest,
          ") since it was read: another publisher released first; nothing applied, re-read and "
          "publish again"));
    }
    if (failed > 1 && static_cast<size_t>(failed) < release_op &&
        (code == v1::BAD_VERSION || code == v1::NO_NODE || code == v1::NODE_EXISTS)) {
      return absl::AbortedError(absl::StrCat(
          "release conflict: a config node changed since it was read (", applied.status().message(),
          "); nothing applied, re-read and publish again"));
    }
    return applied.status();
  }
  PublishResult result;
  result.release = number;
  result.zxid = (*applied)[release_op].stat.czxid;
  result.path = (*applied)[release_op].path;
  return result;
}

absl::StatusOr<std::vector<Release>> ConfigPublisher::History() {
  absl::StatusOr<Children> children = client_->GetChildren(release_root_);
  if (!children.ok()) {
    if (ErrorCodeOf(children.status()) == v1::NO_NODE) return std::vector<Release>();
    return children.status();
  }
  std::vector<Release> releases;
  for (const std::string& name : children->names) {
    if (!absl::StartsWith(name, kReleasePrefix)) continue;
    const std::string path = JoinPath(release_root_, name);
    absl::StatusOr<NodeData> node = client_->Get(path);
    if (!node.ok()) {
      if (ErrorCodeOf(node.status()) == v1::NO_NODE) continue;
      return node.status();
    }
    absl::StatusOr<Release> release = ParseRelease(path, *node);
    if (!release.ok()) return release.status();
    releases.push_back(*std::move(release));
  }
  std::sort(releases.begin(), releases.end(),
            [](const Release& a, const Release& b) { return a.number < b.number; });
  return releases;
}

absl::StatusOr<Release> ConfigPublisher::GetRelease(int64_t number) {
  absl::StatusOr<std::vector<Release>> history = History();
  if (!history.ok()) return history.status();
  for (Release& release : *history) {
    if (release.number == number) return std::move(release);
  }
  return absl::NotFoundError(absl::StrCat("no release ", number, " under ", release_root_));
}

absl::StatusOr<PublishResult> ConfigPublisher::Rollback(int64_t number, absl::string_view who,
                                                        absl::string_view message) {
  absl::StatusOr<Release> target = GetRelease(number);
  if (!target.ok()) return target.status();
  const std::string full_message =
      message.empty() ? absl::StrCat("rollback to release ", number)
                      : absl::StrCat("rollback to release ", number, ": ", message);
  return PublishImpl({}, &target->content, who, full_message);
}

}  // namespace confab
