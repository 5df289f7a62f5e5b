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
  // Nothing enqueued now can be reported durable: the record is dropped, never acknowledged.
  if (failed_ || stopping_) return;
  CONFAB_CHECK(zxid > enqueued_, "enqueued zxid ", zxid.ToString(), " after ",
               enqueued_.ToString());
  queue_bytes_ += payload.size();
  queue_.emplace_back(zxid, std::move(payload));
  enqueued_ = zxid;
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

absl::Status LogWriter::PurgeThrough(Zxid zxid) {
  absl::MutexLock lock(&mu_);
  if (failed_ || stopping_) {
    return absl::FailedPreconditionError(absl::StrCat("log purge through zxid ", zxid.ToString(),
                                                      " not done: the log writer has ",
                                                      failed_ ? "failed" : "stopped"));
  }
  purge_request_ = std::max(purge_request_.value_or(zxid), zxid);
  const uint64_t ticket = ++purges_requested_;
  auto done = [this, ticket]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return purges_done_ >= ticket || failed_; };
  mu_.Await(absl::Condition(&done));
  if (purges_done_ < ticket) {
    return absl::FailedPreconditionError(absl::StrCat("log purge through zxid ", zxid.ToString(),
                                                      " not done: the log writer has failed"));
  }
  return purge_result_;
}

void LogWriter::Run() {
  pthread_setname_np(pthread_self(), "confab-log");
  std::vector<std::pair<Zxid, std::string>> batch;
  for (;;) {
    batch.clear();
    std::optional<Zxid> purge;
    uint64_t purges_taken = 0;
    {
      absl::MutexLock lock(&mu_);
      auto work_or_stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || purge_request_.has_value() || stopping_;
      };
      mu_.Await(absl::Condition(&work_or_stop));
      if (purge_request_.has_value()) {
        purge = std::exchange(purge_request_, std::nullopt);
        purges_taken = purges_requested_;
      } else if (queue_.empty()) {
        return;  // stopping, and everything enqueued is durable
      } else if (queue_.size() <= kBatchRecordsMax && queue_bytes_ <= kBatchBytesMax) {
        batch.swap(queue_);
        queue_bytes_ = 0;
      } else {
        // At least one record, however large; then up to the bounds.
        size_t count = 0;
        size_t bytes = 0;
        while (count < queue_.size() && count < kBatchRecordsMax &&
               (count == 0 || bytes + queue_[count].second.size() <= kBatchBytesMax)) {
          bytes += queue_[count].second.size();
          ++count;
        }
        batch.assign(std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(count)));
        queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(count));
        queue_bytes_ -= bytes;
      }
    }

    if (purge.has_value()) {
      // Only whole old segments, never the one being appended: not a failure of the log.
      absl::Status status = log_->PurgeThrough(*purge);
      absl::MutexLock lock(&mu_);
      purge_result_ = std::move(status);
      purges_done_ = purges_taken;
      continue;
    }

    absl::Status status;
    for (const auto& [zxid, payload] : batch) {
      status = log_->Append(zxid, payload);
      if (!status.ok()) break;
    }
    if (status.ok()) status = log_->Sync();
    if (!status.ok()) {
      {
        absl::MutexLock lock(&mu_);
        failed_ = true;
        queue_.clear();
        queue_bytes_ = 0;
      }
      if (on_failure_) on_failure_(status);
      return;
    }

    const Zxid last = batch.back().first;
    {
      absl::MutexLock lock(&mu_);
      CONFAB_CHECK(last > durable_, "durable zxid ", last.ToString(), " after ",
                   durable_.ToString());
      durable_ = last;
      ++stats_.batches;
      stats_.records += batch.size();
      stats_.largest_batch = std::max<uint64_t>(stats_.largest_batch, batch.size());
    }
    if (on_durable_) on_durable_(last, batch.size());
  }
}

}  // namespace confab::storage
