// confabctl as its users run it: the real binary (fork/exec, every wait bounded) against a real
// confabd. Every verb in text and json, the error paths with their exit codes and messages, rmr
// under concurrent changes, watches fed by another client, status, CONFAB_ENDPOINTS, and an
// ensemble that cannot be reached. Each test works under its own node (itest::TestRoot()) of one
// server shared by the suite.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "child_process.h"
#include "confab/client.h"
#include "confab/testing/local_ensemble.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test_server.h"

extern char** environ;

namespace confab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;
using json = nlohmann::json;

// No confabctl run in these tests should come near this; past it the run is killed and fails.
constexpr absl::Duration kRunTimeout = absl::Seconds(15);
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCannotConnect = 3;

using Outcome = itest::ChildOutcome;

// One confabctl process: its stdin is `input` (then closed), its stdout and stderr are collected
// while the test waits on it. The environment is the test's, without CONFAB_ENDPOINTS, plus
// `env` ("NAME=value").
class Confabctl {
 public:
  Confabctl(const std::vector<std::string>& args, const std::string& input = "",
            const std::vector<std::string>& env = {})
      : process_(Argv(args), input, Environment(env)) {}

  // Waits (bounded) until stdout holds `lines` complete lines; returns them.
  std::vector<std::string> WaitForLines(size_t lines, absl::Duration timeout = kRunTimeout) {
    std::vector<std::string> got = process_.WaitForLines(lines, timeout);
    EXPECT_GE(got.size(), lines) << "stdout so far:\n"
                                 << process_.out() << "stderr:\n"
                                 << process_.err();
    return got;
  }

  void Signal(int signal) { process_.Signal(signal); }

  // Waits (bounded) for the exit; kills the process past the bound (exit_code stays -1).
  Outcome Finish(absl::Duration timeout = kRunTimeout) { return process_.Finish(timeout); }

 private:
  static std::vector<std::string> Argv(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {CONFABCTL_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  static std::vector<std::string> Environment(const std::vector<std::string>& extra) {
    std::vector<std::string> env;
    for (std::string& e : itest::ChildProcess::CurrentEnvironment()) {
      if (!absl::StartsWith(e, "CONFAB_ENDPOINTS=")) env.push_back(std::move(e));
    }
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
  }

  itest::ChildProcess process_;
};

// The server's count of watches (from the Status call): a watch confabctl set is armed once it
// counts.
uint64_t ServerWatchCount(const std::string& endpoint) {
  auto stub =
      v1::Coordination::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::StatusResponse response;
  EXPECT_TRUE(stub->Status(&context, v1::StatusRequest(), &response).ok());
  return response.watch_count();
}

void WaitForServerWatchCount(const std::string& endpoint, uint64_t count) {
  const absl::Time deadline = absl::Now() + kRunTimeout;
  while (ServerWatchCount(endpoint) < count) {
    ASSERT_LT(absl::Now(), deadline) << "watch not armed";
    absl::SleepFor(absl::Milliseconds(10));
  }
}

class ConfabctlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = itest::StartConfabd().release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ClientOptions options;
    options.endpoints = Endpoint();
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(std::move(options));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    root_ = itest::TestRoot();
    ASSERT_TRUE(client_->Create(root_).ok());
  }

  static std::string Endpoint() { return server_->Endpoint(0); }

  // confabctl --endpoints=<the server> ARGS, run to its end.
  static Outcome Ctl(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), "--endpoints=" + Endpoint());
    return Confabctl(args, input).Finish();
  }

  // Ctl(args...) -o json, which must succeed and print one JSON object.
  static json CtlJson(std::vector<std::string> args) {
    args.insert(args.end(), {"-o", "json"});
    Outcome o = Ctl(args);
    EXPECT_EQ(o.exit_code, 0) << o;
    EXPECT_EQ(std::count(o.out.begin(), o.out.end(), '\n'), 1) << o;
    return json::parse(o.out, nullptr, /*allow_exceptions=*/false);
  }

  std::string P(absl::string_view relative) const { return absl::StrCat(root_, relative); }

  static testing::LocalEnsemble* server_;
  std::unique_ptr<Client> client_;
  std::string root_;
};

