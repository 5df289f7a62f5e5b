#include "server/storage/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <limits>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/storage/durable_file.h"

namespace confab::storage {
namespace {

constexpr absl::string_view kAcceptedEpoch = "accepted_epoch";
constexpr absl::string_view kCurrentEpoch = "current_epoch";
constexpr size_t kLockContentsMax = 64;

// mkdir -p: every missing component, each made durable in its parent.
absl::Status MakeDirectories(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    if (absl::Status s = MakeDirectoryDurably(path.substr(0, slash)); !s.ok()) return s;
    if (slash == std::string::npos) return absl::OkStatus();
  }
}

absl::Status CheckEpochName(absl::string_view name) {
  // Only the two records ZAB keeps: a misspelt name would silently read as epoch 0.
  if (name == kAcceptedEpoch || name == kCurrentEpoch) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("unknown epoch record \"", name, "\" (expected ",
                                                 kAcceptedEpoch, " or ", kCurrentEpoch, ")"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(const std::string& path) {
  std::string dir = path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return absl::InvalidArgumentError("data directory path is empty");
  if (absl::Status s = MakeDirectories(dir); !s.ok()) return s;
  for (const char* sub : {"/log", "/snap"}) {
    if (absl::Status s = MakeDirectoryDurably(dir + sub); !s.ok()) return s;
  }

  const std::string lock_path = dir + "/LOCK";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("open lock file", lock_path, errno);
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) {
      ::close(fd);
      return ErrnoError("lock", lock_path, err);
    }
    char contents[kLockContentsMax];
    absl::StatusOr<size_t> n = ReadAt(fd, contents, sizeof(contents), 0, lock_path);
    ::close(fd);
    std::string holder = "unknown pid";
    if (n.ok()) {
      absl::string_view pid = absl::StripAsciiWhitespace(absl::string_view(contents, *n));
      if (!pid.empty()) holder = absl::StrCat("pid ", absl::CHexEscape(pid));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("data directory ", dir, " is in use by another confabd (", holder,
                     "); only one server may use a data directory"));
  }
  const std::string pid = absl::StrCat(::getpid(), "\n");
  absl::Status status;
  if (::ftruncate(fd, 0) != 0) status = ErrnoError("truncate", lock_path, errno);
  if (status.ok()) status = WriteAt(fd, pid, 0, lock_path);
  if (!status.ok()) {
    ::close(fd);
    return status;
  }
  return std::unique_ptr<DataDir>(new DataDir(dir, fd));
}

DataDir::~DataDir() { ::close(lock_fd_); }

absl::StatusOr<Epoch> DataDir::ReadEpoch(absl::string_view name) const {
  if (absl::Status s = CheckEpochName(name); !s.ok()) return s;
  const std::string file = absl::StrCat(path_, "/", name);
  absl::StatusOr<std::string> contents = ReadWholeFile(file);
  if (absl::IsNotFound(contents.status())) return Epoch{0};
  if (!contents.ok()) return contents.status();
  absl::string_view text = *contents;
  uint64_t value = 0;
  bool well_formed = !text.empty() && text.back() == '\n' && text.size() <= 11;
  if (well_formed) {
    text.remove_suffix(1);
    well_formed = !text.empty() && absl::c_all_of(text, absl::ascii_isdigit) &&
                  absl::SimpleAtoi(text, &value) && value <= std::numeric_limits<Epoch>::max();
  }
  if (!well_formed) {
    absl::string_view shown = absl::string_view(*contents).substr(0, kLockContentsMax);
    return absl::DataLossError(
        absl::StrCat("epoch file ", file, " is malformed: it holds \"", absl::CHexEscape(shown),
                     "\"", contents->size() > shown.size() ? "..." : "",
                     " (expected a decimal epoch and a newline); refusing to guess an epoch"));
  }
  return static_cast<Epoch>(value);
}

absl::Status DataDir::WriteEpoch(absl::string_view name, Epoch epoch) {
  if (absl::Status s = CheckEpochName(name); !s.ok()) return s;
  return WriteFileDurably(absl::StrCat(path_, "/", name), absl::StrCat(epoch, "\n"));
}

}  // namespace confab::storage
