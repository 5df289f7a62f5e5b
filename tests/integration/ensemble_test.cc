// Ensembles of real confabd processes (3 and 5 members on loopback): replication, leader failure
// under write load, catch-up by DIFF and by snapshot, truncation of a stale leader's
// unacknowledged records, serving with a minority down, and sessions that survive failover.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/testing/local_ensemble.h"
#include "gtest/gtest.h"
#include "test_server.h"
#include "unary_client.h"

namespace confab::itest {
namespace {

using testing::LocalEnsemble;

std::unique_ptr<LocalEnsemble> StartEnsemble(int members, std::vector<std::string> flags = {}) {
  testing::LocalEnsembleOptions options;
  options.members = members;
  options.confabd_path = CONFABD_PATH;
  options.extra_flags = std::move(flags);
  auto started = LocalEnsemble::Start(std::move(options));
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? std::move(*started) : nullptr;
}

std::unique_ptr<Client> Connect(const std::string& endpoints) {
  ClientOptions options;
  options.endpoints = endpoints;
  options.connect_timeout = absl::Seconds(20);
  options.request_timeout = absl::Seconds(20);
  auto client = Client::Connect(std::move(options));
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

// A member that follows (any running one but the leader).
int AFollower(const LocalEnsemble& ensemble, int leader) {
  for (int i = 0; i < ensemble.size(); ++i) {
    if (i != leader && ensemble.IsRunning(i)) return i;
  }
  return -1;
}

// The connection states a client reported, in order.
class StateLog {
 public:
  StateListener Listener() {
    return [this](ConnectionState state) {
      absl::MutexLock lock(&mu_);
      states_.push_back(state);
    };
  }
  // Waits (bounded) until the last state reported is `state`.
  bool WaitForLast(ConnectionState state, absl::Duration timeout) {
    return WaitFor(
        [&] {
          absl::MutexLock lock(&mu_);
          return !states_.empty() && states_.back() == state;
        },
        timeout);
  }
  int Count(ConnectionState state) {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(std::count(states_.begin(), states_.end(), state));
  }

 private:
  absl::Mutex mu_;
  std::vector<ConnectionState> states_ ABSL_GUARDED_BY(mu_);
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Every running member reaches the same last zxid and tree digest.
void ExpectConverged(const LocalEnsemble& ensemble) {
  std::string last;
  bool converged = WaitFor(
      [&] {
        std::vector<LocalEnsemble::MemberState> states;
        for (int i = 0; i < ensemble.size(); ++i) {
          if (!ensemble.IsRunning(i)) continue;
          auto state = ensemble.State(i);
          if (!state.ok()) {
            last = std::string(state.status().message());
            return false;
          }
          states.push_back(*state);
        }
        last.clear();
        for (const auto& state : states) {
          absl::StrAppend(&last, state.role, " zxid=", state.last_zxid, " digest=", state.digest,
                          "; ");
        }
        for (const auto& state : states) {
          if (!state.serving || state.last_zxid != states[0].last_zxid ||
              state.digest != states[0].digest) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(30));
  EXPECT_TRUE(converged) << last;
}

TEST(EnsembleTest, ThreeMembersElectOneLeaderAndReplicateEveryWrite) {
  auto ensemble = StartEnsemble(3);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  int leaders = 0;
  for (int i = 0; i < 3; ++i) {
    auto state = ensemble->State(i);
    ASSERT_TRUE(state.ok()) << state.status();
    EXPECT_TRUE(state->serving);
    leaders += state->role == "LEADING";
  }
  EXPECT_EQ(leaders, 1);

  // Writes sent to each member (followers forward them) are read back on every member.
  for (int i = 0; i < 3; ++i) {
    auto client = Connect(ensemble->Endpoint(i));
    ASSERT_NE(client, nullptr);
    for (int n = 0; n < 20; ++n) {
      auto created = client->Create(absl::StrCat("/m", i, "-", n), absl::StrCat("v", n));
      ASSERT_TRUE(created.ok()) << created.status();
    }
  }
  for (int i = 0; i < 3; ++i) {
    auto client = Connect(ensemble->Endpoint(i));
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Sync().ok());
    auto children = client->GetChildren("/");
    ASSERT_TRUE(children.ok()) << children.status();
    EXPECT_EQ(children->names.size(), 60u) << "member " << i + 1;
    auto node = client->Get("/m2-19");
    ASSERT_TRUE(node.ok()) << node.status();
    EXPECT_EQ(node->data, "v19");
  }
  ExpectConverged(*ensemble);
}

TEST(EnsembleTest, LeaderKilledUnderWriteLoadLosesNoAcknowledgedWrite) {
  auto ensemble = StartEnsemble(3);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();

  constexpr int kWriters = 4;
  absl::Mutex mu;
  std::map<std::string, std::string> acknowledged;  // path -> data
  std::atomic<bool> stop{false};
  std::atomic<int64_t> killed_at_ms{0};
  std::atomic<int64_t> first_write_after_kill_ms{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto client = Connect(ensemble->ConnectString());
      if (client == nullptr) return;
      for (int n = 0; !stop.load(); ++n) {
        const std::string path = absl::StrCat("/load-", w, "-", n);
        const std::string data = absl::StrCat("w", w, "n", n);
        const int64_t sent_ms = absl::ToUnixMillis(absl::Now());
        auto created = client->Create(path, data);
        if (!created.ok()) continue;  // failover: not acknowledged, either outcome is allowed
        absl::MutexLock lock(&mu);
        acknowledged[path] = data;
        int64_t killed = killed_at_ms.load();
        int64_t expected = 0;
        if (killed != 0 && sent_ms > killed) {
          first_write_after_kill_ms.compare_exchange_strong(
              expected, absl::ToUnixMillis(absl::Now()) - killed);
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return acknowledged.size() >= 200;
  }));
  killed_at_ms = absl::ToUnixMillis(absl::Now());
  ASSERT_TRUE(ensemble->Kill(*leader).ok());
  // Writes resume on a new leader.
  ASSERT_TRUE(WaitFor([&] { return first_write_after_kill_ms.load() != 0; }, absl::Seconds(30)));
  size_t at_failover;
  {
    absl::MutexLock lock(&mu);
    at_failover = acknowledged.size();
  }
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return acknowledged.size() >= at_failover + 200;
  }));
  stop = true;
  for (std::thread& writer : writers) writer.join();
  std::printf("election after a leader kill: first acknowledged write %lld ms after the kill\n",
              static_cast<long long>(first_write_after_kill_ms.load()));

  auto new_leader = ensemble->WaitForLeader();
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  EXPECT_NE(*new_leader, *leader);
  // The killed leader rejoins and catches up; every acknowledged write is on every member.
  ASSERT_TRUE(ensemble->Restart(*leader).ok());
  ASSERT_TRUE(ensemble->WaitForLeader().ok());
  ExpectConverged(*ensemble);
  absl::MutexLock lock(&mu);
  for (int i = 0; i < 3; ++i) {
    auto client = Connect(ensemble->Endpoint(i));
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Sync().ok());
    size_t missing = 0;
    for (const auto& [path, data] : acknowledged) {
      auto node = client->Get(path);
      if (!node.ok() || node->data != data) ++missing;
    }
    EXPECT_EQ(missing, 0u) << "member " << i + 1 << " lacks acknowledged writes of "
                           << acknowledged.size();
  }
}

TEST(EnsembleTest, WipedFollowerCatchesUpFromTheLeadersSnapshot) {
  auto ensemble = StartEnsemble(3, {"--snapshot-every-txns=50"});
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  auto client = Connect(ensemble->Endpoint(*leader));
  ASSERT_NE(client, nullptr);
  for (int n = 0; n < 300; ++n) ASSERT_TRUE(client->Create(absl::StrCat("/s", n), "x").ok());

  const int follower = AFollower(*ensemble, *leader);
  ASSERT_TRUE(ensemble->Stop(follower).ok());
  ASSERT_TRUE(ensemble->Wipe(follower).ok());
  ASSERT_TRUE(ensemble->Restart(follower).ok());
  ASSERT_TRUE(ensemble->WaitForLeader().ok());
  ExpectConverged(*ensemble);
  EXPECT_NE(ReadFile(ensemble->LogFile(follower)).find("installed the leader's snapshot"),
            std::string::npos);
  // It serves the state it received and takes part in writes again.
  auto reader = Connect(ensemble->Endpoint(follower));
  ASSERT_NE(reader, nullptr);
  auto node = reader->Get("/s299");
  ASSERT_TRUE(node.ok()) << node.status();
  ASSERT_TRUE(reader->Create("/after-snapshot").ok());
  ExpectConverged(*ensemble);
}

TEST(EnsembleTest, FollowerRestartedBehindCatchesUpByDiff) {
  auto ensemble = StartEnsemble(3);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  const int follower = AFollower(*ensemble, *leader);
  ASSERT_TRUE(ensemble->Kill(follower).ok());
  auto client = Connect(ensemble->Endpoint(*leader));
  ASSERT_NE(client, nullptr);
  for (int n = 0; n < 100; ++n) ASSERT_TRUE(client->Create(absl::StrCat("/d", n), "x").ok());
  ASSERT_TRUE(ensemble->Restart(follower).ok());
  ASSERT_TRUE(ensemble->WaitForLeader().ok());
  ExpectConverged(*ensemble);
  const std::string leader_log = ReadFile(ensemble->LogFile(*leader));
  EXPECT_NE(leader_log.find(absl::StrCat("syncs member ", follower + 1, " from")),
            std::string::npos);
  EXPECT_NE(leader_log.find(": DIFF"), std::string::npos) << leader_log;
}

TEST(EnsembleTest, StaleLeaderWithUnacknowledgedRecordsIsTruncatedOnRejoin) {
  auto ensemble = StartEnsemble(3);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  {
    auto client = Connect(ensemble->Endpoint(*leader));
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Create("/committed", "yes").ok());
  }
  ExpectConverged(*ensemble);
  // The followers die: the leader logs what it is sent but can never commit it.
  for (int i = 0; i < 3; ++i) {
    if (i != *leader) {
      ASSERT_TRUE(ensemble->Kill(i).ok());
    }
  }
  auto channel = NewChannel(ensemble->Endpoint(*leader));
  auto stub = v1::Coordination::NewStub(channel);
  int unacknowledged = 0;
  for (int n = 0; n < 5; ++n) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    v1::CreateRequest request;
    request.set_path(absl::StrCat("/lost-", n));
    v1::CreateResponse response;
    grpc::Status status = stub->Create(&context, request, &response);
    EXPECT_FALSE(status.ok()) << "a write was acknowledged without a quorum";
    unacknowledged += !status.ok();
  }
  ASSERT_EQ(unacknowledged, 5);
  ASSERT_TRUE(ensemble->Kill(*leader).ok());
  // The two others form a quorum without the stale records and move on.
  for (int i = 0; i < 3; ++i) {
    if (i != *leader) {
      ASSERT_TRUE(ensemble->Restart(i).ok());
    }
  }
  auto new_leader = ensemble->WaitForLeader();
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  {
    auto client = Connect(ensemble->Endpoint(*new_leader));
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Create("/new-epoch", "yes").ok());
  }
  ASSERT_TRUE(ensemble->Restart(*leader).ok());
  ASSERT_TRUE(ensemble->WaitForLeader().ok());
  ExpectConverged(*ensemble);
  EXPECT_NE(ReadFile(ensemble->LogFile(*leader)).find("discarding log entries after"),
            std::string::npos);
  auto client = Connect(ensemble->Endpoint(*leader));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Sync().ok());
  EXPECT_TRUE(client->Get("/committed").ok());
  EXPECT_TRUE(client->Get("/new-epoch").ok());
  for (int n = 0; n < 5; ++n) {
    EXPECT_EQ(client->Get(absl::StrCat("/lost-", n)).status().code(), absl::StatusCode::kNotFound);
  }
}