testing::LocalEnsemble* ConfabctlTest::server_ = nullptr;

TEST_F(ConfabctlTest, CreateGetSetDeleteInText) {
  Outcome created = Ctl({"create", P("/a"), "hello"});
  EXPECT_EQ(created.exit_code, 0) << created;
  EXPECT_EQ(created.out, P("/a") + "\n");
  EXPECT_EQ(created.err, "");

  Outcome got = Ctl({"get", P("/a")});
  EXPECT_EQ(got.exit_code, 0) << got;
  EXPECT_EQ(got.out, "hello\n");

  Outcome set = Ctl({"set", P("/a"), "world"});
  EXPECT_EQ(set.exit_code, 0) << set;
  EXPECT_EQ(set.out, "");
  EXPECT_EQ(client_->Get(P("/a"))->data, "world");

  Outcome set_versioned = Ctl({"set", "-v", "1", P("/a"), "again"});
  EXPECT_EQ(set_versioned.exit_code, 0) << set_versioned;
  EXPECT_EQ(client_->Get(P("/a"))->stat.version, 2);

  Outcome empty = Ctl({"create", P("/empty")});
  EXPECT_EQ(empty.exit_code, 0) << empty;
  EXPECT_EQ(client_->Get(P("/empty"))->data, "");

  Outcome listed = Ctl({"ls", root_});
  EXPECT_EQ(listed.exit_code, 0) << listed;
  EXPECT_EQ(listed.out, "a\nempty\n");

  Outcome deleted = Ctl({"delete", "-v", "2", P("/a")});
  EXPECT_EQ(deleted.exit_code, 0) << deleted;
  EXPECT_EQ(deleted.out, "");
  EXPECT_FALSE(client_->Exists(P("/a"))->has_value());
}

TEST_F(ConfabctlTest, EveryVerbInJson) {
  json created = CtlJson({"create", P("/a"), "hello"});
  EXPECT_EQ(created["path"], P("/a"));
  const int64_t czxid = created["stat"]["czxid"];
  EXPECT_GT(czxid, 0);

  json got = CtlJson({"get", P("/a")});
  EXPECT_EQ(got["path"], P("/a"));
  EXPECT_EQ(got["data"], "hello");
  EXPECT_EQ(got["stat"]["czxid"], czxid);
  EXPECT_EQ(got["stat"]["version"], 0);
  EXPECT_EQ(got["stat"]["data_length"], 5);
  // Times are ms since the epoch, zxids plain numbers.
  EXPECT_NEAR(static_cast<double>(got["stat"]["ctime"].get<int64_t>()),
              static_cast<double>(absl::ToUnixMillis(absl::Now())), 60'000.0);

  json set = CtlJson({"set", P("/a"), "world"});
  EXPECT_EQ(set["stat"]["version"], 1);
  EXPECT_GT(set["stat"]["mzxid"].get<int64_t>(), czxid);

  CtlJson({"create", P("/a/x")});
  json listed = CtlJson({"ls", P("/a")});
  EXPECT_EQ(listed["children"], json::array({"x"}));

  json stat = CtlJson({"stat", P("/a")});
  EXPECT_EQ(stat["stat"]["num_children"], 1);
  EXPECT_EQ(stat["stat"]["version"], 1);
  EXPECT_EQ(stat["stat"]["ephemeral_owner"], 0);

  json deleted = CtlJson({"delete", P("/a/x")});
  EXPECT_EQ(deleted["path"], P("/a/x"));
  EXPECT_FALSE(client_->Exists(P("/a/x"))->has_value());

  // Data that is not UTF-8 comes as base64.
  ASSERT_TRUE(client_->Create(P("/bin"), std::string("\xff\x00\x01", 3)).ok());
  json binary = CtlJson({"get", P("/bin")});
  EXPECT_FALSE(binary.contains("data"));
  EXPECT_EQ(binary["data_base64"], "/wAB");
}

TEST_F(ConfabctlTest, StatIsZooKeeperStyle) {
  ASSERT_TRUE(client_->Create(P("/a"), "abc").ok());
  absl::StatusOr<Stat> stat = client_->Set(P("/a"), "abcd");
  ASSERT_TRUE(stat.ok());
  Outcome o = Ctl({"stat", P("/a")});
  ASSERT_EQ(o.exit_code, 0) << o;
  const std::string time = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z";
  std::vector<std::string> lines = absl::StrSplit(o.out, '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, ElementsAre(absl::StrCat("cZxid = 0x", absl::Hex(stat->czxid)),
                                 MatchesRegex("ctime = " + time),
                                 absl::StrCat("mZxid = 0x", absl::Hex(stat->mzxid)),
                                 MatchesRegex("mtime = " + time),
                                 absl::StrCat("pZxid = 0x", absl::Hex(stat->pzxid)), "cversion = 0",
                                 "dataVersion = 1", "ephemeralOwner = 0x0", "dataLength = 4",
                                 "numChildren = 0"));
  EXPECT_EQ(lines[1].substr(8),
            absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(stat->ctime),
                             absl::UTCTimeZone()));
}

