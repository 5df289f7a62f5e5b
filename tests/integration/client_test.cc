// confab::Client against real confabd processes: every operation blocking and async, error codes,
// pipelining, one-shot and persistent watches, and the session across breaks: restart of the
// server (SUSPENDED -> RECONNECTED, same session, watches re-added), watch events missed while
// away replayed by the server (or, without history, synthesized by re-reading), reads resent and
// writes failed as unknown, a silent server, and the three ways to LOST (the client's timer, a
// resume refused, the server closing the session). Breaks are made deterministic with a small
// TCP proxy the test can cut and retarget.
#include "confab/client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client_faults.h"
#include "confab/testing/local_ensemble.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace confab {
namespace {

using itest::CloseSessionElsewhere;
using itest::PortOf;
using itest::TcpProxy;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::LocalEnsemble;
using testing::LocalEnsembleOptions;

constexpr absl::Duration kWait = absl::Seconds(10);
constexpr int kMinTimeoutMs = 500;

std::unique_ptr<LocalEnsemble> StartServer(std::vector<std::string> flags = {}) {
  LocalEnsembleOptions options;
  options.confabd_path = CONFABD_PATH;
  options.extra_flags = std::move(flags);
  options.extra_flags.push_back(absl::StrCat("--session-timeout-min-ms=", kMinTimeoutMs));
  auto ensemble = LocalEnsemble::Start(std::move(options));
  EXPECT_TRUE(ensemble.ok()) << ensemble.status();
  return ensemble.ok() ? std::move(*ensemble) : nullptr;
}

// SIGSTOPs the server and waits until every one of its threads is stopped (the signal is
// asynchronous: a thread may still answer a request right after kill() returned).
void PauseFully(LocalEnsemble* server) {
  ASSERT_TRUE(server->Pause(0).ok());
  const std::string tasks = absl::StrCat("/proc/", server->Pid(0), "/task");
  absl::Time deadline = absl::Now() + kWait;
  for (;;) {
    bool all_stopped = true;
    for (const auto& task : std::filesystem::directory_iterator(tasks)) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      // "pid (comm) S ...": the state follows the last ')'.
      size_t paren = line.rfind(')');
      if (paren == std::string::npos || paren + 2 >= line.size() ||
          (line[paren + 2] != 'T' && line[paren + 2] != 't')) {
        all_stopped = false;
      }
    }
    if (all_stopped) return;
    ASSERT_LT(absl::Now(), deadline) << "server not stopped";
    absl::SleepFor(absl::Milliseconds(1));
  }
}

// ---- Recorders: everything a callback touches is shared, so a failing test cannot leave a
// callback pointing at a dead stack frame. ---------------------------------------------------

// The result of one async call.
template <typename T>
class Async {
 public:
  Async() : state_(std::make_shared<State>()) {}

  Callback<T> Done() {
    return [state = state_](absl::StatusOr<T> result) {
      absl::MutexLock lock(&state->mu);
      state->result = std::move(result);
    };
  }

  absl::StatusOr<T> Wait(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&state_->mu);
    auto done = [s = state_.get()]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->result.has_value(); };
    if (!state_->mu.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      ADD_FAILURE() << "async call not completed within " << timeout;
      return absl::DeadlineExceededError("test: not completed");
    }
    return *state_->result;
  }

  bool done() {
    absl::MutexLock lock(&state_->mu);
    return state_->result.has_value();
  }

 private:
  struct State {
    absl::Mutex mu;
    std::optional<absl::StatusOr<T>> result ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
};

// The status of one async call that returns absl::Status.
class AsyncStatus {
 public:
  StatusCallback Done() {
    Callback<bool> done = inner_.Done();
    return [done = std::move(done)](absl::Status status) mutable {
      if (status.ok()) {
        done(true);
      } else {
        done(status);
      }
    };
  }
  absl::Status Wait(absl::Duration timeout = kWait) { return inner_.Wait(timeout).status(); }

 private:
  Async<bool> inner_;
};

// An ordered log of strings written from callbacks.
class Log {
 public:
  Log() : state_(std::make_shared<State>()) {}

  void Add(std::string entry) {
    absl::MutexLock lock(&state_->mu);
    state_->entries.push_back(std::move(entry));
  }

  // Waits until at least `n` entries are there; returns them all.
  std::vector<std::string> WaitFor(size_t n, absl::Duration timeout = kWait) {
    absl::MutexLock lock(&state_->mu);
    auto ready = [s = state_.get(), n]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->entries.size() >= n; };
    if (!state_->mu.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      ADD_FAILURE() << "wanted " << n << " entries within " << timeout << ", have "
                    << ::testing::PrintToString(state_->entries);
    }
    return state_->entries;
  }

  std::vector<std::string> Entries() {
    absl::MutexLock lock(&state_->mu);
    return state_->entries;
  }

  // A watcher that logs "<name>:<EventType> <path>".
  Watcher Watch(std::string name) {
    return [state = state_, name = std::move(name)](const WatchEvent& event) {
      absl::MutexLock lock(&state->mu);
      state->entries.push_back(absl::StrCat(name, ":", EventTypeName(event.type), " ", event.path));
      state->events.push_back(event);
    };
  }

  std::vector<WatchEvent> Events() {
    absl::MutexLock lock(&state_->mu);
    return state_->events;
  }

  StateListener Listener() {
    return [state = state_](ConnectionState s) {
      absl::MutexLock lock(&state->mu);
      state->entries.emplace_back(ConnectionStateName(s));
    };
  }

 private:
  struct State {
    absl::Mutex mu;
    std::vector<std::string> entries ABSL_GUARDED_BY(mu);
    std::vector<WatchEvent> events ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
};

// Waits until the log holds exactly `expected` (a prefix is not enough), up to `timeout`.
void ExpectLogSoon(Log& log, const std::vector<std::string>& expected,
                   absl::Duration timeout = kWait) {
  EXPECT_EQ(log.WaitFor(expected.size(), timeout), expected);
}

// Nothing more arrives within a short while (for "fires once").
void ExpectNoMore(Log& log, size_t n) {
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(log.Entries().size(), n) << ::testing::PrintToString(log.Entries());
}

// ---- Helpers ---------------------------------------------------------------------------------

struct ConnectArgs {
  absl::Duration session_timeout = absl::Seconds(10);
  absl::Duration request_timeout = absl::Seconds(30);
  StateListener listener;
};

