// TxnLog owns the append-only transaction log of one member: a directory of segment files
// "log.<first zxid, 16 hex digits>", each a header followed by records
//   [u32 payload length][u32 crc32 of (zxid, length, payload)][i64 zxid][payload]
// in strictly increasing, contiguous zxid order (same epoch: counter + 1; a new epoch starts at
// counter 1). An append that breaks contiguity is refused loudly (ZOOKEEPER-4925: never accept a
// gap).
//
// Recovery on Open: a torn tail of the last segment (a short record, or a record whose checksum
// fails with nothing valid after it) is truncated to the last valid record and reported; zeros
// after a segment's last record are unused space (see preallocation below); a bad record anywhere
// else is refused with an error naming the file and the offset, never skipped.
//
// Not thread-safe: one owner (the LogWriter thread in the server).
// Durability: Append only buffers; Sync writes and fdatasyncs. A new segment is created with its
// directory fsynced before any record in it is reported durable.
//
// Preallocation (etcd and ZooKeeper do the same): the last segment's file is extended with
// fallocate ahead of the appends, preallocate_bytes at a time, so that most fdatasyncs flush only
// the records and not the file's size (measured on ext4: 115-123 us per append + fdatasync on a
// growing file, 82-87 us within reserved space). The reserved space reads as zeros: recovery
// takes an all-zero rest of a segment as unused space, not damage (records lost there would show
// as a gap before the next segment's first), and a segment is cut to its records, durably,
// before the next one is created.
#ifndef CONFAB_SERVER_STORAGE_TXN_LOG_H_
#define CONFAB_SERVER_STORAGE_TXN_LOG_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/types.h"

namespace confab::storage {

struct LogOptions {
  uint64_t segment_bytes_max = 64 << 20;  // roll to a new segment past this size
  uint32_t record_bytes_max = 16 << 20;   // a longer length field is corruption, not a record
  uint64_t preallocate_bytes = 4 << 20;   // reserved ahead of the appends; 0: the file grows as
                                          // written (where fallocate is not supported, too)
};

struct LogRecoveryReport {
  uint64_t records = 0;
  Zxid first_zxid;
  Zxid last_zxid;
  bool truncated_tail = false;
  std::string truncated_file;
  uint64_t truncated_at_offset = 0;
  uint64_t truncated_bytes = 0;
};

class TxnLog {
 public:
  using RecordVisitor = std::function<absl::Status(Zxid zxid, absl::string_view payload)>;

  // Opens (creating if needed) the log in `dir`, recovering as described above.
  static absl::StatusOr<std::unique_ptr<TxnLog>> Open(const std::string& dir,
                                                      const LogOptions& options,
                                                      LogRecoveryReport* report);
  ~TxnLog();

  // Buffers a record. INVALID_ARGUMENT (naming both zxids) if `zxid` does not follow last_zxid()
  // contiguously; the first record of an empty log may have any zxid with counter >= 1.
  // TOO_LARGE for a payload above record_bytes_max (recovery would take it for corruption).
  absl::Status Append(Zxid zxid, absl::string_view payload);
  // Writes what is buffered and fdatasyncs; after OK every appended record is durable. A failed
  // write or fdatasync leaves the files in an unknown state: from then on every change (Append,
  // Sync, TruncateAfter, PurgeThrough) returns that error until the log is reopened.
  absl::Status Sync();

  // Visits records with zxid > `after` in order. Reads what is durable or buffered.
  absl::Status ReadAfter(Zxid after, const RecordVisitor& visit) const;
  // Discards every record with zxid > `zxid` (ZAB TRUNC), durably; last_zxid() becomes the last
  // record kept, or zero (an empty log, as new) when `zxid` is below every record.
  absl::Status TruncateAfter(Zxid zxid);
  // Deletes segments holding only records <= `zxid` (covered by a snapshot), keeping the segment
  // that holds the record after `zxid`.
  absl::Status PurgeThrough(Zxid zxid);

  Zxid last_zxid() const { return last_zxid_; }  // zero when empty
  uint64_t sync_count() const { return sync_count_; }

 private:
  struct Segment {
    std::string path;
    Zxid first_zxid;
    Zxid last_zxid;      // of its last durable record
    uint64_t bytes = 0;  // durable length: the header and whole records
  };
  // Visits every record of a durable segment with the file offset just past it.
  using SegmentVisitor =
      std::function<absl::Status(Zxid zxid, absl::string_view payload, uint64_t end_offset)>;

  TxnLog(std::string dir, LogOptions options) : dir_(std::move(dir)), options_(options) {}
  absl::Status Recover(LogRecoveryReport* report);
  absl::Status OpenNewSegment(Zxid first);
  // Extends the last segment's file so that `end` bytes fit, with room to spare.
  void Reserve(uint64_t end);
  absl::Status ReadSegment(const Segment& segment, const SegmentVisitor& visit) const;
  absl::Status RemoveSegmentFile(const std::string& path);
  // Records the first failure to change the files: after it their state is unknown (a failed
  // fdatasync may have dropped the dirty pages), so every later change is refused with it.
  absl::Status Fail(absl::Status error);

  std::string dir_;
  LogOptions options_;
  std::vector<Segment> segments_;
  int fd_ = -1;             // the last segment, open for append
  uint64_t allocated_ = 0;  // the last segment's file size: its records, then reserved zeros
  std::string buffer_;
  Zxid buffer_first_zxid_;  // of the first record in buffer_
  Zxid last_zxid_;
  uint64_t sync_count_ = 0;
  absl::Status broken_;
};

}  // namespace confab::storage

#endif  // CONFAB_SERVER_STORAGE_TXN_LOG_H_