TEST_F(ConfabctlTest, SequentialAndEphemeralCreates) {
  Outcome first = Ctl({"create", "-s", P("/job-"), "x"});
  Outcome second = Ctl({"create", "-s", P("/job-")});
  EXPECT_EQ(first.out, P("/job-0000000000\n")) << first;
  EXPECT_EQ(second.out, P("/job-0000000001\n")) << second;

  // The ephemeral belongs to confabctl's session, closed when it exits: gone at once.
  Outcome ephemeral = Ctl({"create", "-e", P("/lock")});
  EXPECT_EQ(ephemeral.exit_code, 0) << ephemeral;
  EXPECT_EQ(ephemeral.out, P("/lock\n"));
  EXPECT_FALSE(client_->Exists(P("/lock"))->has_value());

  json both = CtlJson({"create", "-e", "-s", P("/member-")});
  const std::string member = both["path"];
  EXPECT_THAT(member, MatchesRegex(P("/member-[0-9]{10}")));
  EXPECT_NE(both["stat"]["ephemeral_owner"], 0);
  EXPECT_FALSE(client_->Exists(member)->has_value());
}

TEST_F(ConfabctlTest, DataFromStdin) {
  Outcome created = Ctl({"create", P("/a"), "-"}, "from stdin\n");
  EXPECT_EQ(created.exit_code, 0) << created;
  EXPECT_EQ(client_->Get(P("/a"))->data, "from stdin\n");
  Outcome set = Ctl({"set", P("/a"), "-"}, std::string("bin\0ary", 7));
  EXPECT_EQ(set.exit_code, 0) << set;
  EXPECT_EQ(client_->Get(P("/a"))->data, std::string("bin\0ary", 7));
  // After `--`, data may start with '-'.
  Outcome dashed = Ctl({"set", "--", P("/a"), "-x-"});
  EXPECT_EQ(dashed.exit_code, 0) << dashed;
  EXPECT_EQ(client_->Get(P("/a"))->data, "-x-");
}

