#include "server/storage/txn_log.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/storage/durable_file.h"
#include "tests/unit/storage/test_util.h"

namespace confab::storage {
namespace {

using testing::AppendToFile;
using testing::FileSize;
using testing::FlipByte;
using ::testing::HasSubstr;
using testing::ListDir;
using testing::TempDir;
using testing::TruncateFile;
using testing::WriteInFile;

constexpr size_t kPayloadBytes = 40;
constexpr uint64_t kHeaderBytes = 16;
constexpr uint64_t kRecordBytes = 16 + kPayloadBytes;

std::string Payload(Zxid zxid, absl::string_view tag = "") {
  std::string payload = absl::StrCat("payload ", zxid.ToString(), " ", tag);
  payload.resize(kPayloadBytes, '.');
  return payload;
}

// Offset of the record with `counter` in a segment whose first record has `first_counter`.
uint64_t RecordOffset(uint32_t first_counter, uint32_t counter) {
  return kHeaderBytes + (counter - first_counter) * kRecordBytes;
}

std::unique_ptr<TxnLog> OpenLog(const std::string& dir, const LogOptions& options = {},
                                LogRecoveryReport* report = nullptr) {
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir, options, report);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

void AppendRange(TxnLog* log, Epoch epoch, uint32_t from, uint32_t to, uint32_t sync_every) {
  for (uint32_t c = from; c <= to; ++c) {
    ASSERT_TRUE(log->Append(Zxid(epoch, c), Payload(Zxid(epoch, c))).ok()) << c;
    if ((c - from + 1) % sync_every == 0) {
      ASSERT_TRUE(log->Sync().ok());
    }
  }
  ASSERT_TRUE(log->Sync().ok());
}

std::vector<std::pair<Zxid, std::string>> ReadAll(const TxnLog& log, Zxid after = Zxid()) {
  std::vector<std::pair<Zxid, std::string>> records;
  absl::Status s = log.ReadAfter(after, [&](Zxid zxid, absl::string_view payload) {
    records.emplace_back(zxid, std::string(payload));
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  return records;
}

// Checks that `log` holds exactly epoch `epoch` counters [from, to] with the standard payloads.
void ExpectRecords(const TxnLog& log, Epoch epoch, uint32_t from, uint32_t to) {
  std::vector<std::pair<Zxid, std::string>> records = ReadAll(log);
  ASSERT_EQ(records.size(), to - from + 1);
  for (uint32_t c = from; c <= to; ++c) {
    EXPECT_EQ(records[c - from].first, Zxid(epoch, c));
    EXPECT_EQ(records[c - from].second, Payload(Zxid(epoch, c)));
  }
}

std::vector<std::string> SegmentPaths(const std::string& dir) {
  std::vector<std::string> paths;
  for (const std::string& name : ListDir(dir)) {
    if (absl::StartsWith(name, "log.")) paths.push_back(absl::StrCat(dir, "/", name));
  }
  return paths;
}

std::string SegmentPath(const std::string& dir, Zxid first) {
  return absl::StrCat(dir, "/", absl::StrFormat("log.%016x", static_cast<uint64_t>(first.ToInt())));
}

TEST(TxnLogTest, EmptyLogOpensAndReopens) {
  TempDir dir;
  LogRecoveryReport report;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path() + "/log", {}, &report);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->last_zxid().IsZero());
  EXPECT_EQ(report.records, 0u);
  EXPECT_FALSE(report.truncated_tail);
  EXPECT_TRUE(log->Sync().ok());
  EXPECT_EQ(log->sync_count(), 0u);  // nothing buffered, nothing written
  EXPECT_TRUE(ReadAll(*log).empty());
  log.reset();
  EXPECT_TRUE(SegmentPaths(dir.path() + "/log").empty());
  EXPECT_NE(OpenLog(dir.path() + "/log"), nullptr);
}

TEST(TxnLogTest, RoundTripAcrossSegmentsAndReopen) {
  TempDir dir;
  LogOptions options;
  options.segment_bytes_max = 1024;
  {
    std::unique_ptr<TxnLog> log = OpenLog(dir.path(), options);
    AppendRange(log.get(), 1, 1, 150, 5);
    EXPECT_EQ(log->last_zxid(), Zxid(1, 150));
    EXPECT_EQ(log->sync_count(), 30u);
    ExpectRecords(*log, 1, 1, 150);
  }
  std::vector<std::string> segments = SegmentPaths(dir.path());
  EXPECT_GT(segments.size(), 5u);
  EXPECT_EQ(segments.front(), SegmentPath(dir.path(), Zxid(1, 1)));
  for (const std::string& segment : segments) {
    if (segment == segments.back()) continue;  // ends in space reserved for appends
    // Rolled past the bound only by the batch that crossed it; records are never split.
    EXPECT_LE(FileSize(segment), options.segment_bytes_max + 5 * kRecordBytes) << segment;
    EXPECT_EQ((FileSize(segment) - kHeaderBytes) % kRecordBytes, 0u) << segment;
  }

  LogRecoveryReport report;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), options, &report);
  EXPECT_EQ(report.records, 150u);
  EXPECT_EQ(report.first_zxid, Zxid(1, 1));
  EXPECT_EQ(report.last_zxid, Zxid(1, 150));
  EXPECT_FALSE(report.truncated_tail);
  ExpectRecords(*log, 1, 1, 150);

