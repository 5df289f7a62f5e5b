// The C++ recipes (confab_recipes) against a real confabd: ServiceRegistry (members, membership
// watch, deregistration, protected create found again), ConfigCache (typed reads, mismatch
// message, listeners, no missed change under a concurrent writer), Mutex (exclusion, predecessor
// watching, timeout, fencing) and LeaderElection (one leader, handover, loss on SUSPENDED).
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/config_cache.h"
#include "confab/leader_election.h"
#include "confab/mutex.h"
#include "confab/service_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_server.h"

namespace confab {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(10);

using itest::WaitFor;

class RecipesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = itest::StartConfabd().release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(server_, nullptr); }

  std::unique_ptr<Client> Connect(StateListener listener = nullptr) {
    ClientOptions options;
    options.endpoints = server_->Endpoint(0);
    options.request_timeout = absl::Seconds(10);
    options.state_listener = std::move(listener);
    auto client = Client::Connect(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  static testing::LocalEnsemble* server_;
};

testing::LocalEnsemble* RecipesTest::server_ = nullptr;

// ---- ServiceRegistry ----

TEST_F(RecipesTest, RegistryMembersWatchAndDeregistration) {
  auto a = Connect();
  auto b = Connect();
  ASSERT_TRUE(a && b);
  const std::string base = itest::TestRoot();
  ServiceRegistry registry_a(a.get(), base);
  ServiceRegistry registry_b(b.get(), base);

  absl::Mutex mu;
  std::vector<std::vector<ServiceMember>> seen;
  auto last_size = [&]() -> int {
    absl::MutexLock lock(&mu);
    return seen.empty() ? -1 : static_cast<int>(seen.back().size());
  };
  auto watch = registry_a.Watch("api", [&](const std::vector<ServiceMember>& members) {
    absl::MutexLock lock(&mu);
    seen.push_back(members);
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(WaitFor([&] { return last_size() == 0; }));  // the initial, empty list

  RegisterOptions options_a;
  options_a.address = "10.0.0.1";
  options_a.port = 80;
  auto reg_a = registry_a.Register("api", {{"zone", "a"}}, options_a);
  ASSERT_TRUE(reg_a.ok()) << reg_a.status();
  EXPECT_THAT(reg_a->path(), HasSubstr(absl::StrCat(base, "/api/_c_", reg_a->id(), "-member-")));
  auto reg_b = registry_b.Register("api", {{"zone", "b"}});
  ASSERT_TRUE(reg_b.ok()) << reg_b.status();

  auto members = registry_a.Members("api");
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), 2u);
  EXPECT_EQ((*members)[0].path, reg_a->path());  // registration order
  EXPECT_EQ((*members)[0].id, reg_a->id());
  EXPECT_EQ((*members)[0].address, "10.0.0.1");
  EXPECT_EQ((*members)[0].port, 80);
  EXPECT_EQ((*members)[0].payload, nlohmann::json({{"zone", "a"}}));
  EXPECT_EQ((*members)[1].payload, nlohmann::json({{"zone", "b"}}));
  EXPECT_EQ((*members)[1].service, "api");
  ASSERT_TRUE(WaitFor([&] { return last_size() == 2; }));

  // Destroying the handle deregisters.
  { Registration gone = *std::move(reg_a); }
  ASSERT_TRUE(WaitFor([&] { return last_size() == 1; }));
  members = registry_a.Members("api");
  ASSERT_TRUE(members.ok());
  ASSERT_EQ(members->size(), 1u);
  EXPECT_EQ((*members)[0].path, reg_b->path());

  // Closing the client removes its members (ephemeral); the handle's later destruction is fine.
  ASSERT_TRUE(b->Close().ok());
  ASSERT_TRUE(WaitFor([&] { return last_size() == 0; }));
  EXPECT_TRUE(reg_b->Deregister().ok());
  members = registry_a.Members("api");
  ASSERT_TRUE(members.ok());
  EXPECT_TRUE(members->empty());

  // Every delivered list differs from the one before (no repeated deliveries).
  (*watch)->Close();
  absl::MutexLock lock(&mu);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_NE(seen[i].size(), seen[i - 1].size());
}

TEST_F(RecipesTest, RegistryFindsTheNodeOfALostReply) {
  auto client = Connect();
  ASSERT_TRUE(client);
  const std::string base = itest::TestRoot();
  ServiceRegistry registry(client.get(), base);
  // As if an earlier Register's create was applied but its reply lost: the node exists with this
  // member's protection prefix.
  const std::string id = NewUuid();
  ASSERT_TRUE(EnsurePath(*client, base + "/api").ok());
  auto earlier = client->Create(absl::StrCat(base, "/api/_c_", id, "-member-"), "{}",
                                CreateMode::kEphemeralSequential);
  ASSERT_TRUE(earlier.ok()) << earlier.status();

  RegisterOptions options;
  options.id = id;
  auto reg = registry.Register("api", nullptr, options);
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ(reg->path(), earlier->path);
  auto members = registry.Members("api");
  ASSERT_TRUE(members.ok());
  EXPECT_EQ(members->size(), 1u);
  EXPECT_EQ(SequenceOf(reg->path()), SequenceOf(earlier->path));
  EXPECT_EQ(NewUuid().size(), 36u);
}

// ---- ConfigCache ----

TEST_F(RecipesTest, ConfigCacheTypedReads) {
  auto client = Connect();
  ASSERT_TRUE(client);
  const std::string root = itest::TestRoot();
  ASSERT_TRUE(EnsurePath(*client, root + "/flags").ok());
  ASSERT_TRUE(client->Create(root + "/ROW_LIMIT", "5000").ok());
  ASSERT_TRUE(client->Create(root + "/NAME", "\"lots\"").ok());
  ASSERT_TRUE(client->Create(root + "/PLAIN", "not json").ok());
  ASSERT_TRUE(client->Create(root + "/RATIO", "0.5").ok());
  ASSERT_TRUE(client->Create(root + "/flags/A", "true").ok());
  ASSERT_TRUE(client->Create(root + "/LIST", "[1, 2, 3]").ok());

  ConfigCache cache(client.get(), root);
  ASSERT_TRUE(cache.Start().ok());
  EXPECT_GT(cache.zxid(), 0);
  EXPECT_EQ(cache.Get<int>("ROW_LIMIT").value_or(-1), 5000);
  EXPECT_EQ(cache.Get<double>("ROW_LIMIT").value_or(-1), 5000.0);  // an int is a fine number
  EXPECT_EQ(cache.Get<double>("RATIO").value_or(-1), 0.5);
  EXPECT_EQ(cache.Get<std::string>("NAME").value_or(""), "lots");
  EXPECT_EQ(cache.Get<std::string>("PLAIN").value_or(""), "not json");
  EXPECT_EQ(cache.Get<bool>("flags/A").value_or(false), true);
  EXPECT_EQ(cache.Get<std::vector<int>>("LIST").value_or(std::vector<int>{}),
            (std::vector<int>{1, 2, 3}));
  EXPECT_FALSE(cache.Raw("flags").has_value());  // a folder holds no value

  absl::StatusOr<int> mismatch = cache.Get<int>("NAME");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mismatch.status().message(), "config key 'NAME': expected int32, got string \"lots\"");
  EXPECT_FALSE(cache.Get<int>("flags/A").ok());  // a bool is not a number
  EXPECT_FALSE(cache.Get<bool>("ROW_LIMIT").ok());
  EXPECT_FALSE(cache.Get<int>("RATIO").ok());
  EXPECT_THAT(std::string(cache.Get<std::map<std::string, int>>("NAME").status().message()),
              HasSubstr("config key 'NAME'"));
  EXPECT_EQ(cache.Get<int>("MISSING").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache.GetOr<int>("MISSING", 7), 7);
  EXPECT_EQ(cache.GetOr<int>("ROW_LIMIT", 7), 5000);
}