TEST(EnsembleTest, FiveMembersKeepServingWithTwoDown) {
  auto ensemble = StartEnsemble(5);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  // One follower and then the leader itself go down: three of five still elect and serve.
  ASSERT_TRUE(ensemble->Kill(AFollower(*ensemble, *leader)).ok());
  ASSERT_TRUE(ensemble->Kill(*leader).ok());
  auto new_leader = ensemble->WaitForLeader();
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  auto client = Connect(ensemble->ConnectString());
  ASSERT_NE(client, nullptr);
  for (int n = 0; n < 50; ++n) ASSERT_TRUE(client->Create(absl::StrCat("/five", n)).ok());
  ExpectConverged(*ensemble);
}

TEST(EnsembleTest, SessionAndItsEphemeralsSurviveTheLeadersDeath) {
  auto ensemble = StartEnsemble(3);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  StateLog states;
  ClientOptions options;
  options.endpoints = ensemble->Endpoint(*leader) + "," + ensemble->ConnectString();
  options.session_timeout = absl::Seconds(10);
  options.connect_timeout = absl::Seconds(20);
  options.state_listener = states.Listener();
  auto client = Client::Connect(std::move(options));
  ASSERT_TRUE(client.ok()) << client.status();
  const SessionId session = (*client)->session_id();
  ASSERT_TRUE((*client)->Create("/member", "me", CreateMode::kEphemeral).ok());

  ASSERT_TRUE(ensemble->Kill(*leader).ok());
  // The client moves to a member of the new leadership with the same session.
  ASSERT_TRUE(states.WaitForLast(ConnectionState::kReconnected, absl::Seconds(30)));
  EXPECT_EQ((*client)->session_id(), session);
  ASSERT_TRUE((*client)->Sync().ok());
  auto node = (*client)->Get("/member");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->stat.ephemeral_owner, session.value());
  ASSERT_TRUE((*client)->Set("/member", "still me").ok());
  EXPECT_EQ(states.Count(ConnectionState::kLost), 0);
  // Closing the session deletes the ephemeral on every member.
  ASSERT_TRUE((*client)->Close().ok());
  auto other = Connect(ensemble->ConnectString());
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->Sync().ok());
  EXPECT_EQ(other->Exists("/member").value(), std::nullopt);
}