  std::vector<std::pair<Zxid, std::string>> tail = ReadAll(*log, Zxid(1, 97));
  ASSERT_EQ(tail.size(), 53u);
  EXPECT_EQ(tail.front().first, Zxid(1, 98));

  // A new epoch continues the log; ReadAfter sees buffered records too.
  ASSERT_TRUE(log->Append(Zxid(2, 1), Payload(Zxid(2, 1))).ok());
  ASSERT_TRUE(log->Append(Zxid(2, 2), Payload(Zxid(2, 2))).ok());
  tail = ReadAll(*log, Zxid(1, 149));
  ASSERT_EQ(tail.size(), 3u);
  EXPECT_EQ(tail[1].first, Zxid(2, 1));
  EXPECT_EQ(tail[2].second, Payload(Zxid(2, 2)));
  ASSERT_TRUE(log->Sync().ok());
  log.reset();

  log = OpenLog(dir.path(), options, &report);
  EXPECT_EQ(report.records, 152u);
  EXPECT_EQ(log->last_zxid(), Zxid(2, 2));
  EXPECT_EQ(ReadAll(*log).size(), 152u);
}

TEST(TxnLogTest, ReadAfterStopsAtVisitorError) {
  TempDir dir;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path());
  AppendRange(log.get(), 1, 1, 10, 10);
  int visited = 0;
  absl::Status s = log->ReadAfter(Zxid(), [&](Zxid zxid, absl::string_view) {
    ++visited;
    return zxid == Zxid(1, 4) ? absl::CancelledError("enough") : absl::OkStatus();
  });
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
  EXPECT_EQ(visited, 4);
}

TEST(TxnLogTest, AppendRefusesDiscontinuousZxids) {
  TempDir dir;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path());
  absl::Status s = log->Append(Zxid(1, 0), "x");
  EXPECT_EQ(ErrorCodeOf(s), v1::INVALID_ARGUMENT) << s;

  ASSERT_TRUE(log->Append(Zxid(3, 5), "first record may start anywhere").ok());
  struct Case {
    Zxid zxid;
    const char* why;
  };
  for (const Case& c :
       {Case{Zxid(3, 7), "gap"}, Case{Zxid(3, 5), "same zxid"}, Case{Zxid(3, 4), "backwards"},
        Case{Zxid(2, 6), "lower epoch"}, Case{Zxid(4, 2), "new epoch not starting at 1"},
        Case{Zxid(4, 0), "counter 0"}}) {
    s = log->Append(c.zxid, "x");
    EXPECT_EQ(ErrorCodeOf(s), v1::INVALID_ARGUMENT) << c.why << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.zxid.ToString())) << c.why;
    EXPECT_THAT(std::string(s.message()), HasSubstr(Zxid(3, 5).ToString())) << c.why;
  }
  EXPECT_EQ(log->last_zxid(), Zxid(3, 5));
  EXPECT_TRUE(log->Append(Zxid(3, 6), "next").ok());
  EXPECT_TRUE(log->Append(Zxid(5, 1), "a later epoch, at 1").ok());
  ASSERT_TRUE(log->Sync().ok());
  std::vector<std::pair<Zxid, std::string>> records = ReadAll(*log);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[2].first, Zxid(5, 1));
}

