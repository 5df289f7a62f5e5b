#include "confab/testing/local_ensemble.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace confab::testing {
namespace {

std::string ConfabdPath(const LocalEnsembleOptions& options) {
  if (!options.confabd_path.empty()) return options.confabd_path;
  if (const char* env = std::getenv("CONFABD"); env != nullptr && *env != '\0') return env;
  return "confabd";
}

// Waits (bounded) for `pid` to exit; true with its wait status if it did.
bool WaitExit(pid_t pid, absl::Duration timeout, int* status) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

// A port free on 127.0.0.1 now (the kernel picks it; another process could take it before the
// member binds it, which start-up then reports).
absl::StatusOr<int> FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    int error = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("bind 127.0.0.1:0: ", strerror(error)));
  }
  close(fd);
  return ntohs(address.sin_port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalEnsemble>> LocalEnsemble::Start(LocalEnsembleOptions options) {
  if (options.members < 1 || options.members > 9) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalEnsemble of ", options.members, " members: use 1 to 9 (1, 3 or 5)"));
  }
  std::unique_ptr<LocalEnsemble> ensemble(new LocalEnsemble(std::move(options)));
  std::string root_template =
      (std::filesystem::temp_directory_path() / "confab-ensemble-XXXXXX").string();
  if (mkdtemp(root_template.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", root_template, ": ", strerror(errno)));
  }
  ensemble->root_ = root_template;
  for (int i = 0; i < ensemble->options_.members; ++i) {
    Member member;
    member.data_dir = absl::StrCat(ensemble->root_, "/member", i + 1);
    member.log_file = absl::StrCat(ensemble->root_, "/member", i + 1, ".log");
    if (ensemble->options_.members > 1) {
      absl::StatusOr<int> port = FreeLoopbackPort();
      if (!port.ok()) return port.status();
      member.peer_port = *port;
    }
    ensemble->members_.push_back(member);
  }
  for (int i = 0; i < ensemble->size(); ++i) {
    if (auto status = ensemble->Launch(i); !status.ok()) return status;
  }
  if (ensemble->size() > 1) {
    absl::StatusOr<int> leader = ensemble->WaitForLeader(ensemble->options_.start_timeout);
    if (!leader.ok()) return leader.status();
  }
  return ensemble;
}

LocalEnsemble::~LocalEnsemble() {
  for (Member& member : members_) {
    if (member.pid > 0) {
      kill(member.pid, SIGCONT);
      kill(member.pid, SIGKILL);
      int status;
      WaitExit(member.pid, absl::Seconds(10), &status);
      member.pid = -1;
    }
  }
  if (!options_.keep_dirs && !root_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
}

absl::Status LocalEnsemble::Launch(int index) {
  Member& member = members_[index];
  std::string address_file = member.data_dir + "/ADDRESS";
  std::error_code ignored;
  std::filesystem::remove(address_file, ignored);
  std::vector<std::string> args = {ConfabdPath(options_), "--data-dir=" + member.data_dir,
                                   absl::StrCat("--listen=127.0.0.1:", member.port)};
  if (size() > 1) {
    std::vector<std::string> peers;
    for (int i = 0; i < size(); ++i) {
      peers.push_back(absl::StrCat(i + 1, "=127.0.0.1:", members_[i].peer_port));
    }
    args.push_back(absl::StrCat("--id=", index + 1));
    args.push_back("--peers=" + absl::StrJoin(peers, ","));
  }
  for (const std::string& flag : options_.extra_flags) args.push_back(flag);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    int fd = open(member.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    execvp(argv[0], argv.data());
    _exit(127);
  }
  member.pid = pid;
  member.paused = false;
  absl::Time deadline = absl::Now() + options_.start_timeout;
  while (absl::Now() < deadline) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      member.pid = -1;
      return absl::InternalError(absl::StrCat("confabd member ", index + 1,
                                              " exited during start-up; see ", member.log_file));
    }
    std::ifstream in(address_file);
    std::string address;
    if (in && std::getline(in, address) && !address.empty()) {
      int port = 0;
      if (absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port) && port > 0) {
        member.port = port;
        return absl::OkStatus();
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("confabd member ", index + 1, " did not start listening within ",
                   absl::FormatDuration(options_.start_timeout), "; see ", member.log_file));
}

absl::Status LocalEnsemble::CheckMember(int member) const {
  if (member < 0 || member >= size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("member ", member, " is not in 0..", size() - 1));
  }
  return absl::OkStatus();
}

std::string LocalEnsemble::ConnectString() const {
  std::vector<std::string> endpoints;
  for (int i = 0; i < size(); ++i) endpoints.push_back(Endpoint(i));
  return absl::StrJoin(endpoints, ",");
}