TEST(EnsembleTest, PersistentWatchFollowsEveryChangeAcrossFailoverExactlyOnce) {
  auto ensemble = StartEnsemble(3);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  absl::Mutex mu;
  std::vector<WatchEvent> events;
  // The watcher starts on the leader, which is about to die: its watch must move with it.
  auto watcher = Connect(ensemble->Endpoint(*leader) + "," + ensemble->ConnectString());
  ASSERT_NE(watcher, nullptr);
  ASSERT_TRUE(watcher->Create("/w").ok());
  ASSERT_TRUE(watcher
                  ->AddWatch("/w", AddWatchMode::kPersistentRecursive,
                             [&](const WatchEvent& event) {
                               absl::MutexLock lock(&mu);
                               events.push_back(event);
                             })
                  .ok());

  // A writer creates /w/e-<n> one after another through the failover.
  std::vector<std::string> acknowledged;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    auto client = Connect(ensemble->ConnectString());
    if (client == nullptr) return;
    for (int n = 0; !stop.load(); ++n) {
      const std::string path = absl::StrCat("/w/e-", n);
      if (client->Create(path).ok()) {
        absl::MutexLock lock(&mu);
        acknowledged.push_back(path);
      }
    }
  });
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return acknowledged.size() >= 100;
  }));
  ASSERT_TRUE(ensemble->Kill(*leader).ok());
  size_t at_kill;
  {
    absl::MutexLock lock(&mu);
    at_kill = acknowledged.size();
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return acknowledged.size() >= at_kill + 100;
      },
      absl::Seconds(30)));
  stop = true;
  writer.join();
  ASSERT_TRUE(watcher->Sync().ok());

  // Every acknowledged create was seen once; nothing was seen twice; zxids only go up.
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        std::set<std::string> seen;
        for (const WatchEvent& event : events) seen.insert(event.path);
        return std::all_of(acknowledged.begin(), acknowledged.end(),
                           [&](const std::string& path) { return seen.count(path) > 0; });
      },
      absl::Seconds(20)));
  absl::MutexLock lock(&mu);
  std::set<std::string> created;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_NE(events[i].type, EventType::kEventsMissed);
    if (i > 0) {
      EXPECT_GT(events[i].zxid, events[i - 1].zxid) << events[i].path;
    }
    if (events[i].type == EventType::kNodeCreated) {
      EXPECT_TRUE(created.insert(events[i].path).second)
          << "duplicate event for " << events[i].path;
    }
  }
}