TEST_F(ConfabctlTest, ServerErrorsNameVerbPathAndCode) {
  ASSERT_TRUE(client_->Create(P("/a")).ok());
  ASSERT_TRUE(client_->Create(P("/a/child")).ok());
  struct Case {
    std::vector<std::string> args;
    std::string message_start;
  };
  const std::vector<Case> cases = {
      {{"get", P("/missing")}, "confabctl: get " + P("/missing") + ": NO_NODE: "},
      {{"stat", P("/missing")}, "confabctl: stat " + P("/missing") + ": NO_NODE: "},
      {{"ls", P("/missing")}, "confabctl: ls " + P("/missing") + ": NO_NODE: "},
      {{"tree", P("/missing")}, "confabctl: tree " + P("/missing") + ": NO_NODE: "},
      {{"rmr", P("/missing")}, "confabctl: rmr " + P("/missing") + ": NO_NODE: "},
      {{"create", P("/missing/x")}, "confabctl: create " + P("/missing/x") + ": NO_NODE: "},
      {{"create", P("/a")}, "confabctl: create " + P("/a") + ": NODE_EXISTS: "},
      {{"set", "-v", "7", P("/a"), "x"}, "confabctl: set " + P("/a") + ": BAD_VERSION: "},
      {{"delete", "-v", "7", P("/a/child")},
       "confabctl: delete " + P("/a/child") + ": BAD_VERSION: "},
      {{"delete", P("/a")}, "confabctl: delete " + P("/a") + ": NOT_EMPTY: "},
      {{"get", "no-slash"}, "confabctl: get no-slash: INVALID_PATH: "},
      {{"create", P("/a/")}, "confabctl: create " + P("/a/") + ": INVALID_PATH: "},
  };
  for (const Case& c : cases) {
    Outcome o = Ctl(c.args);
    EXPECT_EQ(o.exit_code, kExitFailed) << o;
    EXPECT_THAT(o.err, StartsWith(c.message_start)) << o;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o;
    EXPECT_EQ(o.out, "") << o;
  }
  // The server's message follows the code.
  Outcome bad_version = Ctl({"set", "-v", "7", P("/a"), "x"});
  EXPECT_THAT(bad_version.err, HasSubstr("expected 7, node has version 0"));
  Outcome not_empty = Ctl({"delete", P("/a")});
  EXPECT_THAT(not_empty.err, HasSubstr("it has 1 children"));
  // Nothing was changed by the failures.
  EXPECT_EQ(client_->Get(P("/a"))->stat.version, 0);
  EXPECT_TRUE(client_->Exists(P("/a/child"))->has_value());
}

TEST_F(ConfabctlTest, UsageErrorsPrintTheVerbsUsage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
    std::string usage;  // empty: the general usage
  };
  const std::vector<Case> cases = {
      {{"frobnicate", "/a"}, "confabctl: unknown verb \"frobnicate\"", ""},
      {{"set", "/a"},
       "confabctl: set: missing operand (want PATH DATA)",
       "usage: confabctl [GLOBAL OPTIONS] set [-v VERSION] PATH DATA"},
      {{"get", "/a", "/b"},
       "confabctl: get: too many operands (want PATH)",
       "usage: confabctl [GLOBAL OPTIONS] get PATH"},
      {{"delete", "-v", "x", "/a"},
       "confabctl: delete: -v must be an integer >= 0, not \"x\"",
       "usage: confabctl [GLOBAL OPTIONS] delete [-v VERSION] PATH"},
      {{"create", "-x", "/a"},
       "confabctl: create: unknown option -x",
       "usage: confabctl [GLOBAL OPTIONS] create [-e] [-s] PATH [DATA]"},
      {{"watch", "--count", "0", "/a"},
       "confabctl: watch: --count must be an integer >= 1, not \"0\"",
       "usage: confabctl [GLOBAL OPTIONS] watch [-r] [--count N] PATH"},
      {{"-o", "yaml", "get", "/a"}, "confabctl: -o must be text or json, not \"yaml\"", ""},
      {{"get", "/a", "--timeout", "soon"},
       "confabctl: get: --timeout must be a positive duration such as 500ms or 5s, not \"soon\"",
       "usage: confabctl [GLOBAL OPTIONS] get PATH"},
  };
  for (const Case& c : cases) {
    Outcome o = Confabctl(c.args).Finish();  // no server needed: nothing is sent
    EXPECT_EQ(o.exit_code, kExitUsage) << o;
    std::vector<std::string> lines = absl::StrSplit(o.err, '\n', absl::SkipEmpty());
    ASSERT_GE(lines.size(), 2u) << o;
    EXPECT_EQ(lines[0], c.message) << o;
    EXPECT_EQ(lines[1], c.usage.empty()
                            ? "usage: confabctl [GLOBAL OPTIONS] VERB [OPTIONS] OPERANDS"
                            : c.usage)
        << o;
    EXPECT_EQ(o.out, "");
  }
  Outcome nothing = Confabctl({}).Finish();
  EXPECT_EQ(nothing.exit_code, kExitUsage) << nothing;
  EXPECT_THAT(nothing.err, HasSubstr("no verb given"));
}

