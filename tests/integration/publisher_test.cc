// ConfigPublisher (confab_recipes) against a real confabd: schema refusals that name the key, the
// rule and the value and apply nothing; a release applied at one zxid (as a ConfigCache sees it);
// the release-counter guard against a concurrent publisher; history; rollback to exactly an
// earlier content; and the two Superset samples (superset_publisher, dashboard_node) run end to
// end as their users run them (fork/exec, every wait bounded).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "child_process.h"
#include "confab/client.h"
#include "confab/config_cache.h"
#include "confab/config_publisher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test_server.h"

namespace confab {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr absl::Duration kWait = absl::Seconds(10);

using itest::WaitFor;

ConfigSchema TestSchema() {
  ConfigSchema schema;
  schema.keys["URI"] = ValueRule::Of(ValueType::kString).Required();
  schema.keys["ROW_LIMIT"] = ValueRule::Of(ValueType::kInteger).Required().Range(1, 100000);
  schema.keys["MODE"] = ValueRule::Of(ValueType::kString).OneOf({"fast", "safe"});
  schema.keys["FLAGS"] = ValueRule::Of(ValueType::kObject).Members(ValueType::kBoolean);
  schema.keys["EXTRA"] = ValueRule();
  schema.keys["nested/KEY"] = ValueRule::Of(ValueType::kInteger);
  return schema;
}

class PublisherTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = itest::StartConfabd().release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    config_root_ = absl::StrCat(itest::TestRoot(), "/config");
    release_root_ = absl::StrCat(itest::TestRoot(), "/config-releases");
  }

  std::unique_ptr<Client> Connect() {
    ClientOptions options;
    options.endpoints = server_->Endpoint(0);
    options.request_timeout = absl::Seconds(10);
    auto client = Client::Connect(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  std::unique_ptr<ConfigPublisher> Publisher(Client* client) {
    return std::make_unique<ConfigPublisher>(client, config_root_, release_root_, TestSchema());
  }

  static testing::LocalEnsemble* server_;
  std::string config_root_;
  std::string release_root_;
};

testing::LocalEnsemble* PublisherTest::server_ = nullptr;

const std::map<std::string, json> kInitial = {
    {"URI", "postgresql://db/superset"}, {"ROW_LIMIT", 5000}, {"MODE", "fast"}};

TEST_F(PublisherTest, SchemaRefusesBadValuesClearlyAndAppliesNothing) {
  auto client = Connect();
  ASSERT_TRUE(client);
  auto publisher = Publisher(client.get());

  // A first release must carry the required keys.
  absl::StatusOr<PublishResult> missing = publisher->Publish({{"URI", "x"}}, "alice", "no limit");
  ASSERT_TRUE(absl::IsInvalidArgument(missing.status())) << missing.status();
  EXPECT_THAT(missing.status().message(),
              AllOf(HasSubstr("'ROW_LIMIT'"), HasSubstr("rule required")));

  ASSERT_TRUE(publisher->Publish(kInitial, "alice", "initial").ok());

  struct Case {
    std::map<std::string, json> changes;
    std::vector<std::string> expected;  // substrings of the message
  };
  const std::vector<Case> cases = {
      {{{"ROW_LIMIT", -1}}, {"config key 'ROW_LIMIT'", "rule minimum=1", "value -1"}},
      {{{"ROW_LIMIT", 100001}}, {"config key 'ROW_LIMIT'", "rule maximum=100000", "100001"}},
      {{{"ROW_LIMIT", "lots"}}, {"'ROW_LIMIT'", "rule type=integer", "\"lots\"", "string"}},
      {{{"ROW_LIMIT", 2.5}}, {"'ROW_LIMIT'", "rule type=integer", "2.5"}},
      {{{"MODE", "turbo"}}, {"'MODE'", "rule enum=[\"fast\", \"safe\"]", "\"turbo\""}},
      {{{"FLAGS", {{"A", "yes"}}}}, {"'FLAGS'", "rule member-type=boolean", "member 'A'"}},
      {{{"URI", nullptr}}, {"'URI'", "rule required"}},
      {{{"UNKNOWN", 1}}, {"'UNKNOWN'", "rule known-key"}},
      {{{"ROW_LIMIT", 7}, {"MODE", 3}}, {"'MODE'", "rule type=string", "value 3"}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<PublishResult> r = publisher->Publish(c.changes, "mallory", "bad");
    ASSERT_TRUE(absl::IsInvalidArgument(r.status())) << json(c.changes).dump() << r.status();
    for (const std::string& e : c.expected) {
      EXPECT_THAT(r.status().message(), HasSubstr(e)) << json(c.changes).dump();
    }
  }
  // Several problems are all reported.
  absl::StatusOr<PublishResult> two =
      publisher->Publish({{"ROW_LIMIT", 0}, {"MODE", "x"}}, "mallory", "bad");
  EXPECT_THAT(two.status().message(), AllOf(HasSubstr("'ROW_LIMIT'"), HasSubstr("'MODE'")));

  // Nothing applied: content and history as after the first release.
  absl::StatusOr<std::map<std::string, json>> current = publisher->Current();
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(*current, kInitial);
  absl::StatusOr<std::vector<Release>> history = publisher->History();
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_EQ(history->size(), 1u);
}

TEST_F(PublisherTest, AReleaseAppliesAtOneZxidAsACacheSeesIt) {
  auto client = Connect();
  auto reader = Connect();
  ASSERT_TRUE(client && reader);
  auto publisher = Publisher(client.get());
  ASSERT_TRUE(publisher->Publish(kInitial, "alice", "initial").ok());

  ConfigCache cache(reader.get(), config_root_);
  ASSERT_TRUE(cache.Start().ok());
  absl::Mutex mu;
  std::vector<ConfigChange> seen;
  cache.AddListener([&](const ConfigChange& change) {
    absl::MutexLock lock(&mu);
    seen.push_back(change);
  });

  absl::StatusOr<PublishResult> r = publisher->Publish(
      {{"ROW_LIMIT", 200}, {"MODE", nullptr}, {"FLAGS", {{"A", true}}}, {"nested/KEY", 4}}, "bob",
      "four changes");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->release, 2);
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return seen.size() >= 4;
  }));
  absl::MutexLock lock(&mu);
  ASSERT_EQ(seen.size(), 4u);
  std::set<std::string> keys;
  for (const ConfigChange& c : seen) {
    keys.insert(c.key);
    EXPECT_EQ(c.zxid, r->zxid) << c.key;
  }
  EXPECT_EQ(keys, (std::set<std::string>{"ROW_LIMIT", "MODE", "FLAGS", "nested/KEY"}));
  EXPECT_EQ(cache.GetOr<int>("ROW_LIMIT", 0), 200);
  EXPECT_FALSE(cache.Raw("MODE").has_value());
  EXPECT_EQ(cache.GetOr<int>("nested/KEY", 0), 4);
}

