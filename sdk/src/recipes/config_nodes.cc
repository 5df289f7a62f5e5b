#include "sdk/src/recipes/config_nodes.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace confab::config_internal {

std::optional<nlohmann::json> DecodeValue(const std::string& data) {
  if (data.empty()) return std::nullopt;
  nlohmann::json parsed = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return nlohmann::json(data);
  return parsed;
}

absl::StatusOr<Release> ParseRelease(const std::string& path, const NodeData& node) {
  nlohmann::json data = nlohmann::json::parse(node.data, nullptr, /*allow_exceptions=*/false);
  if (data.is_discarded() || !data.is_object() || !data.contains("release")) {
    return absl::DataLossError(absl::StrCat("release node ", path, " does not hold a release"));
  }
  Release release;
  release.path = path;
  release.zxid = node.stat.czxid;
  release.number = data.value("release", int64_t{0});
  release.who = data.value("who", std::string());
  release.when_ms = data.value("when_ms", int64_t{0});
  release.message = data.value("message", std::string());
  if (data.contains("changes") && data["changes"].is_object()) release.changes = data["changes"];
  if (data.contains("content") && data["content"].is_object()) {
    for (const auto& [key, value] : data["content"].items()) release.content[key] = value;
  }
  return release;
}

}  // namespace confab::config_internal
