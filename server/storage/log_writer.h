// LogWriter is the disk writer thread doing group commit: callers enqueue records from any thread;
// the thread takes everything queued (up to a bound), appends it to the TxnLog, makes it durable
// with one fdatasync, then reports the highest durable zxid. Many records per fsync is where the
// write throughput comes from.
#ifndef CONFAB_SERVER_STORAGE_LOG_WRITER_H_
#define CONFAB_SERVER_STORAGE_LOG_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/types.h"
#include "server/storage/txn_log.h"

namespace confab::storage {

struct LogWriterStats {
  uint64_t batches = 0;  // = fsyncs
  uint64_t records = 0;
  uint64_t largest_batch = 0;
};

class LogWriter {
 public:
  // Called on the thread that wrote (the writer's, or a WriteHereIfIdle caller's) after each
  // fsync with the highest durable zxid and the batch size; or with the error that made the log
  // unusable (the writer stops then: a member that cannot write its log must not acknowledge
  // anything more).
  using DurableCallback = std::function<void(Zxid durable, size_t batch_records)>;
  using FailureCallback = std::function<void(const absl::Status& error)>;

  static constexpr size_t kBatchRecordsMax = 4096;
  // Group commit under load: when the last batch had at least kLoadedBatchRecords, the writer
  // waits for kBatchTargetRecords before it syncs, in slices of kCommitDelaySlice while each
  // brings new records, for kCommitDelayMax at most (PostgreSQL's commit_delay, made adaptive: a
  // lone writer never waits, a moderate load barely).
  static constexpr size_t kLoadedBatchRecords = 8;
  static constexpr size_t kBatchTargetRecords = 64;
  static constexpr absl::Duration kCommitDelaySlice = absl::Microseconds(400);
  static constexpr absl::Duration kCommitDelayMax = absl::Microseconds(1000);
  static constexpr size_t kBatchBytesMax = 16 << 20;

  LogWriter(std::unique_ptr<TxnLog> log, DurableCallback on_durable, FailureCallback on_failure);
  ~LogWriter();  // Stop()s

  // Thread-safe. Records must be enqueued in zxid order (the caller assigns zxids under the same
  // lock it enqueues with).
  void Enqueue(Zxid zxid, std::string payload);
  // The same for several records at once, under one lock: the writer thread is woken once and
  // takes them into the same batch (enqueued one by one, the first would wake it and be made
  // durable alone while the others wait for the next fsync).
  void Enqueue(std::vector<std::pair<Zxid, std::string>> records);
  // Writes `records` and makes them durable on the calling thread, when the writer thread is
  // idle (nothing queued or being written, no task) and the last batch was small: a lone write
  // then skips two thread hops (to the writer and back). Reports through the callbacks, on this
  // thread, before it returns true. Returns false, leaving `records` as they were, when the
  // caller should Enqueue them instead (busy, under load, too large, stopping or failed).
  bool WriteHereIfIdle(std::vector<std::pair<Zxid, std::string>>& records);
  static constexpr size_t kWriteHereRecordsMax = 16;
  // Blocks until everything enqueued so far is durable (or the writer failed).
  void Flush();
  // Flushes, then ends the thread. Idempotent.
  void Stop();
  // Thread-safe. Has the writer thread delete the log segments a snapshot covers (TxnLog::
  // PurgeThrough) between two batches, and waits for it. FAILED_PRECONDITION once the writer is
  // stopping or failed.
  absl::Status PurgeThrough(Zxid zxid);
  // Thread-safe. Discards every record after `zxid` (ZAB TRUNC; zero empties the log, as before
  // installing a snapshot), once everything enqueued before is written, and waits for it. Later
  // enqueues continue the truncated log.
  absl::Status TruncateAfter(Zxid zxid);
  // Thread-safe. Up to `max_records` records with zxid > `after`, read on the writer thread once
  // everything enqueued before the call is written (so it sees every record enqueued so far).
  absl::StatusOr<std::vector<std::pair<Zxid, std::string>>> ReadAfter(Zxid after,
                                                                      size_t max_records);

  LogWriterStats stats() const;
  // For recovery and catch-up readers; only safe while the thread is stopped or from its callbacks.
  TxnLog* log() { return log_.get(); }

 private:
  void Run();
  void EnqueueLocked(Zxid zxid, std::string payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the next batch (everything queued, within the bounds) out of the queue.
  void TakeBatchLocked(std::vector<std::pair<Zxid, std::string>>* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends and syncs a batch taken under busy_, then reports it; false when the log failed.
  bool WriteBatch(const std::vector<std::pair<Zxid, std::string>>& batch);

  std::unique_ptr<TxnLog> log_;
  DurableCallback on_durable_;
  FailureCallback on_failure_;

  mutable absl::Mutex mu_;
  std::vector<std::pair<Zxid, std::string>> queue_ ABSL_GUARDED_BY(mu_);
  size_t queue_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Zxid enqueued_ ABSL_GUARDED_BY(mu_);
  Zxid durable_ ABSL_GUARDED_BY(mu_);
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  LogWriterStats stats_ ABSL_GUARDED_BY(mu_);
  size_t last_batch_records_ ABSL_GUARDED_BY(mu_) = 0;
  // A thread (the writer's, or a caller of WriteHereIfIdle) is using log_: one at a time.
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  // Work on the log between batches, in request order, each after the records enqueued before
  // it are written (`after`): the requester waits on `done`.
  struct Task {
    std::function<absl::Status(TxnLog& log)> run;
    Zxid after;
    bool done = false;
    absl::Status result;
  };
  absl::Status RunOnWriter(std::function<absl::Status(TxnLog& log)> run, absl::string_view what);
  std::deque<Task*> tasks_ ABSL_GUARDED_BY(mu_);
  absl::Mutex join_mu_;  // serializes Stop()s: one joins, the others wait for it
  std::thread thread_;
};

}  // namespace confab::storage

#endif  // CONFAB_SERVER_STORAGE_LOG_WRITER_H_
