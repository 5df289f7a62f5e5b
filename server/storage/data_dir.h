// DataDir owns a member's data directory: an exclusive lock so that only one confabd uses it, the
// layout (log/, snap/), and the durable epoch records ZAB needs (acceptedEpoch, currentEpoch),
// each in its own file, written durably before it is acted on (ZOOKEEPER-582: never derive an
// epoch from log file names).
#ifndef CONFAB_SERVER_STORAGE_DATA_DIR_H_
#define CONFAB_SERVER_STORAGE_DATA_DIR_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/types.h"

namespace confab::storage {

class DataDir {
 public:
  // Creates `path` (and log/, snap/) if missing and takes an exclusive lock on `path`/LOCK.
  // FAILED_PRECONDITION naming the directory (and the pid written in LOCK) when another process
  // holds it; other errors name the file and the system error.
  static absl::StatusOr<std::unique_ptr<DataDir>> Open(const std::string& path);
  ~DataDir();  // releases the lock

  const std::string& path() const { return path_; }
  std::string log_dir() const { return path_ + "/log"; }
  std::string snap_dir() const { return path_ + "/snap"; }

  // The epoch records: "accepted_epoch" and "current_epoch". A missing file reads as 0; a
  // malformed one is an error naming the file.
  absl::StatusOr<Epoch> ReadEpoch(absl::string_view name) const;
  absl::Status WriteEpoch(absl::string_view name, Epoch epoch);

 private:
  DataDir(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}
  std::string path_;
  int lock_fd_;
};

}  // namespace confab::storage

#endif  // CONFAB_SERVER_STORAGE_DATA_DIR_H_