TEST(EnsembleTest, SessionOfAClientCutOffWithItsMemberExpiresAndIsReportedLost) {
  auto ensemble = StartEnsemble(3, {"--session-timeout-min-ms=1000"});
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  const int follower = AFollower(*ensemble, *leader);
  StateLog states;
  ClientOptions options;
  options.endpoints = ensemble->Endpoint(follower);  // its only way in
  options.session_timeout = absl::Milliseconds(1500);
  options.state_listener = states.Listener();
  auto client = Client::Connect(std::move(options));
  ASSERT_TRUE(client.ok()) << client.status();
  const SessionId session = (*client)->session_id();
  ASSERT_TRUE((*client)->Create("/cut-off", "", CreateMode::kEphemeral).ok());

  // The member stops (SIGSTOP): no heartbeat reaches the leader, which expires the session.
  ASSERT_TRUE(ensemble->Pause(follower).ok());
  auto observer = Connect(ensemble->Endpoint(*leader));
  ASSERT_NE(observer, nullptr);
  EXPECT_TRUE(WaitFor([&] { return observer->Exists("/cut-off").value() == std::nullopt; },
                      absl::Seconds(20)));
  ASSERT_TRUE(ensemble->Resume(follower).ok());
  // Back, the member learns the session is closed and the client is told: LOST.
  EXPECT_TRUE(states.WaitForLast(ConnectionState::kLost, absl::Seconds(30)));
  EXPECT_EQ((*client)->session_id(), session);
}

TEST(EnsembleTest, LinearizableReadOnAFollowerSeesEveryWriteAcknowledgedBeforeIt) {
  auto ensemble = StartEnsemble(3);
  ASSERT_NE(ensemble, nullptr);
  auto leader = ensemble->WaitForLeader();
  ASSERT_TRUE(leader.ok());
  auto writer = v1::Coordination::NewStub(NewChannel(ensemble->Endpoint(*leader)));
  auto reader =
      v1::Coordination::NewStub(NewChannel(ensemble->Endpoint(AFollower(*ensemble, *leader))));
  for (int n = 0; n < 50; ++n) {
    const std::string path = absl::StrCat("/lin", n);
    {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::CreateRequest request;
      request.set_path(path);
      request.set_data(absl::StrCat(n));
      v1::CreateResponse response;
      ASSERT_TRUE(writer->Create(&context, request, &response).ok());
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetRequest request;
    request.set_path(path);
    request.set_linearizable(true);
    v1::GetResponse response;
    grpc::Status status = reader->Get(&context, request, &response);
    ASSERT_TRUE(status.ok()) << path << ": " << status.error_message();
    EXPECT_EQ(response.data(), absl::StrCat(n));
  }
}

}  // namespace
}  // namespace confab::itest
