#include "server/tree/data_tree.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "tests/unit/tree/tree_test_util.h"

namespace confab::tree {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

v1::ErrorCode CodeOf(const internal::TxnResult& result) {
  return result.has_error() ? result.error().code() : v1::OK;
}

void ExpectError(const internal::TxnResult& result, v1::ErrorCode code,
                 absl::string_view message_part) {
  EXPECT_EQ(CodeOf(result), code) << result.ShortDebugString();
  EXPECT_THAT(result.error().message(), HasSubstr(std::string(message_part)));
  EXPECT_EQ(result.result_case(), internal::TxnResult::RESULT_NOT_SET);
}

Stat StatOf(const DataTree& tree, absl::string_view path) {
  auto stat = tree.GetStat(path);
  EXPECT_TRUE(stat.ok()) << stat.status();
  return stat.ok() ? *stat : Stat{};
}

Stat FromProto(const v1::Stat& s) {
  return Stat{s.czxid(),   s.mzxid(),    s.pzxid(),           s.ctime(),       s.mtime(),
              s.version(), s.cversion(), s.ephemeral_owner(), s.data_length(), s.num_children()};
}

std::vector<std::string> ChildrenOf(const DataTree& tree, absl::string_view path) {
  std::vector<std::string> children;
  EXPECT_TRUE(tree.GetChildren(path, &children, nullptr).ok());
  return children;
}

TEST(DataTreeTest, FreshTreeHoldsOnlyTheRootWithAZeroStat) {
  DataTree tree;
  auto root = tree.Get("/");
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->data, "");
  EXPECT_EQ(root->stat, Stat{});
  EXPECT_EQ(tree.node_count(), 1u);
  EXPECT_THAT(ChildrenOf(tree, "/"), IsEmpty());
  EXPECT_TRUE(tree.last_applied().IsZero());
  EXPECT_TRUE(tree.Sessions().empty());
  EXPECT_NE(tree.digest(), 0u);
}

TEST(DataTreeTest, ReadsOfMissingNodesNameThePath) {
  DataTree tree;
  auto get = tree.Get("/nope");
  EXPECT_EQ(ErrorCodeOf(get.status()), v1::NO_NODE);
  EXPECT_EQ(get.status().message(), "node /nope does not exist");
  EXPECT_EQ(ErrorCodeOf(tree.GetStat("/nope").status()), v1::NO_NODE);
  std::vector<std::string> children;
  EXPECT_EQ(ErrorCodeOf(tree.GetChildren("/nope", &children, nullptr)), v1::NO_NODE);
}

