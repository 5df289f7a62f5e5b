#include "confab/leader_election.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confab/service_registry.h"
#include "sdk/src/recipes/own_node.h"

namespace confab {

// ---- ConnectionStateRelay ----

StateListener ConnectionStateRelay::Listener() {
  return [self = shared_from_this()](ConnectionState state) {
    std::vector<std::shared_ptr<Subscriber>> subscribers;
    {
      absl::MutexLock lock(&self->mu_);
      subscribers = self->subscribers_;
    }
    for (const auto& s : subscribers) (*s)(state);
  };
}

void ConnectionStateRelay::Subscribe(Subscriber subscriber) {
  absl::MutexLock lock(&mu_);
  subscribers_.push_back(std::make_shared<Subscriber>(std::move(subscriber)));
}

// ---- LeaderElection ----

struct LeaderElection::State : std::enable_shared_from_this<State> {
  Client* client;
  std::string path;
  LeaderCallbacks callbacks;

  // Held while contending or running a callback, so Close() can wait them out.
  absl::Mutex run_mu;
  std::atomic<std::thread::id> running{};

  mutable absl::Mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;
  bool lost ABSL_GUARDED_BY(mu) = false;
  bool leader ABSL_GUARDED_BY(mu) = false;
  std::string node ABSL_GUARDED_BY(mu);
  int64_t czxid ABSL_GUARDED_BY(mu) = 0;

  bool Stopped() {
    absl::MutexLock lock(&mu);
    return closed || lost;
  }

  // Reports a change of leadership. With run_mu held.
  void SetLeader(bool now) {
    int64_t epoch = 0;
    {
      absl::MutexLock lock(&mu);
      if (leader == now || (now && (closed || lost))) return;
      leader = now;
      epoch = czxid;
    }
    if (now && callbacks.on_gain) callbacks.on_gain(epoch);
    if (!now && callbacks.on_loss) callbacks.on_loss();
  }

  // Runs Check() later on the callback thread (behind what is queued).
  void Schedule() {
    client->SyncAsync(path, [self = shared_from_this()](absl::Status) { self->Check(); });
  }

  // (Re)creates the candidate node. With run_mu held.
  absl::Status CreateNode() {
    auto created =
        CreateProtected(*client, path, "latch-", "", CreateMode::kEphemeralSequential, "");
    if (!created.ok()) return created.status();
    absl::MutexLock lock(&mu);
    if (closed) {
      client->DeleteAsync(created->path, std::nullopt, [](absl::Status) {});
      return absl::CancelledError("closed");
    }
    node = created->path;
    czxid = created->stat.czxid;
    return absl::OkStatus();
  }

  // Looks at the candidates: leads if first, else watches the predecessor. On the callback
  // thread.
  void Check() {
    absl::MutexLock run(&run_mu);
    running.store(std::this_thread::get_id());
    CheckLocked();
    running.store(std::thread::id());
  }

  void CheckLocked() {
    while (!Stopped()) {
      std::string mine;
      {
        absl::MutexLock lock(&mu);
        mine = node;
      }
      auto children = client->GetChildren(path);
      if (!children.ok()) {
        const v1::ErrorCode code = ErrorCodeOf(children.status());
        if (code == v1::SESSION_EXPIRED) return OnState(ConnectionState::kLost);
        if (code != v1::NO_NODE) return Schedule();  // a timeout: try again
        children = Children{};
      }
      const std::string name = mine.substr(mine.rfind('/') + 1);
      std::vector<std::pair<int64_t, std::string>> candidates;
      for (const std::string& child : children->names) {
        if (SequenceOf(child) >= 0) candidates.emplace_back(SequenceOf(child), child);
      }
      std::sort(candidates.begin(), candidates.end());
      auto it =
          std::find(candidates.begin(), candidates.end(), std::make_pair(SequenceOf(name), name));
      if (it == candidates.end()) {  // our node is gone (deleted by someone): contend again
        SetLeader(false);
        if (!CreateNode().ok()) return;
        continue;
      }
      if (it == candidates.begin()) return SetLeader(true);
      SetLeader(false);
      const std::string predecessor = JoinPath(path, std::prev(it)->second);
      auto exists = client->Exists(
          predecessor, [self = shared_from_this()](const WatchEvent&) { self->Check(); });
      if (!exists.ok()) return Schedule();
      if (exists->has_value()) return;  // wait for its deletion
    }
  }

  void OnState(ConnectionState state) {
    if (state == ConnectionState::kSuspended || state == ConnectionState::kLost) {
      if (state == ConnectionState::kLost) {
        absl::MutexLock lock(&mu);
        lost = true;
      }
      SetLeader(false);
    }
  }
};

LeaderElection::LeaderElection(Client* client, std::string election_path, LeaderCallbacks callbacks)
    : client_(client), state_(std::make_shared<State>()) {
  state_->client = client;
  state_->path = std::move(election_path);
  state_->callbacks = std::move(callbacks);
}

LeaderElection::~LeaderElection() { Close(); }

absl::Status LeaderElection::Start() {
  {
    absl::MutexLock lock(&state_->mu);
    if (!state_->node.empty() || state_->closed) {
      return absl::FailedPreconditionError("LeaderElection already started or closed");
    }
  }
  {
    absl::MutexLock run(&state_->run_mu);
    if (absl::Status s = state_->CreateNode(); !s.ok()) return s;
  }
  state_->Schedule();
  return absl::OkStatus();
}

void LeaderElection::Close() {
  std::string node;
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->closed) return;
    state_->closed = true;
    node = state_->node;
  }
  if (state_->running.load() != std::this_thread::get_id()) {
    absl::MutexLock run(&state_->run_mu);  // waits for a check or callback in progress
  }
  {
    absl::MutexLock lock(&state_->mu);
    state_->leader = false;
    node = state_->node;
  }
  if (!node.empty()) DeleteOwnNode(*client_, node).IgnoreError();
}

bool LeaderElection::IsLeader() const {
  absl::MutexLock lock(&state_->mu);
  return state_->leader;
}

int64_t LeaderElection::epoch() const {
  absl::MutexLock lock(&state_->mu);
  return state_->leader ? state_->czxid : 0;
}

std::string LeaderElection::node_path() const {
  absl::MutexLock lock(&state_->mu);
  return state_->node;
}

void LeaderElection::OnConnectionState(ConnectionState state) {
  if (state == ConnectionState::kReconnected) {
    state_->Schedule();
    return;
  }
  absl::MutexLock run(&state_->run_mu);
  state_->running.store(std::this_thread::get_id());
  state_->OnState(state);
  state_->running.store(std::thread::id());
}

}  // namespace confab