std::unique_ptr<Client> ConnectTo(const std::string& endpoints, ConnectArgs args = {}) {
  ClientOptions options;
  options.endpoints = endpoints;
  options.session_timeout = args.session_timeout;
  options.request_timeout = args.request_timeout;
  options.connect_timeout = absl::Seconds(5);
  options.reconnect_backoff_max = absl::Milliseconds(200);
  options.state_listener = std::move(args.listener);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(std::move(options));
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

MATCHER_P(HasCode, code, "") {
  if (ErrorCodeOf(arg) == code) return true;
  *result_listener << "status " << arg;
  return false;
}

// ---- Tests against one shared server ---------------------------------------------------------

class ClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = StartServer().release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    root_ = absl::StrCat("/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    client_ = Connect();
    ASSERT_NE(client_, nullptr);
    ASSERT_TRUE(client_->Create(root_).ok());
  }

  std::unique_ptr<Client> Connect(ConnectArgs args = {}) {
    return ConnectTo(server_->Endpoint(0), std::move(args));
  }
  std::string P(absl::string_view name) const { return absl::StrCat(root_, "/", name); }

  static LocalEnsemble* server_;
  std::string root_;
  std::unique_ptr<Client> client_;
};

LocalEnsemble* ClientTest::server_ = nullptr;

TEST_F(ClientTest, ConnectReportsConnectedAndRefusesBadOptions) {
  Log states;
  ConnectArgs args;
  args.session_timeout = absl::Milliseconds(1500);
  args.listener = states.Listener();
  auto client = Connect(std::move(args));
  ASSERT_NE(client, nullptr);
  ExpectLogSoon(states, {"CONNECTED"});
  EXPECT_FALSE(client->session_id().IsNone());
  EXPECT_NE(client->session_id(), client_->session_id());
  EXPECT_EQ(client->session_timeout(), absl::Milliseconds(1500));
  EXPECT_EQ(client->state(), ConnectionState::kConnected);

  ClientOptions empty;
  EXPECT_THAT(Client::Connect(std::move(empty)).status(), HasCode(v1::INVALID_ARGUMENT));
  ClientOptions no_timeout;
  no_timeout.endpoints = server_->Endpoint(0);
  no_timeout.session_timeout = absl::ZeroDuration();
  EXPECT_THAT(Client::Connect(std::move(no_timeout)).status(), HasCode(v1::INVALID_ARGUMENT));

  // Nothing listens on a closed proxy's port: Connect gives up after connect_timeout.
  std::string dead;
  { dead = TcpProxy(1).Endpoint(); }
  ClientOptions unreachable;
  unreachable.endpoints = dead;
  unreachable.connect_timeout = absl::Milliseconds(300);
  absl::Time start = absl::Now();
  auto failed = Client::Connect(std::move(unreachable));
  EXPECT_THAT(failed.status(), HasCode(v1::UNAVAILABLE));
  EXPECT_THAT(failed.status().message(), HasSubstr(dead));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));

  // With a dead endpoint first or second, the session opens on the live one.
  for (int i = 0; i < 4; ++i) {
    auto failover = ConnectTo(i % 2 == 0 ? absl::StrCat(dead, ",", server_->Endpoint(0))
                                         : absl::StrCat(server_->Endpoint(0), ",", dead));
    ASSERT_NE(failover, nullptr);
    EXPECT_TRUE(failover->Exists("/").ok());
  }
}

TEST_F(ClientTest, EveryOperationBlocking) {
  auto created = client_->Create(P("n"), "v0");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->path, P("n"));
  EXPECT_EQ(created->stat.version, 0);
  EXPECT_EQ(created->stat.data_length, 2);
  EXPECT_EQ(created->stat.czxid, created->stat.mzxid);

  auto seq = client_->Create(P("s-"), "", CreateMode::kPersistentSequential);
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(seq->path, P("s-0000000001"));
  auto eph = client_->Create(P("e"), "x", CreateMode::kEphemeral);
  ASSERT_TRUE(eph.ok()) << eph.status();
  EXPECT_EQ(eph->stat.ephemeral_owner, client_->session_id().value());
  auto eseq = client_->Create(P("q-"), "", CreateMode::kEphemeralSequential);
  ASSERT_TRUE(eseq.ok()) << eseq.status();
  EXPECT_EQ(eseq->path, P("q-0000000003"));
  EXPECT_EQ(eseq->stat.ephemeral_owner, client_->session_id().value());

  auto got = client_->Get(P("n"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data, "v0");
  EXPECT_EQ(got->stat, created->stat);

  auto set = client_->Set(P("n"), "v1");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->version, 1);
  EXPECT_GT(set->mzxid, created->stat.mzxid);
  auto set_versioned = client_->Set(P("n"), "v2", 1);
  ASSERT_TRUE(set_versioned.ok()) << set_versioned.status();
  EXPECT_EQ(set_versioned->version, 2);

  auto exists = client_->Exists(P("n"));
  ASSERT_TRUE(exists.ok()) << exists.status();
  ASSERT_TRUE(exists->has_value());
  EXPECT_EQ(**exists, *set_versioned);
  auto missing = client_->Exists(P("missing"));
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  auto children = client_->GetChildren(root_);
  ASSERT_TRUE(children.ok()) << children.status();
  EXPECT_THAT(children->names, ElementsAre("e", "n", "q-0000000003", "s-0000000001"));
  EXPECT_EQ(children->stat.num_children, 4);

  EXPECT_TRUE(client_->Delete(P("s-0000000001"), 0).ok());
  EXPECT_TRUE(client_->Delete(P("e")).ok());

  auto multi = client_->Multi({Op::Create(P("m"), "m"), Op::Check(P("n"), 2),
                               Op::Set(P("n"), "v3", 2), Op::Delete(P("q-0000000003"))});
  ASSERT_TRUE(multi.ok()) << multi.status();
  ASSERT_EQ(multi->size(), 4u);
  EXPECT_EQ((*multi)[0].type, Op::Type::kCreate);
  EXPECT_EQ((*multi)[0].path, P("m"));
  EXPECT_EQ((*multi)[1].type, Op::Type::kCheck);
  EXPECT_EQ((*multi)[2].type, Op::Type::kSet);
  EXPECT_EQ((*multi)[2].path, P("n"));
  EXPECT_EQ((*multi)[2].stat.version, 3);
  EXPECT_EQ((*multi)[3].type, Op::Type::kDelete);
  EXPECT_EQ((*multi)[0].stat.mzxid, (*multi)[2].stat.mzxid) << "one zxid for the whole multi";

  EXPECT_TRUE(client_->Sync().ok());
  EXPECT_TRUE(client_->Sync(root_).ok());
  children = client_->GetChildren(root_);
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->names, ElementsAre("m", "n"));
}

