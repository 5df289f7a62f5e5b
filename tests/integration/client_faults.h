// Faults the integration tests inject between a client and confabd: a TCP proxy they can cut
// (drop every connection, refuse new ones), retarget, or make swallow the server's replies; and a
// session closed from elsewhere (so its client hears SESSION_EXPIRED and goes LOST).
#ifndef CONFAB_TESTS_INTEGRATION_CLIENT_FAULTS_H_
#define CONFAB_TESTS_INTEGRATION_CLIENT_FAULTS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/common/types.h"

namespace confab::itest {

// The port of "host:port".
inline int PortOf(const std::string& endpoint) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(endpoint.substr(endpoint.rfind(':') + 1), &port)) << endpoint;
  return port;
}

// A TCP proxy on 127.0.0.1 in front of `target_port`.
class TcpProxy {
 public:
  explicit TcpProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 64), 0);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~TcpProxy() {
    stop_ = true;
    Cut();
    acceptor_.join();
    std::vector<std::thread> pumps;
    {
      absl::MutexLock lock(&mu_);
      pumps.swap(pumps_);
    }
    for (std::thread& t : pumps) t.join();
    close(listen_fd_);
  }

  std::string Endpoint() const { return absl::StrCat("127.0.0.1:", port_); }

  // Drops every connection and refuses (accepts and closes) new ones until Restore().
  void Cut() {
    absl::MutexLock lock(&mu_);
    cut_ = true;
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
  }
  void Restore() {
    absl::MutexLock lock(&mu_);
    cut_ = false;
  }
  void SetTarget(int port) {
    absl::MutexLock lock(&mu_);
    target_port_ = port;
  }
  // While muted, what the server sends is read and dropped: requests still reach it and are
  // applied, their replies are lost (until Cut()).
  void MuteReplies(bool muted) { replies_muted_ = muted; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      absl::MutexLock lock(&mu_);
      int server = cut_ ? -1 : ConnectTo(target_port_);
      if (server < 0) {
        close(client);
        continue;
      }
      fds_.push_back(client);
      fds_.push_back(server);
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
    }
  }

  static int ConnectTo(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }

  void Pump(int a, int b) {
    char buffer[64 * 1024];
    pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    bool open = true;
    while (open && !stop_) {
      if (poll(p, 2, 50) < 0) break;
      for (int i = 0; i < 2 && open; ++i) {
        if (p[i].revents == 0) continue;
        ssize_t n = read(p[i].fd, buffer, sizeof(buffer));
        if (n <= 0) {
          open = false;
          break;
        }
        if (i == 1 && replies_muted_) continue;  // p[1] is the server's side
        for (ssize_t off = 0; off < n && open;) {
          ssize_t w = send(p[1 - i].fd, buffer + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) open = false;
          off += w;
        }
      }
    }
    absl::MutexLock lock(&mu_);
    for (int fd : {a, b}) {
      shutdown(fd, SHUT_RDWR);
      close(fd);
      fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> replies_muted_{false};
  std::thread acceptor_;
  absl::Mutex mu_;
  int target_port_ ABSL_GUARDED_BY(mu_);
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
};

// Closes session `id` from a stream of its own (resume, then CloseSession), as another process
// holding the session id could.
inline void CloseSessionElsewhere(const std::string& endpoint, SessionId id) {
  auto stub =
      v1::Coordination::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Session(&context);
  v1::ClientMessage message;
  v1::SessionRequest* open = message.add_requests();
  open->set_request_id(1);
  open->mutable_open()->set_session_id(id.value());
  v1::SessionRequest* close = message.add_requests();
  close->set_request_id(2);
  close->mutable_close();
  ASSERT_TRUE(stream->Write(message));
  v1::ServerMessage reply;
  bool closed = false;
  while (!closed && stream->Read(&reply)) {
    for (const v1::SessionResponse& r : reply.responses()) {
      if (r.request_id() == 1) {
        EXPECT_TRUE(r.has_opened()) << r.ShortDebugString();
      }
      if (r.request_id() == 2) {
        EXPECT_TRUE(r.has_closed()) << r.ShortDebugString();
        closed = true;
      }
    }
  }
  EXPECT_TRUE(closed);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace confab::itest

#endif  // CONFAB_TESTS_INTEGRATION_CLIENT_FAULTS_H_