TEST_F(RecipesTest, ConfigCacheListeners) {
  auto client = Connect();
  auto writer = Connect();
  ASSERT_TRUE(client && writer);
  const std::string root = itest::TestRoot();
  ASSERT_TRUE(EnsurePath(*writer, root).ok());
  ASSERT_TRUE(writer->Create(root + "/ROW_LIMIT", "5000").ok());

  ConfigCache cache(client.get(), root);
  absl::Mutex mu;
  std::vector<ConfigChange> all;
  std::vector<ConfigChange> row_limit;
  cache.AddListener([&](const ConfigChange& c) {
    absl::MutexLock lock(&mu);
    all.push_back(c);
  });
  cache.AddListener(
      [&](const ConfigChange& c) {
        absl::MutexLock lock(&mu);
        row_limit.push_back(c);
      },
      "ROW_LIMIT");
  ASSERT_TRUE(cache.Start().ok());
  const int64_t loaded_zxid = cache.zxid();

  auto set = writer->Set(root + "/ROW_LIMIT", "6000");
  ASSERT_TRUE(set.ok());
  ASSERT_TRUE(writer->Create(root + "/NEW", "{\"a\": 1}").ok());
  ASSERT_TRUE(writer->Set(root + "/NEW", "{\"a\": 1}").ok());  // same value: no change reported
  ASSERT_TRUE(writer->Delete(root + "/NEW").ok());
  ASSERT_TRUE(cache.Sync().ok());

  EXPECT_EQ(cache.GetOr<int>("ROW_LIMIT", 0), 6000);
  EXPECT_FALSE(cache.Raw("NEW").has_value());
  EXPECT_GT(cache.zxid(), loaded_zxid);
  absl::MutexLock lock(&mu);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].key, "ROW_LIMIT");
  EXPECT_EQ(all[0].old_value, nlohmann::json(5000));
  EXPECT_EQ(all[0].new_value, nlohmann::json(6000));
  EXPECT_EQ(all[0].zxid, set->mzxid);
  EXPECT_EQ(all[1].key, "NEW");
  EXPECT_FALSE(all[1].old_value.has_value());
  EXPECT_EQ(all[1].new_value, nlohmann::json({{"a", 1}}));
  EXPECT_EQ(all[2].key, "NEW");
  EXPECT_FALSE(all[2].new_value.has_value());
  ASSERT_EQ(row_limit.size(), 1u);
  EXPECT_EQ(row_limit[0].new_value, nlohmann::json(6000));
}

