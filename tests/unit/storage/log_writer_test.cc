#include "server/storage/log_writer.h"

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/storage/test_util.h"

namespace confab::storage {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

std::unique_ptr<TxnLog> OpenLog(const std::string& dir, const LogOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir, options, nullptr);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

// What the writer thread reported, read by the test once the writer is flushed or stopped.
struct Reports {
  absl::Mutex mu;
  std::vector<std::pair<Zxid, size_t>> durable ABSL_GUARDED_BY(mu);
  std::vector<absl::Status> failures ABSL_GUARDED_BY(mu);
};

std::unique_ptr<LogWriter> MakeWriter(std::unique_ptr<TxnLog> log, Reports* reports) {
  return std::make_unique<LogWriter>(
      std::move(log),
      [reports](Zxid durable, size_t batch) {
        absl::MutexLock lock(&reports->mu);
        reports->durable.emplace_back(durable, batch);
      },
      [reports](const absl::Status& error) {
        absl::MutexLock lock(&reports->mu);
        reports->failures.push_back(error);
      });
}

TEST(LogWriterTest, ConcurrentEnqueuesAreDurableInOrderAndBatched) {
  constexpr int kThreads = 8;
  constexpr uint32_t kPerThread = 2000;
  TempDir dir;
  LogOptions options;
  options.segment_bytes_max = 64 << 10;
  Reports reports;
  std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(dir.path(), options), &reports);

