#include "server/storage/durable_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace confab::storage {
namespace {

// Closes a descriptor on scope exit; errors of close() on a read-only or already-synced file carry
// nothing to act on.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

constexpr size_t kZxidHexDigits = 16;

std::optional<Zxid> ParseZxidHex(absl::string_view hex) {
  if (hex.size() != kZxidHexDigits) return std::nullopt;
  uint64_t value = 0;
  for (char c : hex) {
    uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    value = value << 4 | digit;
  }
  return Zxid::FromInt(static_cast<int64_t>(value));
}

}  // namespace

std::string ZxidFileName(absl::string_view prefix, Zxid zxid, absl::string_view suffix) {
  return absl::StrFormat("%s%016x%s", prefix, static_cast<uint64_t>(zxid.ToInt()), suffix);
}

absl::StatusOr<std::vector<std::pair<Zxid, std::string>>> ListZxidFiles(const std::string& dir,
                                                                        absl::string_view prefix,
                                                                        absl::string_view suffix) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoError("list directory", dir, errno);
  std::vector<std::pair<Zxid, std::string>> files;
  for (;;) {
    errno = 0;
    struct dirent* entry = ::readdir(d);
    if (entry == nullptr) break;
    absl::string_view name = entry->d_name;
    if (!absl::ConsumePrefix(&name, prefix) || !absl::ConsumeSuffix(&name, suffix)) continue;
    if (std::optional<Zxid> zxid = ParseZxidHex(name)) {
      files.emplace_back(*zxid, absl::StrCat(dir, "/", entry->d_name));
    }
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoError("list directory", dir, err);
  std::sort(files.begin(), files.end());
  return files;
}

absl::Status ErrnoError(absl::string_view what, const std::string& path, int err) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

absl::Status WriteAt(int fd, absl::string_view bytes, uint64_t offset, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(absl::StrCat("write of ", bytes.size(), " bytes at offset ", offset, " to"),
                        path, errno);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> ReadAt(int fd, char* out, size_t size, uint64_t offset,
                              const std::string& path) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(absl::StrCat("read at offset ", offset + done, " of"), path, errno);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory", dir, errno);
  FdCloser closer(fd);
  if (::fsync(fd) != 0) return ErrnoError("fsync directory", dir, errno);
  return absl::OkStatus();
}

absl::Status MakeDirectoryDurably(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0) return SyncDirectory(DirOf(dir));
  if (errno != EEXIST) return ErrnoError("create directory", dir, errno);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoError("stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status WriteFileDurably(const std::string& path, absl::string_view contents) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create", tmp, errno);
  absl::Status status = WriteAt(fd, contents, 0, tmp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError("fsync", tmp, errno);
  if (::close(fd) != 0 && status.ok()) status = ErrnoError("close", tmp, errno);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(absl::StrCat("rename to ", path, " of"), tmp, errno);
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return SyncDirectory(DirOf(path));
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError("stat", path, errno);
  std::string contents(static_cast<size_t>(st.st_size), '\0');
  absl::StatusOr<size_t> n = ReadAt(fd, contents.data(), contents.size(), 0, path);
  if (!n.ok()) return n.status();
  contents.resize(*n);
  // The file may have grown since fstat; read whatever follows.
  char chunk[4096];
  for (;;) {
    absl::StatusOr<size_t> more = ReadAt(fd, chunk, sizeof(chunk), contents.size(), path);
    if (!more.ok()) return more.status();
    if (*more == 0) break;
    contents.append(chunk, *more);
  }
  return contents;
}

}  // namespace confab::storage
