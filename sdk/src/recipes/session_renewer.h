// SessionRenewer: the session of a recipe that owns its Client (KeptRegistration, and ConfigCache
// built from ClientOptions). A Client's LOST is final (client.h) and Client::Connect fails while
// no member answers, so the renewer does what an application would otherwise do by hand: on its
// thread ("confab-renew") it connects a Client, retrying with the options' reconnect backoff until
// one connects, and hands it to `set_up` (register, load...) until that succeeds, retrying it
// after a backoff; when the session is LOST it closes that Client and starts over with a new one
// (a new session).
//
// `observe` is told every state of every Client (on that Client's callback thread), after the
// application's own listener from the options. The Clients come one after another: the previous
// one is closed, its callbacks all run, before the next connects.
//
// Stop() ends it: a connect in progress finishes first (at most the options' connect_timeout),
// the current Client is closed (deleting its ephemerals when connected) and no callback runs
// after it returns. Not from `set_up` or `observe`.
#ifndef CONFAB_SDK_SRC_RECIPES_SESSION_RENEWER_H_
#define CONFAB_SDK_SRC_RECIPES_SESSION_RENEWER_H_

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "confab/client.h"

namespace confab::recipes_internal {

class SessionRenewer {
 public:
  using SetUp = absl::AnyInvocable<absl::Status(Client& client)>;
  using StateObserver = absl::AnyInvocable<void(ConnectionState state)>;

  // Starts the thread at once.
  SessionRenewer(ClientOptions options, SetUp set_up, StateObserver observe);
  ~SessionRenewer();  // Stop()
  SessionRenewer(const SessionRenewer&) = delete;
  SessionRenewer& operator=(const SessionRenewer&) = delete;

  void Stop();

  // The error of the last failed connect or set_up (OK before any).
  absl::Status LastError();

  // Runs `fn` on the current Client (FAILED_PRECONDITION when none is connected). The Client
  // stays alive while `fn` runs, but may be closed meanwhile (its calls then fail).
  absl::Status WithClient(absl::FunctionRef<absl::Status(Client&)> fn);

 private:
  void Run();
  // Waits until stopped or the current session is lost, at most `timeout`.
  void Wait(absl::Duration timeout);
  void OnState(uint64_t generation, ConnectionState state);

  ClientOptions options_;  // the state listener moved out into app_listener_
  std::shared_ptr<StateListener> app_listener_;
  SetUp set_up_;
  StateObserver observe_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // of the current Client
  bool lost_ ABSL_GUARDED_BY(mu_) = false;        // the current Client's session is LOST
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  // Replaced only by the renewer thread (with mu_ held), so that thread reads it freely. Shared,
  // so Stop() and WithClient() can use it outside mu_ (closing a Client waits for its callbacks,
  // which take mu_).
  std::shared_ptr<Client> client_;

  std::thread thread_;
};

}  // namespace confab::recipes_internal

#endif  // CONFAB_SDK_SRC_RECIPES_SESSION_RENEWER_H_