TEST_F(PublisherTest, AConcurrentPublisherGetsAConflictNotALostUpdate) {
  auto a = Connect();
  auto b = Connect();
  ASSERT_TRUE(a && b);
  auto pa = Publisher(a.get());
  auto pb = Publisher(b.get());
  ASSERT_TRUE(pa->Publish(kInitial, "alice", "initial").ok());

  // B releases between A's reads and A's Multi: A's Check on the counter fails.
  absl::StatusOr<PublishResult> b_result;
  pa->SetBeforeCommitHookForTesting([&] {
    b_result = pb->Publish({{"ROW_LIMIT", 300}, {"EXTRA", "from b"}}, "bob", "b wins");
  });
  absl::StatusOr<PublishResult> a_result =
      pa->Publish({{"ROW_LIMIT", 400}, {"MODE", "safe"}}, "alice", "a loses");
  pa->SetBeforeCommitHookForTesting(nullptr);
  ASSERT_TRUE(b_result.ok()) << b_result.status();
  EXPECT_EQ(b_result->release, 2);
  ASSERT_TRUE(absl::IsAborted(a_result.status())) << a_result.status();
  EXPECT_THAT(a_result.status().message(),
              AllOf(HasSubstr("release conflict"), HasSubstr(release_root_)));

  // Nothing of A applied; B's release whole.
  std::map<std::string, json> expected = kInitial;
  expected["ROW_LIMIT"] = 300;
  expected["EXTRA"] = "from b";
  EXPECT_EQ(*pa->Current(), expected);
  ASSERT_EQ(pa->History()->size(), 2u);

  // Racing publishers (each retrying on conflict): every release numbered once, in order, and
  // each one's content is the previous content plus its own change.
  constexpr int kThreads = 4;
  constexpr int kEach = 4;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kThreads; ++i) clients.push_back(Connect());
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto p = Publisher(clients[t].get());
      for (int i = 0; i < kEach; ++i) {
        for (int attempt = 0; attempt < 100; ++attempt) {
          absl::StatusOr<PublishResult> r =
              p->Publish({{"EXTRA", absl::StrCat("t", t, "-", i)}}, absl::StrCat("t", t), "race");
          if (r.ok()) break;
          EXPECT_TRUE(absl::IsAborted(r.status())) << r.status();
          ++conflicts;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  absl::StatusOr<std::vector<Release>> history = pa->History();
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u + kThreads * kEach);
  for (size_t i = 0; i < history->size(); ++i) {
    EXPECT_EQ((*history)[i].number, static_cast<int64_t>(i + 1));
    if (i > 0) {
      EXPECT_GT((*history)[i].zxid, (*history)[i - 1].zxid);
    }
  }
  EXPECT_EQ((*pa->Current())["EXTRA"], history->back().changes["EXTRA"]);
  EXPECT_EQ(pa->Current()->size(), history->back().content.size());
  RecordProperty("conflicts", conflicts.load());
}