// Each call awaited before the next (pipelining: ThousandsOfPipelinedAsyncRequests...).
TEST_F(ClientTest, EveryOperationAsync) {
  Async<Created> created;
  client_->CreateAsync(P("n"), "v0", CreateMode::kPersistent, created.Done());
  ASSERT_TRUE(created.Wait().ok()) << created.Wait().status();
  EXPECT_EQ(created.Wait()->path, P("n"));
  Async<Created> seq;
  client_->CreateAsync(P("s-"), "", CreateMode::kEphemeralSequential, seq.Done());
  ASSERT_TRUE(seq.Wait().ok()) << seq.Wait().status();
  EXPECT_EQ(seq.Wait()->path, P("s-0000000001"));
  EXPECT_EQ(seq.Wait()->stat.ephemeral_owner, client_->session_id().value());

  Async<NodeData> got;
  client_->GetAsync(P("n"), got.Done());
  ASSERT_TRUE(got.Wait().ok()) << got.Wait().status();
  EXPECT_EQ(got.Wait()->data, "v0");
  EXPECT_EQ(got.Wait()->stat, created.Wait()->stat);

  Async<Stat> set;
  client_->SetAsync(P("n"), "v1", std::nullopt, set.Done());
  ASSERT_TRUE(set.Wait().ok()) << set.Wait().status();
  EXPECT_EQ(set.Wait()->version, 1);
  Async<Stat> set_versioned;
  client_->SetAsync(P("n"), "v2", 1, set_versioned.Done());
  ASSERT_TRUE(set_versioned.Wait().ok()) << set_versioned.Wait().status();
  EXPECT_EQ(set_versioned.Wait()->version, 2);

  Async<std::optional<Stat>> exists, missing;
  client_->ExistsAsync(P("n"), exists.Done());
  client_->ExistsAsync(P("missing"), missing.Done());
  ASSERT_TRUE(exists.Wait().ok());
  ASSERT_TRUE(exists.Wait()->has_value());
  EXPECT_EQ(**exists.Wait(), *set_versioned.Wait());
  ASSERT_TRUE(missing.Wait().ok());
  EXPECT_FALSE(missing.Wait()->has_value());

  Async<Children> children;
  client_->GetChildrenAsync(root_, children.Done());
  ASSERT_TRUE(children.Wait().ok());
  EXPECT_THAT(children.Wait()->names, ElementsAre("n", "s-0000000001"));
  EXPECT_EQ(children.Wait()->stat.num_children, 2);

  Async<std::vector<OpResult>> multi;
  client_->MultiAsync({Op::Check(P("n"), 2), Op::Create(P("m"))}, multi.Done());
  ASSERT_TRUE(multi.Wait().ok()) << multi.Wait().status();
  ASSERT_EQ(multi.Wait()->size(), 2u);
  EXPECT_EQ((*multi.Wait())[0].type, Op::Type::kCheck);
  EXPECT_EQ((*multi.Wait())[0].path, P("n"));
  EXPECT_EQ((*multi.Wait())[1].path, P("m"));

  AsyncStatus deleted;
  client_->DeleteAsync(P("m"), 0, deleted.Done());
  EXPECT_TRUE(deleted.Wait().ok());
  AsyncStatus synced;
  client_->SyncAsync("/", synced.Done());
  EXPECT_TRUE(synced.Wait().ok());
  EXPECT_FALSE(client_->Exists(P("m"))->has_value());
}

TEST_F(ClientTest, EveryErrorCodeSurfaces) {
  ASSERT_TRUE(client_->Create(P("a"), "a").ok());
  ASSERT_TRUE(client_->Create(P("a/child")).ok());
  ASSERT_TRUE(client_->Create(P("eph"), "", CreateMode::kEphemeral).ok());

  auto no_node = client_->Get(P("missing"));
  EXPECT_THAT(no_node.status(), HasCode(v1::NO_NODE));
  EXPECT_THAT(no_node.status().message(), HasSubstr(P("missing")));
  EXPECT_THAT(client_->Create(P("missing/child")).status(), HasCode(v1::NO_NODE));
  EXPECT_THAT(client_->Delete(P("missing")), HasCode(v1::NO_NODE));
  EXPECT_THAT(client_->Set(P("missing"), "").status(), HasCode(v1::NO_NODE));
  EXPECT_THAT(client_->GetChildren(P("missing")).status(), HasCode(v1::NO_NODE));

  auto exists = client_->Create(P("a"));
  EXPECT_THAT(exists.status(), HasCode(v1::NODE_EXISTS));
  EXPECT_THAT(exists.status().message(), HasSubstr(P("a")));

  EXPECT_THAT(client_->Set(P("a"), "x", 7).status(), HasCode(v1::BAD_VERSION));
  EXPECT_THAT(client_->Delete(P("a/child"), 3), HasCode(v1::BAD_VERSION));
  EXPECT_THAT(client_->Delete(P("a")), HasCode(v1::NOT_EMPTY));
  EXPECT_THAT(client_->Create(P("eph/child")).status(), HasCode(v1::NO_CHILDREN_FOR_EPHEMERALS));
  EXPECT_THAT(client_->Get("no-slash").status(), HasCode(v1::INVALID_PATH));
  EXPECT_THAT(client_->Create(P("bad//path")).status(), HasCode(v1::INVALID_PATH));
  EXPECT_THAT(client_->Create(P("big"), std::string((1 << 20) + 1, 'x')).status(),
              HasCode(v1::TOO_LARGE));
  EXPECT_THAT(client_->Delete("/"), HasCode(v1::INVALID_ARGUMENT));

  // A Multi fails as a whole with its failing op's code and index; nothing of it applies.
  auto multi = client_->Multi({Op::Create(P("m1")), Op::Set(P("a"), "y", 5), Op::Create(P("m2"))});
  EXPECT_THAT(multi.status(), HasCode(v1::BAD_VERSION));
  EXPECT_EQ(FailedOpOf(multi.status()), 1);
  EXPECT_THAT(multi.status().message(), HasSubstr("op 1"));
  EXPECT_FALSE(client_->Exists(P("m1"))->has_value());
  Async<std::vector<OpResult>> async_multi;
  client_->MultiAsync({Op::Check(P("a"), 0), Op::Delete(P("missing"))}, async_multi.Done());
  EXPECT_THAT(async_multi.Wait().status(), HasCode(v1::NO_NODE));
  EXPECT_EQ(FailedOpOf(async_multi.Wait().status()), 1);

  // Async errors come the same way.
  Async<NodeData> async_get;
  client_->GetAsync(P("missing"), async_get.Done());
  EXPECT_THAT(async_get.Wait().status(), HasCode(v1::NO_NODE));
  AsyncStatus async_delete;
  client_->DeleteAsync(P("a"), std::nullopt, async_delete.Done());
  EXPECT_THAT(async_delete.Wait(), HasCode(v1::NOT_EMPTY));

  // RemoveWatch of an id that names no persistent watch.
  EXPECT_THAT(client_->RemoveWatch(WatchId{12345}), HasCode(v1::NO_NODE));

  // SESSION_EXPIRED once closed, blocking and async; UNAVAILABLE is covered by the break tests.
  auto other = Connect();
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(other->Close().ok());
  EXPECT_THAT(other->Get(root_).status(), HasCode(v1::SESSION_EXPIRED));
  Async<Stat> after_close;
  other->SetAsync(root_, "", std::nullopt, after_close.Done());
  EXPECT_THAT(after_close.Wait().status(), HasCode(v1::SESSION_EXPIRED));
}