TEST_F(ConfabctlTest, HelpAndVersion) {
  Outcome help = Confabctl({"--help"}).Finish();
  EXPECT_EQ(help.exit_code, 0) << help;
  for (const char* verb : {"create", "get", "set", "delete", "rmr", "ls", "stat", "tree", "watch",
                           "status", "CONFAB_ENDPOINTS", "ephemeral"}) {
    EXPECT_THAT(help.out, HasSubstr(verb));
  }
  Outcome create_help = Confabctl({"help", "create"}).Finish();
  EXPECT_EQ(create_help.exit_code, 0) << create_help;
  EXPECT_THAT(create_help.out, HasSubstr("deleted as soon as confabctl exits"));
  Outcome verb_help = Confabctl({"watch", "--help"}).Finish();
  EXPECT_EQ(verb_help.exit_code, 0) << verb_help;
  EXPECT_THAT(verb_help.out, StartsWith("usage: confabctl [GLOBAL OPTIONS] watch"));
  Outcome version = Confabctl({"--version"}).Finish();
  EXPECT_EQ(version.exit_code, 0) << version;
  EXPECT_THAT(version.out, MatchesRegex("confabctl [0-9]+\\.[0-9]+\\.[0-9]+\n"));
}

TEST_F(ConfabctlTest, TreeIsIndentedInTextAndNestedInJson) {
  for (const char* path : {"/a", "/a/x", "/a/x/deep", "/a/y", "/b"}) {
    ASSERT_TRUE(client_->Create(P(path)).ok());
  }
  Outcome tree = Ctl({"tree", root_});
  EXPECT_EQ(tree.exit_code, 0) << tree;
  EXPECT_EQ(tree.out, absl::StrCat(root_, "\n  a\n    x\n      deep\n    y\n  b\n"));

  json nested = CtlJson({"tree", P("/a")});
  EXPECT_EQ(nested,
            json::parse(absl::StrCat(R"({"path": ")", P("/a"), R"(", "children": [)",
                                     R"({"path": ")", P("/a/x"), R"(", "children": [{"path": ")",
                                     P("/a/x/deep"), R"(", "children": []}]}, {"path": ")",
                                     P("/a/y"), R"(", "children": []}]})")));
}

TEST_F(ConfabctlTest, RmrDeletesASubtreeAndNothingElse) {
  for (const char* path : {"/a", "/a/x", "/a/x/1", "/a/x/2", "/a/y", "/ab"}) {
    ASSERT_TRUE(client_->Create(P(path)).ok());
  }
  Outcome o = Ctl({"rmr", P("/a")});
  EXPECT_EQ(o.exit_code, 0) << o;
  EXPECT_EQ(o.out, "");
  EXPECT_FALSE(client_->Exists(P("/a"))->has_value());
  EXPECT_TRUE(client_->Exists(P("/ab"))->has_value());

  json counted = CtlJson({"rmr", P("/ab")});
  EXPECT_EQ(counted["deleted"], 1);
}

