// LeaderElection: one leader among candidates, on confab::Client, with Curator's LeaderLatch
// layout (the same protected, sequential naming as the Python recipes):
//
//   <election_path>                              persistent (created on demand)
//   <election_path>/_c_<uuid>-latch-<10 digits>  EPHEMERAL_SEQUENTIAL, one per candidate
//
// The candidate whose node has the lowest sequence number leads. Every other candidate watches
// only its predecessor (no herd) and looks again when it goes. The fencing epoch of a term is the
// leader node's czxid: a later leader always has a greater one.
//
// Connection states: the Client reports its state only to the listener given in ClientOptions,
// so the application forwards it: OnConnectionState(state) (ConnectionStateRelay below does the
// plumbing). On SUSPENDED or LOST the leader reports the loss at once (it can no longer be sure
// it leads: Curator's rule); on RECONNECTED the candidate looks again and, if its node is still
// the lowest, reports the gain again (same node, same epoch). LOST is final: the node went with
// the session; the application builds a new Client and a new LeaderElection.
//
// Callbacks (on_gain(epoch), on_loss()) run on the Client's callback thread, one at a time,
// alternating (gain, loss, gain, ...), never after Close() returns (unless Close() is called from
// one of them). They may call IsLeader(), epoch() and the Client, but not Close().
//
// Ownership: borrows the Client (it must outlive the election); owns its candidate node (deleted
// by Close() or destruction). Methods may be called from any thread except where noted.
#ifndef CONFAB_LEADER_ELECTION_H_
#define CONFAB_LEADER_ELECTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "confab/client.h"

namespace confab {

// Fans the Client's state changes out to several subscribers (a Client has one listener):
//   auto relay = std::make_shared<ConnectionStateRelay>();
//   options.state_listener = relay->Listener();
//   ... relay->Subscribe([&election](ConnectionState s) { election->OnConnectionState(s); });
// Subscribers run where the listener runs (the Client's callback thread). Thread-safe.
class ConnectionStateRelay : public std::enable_shared_from_this<ConnectionStateRelay> {
 public:
  using Subscriber = absl::AnyInvocable<void(ConnectionState state)>;
  StateListener Listener();  // keeps the relay alive
  void Subscribe(Subscriber subscriber);

 private:
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_ ABSL_GUARDED_BY(mu_);
};

struct LeaderCallbacks {
  absl::AnyInvocable<void(int64_t epoch)> on_gain;  // may be empty
  absl::AnyInvocable<void()> on_loss;               // may be empty
};

class LeaderElection {
 public:
  LeaderElection(Client* client, std::string election_path, LeaderCallbacks callbacks = {});
  ~LeaderElection();  // Close()
  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  // Creates the candidate node (protected create: at most once) and starts contending; the
  // outcome is reported through the callbacks. Not from a Client callback.
  absl::Status Start();

  // Leaves the election: deletes the candidate node; no callback runs after it returns (a
  // leader is not told of a loss it caused itself). Idempotent.
  void Close();

  bool IsLeader() const;
  int64_t epoch() const;  // the term's epoch while leader, else 0
  std::string node_path() const;

  // Forward the Client's state changes here (see the header comment).
  void OnConnectionState(ConnectionState state);

  struct State;  // shared with the Client's callbacks (internal)

 private:
  Client* client_;
  std::shared_ptr<State> state_;
};

}  // namespace confab

#endif  // CONFAB_LEADER_ELECTION_H_