// 5,000 async Sets of one node in flight at once (batched into few stream writes), with a read
// every 500.
struct PipelineResult {
  std::vector<int> order;  // request index of each Set callback, in callback order
  std::vector<int32_t> versions;
  std::vector<std::string> reads;
  int errors = 0;
  absl::Duration took;
};

PipelineResult RunPipeline(Client* client, const std::string& path, int sets) {
  // Every callback runs on the one callback thread; the last one to run hands `seen` over to the
  // test through Async's lock.
  struct Shared {
    PipelineResult seen;
    int left = 0;
    Callback<bool> done;
    void Count() {
      if (--left == 0) done(true);
    }
  };
  auto shared = std::make_shared<Shared>();
  Async<bool> all_done;
  shared->done = all_done.Done();
  shared->left = sets + sets / 500 + 1;
  absl::Time start = absl::Now();
  for (int i = 0; i < sets; ++i) {
    client->SetAsync(path, absl::StrCat(i), std::nullopt, [shared, i](absl::StatusOr<Stat> stat) {
      shared->seen.order.push_back(i);
      if (stat.ok()) {
        shared->seen.versions.push_back(stat->version);
      } else {
        ++shared->seen.errors;
      }
      shared->Count();
    });
    if (i % 500 == 499) {
      client->GetAsync(path, [shared](absl::StatusOr<NodeData> data) {
        shared->seen.reads.push_back(data.ok() ? data->data : data.status().ToString());
        shared->Count();
      });
    }
  }
  client->SyncAsync("/", [shared](absl::Status status) {
    if (!status.ok()) ++shared->seen.errors;
    shared->Count();
  });
  auto done = all_done.Wait(absl::Seconds(30));
  EXPECT_TRUE(done.ok());
  shared->seen.took = absl::Now() - start;
  return shared->seen;
}

// Every request is answered once, without error, and in order: the callbacks run in request
// order (responses come in request order), the i-th Set is applied as version i+1 (a session's
// writes apply in request order, ZooKeeper's FIFO client order), and each read sees the last Set
// made before it.
TEST_F(ClientTest, ThousandsOfPipelinedAsyncRequestsCompleteInOrder) {
  constexpr int kSets = 5000;
  ASSERT_TRUE(client_->Create(P("pipe"), "").ok());
  PipelineResult result = RunPipeline(client_.get(), P("pipe"), kSets);
  std::cout << kSets << " pipelined async Sets in " << result.took << "\n";
  EXPECT_EQ(result.errors, 0);
  ASSERT_EQ(result.order.size(), static_cast<size_t>(kSets));
  for (int i = 0; i < kSets; ++i) ASSERT_EQ(result.order[i], i) << "callbacks out of order";
  ASSERT_EQ(result.versions.size(), static_cast<size_t>(kSets));
  for (int i = 0; i < kSets; ++i) ASSERT_EQ(result.versions[i], i + 1) << "Set " << i;
  std::vector<std::string> expected_reads;
  for (int i = 499; i < kSets; i += 500) expected_reads.push_back(absl::StrCat(i));
  EXPECT_EQ(result.reads, expected_reads);
  EXPECT_EQ(client_->Get(P("pipe"))->stat.version, kSets);
}

