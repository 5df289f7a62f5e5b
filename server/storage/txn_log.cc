#include "server/storage/txn_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/check.h"
#include "server/common/errors.h"
#include "server/storage/durable_file.h"

// A broken invariant is a bug: crash with the values that broke it.

namespace confab::storage {
namespace {

// Segment header: magic, u32 format version, u32 zero padding.
constexpr absl::string_view kMagic = "CFLOG001";
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kSegmentHeaderBytes = 16;
// Record header: u32 payload length, u32 crc32, i64 zxid.
constexpr size_t kRecordHeaderBytes = 16;
constexpr size_t kReadChunkBytes = 1 << 20;
constexpr absl::string_view kSegmentPrefix = "log.";

std::string SegmentHeader() {
  std::string header(kMagic);
  AppendFixed<uint32_t>(&header, kFormatVersion);
  AppendFixed<uint32_t>(&header, 0);
  return header;
}

uint32_t RecordCrc(Zxid zxid, uint32_t length, absl::string_view payload) {
  std::string prefix;
  AppendFixed<int64_t>(&prefix, zxid.ToInt());
  AppendFixed<uint32_t>(&prefix, length);
  uLong crc = crc32_z(0, reinterpret_cast<const Bytef*>(prefix.data()), prefix.size());
  crc = crc32_z(crc, reinterpret_cast<const Bytef*>(payload.data()), payload.size());
  return static_cast<uint32_t>(crc);
}

void EncodeRecord(Zxid zxid, absl::string_view payload, std::string* out) {
  const auto length = static_cast<uint32_t>(payload.size());
  AppendFixed<uint32_t>(out, length);
  AppendFixed<uint32_t>(out, RecordCrc(zxid, length, payload));
  AppendFixed<int64_t>(out, zxid.ToInt());
  out->append(payload.data(), payload.size());
}

enum class RecordState { kValid, kShortHeader, kTooLong, kShortPayload, kBadChecksum };

struct ParsedRecord {
  RecordState state = RecordState::kShortHeader;
  Zxid zxid;  // as stored; trustworthy only when valid
  uint32_t length = 0;
  uint32_t stored_crc = 0;
  uint32_t computed_crc = 0;
  absl::string_view payload;
  size_t size = 0;  // header and payload
};

// The one decoder of log records: `bytes` starts at a record and runs to the end of what is known.
ParsedRecord ParseRecord(absl::string_view bytes, uint32_t record_bytes_max) {
  ParsedRecord r;
  if (bytes.size() < kRecordHeaderBytes) return r;
  r.length = DecodeFixed<uint32_t>(bytes.data());
  r.stored_crc = DecodeFixed<uint32_t>(bytes.data() + 4);
  r.zxid = Zxid::FromInt(DecodeFixed<int64_t>(bytes.data() + 8));
  if (r.length > record_bytes_max) {
    r.state = RecordState::kTooLong;
    return r;
  }
  if (bytes.size() - kRecordHeaderBytes < r.length) {
    r.state = RecordState::kShortPayload;
    return r;
  }
  r.payload = bytes.substr(kRecordHeaderBytes, r.length);
  r.size = kRecordHeaderBytes + r.length;
  r.computed_crc = RecordCrc(r.zxid, r.length, r.payload);
  r.state = r.computed_crc == r.stored_crc ? RecordState::kValid : RecordState::kBadChecksum;
  return r;
}

bool AllZero(absl::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

// What is wrong with the record at the start of `rest` (which did not parse as valid).
std::string DescribeDamage(const ParsedRecord& r, absl::string_view rest,
                           uint32_t record_bytes_max) {
  if (AllZero(rest)) return absl::StrCat("zero fill (", rest.size(), " bytes)");
  switch (r.state) {
    case RecordState::kShortHeader:
      return absl::StrCat("incomplete record header (", rest.size(), " of ", kRecordHeaderBytes,
                          " bytes)");
    case RecordState::kTooLong:
      return absl::StrCat("record length ", r.length, " above record_bytes_max ", record_bytes_max);
    case RecordState::kShortPayload:
      return absl::StrCat("incomplete record (", r.length, " payload bytes announced, ",
                          rest.size() - kRecordHeaderBytes, " present)");
    case RecordState::kBadChecksum:
      return absl::StrFormat("checksum mismatch (stored 0x%08x, computed 0x%08x)", r.stored_crc,
                             r.computed_crc);
    case RecordState::kValid:
      break;
  }
  return "valid record";
}

// Whether `next` may follow `last` in the log: same epoch, counter + 1; a later epoch, counter 1;
// anything with counter >= 1 after nothing.
bool Follows(Zxid last, Zxid next) {
  if (next.counter() == 0) return false;
  if (last.IsZero()) return true;
  if (next.epoch() == last.epoch()) return next.counter() == last.counter() + 1;
  return next.epoch() > last.epoch() && next.counter() == 1;
}

std::string Expected(Zxid last) {
  if (last.IsZero()) return "any zxid with counter >= 1";
  return absl::StrCat(last.Next().ToString(), ", or counter 1 of a later epoch");
}

// Valid records found after a damaged one: proof the damage is not a torn tail.
struct LaterRecords {
  uint64_t offset = 0;
  Zxid first;
  uint64_t count = 0;
};

// Looks at every offset after `from` for a record that parses, verifies and could follow `last`;
// counts the records chained after it.
std::optional<LaterRecords> FindValidRecordAfter(absl::string_view contents, size_t from, Zxid last,
                                                 uint32_t record_bytes_max) {
  for (size_t at = from; at + kRecordHeaderBytes <= contents.size(); ++at) {
    // Cheap filters first: a later record of ours has a zxid above the last valid one.
    const Zxid zxid = Zxid::FromInt(DecodeFixed<int64_t>(contents.data() + at + 8));
    if (zxid <= last || zxid.counter() == 0) continue;
    ParsedRecord r = ParseRecord(contents.substr(at), record_bytes_max);
    if (r.state != RecordState::kValid) continue;
    LaterRecords later{at, r.zxid, 0};
    for (size_t next = at; r.state == RecordState::kValid;
         r = ParseRecord(contents.substr(next), record_bytes_max)) {
      ++later.count;
      next += r.size;
    }
    return later;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TxnLog>> TxnLog::Open(const std::string& dir,
                                                     const LogOptions& options,
                                                     LogRecoveryReport* report) {
  CONFAB_CHECK(options.record_bytes_max > 0 && options.segment_bytes_max > 0, "record_bytes_max ",
               options.record_bytes_max, " segment_bytes_max ", options.segment_bytes_max);
  if (absl::Status s = MakeDirectoryDurably(dir); !s.ok()) return s;
  LogRecoveryReport unused;
  if (report == nullptr) report = &unused;
  *report = LogRecoveryReport();
  std::unique_ptr<TxnLog> log(new TxnLog(dir, options));
  if (absl::Status s = log->Recover(report); !s.ok()) return s;
  return log;
}

TxnLog::~TxnLog() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status TxnLog::Recover(LogRecoveryReport* report) {
  absl::StatusOr<std::vector<std::pair<Zxid, std::string>>> files =
      ListZxidFiles(dir_, kSegmentPrefix);
  if (!files.ok()) return files.status();
  const std::string header = SegmentHeader();
  Zxid last;
  for (size_t i = 0; i < files->size(); ++i) {
    const auto& [first, path] = (*files)[i];
    const bool is_last = i + 1 == files->size();
    absl::StatusOr<std::string> read = ReadWholeFile(path);
    if (!read.ok()) return read.status();
    const absl::string_view contents = *read;

    // A segment is created with its header synced before any record is written to it, so a
    // torn header can only be the crash of a roll: in the last segment it holds nothing.
    if (contents.size() < kSegmentHeaderBytes || AllZero(contents)) {
      if (!is_last) {
        return absl::DataLossError(absl::StrCat(
            "log ", path, ": segment header is incomplete (", contents.size(),
            " bytes) but later segments exist; refusing to start: the log is corrupt before its "
            "tail"));
      }
      if (absl::Status s = RemoveSegmentFile(path); !s.ok()) return s;
      report->truncated_tail = true;
      report->truncated_file = path;
      report->truncated_at_offset = 0;
      report->truncated_bytes = contents.size();
      break;
    }
    if (contents.substr(0, kSegmentHeaderBytes) != header) {
      return absl::DataLossError(absl::StrCat(
          "log ", path, ": not a Confab log segment of format version ", kFormatVersion,
          " (header \"", absl::CHexEscape(contents.substr(0, kSegmentHeaderBytes)),
          "\"); refusing to start"));
    }

    Segment segment{path, first, Zxid(), kSegmentHeaderBytes};
    uint64_t records = 0;
    size_t at = kSegmentHeaderBytes;
    while (at < contents.size()) {
      const absl::string_view rest = contents.substr(at);
      const ParsedRecord r = ParseRecord(rest, options_.record_bytes_max);
      if (r.state == RecordState::kValid) {
        if (records == 0 && r.zxid != first) {
          return absl::DataLossError(absl::StrCat(
              "log ", path, ": first record at offset ", at, " has zxid ", r.zxid.ToString(),
              " but the segment name says ", first.ToString(), "; refusing to start"));
        }
        if (!Follows(last, r.zxid)) {
          return absl::DataLossError(absl::StrCat("log ", path, ": record at offset ", at,
                                                  " has zxid ", r.zxid.ToString(), " after zxid ",
                                                  last.ToString(), " (expected ", Expected(last),
                                                  "); refusing to start: the log has a gap"));
        }
        last = r.zxid;
        ++records;
        at += r.size;
        continue;
      }
      if (r.state == RecordState::kTooLong &&
          ParseRecord(rest, r.length).state == RecordState::kValid) {
        // A whole, verified record: the limit was lowered, this is not damage. Never cut it.
        return absl::FailedPreconditionError(absl::StrCat(
            "log ", path, ": record at offset ", at, " (zxid ", r.zxid.ToString(), ") holds ",
            r.length, " bytes, above record_bytes_max ", options_.record_bytes_max,
            "; raise record_bytes_max to at least that to read this log"));
      }
      // Space reserved for appends (or never written): nothing of the log is in it. Were records
      // lost there, the next segment's first record would not follow this one's last (a gap).
      if (AllZero(rest)) break;
      const std::string damage = DescribeDamage(r, rest, options_.record_bytes_max);
      const std::string where =
          absl::StrCat("log ", path, ": ", damage, " in record at offset ", at, " (zxid field ",
                       r.zxid.ToString(), ", last valid zxid ", last.ToString(), ")");
      if (!is_last) {
        return absl::DataLossError(absl::StrCat(
            where,
            " in a segment that is not the last; refusing to start: the log is corrupt "
            "before its tail"));
      }
      if (std::optional<LaterRecords> later =
              FindValidRecordAfter(contents, at + 1, last, options_.record_bytes_max)) {
        return absl::DataLossError(absl::StrCat(
            where, " with ", later->count, " valid records after it (the first at offset ",
            later->offset, ", zxid ", later->first.ToString(),
            "); refusing to start: the log is corrupt before its tail"));
      }
      // A torn tail: cut it off, durably, before anything is appended after it.
      int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return ErrnoError("open for truncation", path, errno);
      absl::Status s;
      if (::ftruncate(fd, static_cast<off_t>(at)) != 0) {
        s = ErrnoError(absl::StrCat("truncate to ", at, " bytes of"), path, errno);
      } else if (::fdatasync(fd) != 0) {
        s = ErrnoError("fdatasync", path, errno);
      }
      ::close(fd);
      if (!s.ok()) return s;
      report->truncated_tail = true;
      report->truncated_file = path;
      report->truncated_at_offset = at;
      report->truncated_bytes = contents.size() - at;
      break;
    }

    if (records == 0) {
      // Only a header: the crash came between creating the segment and writing to it.
      if (!is_last) {
        return absl::DataLossError(absl::StrCat("log ", path,
                                                ": segment holds no records but later segments "
                                                "exist; refusing to start"));
      }
      if (absl::Status s = RemoveSegmentFile(path); !s.ok()) return s;
      break;
    }
    segment.last_zxid = last;
    segment.bytes = at;
    segments_.push_back(std::move(segment));
    report->records += records;
  }

  if (!segments_.empty()) {
    const std::string& path = segments_.back().path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) return ErrnoError("open for append", path, errno);
    struct stat st;
    if (::fstat(fd_, &st) != 0) return ErrnoError("stat", path, errno);
    allocated_ = static_cast<uint64_t>(st.st_size);
    report->first_zxid = segments_.front().first_zxid;
  }
  last_zxid_ = last;
  report->last_zxid = last;
  return absl::OkStatus();
}

absl::Status TxnLog::Append(Zxid zxid, absl::string_view payload) {
  if (!broken_.ok()) return broken_;
  if (payload.size() > options_.record_bytes_max) {
    return MakeError(
        v1::TOO_LARGE,
        absl::StrCat("log append of zxid ", zxid.ToString(), " refused: ", payload.size(),
                     " bytes is above record_bytes_max ", options_.record_bytes_max));
  }
  if (!Follows(last_zxid_, zxid)) {
    return MakeError(v1::INVALID_ARGUMENT,
                     absl::StrCat("log append of zxid ", zxid.ToString(),
                                  " refused: it does not follow the last zxid ",
                                  last_zxid_.ToString(), " (expected ", Expected(last_zxid_), ")"));
  }
  if (buffer_.empty()) buffer_first_zxid_ = zxid;
  EncodeRecord(zxid, payload, &buffer_);
  last_zxid_ = zxid;
  return absl::OkStatus();
}

absl::Status TxnLog::Sync() {
  if (!broken_.ok()) return broken_;
  if (buffer_.empty()) return absl::OkStatus();
  if (fd_ < 0 || segments_.back().bytes >= options_.segment_bytes_max) {
    if (absl::Status s = OpenNewSegment(buffer_first_zxid_); !s.ok()) return Fail(s);
  }
  Segment& segment = segments_.back();
  Reserve(segment.bytes + buffer_.size());
  if (absl::Status s = WriteAt(fd_, buffer_, segment.bytes, segment.path); !s.ok()) {
    return Fail(s);
  }
  if (::fdatasync(fd_) != 0) return Fail(ErrnoError("fdatasync", segment.path, errno));
  segment.bytes += buffer_.size();
  segment.last_zxid = last_zxid_;
  buffer_.clear();
  ++sync_count_;
  return absl::OkStatus();
}

void TxnLog::Reserve(uint64_t end) {
  if (options_.preallocate_bytes == 0 || end <= allocated_) return;
  const uint64_t target = end + options_.preallocate_bytes;
  // Best effort: where space cannot be reserved (no support, a full disk), the write that follows
  // extends the file, or reports the error itself.
  if (::fallocate(fd_, 0, static_cast<off_t>(allocated_),
                  static_cast<off_t>(target - allocated_)) == 0) {
    allocated_ = target;
  } else if (errno == EOPNOTSUPP || errno == ENOSYS) {
    options_.preallocate_bytes = 0;
  }
}

absl::Status TxnLog::OpenNewSegment(Zxid first) {
  if (fd_ >= 0 && allocated_ > segments_.back().bytes) {
    // The segment being left is cut to its records: reserved space is kept only where appends
    // go next.
    const Segment& full = segments_.back();
    if (::ftruncate(fd_, static_cast<off_t>(full.bytes)) != 0) {
      return ErrnoError(absl::StrCat("cut to ", full.bytes, " bytes"), full.path, errno);
    }
    if (::fdatasync(fd_) != 0) return ErrnoError("fdatasync", full.path, errno);
    allocated_ = full.bytes;
  }
  const std::string path = absl::StrCat(dir_, "/", ZxidFileName(kSegmentPrefix, first));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create log segment", path, errno);
  absl::Status s = WriteAt(fd, SegmentHeader(), 0, path);
  if (s.ok() && ::fdatasync(fd) != 0) s = ErrnoError("fdatasync", path, errno);
  if (s.ok()) s = SyncDirectory(dir_);
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  allocated_ = kSegmentHeaderBytes;
  segments_.push_back(Segment{path, first, Zxid(), kSegmentHeaderBytes});
  return absl::OkStatus();
}

absl::Status TxnLog::ReadSegment(const Segment& segment, const SegmentVisitor& visit) const {
  int fd = ::open(segment.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open for reading", segment.path, errno);
  std::string chunk;
  size_t at = 0;                             // in chunk
  uint64_t chunk_end = kSegmentHeaderBytes;  // file offset of chunk's end
  absl::Status status;
  while (status.ok()) {
    const absl::string_view rest = absl::string_view(chunk).substr(at);
    const uint64_t offset = chunk_end - rest.size();
    const ParsedRecord r = ParseRecord(rest, options_.record_bytes_max);
    if (r.state == RecordState::kValid) {
      at += r.size;
      status = visit(r.zxid, r.payload, offset + r.size);
      continue;
    }
    const bool need_more =
        r.state == RecordState::kShortHeader || r.state == RecordState::kShortPayload;
    if (need_more && chunk_end < segment.bytes) {
      chunk.erase(0, at);
      at = 0;
      const size_t missing = r.state == RecordState::kShortHeader
                                 ? kRecordHeaderBytes - rest.size()
                                 : kRecordHeaderBytes + r.length - rest.size();
      const size_t want = static_cast<size_t>(
          std::min<uint64_t>(std::max(missing, kReadChunkBytes), segment.bytes - chunk_end));
      const size_t old_size = chunk.size();
      chunk.resize(old_size + want);
      absl::StatusOr<size_t> n = ReadAt(fd, chunk.data() + old_size, want, chunk_end, segment.path);
      if (!n.ok()) {
        status = n.status();
      } else if (*n != want) {
        status =
            absl::DataLossError(absl::StrCat("log ", segment.path, ": file ends at ",
                                             chunk_end + *n, " bytes, expected ", segment.bytes));
      }
      chunk_end += want;
      continue;
    }
    if (!rest.empty()) {
      status = absl::DataLossError(absl::StrCat(
          "log ", segment.path, ": ", DescribeDamage(r, rest, options_.record_bytes_max),
          " in record at offset ", offset, " (zxid field ", r.zxid.ToString(),
          ") of a record that was durable"));
    }
    break;
  }
  ::close(fd);
  return status;
}

absl::Status TxnLog::ReadAfter(Zxid after, const RecordVisitor& visit) const {
  for (const Segment& segment : segments_) {
    if (segment.last_zxid <= after) continue;
    absl::Status s = ReadSegment(segment, [&](Zxid zxid, absl::string_view payload, uint64_t) {
      return zxid > after ? visit(zxid, payload) : absl::OkStatus();
    });
    if (!s.ok()) return s;
  }
  for (absl::string_view rest = buffer_; !rest.empty();) {
    const ParsedRecord r = ParseRecord(rest, options_.record_bytes_max);
    CONFAB_CHECK(r.state == RecordState::kValid, "unparsable buffered record, zxid field ",
                 r.zxid.ToString());
    if (r.zxid > after) {
      if (absl::Status s = visit(r.zxid, r.payload); !s.ok()) return s;
    }
    rest.remove_prefix(r.size);
  }
  return absl::OkStatus();
}

absl::Status TxnLog::TruncateAfter(Zxid zxid) {
  if (!broken_.ok()) return broken_;
  if (zxid >= last_zxid_) return absl::OkStatus();

  if (!buffer_.empty() && zxid >= buffer_first_zxid_) {
    size_t keep = 0;
    for (;;) {
      const ParsedRecord r =
          ParseRecord(absl::string_view(buffer_).substr(keep), options_.record_bytes_max);
      CONFAB_CHECK(r.state == RecordState::kValid, "unparsable buffered record at ", keep);
      if (r.zxid > zxid) break;
      last_zxid_ = r.zxid;
      keep += r.size;
    }
    buffer_.resize(keep);
    return absl::OkStatus();
  }
  buffer_.clear();

  // Drop whole segments from the newest back, so what remains is a prefix at every step.
  while (!segments_.empty() && segments_.back().first_zxid > zxid) {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (absl::Status s = RemoveSegmentFile(segments_.back().path); !s.ok()) return Fail(s);
    segments_.pop_back();
  }
  if (segments_.empty()) {
    last_zxid_ = Zxid();
    return absl::OkStatus();
  }

  Segment& segment = segments_.back();
  uint64_t cut = kSegmentHeaderBytes;
  Zxid kept;
  absl::Status s = ReadSegment(segment, [&](Zxid z, absl::string_view, uint64_t end) {
    if (z <= zxid) {
      cut = end;
      kept = z;
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return Fail(s);
  CONFAB_CHECK(!kept.IsZero(), "segment ", segment.path, " starting at ",
               segment.first_zxid.ToString(), " kept nothing at or below ", zxid.ToString());
  if (fd_ < 0) {
    fd_ = ::open(segment.path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) return Fail(ErrnoError("open for append", segment.path, errno));
  }
  if (::ftruncate(fd_, static_cast<off_t>(cut)) != 0) {
    return Fail(
        ErrnoError(absl::StrCat("truncate after zxid ", zxid.ToString(), " to ", cut, " bytes of"),
                   segment.path, errno));
  }
  if (::fdatasync(fd_) != 0) return Fail(ErrnoError("fdatasync", segment.path, errno));
  allocated_ = cut;
  segment.bytes = cut;
  segment.last_zxid = kept;
  last_zxid_ = kept;
  return absl::OkStatus();
}

absl::Status TxnLog::PurgeThrough(Zxid zxid) {
  if (!broken_.ok()) return broken_;
  // Oldest first, so what remains is contiguous at every step; never the segment being appended.
  while (segments_.size() > 1 && segments_.front().last_zxid <= zxid) {
    if (absl::Status s = RemoveSegmentFile(segments_.front().path); !s.ok()) return s;
    segments_.erase(segments_.begin());
  }
  return absl::OkStatus();
}

absl::Status TxnLog::RemoveSegmentFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return ErrnoError("remove log segment", path, errno);
  // Synced one at a time: a removal persisted out of order could leave a gap in the log.
  return SyncDirectory(dir_);
}

absl::Status TxnLog::Fail(absl::Status error) {
  broken_ = absl::Status(
      error.code(),
      absl::StrCat(error.message(), "; the log in ", dir_,
                   " is unusable until reopened (its state on disk is unknown after this)"));
  return broken_;
}

}  // namespace confab::storage
