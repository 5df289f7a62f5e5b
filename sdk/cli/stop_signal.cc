#include "sdk/cli/stop_signal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace confab::cli {
namespace {

// The pipe's write end, for the signal handler (which can reach no object).
int g_write_fd = -1;

void WriteOneByte(int fd) {
  const char byte = 0;
  // Both ends are non-blocking (a handler must never block): a full pipe already holds a
  // wake-up, so a write that fails with EAGAIN loses nothing.
  while (write(fd, &byte, 1) < 0 && errno == EINTR) {
  }
}

extern "C" void OnInterrupt(int /*signal*/) {
  const int saved_errno = errno;
  WriteOneByte(g_write_fd);
  errno = saved_errno;
}

}  // namespace

StopSignal& StopSignal::Get() {
  static StopSignal* const signal = new StopSignal();
  return *signal;
}

StopSignal::StopSignal() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::perror("confabctl: pipe2");
    std::abort();
  }
  read_fd_ = fds[0];
  write_fd_ = fds[1];
  g_write_fd = write_fd_;
}

void StopSignal::CatchInterrupts() {
  struct sigaction action = {};
  action.sa_handler = &OnInterrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

void StopSignal::Fire() { WriteOneByte(write_fd_); }

void StopSignal::Wait() {
  // The bytes stay in the pipe: once fired, every later Wait() returns at once.
  pollfd readable = {.fd = read_fd_, .events = POLLIN, .revents = 0};
  for (;;) {
    const int ready = poll(&readable, 1, -1);
    if (ready > 0) return;
    if (ready < 0 && errno != EINTR) {
      std::perror("confabctl: poll");
      std::abort();
    }
  }
}

}  // namespace confab::cli
