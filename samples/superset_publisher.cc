// superset_publisher: publishes a Superset-like configuration through confab::ConfigPublisher:
// a first release validated against a schema, a ROW_LIMIT change, a refused invalid value, and a
// rollback to the first release; prints every release and the history.
//
//   superset_publisher --endpoints 127.0.0.1:2281 [--root /superset/config]
//                      [--releases /superset/config-releases] [--who NAME]
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/config_publisher.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, endpoints, "127.0.0.1:2281", "confabd client addresses, host:port,...");
ABSL_FLAG(std::string, root, "/superset/config", "the config subtree");
ABSL_FLAG(std::string, releases, "/superset/config-releases", "the release area");
ABSL_FLAG(std::string, who, "superset_publisher", "who publishes (recorded in each release)");

namespace {

using json = nlohmann::json;

confab::ConfigSchema SupersetSchema() {
  using confab::ValueRule;
  using confab::ValueType;
  confab::ConfigSchema schema;
  schema.keys["SQLALCHEMY_DATABASE_URI"] = ValueRule::Of(ValueType::kString).Required();
  schema.keys["ROW_LIMIT"] = ValueRule::Of(ValueType::kInteger).Required().Range(1, 1000000);
  schema.keys["SQLLAB_TIMEOUT"] = ValueRule::Of(ValueType::kInteger).Range(1, 3600);
  schema.keys["FEATURE_FLAGS"] = ValueRule::Of(ValueType::kObject).Members(ValueType::kBoolean);
  schema.keys["CACHE_CONFIG"] =
      ValueRule::Of(ValueType::kObject).Members(ValueType::kAny, {"CACHE_TYPE"});
  return schema;
}

void PrintRelease(const confab::Release& r) {
  std::printf("release %lld: zxid %lld by %s: %s\n", static_cast<long long>(r.number),
              static_cast<long long>(r.zxid), r.who.c_str(), r.message.c_str());
  std::printf("  changes: %s\n", r.changes.dump().c_str());
  std::printf("  content: %s\n", json(r.content).dump().c_str());
}

// Prints the release `result` names (read back from its node); false on error.
bool Show(confab::ConfigPublisher& publisher, const absl::StatusOr<confab::PublishResult>& result) {
  if (!result.ok()) {
    std::fprintf(stderr, "superset_publisher: %s\n", result.status().ToString().c_str());
    return false;
  }
  absl::StatusOr<confab::Release> release = publisher.GetRelease(result->release);
  if (!release.ok()) {
    std::fprintf(stderr, "superset_publisher: %s\n", release.status().ToString().c_str());
    return false;
  }
  PrintRelease(*release);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  confab::ClientOptions options;
  options.endpoints = absl::GetFlag(FLAGS_endpoints);
  options.request_timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<confab::Client>> client =
      confab::Client::Connect(std::move(options));
  if (!client.ok()) {
    std::fprintf(stderr, "superset_publisher: cannot connect: %s\n",
                 client.status().ToString().c_str());
    return 3;
  }
  confab::ConfigPublisher publisher(client->get(), absl::GetFlag(FLAGS_root),
                                    absl::GetFlag(FLAGS_releases), SupersetSchema());
  const std::string who = absl::GetFlag(FLAGS_who);

  // 1. The whole configuration.
  std::map<std::string, json> initial = {
      {"SQLALCHEMY_DATABASE_URI", "postgresql://superset:superset@db:5432/superset"},
      {"ROW_LIMIT", 5000},
      {"SQLLAB_TIMEOUT", 300},
      {"FEATURE_FLAGS", {{"ALERT_REPORTS", true}, {"DASHBOARD_RBAC", false}}},
      {"CACHE_CONFIG",
       {{"CACHE_TYPE", "RedisCache"},
        {"CACHE_DEFAULT_TIMEOUT", 300},
        {"CACHE_REDIS_URL", "redis://redis:6379/0"}}},
  };
  absl::StatusOr<confab::PublishResult> first =
      publisher.Publish(initial, who, "initial Superset configuration");
  if (!Show(publisher, first)) return 1;

  // 2. One change.
  if (!Show(publisher, publisher.Publish({{"ROW_LIMIT", 10000}}, who, "raise ROW_LIMIT"))) {
    return 1;
  }

  // 3. An invalid value: refused, nothing applied.
  absl::StatusOr<confab::PublishResult> bad =
      publisher.Publish({{"ROW_LIMIT", -5}, {"FEATURE_FLAGS", {{"ALERT_REPORTS", "yes"}}}}, who,
                        "an invalid release");
  if (bad.ok()) {
    std::fprintf(stderr, "superset_publisher: an invalid release was accepted\n");
    return 1;
  }
  std::printf("rejected: %s\n", std::string(bad.status().message()).c_str());

  // 4. Back to the first release.
  absl::StatusOr<confab::PublishResult> back =
      publisher.Rollback(first->release, who, "back to the initial configuration");
  if (!Show(publisher, back)) return 1;
  std::printf("rolled back to release %lld as release %lld\n",
              static_cast<long long>(first->release), static_cast<long long>(back->release));

  absl::StatusOr<std::vector<confab::Release>> history = publisher.History();
  if (!history.ok()) {
    std::fprintf(stderr, "superset_publisher: %s\n", history.status().ToString().c_str());
    return 1;
  }
  std::printf("history: %zu releases\n", history->size());
  for (const confab::Release& r : *history) {
    std::printf("  release %lld (zxid %lld) by %s: %s\n", static_cast<long long>(r.number),
                static_cast<long long>(r.zxid), r.who.c_str(), r.message.c_str());
  }
  return 0;
}