std::string LocalEnsemble::Endpoint(int member) const {
  return absl::StrCat("127.0.0.1:", members_[member].port);
}
std::string LocalEnsemble::DataDir(int member) const { return members_[member].data_dir; }
std::string LocalEnsemble::LogFile(int member) const { return members_[member].log_file; }
bool LocalEnsemble::IsRunning(int member) const { return members_[member].pid > 0; }
pid_t LocalEnsemble::Pid(int member) const { return members_[member].pid; }

absl::Status LocalEnsemble::Kill(int member) {
  if (auto status = CheckMember(member); !status.ok()) return status;
  Member& m = members_[member];
  if (m.pid <= 0) return absl::FailedPreconditionError("member is not running");
  kill(m.pid, SIGKILL);
  int status;
  WaitExit(m.pid, absl::Seconds(10), &status);
  m.pid = -1;
  return absl::OkStatus();
}

absl::Status LocalEnsemble::Stop(int member) {
  if (auto status = CheckMember(member); !status.ok()) return status;
  Member& m = members_[member];
  if (m.pid <= 0) return absl::FailedPreconditionError("member is not running");
  kill(m.pid, SIGCONT);
  kill(m.pid, SIGTERM);
  int status = 0;
  if (!WaitExit(m.pid, absl::Seconds(20), &status)) {
    kill(m.pid, SIGKILL);
    WaitExit(m.pid, absl::Seconds(10), &status);
    m.pid = -1;
    return absl::DeadlineExceededError(
        absl::StrCat("member ", member + 1, " did not exit within 20s of SIGTERM"));
  }
  m.pid = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("member ", member + 1,
                                            " did not exit cleanly (wait status ", status,
                                            "); see ", m.log_file));
  }
  return absl::OkStatus();
}

absl::Status LocalEnsemble::Restart(int member) {
  if (auto status = CheckMember(member); !status.ok()) return status;
  if (members_[member].pid > 0) return absl::FailedPreconditionError("member is running");
  return Launch(member);
}

absl::Status LocalEnsemble::Pause(int member) {
  if (auto status = CheckMember(member); !status.ok()) return status;
  if (members_[member].pid <= 0) return absl::FailedPreconditionError("member is not running");
  kill(members_[member].pid, SIGSTOP);
  members_[member].paused = true;
  return absl::OkStatus();
}

absl::Status LocalEnsemble::Resume(int member) {
  if (auto status = CheckMember(member); !status.ok()) return status;
  if (members_[member].pid <= 0) return absl::FailedPreconditionError("member is not running");
  kill(members_[member].pid, SIGCONT);
  members_[member].paused = false;
  return absl::OkStatus();
}

absl::Status LocalEnsemble::Wipe(int member) {
  if (auto status = CheckMember(member); !status.ok()) return status;
  if (members_[member].pid > 0) return absl::FailedPreconditionError("member is running");
  std::error_code error;
  std::filesystem::remove_all(members_[member].data_dir, error);
  if (error)
    return absl::InternalError(
        absl::StrCat("remove ", members_[member].data_dir, ": ", error.message()));
  return absl::OkStatus();
}

absl::StatusOr<LocalEnsemble::MemberState> LocalEnsemble::State(int member) const {
  if (auto status = CheckMember(member); !status.ok()) return status;
  if (members_[member].pid <= 0) return absl::FailedPreconditionError("member is not running");
  auto stub = v1::Coordination::NewStub(
      grpc::CreateChannel(Endpoint(member), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  v1::StatusRequest request;
  v1::StatusResponse response;
  grpc::Status status = stub->Status(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("Status of member ", member + 1, ": ", status.error_message()));
  }
  MemberState state;
  state.role = v1::MemberRole_Name(response.role());
  state.serving = response.serving();
  state.last_zxid = response.last_zxid();
  state.digest = response.digest();
  return state;
}

absl::StatusOr<int> LocalEnsemble::Leader() const {
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid <= 0 || members_[i].paused) continue;
    absl::StatusOr<MemberState> state = State(i);
    if (state.ok() && state->serving && (state->role == "LEADING" || state->role == "STANDALONE")) {
      return i;
    }
  }
  return absl::NotFoundError("no member leads and serves");
}

absl::StatusOr<int> LocalEnsemble::WaitForLeader(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  for (;;) {
    absl::StatusOr<int> leader = Leader();
    bool all_serving = leader.ok();
    for (int i = 0; all_serving && i < size(); ++i) {
      if (members_[i].pid <= 0 || members_[i].paused) continue;
      absl::StatusOr<MemberState> state = State(i);
      all_serving = state.ok() && state->serving;
      if (!all_serving) {
        last = state.ok() ? absl::StrCat("member ", i + 1, " is ", state->role)
                          : std::string(state.status().message());
      }
    }
    if (all_serving) return *leader;
    if (!leader.ok()) last = std::string(leader.status().message());
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no leader with every running member serving within ",
                       absl::FormatDuration(timeout), ": ", last));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace confab::testing