TEST(TxnLogTest, AppendRefusesOversizedRecord) {
  TempDir dir;
  LogOptions options;
  options.record_bytes_max = 100;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), options);
  absl::Status s = log->Append(Zxid(1, 1), std::string(101, 'x'));
  EXPECT_EQ(ErrorCodeOf(s), v1::TOO_LARGE) << s;
  EXPECT_TRUE(log->Append(Zxid(1, 1), std::string(100, 'x')).ok());
}

// Files that end where their records end (no space reserved ahead), for tests that damage the
// end of a file as a crash of a growing file would.
LogOptions Unreserved() {
  LogOptions options;
  options.preallocate_bytes = 0;
  return options;
}

// A log of epoch 1, counters 1..10, in one segment, closed.
std::string WriteTenRecords(const std::string& dir) {
  std::unique_ptr<TxnLog> log = OpenLog(dir, Unreserved());
  AppendRange(log.get(), 1, 1, 10, 3);
  return SegmentPath(dir, Zxid(1, 1));
}

// A recovered `log` holding counters 1..`last` takes appends up to 12, and reopens clean with them.
void ExpectAppendsContinue(const std::string& dir, std::unique_ptr<TxnLog> log, uint32_t last,
                           const LogOptions& options = {}) {
  ExpectRecords(*log, 1, 1, last);
  AppendRange(log.get(), 1, last + 1, 12, 1);
  log.reset();
  LogRecoveryReport report;
  log = OpenLog(dir, options, &report);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(report.truncated_tail);
  EXPECT_EQ(report.records, 12u);
  ExpectRecords(*log, 1, 1, 12);
}

// Reopens after tail damage: the tail is cut at `expected_offset`, appends continue from
// `expected_last`, and the next reopen is clean.
void ExpectTornTailRecovered(const std::string& dir, const std::string& segment,
                             uint64_t expected_offset, uint32_t expected_last) {
  const uint64_t damaged_size = FileSize(segment);
  LogRecoveryReport report;
  std::unique_ptr<TxnLog> log = OpenLog(dir, {}, &report);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(report.truncated_tail);
  EXPECT_EQ(report.truncated_file, segment);
  EXPECT_EQ(report.truncated_at_offset, expected_offset);
  EXPECT_EQ(report.truncated_bytes, damaged_size - expected_offset);
  EXPECT_EQ(report.records, expected_last);
  EXPECT_EQ(report.last_zxid, Zxid(1, expected_last));
  EXPECT_EQ(FileSize(segment), expected_offset);
  ExpectAppendsContinue(dir, std::move(log), expected_last);
}

TEST(TxnLogTest, TruncatedLastRecordIsCut) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  TruncateFile(segment, FileSize(segment) - 5);
  ExpectTornTailRecovered(dir.path(), segment, RecordOffset(1, 10), 9);
}

TEST(TxnLogTest, TruncatedRecordHeaderIsCut) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  TruncateFile(segment, RecordOffset(1, 10) + 7);
  ExpectTornTailRecovered(dir.path(), segment, RecordOffset(1, 10), 9);
}

// Zeros after the last record are space nothing was written to (reserved ahead, or extended by a
// crash before the data reached the disk): kept, not reported as damage, appended over.
TEST(TxnLogTest, ZeroFilledTailIsUnusedSpace) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  AppendToFile(segment, std::string(4096, '\0'));
  LogRecoveryReport report;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), Unreserved(), &report);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(report.truncated_tail);
  EXPECT_EQ(report.last_zxid, Zxid(1, 10));
  ExpectAppendsContinue(dir.path(), std::move(log), 10, Unreserved());
  EXPECT_EQ(FileSize(segment), RecordOffset(1, 11) + 4096);  // the records went into the zeros
}

