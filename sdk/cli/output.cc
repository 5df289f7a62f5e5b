#include "sdk/cli/output.h"

#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace confab::cli {

std::string HexText(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

std::string TimeText(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

std::string StatText(const Stat& stat) {
  return absl::StrCat("cZxid = ", ZxidText(stat.czxid), "\nctime = ", TimeText(stat.ctime),
                      "\nmZxid = ", ZxidText(stat.mzxid), "\nmtime = ", TimeText(stat.mtime),
                      "\npZxid = ", ZxidText(stat.pzxid), "\ncversion = ", stat.cversion,
                      "\ndataVersion = ", stat.version,
                      "\nephemeralOwner = ", HexText(static_cast<uint64_t>(stat.ephemeral_owner)),
                      "\ndataLength = ", stat.data_length, "\nnumChildren = ", stat.num_children,
                      "\n");
}

nlohmann::ordered_json StatJson(const Stat& stat) {
  return {{"czxid", stat.czxid},
          {"mzxid", stat.mzxid},
          {"pzxid", stat.pzxid},
          {"ctime", stat.ctime},
          {"mtime", stat.mtime},
          {"version", stat.version},
          {"cversion", stat.cversion},
          {"ephemeral_owner", stat.ephemeral_owner},
          {"data_length", stat.data_length},
          {"num_children", stat.num_children}};
}

void SetDataJson(absl::string_view data, nlohmann::ordered_json* out) {
  if (IsValidUtf8(data)) {
    (*out)["data"] = std::string(data);
  } else {
    (*out)["data_base64"] = absl::Base64Escape(data);
  }
}

std::string EventText(const WatchEvent& event) {
  return absl::StrCat(EventTypeName(event.type), " ", event.path, " ", ZxidText(event.zxid));
}

nlohmann::ordered_json EventJson(const WatchEvent& event) {
  return {
      {"type", std::string(EventTypeName(event.type))}, {"path", event.path}, {"zxid", event.zxid}};
}

void PrintJson(const nlohmann::ordered_json& value) {
  // Paths are not checked for UTF-8 by the server: replace what JSON cannot carry rather than
  // fail after the operation was done.
  std::cout << value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
}

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    int length = 0;
    uint32_t code_point = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    }
    if ((lead & 0xE0) == 0xC0) {
      length = 2;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      code_point = lead & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (int k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    // Overlong encodings, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
    constexpr uint32_t kMinOfLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < kMinOfLength[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

}  // namespace confab::cli
