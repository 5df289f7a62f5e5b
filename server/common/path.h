// Path rules, as ZooKeeper's: absolute, '/'-separated, no empty, "." or ".." component, no
// trailing slash (except the root "/"), no control characters, bounded length. Checked at
// admission so that nothing malformed ever reaches the log.
#ifndef CONFAB_SERVER_COMMON_PATH_H_
#define CONFAB_SERVER_COMMON_PATH_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace confab {

inline constexpr size_t kMaxPathBytes = 4096;

// OK, or INVALID_PATH naming the path and what is wrong with it.
absl::Status ValidatePath(absl::string_view path);

// The parent of a valid non-root path ("/a/b" -> "/a", "/a" -> "/").
absl::string_view ParentPath(absl::string_view path);

// The last component of a valid non-root path ("/a/b" -> "b").
absl::string_view BaseName(absl::string_view path);

// True if `path` is `ancestor` or lies below it.
bool IsInSubtree(absl::string_view path, absl::string_view ancestor);

}  // namespace confab

#endif  // CONFAB_SERVER_COMMON_PATH_H_