  // The caller's proposal lock: zxids are assigned and enqueued under it.
  absl::Mutex propose_mu;
  uint32_t next_counter = 1;
  absl::flat_hash_map<uint32_t, std::string> expected;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t i = 0; i < kPerThread; ++i) {
        std::string payload = absl::StrCat("thread ", t, " record ", i);
        absl::MutexLock lock(&propose_mu);
        const Zxid zxid(1, next_counter++);
        expected[zxid.counter()] = payload;
        writer->Enqueue(zxid, std::move(payload));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  writer->Flush();
  const LogWriterStats stats = writer->stats();
  writer->Stop();
  writer->Stop();  // idempotent

  constexpr uint32_t kTotal = kThreads * kPerThread;
  EXPECT_EQ(stats.records, kTotal);
  EXPECT_LT(stats.batches, kTotal) << "group commit should put many records in one fsync";
  EXPECT_GT(stats.largest_batch, 1u);
  EXPECT_LE(stats.largest_batch, LogWriter::kBatchRecordsMax);
  EXPECT_EQ(writer->log()->sync_count(), stats.batches);
  {
    absl::MutexLock lock(&reports.mu);
    EXPECT_TRUE(reports.failures.empty());
    ASSERT_EQ(reports.durable.size(), stats.batches);
    size_t total = 0;
    Zxid previous;
    for (const auto& [durable, batch] : reports.durable) {
      EXPECT_GT(durable, previous);
      EXPECT_EQ(durable.counter(), previous.counter() + batch);
      previous = durable;
      total += batch;
    }
    EXPECT_EQ(total, kTotal);
    EXPECT_EQ(previous, Zxid(1, kTotal));
  }

  // Read back from disk, not from the writer's memory.
  writer.reset();
  std::unique_ptr<TxnLog> reopened = OpenLog(dir.path(), options);
  uint32_t counter = 0;
  absl::Status s = reopened->ReadAfter(Zxid(), [&](Zxid zxid, absl::string_view payload) {
    ++counter;
    EXPECT_EQ(zxid, Zxid(1, counter));
    EXPECT_EQ(payload, expected[counter]);
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(counter, kTotal);
}

TEST(LogWriterTest, FlushReturnsOnceEverythingEnqueuedIsDurable) {
  TempDir dir;
  Reports reports;
  std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(dir.path()), &reports);
  writer->Flush();  // nothing enqueued: returns at once

  for (uint32_t c = 1; c <= 100; ++c) writer->Enqueue(Zxid(1, c), absl::StrCat("record ", c));
  writer->Flush();
  EXPECT_EQ(writer->stats().records, 100u);
  // Durable means on disk: a second reader of the files sees every record.
  std::unique_ptr<TxnLog> reader = OpenLog(dir.path());
  EXPECT_EQ(reader->last_zxid(), Zxid(1, 100));

  writer->Stop();
  writer->Enqueue(Zxid(1, 101), "after stop: dropped, never reported durable");
  writer->Flush();
  EXPECT_EQ(writer->stats().records, 100u);
  EXPECT_EQ(writer->log()->last_zxid(), Zxid(1, 100));
  absl::MutexLock lock(&reports.mu);
  EXPECT_EQ(reports.durable.back().first, Zxid(1, 100));
}

// Reads the log in `dir` back from disk: records 1..`count` of epoch 1, each with payload "r<c>".
void ExpectLogHolds(const std::string& dir, uint32_t count) {
  std::unique_ptr<TxnLog> reopened = OpenLog(dir);
  uint32_t read = 0;
  absl::Status s = reopened->ReadAfter(Zxid(), [&](Zxid zxid, absl::string_view payload) {
    ++read;
    EXPECT_EQ(zxid, Zxid(1, read));
    EXPECT_EQ(payload, absl::StrCat("r", read));
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(read, count);
}

// A small batch on an idle writer is written by the caller, reported on the caller's thread
// before the call returns; mixed with enqueued batches, every record is durable once, in order.
TEST(LogWriterTest, WriteHereIfIdleWritesOnTheCallersThreadAndKeepsOrder) {
  TempDir dir;
  absl::Mutex mu;
  std::vector<std::pair<Zxid, std::thread::id>> reported;
  auto writer = std::make_unique<LogWriter>(
      OpenLog(dir.path()),
      [&](Zxid durable, size_t) {
        absl::MutexLock lock(&mu);
        reported.emplace_back(durable, std::this_thread::get_id());
      },
      [](const absl::Status& error) { ADD_FAILURE() << error; });
  auto records = [](uint32_t from, uint32_t to) {
    std::vector<std::pair<Zxid, std::string>> batch;
    for (uint32_t c = from; c <= to; ++c) batch.emplace_back(Zxid(1, c), absl::StrCat("r", c));
    return batch;
  };

  std::vector<std::pair<Zxid, std::string>> lone = records(1, 2);
  ASSERT_TRUE(writer->WriteHereIfIdle(lone));
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(reported.size(), 1u);
    EXPECT_EQ(reported[0].first, Zxid(1, 2));
    EXPECT_EQ(reported[0].second, std::this_thread::get_id());
  }
  EXPECT_EQ(writer->stats().records, 2u);

  // Too many records at once: the caller enqueues them instead, untouched.
  std::vector<std::pair<Zxid, std::string>> many = records(3, 3 + LogWriter::kWriteHereRecordsMax);
  EXPECT_FALSE(writer->WriteHereIfIdle(many));
  EXPECT_EQ(many, records(3, 3 + LogWriter::kWriteHereRecordsMax));
  writer->Enqueue(std::move(many));
  writer->Flush();
  // That batch showed load: the next small one goes to the writer thread as well.
  const uint32_t next = 4 + LogWriter::kWriteHereRecordsMax;
  std::vector<std::pair<Zxid, std::string>> after_load = records(next, next);
  EXPECT_FALSE(writer->WriteHereIfIdle(after_load));
  writer->Enqueue(std::move(after_load));
  writer->Flush();
  // Small batches again: back on the caller's thread.
  std::vector<std::pair<Zxid, std::string>> small = records(next + 1, next + 1);
  EXPECT_TRUE(writer->WriteHereIfIdle(small));
  writer->Stop();
  ExpectLogHolds(dir.path(), next + 1);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(reported.back().first, Zxid(1, next + 1));
  EXPECT_EQ(reported.back().second, std::this_thread::get_id());
  for (size_t i = 1; i < reported.size(); ++i) EXPECT_LT(reported[i - 1].first, reported[i].first);
}

// One producer alternating between the two ways while the writer thread is still busy with what
// was enqueued: nothing is written twice, out of order, or lost.
TEST(LogWriterTest, WriteHereIfIdleAndEnqueueInterleaved) {
  TempDir dir;
  Reports reports;
  std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(dir.path()), &reports);
  uint32_t counter = 0;
  int written_here = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<std::pair<Zxid, std::string>> batch;
    const int size = round % 3 == 0 ? 1 : round % 3 == 1 ? 3 : 12;
    for (int i = 0; i < size; ++i) {
      ++counter;
      batch.emplace_back(Zxid(1, counter), absl::StrCat("r", counter));
    }
    if (writer->WriteHereIfIdle(batch)) {
      ++written_here;
    } else {
      writer->Enqueue(std::move(batch));
    }
  }
  writer->Flush();
  writer->Stop();
  EXPECT_GT(written_here, 0);
  ExpectLogHolds(dir.path(), counter);
  absl::MutexLock lock(&reports.mu);
  EXPECT_TRUE(reports.failures.empty());
  for (size_t i = 1; i < reports.durable.size(); ++i) {
    EXPECT_LT(reports.durable[i - 1].first, reports.durable[i].first);
  }
  EXPECT_EQ(reports.durable.back().first, Zxid(1, counter));
}

TEST(LogWriterTest, ContinuesAnExistingLog) {
  TempDir dir;
  {
    std::unique_ptr<TxnLog> log = OpenLog(dir.path());
    ASSERT_TRUE(log->Append(Zxid(1, 1), "one").ok());
    ASSERT_TRUE(log->Sync().ok());
  }
  Reports reports;
  {
    std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(dir.path()), &reports);
    writer->Enqueue(Zxid(2, 1), "new epoch");
  }  // the destructor stops, and stopping flushes
  absl::MutexLock lock(&reports.mu);
  ASSERT_FALSE(reports.durable.empty());
  EXPECT_EQ(reports.durable.back().first, Zxid(2, 1));
  EXPECT_EQ(OpenLog(dir.path())->last_zxid(), Zxid(2, 1));
}

