// The few file-system moves that durability rests on, done right once: a file replaced
// atomically and durably (write a temporary, fsync it, rename, fsync the directory), and a
// directory fsync after every create or rename in it (etcd #6368: a rename is durable only after
// its directory is synced).
#ifndef CONFAB_SERVER_STORAGE_DURABLE_FILE_H_
#define CONFAB_SERVER_STORAGE_DURABLE_FILE_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace confab::storage {

absl::Status SyncDirectory(const std::string& dir);
// Replaces `path` with `contents` so that after a crash it holds either the old or the new
// contents, and the new ones once this returns OK.
absl::Status WriteFileDurably(const std::string& path, absl::string_view contents);
// NOT_FOUND if the file does not exist; other errors name the file.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
// An absl::Status for a failed system call, naming what was done to which file and errno.
absl::Status ErrnoError(absl::string_view what, const std::string& path, int err);

}  // namespace confab::storage

#endif  // CONFAB_SERVER_STORAGE_DURABLE_FILE_H_
