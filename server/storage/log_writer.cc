#include "server/storage/log_writer.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/check.h"

// A broken invariant is a bug: crash with the values that broke it.

namespace confab::storage {

LogWriter::LogWriter(std::unique_ptr<TxnLog> log, DurableCallback on_durable,
                     FailureCallback on_failure)
    : log_(std::move(log)),
      on_durable_(std::move(on_durable)),
      on_failure_(std::move(on_failure)),
      enqueued_(log_->last_zxid()),
      durable_(log_->last_zxid()) {
  thread_ = std::thread([this] { Run(); });
}

LogWriter::~LogWriter() { Stop(); }

void LogWriter::Enqueue(Zxid zxid, std::string payload) {
  absl::MutexLock lock(&mu_);
  EnqueueLocked(zxid, std::move(payload));
}

void LogWriter::Enqueue(std::vector<std::pair<Zxid, std::string>> records) {
  absl::MutexLock lock(&mu_);
  for (auto& [zxid, payload] : records) EnqueueLocked(zxid, std::move(payload));
}

void LogWriter::EnqueueLocked(Zxid zxid, std::string payload) {
  // Nothing enqueued now can be reported durable: the record is dropped, never acknowledged.
  if (failed_ || stopping_) return;
  CONFAB_CHECK(zxid > enqueued_, "enqueued zxid ", zxid.ToString(), " after ",
               enqueued_.ToString());
  queue_bytes_ += payload.size();
  queue_.emplace_back(zxid, std::move(payload));
  enqueued_ = zxid;
}

bool LogWriter::WriteHereIfIdle(std::vector<std::pair<Zxid, std::string>>& records) {
  if (records.empty() || records.size() > kWriteHereRecordsMax) return false;
  {
    absl::MutexLock lock(&mu_);
    if (busy_ || failed_ || stopping_ || !queue_.empty() || !tasks_.empty() ||
        last_batch_records_ >= kLoadedBatchRecords) {
      return false;
    }
    for (const auto& [zxid, payload] : records) {
      CONFAB_CHECK(zxid > enqueued_, "enqueued zxid ", zxid.ToString(), " after ",
                   enqueued_.ToString());
      enqueued_ = zxid;
    }
    busy_ = true;
  }
  WriteBatch(records);
  return true;
}

void LogWriter::Flush() {
  absl::MutexLock lock(&mu_);
  const Zxid target = enqueued_;
  auto durable_or_failed = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return failed_ || durable_ >= target;
  };
  mu_.Await(absl::Condition(&durable_or_failed));
}

void LogWriter::Stop() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;  // the thread drains the queue before it ends
  }
  if (thread_.joinable()) thread_.join();
}

LogWriterStats LogWriter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status LogWriter::RunOnWriter(std::function<absl::Status(TxnLog& log)> run,
                                    absl::string_view what) {
  Task task{std::move(run), Zxid(), false, absl::OkStatus()};
  absl::MutexLock lock(&mu_);
  if (failed_ || stopping_) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " not done: the log writer has ", failed_ ? "failed" : "stopped"));
  }
  task.after = enqueued_;
  tasks_.push_back(&task);
  auto done = [this, &task]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return task.done || failed_; };
  mu_.Await(absl::Condition(&done));
  if (!task.done) {
    // The thread failed before it got to the task; it no longer looks at the queue.
    tasks_.erase(std::find(tasks_.begin(), tasks_.end(), &task));
    return absl::FailedPreconditionError(
        absl::StrCat(what, " not done: the log writer has failed"));
  }
  return task.result;
}

absl::Status LogWriter::PurgeThrough(Zxid zxid) {
  // Only whole old segments, never the one being appended: a failure is not one of the log.
  return RunOnWriter([zxid](TxnLog& log) { return log.PurgeThrough(zxid); },
                     absl::StrCat("log purge through zxid ", zxid.ToString()));
}

absl::Status LogWriter::TruncateAfter(Zxid zxid) {
  return RunOnWriter(
      [this, zxid](TxnLog& log) {
        absl::Status status = log.TruncateAfter(zxid);
        absl::MutexLock lock(&mu_);
        if (!status.ok()) {
          failed_ = true;
          return status;
        }
        // The queue is empty here (every record enqueued before the request is written and
        // its requester enqueues nothing while it waits); later records continue the new end.
        enqueued_ = std::min(enqueued_, log.last_zxid());
        durable_ = std::min(durable_, log.last_zxid());
        return status;
      },
      absl::StrCat("log truncation after zxid ", zxid.ToString()));
}

