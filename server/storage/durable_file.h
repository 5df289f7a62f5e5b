// The few file-system moves that durability rests on, done right once: a file replaced
// atomically and durably (write a temporary, fsync it, rename, fsync the directory), and a
// directory fsync after every create or rename in it (etcd #6368: a rename is durable only after
// its directory is synced).
#ifndef CONFAB_SERVER_STORAGE_DURABLE_FILE_H_
#define CONFAB_SERVER_STORAGE_DURABLE_FILE_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/types.h"

namespace confab::storage {

absl::Status SyncDirectory(const std::string& dir);
// Creates the directory `dir` if it is missing, then syncs its parent so that it stays created.
absl::Status MakeDirectoryDurably(const std::string& dir);
// Replaces `path` with `contents` so that after a crash it holds either the old or the new
// contents, and the new ones once this returns OK.
absl::Status WriteFileDurably(const std::string& path, absl::string_view contents);
// NOT_FOUND if the file does not exist; other errors name the file.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
// An absl::Status for a failed system call, naming what was done to which file and errno.
absl::Status ErrnoError(absl::string_view what, const std::string& path, int err);

// Files named "<prefix><zxid as 16 lowercase hex digits><suffix>" (log segments, snapshots).
std::string ZxidFileName(absl::string_view prefix, Zxid zxid, absl::string_view suffix = "");
// The paths of the files in `dir` named so, by zxid ascending; other names are ignored.
absl::StatusOr<std::vector<std::pair<Zxid, std::string>>> ListZxidFiles(
    const std::string& dir, absl::string_view prefix, absl::string_view suffix = "");

// Writes all of `bytes` at `offset` of `fd` (the file `path`, for messages), retrying on EINTR
// and short writes.
absl::Status WriteAt(int fd, absl::string_view bytes, uint64_t offset, const std::string& path);
// Reads up to `size` bytes at `offset` into `out`, retrying on EINTR and short reads; fewer only at
// end of file. Returns the number of bytes read.
absl::StatusOr<size_t> ReadAt(int fd, char* out, size_t size, uint64_t offset,
                              const std::string& path);

// Integers in the log and snapshot formats are fixed-width little-endian.
static_assert(std::endian::native == std::endian::little, "on-disk formats assume little-endian");
template <typename T>
void AppendFixed(std::string* out, T value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(value));
}
template <typename T>
T DecodeFixed(const char* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

}  // namespace confab::storage

#endif  // CONFAB_SERVER_STORAGE_DURABLE_FILE_H_
