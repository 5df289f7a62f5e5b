#include "tests/bench/server_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace confab::bench {
namespace {

absl::StatusOr<std::string> ReadProcFile(int pid, absl::string_view name) {
  std::string path = absl::StrCat("/proc/", pid, "/", name);
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

double TimevalSeconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

}  // namespace

absl::StatusOr<double> ProcessCpuSeconds(int pid) {
  absl::StatusOr<std::string> stat = ReadProcFile(pid, "stat");
  if (!stat.ok()) return stat.status();
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its
  // closing parenthesis, which starts with field 3 (state). utime and stime are fields 14, 15.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return absl::DataLossError(absl::StrCat("/proc/", pid, "/stat"));
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0;
  int64_t stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::DataLossError(absl::StrCat("unexpected /proc/", pid, "/stat: ", *stat));
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

absl::StatusOr<int64_t> ProcessRssBytes(int pid) {
  absl::StatusOr<std::string> statm = ReadProcFile(pid, "statm");
  if (!statm.ok()) return statm.status();
  std::vector<absl::string_view> fields = absl::StrSplit(*statm, ' ', absl::SkipEmpty());
  int64_t pages = 0;
  if (fields.size() < 2 || !absl::SimpleAtoi(fields[1], &pages)) {
    return absl::DataLossError(absl::StrCat("unexpected /proc/", pid, "/statm: ", *statm));
  }
  return pages * sysconf(_SC_PAGESIZE);
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return TimevalSeconds(usage.ru_utime) + TimevalSeconds(usage.ru_stime);
}

absl::StatusOr<std::string> FetchOverTcp(absl::string_view host_port, absl::string_view request,
                                         absl::Duration timeout) {
  std::pair<std::string, std::string> parts = absl::StrSplit(host_port, absl::MaxSplits(':', 1));
  int port = 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  if (!absl::SimpleAtoi(parts.second, &port) ||
      inet_pton(AF_INET, parts.first.c_str(), &address.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 host:port: ", host_port));
  }
  address.sin_port = htons(static_cast<uint16_t>(port));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  auto fail = [&](absl::string_view what) {
    absl::Status error =
        absl::UnavailableError(absl::StrCat(what, " ", host_port, ": ", std::strerror(errno)));
    close(fd);
    return error;
  };
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return fail("connect");
  }
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return fail("send to");
  }
  std::string reply;
  const absl::Time deadline = absl::Now() + timeout;
  char buffer[16384];
  while (true) {
    pollfd readable{fd, POLLIN, 0};
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0 || poll(&readable, 1, wait_ms) <= 0) {
      errno = ETIMEDOUT;
      return fail("read from");
    }
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("read from");
    if (n == 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return reply;
}

std::optional<double> FindMetric(absl::string_view text, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) continue;
    if (line.empty() || (line[0] != ' ' && line[0] != '\t')) continue;
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &value)) return value;
  }
  return std::nullopt;
}

}  // namespace confab::bench
