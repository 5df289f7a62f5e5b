#include "server/storage/snapshot.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/storage/durable_file.h"

namespace confab::storage {
namespace {

constexpr absl::string_view kMagic = "CFSNAP01";
constexpr uint32_t kFormatVersion = 1;
constexpr absl::string_view kFilePrefix = "snapshot.";
constexpr absl::string_view kTmpSuffix = ".tmp";
// magic, u32 version, i64 zxid, u64 digest
constexpr size_t kHeaderBytes = 8 + 4 + 8 + 8;
constexpr char kSessionTag = 1;
constexpr char kNodeTag = 2;
constexpr char kTrailerTag = static_cast<char>(0xFF);
// tag, u64 sessions, u64 nodes, u32 crc
constexpr size_t kTrailerBytes = 1 + 8 + 8 + 4;
constexpr size_t kSessionBytes = 8 + 4;
// czxid, mzxid, pzxid, ctime, mtime (i64); version, cversion (i32); ephemeral_owner (i64);
// data_length, num_children (i32)
constexpr size_t kStatBytes = 5 * 8 + 2 * 4 + 8 + 2 * 4;
constexpr size_t kWriteBufferBytes = 1 << 20;

uint32_t Crc(uint32_t crc, absl::string_view bytes) {
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

void AppendStat(std::string* out, const Stat& stat) {
  AppendFixed<int64_t>(out, stat.czxid);
  AppendFixed<int64_t>(out, stat.mzxid);
  AppendFixed<int64_t>(out, stat.pzxid);
  AppendFixed<int64_t>(out, stat.ctime);
  AppendFixed<int64_t>(out, stat.mtime);
  AppendFixed<int32_t>(out, stat.version);
  AppendFixed<int32_t>(out, stat.cversion);
  AppendFixed<int64_t>(out, stat.ephemeral_owner);
  AppendFixed<int32_t>(out, stat.data_length);
  AppendFixed<int32_t>(out, stat.num_children);
}

Stat DecodeStat(const char* p) {
  Stat stat;
  stat.czxid = DecodeFixed<int64_t>(p);
  stat.mzxid = DecodeFixed<int64_t>(p + 8);
  stat.pzxid = DecodeFixed<int64_t>(p + 16);
  stat.ctime = DecodeFixed<int64_t>(p + 24);
  stat.mtime = DecodeFixed<int64_t>(p + 32);
  stat.version = DecodeFixed<int32_t>(p + 40);
  stat.cversion = DecodeFixed<int32_t>(p + 44);
  stat.ephemeral_owner = DecodeFixed<int64_t>(p + 48);
  stat.data_length = DecodeFixed<int32_t>(p + 56);
  stat.num_children = DecodeFixed<int32_t>(p + 60);
  return stat;
}

// A cursor over a snapshot's bytes that reports where it ran short.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}
  size_t offset() const { return offset_; }
  // The next `n` bytes, or false when fewer remain.
  bool Take(size_t n, absl::string_view* out) {
    if (bytes_.size() - offset_ < n) return false;
    *out = bytes_.substr(offset_, n);
    offset_ += n;
    return true;
  }

 private:
  absl::string_view bytes_;
  size_t offset_ = 0;
};

// The one decoder of snapshot files. Checks the structure and the checksum of `bytes` (the file
// `path`, named for `zxid`); with a `tree`, also loads every session and node into it. Without a
// tree every error is corruption; with one (after a check without), errors come from the tree.
absl::Status WalkSnapshot(const std::string& path, Zxid zxid, absl::string_view bytes,
                          SnapshotInfo* info, tree::DataTree* tree) {
  auto corrupt = [&](size_t offset, absl::string_view what) {
    return absl::DataLossError(absl::StrCat("snapshot ", path, ": ", what, " at offset ", offset));
  };
  if (bytes.size() < kHeaderBytes + kTrailerBytes) {
    return corrupt(0, absl::StrCat("file too short (", bytes.size(), " bytes)"));
  }
  if (bytes.substr(0, kMagic.size()) != kMagic ||
      DecodeFixed<uint32_t>(bytes.data() + 8) != kFormatVersion) {
    return corrupt(0, absl::StrCat("not a snapshot of format version ", kFormatVersion,
                                   " (header \"", absl::CHexEscape(bytes.substr(0, 12)), "\")"));
  }
  const Zxid header_zxid = Zxid::FromInt(DecodeFixed<int64_t>(bytes.data() + 12));
  if (header_zxid != zxid) {
    return corrupt(12, absl::StrCat("header zxid ", header_zxid.ToString(),
                                    " differs from the file name's ", zxid.ToString()));
  }
  const uint32_t stored_crc = DecodeFixed<uint32_t>(bytes.data() + bytes.size() - 4);
  const uint32_t computed_crc = Crc(0, bytes.substr(0, bytes.size() - 4));
  if (stored_crc != computed_crc) {
    return corrupt(bytes.size() - 4,
                   absl::StrFormat("checksum mismatch (stored 0x%08x, computed 0x%08x)", stored_crc,
                                   computed_crc));
  }
  info->path = path;
  info->zxid = zxid;
  info->digest = DecodeFixed<uint64_t>(bytes.data() + 20);

  Reader reader(bytes.substr(0, bytes.size() - 4));
  absl::string_view unused;
  reader.Take(kHeaderBytes, &unused);
  uint64_t sessions = 0;
  uint64_t nodes = 0;
  for (;;) {
    const size_t at = reader.offset();
    absl::string_view tag;
    if (!reader.Take(1, &tag)) return corrupt(at, "missing trailer");
    if (tag[0] == kSessionTag) {
      absl::string_view b;
      if (!reader.Take(kSessionBytes, &b)) return corrupt(at, "incomplete session record");
      ++sessions;
      if (tree == nullptr) continue;
      tree::SessionInfo session{SessionId(DecodeFixed<int64_t>(b.data())),
                                DecodeFixed<int32_t>(b.data() + 8)};
      if (absl::Status s = tree->LoadSession(session); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("snapshot ", path, ": session at offset ", at,
                                                   ": ", s.message()));
      }
    } else if (tag[0] == kNodeTag) {
      absl::string_view length, node_path, stat, data;
      if (!reader.Take(4, &length) ||
          !reader.Take(DecodeFixed<uint32_t>(length.data()), &node_path) ||
          !reader.Take(kStatBytes, &stat) || !reader.Take(4, &length) ||
          !reader.Take(DecodeFixed<uint32_t>(length.data()), &data)) {
        return corrupt(at, "incomplete node record");
      }
      ++nodes;
      if (tree == nullptr) continue;
      if (absl::Status s = tree->LoadNode(node_path, DecodeStat(stat.data()), data); !s.ok()) {
        return absl::Status(
            s.code(), absl::StrCat("snapshot ", path, ": node at offset ", at, ": ", s.message()));
      }
    } else if (tag[0] == kTrailerTag) {
      absl::string_view counts;
      if (!reader.Take(kTrailerBytes - 1 - 4, &counts)) return corrupt(at, "incomplete trailer");
      const uint64_t want_sessions = DecodeFixed<uint64_t>(counts.data());
      const uint64_t want_nodes = DecodeFixed<uint64_t>(counts.data() + 8);
      if (reader.offset() != bytes.size() - 4) return corrupt(at, "trailer before the end");
      if (want_sessions != sessions || want_nodes != nodes) {
        return corrupt(at,
                       absl::StrCat("trailer counts ", want_sessions, " sessions and ", want_nodes,
                                    " nodes, the file holds ", sessions, " and ", nodes));
      }
      info->nodes = nodes;
      return absl::OkStatus();
    } else {
      return corrupt(
          at, absl::StrFormat("unknown record tag 0x%02x", static_cast<unsigned char>(tag[0])));
    }
  }
}

// The header and trailer fields of a snapshot, read without loading it; zero when unreadable.
void ReadSummary(SnapshotInfo* info) {
  int fd = ::open(info->path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char header[kHeaderBytes];
  char trailer[kTrailerBytes];
  const off_t size = ::lseek(fd, 0, SEEK_END);
  absl::StatusOr<size_t> n = ReadAt(fd, header, sizeof(header), 0, info->path);
  absl::StatusOr<size_t> m = size >= static_cast<off_t>(kHeaderBytes + kTrailerBytes)
                                 ? ReadAt(fd, trailer, sizeof(trailer),
                                          static_cast<uint64_t>(size) - kTrailerBytes, info->path)
                                 : absl::StatusOr<size_t>(0);
  ::close(fd);
  if (n.ok() && *n == sizeof(header) && absl::string_view(header, kMagic.size()) == kMagic) {
    info->digest = DecodeFixed<uint64_t>(header + 20);
  }
  if (m.ok() && *m == sizeof(trailer) && trailer[0] == kTrailerTag) {
    info->nodes = DecodeFixed<uint64_t>(trailer + 9);
  }
}

absl::StatusOr<std::vector<SnapshotInfo>> ListSnapshotFiles(const std::string& dir) {
  absl::StatusOr<std::vector<std::pair<Zxid, std::string>>> files = ListZxidFiles(dir, kFilePrefix);
  if (!files.ok()) return files.status();
  std::vector<SnapshotInfo> snapshots;
  for (auto it = files->rbegin(); it != files->rend(); ++it) {
    snapshots.push_back(SnapshotInfo{std::move(it->second), it->first, 0, 0});
  }
  return snapshots;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SnapshotWriter>> SnapshotWriter::Create(const std::string& dir,
                                                                       Zxid zxid, uint64_t digest) {
  std::unique_ptr<SnapshotWriter> writer(new SnapshotWriter());
  writer->dir_ = dir;
  writer->final_path_ = SnapshotFilePath(dir, zxid);
  writer->tmp_path_ = absl::StrCat(writer->final_path_, kTmpSuffix);
  writer->fd_ = ::open(writer->tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (writer->fd_ < 0) return ErrnoError("create snapshot", writer->tmp_path_, errno);
  std::string header(kMagic);
  AppendFixed<uint32_t>(&header, kFormatVersion);
  AppendFixed<int64_t>(&header, zxid.ToInt());
  AppendFixed<uint64_t>(&header, digest);
  if (absl::Status s = writer->Write(header); !s.ok()) return s;
  return writer;
}

SnapshotWriter::~SnapshotWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

absl::Status SnapshotWriter::AddSession(const tree::SessionInfo& session) {
  std::string record(1, kSessionTag);
  AppendFixed<int64_t>(&record, session.id.value());
  AppendFixed<int32_t>(&record, session.timeout_ms);
  ++sessions_;
  return Write(record);
}

absl::Status SnapshotWriter::AddNode(absl::string_view path, const Stat& stat,
                                     absl::string_view data) {
  std::string record(1, kNodeTag);
  AppendFixed<uint32_t>(&record, static_cast<uint32_t>(path.size()));
  record.append(path.data(), path.size());
  AppendStat(&record, stat);
  AppendFixed<uint32_t>(&record, static_cast<uint32_t>(data.size()));
  ++nodes_;
  if (absl::Status s = Write(record); !s.ok()) return s;
  return Write(data);
}

absl::StatusOr<std::string> SnapshotWriter::Commit() {
  std::string trailer(1, kTrailerTag);
  AppendFixed<uint64_t>(&trailer, sessions_);
  AppendFixed<uint64_t>(&trailer, nodes_);
  if (absl::Status s = Write(trailer); !s.ok()) return s;
  AppendFixed<uint32_t>(&buffer_, crc_);  // the crc covers everything before it, not itself
  if (absl::Status s = FlushBuffer(); !s.ok()) return s;
  if (::fsync(fd_) != 0) return error_ = ErrnoError("fsync", tmp_path_, errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return error_ = ErrnoError("close", tmp_path_, errno);
  if (::rename(tmp_path_.c_str(), final_path_.c_str()) != 0) {
    return error_ = ErrnoError(absl::StrCat("rename to ", final_path_, " of"), tmp_path_, errno);
  }
  committed_ = true;
  if (absl::Status s = SyncDirectory(dir_); !s.ok()) return error_ = s;
  return final_path_;
}

absl::Status SnapshotWriter::Write(absl::string_view bytes) {
  if (!error_.ok()) return error_;
  if (committed_ || fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", final_path_, " is already committed"));
  }
  crc_ = Crc(crc_, bytes);
  buffer_.append(bytes.data(), bytes.size());
  return buffer_.size() >= kWriteBufferBytes ? FlushBuffer() : absl::OkStatus();
}

absl::Status SnapshotWriter::FlushBuffer() {
  if (!error_.ok()) return error_;
  if (absl::Status s = WriteAt(fd_, buffer_, offset_, tmp_path_); !s.ok()) return error_ = s;
  offset_ += buffer_.size();
  buffer_.clear();
  return absl::OkStatus();
}

std::vector<SnapshotInfo> ListSnapshots(const std::string& dir) {
  absl::StatusOr<std::vector<SnapshotInfo>> snapshots = ListSnapshotFiles(dir);
  if (!snapshots.ok()) return {};
  for (SnapshotInfo& info : *snapshots) ReadSummary(&info);
  return *std::move(snapshots);
}

namespace {

absl::Status CheckFresh(const std::string& where, const tree::DataTree& tree) {
  if (!tree.last_applied().IsZero() || tree.node_count() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("loading a snapshot from ", where, " needs a fresh tree; this one is at zxid ",
                     tree.last_applied().ToString(), " with ", tree.node_count(), " nodes"));
  }
  return absl::OkStatus();
}

// Loads `info` into `tree`. DATA_LOSS, with `tree` untouched, when the file does not verify whole;
// once it has, a failure is not a bad file but a bad image, and the tree holds part of it.
absl::Status LoadVerified(SnapshotInfo& info, tree::DataTree* tree, bool* bad_file) {
  *bad_file = false;
  absl::StatusOr<std::string> bytes = ReadWholeFile(info.path);
  absl::Status verified = bytes.status();
  if (verified.ok()) verified = WalkSnapshot(info.path, info.zxid, *bytes, &info, nullptr);
  if (!verified.ok()) {
    *bad_file = true;
    return absl::DataLossError(absl::StrCat("snapshot ", info.path, ": ", verified.message()));
  }
  if (absl::Status s = WalkSnapshot(info.path, info.zxid, *bytes, &info, tree); !s.ok()) return s;
  if (absl::Status s = tree->FinishLoad(info.zxid, info.digest); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("snapshot ", info.path,
                                               " (checksum valid) does not load: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<SnapshotInfo>> LoadLatestSnapshot(const std::string& dir,
                                                               tree::DataTree* tree,
                                                               std::vector<std::string>* warnings) {
  if (absl::Status fresh = CheckFresh(dir, *tree); !fresh.ok()) return fresh;
  // Left by a crash while writing: never renamed into place, so never complete.
  if (absl::StatusOr<std::vector<std::pair<Zxid, std::string>>> stale =
          ListZxidFiles(dir, kFilePrefix, kTmpSuffix);
      stale.ok()) {
    for (const auto& [zxid, path] : *stale) ::unlink(path.c_str());
  }
  absl::StatusOr<std::vector<SnapshotInfo>> snapshots = ListSnapshotFiles(dir);
  if (absl::IsNotFound(snapshots.status())) return std::nullopt;
  if (!snapshots.ok()) return snapshots.status();
  for (SnapshotInfo& info : *snapshots) {
    bool bad_file = false;
    absl::Status loaded = LoadVerified(info, tree, &bad_file);
    if (bad_file) {
      if (warnings != nullptr) {
        warnings->push_back(absl::StrCat("skipping ", loaded.message()));
      }
      continue;
    }
    if (!loaded.ok()) return loaded;
    return info;
  }
  return std::nullopt;
}

absl::StatusOr<SnapshotInfo> LoadSnapshotFile(const std::string& path, Zxid zxid,
                                              tree::DataTree* tree) {
  if (absl::Status fresh = CheckFresh(path, *tree); !fresh.ok()) return fresh;
  SnapshotInfo info;
  info.path = path;
  info.zxid = zxid;
  bool bad_file = false;
  if (absl::Status loaded = LoadVerified(info, tree, &bad_file); !loaded.ok()) return loaded;
  return info;
}

absl::Status PurgeSnapshots(const std::string& dir, size_t keep) {
  if (keep == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to purge every snapshot in ", dir, " (keep must be at least 1)"));
  }
  absl::StatusOr<std::vector<SnapshotInfo>> snapshots = ListSnapshotFiles(dir);
  if (!snapshots.ok()) return snapshots.status();
  if (snapshots->size() <= keep) return absl::OkStatus();
  for (size_t i = keep; i < snapshots->size(); ++i) {
    const std::string& path = (*snapshots)[i].path;
    if (::unlink(path.c_str()) != 0) return ErrnoError("remove snapshot", path, errno);
  }
  return SyncDirectory(dir);
}

std::string SnapshotFilePath(const std::string& dir, Zxid zxid) {
  return absl::StrCat(dir, "/", ZxidFileName(kFilePrefix, zxid));
}

}  // namespace confab::storage
