// A child process for integration tests (confabctl, the samples): argv and environment built
// before fork() (a multithreaded parent's child may only make async-signal-safe calls), stdin
// fed then closed, stdout and stderr collected while the test waits on it, every wait bounded,
// and the process killed and reaped if the test leaves it running.
#ifndef CONFAB_TESTS_INTEGRATION_CHILD_PROCESS_H_
#define CONFAB_TESTS_INTEGRATION_CHILD_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

extern char** environ;

namespace confab::itest {

struct ChildOutcome {
  int exit_code = -1;  // -1: killed past its bound, or dead of a signal
  std::string out;
  std::string err;
};

inline std::ostream& operator<<(std::ostream& os, const ChildOutcome& o) {
  return os << "exit " << o.exit_code << "\n--- stdout:\n" << o.out << "--- stderr:\n" << o.err;
}

class ChildProcess {
 public:
  // `env` is the whole environment of the child ("NAME=value"); by default the test's own.
  ChildProcess(std::vector<std::string> args, const std::string& input = "",
               std::vector<std::string> env = CurrentEnvironment()) {
    std::vector<char*> argv = Pointers(args);
    std::vector<char*> envp = Pointers(env);
    int in[2], out[2], err[2];
    EXPECT_EQ(pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(err, O_CLOEXEC), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    EXPECT_GT(pid_, 0);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (!input.empty()) {  // small: fits the pipe's buffer
      EXPECT_EQ(write(in[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
    }
    close(in[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }

  ~ChildProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
    if (err_fd_ >= 0) close(err_fd_);
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  static std::vector<std::string> CurrentEnvironment() {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    return env;
  }

  // Waits (bounded) until stdout contains `text`.
  bool WaitForOutput(absl::string_view text, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!absl::StrContains(outcome_.out, text) && Pump(deadline)) {
    }
    return absl::StrContains(outcome_.out, text);
  }

  // Waits (bounded) until stdout holds `count` complete lines; returns the complete lines.
  std::vector<std::string> WaitForLines(size_t count, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (Lines().size() < count && Pump(deadline)) {
    }
    return Lines();
  }

  void Signal(int signal) { kill(pid_, signal); }

  // Waits (bounded) for the exit, collecting the rest of the output; kills the process past the
  // bound.
  ChildOutcome Finish(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (Pump(deadline)) {
    }
    int status = 0;
    while (pid_ > 0) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (WIFEXITED(status)) outcome_.exit_code = WEXITSTATUS(status);
      } else if (absl::Now() >= deadline) {
        kill(pid_, SIGKILL);
      } else {
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
    return outcome_;
  }

  const std::string& out() const { return outcome_.out; }
  const std::string& err() const { return outcome_.err; }

 private:
  static std::vector<char*> Pointers(std::vector<std::string>& strings) {
    std::vector<char*> pointers;
    for (std::string& s : strings) pointers.push_back(s.data());
    pointers.push_back(nullptr);
    return pointers;
  }

  std::vector<std::string> Lines() const {
    std::vector<std::string> lines = absl::StrSplit(outcome_.out, '\n');
    lines.pop_back();  // the unfinished line after the last '\n'
    return lines;
  }

  // Reads what is there (waiting for it until `deadline`); false once both pipes are at their
  // end or the deadline passed.
  bool Pump(absl::Time deadline) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    std::string* sinks[2] = {&outcome_.out, &outcome_.err};
    if (out_fd_ < 0 && err_fd_ < 0) return false;
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (wait_ms <= 0) return false;
    if (poll(fds, 2, static_cast<int>(wait_ms)) < 0 && errno != EINTR) return false;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        (i == 0 ? out_fd_ : err_fd_) = -1;
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  ChildOutcome outcome_;
};

}  // namespace confab::itest

#endif  // CONFAB_TESTS_INTEGRATION_CHILD_PROCESS_H_