TEST_F(ClientTest, OneShotWatchesFireOnceAndBeforeTheResponseThatReflectsTheirChange) {
  ASSERT_TRUE(client_->Create(P("d"), "0").ok());
  auto writer = Connect();
  ASSERT_NE(writer, nullptr);
  Log log;

  // Data watch by Get: one NodeDataChanged for two changes, at the first one's zxid.
  ASSERT_TRUE(client_->Get(P("d"), log.Watch("get")).ok());
  auto first = writer->Set(P("d"), "1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(writer->Set(P("d"), "2").ok());
  ExpectLogSoon(log, {"get:NodeDataChanged " + P("d")});
  ExpectNoMore(log, 1);
  EXPECT_EQ(log.Events()[0].zxid, first->mzxid);

  // Data watch by Exists on a missing node: NodeCreated. Then NodeDeleted.
  ASSERT_TRUE(client_->Exists(P("later"), log.Watch("exists")).ok());
  ASSERT_TRUE(writer->Create(P("later")).ok());
  ExpectLogSoon(log, {"get:NodeDataChanged " + P("d"), "exists:NodeCreated " + P("later")});
  ASSERT_TRUE(client_->Exists(P("later"), log.Watch("exists2")).ok());
  ASSERT_TRUE(writer->Delete(P("later")).ok());
  ExpectLogSoon(log, {"get:NodeDataChanged " + P("d"), "exists:NodeCreated " + P("later"),
                      "exists2:NodeDeleted " + P("later")});

  // Child watch: NodeChildrenChanged once; no data event for the parent.
  Log children;
  ASSERT_TRUE(client_->GetChildren(root_, children.Watch("children")).ok());
  ASSERT_TRUE(writer->Create(P("c1")).ok());
  ASSERT_TRUE(writer->Create(P("c2")).ok());
  ExpectLogSoon(children, {"children:NodeChildrenChanged " + root_});
  ExpectNoMore(children, 1);

  // Two watchers of one node both fire for the one event the server sends.
  Log both;
  ASSERT_TRUE(client_->Get(P("d"), both.Watch("w1")).ok());
  ASSERT_TRUE(client_->Exists(P("d"), both.Watch("w2")).ok());
  ASSERT_TRUE(writer->Delete(P("d")).ok());
  ExpectLogSoon(both, {"w1:NodeDeleted " + P("d"), "w2:NodeDeleted " + P("d")});

  // The client's own write: its watcher runs before the write's callback.
  ASSERT_TRUE(client_->Create(P("own"), "").ok());
  Log order;
  ASSERT_TRUE(client_->Get(P("own"), order.Watch("watch")).ok());
  client_->SetAsync(P("own"), "x", std::nullopt, [order](absl::StatusOr<Stat> stat) mutable {
    order.Add(stat.ok() ? "set done" : stat.status().ToString());
  });
  ExpectLogSoon(order, {"watch:NodeDataChanged " + P("own"), "set done"});

  // A Get of a missing node sets no watch.
  Log none;
  EXPECT_THAT(client_->Get(P("nothing"), none.Watch("none")).status(), HasCode(v1::NO_NODE));
  ASSERT_TRUE(writer->Create(P("nothing")).ok());
  ExpectNoMore(none, 0);
}

TEST_F(ClientTest, PersistentAndRecursiveWatchesFireUntilRemoved) {
  ASSERT_TRUE(client_->Create(P("p"), "").ok());
  ASSERT_TRUE(client_->Create(P("r"), "").ok());
  auto writer = Connect();
  ASSERT_NE(writer, nullptr);
  Log p, r;
  auto p_id = client_->AddWatch(P("p"), AddWatchMode::kPersistent, p.Watch("p"));
  ASSERT_TRUE(p_id.ok()) << p_id.status();
  Async<WatchId> r_id;
  client_->AddWatchAsync(P("r"), AddWatchMode::kPersistentRecursive, r.Watch("r"), r_id.Done());
  ASSERT_TRUE(r_id.Wait().ok()) << r_id.Wait().status();
  EXPECT_NE(*p_id, *r_id.Wait());

  ASSERT_TRUE(writer->Set(P("p"), "1").ok());
  ASSERT_TRUE(writer->Set(P("p"), "2").ok());
  ASSERT_TRUE(writer->Create(P("p/kid")).ok());
  ASSERT_TRUE(writer->Set(P("p/kid"), "not seen by a non-recursive watch").ok());
  ASSERT_TRUE(writer->Create(P("r/a")).ok());
  ASSERT_TRUE(writer->Create(P("r/a/b")).ok());
  ASSERT_TRUE(writer->Set(P("r/a/b"), "x").ok());
  ASSERT_TRUE(writer->Delete(P("r/a/b")).ok());
  ExpectLogSoon(p, {"p:NodeDataChanged " + P("p"), "p:NodeDataChanged " + P("p"),
                    "p:NodeChildrenChanged " + P("p")});
  ExpectLogSoon(r, {"r:NodeCreated " + P("r/a"), "r:NodeCreated " + P("r/a/b"),
                    "r:NodeDataChanged " + P("r/a/b"), "r:NodeDeleted " + P("r/a/b")});

  // A second watcher of the same path: removing one leaves the other (and the server's watch).
  Log p2;
  auto p2_id = client_->AddWatch(P("p"), AddWatchMode::kPersistent, p2.Watch("p2"));
  ASSERT_TRUE(p2_id.ok());
  ASSERT_TRUE(client_->RemoveWatch(*p_id).ok());
  EXPECT_THAT(client_->RemoveWatch(*p_id), HasCode(v1::NO_NODE));
  ASSERT_TRUE(writer->Set(P("p"), "3").ok());
  ExpectLogSoon(p2, {"p2:NodeDataChanged " + P("p")});
  ExpectNoMore(p, 3);

  AsyncStatus removed;
  client_->RemoveWatchAsync(*p2_id, removed.Done());
  EXPECT_TRUE(removed.Wait().ok());
  ASSERT_TRUE(client_->RemoveWatch(r_id.Wait().value()).ok());
  ASSERT_TRUE(writer->Set(P("p"), "4").ok());
  ASSERT_TRUE(writer->Create(P("r/c")).ok());
  ASSERT_TRUE(client_->Sync().ok());
  ExpectNoMore(p2, 1);
  ExpectNoMore(r, 4);
}

TEST_F(ClientTest, CallbacksMayCallTheClientIncludingBlockingCallsAndClose) {
  ASSERT_TRUE(client_->Create(P("x"), "x").ok());
  // A blocking call from a callback returns (it does not wait for the callback thread).
  Async<std::string> nested;
  auto nested_done = std::make_shared<Callback<std::string>>(nested.Done());
  Client* client = client_.get();
  const std::string path = P("x");
  client_->GetAsync(path, [client, path, nested_done](absl::StatusOr<NodeData>) {
    auto again = client->Get(path);
    (*nested_done)(again.ok() ? again->data : again.status().ToString());
  });
  EXPECT_EQ(nested.Wait().value_or("timeout"), "x");

  // Close from a callback: returns, the session is closed, callbacks queued after it still run.
  auto other = Connect();
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->Create(P("eph"), "", CreateMode::kEphemeral).ok());
  Async<bool> closed;
  auto closed_done = std::make_shared<Callback<bool>>(closed.Done());
  Client* raw = other.get();
  AsyncStatus after;
  other->SyncAsync("/", [raw, closed_done](absl::Status) { (*closed_done)(raw->Close().ok()); });
  other->SyncAsync("/", after.Done());
  EXPECT_EQ(closed.Wait().value_or(false), true);
  EXPECT_TRUE(after.Wait().ok()) << "sent before the close: answered before it";
  EXPECT_FALSE(client_->Exists(P("eph"))->has_value());
  // Once closed, an async call fails at once, its callback run inline (no callback thread left).
  bool inline_run = false;
  other->GetAsync(root_, [&inline_run](absl::StatusOr<NodeData> data) {
    inline_run = ErrorCodeOf(data.status()) == v1::SESSION_EXPIRED;
  });
  EXPECT_TRUE(inline_run);
  other.reset();
}

