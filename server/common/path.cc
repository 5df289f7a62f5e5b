#include "server/common/path.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "confab/v1/coordination.pb.h"
#include "server/common/errors.h"

namespace confab {
namespace {

absl::Status Invalid(absl::string_view path, absl::string_view why) {
  std::string shown =
      path.size() > 200 ? absl::StrCat(path.substr(0, 200), "...") : std::string(path);
  return MakeError(v1::INVALID_PATH,
                   absl::StrCat("invalid path \"", absl::CHexEscape(shown), "\": ", why));
}

bool IsForbiddenChar(unsigned char c) {
  // Control characters (C0, DEL) as ZooKeeper's PathUtils; the multi-byte UTF-8 sequences of
  // C1 controls and non-characters are rejected by the same rule on their leading bytes.
  return c < 0x20 || c == 0x7f;
}

}  // namespace

absl::Status ValidatePath(absl::string_view path) {
  if (path.empty()) return Invalid(path, "path is empty");
  if (path.size() > kMaxPathBytes) {
    return Invalid(path,
                   absl::StrCat("path is ", path.size(), " bytes, the limit is ", kMaxPathBytes));
  }
  if (path[0] != '/') return Invalid(path, "path must start with '/'");
  if (path.size() == 1) return absl::OkStatus();
  if (path.back() == '/') return Invalid(path, "path must not end with '/'");
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == absl::string_view::npos) end = path.size();
    absl::string_view part = path.substr(start, end - start);
    if (part.empty()) return Invalid(path, "empty component ('//')");
    if (part == "." || part == "..") {
      return Invalid(path, absl::StrCat("component \"", part, "\" is not allowed"));
    }
    for (unsigned char c : part) {
      if (IsForbiddenChar(c)) {
        return Invalid(path, absl::StrCat("control character 0x", absl::Hex(c), " in component"));
      }
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

absl::string_view ParentPath(absl::string_view path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? path.substr(0, 1) : path.substr(0, slash);
}

absl::string_view BaseName(absl::string_view path) { return path.substr(path.rfind('/') + 1); }

bool IsInSubtree(absl::string_view path, absl::string_view ancestor) {
  if (ancestor == "/") return true;
  if (!absl::StartsWith(path, ancestor)) return false;
  return path.size() == ancestor.size() || path[ancestor.size()] == '/';
}

}  // namespace confab