// Space is reserved ahead of the appends; a reopen finds every record and nothing torn, appends
// continue into the reserved space, and a roll cuts the segment it leaves to its records.
TEST(TxnLogTest, ReservedSpaceIsUsedAndCutOnRoll) {
  TempDir dir;
  LogOptions options;
  options.preallocate_bytes = 64 << 10;
  options.segment_bytes_max = RecordOffset(1, 21);  // 20 records per segment
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), options);
  AppendRange(log.get(), 1, 1, 10, 5);
  const std::string first = SegmentPath(dir.path(), Zxid(1, 1));
  EXPECT_GE(FileSize(first), options.preallocate_bytes);

  log.reset();
  LogRecoveryReport report;
  log = OpenLog(dir.path(), options, &report);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(report.truncated_tail);
  EXPECT_EQ(report.records, 10u);
  AppendRange(log.get(), 1, 11, 25, 5);
  EXPECT_EQ(FileSize(first), RecordOffset(1, 21));  // cut to its 20 records when left
  EXPECT_GE(FileSize(SegmentPath(dir.path(), Zxid(1, 21))), options.preallocate_bytes);

  log.reset();
  log = OpenLog(dir.path(), options, &report);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(report.truncated_tail);
  ExpectRecords(*log, 1, 1, 25);
}

// A crash during a write into reserved space: the torn record is followed by zeros, not by the
// end of the file. It is cut like any torn tail.
TEST(TxnLogTest, TornRecordInReservedSpaceIsCut) {
  TempDir dir;
  {
    std::unique_ptr<TxnLog> log = OpenLog(dir.path());
    AppendRange(log.get(), 1, 1, 10, 3);
  }
  const std::string segment = SegmentPath(dir.path(), Zxid(1, 1));
  ASSERT_GT(FileSize(segment), RecordOffset(1, 11) + 4096);
  // Half of an 11th record, as a write interrupted midway would leave it.
  std::string record;
  AppendFixed<uint32_t>(&record, static_cast<uint32_t>(kPayloadBytes));
  AppendFixed<uint32_t>(&record, 0x12345678);
  AppendFixed<int64_t>(&record, Zxid(1, 11).ToInt());
  record += Payload(Zxid(1, 11)).substr(0, kPayloadBytes / 2);
  WriteInFile(segment, RecordOffset(1, 11), record);
  LogRecoveryReport report;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), {}, &report);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(report.truncated_tail);
  EXPECT_EQ(report.truncated_at_offset, RecordOffset(1, 11));
  ExpectAppendsContinue(dir.path(), std::move(log), 10);
}

TEST(TxnLogTest, GarbageTailIsCut) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  std::string garbage;
  for (int i = 0; i < 300; ++i) garbage.push_back(static_cast<char>((i * 7919 + 13) % 251));
  AppendToFile(segment, garbage);
  ExpectTornTailRecovered(dir.path(), segment, RecordOffset(1, 11), 10);
}

TEST(TxnLogTest, OversizedLengthAtTailIsCut) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  AppendToFile(segment, std::string("\xff\xff\xff\x7f", 4) + std::string(40, 'x'));
  ExpectTornTailRecovered(dir.path(), segment, RecordOffset(1, 11), 10);
}

TEST(TxnLogTest, BadChecksumOnLastRecordIsCut) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  FlipByte(segment, RecordOffset(1, 10) + 16 + 3);  // in the payload
  ExpectTornTailRecovered(dir.path(), segment, RecordOffset(1, 10), 9);
}