TEST_F(ClientTest, CloseDeletesEphemeralsAndIsIdempotent) {
  auto other = Connect();
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->Create(P("e1"), "", CreateMode::kEphemeral).ok());
  ASSERT_TRUE(other->Create(P("e-"), "", CreateMode::kEphemeralSequential).ok());
  ASSERT_TRUE(other->Create(P("keep")).ok());
  Log log;
  ASSERT_TRUE(client_->Exists(P("e1"), log.Watch("w")).ok());
  EXPECT_TRUE(other->Close().ok());
  // Deleted when Close returns, as one transaction the watcher sees.
  auto children = client_->GetChildren(root_);
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->names, ElementsAre("keep"));
  ExpectLogSoon(log, {"w:NodeDeleted " + P("e1")});
  EXPECT_TRUE(other->Close().ok());
  EXPECT_THAT(other->Create(P("late")).status(), HasCode(v1::SESSION_EXPIRED));

  // The destructor closes too.
  auto third = Connect();
  ASSERT_NE(third, nullptr);
  ASSERT_TRUE(third->Create(P("e3"), "", CreateMode::kEphemeral).ok());
  third.reset();
  EXPECT_FALSE(client_->Exists(P("e3"))->has_value());
}

// ---- The session across breaks (each test owns its server) ---------------------------------

TEST(ClientSessionTest, ServerRestartSuspendsAndReconnectsTheSameSessionWithItsWatches) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  Log states;
  ConnectArgs args;
  args.listener = states.Listener();
  auto client = ConnectTo(server->Endpoint(0), std::move(args));
  ASSERT_NE(client, nullptr);
  const SessionId id = client->session_id();
  ASSERT_TRUE(client->Create("/a").ok());
  ASSERT_TRUE(client->Create("/a/w").ok());
  ASSERT_TRUE(client->Create("/a/o").ok());
  ASSERT_TRUE(client->Create("/a/eph", "mine", CreateMode::kEphemeral).ok());
  Log persistent, oneshot, children;
  ASSERT_TRUE(client->AddWatch("/a/w", AddWatchMode::kPersistent, persistent.Watch("p")).ok());
  ASSERT_TRUE(client->Get("/a/o", oneshot.Watch("o")).ok());
  ASSERT_TRUE(client->GetChildren("/a", children.Watch("c")).ok());

  ASSERT_TRUE(server->Stop(0).ok());
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED"});
  EXPECT_EQ(client->state(), ConnectionState::kSuspended);
  // Made while suspended: sent once the session is back.
  Async<NodeData> queued_read;
  client->GetAsync("/a/eph", queued_read.Done());
  Async<Created> queued_write;
  client->CreateAsync("/a/made-while-away", "", CreateMode::kPersistent, queued_write.Done());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(queued_read.done());

  ASSERT_TRUE(server->Restart(0).ok());
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED", "RECONNECTED"});
  EXPECT_EQ(client->session_id(), id);
  EXPECT_EQ(client->state(), ConnectionState::kReconnected);
  ASSERT_TRUE(queued_read.Wait().ok()) << queued_read.Wait().status();
  EXPECT_EQ(queued_read.Wait()->data, "mine");
  EXPECT_EQ(queued_read.Wait()->stat.ephemeral_owner, id.value());
  ASSERT_TRUE(queued_write.Wait().ok()) << queued_write.Wait().status();

  // The restarted server kept no watches: the client registered them again.
  auto writer = ConnectTo(server->Endpoint(0));
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Set("/a/w", "after").ok());
  ASSERT_TRUE(writer->Set("/a/o", "after").ok());
  ASSERT_TRUE(writer->Set("/a/w", "again").ok());
  ExpectLogSoon(persistent, {"p:NodeDataChanged /a/w", "p:NodeDataChanged /a/w"});
  ExpectLogSoon(oneshot, {"o:NodeDataChanged /a/o"});
  // The create queued while away went out after the watches were re-added: the child watch saw
  // it, once.
  ExpectLogSoon(children, {"c:NodeChildrenChanged /a"});
  ExpectNoMore(children, 1);
  EXPECT_EQ(states.Entries().size(), 3u);

  // Ephemerals survived; closing deletes them.
  EXPECT_TRUE(writer->Exists("/a/eph")->has_value());
  EXPECT_TRUE(client->Close().ok());
  EXPECT_FALSE(writer->Exists("/a/eph")->has_value());
}

