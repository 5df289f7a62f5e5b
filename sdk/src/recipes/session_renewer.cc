#include "sdk/src/recipes/session_renewer.h"

#include <pthread.h>

#include <algorithm>
#include <memory>
#include <utility>

namespace confab::recipes_internal {

SessionRenewer::SessionRenewer(ClientOptions options, SetUp set_up, StateObserver observe)
    : options_(std::move(options)),
      app_listener_(std::make_shared<StateListener>(std::move(options_.state_listener))),
      set_up_(std::move(set_up)),
      observe_(std::move(observe)) {
  options_.state_listener = nullptr;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "confab-renew");
    Run();
  });
}

SessionRenewer::~SessionRenewer() { Stop(); }

void SessionRenewer::Stop() {
  std::shared_ptr<Client> current;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    current = client_;
  }
  // Closing it also ends a set_up blocked on its calls.
  if (current != nullptr) current->Close().IgnoreError();
  if (thread_.joinable()) thread_.join();
}

absl::Status SessionRenewer::WithClient(absl::FunctionRef<absl::Status(Client&)> fn) {
  std::shared_ptr<Client> current;
  {
    absl::MutexLock lock(&mu_);
    current = client_;
  }
  if (current == nullptr) return absl::FailedPreconditionError("no session is open yet");
  return fn(*current);
}

absl::Status SessionRenewer::LastError() {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

void SessionRenewer::OnState(uint64_t generation, ConnectionState state) {
  if (*app_listener_) (*app_listener_)(state);
  observe_(state);
  if (state != ConnectionState::kLost) return;
  absl::MutexLock lock(&mu_);
  if (generation == generation_) lost_ = true;
}

void SessionRenewer::Wait(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](SessionRenewer* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                             return self->stopping_ || self->lost_;
                           },
                           this),
                       timeout);
}

void SessionRenewer::Run() {
  absl::Duration backoff = options_.reconnect_backoff_initial;
  auto back_off = [&](absl::Status error) {
    {
      absl::MutexLock lock(&mu_);
      last_error_ = std::move(error);
    }
    Wait(backoff);
    backoff = std::min(backoff * 2, options_.reconnect_backoff_max);
  };
  bool set_up_done = false;
  while (true) {
    bool lost = false;
    uint64_t generation = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      lost = lost_;
      if (client_ == nullptr) {
        // Before the connect: its LOST may come before Connect returns.
        generation = ++generation_;
        lost_ = false;
      }
    }
    if (client_ == nullptr) {
      ClientOptions options;
      options.endpoints = options_.endpoints;
      options.session_timeout = options_.session_timeout;
      options.connect_timeout = options_.connect_timeout;
      options.request_timeout = options_.request_timeout;
      options.reconnect_backoff_initial = options_.reconnect_backoff_initial;
      options.reconnect_backoff_max = options_.reconnect_backoff_max;
      options.state_listener = [this, generation](ConnectionState state) {
        OnState(generation, state);
      };
      absl::StatusOr<std::unique_ptr<Client>> connected = Client::Connect(std::move(options));
      if (!connected.ok()) {
        back_off(connected.status());
        continue;
      }
      absl::MutexLock lock(&mu_);
      client_ = std::move(*connected);
      set_up_done = false;
      continue;
    }
    if (lost) {
      std::shared_ptr<Client> gone;
      {
        absl::MutexLock lock(&mu_);
        gone = std::move(client_);
      }
      gone->Close().IgnoreError();
      continue;
    }
    if (!set_up_done) {
      if (absl::Status s = set_up_(*client_); !s.ok()) {
        back_off(std::move(s));
        continue;
      }
      set_up_done = true;
      backoff = options_.reconnect_backoff_initial;
    }
    Wait(absl::InfiniteDuration());
  }
  std::shared_ptr<Client> last;
  {
    absl::MutexLock lock(&mu_);
    last = std::move(client_);
  }
  if (last != nullptr) last->Close().IgnoreError();
}

}  // namespace confab::recipes_internal