TEST_F(ConfabctlTest, RmrToleratesConcurrentChanges) {
  constexpr int kLeaves = 60;
  ASSERT_TRUE(client_->Create(P("/a")).ok());
  for (const char* dir : {"/a/one", "/a/two"}) {
    ASSERT_TRUE(client_->Create(P(dir)).ok());
    for (int i = 0; i < kLeaves; ++i) {
      ASSERT_TRUE(client_->Create(absl::StrCat(P(dir), "/", i)).ok());
    }
  }
  // While rmr runs, another client adds nodes under the subtree (until their parents are gone)
  // and deletes some of the nodes rmr is about to delete.
  std::atomic<bool> stop = false;
  std::thread changer([&] {
    for (int i = 0; i < 200 && !stop; ++i) {
      client_->Create(absl::StrCat(P("/a/one"), "/new", i)).IgnoreError();
      client_->Delete(absl::StrCat(P("/a/two"), "/", kLeaves - 1 - i % kLeaves)).IgnoreError();
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  Outcome o = Ctl({"rmr", P("/a")});
  stop = true;
  changer.join();
  EXPECT_EQ(o.exit_code, 0) << o;
  EXPECT_FALSE(client_->Exists(P("/a"))->has_value());
}

TEST_F(ConfabctlTest, WatchPrintsEventsMadeByAnotherClient) {
  ASSERT_TRUE(client_->Create(P("/w")).ok());
  const uint64_t watches = ServerWatchCount(Endpoint());
  Confabctl watch({"--endpoints=" + Endpoint(), "watch", "--count", "3", P("/w")});
  WaitForServerWatchCount(Endpoint(), watches + 1);

  absl::StatusOr<Stat> set = client_->Set(P("/w"), "v1");
  absl::StatusOr<Created> child = client_->Create(P("/w/c"));
  ASSERT_TRUE(set.ok() && child.ok());
  ASSERT_TRUE(client_->Delete(P("/w/c")).ok());
  ASSERT_TRUE(client_->Delete(P("/w")).ok());  // the 4th event: not printed
  Outcome o = watch.Finish();
  EXPECT_EQ(o.exit_code, 0) << o;
  std::vector<std::string> lines = absl::StrSplit(o.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << o;
  EXPECT_EQ(lines[0], absl::StrCat("NodeDataChanged ", P("/w"), " 0x", absl::Hex(set->mzxid)));
  EXPECT_EQ(lines[1],
            absl::StrCat("NodeChildrenChanged ", P("/w"), " 0x", absl::Hex(child->stat.czxid)));
  EXPECT_THAT(lines[2], MatchesRegex("NodeChildrenChanged " + P("/w") + " 0x[0-9a-f]+"));
}

TEST_F(ConfabctlTest, RecursiveWatchInJsonUntilInterrupted) {
  const uint64_t watches = ServerWatchCount(Endpoint());
  // The node need not exist yet.
  Confabctl watch({"--endpoints=" + Endpoint(), "-o", "json", "watch", "-r", P("/tree")});
  WaitForServerWatchCount(Endpoint(), watches + 1);

  absl::StatusOr<Created> created = client_->Create(P("/tree"));
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(client_->Create(P("/tree/a")).ok());
  ASSERT_TRUE(client_->Create(P("/tree/a/b"), "x").ok());
  absl::StatusOr<Stat> set = client_->Set(P("/tree/a/b"), "y");
  ASSERT_TRUE(set.ok());
  std::vector<std::string> lines = watch.WaitForLines(4);
  watch.Signal(SIGINT);  // as Ctrl-C: a clean exit
  Outcome o = watch.Finish();
  EXPECT_EQ(o.exit_code, 0) << o;
  ASSERT_EQ(lines.size(), 4u) << o;
  json first = json::parse(lines[0]);
  EXPECT_EQ(first,
            json({{"type", "NodeCreated"}, {"path", P("/tree")}, {"zxid", created->stat.czxid}}));
  EXPECT_EQ(json::parse(lines[1])["path"], P("/tree/a"));
  EXPECT_EQ(json::parse(lines[2])["path"], P("/tree/a/b"));
  EXPECT_EQ(json::parse(lines[3]),
            json({{"type", "NodeDataChanged"}, {"path", P("/tree/a/b")}, {"zxid", set->mzxid}}));
}

TEST_F(ConfabctlTest, StatusShowsTheEnsemble) {
  Outcome text = Ctl({"status"});
  EXPECT_EQ(text.exit_code, 0) << text;
  EXPECT_THAT(text.out, HasSubstr("endpoint = " + Endpoint() + "\n"));
  EXPECT_THAT(text.out, HasSubstr("role = STANDALONE\n"));
  EXPECT_THAT(text.out, HasSubstr("serving = true\n"));
  EXPECT_THAT(text.out, MatchesRegex("(.|\n)*last_zxid = 0x[0-9a-f]+\n(.|\n)*"));
  EXPECT_THAT(text.out, MatchesRegex("(.|\n)*epoch = [0-9]+\n(.|\n)*"));
  EXPECT_THAT(text.out, HasSubstr("leader_id = 0\n"));
  EXPECT_THAT(text.out, HasSubstr("member.0 = " + Endpoint() + " STANDALONE serving last_zxid=0x"));

  json status = CtlJson({"status"});
  EXPECT_EQ(status["role"], "STANDALONE");
  EXPECT_EQ(status["serving"], true);
  EXPECT_GT(status["last_zxid"].get<int64_t>(), 0);
  ASSERT_EQ(status["members"].size(), 1u);
  EXPECT_EQ(status["members"][0]["address"], Endpoint());
  // A later endpoint answers when the first cannot.
  Outcome second = Confabctl({"--endpoints=127.0.0.1:1," + Endpoint(), "status"}).Finish();
  EXPECT_EQ(second.exit_code, 0) << second;
}

TEST_F(ConfabctlTest, EndpointsComeFromTheEnvironmentUnlessGiven) {
  ASSERT_TRUE(client_->Create(P("/a"), "env").ok());
  Outcome from_env = Confabctl({"get", P("/a")}, "", {"CONFAB_ENDPOINTS=" + Endpoint()}).Finish();
  EXPECT_EQ(from_env.exit_code, 0) << from_env;
  EXPECT_EQ(from_env.out, "env\n");
  Outcome flag_wins =
      Confabctl({"--endpoints", Endpoint(), "get", P("/a")}, "", {"CONFAB_ENDPOINTS=127.0.0.1:1"})
          .Finish();
  EXPECT_EQ(flag_wins.exit_code, 0) << flag_wins;
  Outcome bad_env =
      Confabctl({"--timeout=1s", "get", P("/a")}, "", {"CONFAB_ENDPOINTS=127.0.0.1:1"}).Finish();
  EXPECT_EQ(bad_env.exit_code, kExitCannotConnect) << bad_env;
  EXPECT_THAT(bad_env.err, HasSubstr("127.0.0.1:1"));
}

// Tests that need a server of their own.

TEST(ConfabctlOwnServerTest, RmrOfTheRootEmptiesTheTree) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  const std::string endpoints = "--endpoints=" + server->Endpoint(0);
  for (const char* path : {"/a", "/a/b", "/c"}) {
    ASSERT_EQ(Confabctl({endpoints, "create", path}).Finish().exit_code, 0);
  }
  Outcome o = Confabctl({endpoints, "rmr", "/"}).Finish();
  EXPECT_EQ(o.exit_code, 0) << o;
  Outcome listed = Confabctl({endpoints, "ls", "/"}).Finish();
  EXPECT_EQ(listed.exit_code, 0) << listed;
  EXPECT_EQ(listed.out, "");
}

TEST(ConfabctlOwnServerTest, StatusListsEveryMemberOfAThreeMemberEnsemble) {
  testing::LocalEnsembleOptions options;
  options.members = 3;
  options.confabd_path = CONFABD_PATH;
  auto ensemble = testing::LocalEnsemble::Start(options);
  ASSERT_TRUE(ensemble.ok()) << ensemble.status();
  auto leader = (*ensemble)->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const std::string endpoints = "--endpoints=" + (*ensemble)->ConnectString();
  // Every member's report reaches the others within a second.
  json status;
  ASSERT_TRUE(itest::WaitFor([&] {
    Outcome o = Confabctl({endpoints, "-o", "json", "status"}).Finish();
    if (o.exit_code != 0) return false;
    status = json::parse(o.out);
    int serving = 0;
    for (const json& member : status["members"]) serving += member["serving"].get<bool>();
    return serving == 3;
  }));
  ASSERT_EQ(status["members"].size(), 3u);
  int leading = 0;
  for (const json& member : status["members"]) {
    leading += member["role"] == "LEADING";
    EXPECT_EQ(member["address"], (*ensemble)->Endpoint(member["id"].get<int>() - 1));
  }
  EXPECT_EQ(leading, 1);
  EXPECT_EQ(status["leader_id"], *leader + 1);
  Outcome text = Confabctl({endpoints, "status"}).Finish();
  EXPECT_EQ(text.exit_code, 0) << text;
  EXPECT_THAT(text.out, HasSubstr(absl::StrCat("leader_id = ", *leader + 1, "\n")));
  EXPECT_THAT(text.out,
              HasSubstr(absl::StrCat("member.", *leader + 1, " = ", (*ensemble)->Endpoint(*leader),
                                     " LEADING serving")));
}

TEST(ConfabctlOwnServerTest, WatchEndsWhenTheSessionIsLost) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  Confabctl watch({"--endpoints=" + server->Endpoint(0), "watch", "/x"});
  WaitForServerWatchCount(server->Endpoint(0), 1);
  ASSERT_TRUE(server->Kill(0).ok());
  // SUSPENDED at once, LOST once the session timeout (5s) passed without the server.
  Outcome o = watch.Finish();
  EXPECT_EQ(o.exit_code, kExitFailed) << o;
  EXPECT_THAT(o.err, HasSubstr("confabctl: session SUSPENDED\n"));
  EXPECT_THAT(o.err, HasSubstr("confabctl: watch /x: SESSION_EXPIRED: "));
}

TEST(ConfabctlUnreachableTest, ExitsWithCannotConnectWithinItsTimeout) {
  // A port that refuses, and one that accepts connections but never answers.
  int silent = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(silent, 16), 0);
  socklen_t len = sizeof(addr);
  getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string silent_endpoint = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));

  struct Case {
    std::vector<std::string> args;
    absl::Duration bound;
    std::string message_start;
  };
  const std::vector<Case> cases = {
      // The default timeout (5s) bounds connecting.
      {{"--endpoints=127.0.0.1:1", "get", "/a"},
       absl::Seconds(8),
       "confabctl: get /a: UNAVAILABLE: could not open a session on any of 127.0.0.1:1"},
      {{"--endpoints=" + silent_endpoint, "--timeout=1s", "ls", "/"},
       absl::Seconds(4),
       "confabctl: ls /: UNAVAILABLE: could not open a session on any of " + silent_endpoint},
      {{"--endpoints=127.0.0.1:1", "status"},
       absl::Seconds(8),
       "confabctl: status: UNAVAILABLE: no endpoint answered (127.0.0.1:1: "},
      {{"--endpoints=" + silent_endpoint, "--timeout=1s", "status"},
       absl::Seconds(4),
       "confabctl: status: UNAVAILABLE: no endpoint answered (" + silent_endpoint + ": "},
  };
  for (const Case& c : cases) {
    const absl::Time start = absl::Now();
    Outcome o = Confabctl(c.args).Finish();
    EXPECT_LT(absl::Now() - start, c.bound) << o;
    EXPECT_EQ(o.exit_code, kExitCannotConnect) << o;
    EXPECT_THAT(o.err, StartsWith(c.message_start)) << o;
    EXPECT_EQ(o.out, "");
  }
  close(silent);
}

}  // namespace
}  // namespace confab
