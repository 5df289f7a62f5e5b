// How the config recipes store values and releases in nodes: shared by ConfigCache (which reads
// them) and ConfigPublisher (which writes them), so both sides decode them the same way. The
// layouts are described in config_publisher.h.
#ifndef CONFAB_SDK_SRC_RECIPES_CONFIG_NODES_H_
#define CONFAB_SDK_SRC_RECIPES_CONFIG_NODES_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "confab/client.h"
#include "confab/config_publisher.h"
#include "nlohmann/json.hpp"

namespace confab::config_internal {

// The name of a release node under the release root, before its sequence number.
inline constexpr absl::string_view kReleasePrefix = "release-";

// A node's data as a config value: nullopt for empty data (a folder), the JSON it holds, else the
// string of its text.
std::optional<nlohmann::json> DecodeValue(const std::string& data);

// A release node (`path`, as read) as a Release; DATA_LOSS when it does not hold one.
absl::StatusOr<Release> ParseRelease(const std::string& path, const NodeData& node);

}  // namespace confab::config_internal

#endif  // CONFAB_SDK_SRC_RECIPES_CONFIG_NODES_H_