TEST(TxnLogTest, CorruptMiddleRecordIsRefused) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  const uint64_t offset = RecordOffset(1, 5);
  FlipByte(segment, offset + 16 + 3);
  const uint64_t size = FileSize(segment);

  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), {}, nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_TRUE(absl::IsDataLoss(log.status())) << log.status();
  const std::string message(log.status().message());
  EXPECT_THAT(message, HasSubstr(segment));
  EXPECT_THAT(message, HasSubstr(absl::StrCat("offset ", offset)));
  EXPECT_THAT(message, HasSubstr("checksum mismatch"));
  EXPECT_THAT(message, HasSubstr("5 valid records after it"));
  EXPECT_EQ(FileSize(segment), size);  // nothing was cut
}

TEST(TxnLogTest, CorruptLengthBeforeValidRecordsIsRefused) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  FlipByte(segment, RecordOffset(1, 8) + 3);  // the length's high byte: far beyond the file
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), {}, nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_TRUE(absl::IsDataLoss(log.status())) << log.status();
  EXPECT_THAT(std::string(log.status().message()),
              HasSubstr(absl::StrCat("offset ", RecordOffset(1, 8))));
}

TEST(TxnLogTest, RecordAboveALoweredLimitIsNotCutAsATornTail) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  const uint64_t size = FileSize(segment);
  LogOptions lowered;
  lowered.record_bytes_max = kPayloadBytes - 1;
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), lowered, nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(log.status())) << log.status();
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("raise record_bytes_max"));
  EXPECT_EQ(FileSize(segment), size);
}

// Epoch 1, counters 1..40 in several segments; returns the segment paths.
std::vector<std::string> WriteSegments(const std::string& dir, const LogOptions& options) {
  std::unique_ptr<TxnLog> log = OpenLog(dir, options);
  AppendRange(log.get(), 1, 1, 40, 4);
  return SegmentPaths(dir);
}

LogOptions SmallSegments() {
  LogOptions options;
  options.segment_bytes_max = 4 * kRecordBytes * 2;  // two syncs of four records each
  return options;
}

TEST(TxnLogTest, DamageInNonLastSegmentIsRefused) {
  TempDir dir;
  std::vector<std::string> segments = WriteSegments(dir.path(), SmallSegments());
  ASSERT_EQ(segments.size(), 5u);
  // A torn-looking tail, but not in the last segment: records after it exist elsewhere.
  TruncateFile(segments[1], FileSize(segments[1]) - 3);
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), SmallSegments(), nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_TRUE(absl::IsDataLoss(log.status())) << log.status();
  EXPECT_THAT(std::string(log.status().message()), HasSubstr(segments[1]));
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("not the last"));
}

TEST(TxnLogTest, BadChecksumInNonLastSegmentIsRefused) {
  TempDir dir;
  std::vector<std::string> segments = WriteSegments(dir.path(), SmallSegments());
  FlipByte(segments[0], RecordOffset(1, 8) + 20);
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), SmallSegments(), nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(std::string(log.status().message()), HasSubstr(segments[0]));
  EXPECT_THAT(std::string(log.status().message()),
              HasSubstr(absl::StrCat("offset ", RecordOffset(1, 8))));
}

TEST(TxnLogTest, MissingMiddleSegmentIsAGapAndRefused) {
  TempDir dir;
  std::vector<std::string> segments = WriteSegments(dir.path(), SmallSegments());
  ASSERT_EQ(std::remove(segments[2].c_str()), 0);
  absl::StatusOr<std::unique_ptr<TxnLog>> log = TxnLog::Open(dir.path(), SmallSegments(), nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_TRUE(absl::IsDataLoss(log.status())) << log.status();
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("gap"));
  EXPECT_THAT(std::string(log.status().message()), HasSubstr(segments[3]));
  EXPECT_THAT(std::string(log.status().message()), HasSubstr(Zxid(1, 16).ToString()));
  EXPECT_THAT(std::string(log.status().message()), HasSubstr(Zxid(1, 25).ToString()));
}