TEST_F(RecipesTest, ConfigCacheMissesNothingUnderAConcurrentWriter) {
  auto client = Connect();
  auto writer = Connect();
  ASSERT_TRUE(client && writer);
  const std::string root = itest::TestRoot();
  constexpr int kKeys = 8;
  constexpr int kRounds = 40;
  ASSERT_TRUE(EnsurePath(*writer, root).ok());
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_TRUE(writer->Create(absl::StrCat(root, "/k", k), "0").ok());
  }
  std::atomic<bool> failed{false};
  std::thread writing([&] {
    for (int round = 1; round <= kRounds; ++round) {
      for (int k = 0; k < kKeys; ++k) {
        if (!writer->Set(absl::StrCat(root, "/k", k), absl::StrCat(round)).ok()) failed = true;
      }
      if (round % 10 == 0) {
        if (!writer->Create(absl::StrCat(root, "/added", round), absl::StrCat(round)).ok()) {
          failed = true;
        }
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(20));  // start the cache while the writer runs
  ConfigCache cache(client.get(), root);
  ASSERT_TRUE(cache.Start().ok());
  writing.join();
  ASSERT_FALSE(failed);
  ASSERT_TRUE(cache.Sync().ok());
  auto snapshot = cache.Snapshot();
  EXPECT_EQ(snapshot.size(), static_cast<size_t>(kKeys + kRounds / 10));
  for (int k = 0; k < kKeys; ++k) {
    EXPECT_EQ(cache.GetOr<int>(absl::StrCat("k", k), -1), kRounds) << k;
  }
  for (int round = 10; round <= kRounds; round += 10) {
    EXPECT_EQ(cache.GetOr<int>(absl::StrCat("added", round), -1), round);
  }
}

// ---- Mutex ----

TEST_F(RecipesTest, MutexExcludesAndTokensIncrease) {
  constexpr int kContenders = 4;
  constexpr int kRounds = 5;
  const std::string path = itest::TestRoot() + "/lock";
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kContenders; ++i) clients.push_back(Connect());
  for (const auto& c : clients) ASSERT_TRUE(c);

  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  int counter = 0;  // guarded by the distributed lock only
  absl::Mutex tokens_mu;
  std::vector<int64_t> tokens;
  std::vector<std::thread> threads;
  for (int i = 0; i < kContenders; ++i) {
    threads.emplace_back([&, i] {
      Mutex mutex(clients[i].get(), path);
      for (int r = 0; r < kRounds; ++r) {
        auto token = mutex.Lock(absl::Seconds(20));
        if (!token.ok()) {
          ADD_FAILURE() << token.status();
          return;
        }
        if (inside.fetch_add(1) != 0) overlap = true;
        const int read = counter;
        absl::SleepFor(absl::Milliseconds(2));
        counter = read + 1;
        {
          absl::MutexLock lock(&tokens_mu);
          tokens.push_back(*token);
        }
        inside.fetch_sub(1);
        EXPECT_TRUE(mutex.Unlock().ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(overlap);
  EXPECT_EQ(counter, kContenders * kRounds);
  ASSERT_EQ(tokens.size(), static_cast<size_t>(kContenders * kRounds));
  EXPECT_TRUE(std::is_sorted(tokens.begin(), tokens.end()));
  EXPECT_EQ(std::set<int64_t>(tokens.begin(), tokens.end()).size(), tokens.size());
}

TEST_F(RecipesTest, MutexWatchesOnlyItsPredecessorTimesOutAndFences) {
  auto a = Connect();
  auto b = Connect();
  auto c = Connect();
  auto d = Connect();
  ASSERT_TRUE(a && b && c && d);
  const std::string path = itest::TestRoot() + "/lock";
  Mutex ma(a.get(), path);
  Mutex mb(b.get(), path);
  Mutex mc(c.get(), path);
  Mutex md(d.get(), path);
  auto token_a = ma.Lock(absl::Seconds(5));
  ASSERT_TRUE(token_a.ok()) << token_a.status();
  EXPECT_TRUE(ma.IsHeld());
  EXPECT_EQ(ma.Lock().status().code(), absl::StatusCode::kFailedPrecondition);  // not re-entrant

  std::atomic<int64_t> token_b{0};
  std::atomic<int64_t> token_c{0};
  std::thread tb([&] { token_b = mb.Lock(absl::Seconds(15)).value_or(-1); });
  ASSERT_TRUE(WaitFor([&] { return !mb.WaitingOn().empty(); }));
  std::thread tc([&] { token_c = mc.Lock(absl::Seconds(15)).value_or(-1); });
  ASSERT_TRUE(WaitFor([&] { return !mc.WaitingOn().empty(); }));
  auto children = a->GetChildren(path);
  ASSERT_TRUE(children.ok());
  ASSERT_EQ(children->names.size(), 3u);
  std::vector<std::string> nodes = children->names;
  std::sort(nodes.begin(), nodes.end(), [](const std::string& x, const std::string& y) {
    return SequenceOf(x) < SequenceOf(y);
  });
  EXPECT_EQ(ma.node_path(), path + "/" + nodes[0]);
  EXPECT_EQ(mb.WaitingOn(), path + "/" + nodes[0]);  // B watches A only
  EXPECT_EQ(mc.WaitingOn(), path + "/" + nodes[1]);  // C watches B only, not the holder

  // A timeout deletes the contender's node.
  const absl::Time started = absl::Now();
  auto timed_out = md.Lock(absl::Milliseconds(300));
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - started, absl::Seconds(5));
  EXPECT_EQ(a->GetChildren(path)->names.size(), 3u);

  // Fencing: a write guarded by A's token applies while A holds the lock...
  ASSERT_TRUE(EnsurePath(*a, itest::TestRoot() + "/resource").ok());
  auto fence = ma.FenceOp();
  ASSERT_TRUE(fence.ok());
  EXPECT_TRUE(a->Multi({*fence, Op::Set(itest::TestRoot() + "/resource", "by a")}).ok());

  // ...and not once A released it (as for a paused holder whose session expired meanwhile).
  ASSERT_TRUE(ma.Unlock().ok());
  auto stale = a->Multi({*fence, Op::Set(itest::TestRoot() + "/resource", "stale")});
  EXPECT_EQ(ErrorCodeOf(stale.status()), v1::NO_NODE);
  EXPECT_EQ(FailedOpOf(stale.status()), 0);

  // Only B (A's successor) gets the lock; C keeps waiting, on B.
  ASSERT_TRUE(WaitFor([&] { return token_b.load() != 0; }));
  tb.join();
  EXPECT_GT(token_b.load(), *token_a);
  EXPECT_EQ(token_c.load(), 0);
  EXPECT_EQ(mc.WaitingOn(), path + "/" + nodes[1]);
  ASSERT_TRUE(mb.Unlock().ok());
  tc.join();
  EXPECT_GT(token_c.load(), token_b.load());
  EXPECT_TRUE(mc.Unlock().ok());
  EXPECT_EQ(mc.Unlock().code(), absl::StatusCode::kFailedPrecondition);
}

// ---- LeaderElection ----

struct Candidate {
  std::shared_ptr<ConnectionStateRelay> relay = std::make_shared<ConnectionStateRelay>();
  std::unique_ptr<Client> client;
  std::unique_ptr<LeaderElection> election;
  std::atomic<int> gains{0};
  std::atomic<int> losses{0};
  std::atomic<int64_t> last_epoch{0};
};

TEST_F(RecipesTest, LeaderElectionOneLeaderAndHandover) {
  constexpr int kCandidates = 3;
  const std::string path = itest::TestRoot() + "/election";
  std::vector<std::unique_ptr<Candidate>> candidates;
  for (int i = 0; i < kCandidates; ++i) {
    auto cand = std::make_unique<Candidate>();
    cand->client = Connect(cand->relay->Listener());
    ASSERT_TRUE(cand->client);
    Candidate* raw = cand.get();
    cand->election =
        std::make_unique<LeaderElection>(cand->client.get(), path,
                                         LeaderCallbacks{.on_gain =
                                                             [raw](int64_t epoch) {
                                                               raw->last_epoch = epoch;
                                                               ++raw->gains;
                                                             },
                                                         .on_loss = [raw] { ++raw->losses; }});
    cand->relay->Subscribe([raw](ConnectionState s) {
      if (raw->election) raw->election->OnConnectionState(s);
    });
    ASSERT_TRUE(cand->election->Start().ok());
    candidates.push_back(std::move(cand));
  }
  auto leaders = [&] {
    int n = 0;
    for (const auto& c : candidates) n += c->election && c->election->IsLeader() ? 1 : 0;
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return candidates[0]->election->IsLeader(); }));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(leaders(), 1);
  EXPECT_EQ(candidates[0]->gains.load(), 1);
  const int64_t first_epoch = candidates[0]->election->epoch();
  EXPECT_GT(first_epoch, 0);
  EXPECT_EQ(candidates[0]->last_epoch.load(), first_epoch);

  // SUSPENDED: the leader reports the loss at once; RECONNECTED: it leads again (same term).
  candidates[0]->election->OnConnectionState(ConnectionState::kSuspended);
  EXPECT_FALSE(candidates[0]->election->IsLeader());
  EXPECT_EQ(candidates[0]->losses.load(), 1);
  candidates[0]->election->OnConnectionState(ConnectionState::kReconnected);
  ASSERT_TRUE(WaitFor([&] { return candidates[0]->election->IsLeader(); }));
  EXPECT_EQ(candidates[0]->gains.load(), 2);
  EXPECT_EQ(candidates[0]->election->epoch(), first_epoch);

  // The leader's client closes: the next candidate takes over, with a greater epoch.
  ASSERT_TRUE(candidates[0]->client->Close().ok());
  ASSERT_TRUE(WaitFor([&] { return candidates[1]->election->IsLeader(); }));
  EXPECT_GT(candidates[1]->election->epoch(), first_epoch);
  EXPECT_FALSE(candidates[2]->election->IsLeader());
  candidates[0]->election.reset();
  EXPECT_EQ(leaders(), 1);

  // The new leader leaves the election: the last candidate leads.
  candidates[1]->election->Close();
  EXPECT_FALSE(candidates[1]->election->IsLeader());
  ASSERT_TRUE(WaitFor([&] { return candidates[2]->election->IsLeader(); }));
  EXPECT_GT(candidates[2]->election->epoch(), candidates[1]->last_epoch.load());
  EXPECT_EQ(candidates[2]->gains.load(), 1);
  EXPECT_EQ(candidates[2]->losses.load(), 0);
}

}  // namespace
}  // namespace confab
