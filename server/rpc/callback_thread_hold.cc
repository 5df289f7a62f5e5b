#include "server/rpc/callback_thread_hold.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "spdlog/spdlog.h"

namespace confab::rpc {
namespace {

int CountThreadsNamed(const std::string& name) {
  int count = 0;
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", error)) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) ++count;
  }
  return count;
}

}  // namespace

CallbackThreadHold::CallbackThreadHold(const std::string& address, int keep) {
  if (keep <= 0) return;
  // gRPC's threads take their name once they run: count until the count holds still.
  int threads = 0;
  for (int i = 0; i < kCountTries; ++i) {
    const int counted = CountThreadsNamed("nexting_thread");
    if (counted > 0 && counted == threads) break;
    threads = counted;
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (threads <= keep) return;
  channel_ = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  stub_ = v1::Coordination::NewStub(channel_);
  for (int i = 1; i <= threads - keep; ++i) {
    Call& call = *calls_.emplace_back(std::make_unique<Call>());
    call.context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
    stub_->async()->Status(&call.context, &call.request, &call.response,
                           [this](const grpc::Status& /*status*/) {
                             absl::MutexLock lock(&mu_);
                             ++held_;
                             mu_.Await(absl::Condition(&released_));
                             --held_;
                             ++returned_;
                           });
    // One at a time: a held thread cannot take the next call's reaction.
    absl::MutexLock lock(&mu_);
    auto taken = [this, i]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_ >= i; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&taken), kCallDeadline)) break;
  }
  absl::MutexLock lock(&mu_);
  spdlog::info("gRPC callback threads: {} of {} held idle, {} left to serve", held_, threads,
               threads - held_);
}

CallbackThreadHold::~CallbackThreadHold() { Release(); }

void CallbackThreadHold::Release() {
  absl::MutexLock lock(&mu_);
  released_ = true;
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return returned_ == static_cast<int>(calls_.size());
  };
  mu_.Await(absl::Condition(&done));
}

}  // namespace confab::rpc