TEST_F(PublisherTest, HistoryRecordsEveryRelease) {
  auto client = Connect();
  ASSERT_TRUE(client);
  auto publisher = Publisher(client.get());
  const int64_t before = absl::ToUnixMillis(absl::Now());
  absl::StatusOr<PublishResult> r1 = publisher->Publish(kInitial, "alice", "initial");
  absl::StatusOr<PublishResult> r2 = publisher->Publish({{"ROW_LIMIT", 9}}, "bob", "smaller");
  absl::StatusOr<PublishResult> r3 = publisher->Publish({{"MODE", nullptr}}, "carol", "no mode");
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  EXPECT_LT(r1->zxid, r2->zxid);
  EXPECT_LT(r2->zxid, r3->zxid);

  absl::StatusOr<std::vector<Release>> history = publisher->History();
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 3u);
  const Release& h1 = (*history)[0];
  const Release& h2 = (*history)[1];
  const Release& h3 = (*history)[2];
  EXPECT_EQ(h1.number, 1);
  EXPECT_EQ(h1.who, "alice");
  EXPECT_EQ(h1.message, "initial");
  EXPECT_EQ(h1.zxid, r1->zxid);
  EXPECT_GE(h1.when_ms, before);
  EXPECT_EQ(h1.content, kInitial);
  EXPECT_EQ(h2.number, 2);
  EXPECT_EQ(h2.who, "bob");
  EXPECT_EQ(h2.changes, json({{"ROW_LIMIT", 9}}));
  std::map<std::string, json> c2 = kInitial;
  c2["ROW_LIMIT"] = 9;
  EXPECT_EQ(h2.content, c2);
  EXPECT_EQ(h3.number, 3);
  EXPECT_EQ(h3.changes, json({{"MODE", nullptr}}));
  c2.erase("MODE");
  EXPECT_EQ(h3.content, c2);
  EXPECT_EQ(publisher->GetRelease(2)->who, "bob");
  EXPECT_TRUE(absl::IsNotFound(publisher->GetRelease(9).status()));
}

TEST_F(PublisherTest, RollbackRestoresExactlyTheEarlierContent) {
  auto client = Connect();
  ASSERT_TRUE(client);
  auto publisher = Publisher(client.get());
  ASSERT_TRUE(publisher->Publish(kInitial, "alice", "initial").ok());
  ASSERT_TRUE(
      publisher->Publish({{"ROW_LIMIT", 77}, {"EXTRA", {1, 2}}, {"nested/KEY", 5}}, "bob", "more")
          .ok());
  ASSERT_TRUE(
      publisher->Publish({{"MODE", nullptr}, {"FLAGS", {{"X", false}}}}, "carol", "less").ok());

  absl::StatusOr<PublishResult> back = publisher->Rollback(1, "dave", "undo");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->release, 4);
  absl::StatusOr<std::map<std::string, json>> current = publisher->Current();
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(*current, kInitial);  // EXTRA, nested/KEY and FLAGS deleted, MODE back
  absl::StatusOr<Release> r4 = publisher->GetRelease(4);
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(r4->content, kInitial);
  EXPECT_EQ(r4->who, "dave");
  EXPECT_EQ(r4->message, "rollback to release 1: undo");
  EXPECT_EQ(r4->changes, json({{"ROW_LIMIT", 5000},
                               {"EXTRA", nullptr},
                               {"nested/KEY", nullptr},
                               {"MODE", "fast"},
                               {"FLAGS", nullptr}}));

  // And forward again to release 3.
  ASSERT_TRUE(publisher->Rollback(3, "dave", "").ok());
  EXPECT_EQ(*publisher->Current(), publisher->GetRelease(3)->content);
  EXPECT_TRUE(absl::IsNotFound(publisher->Rollback(42, "dave", "").status()));
}

