// How confabctl shows what the server answered: zxids as 0x hex and times as ISO-8601 UTC in
// text; in JSON (one compact object per line), zxids as numbers and times as ms since the epoch.
#ifndef CONFAB_SDK_CLI_OUTPUT_H_
#define CONFAB_SDK_CLI_OUTPUT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "confab/client.h"
#include "nlohmann/json.hpp"

namespace confab::cli {

std::string HexText(uint64_t value);  // "0x1a"
inline std::string ZxidText(int64_t zxid) { return HexText(static_cast<uint64_t>(zxid)); }
std::string TimeText(int64_t unix_ms);  // "2024-05-01T12:00:00.123Z"

// ZooKeeper's stat lines: "cZxid = 0x...", "ctime = ...", ... "numChildren = N".
std::string StatText(const Stat& stat);
nlohmann::ordered_json StatJson(const Stat& stat);

// Sets out["data"] when `data` is valid UTF-8 (JSON strings must be), else out["data_base64"].
void SetDataJson(absl::string_view data, nlohmann::ordered_json* out);

// "NodeCreated /a/b 0x100000003" / {"type": "NodeCreated", "path": "/a/b", "zxid": 4294967299}.
std::string EventText(const WatchEvent& event);
nlohmann::ordered_json EventJson(const WatchEvent& event);

// Writes `value` as one compact line to stdout.
void PrintJson(const nlohmann::ordered_json& value);

bool IsValidUtf8(absl::string_view text);

}  // namespace confab::cli

#endif  // CONFAB_SDK_CLI_OUTPUT_H_