TEST(TxnLogTest, TornNewSegmentIsRemoved) {
  TempDir dir;
  std::vector<std::string> segments = WriteSegments(dir.path(), SmallSegments());
  // A roll that crashed while writing the new segment's header.
  const std::string torn = SegmentPath(dir.path(), Zxid(1, 41));
  testing::WriteFile(torn, "CFLOG0");
  LogRecoveryReport report;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), SmallSegments(), &report);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(report.truncated_tail);
  EXPECT_EQ(report.truncated_file, torn);
  EXPECT_EQ(report.records, 40u);
  EXPECT_EQ(SegmentPaths(dir.path()), segments);
  // The next roll creates the segment afresh.
  AppendRange(log.get(), 1, 41, 60, 4);
  log = OpenLog(dir.path(), SmallSegments(), &report);
  EXPECT_FALSE(report.truncated_tail);
  ExpectRecords(*log, 1, 1, 60);
}

TEST(TxnLogTest, HeaderOnlyLastSegmentIsRemoved) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  const std::string empty = SegmentPath(dir.path(), Zxid(1, 11));
  testing::WriteFile(empty, testing::ReadFile(segment).substr(0, kHeaderBytes));
  LogRecoveryReport report;
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), {}, &report);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(report.truncated_tail);
  EXPECT_EQ(SegmentPaths(dir.path()), std::vector<std::string>{segment});
  ExpectRecords(*log, 1, 1, 10);
}

TEST(TxnLogTest, TruncateAfterWithinSegment) {
  TempDir dir;
  const std::string segment = WriteTenRecords(dir.path());
  std::unique_ptr<TxnLog> log = OpenLog(dir.path());
  ASSERT_TRUE(log->TruncateAfter(Zxid(1, 6)).ok());
  EXPECT_EQ(log->last_zxid(), Zxid(1, 6));
  EXPECT_EQ(FileSize(segment), RecordOffset(1, 7));
  ExpectRecords(*log, 1, 1, 6);
  // ZAB TRUNC then the new leader's history: its epoch follows.
  EXPECT_FALSE(log->Append(Zxid(1, 8), "gap").ok());
  ASSERT_TRUE(log->Append(Zxid(2, 1), "new leader").ok());
  ASSERT_TRUE(log->Sync().ok());
  log.reset();

  LogRecoveryReport report;
  log = OpenLog(dir.path(), {}, &report);
  EXPECT_FALSE(report.truncated_tail);
  std::vector<std::pair<Zxid, std::string>> records = ReadAll(*log);
  ASSERT_EQ(records.size(), 7u);
  EXPECT_EQ(records[5].first, Zxid(1, 6));
  EXPECT_EQ(records[6], std::make_pair(Zxid(2, 1), std::string("new leader")));
}

TEST(TxnLogTest, TruncateAfterAcrossSegments) {
  TempDir dir;
  std::vector<std::string> segments = WriteSegments(dir.path(), SmallSegments());
  ASSERT_EQ(segments.size(), 5u);
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), SmallSegments());
  ASSERT_TRUE(log->TruncateAfter(Zxid(1, 12)).ok());
  EXPECT_EQ(log->last_zxid(), Zxid(1, 12));
  EXPECT_EQ(SegmentPaths(dir.path()),
            std::vector<std::string>(segments.begin(), segments.begin() + 2));
  ExpectRecords(*log, 1, 1, 12);
  AppendRange(log.get(), 1, 13, 20, 8);
  log.reset();

  LogRecoveryReport report;
  log = OpenLog(dir.path(), SmallSegments(), &report);
  EXPECT_FALSE(report.truncated_tail);
  ExpectRecords(*log, 1, 1, 20);
}

