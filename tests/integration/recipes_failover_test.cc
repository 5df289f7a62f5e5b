// The recipes on a 3-member ensemble whose members are killed and paused under them: never two
// lock holders or two leaders at once, fencing tokens and epochs only go up, a config cache
// applies every release once and in order, registrations stay exactly once, and everything keeps
// making progress once a leader serves again.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/config_cache.h"
#include "confab/config_publisher.h"
#include "confab/leader_election.h"
#include "confab/mutex.h"
#include "confab/service_registry.h"
#include "confab/testing/local_ensemble.h"
#include "gtest/gtest.h"
#include "test_server.h"

namespace confab::itest {
namespace {

using testing::LocalEnsemble;

std::unique_ptr<LocalEnsemble> StartThreeMembers() {
  testing::LocalEnsembleOptions options;
  options.members = 3;
  options.confabd_path = CONFABD_PATH;
  auto started = LocalEnsemble::Start(std::move(options));
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? std::move(*started) : nullptr;
}

ClientOptions Options(const std::string& endpoints) {
  ClientOptions options;
  options.endpoints = endpoints;
  options.session_timeout = absl::Seconds(6);
  options.connect_timeout = absl::Seconds(20);
  options.request_timeout = absl::Seconds(20);
  return options;
}

// Kills the ensemble's leader, waits for the next, restarts the killed member.
void FailOverOnce(LocalEnsemble& ensemble) {
  auto leader = ensemble.WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(ensemble.Kill(*leader).ok());
  ASSERT_TRUE(ensemble.WaitForLeader().ok());
  ASSERT_TRUE(ensemble.Restart(*leader).ok());
}

TEST(RecipesFailoverTest, MutexNeverHasTwoHoldersAcrossLeaderKills) {
  auto ensemble = StartThreeMembers();
  ASSERT_NE(ensemble, nullptr);
  constexpr int kContenders = 6;
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  std::atomic<int> acquisitions{0};
  std::atomic<bool> stop{false};
  absl::Mutex tokens_mu;
  std::vector<int64_t> tokens;  // in acquisition order
  std::vector<std::thread> contenders;
  for (int c = 0; c < kContenders; ++c) {
    contenders.emplace_back([&] {
      auto client = Client::Connect(Options(ensemble->ConnectString()));
      if (!client.ok()) return;
      Mutex mutex(client->get(), "/lock");
      while (!stop.load()) {
        absl::StatusOr<int64_t> token = mutex.Lock(absl::Seconds(5));
        if (!token.ok()) continue;  // a failover or a timeout: try again
        const int now = ++inside;
        int most = most_inside.load();
        while (now > most && !most_inside.compare_exchange_weak(most, now)) {
        }
        {
          absl::MutexLock lock(&tokens_mu);
          tokens.push_back(*token);
        }
        absl::SleepFor(absl::Milliseconds(2));
        --inside;
        // Unlock retries through a failover; should it still fail, the Mutex stays held.
        while (!mutex.Unlock().ok()) {
        }
        ++acquisitions;
      }
    });
  }
  auto progress = [&](int more) {
    const int target = acquisitions.load() + more;
    return WaitFor([&] { return acquisitions.load() >= target; }, absl::Seconds(60));
  };
  EXPECT_TRUE(progress(30));
  FailOverOnce(*ensemble);
  EXPECT_TRUE(progress(30));
  FailOverOnce(*ensemble);
  EXPECT_TRUE(progress(30));
  stop = true;
  for (std::thread& contender : contenders) contender.join();

  EXPECT_EQ(most_inside.load(), 1);
  absl::MutexLock lock(&tokens_mu);
  EXPECT_TRUE(std::is_sorted(tokens.begin(), tokens.end()) &&
              std::adjacent_find(tokens.begin(), tokens.end()) == tokens.end())
      << "fencing tokens must strictly increase from one holder to the next";
}

TEST(RecipesFailoverTest, OneLeaderAtATimeAcrossKillsAndPauses) {
  auto ensemble = StartThreeMembers();
  ASSERT_NE(ensemble, nullptr);
  std::atomic<int> leaders{0};
  std::atomic<int> most_leaders{0};
  std::atomic<int> gains{0};
  absl::Mutex epochs_mu;
  std::vector<int64_t> epochs;  // of each gain, in order
  struct Candidate {
    std::shared_ptr<ConnectionStateRelay> relay = std::make_shared<ConnectionStateRelay>();
    std::unique_ptr<Client> client;
    std::unique_ptr<LeaderElection> election;
  };
  std::vector<std::unique_ptr<Candidate>> candidates;
  for (int c = 0; c < 3; ++c) {
    auto candidate = std::make_unique<Candidate>();
    // Each candidate talks to one member only, so pausing that member cuts it off.
    ClientOptions options = Options(ensemble->Endpoint(c));
    options.state_listener = candidate->relay->Listener();
    auto client = Client::Connect(std::move(options));
    ASSERT_TRUE(client.ok()) << client.status();
    candidate->client = std::move(*client);
    LeaderCallbacks callbacks;
    callbacks.on_gain = [&](int64_t epoch) {
      const int now = ++leaders;
      int most = most_leaders.load();
      while (now > most && !most_leaders.compare_exchange_weak(most, now)) {
      }
      ++gains;
      absl::MutexLock lock(&epochs_mu);
      epochs.push_back(epoch);
    };
    callbacks.on_loss = [&] { --leaders; };
    candidate->election = std::make_unique<LeaderElection>(candidate->client.get(), "/election",
                                                           std::move(callbacks));
    Candidate* raw = candidate.get();
    raw->relay->Subscribe([raw](ConnectionState state) {
      if (raw->election) raw->election->OnConnectionState(state);
    });
    ASSERT_TRUE(candidate->election->Start().ok());
    candidates.push_back(std::move(candidate));
  }
  ASSERT_TRUE(WaitFor([&] { return leaders.load() == 1; }));

  // The ensemble's leader dies: candidates on it reconnect elsewhere... or, pinned to it, wait.
  FailOverOnce(*ensemble);
  ASSERT_TRUE(WaitFor([&] { return leaders.load() == 1; }, absl::Seconds(30)));

  // The member of the candidate that leads is paused past the session timeout: that candidate
  // reports the loss when its connection is suspended, and only then may another lead.
  int leading = -1;
  for (int c = 0; c < 3; ++c) {
    if (candidates[c]->election->IsLeader()) leading = c;
  }
  ASSERT_GE(leading, 0);
  const int gains_before = gains.load();
  ASSERT_TRUE(ensemble->Pause(leading).ok());
  EXPECT_TRUE(WaitFor([&] { return gains.load() > gains_before && leaders.load() == 1; },
                      absl::Seconds(40)));
  EXPECT_FALSE(candidates[leading]->election->IsLeader());
  ASSERT_TRUE(ensemble->Resume(leading).ok());
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(most_leaders.load(), 1);
  EXPECT_LE(leaders.load(), 1);
  {
    absl::MutexLock lock(&epochs_mu);
    // A leader regaining its own term after a reconnect reports the same epoch; a new term a
    // greater one.
    EXPECT_TRUE(std::is_sorted(epochs.begin(), epochs.end()));
  }
  for (auto& candidate : candidates) candidate->election->Close();
}

TEST(RecipesFailoverTest, ConfigCacheAppliesEveryReleaseInOrderAcrossLeaderKills) {
  auto ensemble = StartThreeMembers();
  ASSERT_NE(ensemble, nullptr);
  ConfigSchema schema;
  schema.keys["COUNTER"] = ValueRule::Of(ValueType::kInteger).Required();
  auto publisher_client = Client::Connect(Options(ensemble->ConnectString()));
  ASSERT_TRUE(publisher_client.ok()) << publisher_client.status();
  ConfigPublisher publisher(publisher_client->get(), "/config", "/releases", schema);
  ASSERT_TRUE(publisher.Publish({{"COUNTER", 0}}, "test", "first").ok());

  ConfigCacheOptions options;
  options.release_root = "/releases";
  ConfigCache cache(Options(ensemble->ConnectString()), "/config", options);
  absl::Mutex mu;
  std::vector<int64_t> seen;  // release numbers, in the order applied
  cache.AddReleaseListener([&](const Release& release) {
    absl::MutexLock lock(&mu);
    seen.push_back(release.number);
  });
  ASSERT_TRUE(cache.Start().ok());
  const int64_t first = cache.release();

  // Releases go on while the ensemble's leader is killed twice; a publish whose outcome the
  // failover made unknown is simply published again (a new release).
  std::atomic<bool> stop{false};
  std::atomic<int64_t> last_published{first};
  std::atomic<int> counter{0};
  std::thread publishing([&] {
    while (!stop.load()) {
      const int value = counter.load() + 1;
      absl::StatusOr<PublishResult> result = publisher.Publish({{"COUNTER", value}}, "test", "");
      if (result.ok()) {
        counter = value;
        last_published = result->release;
      }
    }
  });
  auto progress = [&](int more) {
    const int64_t target = last_published.load() + more;
    return WaitFor([&] { return last_published.load() >= target; }, absl::Seconds(60));
  };
  EXPECT_TRUE(progress(20));
  FailOverOnce(*ensemble);
  EXPECT_TRUE(progress(20));
  FailOverOnce(*ensemble);
  EXPECT_TRUE(progress(20));
  stop = true;
  publishing.join();
  ASSERT_TRUE(cache.Sync(absl::Seconds(30)).ok());

  // The final value is the last release's, and every release after the first was applied once,
  // in order: none missed across the failovers.
  EXPECT_EQ(cache.release(), last_published.load());
  EXPECT_EQ(cache.Get<int>("COUNTER").value_or(-1), counter.load());
  absl::MutexLock lock(&mu);
  std::vector<int64_t> expected;
  for (int64_t n = first + 1; n <= last_published.load(); ++n) expected.push_back(n);
  EXPECT_EQ(seen, expected);
}

TEST(RecipesFailoverTest, RegistrationStaysExactlyOnceAcrossLeaderKills) {
  auto ensemble = StartThreeMembers();
  ASSERT_NE(ensemble, nullptr);
  auto registrar = Client::Connect(Options(ensemble->ConnectString()));
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ServiceRegistry registry(registrar->get(), "/services");
  std::vector<Registration> registrations;
  for (int n = 0; n < 5; ++n) {
    auto registration = registry.Register("dashboard", {{"n", n}});
    ASSERT_TRUE(registration.ok()) << registration.status();
    registrations.push_back(std::move(*registration));
  }
  FailOverOnce(*ensemble);
  // More registrations right through the next failover: each ends with exactly one node.
  std::thread killer([&] { FailOverOnce(*ensemble); });
  for (int n = 5; n < 10; ++n) {
    auto registration = registry.Register("dashboard", {{"n", n}});
    ASSERT_TRUE(registration.ok()) << registration.status();
    registrations.push_back(std::move(*registration));
  }
  killer.join();
  auto observer = Client::Connect(Options(ensemble->ConnectString()));
  ASSERT_TRUE(observer.ok());
  ASSERT_TRUE((*observer)->Sync().ok());
  auto children = (*observer)->GetChildren("/services/dashboard");
  ASSERT_TRUE(children.ok()) << children.status();
  EXPECT_EQ(children->names.size(), 10u) << "no orphan, no duplicate";
  for (const Registration& registration : registrations) {
    EXPECT_TRUE((*observer)->Exists(registration.path()).value().has_value())
        << registration.path();
  }
}

}  // namespace
}  // namespace confab::itest