// Watches set before a break, changes made while the client is away: the client re-adds its
// watches from the last zxid it saw and the server replays what they missed, as real events in
// zxid order, exactly once, for one-shot and persistent watches, then live events. `restart`: the
// server also restarts meanwhile (it rebuilds its change history from the log).
void WatchesResumeWithoutMissingEvents(bool restart) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TcpProxy proxy(PortOf(server->Endpoint(0)));
  Log states;
  ConnectArgs args;
  args.listener = states.Listener();
  auto client = ConnectTo(proxy.Endpoint(), std::move(args));
  ASSERT_NE(client, nullptr);
  for (const char* path : {"/b", "/b/changed", "/b/deleted", "/b/parent", "/b/same", "/b/p"}) {
    ASSERT_TRUE(client->Create(path).ok());
  }
  Log log;
  ASSERT_TRUE(client->Get("/b/changed", log.Watch("changed")).ok());
  ASSERT_TRUE(client->Exists("/b/deleted", log.Watch("deleted")).ok());
  ASSERT_TRUE(client->Exists("/b/created", log.Watch("created")).ok());
  ASSERT_TRUE(client->GetChildren("/b/parent", log.Watch("parent")).ok());
  ASSERT_TRUE(client->Get("/b/same", log.Watch("same")).ok());
  ASSERT_TRUE(client->AddWatch("/b/p", AddWatchMode::kPersistent, log.Watch("p")).ok());

  proxy.Cut();
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED"});
  if (restart) {
    ASSERT_TRUE(server->Stop(0).ok());
    ASSERT_TRUE(server->Restart(0).ok());
  }
  std::map<std::string, int64_t> zxid;
  {
    auto writer = ConnectTo(server->Endpoint(0));
    ASSERT_NE(writer, nullptr);
    ASSERT_TRUE(writer->Set("/b/changed", "1").ok());
    zxid["changed"] = writer->Exists("/b/changed")->value().mzxid;
    ASSERT_TRUE(writer->Set("/b/changed", "2").ok());  // one-shot: fired once, by the first
    ASSERT_TRUE(writer->Set("/b/p", "1").ok());
    zxid["p1"] = writer->Exists("/b/p")->value().mzxid;
    ASSERT_TRUE(writer->Delete("/b/deleted").ok());
    ASSERT_TRUE(writer->Create("/b/created").ok());
    ASSERT_TRUE(writer->Create("/b/parent/kid").ok());
    ASSERT_TRUE(writer->Set("/b/p", "2").ok());
    zxid["p2"] = writer->Exists("/b/p")->value().mzxid;
  }
  proxy.Restore();
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED", "RECONNECTED"});
  EXPECT_THAT(log.WaitFor(6),
              ::testing::UnorderedElementsAre(
                  "changed:NodeDataChanged /b/changed", "deleted:NodeDeleted /b/deleted",
                  "created:NodeCreated /b/created", "parent:NodeChildrenChanged /b/parent",
                  "p:NodeDataChanged /b/p", "p:NodeDataChanged /b/p"));
  ExpectNoMore(log, 6);
  std::vector<int64_t> p_zxids;
  for (const WatchEvent& e : log.Events()) {
    if (e.path == "/b/changed") {
      EXPECT_EQ(e.zxid, zxid["changed"]) << "the first change's";
    }
    if (e.path == "/b/p") p_zxids.push_back(e.zxid);
  }
  EXPECT_THAT(p_zxids, ElementsAre(zxid["p1"], zxid["p2"]));

  // The untouched one-shot watch and the persistent watch are armed again.
  auto writer = ConnectTo(server->Endpoint(0));
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Set("/b/same", "now").ok());
  ASSERT_TRUE(writer->Set("/b/p", "3").ok());
  std::vector<std::string> later = log.WaitFor(8);
  EXPECT_THAT(std::vector<std::string>(later.begin() + 6, later.end()),
              ElementsAre("same:NodeDataChanged /b/same", "p:NodeDataChanged /b/p"));
  ExpectNoMore(log, 8);
}

TEST(ClientSessionTest, WatchesResumeAcrossANetworkBreakWithoutMissingEvents) {
  WatchesResumeWithoutMissingEvents(/*restart=*/false);
}

TEST(ClientSessionTest, WatchesResumeAcrossAServerRestartWithoutMissingEvents) {
  WatchesResumeWithoutMissingEvents(/*restart=*/true);
}

// When the server's change history no longer reaches back (here it keeps none), one-shot watches
// fire from what a re-read shows (ZooKeeper's setWatches) and persistent watches are told they
// may have missed events.
TEST(ClientSessionTest, WithoutHistoryOneShotWatchesAreResolvedByReReading) {
  auto server = StartServer({"--watch-history-events=0"});
  ASSERT_NE(server, nullptr);
  TcpProxy proxy(PortOf(server->Endpoint(0)));
  Log states;
  ConnectArgs args;
  args.listener = states.Listener();
  auto client = ConnectTo(proxy.Endpoint(), std::move(args));
  ASSERT_NE(client, nullptr);
  for (const char* path : {"/b", "/b/changed", "/b/deleted", "/b/parent", "/b/same", "/b/p"}) {
    ASSERT_TRUE(client->Create(path).ok());
  }
  Log log;
  ASSERT_TRUE(client->Get("/b/changed", log.Watch("changed")).ok());
  ASSERT_TRUE(client->Exists("/b/deleted", log.Watch("deleted")).ok());
  ASSERT_TRUE(client->Exists("/b/created", log.Watch("created")).ok());
  ASSERT_TRUE(client->GetChildren("/b/parent", log.Watch("parent")).ok());
  ASSERT_TRUE(client->Get("/b/same", log.Watch("same")).ok());
  ASSERT_TRUE(client->AddWatch("/b/p", AddWatchMode::kPersistent, log.Watch("p")).ok());

  proxy.Cut();
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED"});
  int64_t changed_mzxid = 0;
  {
    auto writer = ConnectTo(server->Endpoint(0));
    ASSERT_NE(writer, nullptr);
    ASSERT_TRUE(writer->Set("/b/changed", "1").ok());
    changed_mzxid = writer->Exists("/b/changed")->value().mzxid;
    ASSERT_TRUE(writer->Delete("/b/deleted").ok());
    ASSERT_TRUE(writer->Create("/b/created").ok());
    ASSERT_TRUE(writer->Create("/b/parent/kid").ok());
    ASSERT_TRUE(writer->Set("/b/p", "missed").ok());
  }
  proxy.Restore();
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED", "RECONNECTED"});
  EXPECT_THAT(log.WaitFor(5),
              ::testing::UnorderedElementsAre(
                  "changed:NodeDataChanged /b/changed", "deleted:NodeDeleted /b/deleted",
                  "created:NodeCreated /b/created", "parent:NodeChildrenChanged /b/parent",
                  "p:EventsMissed /b/p"));
  ExpectNoMore(log, 5);
  for (const WatchEvent& e : log.Events()) {
    if (e.path == "/b/changed") {
      EXPECT_EQ(e.zxid, changed_mzxid);
    }
  }

  auto writer = ConnectTo(server->Endpoint(0));
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Set("/b/same", "now").ok());
  ASSERT_TRUE(writer->Set("/b/p", "seen").ok());
  std::vector<std::string> later = log.WaitFor(7);
  EXPECT_THAT(std::vector<std::string>(later.begin() + 5, later.end()),
              ElementsAre("same:NodeDataChanged /b/same", "p:NodeDataChanged /b/p"));
}