TEST(TxnLogTest, TruncateAfterSegmentBoundaryAndBufferedRecords) {
  TempDir dir;
  std::vector<std::string> segments = WriteSegments(dir.path(), SmallSegments());
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), SmallSegments());
  // Buffered records only.
  ASSERT_TRUE(log->Append(Zxid(1, 41), "a").ok());
  ASSERT_TRUE(log->Append(Zxid(1, 42), "b").ok());
  ASSERT_TRUE(log->TruncateAfter(Zxid(1, 41)).ok());
  EXPECT_EQ(log->last_zxid(), Zxid(1, 41));
  EXPECT_EQ(ReadAll(*log, Zxid(1, 40)).size(), 1u);
  // Exactly the last record of a segment: the later segments go, that one stays whole.
  ASSERT_TRUE(log->TruncateAfter(Zxid(1, 16)).ok());
  EXPECT_EQ(SegmentPaths(dir.path()),
            std::vector<std::string>(segments.begin(), segments.begin() + 2));
  EXPECT_EQ(FileSize(segments[1]), RecordOffset(9, 17));
  log.reset();
  log = OpenLog(dir.path(), SmallSegments());
  ExpectRecords(*log, 1, 1, 16);
}

TEST(TxnLogTest, TruncateAfterBelowEverythingEmptiesTheLog) {
  TempDir dir;
  {
    std::unique_ptr<TxnLog> log = OpenLog(dir.path(), SmallSegments());
    AppendRange(log.get(), 2, 5, 30, 4);
    ASSERT_TRUE(log->TruncateAfter(Zxid(1, 9)).ok());
    EXPECT_TRUE(log->last_zxid().IsZero());
    EXPECT_TRUE(ReadAll(*log).empty());
    EXPECT_TRUE(SegmentPaths(dir.path()).empty());
    ASSERT_TRUE(log->Append(Zxid(3, 1), "fresh").ok());
    ASSERT_TRUE(log->Sync().ok());
  }
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), SmallSegments());
  std::vector<std::pair<Zxid, std::string>> records = ReadAll(*log);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].first, Zxid(3, 1));
}

TEST(TxnLogTest, PurgeThroughKeepsWhatIsNeeded) {
  TempDir dir;
  std::vector<std::string> segments = WriteSegments(dir.path(), SmallSegments());
  ASSERT_EQ(segments.size(), 5u);  // 1-8, 9-16, 17-24, 25-32, 33-40
  std::unique_ptr<TxnLog> log = OpenLog(dir.path(), SmallSegments());
  ASSERT_TRUE(log->PurgeThrough(Zxid(1, 15)).ok());  // 16 is still needed
  EXPECT_EQ(SegmentPaths(dir.path()),
            std::vector<std::string>(segments.begin() + 1, segments.end()));
  ASSERT_TRUE(log->PurgeThrough(Zxid(1, 16)).ok());
  EXPECT_EQ(SegmentPaths(dir.path()),
            std::vector<std::string>(segments.begin() + 2, segments.end()));
  EXPECT_EQ(ReadAll(*log, Zxid(1, 16)).size(), 24u);
  // Never the last segment, even when a snapshot covers all of it.
  ASSERT_TRUE(log->PurgeThrough(Zxid(1, 40)).ok());
  EXPECT_EQ(SegmentPaths(dir.path()), std::vector<std::string>{segments.back()});
  AppendRange(log.get(), 1, 41, 44, 4);
  log.reset();

  LogRecoveryReport report;
  log = OpenLog(dir.path(), SmallSegments(), &report);
  EXPECT_EQ(report.first_zxid, Zxid(1, 33));
  EXPECT_EQ(report.records, 12u);
  ExpectRecords(*log, 1, 33, 44);
}

TEST(TxnLogTest, FailedSyncMakesTheLogUnusable) {
  TempDir dir;
  LogOptions options;
  options.segment_bytes_max = 1;  // every sync rolls to a new segment
  const std::string log_dir = dir.path() + "/log";
  std::unique_ptr<TxnLog> log = OpenLog(log_dir, options);
  AppendRange(log.get(), 1, 1, 2, 1);
  std::filesystem::remove_all(log_dir);
  ASSERT_TRUE(log->Append(Zxid(1, 3), "x").ok());
  absl::Status s = log->Sync();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(SegmentPath(log_dir, Zxid(1, 3))));
  s = log->Append(Zxid(1, 4), "y");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("unusable"));
  EXPECT_FALSE(log->Sync().ok());
}

}  // namespace
}  // namespace confab::storage