absl::StatusOr<std::vector<std::pair<Zxid, std::string>>> LogWriter::ReadAfter(Zxid after,
                                                                               size_t max_records) {
  std::vector<std::pair<Zxid, std::string>> records;
  absl::Status status = RunOnWriter(
      [&](TxnLog& log) {
        absl::Status read = log.ReadAfter(after, [&](Zxid zxid, absl::string_view payload) {
          if (records.size() >= max_records) return absl::CancelledError("enough");
          records.emplace_back(zxid, std::string(payload));
          return absl::OkStatus();
        });
        return absl::IsCancelled(read) ? absl::OkStatus() : read;
      },
      absl::StrCat("log read after zxid ", after.ToString()));
  if (!status.ok()) return status;
  return records;
}

void LogWriter::Run() {
  pthread_setname_np(pthread_self(), "confab-log");
  std::vector<std::pair<Zxid, std::string>> batch;
  for (;;) {
    batch.clear();
    Task* task = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto work_or_stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !busy_ && (!queue_.empty() || !tasks_.empty() || stopping_);
      };
      mu_.Await(absl::Condition(&work_or_stop));
      if (tasks_.empty() && !stopping_ && last_batch_records_ >= kLoadedBatchRecords) {
        // Under load (the last batch was not small), wait a moment for more while more keeps
        // coming: one fdatasync, and one round of wake-ups down the pipeline, for many more
        // writes. A lone writer (small batches) never waits, and a wait ends as soon as a slice
        // passes without a new record.
        auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return queue_.size() >= kBatchTargetRecords || !tasks_.empty() || stopping_;
        };
        const absl::Time deadline = absl::Now() + kCommitDelayMax;
        while (!full() && absl::Now() < deadline) {
          const size_t before = queue_.size();
          mu_.AwaitWithTimeout(absl::Condition(&full), kCommitDelaySlice);
          if (queue_.size() == before) break;
        }
      }
      if (!tasks_.empty() && tasks_.front()->after <= durable_) {
        task = tasks_.front();
        tasks_.pop_front();
      } else if (queue_.empty()) {
        return;  // stopping, and everything enqueued is durable
      }
      busy_ = true;
      if (task == nullptr) TakeBatchLocked(&batch);
    }

    if (task != nullptr) {
      absl::Status status = task->run(*log_);
      bool failed;
      {
        absl::MutexLock lock(&mu_);
        busy_ = false;
        task->result = status;
        task->done = true;  // the requester may return (and the task go) from here on
        failed = failed_;
        if (failed) {
          queue_.clear();
          queue_bytes_ = 0;
        }
      }
      if (failed) {
        if (on_failure_) on_failure_(status);
        return;
      }
      continue;
    }

    if (!WriteBatch(batch)) return;
  }
}

void LogWriter::TakeBatchLocked(std::vector<std::pair<Zxid, std::string>>* batch) {
  if (queue_.size() <= kBatchRecordsMax && queue_bytes_ <= kBatchBytesMax) {
    batch->swap(queue_);
    queue_bytes_ = 0;
    return;
  }
  // At least one record, however large; then up to the bounds.
  size_t count = 0;
  size_t bytes = 0;
  while (count < queue_.size() && count < kBatchRecordsMax &&
         (count == 0 || bytes + queue_[count].second.size() <= kBatchBytesMax)) {
    bytes += queue_[count].second.size();
    ++count;
  }
  batch->assign(std::make_move_iterator(queue_.begin()),
                std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(count)));
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(count));
  queue_bytes_ -= bytes;
}

bool LogWriter::WriteBatch(const std::vector<std::pair<Zxid, std::string>>& batch) {
  absl::Status status;
  for (const auto& [zxid, payload] : batch) {
    status = log_->Append(zxid, payload);
    if (!status.ok()) break;
  }
  if (status.ok()) status = log_->Sync();
  if (!status.ok()) {
    {
      absl::MutexLock lock(&mu_);
      busy_ = false;
      failed_ = true;
      queue_.clear();
      queue_bytes_ = 0;
    }
    if (on_failure_) on_failure_(status);
    return false;
  }

  const Zxid last = batch.back().first;
  {
    absl::MutexLock lock(&mu_);
    busy_ = false;
    last_batch_records_ = batch.size();
    CONFAB_CHECK(last > durable_, "durable zxid ", last.ToString(), " after ", durable_.ToString());
    durable_ = last;
    ++stats_.batches;
    stats_.records += batch.size();
    stats_.largest_batch = std::max<uint64_t>(stats_.largest_batch, batch.size());
  }
  if (on_durable_) on_durable_(last, batch.size());
  return true;
}

}  // namespace confab::storage