TEST(DataTreeTest, CreateSetsTheNodeStatAndTheParentStat) {
  Harness h;
  internal::TxnResult a = h.Apply(CreateOp("/a", "hello"));
  const Zxid za = h.zxid();
  const int64_t ta = h.now_ms();
  ASSERT_FALSE(a.has_error()) << a.ShortDebugString();
  ASSERT_TRUE(a.has_create());
  EXPECT_EQ(a.create().path(), "/a");
  EXPECT_EQ(a.create().zxid(), za.ToInt());
  const Stat expected{za.ToInt(), za.ToInt(), za.ToInt(), ta, ta, 0, 0, 0, 5, 0};
  EXPECT_EQ(FromProto(a.create().stat()), expected);
  auto read = h.tree().Get("/a");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->data, "hello");
  EXPECT_EQ(read->stat, expected);
  EXPECT_THAT(h.triggers(), ElementsAre(WatchTrigger{v1::NODE_CREATED, "/a"},
                                        WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/"}));
  // The parent: cversion, pzxid and num_children change; its mzxid and version do not.
  EXPECT_EQ(StatOf(h.tree(), "/"), (Stat{0, 0, za.ToInt(), 0, 0, 0, 1, 0, 0, 1}));

  h.Apply(CreateOp("/a/b", ""));
  const Zxid zb = h.zxid();
  EXPECT_EQ(StatOf(h.tree(), "/a"),
            (Stat{za.ToInt(), za.ToInt(), zb.ToInt(), ta, ta, 0, 1, 0, 5, 1}));
  EXPECT_EQ(StatOf(h.tree(), "/a/b").data_length, 0);
  h.Apply(CreateOp("/a/a", ""));
  EXPECT_THAT(ChildrenOf(h.tree(), "/a"), ElementsAre("a", "b"));
  EXPECT_EQ(StatOf(h.tree(), "/").cversion, 1);  // grandchildren do not touch the root
  EXPECT_EQ(h.tree().node_count(), 4u);
  EXPECT_EQ(h.tree().last_applied(), h.zxid());
}

TEST(DataTreeTest, CreateErrors) {
  Harness h;
  h.Apply(OpenSessionTxn(7, 5000));
  h.Apply(CreateOp("/a", "x"));
  h.Apply(CreateOp("/e", "", v1::EPHEMERAL), 7);
  const TreeImage before = ReadImage(h.tree());
  const uint64_t digest = h.tree().digest();

  internal::TxnResult r = h.Apply(CreateOp("/", ""));
  ExpectError(r, v1::NODE_EXISTS, "node / already exists");
  EXPECT_EQ(r.error().path(), "/");
  EXPECT_EQ(r.error().failed_op(), -1);

  r = h.Apply(CreateOp("/x/y", ""));
  ExpectError(r, v1::NO_NODE, "parent node /x of /x/y does not exist");
  EXPECT_EQ(r.error().path(), "/x/y");

  ExpectError(h.Apply(CreateOp("/a", "again")), v1::NODE_EXISTS, "node /a already exists");
  ExpectError(h.Apply(CreateOp("/e/child", "")), v1::NO_CHILDREN_FOR_EPHEMERALS,
              "cannot create /e/child: parent /e is ephemeral");
  ExpectError(h.Apply(CreateOp("/f", "", v1::EPHEMERAL), 8), v1::SESSION_EXPIRED,
              "cannot create ephemeral node /f: session 0x0000000000000008 is not open");
  ExpectError(h.Apply(CreateOp("/f", "", v1::EPHEMERAL_SEQUENTIAL), 0), v1::SESSION_EXPIRED,
              "session 0x0000000000000000 is not open");
  ExpectError(h.Apply(CreateOp("a/b", "")), v1::INVALID_PATH, "must start with '/'");
  ExpectError(h.Apply(CreateOp("/a//b", "")), v1::INVALID_PATH, "empty component");
  ExpectError(h.Apply(CreateOp("", "")), v1::INVALID_PATH, "path is empty");
  v1::Op bad_mode = CreateOp("/m", "");
  bad_mode.mutable_create()->set_mode(static_cast<v1::CreateMode>(42));
  ExpectError(h.Apply(bad_mode), v1::INVALID_ARGUMENT, "unknown create mode 42 for /m");
  EXPECT_THAT(h.triggers(), IsEmpty());

  // Failed writes change nothing but are still ordered at their zxid.
  EXPECT_EQ(ReadImage(h.tree()), before);
  EXPECT_EQ(h.tree().digest(), digest);
  EXPECT_EQ(h.tree().last_applied(), h.zxid());
}

TEST(DataTreeTest, EphemeralNodesBelongToTheTxnSession) {
  Harness h;
  h.Apply(OpenSessionTxn(7, 5000));
  internal::TxnResult r = h.Apply(CreateOp("/e", "v", v1::EPHEMERAL), 7);
  ASSERT_FALSE(r.has_error()) << r.ShortDebugString();
  EXPECT_EQ(r.create().stat().ephemeral_owner(), 7);
  EXPECT_EQ(StatOf(h.tree(), "/e").ephemeral_owner, 7);
  EXPECT_THAT(h.tree().EphemeralsOf(SessionId(7)), ElementsAre("/e"));
  // A persistent create by the same session has no owner.
  h.Apply(CreateOp("/p", ""), 7);
  EXPECT_EQ(StatOf(h.tree(), "/p").ephemeral_owner, 0);
  EXPECT_THAT(h.tree().EphemeralsOf(SessionId(7)), ElementsAre("/e"));
  EXPECT_THAT(h.tree().EphemeralsOf(SessionId(8)), IsEmpty());
}

TEST(DataTreeTest, SequentialNamesUseTheParentCversion) {
  Harness h;
  h.Apply(OpenSessionTxn(3, 5000));
  h.Apply(CreateOp("/q", ""));
  EXPECT_EQ(h.Apply(CreateOp("/q/n-", "", v1::PERSISTENT_SEQUENTIAL)).create().path(),
            "/q/n-0000000000");
  EXPECT_EQ(h.Apply(CreateOp("/q/n-", "", v1::PERSISTENT_SEQUENTIAL)).create().path(),
            "/q/n-0000000001");
  h.Apply(DeleteOp("/q/n-0000000000"));  // deletes advance the cversion too
  h.Apply(CreateOp("/q/plain", ""));
  internal::TxnResult r = h.Apply(CreateOp("/q/n-", "", v1::EPHEMERAL_SEQUENTIAL), 3);
  EXPECT_EQ(r.create().path(), "/q/n-0000000004");
  EXPECT_EQ(r.create().stat().ephemeral_owner(), 3);
  EXPECT_THAT(h.triggers(), ElementsAre(WatchTrigger{v1::NODE_CREATED, "/q/n-0000000004"},
                                        WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/q"}));
  // A path ending in '/' names only the sequence, as in ZooKeeper.
  EXPECT_EQ(h.Apply(CreateOp("/q/", "", v1::PERSISTENT_SEQUENTIAL)).create().path(),
            "/q/0000000005");
  EXPECT_THAT(ChildrenOf(h.tree(), "/q"),
              ElementsAre("0000000005", "n-0000000001", "n-0000000004", "plain"));
  EXPECT_EQ(StatOf(h.tree(), "/q").cversion, 6);
  EXPECT_EQ(StatOf(h.tree(), "/q").num_children, 4);
  // A sequential name that exists already (made by hand) is NODE_EXISTS.
  h.Apply(CreateOp("/q/n-0000000007", ""));  // the cversion becomes 7
  ExpectError(h.Apply(CreateOp("/q/n-", "", v1::PERSISTENT_SEQUENTIAL)), v1::NODE_EXISTS,
              "node /q/n-0000000007 already exists");
  h.Apply(CreateOp("/q/n-0000000007x", ""));  // the failed create did not advance the cversion
  EXPECT_EQ(StatOf(h.tree(), "/q").cversion, 8);
}

TEST(DataTreeTest, SetChangesDataVersionAndMzxid) {
  Harness h;
  h.Apply(CreateOp("/a", "one"));
  const Zxid zc = h.zxid();
  const int64_t tc = h.now_ms();
  internal::TxnResult r = h.Apply(SetOp("/a", "second"));
  ASSERT_TRUE(r.has_set()) << r.ShortDebugString();
  const Stat expected{zc.ToInt(), h.zxid().ToInt(), zc.ToInt(), tc, h.now_ms(), 1, 0, 0, 6, 0};
  EXPECT_EQ(FromProto(r.set().stat()), expected);
  EXPECT_EQ(r.set().zxid(), h.zxid().ToInt());
  EXPECT_EQ(StatOf(h.tree(), "/a"), expected);
  EXPECT_EQ(h.tree().Get("/a")->data, "second");
  EXPECT_THAT(h.triggers(), ElementsAre(WatchTrigger{v1::NODE_DATA_CHANGED, "/a"}));

  EXPECT_EQ(h.Apply(SetOp("/a", "", 1)).set().stat().version(), 2);
  EXPECT_EQ(StatOf(h.tree(), "/a").data_length, 0);
  ExpectError(h.Apply(SetOp("/a", "x", 5)), v1::BAD_VERSION,
              "version mismatch on /a: expected 5, node has version 2");
  ExpectError(h.Apply(SetOp("/nope", "x")), v1::NO_NODE, "node /nope does not exist");
  ExpectError(h.Apply(SetOp("/a/", "x")), v1::INVALID_PATH, "must not end with '/'");
  EXPECT_EQ(h.tree().Get("/a")->data, "");
  // The root holds data like any node.
  EXPECT_EQ(h.Apply(SetOp("/", "r")).set().stat().version(), 1);
}

TEST(DataTreeTest, DeleteUpdatesTheParentAndChecksVersionAndChildren) {
  Harness h;
  h.Apply(CreateOp("/a", ""));
  h.Apply(CreateOp("/a/b", "bb"));
  const Stat a_before = StatOf(h.tree(), "/a");
  ExpectError(h.Apply(DeleteOp("/a")), v1::NOT_EMPTY, "cannot delete /a: it has 1 children");
  ExpectError(h.Apply(DeleteOp("/a/b", 3)), v1::BAD_VERSION,
              "version mismatch on /a/b: expected 3, node has version 0");
  ExpectError(h.Apply(DeleteOp("/")), v1::INVALID_ARGUMENT, "cannot delete the root node /");
  ExpectError(h.Apply(DeleteOp("/zz")), v1::NO_NODE, "node /zz does not exist");
  EXPECT_EQ(StatOf(h.tree(), "/a"), a_before);

  internal::TxnResult r = h.Apply(DeleteOp("/a/b", 0));
  ASSERT_TRUE(r.has_delete_()) << r.ShortDebugString();
  EXPECT_EQ(r.delete_().zxid(), h.zxid().ToInt());
  EXPECT_THAT(h.triggers(), ElementsAre(WatchTrigger{v1::NODE_DELETED, "/a/b"},
                                        WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/a"}));
  Stat a_after = a_before;
  a_after.cversion = 2;
  a_after.pzxid = h.zxid().ToInt();
  a_after.num_children = 0;
  EXPECT_EQ(StatOf(h.tree(), "/a"), a_after);
  EXPECT_EQ(ErrorCodeOf(h.tree().Get("/a/b").status()), v1::NO_NODE);
  EXPECT_THAT(ChildrenOf(h.tree(), "/a"), IsEmpty());
  ASSERT_FALSE(h.Apply(DeleteOp("/a")).has_error());
  EXPECT_EQ(h.tree().node_count(), 1u);
}

TEST(DataTreeTest, MultiAppliesAllOpsAtOneZxidAndLaterOpsSeeEarlierOnes) {
  Harness h;
  h.Apply(CreateOp("/old", "o"));
  internal::TxnResult r =
      h.Apply(MultiTxn({CreateOp("/m", "1"), CreateOp("/m/c", "child"), SetOp("/m", "22", 0),
                        CheckOp("/m", 1), DeleteOp("/old", 0), DeleteOp("/m/c")}));
  const int64_t z = h.zxid().ToInt();
  ASSERT_FALSE(r.has_error() && r.error().code() != v1::OK) << r.ShortDebugString();
  ASSERT_TRUE(r.has_multi());
  EXPECT_EQ(r.multi().zxid(), z);
  ASSERT_EQ(r.multi().results_size(), 6);
  for (const v1::OpResult& op : r.multi().results()) EXPECT_EQ(op.error().code(), v1::OK);
  EXPECT_EQ(r.multi().results(0).create().path(), "/m");
  EXPECT_EQ(r.multi().results(0).create().zxid(), z);
  EXPECT_EQ(r.multi().results(1).create().path(), "/m/c");
  EXPECT_EQ(r.multi().results(2).set().stat().version(), 1);
  EXPECT_EQ(r.multi().results(2).set().stat().data_length(), 2);
  EXPECT_TRUE(r.multi().results(3).has_check());
  EXPECT_EQ(r.multi().results(4).delete_().zxid(), z);
  EXPECT_TRUE(r.multi().results(5).has_delete_());
  EXPECT_THAT(
      h.triggers(),
      ElementsAre(
          WatchTrigger{v1::NODE_CREATED, "/m"}, WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/"},
          WatchTrigger{v1::NODE_CREATED, "/m/c"}, WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/m"},
          WatchTrigger{v1::NODE_DATA_CHANGED, "/m"}, WatchTrigger{v1::NODE_DELETED, "/old"},
          WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/"}, WatchTrigger{v1::NODE_DELETED, "/m/c"},
          WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/m"}));
  const Stat m = StatOf(h.tree(), "/m");
  EXPECT_EQ(m, (Stat{z, z, z, h.now_ms(), h.now_ms(), 1, 2, 0, 2, 0}));
  EXPECT_EQ(h.tree().Get("/m")->data, "22");
  EXPECT_EQ(StatOf(h.tree(), "/").cversion, 3);
  EXPECT_THAT(ChildrenOf(h.tree(), "/"), ElementsAre("m"));
}

TEST(DataTreeTest, EmptyMultiSucceeds) {
  Harness h;
  const uint64_t digest = h.tree().digest();
  internal::TxnResult r = h.Apply(MultiTxn({}));
  EXPECT_EQ(CodeOf(r), v1::OK);
  ASSERT_TRUE(r.has_multi());
  EXPECT_EQ(r.multi().results_size(), 0);
  EXPECT_EQ(r.multi().zxid(), h.zxid().ToInt());
  EXPECT_THAT(h.triggers(), IsEmpty());
  EXPECT_EQ(h.tree().digest(), digest);
}

// The state a multi must leave untouched when it fails.
struct Observed {
  TreeImage image;
  uint64_t digest;
  size_t node_count;
  size_t bytes;
  std::vector<std::string> ephemerals;
  bool operator==(const Observed&) const = default;
};
Observed Observe(const DataTree& tree) {
  return {ReadImage(tree), tree.digest(), tree.node_count(), tree.approximate_bytes(),
          tree.EphemeralsOf(SessionId(9))};
}

TEST(DataTreeTest, FailedMultiRollsBackEverything) {
  Harness h;
  h.Apply(OpenSessionTxn(9, 5000));
  h.Apply(CreateOp("/x", "x0"));
  h.Apply(CreateOp("/y", "y0"));
  h.Apply(CreateOp("/y/e", "", v1::EPHEMERAL), 9);
  h.Apply(CreateOp("/s", ""));
  const Observed before = Observe(h.tree());

  const std::vector<v1::Op> ops = {CreateOp("/x/new", "n"),
                                   CreateOp("/x/eph", "", v1::EPHEMERAL),
                                   SetOp("/x", "changed"),
                                   DeleteOp("/y/e"),
                                   DeleteOp("/y"),
                                   CreateOp("/z", "z"),
                                   CreateOp("/z/child", "c"),
                                   CreateOp("/s/", "", v1::PERSISTENT_SEQUENTIAL),
                                   SetOp("/x", "again", 1),
                                   CheckOp("/x", 99)};
  internal::TxnResult r = h.Apply(MultiTxn(ops, 9));
  const int last = static_cast<int>(ops.size()) - 1;
  EXPECT_EQ(CodeOf(r), v1::BAD_VERSION);
  EXPECT_EQ(
      r.error().message(),
      absl::StrCat("multi op ", last, ": version mismatch on /x: expected 99, node has version 2"));
  EXPECT_EQ(r.error().failed_op(), last);
  EXPECT_EQ(r.error().path(), "/x");
  ASSERT_TRUE(r.has_multi());
  ASSERT_EQ(r.multi().results_size(), static_cast<int>(ops.size()));
  for (int i = 0; i < last; ++i) {
    EXPECT_EQ(r.multi().results(i).error().code(), v1::RUNTIME_INCONSISTENCY) << i;
    EXPECT_EQ(r.multi().results(i).error().message(),
              absl::StrCat("rolled back: op ", last, " failed"));
    EXPECT_EQ(r.multi().results(i).result_case(), v1::OpResult::RESULT_NOT_SET);
  }
  EXPECT_EQ(r.multi().results(last).error().code(), v1::BAD_VERSION);
  EXPECT_THAT(r.multi().results(last).error().message(), StartsWith("version mismatch on /x"));
  EXPECT_THAT(h.triggers(), IsEmpty());
  EXPECT_EQ(Observe(h.tree()), before);
  EXPECT_EQ(h.tree().last_applied(), h.zxid());

  // The indexes were restored too: the session close finds exactly the original ephemeral, and
  // the next sequential name under /s did not advance.
  EXPECT_EQ(h.Apply(CreateOp("/s/", "", v1::PERSISTENT_SEQUENTIAL)).create().path(),
            "/s/0000000000");
  h.Apply(CloseSessionTxn(9));
  EXPECT_THAT(h.triggers(), ElementsAre(WatchTrigger{v1::NODE_DELETED, "/y/e"},
                                        WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/y"}));
  EXPECT_THAT(ChildrenOf(h.tree(), "/"), ElementsAre("s", "x", "y"));
  EXPECT_THAT(ChildrenOf(h.tree(), "/x"), IsEmpty());
}

TEST(DataTreeTest, MultiFailingAtTheFirstOrMiddleOp) {
  Harness h;
  h.Apply(CreateOp("/a", ""));
  const Observed before = Observe(h.tree());
  internal::TxnResult r = h.Apply(MultiTxn({DeleteOp("/missing"), CreateOp("/b", "")}));
  EXPECT_EQ(CodeOf(r), v1::NO_NODE);
  EXPECT_EQ(r.error().message(), "multi op 0: node /missing does not exist");
  EXPECT_EQ(r.error().failed_op(), 0);
  EXPECT_EQ(r.multi().results(1).error().code(), v1::RUNTIME_INCONSISTENCY);

  r = h.Apply(MultiTxn({CreateOp("/b", ""), CreateOp("/a", ""), SetOp("/b", "x")}));
  EXPECT_EQ(CodeOf(r), v1::NODE_EXISTS);
  EXPECT_EQ(r.error().message(), "multi op 1: node /a already exists");
  EXPECT_EQ(r.error().failed_op(), 1);
  EXPECT_EQ(r.multi().results(0).error().code(), v1::RUNTIME_INCONSISTENCY);
  EXPECT_EQ(r.multi().results(1).error().code(), v1::NODE_EXISTS);
  EXPECT_EQ(r.multi().results(2).error().code(), v1::RUNTIME_INCONSISTENCY);
  EXPECT_EQ(Observe(h.tree()), before);

  // Deleting a node and creating it again inside one multi, then failing.
  r = h.Apply(
      MultiTxn({DeleteOp("/a"), CreateOp("/a", "new"), CreateOp("/a/k", ""), DeleteOp("/a")}));
  EXPECT_EQ(CodeOf(r), v1::NOT_EMPTY);
  EXPECT_EQ(Observe(h.tree()), before);
}

TEST(DataTreeTest, MalformedTransactionsFailWithoutChangingAnything) {
  Harness h;
  const uint64_t digest = h.tree().digest();
  ExpectError(h.Apply(internal::Txn()), v1::INVALID_ARGUMENT, "has no operation");
  internal::TxnResult r = h.Apply(MultiTxn({CreateOp("/a", ""), v1::Op()}));
  EXPECT_EQ(CodeOf(r), v1::INVALID_ARGUMENT);
  EXPECT_EQ(r.error().message(), "multi op 1: op has no request");
  EXPECT_EQ(h.tree().digest(), digest);
  EXPECT_EQ(h.tree().node_count(), 1u);
}

TEST(DataTreeTest, SessionsOpenAndClose) {
  Harness h;
  const uint64_t empty_digest = h.tree().digest();
  EXPECT_EQ(CodeOf(h.Apply(OpenSessionTxn(5, 3000))), v1::OK);
  EXPECT_NE(h.tree().digest(), empty_digest);
  ExpectError(h.Apply(OpenSessionTxn(5, 3000)), v1::INVALID_ARGUMENT,
              "session 0x0000000000000005 is already open");
  ExpectError(h.Apply(OpenSessionTxn(0, 3000)), v1::INVALID_ARGUMENT, "session id 0");
  h.Apply(OpenSessionTxn(2, 1000));
  EXPECT_THAT(h.tree().Sessions(),
              ElementsAre(SessionInfo{SessionId(2), 1000}, SessionInfo{SessionId(5), 3000}));
  ExpectError(h.Apply(CloseSessionTxn(4)), v1::SESSION_EXPIRED,
              "session 0x0000000000000004 is not open");
  EXPECT_EQ(CodeOf(h.Apply(CloseSessionTxn(2))), v1::OK);
  EXPECT_EQ(CodeOf(h.Apply(CloseSessionTxn(5))), v1::OK);
  EXPECT_FALSE(h.tree().HasSession(SessionId(5)));
  EXPECT_TRUE(h.tree().Sessions().empty());
  // Same state (no sessions, untouched nodes), same digest, whatever the history.
  EXPECT_EQ(h.tree().digest(), empty_digest);
}

TEST(DataTreeTest, CloseSessionDeletesItsEphemeralsInPathOrder) {
  Harness h;
  h.Apply(OpenSessionTxn(7, 5000));
  h.Apply(OpenSessionTxn(8, 5000));
  h.Apply(CreateOp("/a", ""));
  h.Apply(CreateOp("/b", ""));
  h.Apply(CreateOp("/b/e2", "", v1::EPHEMERAL), 7);
  h.Apply(CreateOp("/e0", "", v1::EPHEMERAL), 7);
  h.Apply(CreateOp("/a/e1", "", v1::EPHEMERAL), 7);
  h.Apply(CreateOp("/a/other", "", v1::EPHEMERAL), 8);
  EXPECT_THAT(h.tree().EphemeralsOf(SessionId(7)), ElementsAre("/a/e1", "/b/e2", "/e0"));
  const Stat a = StatOf(h.tree(), "/a");

  internal::TxnResult r = h.Apply(CloseSessionTxn(7));
  EXPECT_EQ(CodeOf(r), v1::OK);
  EXPECT_THAT(h.triggers(), ElementsAre(WatchTrigger{v1::NODE_DELETED, "/a/e1"},
                                        WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/a"},
                                        WatchTrigger{v1::NODE_DELETED, "/b/e2"},
                                        WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/b"},
                                        WatchTrigger{v1::NODE_DELETED, "/e0"},
                                        WatchTrigger{v1::NODE_CHILDREN_CHANGED, "/"}));
  Stat a_after = a;
  a_after.cversion += 1;
  a_after.pzxid = h.zxid().ToInt();
  a_after.num_children -= 1;
  EXPECT_EQ(StatOf(h.tree(), "/a"), a_after);
  EXPECT_EQ(StatOf(h.tree(), "/").pzxid, h.zxid().ToInt());
  EXPECT_THAT(ChildrenOf(h.tree(), "/"), ElementsAre("a", "b"));
  EXPECT_THAT(h.tree().EphemeralsOf(SessionId(7)), IsEmpty());
  EXPECT_THAT(h.tree().EphemeralsOf(SessionId(8)), ElementsAre("/a/other"));
  EXPECT_FALSE(h.tree().HasSession(SessionId(7)));
  // Ephemerals of a closed session cannot be created any more.
  ExpectError(h.Apply(CreateOp("/e0", "", v1::EPHEMERAL), 7), v1::SESSION_EXPIRED, "/e0");
}

TEST(DataTreeTest, ApproximateBytesFollowPathsAndData) {
  Harness h;
  const size_t empty = h.tree().approximate_bytes();
  h.Apply(CreateOp("/a", "12345"));
  const size_t one = h.tree().approximate_bytes();
  EXPECT_GT(one, empty + 2 + 5);
  h.Apply(SetOp("/a", "1234567890abcde"));
  EXPECT_EQ(h.tree().approximate_bytes(), one + 10);
  h.Apply(DeleteOp("/a"));
  EXPECT_EQ(h.tree().approximate_bytes(), empty);
}

TEST(DataTreeDeathTest, ApplyAtOrBelowTheLastAppliedZxidCrashes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DataTree tree;
  internal::TxnResult result;
  std::vector<WatchTrigger> triggers;
  tree.Apply(Zxid(2, 5), TxnOf(CreateOp("/a", "")), &result, &triggers);
  EXPECT_DEATH(tree.Apply(Zxid(2, 5), internal::Txn(), &result, &triggers),
               "apply of zxid 0x2:5 at or below the last applied zxid 0x2:5");
  EXPECT_DEATH(tree.Apply(Zxid(1, 9), internal::Txn(), &result, &triggers), "0x1:9");
}

// ---- Load ----------------------------------------------------------------------------------

// Builds a tree with a bit of everything.
void Populate(Harness* h) {
  h->Apply(OpenSessionTxn(3, 4000));
  h->Apply(OpenSessionTxn(4, 6000));
  h->Apply(CreateOp("/a", "alpha"));
  h->Apply(CreateOp("/a/b", "beta"));
  h->Apply(CreateOp("/a/b/c", ""));
  h->Apply(CreateOp("/a/e", "eph", v1::EPHEMERAL), 3);
  h->Apply(CreateOp("/z", "zeta"));
  h->Apply(SetOp("/z", "zeta2"));
  h->Apply(CreateOp("/z/s-", "", v1::EPHEMERAL_SEQUENTIAL), 4);
  h->Apply(DeleteOp("/a/b/c"));
}

TEST(DataTreeLoadTest, RebuiltTreeHasTheSameStateAndDigest) {
  Harness h;
  Populate(&h);
  const TreeImage image = ReadImage(h.tree());
  DataTree loaded;
  ASSERT_TRUE(LoadImage(image, h.tree().Sessions(), h.zxid(), h.tree().digest(), &loaded).ok());
  EXPECT_EQ(loaded.digest(), h.tree().digest());
  EXPECT_EQ(loaded.last_applied(), h.zxid());
  EXPECT_EQ(ReadImage(loaded), image);  // root stat included
  EXPECT_EQ(loaded.node_count(), h.tree().node_count());
  EXPECT_EQ(loaded.approximate_bytes(), h.tree().approximate_bytes());
  EXPECT_EQ(loaded.Sessions(), h.tree().Sessions());
  EXPECT_THAT(loaded.EphemeralsOf(SessionId(3)), ElementsAre("/a/e"));
  EXPECT_THAT(loaded.EphemeralsOf(SessionId(4)), ElementsAre("/z/s-0000000000"));

  // The loaded tree goes on exactly like the original.
  internal::Txn close = CloseSessionTxn(3);
  close.set_time_ms(h.now_ms() + 1);
  internal::TxnResult want;
  internal::TxnResult got;
  std::vector<WatchTrigger> want_triggers;
  std::vector<WatchTrigger> got_triggers;
  h.tree().Apply(h.zxid().Next(), close, &want, &want_triggers);
  loaded.Apply(h.zxid().Next(), close, &got, &got_triggers);
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString());
  EXPECT_EQ(got_triggers, want_triggers);
  EXPECT_EQ(ReadImage(loaded), ReadImage(h.tree()));
  EXPECT_EQ(loaded.digest(), h.tree().digest());
}

TEST(DataTreeLoadTest, FinishLoadRefusesABrokenImage) {
  Harness h;
  Populate(&h);
  const TreeImage image = ReadImage(h.tree());
  const std::vector<SessionInfo> sessions = h.tree().Sessions();
  const uint64_t digest = h.tree().digest();

  auto load = [&](const TreeImage& nodes, const std::vector<SessionInfo>& with_sessions,
                  uint64_t expected) {
    DataTree fresh;
    return LoadImage(nodes, with_sessions, h.zxid(), expected, &fresh);
  };

  absl::Status status = load(image, sessions, digest + 1);
  EXPECT_EQ(ErrorCodeOf(status), v1::INTERNAL);
  EXPECT_EQ(status.message(), absl::StrFormat("snapshot at %s has digest 0x%x, expected 0x%x",
                                              h.zxid().ToString(), digest, digest + 1));

  TreeImage orphan = image;
  orphan.erase("/a");
  orphan.erase("/a/e");
  status = load(orphan, sessions, digest);
  EXPECT_EQ(ErrorCodeOf(status), v1::INTERNAL);
  EXPECT_THAT(status.message(), HasSubstr("snapshot node /a/b has no parent /a"));

  TreeImage miscounted = image;
  miscounted["/a"].stat.num_children = 5;
  status = load(miscounted, sessions, digest);
  EXPECT_THAT(status.message(), HasSubstr("snapshot node /a has num_children 5 but 2 children"));

  status = load(image, {sessions[1]}, digest);
  EXPECT_THAT(status.message(),
              HasSubstr("snapshot node /a/e is owned by session 0x0000000000000003 which is "
                        "not in the snapshot"));

  TreeImage short_data = image;
  short_data["/z"].data = "z";
  status = load(short_data, sessions, digest);
  EXPECT_THAT(status.message(), HasSubstr("snapshot node /z has data_length 5 but 1 bytes"));

  status = load(image, {sessions[0], sessions[0]}, digest);
  EXPECT_THAT(status.message(), HasSubstr("snapshot holds session 0x0000000000000003 twice"));

  DataTree twice;
  ASSERT_TRUE(twice.LoadNode("/q", Stat{}, "").ok());
  status = twice.LoadNode("/q", Stat{}, "");
  EXPECT_EQ(status.message(), "snapshot holds node /q twice");
  EXPECT_EQ(ErrorCodeOf(twice.LoadNode("q", Stat{}, "")), v1::INTERNAL);

  // A well-formed image whose content differs from what the digest covers.
  TreeImage changed = image;
  changed["/a"].stat.mtime += 1;
  EXPECT_THAT(load(changed, sessions, digest).message(), HasSubstr("has digest"));
  EXPECT_TRUE(load(image, sessions, digest).ok());
}

// ---- Determinism against a naive model -----------------------------------------------------

// The namespace as plainly as possible: ZooKeeper's rules on a sorted map.
class Model {
 public:
  struct Node {
    std::string data;
    int32_t version = 0;
    int32_t cversion = 0;
    int64_t owner = 0;
  };
  struct Outcome {
    v1::ErrorCode code = v1::OK;
    int failed_op = -1;
  };

  Model() { nodes_["/"] = Node{}; }

  Outcome Apply(const internal::Txn& txn) {
    switch (txn.op_case()) {
      case internal::Txn::kCreate:
        return {Create(txn.create(), txn.session_id())};
      case internal::Txn::kSet:
        return {Set(txn.set())};
      case internal::Txn::kDelete:
        return {Delete(txn.delete_())};
      case internal::Txn::kMulti: {
        const std::map<std::string, Node> saved = nodes_;
        for (int i = 0; i < txn.multi().ops_size(); ++i) {
          const v1::ErrorCode code = Op(txn.multi().ops(i), txn.session_id());
          if (code != v1::OK) {
            nodes_ = saved;
            return {code, i};
          }
        }
        return {};
      }
      case internal::Txn::kCreateSession:
        if (!sessions_.insert(txn.create_session().session_id()).second) {
          return {v1::INVALID_ARGUMENT};
        }
        return {};
      case internal::Txn::kCloseSession: {
        const int64_t id = txn.close_session().session_id();
        if (sessions_.erase(id) == 0) return {v1::SESSION_EXPIRED};
        std::vector<std::string> owned;
        for (const auto& [path, node] : nodes_) {
          if (node.owner == id) owned.push_back(path);
        }
        for (const std::string& path : owned) Erase(path);
        return {};
      }
      default:
        return {v1::INVALID_ARGUMENT};
    }
  }

  const std::map<std::string, Node>& nodes() const { return nodes_; }
  const std::set<int64_t>& sessions() const { return sessions_; }

  static std::string Parent(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
  }

 private:
  v1::ErrorCode Op(const v1::Op& op, int64_t session) {
    switch (op.op_case()) {
      case v1::Op::kCreate:
        return Create(op.create(), session);
      case v1::Op::kSet:
        return Set(op.set());
      case v1::Op::kDelete:
        return Delete(op.delete_());
      case v1::Op::kCheck: {
        auto it = nodes_.find(op.check().path());
        if (it == nodes_.end()) return v1::NO_NODE;
        const int32_t v = op.check().version();
        return v != -1 && v != it->second.version ? v1::BAD_VERSION : v1::OK;
      }
      default:
        return v1::INVALID_ARGUMENT;
    }
  }

  v1::ErrorCode Create(const v1::CreateRequest& request, int64_t session) {
    const bool sequential =
        request.mode() == v1::PERSISTENT_SEQUENTIAL || request.mode() == v1::EPHEMERAL_SEQUENTIAL;
    const bool ephemeral =
        request.mode() == v1::EPHEMERAL || request.mode() == v1::EPHEMERAL_SEQUENTIAL;
    if (request.path() == "/" && !sequential) return v1::NODE_EXISTS;
    auto parent = nodes_.find(Parent(request.path()));
    if (parent == nodes_.end()) return v1::NO_NODE;
    if (parent->second.owner != 0) return v1::NO_CHILDREN_FOR_EPHEMERALS;
    if (ephemeral && !sessions_.contains(session)) return v1::SESSION_EXPIRED;
    const std::string path =
        sequential ? request.path() + absl::StrFormat("%010d", parent->second.cversion)
                   : request.path();
    if (nodes_.contains(path)) return v1::NODE_EXISTS;
    parent->second.cversion++;
    nodes_[path] = Node{request.data(), 0, 0, ephemeral ? session : 0};
    return v1::OK;
  }
  v1::ErrorCode Set(const v1::SetRequest& request) {
    auto it = nodes_.find(request.path());
    if (it == nodes_.end()) return v1::NO_NODE;
    if (request.has_version() && request.version() != it->second.version) {
      return v1::BAD_VERSION;
    }
    it->second.data = request.data();
    it->second.version++;
    return v1::OK;
  }
  v1::ErrorCode Delete(const v1::DeleteRequest& request) {
    if (request.path() == "/") return v1::INVALID_ARGUMENT;
    auto it = nodes_.find(request.path());
    if (it == nodes_.end()) return v1::NO_NODE;
    if (request.has_version() && request.version() != it->second.version) {
      return v1::BAD_VERSION;
    }
    const std::string prefix = request.path() + "/";
    auto child = nodes_.lower_bound(prefix);
    if (child != nodes_.end() && child->first.starts_with(prefix)) {
      return v1::NOT_EMPTY;
    }
    Erase(request.path());
    return v1::OK;
  }
  void Erase(const std::string& path) {
    nodes_.erase(path);
    nodes_[Parent(path)].cversion++;
  }

  std::map<std::string, Node> nodes_;
  std::set<int64_t> sessions_;
};

void ExpectTreeMatchesModel(const DataTree& tree, const Model& model, int step) {
  std::map<std::string, std::vector<std::string>> children;
  std::map<int64_t, std::vector<std::string>> owned;
  for (const auto& [path, node] : model.nodes()) {
    if (path != "/") children[Model::Parent(path)].push_back(path.substr(path.rfind('/') + 1));
    if (node.owner != 0) owned[node.owner].push_back(path);
  }
  ASSERT_EQ(tree.node_count(), model.nodes().size()) << "step " << step;
  for (const auto& [path, node] : model.nodes()) {
    auto read = tree.Get(path);
    ASSERT_TRUE(read.ok()) << "step " << step << ": " << read.status();
    EXPECT_EQ(read->data, node.data) << path << " step " << step;
    EXPECT_EQ(read->stat.version, node.version) << path << " step " << step;
    EXPECT_EQ(read->stat.cversion, node.cversion) << path << " step " << step;
    EXPECT_EQ(read->stat.ephemeral_owner, node.owner) << path << " step " << step;
    EXPECT_EQ(read->stat.data_length, static_cast<int32_t>(node.data.size()));
    std::vector<std::string> got;
    ASSERT_TRUE(tree.GetChildren(path, &got, nullptr).ok());
    EXPECT_EQ(got, children[path]) << path << " step " << step;
    EXPECT_EQ(read->stat.num_children, static_cast<int32_t>(children[path].size()));
  }
  std::vector<int64_t> session_ids;
  for (const SessionInfo& s : tree.Sessions()) {
    session_ids.push_back(s.id.value());
    EXPECT_EQ(tree.EphemeralsOf(s.id), owned[s.id.value()]) << "step " << step;
  }
  EXPECT_EQ(session_ids, std::vector<int64_t>(model.sessions().begin(), model.sessions().end()))
      << "step " << step;
}

TEST(DataTreeDeterminismTest, RandomTransactionsAgreeAcrossTreesAndWithTheModel) {
  constexpr int kSteps = 3000;
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    Harness a;
    Harness b;
    Model model;
    RandomTxns source(seed, 4);
    std::map<v1::ErrorCode, int> outcomes;
    for (int step = 0; step < kSteps; ++step) {
      const internal::Txn txn = source.Next(a.tree());
      const internal::TxnResult ra = a.Apply(txn);
      const internal::TxnResult rb = b.Apply(txn);
      ASSERT_EQ(ra.SerializeAsString(), rb.SerializeAsString()) << "step " << step;
      ASSERT_EQ(a.triggers(), b.triggers()) << "step " << step;
      ASSERT_EQ(a.tree().digest(), b.tree().digest()) << "step " << step;

      const Model::Outcome expected = model.Apply(txn);
      ASSERT_EQ(CodeOf(ra), expected.code)
          << "step " << step << ": " << txn.ShortDebugString() << " -> " << ra.ShortDebugString();
      if (txn.has_multi() && expected.code != v1::OK) {
        EXPECT_EQ(ra.error().failed_op(), expected.failed_op) << "step " << step;
        EXPECT_THAT(a.triggers(), IsEmpty());
      }
      ++outcomes[expected.code];
      ExpectTreeMatchesModel(a.tree(), model, step);
      if (::testing::Test::HasFatalFailure()) return;

      if (step % 500 == 499) {
        DataTree rebuilt;
        ASSERT_TRUE(LoadImage(ReadImage(a.tree()), a.tree().Sessions(), a.zxid(), a.tree().digest(),
                              &rebuilt)
                        .ok())
            << "step " << step;
        EXPECT_EQ(rebuilt.digest(), a.tree().digest());
      }
    }
    // The generator reaches every outcome, and mostly succeeds.
    for (v1::ErrorCode code :
         {v1::OK, v1::NO_NODE, v1::NODE_EXISTS, v1::BAD_VERSION, v1::NOT_EMPTY,
          v1::NO_CHILDREN_FOR_EPHEMERALS, v1::SESSION_EXPIRED, v1::INVALID_ARGUMENT}) {
      EXPECT_GT(outcomes[code], 3) << v1::ErrorCode_Name(code);
    }
    EXPECT_GT(outcomes[v1::OK], kSteps / 3);
    EXPECT_GT(a.tree().node_count(), 10u);
  }
}

}  // namespace
}  // namespace confab::tree