// Reads in flight when the stream breaks are resent; writes in flight fail with UNAVAILABLE and
// say their outcome is unknown; requests time out after request_timeout; a silent server is
// abandoned at 2/3 of the session timeout and the session resumed once it answers again.
TEST(ClientSessionTest, InFlightRequestsAcrossABreakAndASilentServer) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  Log states;
  ConnectArgs args;
  args.session_timeout = absl::Seconds(3);
  args.request_timeout = absl::Milliseconds(400);
  args.listener = states.Listener();
  auto client = ConnectTo(server->Endpoint(0), std::move(args));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Create("/i", "0").ok());

  // Paused: requests are written but never answered.
  PauseFully(server.get());
  absl::Time start = absl::Now();
  auto timed_out = client->Get("/i");
  EXPECT_THAT(timed_out.status(), HasCode(v1::UNAVAILABLE));
  EXPECT_THAT(timed_out.status().message(), HasSubstr("request_timeout"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(400));
  auto write_timed_out = client->Set("/i", "x");
  EXPECT_THAT(write_timed_out.status(), HasCode(v1::UNAVAILABLE));
  EXPECT_THAT(write_timed_out.status().message(), HasSubstr("outcome is unknown"));
  // Silent for 2/3 of the session timeout (2s): the client lets the stream go.
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED"}, absl::Seconds(4));
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  ASSERT_TRUE(server->Resume(0).ok());
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED", "RECONNECTED"}, absl::Seconds(4));
  EXPECT_TRUE(client->Get("/i").ok());

  // A break with requests in flight: the read is resent, the write fails (outcome unknown).
  // (A fresh node: the writes that timed out above may have been applied after the resume.)
  auto patient = ConnectTo(server->Endpoint(0));
  ASSERT_NE(patient, nullptr);
  ASSERT_TRUE(patient->Create("/j", "0").ok());
  PauseFully(server.get());
  Async<Stat> in_flight_write;
  patient->SetAsync("/j", "y", std::nullopt, in_flight_write.Done());
  Async<NodeData> in_flight_read;
  patient->GetAsync("/j", in_flight_read.Done());
  absl::SleepFor(absl::Milliseconds(200));  // written to the socket long before this
  ASSERT_TRUE(server->Kill(0).ok());
  auto write = in_flight_write.Wait();
  EXPECT_THAT(write.status(), HasCode(v1::UNAVAILABLE));
  EXPECT_THAT(write.status().message(), HasSubstr("outcome is unknown"));
  EXPECT_FALSE(in_flight_read.done());
  ASSERT_TRUE(server->Restart(0).ok());
  auto read = in_flight_read.Wait();
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->data, "0") << "the write in flight died with the killed server";
  EXPECT_TRUE(patient->Get("/j").ok());
}

// LOST by the client's own timer (the brief's "server down past the timeout"): with the server
// down, nothing is heard for the session timeout, so the client declares LOST and stops trying,
// even though the restarted server re-tracks the session with a fresh timeout; it expires there
// on its own, deleting the ephemerals. Bounded: timeout 1s, so LOST comes ~1s after the stop
// and the server's expiry within ~1s after the restart.
TEST(ClientSessionTest, LostWhenNoServerIsHeardFromForTheSessionTimeout) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  Log states;
  ConnectArgs args;
  args.session_timeout = absl::Seconds(1);
  args.listener = states.Listener();
  auto client = ConnectTo(server->Endpoint(0), std::move(args));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Create("/l", "", CreateMode::kEphemeral).ok());
  Log watch;
  ASSERT_TRUE(client->AddWatch("/", AddWatchMode::kPersistentRecursive, watch.Watch("w")).ok());

  absl::Time stopped = absl::Now();
  ASSERT_TRUE(server->Stop(0).ok());
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED", "LOST"}, absl::Seconds(5));
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(3));
  EXPECT_EQ(client->state(), ConnectionState::kLost);
  auto after = client->Get("/");
  EXPECT_THAT(after.status(), HasCode(v1::SESSION_EXPIRED));
  EXPECT_THAT(after.status().message(), HasSubstr("lost"));

  ASSERT_TRUE(server->Restart(0).ok());
  auto observer = ConnectTo(server->Endpoint(0));
  ASSERT_NE(observer, nullptr);
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (observer->Exists("/l").value_or(std::nullopt).has_value() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_FALSE(observer->Exists("/l")->has_value()) << "the server expired the session";
  EXPECT_EQ(client->state(), ConnectionState::kLost) << "LOST is final";
  EXPECT_THAT(client->Set("/l", "").status(), HasCode(v1::SESSION_EXPIRED));
  EXPECT_TRUE(watch.Entries().empty()) << "watchers are dropped without an event on LOST";
  EXPECT_EQ(states.Entries().size(), 3u);
  EXPECT_TRUE(client->Close().ok());
}

// LOST on the server's word, well before the timeout: a resume refused (here the stream lands on
// a server that does not know the session, as one whose session expired), or the session closed
// from elsewhere while the client is connected.
TEST(ClientSessionTest, LostWhenTheServerSaysTheSessionExpired) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto stranger = StartServer();
  ASSERT_NE(stranger, nullptr);
  TcpProxy proxy(PortOf(server->Endpoint(0)));
  Log states;
  ConnectArgs args;
  args.listener = states.Listener();
  auto client = ConnectTo(proxy.Endpoint(), std::move(args));
  ASSERT_NE(client, nullptr);
  Async<NodeData> pending;
  ASSERT_TRUE(client->Get("/").ok());

  absl::Time cut = absl::Now();
  proxy.SetTarget(PortOf(stranger->Endpoint(0)));
  proxy.Cut();
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED"});
  client->GetAsync("/", pending.Done());
  proxy.Restore();
  ExpectLogSoon(states, {"CONNECTED", "SUSPENDED", "LOST"});
  EXPECT_LT(absl::Now() - cut, absl::Seconds(5)) << "not the 10s timeout: the server's answer";
  EXPECT_THAT(pending.Wait().status(), HasCode(v1::SESSION_EXPIRED));
  EXPECT_THAT(pending.Wait().status().message(), HasSubstr("resuming"));

  // Closed from elsewhere while connected: the next exchange says so.
  Log states2;
  ConnectArgs args2;
  args2.listener = states2.Listener();
  auto second = ConnectTo(server->Endpoint(0), std::move(args2));
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->Create("/e2", "", CreateMode::kEphemeral).ok());
  CloseSessionElsewhere(server->Endpoint(0), second->session_id());
  EXPECT_THAT(second->Get("/").status(), HasCode(v1::SESSION_EXPIRED));
  ExpectLogSoon(states2, {"CONNECTED", "LOST"});
  EXPECT_THAT(second->Exists("/").status(), HasCode(v1::SESSION_EXPIRED));
}

}  // namespace
}  // namespace confab