// ---- The samples, run as their users run them ----

// One sample process, its output collected while the test waits on it.
class Process {
 public:
  explicit Process(std::vector<std::string> args) : process_(std::move(args)) {}
  bool WaitForOutput(absl::string_view text) { return process_.WaitForOutput(text, kWait); }
  void Signal(int signal) { process_.Signal(signal); }
  int Finish(absl::Duration timeout = kWait) { return process_.Finish(timeout).exit_code; }
  const std::string& out() const { return process_.out(); }
  const std::string& err() const { return process_.err(); }

 private:
  itest::ChildProcess process_;
};

TEST_F(PublisherTest, SupersetSamplesEndToEnd) {
  const std::string endpoint = server_->Endpoint(0);
  Process node(
      {DASHBOARD_NODE_PATH, "--endpoints", endpoint, "--name", "node-a", "--run-seconds", "30"});
  ASSERT_TRUE(node.WaitForOutput("[node-a] config loaded")) << node.out() << node.err();
  ASSERT_TRUE(node.WaitForOutput("[node-a] became leader for scheduled reports"))
      << node.out() << node.err();

  Process publisher({SUPERSET_PUBLISHER_PATH, "--endpoints", endpoint});
  const int publisher_exit = publisher.Finish(absl::Seconds(20));
  const std::string& out = publisher.out();
  EXPECT_EQ(publisher_exit, 0) << out << publisher.err();
  EXPECT_THAT(out, HasSubstr("release 1: zxid "));
  EXPECT_THAT(out, HasSubstr("initial Superset configuration"));
  EXPECT_THAT(out, HasSubstr("release 2: zxid "));
  EXPECT_THAT(out, HasSubstr("changes: {\"ROW_LIMIT\":10000}"));
  EXPECT_THAT(out, AllOf(HasSubstr("rejected: "), HasSubstr("config key 'ROW_LIMIT'"),
                         HasSubstr("rule minimum=1"), HasSubstr("value -5")));
  EXPECT_THAT(out, HasSubstr("release 3: zxid "));
  EXPECT_THAT(out, HasSubstr("rollback to release 1"));
  EXPECT_THAT(out, HasSubstr("rolled back to release 1 as release 3"));
  EXPECT_THAT(out, HasSubstr("history: 3 releases"));

  // The node follows the releases live. A change undone by the next release before the node
  // re-read the key may collapse (events carry no data; ConfigCache re-reads), so only the final
  // state is certain (checked below, after one more release).
  EXPECT_TRUE(node.WaitForOutput("[node-a] config change ROW_LIMIT: ")) << node.out();

  // A change published while it runs (another release).
  auto client = Connect();
  ASSERT_TRUE(client);
  ConfigSchema open;
  open.allow_unknown_keys = true;
  ConfigPublisher direct(client.get(), "/superset/config", "/superset/config-releases", open);
  ASSERT_TRUE(direct.Publish({{"SQLLAB_TIMEOUT", 42}}, "test", "while running").ok());
  EXPECT_TRUE(node.WaitForOutput("[node-a] config change SQLLAB_TIMEOUT: ")) << node.out();
  EXPECT_TRUE(node.WaitForOutput("settings now: ROW_LIMIT=5000 SQLLAB_TIMEOUT=42")) << node.out();
  EXPECT_TRUE(node.WaitForOutput("fencing token ")) << node.out();
  EXPECT_TRUE(node.WaitForOutput("scheduled reports job #")) << node.out();

  node.Signal(SIGTERM);
  EXPECT_EQ(node.Finish(), 0) << node.out() << node.err();
  EXPECT_THAT(node.out(),
              AllOf(HasSubstr("[node-a] stopping (signal)"), HasSubstr("[node-a] stopped")));
  EXPECT_THAT(node.out(), HasSubstr("[node-a] registered as /superset/nodes/dashboard/_c_"));
}

}  // namespace
}  // namespace confab
