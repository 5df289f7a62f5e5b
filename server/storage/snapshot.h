// Snapshot files: "snap/snapshot.<zxid, 16 hex digits>", the whole replicated state (sessions
// and nodes) exactly as of that zxid, with the tree digest at that zxid, written to a temporary
// file, fsynced, renamed and the directory fsynced, so a snapshot file that exists is complete.
// Format: header (magic "CFSNAP01", u32 version, i64 zxid, u64 digest), then tagged records
// (session, node), then a trailer (counts and a crc32 over everything before it).
#ifndef CONFAB_SERVER_STORAGE_SNAPSHOT_H_
#define CONFAB_SERVER_STORAGE_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/types.h"
#include "server/tree/data_tree.h"

namespace confab::storage {

class SnapshotWriter {
 public:
  static absl::StatusOr<std::unique_ptr<SnapshotWriter>> Create(const std::string& dir, Zxid zxid,
                                                                uint64_t digest);
  ~SnapshotWriter();  // removes the temporary file unless committed

  absl::Status AddSession(const tree::SessionInfo& session);
  absl::Status AddNode(absl::string_view path, const Stat& stat, absl::string_view data);
  // Writes the trailer, fsyncs, renames into place, fsyncs the directory. Returns the file path.
  absl::StatusOr<std::string> Commit();

 private:
  SnapshotWriter() = default;
  // Appends to the file through the buffer, adding to the running crc.
  absl::Status Write(absl::string_view bytes);
  absl::Status FlushBuffer();

  std::string dir_;
  std::string tmp_path_;
  std::string final_path_;
  int fd_ = -1;
  uint64_t offset_ = 0;  // bytes written to the file so far
  std::string buffer_;
  uint32_t crc_ = 0;
  uint64_t sessions_ = 0;
  uint64_t nodes_ = 0;
  bool committed_ = false;
  absl::Status error_;  // the first failure; the file is incomplete after it
};

struct SnapshotInfo {
  std::string path;
  Zxid zxid;
  uint64_t digest = 0;
  uint64_t nodes = 0;
};

// Lists snapshot files in `dir`, newest first; digest and nodes as their header and trailer say
// (zero when unreadable: only LoadLatestSnapshot verifies a file).
std::vector<SnapshotInfo> ListSnapshots(const std::string& dir);

// Loads the newest snapshot in `dir` that reads back whole into the fresh `tree` (LoadNode...
// FinishLoad). A newer snapshot that is corrupt is skipped with a warning naming the file; nullopt
// when there is no usable snapshot (or no `dir`). A snapshot is only skipped, never half-loaded:
// `tree` is only filled from a file whose structure and checksum were verified first; if such a
// file still does not load (FinishLoad refuses the image), that is an error and `tree` must be
// discarded. Removes the temporary files of snapshots whose writing a crash interrupted, so it
// must not run while a SnapshotWriter writes in `dir`.
absl::StatusOr<std::optional<SnapshotInfo>> LoadLatestSnapshot(const std::string& dir,
                                                               tree::DataTree* tree,
                                                               std::vector<std::string>* warnings);

// Loads exactly the snapshot file at `path` (the state at `zxid`, e.g. one received from a
// leader) into the fresh `tree`, verified whole first: DATA_LOSS naming the file when it is not
// (then `tree` is untouched). Leaves every other file in its directory alone, so it may run while
// a SnapshotWriter writes there.
absl::StatusOr<SnapshotInfo> LoadSnapshotFile(const std::string& path, Zxid zxid,
                                              tree::DataTree* tree);

// Where the snapshot at `zxid` lives in `dir` (a snapshot received from a leader is written there).
std::string SnapshotFilePath(const std::string& dir, Zxid zxid);

// Keeps the newest `keep` snapshots, deleting older ones. INVALID_ARGUMENT for keep == 0.
absl::Status PurgeSnapshots(const std::string& dir, size_t keep);

}  // namespace confab::storage

#endif  // CONFAB_SERVER_STORAGE_SNAPSHOT_H_