TEST(LogWriterTest, PurgeThroughRunsOnTheWriterThread) {
  TempDir dir;
  LogOptions options;
  options.segment_bytes_max = 256;
  Reports reports;
  std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(dir.path(), options), &reports);
  for (uint32_t c = 1; c <= 60; ++c) {
    writer->Enqueue(Zxid(1, c), std::string(50, 'x'));
    if (c % 4 == 0) writer->Flush();  // one batch of four records per segment
  }
  writer->Flush();
  EXPECT_EQ(testing::ListDir(dir.path()).size(), 15u);
  EXPECT_TRUE(writer->PurgeThrough(Zxid(1, 30)).ok());
  writer->Enqueue(Zxid(1, 61), "after the purge");
  writer->Stop();
  EXPECT_TRUE(absl::IsFailedPrecondition(writer->PurgeThrough(Zxid(1, 60))));

  LogRecoveryReport report;
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), options, &report);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(report.first_zxid, Zxid(1, 29));  // the segment holding 31 starts at 29
  EXPECT_EQ(report.last_zxid, Zxid(1, 61));
  EXPECT_EQ(testing::ListDir(dir.path()).size(), 9u);
}

TEST(LogWriterTest, FailedSyncIsReportedOnceAndStopsTheWriter) {
  TempDir dir;
  LogOptions options;
  options.segment_bytes_max = 1;  // every batch rolls to a new segment, which must be created
  const std::string log_dir = dir.path() + "/log";
  Reports reports;
  std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(log_dir, options), &reports);
  writer->Enqueue(Zxid(1, 1), "durable");
  writer->Flush();

  std::filesystem::remove_all(log_dir);  // the next segment cannot be created
  writer->Enqueue(Zxid(1, 2), "lost");
  writer->Flush();  // returns: the writer failed
  writer->Enqueue(Zxid(1, 3), "dropped");
  writer->Flush();
  writer->Stop();

  EXPECT_EQ(writer->stats().records, 1u);
  absl::MutexLock lock(&reports.mu);
  ASSERT_EQ(reports.failures.size(), 1u);
  EXPECT_THAT(std::string(reports.failures[0].message()), HasSubstr(log_dir));
  ASSERT_EQ(reports.durable.size(), 1u);
  EXPECT_EQ(reports.durable[0].first, Zxid(1, 1));
}

TEST(LogWriterTest, ReadAfterSeesEveryRecordEnqueuedBeforeIt) {
  TempDir dir;
  Reports reports;
  std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(dir.path()), &reports);
  for (uint32_t c = 1; c <= 20; ++c) writer->Enqueue(Zxid(3, c), absl::StrCat("r", c));
  // No Flush: the read waits for the writer to reach what was enqueued.
  auto records = writer->ReadAfter(Zxid(3, 15), 3);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0], std::make_pair(Zxid(3, 16), std::string("r16")));
  EXPECT_EQ((*records)[2], std::make_pair(Zxid(3, 18), std::string("r18")));
  auto tail = writer->ReadAfter(Zxid(3, 18), 100);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->size(), 2u);
}

TEST(LogWriterTest, TruncateAfterDiscardsTheTailAndLaterRecordsContinueIt) {
  TempDir dir;
  Reports reports;
  std::unique_ptr<LogWriter> writer = MakeWriter(OpenLog(dir.path()), &reports);
  for (uint32_t c = 1; c <= 10; ++c) writer->Enqueue(Zxid(1, c), "old epoch");
  ASSERT_TRUE(writer->TruncateAfter(Zxid(1, 6)).ok());
  // A new epoch continues after the kept prefix (ZAB TRUNC, then DIFF).
  writer->Enqueue(Zxid(2, 1), "new epoch");
  writer->Flush();
  auto records = writer->ReadAfter(Zxid(1, 5), 10);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].first, Zxid(1, 6));
  EXPECT_EQ((*records)[1].first, Zxid(2, 1));
  // Truncating to zero empties the log (before a snapshot is installed): any zxid may follow.
  ASSERT_TRUE(writer->TruncateAfter(Zxid()).ok());
  writer->Enqueue(Zxid(5, 7), "after a snapshot at 5/6");
  writer->Stop();
  {
    absl::MutexLock lock(&reports.mu);
    EXPECT_TRUE(reports.failures.empty());
    EXPECT_EQ(reports.durable.back().first, Zxid(5, 7));
  }
  LogRecoveryReport report;
  auto log = TxnLog::Open(dir.path(), {}, &report);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(report.first_zxid, Zxid(5, 7));
  EXPECT_EQ(report.last_zxid, Zxid(5, 7));
}

}  // namespace
}  // namespace confab::storage
