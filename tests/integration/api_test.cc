// Every unary operation and every error code of the public API, against a real confabd.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/testing/local_ensemble.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "session_client.h"
#include "test_server.h"
#include "unary_client.h"

namespace confab {
namespace {

using ::confab::itest::Reply;
using ::confab::itest::SessionClient;
using ::confab::itest::UnaryClient;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace op = ::confab::itest::op;

constexpr int kMaxDataBytes = 1024;

bool SameStat(const v1::Stat& a, const v1::Stat& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// Expects a failed unary call with this gRPC status code and confab-error-code.
template <typename Response>
void ExpectError(const Reply<Response>& reply, grpc::StatusCode status, v1::ErrorCode code) {
  EXPECT_FALSE(reply.ok()) << reply.Describe();
  EXPECT_EQ(reply.status.error_code(), status) << reply.Describe();
  EXPECT_EQ(reply.error_code, v1::ErrorCode_Name(code)) << reply.Describe();
}

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = itest::StartConfabd({absl::StrCat("--max-data-bytes=", kMaxDataBytes)}).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<UnaryClient>(server_->Endpoint(0));
    // Each test works under its own node.
    root_ = itest::TestRoot();
    auto created = client_->Create(root_);
    ASSERT_TRUE(created.ok()) << created.Describe();
  }

  std::string P(absl::string_view rel) const { return absl::StrCat(root_, "/", rel); }

  static testing::LocalEnsemble* server_;
  std::unique_ptr<UnaryClient> client_;
  std::string root_;
};

testing::LocalEnsemble* ApiTest::server_ = nullptr;

// ---- Create -------------------------------------------------------------------------------

TEST_F(ApiTest, CreatePersistentReturnsPathStatAndZxid) {
  int64_t before = NowMs();
  auto created = client_->Create(P("a"), "hello");
  int64_t after = NowMs();
  ASSERT_TRUE(created.ok()) << created.Describe();
  EXPECT_EQ(created->path(), P("a"));
  const v1::Stat& stat = created->stat();
  EXPECT_GT(created->zxid(), 0);
  EXPECT_EQ(stat.czxid(), created->zxid());
  EXPECT_EQ(stat.mzxid(), created->zxid());
  EXPECT_EQ(stat.pzxid(), created->zxid());
  EXPECT_GE(stat.ctime(), before);
  EXPECT_LE(stat.ctime(), after);
  EXPECT_EQ(stat.mtime(), stat.ctime());
  EXPECT_EQ(stat.version(), 0);
  EXPECT_EQ(stat.cversion(), 0);
  EXPECT_EQ(stat.num_children(), 0);
  EXPECT_EQ(stat.data_length(), 5);
  EXPECT_EQ(stat.ephemeral_owner(), 0);

  auto got = client_->Get(P("a"));
  ASSERT_TRUE(got.ok()) << got.Describe();
  EXPECT_EQ(got->data(), "hello");
  EXPECT_TRUE(SameStat(got->stat(), stat)) << got->stat().ShortDebugString();
  EXPECT_GE(got->zxid(), created->zxid());

  // Empty data is data too.
  auto empty = client_->Create(P("empty"));
  ASSERT_TRUE(empty.ok()) << empty.Describe();
  EXPECT_EQ(empty->stat().data_length(), 0);
  EXPECT_GT(empty->zxid(), created->zxid());
}

TEST_F(ApiTest, SequentialSuffixComesFromTheParentCversion) {
  ASSERT_TRUE(client_->Create(P("q")).ok());
  auto first = client_->Create(P("q/job-"), "", v1::PERSISTENT_SEQUENTIAL);
  ASSERT_TRUE(first.ok()) << first.Describe();
  EXPECT_EQ(first->path(), P("q/job-0000000000"));
  auto second = client_->Create(P("q/job-"), "", v1::PERSISTENT_SEQUENTIAL);
  ASSERT_TRUE(second.ok()) << second.Describe();
  EXPECT_EQ(second->path(), P("q/job-0000000001"));

  // A plain child and its deletion bump the cversion too: the next suffix is 4, not 2.
  ASSERT_TRUE(client_->Create(P("q/plain")).ok());
  ASSERT_TRUE(client_->Delete(P("q/plain")).ok());
  auto third = client_->Create(P("q/job-"), "x", v1::PERSISTENT_SEQUENTIAL);
  ASSERT_TRUE(third.ok()) << third.Describe();
  EXPECT_EQ(third->path(), P("q/job-0000000004"));
  EXPECT_EQ(third->stat().ephemeral_owner(), 0);
  EXPECT_EQ(third->stat().data_length(), 1);

  // As ZooKeeper: a sequential create naming the parent with a trailing '/' gets the bare number.
  auto bare = client_->Create(P("q/"), "", v1::PERSISTENT_SEQUENTIAL);
  ASSERT_TRUE(bare.ok()) << bare.Describe();
  EXPECT_EQ(bare->path(), P("q/0000000005"));

  auto parent = client_->Get(P("q"));
  ASSERT_TRUE(parent.ok());
  EXPECT_EQ(parent->stat().cversion(), 6);
  EXPECT_EQ(parent->stat().num_children(), 4);
  EXPECT_EQ(parent->stat().pzxid(), bare->zxid());

  auto children = client_->GetChildren(P("q"));
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->children(),
              ElementsAre("0000000005", "job-0000000000", "job-0000000001", "job-0000000004"));
}

TEST_F(ApiTest, EphemeralWithoutSessionIsInvalidArgument) {
  for (v1::CreateMode mode : {v1::EPHEMERAL, v1::EPHEMERAL_SEQUENTIAL}) {
    auto created = client_->Create(P("eph"), "", mode);
    ExpectError(created, grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_ARGUMENT);
    EXPECT_THAT(created.status.error_message(), HasSubstr(P("eph")));
  }
  auto children = client_->GetChildren(root_);
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(children->children_size(), 0);
}

TEST_F(ApiTest, EphemeralsAreOwnedByTheirSessionAndHaveNoChildren) {
  SessionClient session(server_->Endpoint(0));
  auto opened = session.Open(10000);
  ASSERT_TRUE(opened.has_opened()) << opened.ShortDebugString();
  const int64_t id = session.session_id();
  ASSERT_NE(id, 0);

  auto eph = client_->Create(P("eph"), "e", v1::EPHEMERAL, id);
  ASSERT_TRUE(eph.ok()) << eph.Describe();
  EXPECT_EQ(eph->path(), P("eph"));
  EXPECT_EQ(eph->stat().ephemeral_owner(), id);

  auto seq = client_->Create(P("seq-"), "", v1::EPHEMERAL_SEQUENTIAL, id);
  ASSERT_TRUE(seq.ok()) << seq.Describe();
  EXPECT_EQ(seq->path(), P("seq-0000000001"));
  EXPECT_EQ(seq->stat().ephemeral_owner(), id);

  // A persistent node created with a session is not owned by it.
  auto persistent = client_->Create(P("persistent"), "", v1::PERSISTENT, id);
  ASSERT_TRUE(persistent.ok()) << persistent.Describe();
  EXPECT_EQ(persistent->stat().ephemeral_owner(), 0);

  auto got = client_->Get(P("eph"));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->stat().ephemeral_owner(), id);

  for (v1::CreateMode mode :
       {v1::PERSISTENT, v1::EPHEMERAL, v1::PERSISTENT_SEQUENTIAL, v1::EPHEMERAL_SEQUENTIAL}) {
    auto child = client_->Create(P("eph/child"), "", mode, id);
    ExpectError(child, grpc::StatusCode::FAILED_PRECONDITION, v1::NO_CHILDREN_FOR_EPHEMERALS);
    EXPECT_THAT(child.status.error_message(), HasSubstr(P("eph")));
  }
  auto eph_stat = client_->Exists(P("eph"));
  ASSERT_TRUE(eph_stat.ok());
  EXPECT_EQ(eph_stat->stat().num_children(), 0);
  EXPECT_EQ(eph_stat->stat().cversion(), 0);
}

TEST_F(ApiTest, CreateErrors) {
  ASSERT_TRUE(client_->Create(P("a"), "first").ok());
  auto again = client_->Create(P("a"), "second");
  ExpectError(again, grpc::StatusCode::ALREADY_EXISTS, v1::NODE_EXISTS);
  EXPECT_THAT(again.status.error_message(), HasSubstr(P("a")));
  auto got = client_->Get(P("a"));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->data(), "first");
  EXPECT_EQ(got->stat().version(), 0);

  auto orphan = client_->Create(P("missing/child"));
  ExpectError(orphan, grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
  EXPECT_THAT(orphan.status.error_message(), HasSubstr(P("missing")));
  auto orphan_seq = client_->Create(P("missing/s-"), "", v1::PERSISTENT_SEQUENTIAL);
  ExpectError(orphan_seq, grpc::StatusCode::NOT_FOUND, v1::NO_NODE);

  auto root = client_->Create("/");
  ExpectError(root, grpc::StatusCode::ALREADY_EXISTS, v1::NODE_EXISTS);

  v1::CreateRequest bad_mode;
  bad_mode.set_path(P("mode"));
  bad_mode.set_mode(static_cast<v1::CreateMode>(17));
  ExpectError(client_->Create(bad_mode), grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_ARGUMENT);

  auto children = client_->GetChildren(root_);
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->children(), ElementsAre("a"));
}

// ---- Reads and stats ----------------------------------------------------------------------

TEST_F(ApiTest, StatsFollowASequenceOfChanges) {
  auto parent = client_->Create(P("p"), "p0");
  ASSERT_TRUE(parent.ok());
  auto a = client_->Create(P("p/a"), "a0");
  ASSERT_TRUE(a.ok());
  int64_t before_set = NowMs();
  auto set_parent = client_->Set(P("p"), "parent-data");
  ASSERT_TRUE(set_parent.ok()) << set_parent.Describe();
  auto b = client_->Create(P("p/b"));
  ASSERT_TRUE(b.ok());
  auto set_a1 = client_->Set(P("p/a"), "a1");
  ASSERT_TRUE(set_a1.ok());
  auto set_a2 = client_->Set(P("p/a"), "a-two");
  ASSERT_TRUE(set_a2.ok());
  auto delete_b = client_->Delete(P("p/b"));
  ASSERT_TRUE(delete_b.ok()) << delete_b.Describe();
  int64_t after = NowMs();

  std::vector<int64_t> zxids = {parent->zxid(), a->zxid(),      set_parent->zxid(), b->zxid(),
                                set_a1->zxid(), set_a2->zxid(), delete_b->zxid()};
  EXPECT_TRUE(std::is_sorted(zxids.begin(), zxids.end()));
  EXPECT_EQ(std::adjacent_find(zxids.begin(), zxids.end()), zxids.end()) << "zxids repeat";

  auto got_parent = client_->Get(P("p"));
  ASSERT_TRUE(got_parent.ok());
  const v1::Stat& ps = got_parent->stat();
  EXPECT_EQ(got_parent->data(), "parent-data");
  EXPECT_EQ(ps.czxid(), parent->zxid());
  EXPECT_EQ(ps.mzxid(), set_parent->zxid());
  EXPECT_EQ(ps.pzxid(), delete_b->zxid());
  EXPECT_EQ(ps.ctime(), parent->stat().ctime());
  EXPECT_GE(ps.mtime(), before_set);
  EXPECT_LE(ps.mtime(), after);
  EXPECT_GE(ps.mtime(), ps.ctime());
  EXPECT_EQ(ps.version(), 1);
  EXPECT_EQ(ps.cversion(), 3);  // a created, b created, b deleted
  EXPECT_EQ(ps.num_children(), 1);
  EXPECT_EQ(ps.data_length(), 11);
  EXPECT_EQ(ps.ephemeral_owner(), 0);
  EXPECT_EQ(set_parent->stat().version(), 1);
  EXPECT_EQ(set_parent->stat().mzxid(), set_parent->zxid());
  EXPECT_EQ(set_parent->stat().pzxid(), a->zxid());
  EXPECT_EQ(set_parent->stat().cversion(), 1);
  EXPECT_GE(got_parent->zxid(), delete_b->zxid());

  auto got_a = client_->Get(P("p/a"));
  ASSERT_TRUE(got_a.ok());
  const v1::Stat& as = got_a->stat();
  EXPECT_EQ(got_a->data(), "a-two");
  EXPECT_EQ(as.czxid(), a->zxid());
  EXPECT_EQ(as.mzxid(), set_a2->zxid());
  EXPECT_EQ(as.pzxid(), a->zxid());  // no child ever
  EXPECT_EQ(as.version(), 2);
  EXPECT_EQ(as.cversion(), 0);
  EXPECT_EQ(as.num_children(), 0);
  EXPECT_EQ(as.data_length(), 5);
  EXPECT_TRUE(SameStat(as, set_a2->stat()));

  // Exists and GetChildren report the same stat.
  auto exists = client_->Exists(P("p"));
  ASSERT_TRUE(exists.ok());
  EXPECT_TRUE(exists->exists());
  EXPECT_TRUE(SameStat(exists->stat(), ps));
  auto children = client_->GetChildren(P("p"));
  ASSERT_TRUE(children.ok());
  EXPECT_TRUE(SameStat(children->stat(), ps));
  EXPECT_THAT(children->children(), ElementsAre("a"));

  // A missing node: Exists answers false without a stat; Get and GetChildren fail with NO_NODE.
  auto missing = client_->Exists(P("p/b"));
  ASSERT_TRUE(missing.ok()) << missing.Describe();
  EXPECT_FALSE(missing->exists());
  EXPECT_FALSE(missing->has_stat());
  EXPECT_GE(missing->zxid(), delete_b->zxid());
  auto get_missing = client_->Get(P("p/b"));
  ExpectError(get_missing, grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
  EXPECT_THAT(get_missing.status.error_message(), HasSubstr(P("p/b")));
  ExpectError(client_->GetChildren(P("p/b")), grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
}

TEST_F(ApiTest, GetChildrenIsSortedAndRootIsReadable) {
  for (const char* name : {"c", "a", "B", "ab", "aa", "b", "0", "a-1"}) {
    ASSERT_TRUE(client_->Create(P(name)).ok()) << name;
  }
  auto children = client_->GetChildren(root_);
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->children(), ElementsAre("0", "B", "a", "a-1", "aa", "ab", "b", "c"));
  EXPECT_EQ(children->stat().num_children(), 8);

  auto root = client_->Get("/");
  ASSERT_TRUE(root.ok()) << root.Describe();
  EXPECT_EQ(root->stat().czxid(), 0);
  auto root_children = client_->GetChildren("/");
  ASSERT_TRUE(root_children.ok());
  EXPECT_THAT(root_children->children(), ::testing::Contains(root_.substr(1)));
  EXPECT_EQ(root_children->stat().num_children(), root_children->children_size());
}

// ---- Set and Delete -----------------------------------------------------------------------

TEST_F(ApiTest, SetWithAndWithoutExpectedVersion) {
  ASSERT_TRUE(client_->Create(P("n"), "v0").ok());
  auto any = client_->Set(P("n"), "v1");
  ASSERT_TRUE(any.ok()) << any.Describe();
  EXPECT_EQ(any->stat().version(), 1);
  EXPECT_EQ(any->stat().mzxid(), any->zxid());

  auto stale = client_->Set(P("n"), "stale", 0);
  ExpectError(stale, grpc::StatusCode::FAILED_PRECONDITION, v1::BAD_VERSION);
  EXPECT_THAT(stale.status.error_message(), HasSubstr(P("n")));
  auto got = client_->Get(P("n"));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->data(), "v1");
  EXPECT_EQ(got->stat().version(), 1);
  EXPECT_EQ(got->stat().mzxid(), any->zxid());

  auto matching = client_->Set(P("n"), "v2", 1);
  ASSERT_TRUE(matching.ok()) << matching.Describe();
  EXPECT_EQ(matching->stat().version(), 2);
  EXPECT_EQ(matching->stat().data_length(), 2);

  auto missing = client_->Set(P("nope"), "x");
  ExpectError(missing, grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
  EXPECT_THAT(missing.status.error_message(), HasSubstr(P("nope")));
  ExpectError(client_->Set(P("nope"), "x", 0), grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
}

TEST_F(ApiTest, DeleteWithAndWithoutExpectedVersion) {
  ASSERT_TRUE(client_->Create(P("n"), "v0").ok());
  ASSERT_TRUE(client_->Set(P("n"), "v1").ok());

  auto stale = client_->Delete(P("n"), 0);
  ExpectError(stale, grpc::StatusCode::FAILED_PRECONDITION, v1::BAD_VERSION);
  EXPECT_THAT(stale.status.error_message(), HasSubstr(P("n")));
  ASSERT_TRUE(client_->Exists(P("n"))->exists());

  auto matching = client_->Delete(P("n"), 1);
  ASSERT_TRUE(matching.ok()) << matching.Describe();
  EXPECT_GT(matching->zxid(), 0);
  EXPECT_FALSE(client_->Exists(P("n"))->exists());

  ASSERT_TRUE(client_->Create(P("m")).ok());
  auto any = client_->Delete(P("m"));
  ASSERT_TRUE(any.ok()) << any.Describe();
  EXPECT_GT(any->zxid(), matching->zxid());
  EXPECT_FALSE(client_->Exists(P("m"))->exists());

  auto missing = client_->Delete(P("m"));
  ExpectError(missing, grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
  EXPECT_THAT(missing.status.error_message(), HasSubstr(P("m")));

  ASSERT_TRUE(client_->Create(P("parent")).ok());
  ASSERT_TRUE(client_->Create(P("parent/child")).ok());
  auto not_empty = client_->Delete(P("parent"));
  ExpectError(not_empty, grpc::StatusCode::FAILED_PRECONDITION, v1::NOT_EMPTY);
  EXPECT_THAT(not_empty.status.error_message(), HasSubstr(P("parent")));
  ExpectError(client_->Delete(P("parent"), 0), grpc::StatusCode::FAILED_PRECONDITION,
              v1::NOT_EMPTY);
  ASSERT_TRUE(client_->Exists(P("parent/child"))->exists());

  ExpectError(client_->Delete("/"), grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_ARGUMENT);
}

// ---- Multi --------------------------------------------------------------------------------

TEST_F(ApiTest, MultiAppliesEveryOpAtOneZxid) {
  ASSERT_TRUE(client_->Create(P("old"), "old").ok());
  ASSERT_TRUE(client_->Create(P("counter"), "0").ok());
  auto multi = client_->Multi({
      op::Create(P("a"), "a"),
      op::Create(P("a/b"), "b"),
      op::Set(P("a"), "a1"),
      op::Check(P("a"), 1),
      op::Delete(P("old")),
      op::Set(P("counter"), "1", 0),
      op::Create(P("s-"), "", v1::PERSISTENT_SEQUENTIAL),
      op::Check(P("counter"), -1),
  });
  ASSERT_TRUE(multi.ok()) << multi.Describe();
  const int64_t zxid = multi->zxid();
  ASSERT_EQ(multi->results_size(), 8);
  for (int i = 0; i < multi->results_size(); ++i) {
    EXPECT_EQ(multi->results(i).error().code(), v1::OK) << i;
  }
  EXPECT_EQ(multi->results(0).create().path(), P("a"));
  EXPECT_EQ(multi->results(0).create().zxid(), zxid);
  EXPECT_EQ(multi->results(0).create().stat().czxid(), zxid);
  EXPECT_EQ(multi->results(1).create().path(), P("a/b"));
  EXPECT_EQ(multi->results(1).create().zxid(), zxid);
  EXPECT_EQ(multi->results(2).set().stat().version(), 1);
  EXPECT_EQ(multi->results(2).set().zxid(), zxid);
  EXPECT_TRUE(multi->results(3).has_check());
  EXPECT_EQ(multi->results(4).delete_().zxid(), zxid);
  EXPECT_EQ(multi->results(5).set().stat().version(), 1);
  EXPECT_EQ(multi->results(6).create().path(), P("s-0000000004"));
  EXPECT_TRUE(multi->results(7).has_check());

  auto a = client_->Get(P("a"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->data(), "a1");
  EXPECT_EQ(a->stat().czxid(), zxid);
  EXPECT_EQ(a->stat().mzxid(), zxid);
  EXPECT_EQ(a->stat().pzxid(), zxid);
  EXPECT_EQ(a->stat().version(), 1);
  EXPECT_EQ(a->stat().num_children(), 1);
  EXPECT_EQ(client_->Get(P("a/b"))->stat().czxid(), zxid);
  EXPECT_FALSE(client_->Exists(P("old"))->exists());
  EXPECT_EQ(client_->Get(P("counter"))->data(), "1");
  auto root = client_->Get(root_);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->stat().pzxid(), zxid);
  EXPECT_EQ(root->stat().num_children(), 3);  // counter, a, s-...
}

TEST_F(ApiTest, FailedMultiAppliesNothingAndNamesTheFailedOp) {
  ASSERT_TRUE(client_->Create(P("e"), "e0").ok());
  auto before = client_->Get(root_);
  ASSERT_TRUE(before.ok());

  auto multi = client_->Multi({
      op::Create(P("n1"), "x"),
      op::Set(P("e"), "changed"),
      op::Create(P("n1/c")),
      op::Check(P("e"), 5),
      op::Create(P("n2")),
  });
  ExpectError(multi, grpc::StatusCode::FAILED_PRECONDITION, v1::BAD_VERSION);
  EXPECT_EQ(multi.failed_op, "3") << multi.Describe();
  EXPECT_THAT(multi.status.error_message(), HasSubstr(P("e")));

  // Nothing applied.
  EXPECT_FALSE(client_->Exists(P("n1"))->exists());
  EXPECT_FALSE(client_->Exists(P("n2"))->exists());
  auto e = client_->Get(P("e"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->data(), "e0");
  EXPECT_EQ(e->stat().version(), 0);
  auto after = client_->Get(root_);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(SameStat(after->stat(), before->stat())) << after->stat().ShortDebugString();

  // Other failure kinds name their op and code too.
  auto exists = client_->Multi({op::Create(P("new")), op::Create(P("e"))});
  ExpectError(exists, grpc::StatusCode::ALREADY_EXISTS, v1::NODE_EXISTS);
  EXPECT_EQ(exists.failed_op, "1") << exists.Describe();
  EXPECT_FALSE(client_->Exists(P("new"))->exists());

  auto no_node = client_->Multi({op::Delete(P("missing"))});
  ExpectError(no_node, grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
  EXPECT_EQ(no_node.failed_op, "0") << no_node.Describe();

  ASSERT_TRUE(client_->Create(P("e/kid")).ok());
  auto not_empty = client_->Multi({op::Set(P("e"), "x"), op::Delete(P("e"))});
  ExpectError(not_empty, grpc::StatusCode::FAILED_PRECONDITION, v1::NOT_EMPTY);
  EXPECT_EQ(not_empty.failed_op, "1") << not_empty.Describe();
  EXPECT_EQ(client_->Get(P("e"))->data(), "e0");

  // Ops later in the multi see the earlier ones: deleting what an earlier op created works,
  // but so does rolling it all back.
  auto undone = client_->Multi({op::Create(P("t")), op::Delete(P("t")), op::Delete(P("t"))});
  ExpectError(undone, grpc::StatusCode::NOT_FOUND, v1::NO_NODE);
  EXPECT_EQ(undone.failed_op, "2") << undone.Describe();
  EXPECT_FALSE(client_->Exists(P("t"))->exists());
  auto root = client_->Get(root_);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->stat().num_children(), 1);
}

// Ops refused before the log (malformed path, data over the limit) must name their index just
// as ops failing at apply do (coordination.proto: a failed Multi carries "confab-failed-op").
TEST_F(ApiTest, MultiRefusedAtAdmissionNamesTheFailedOp) {
  auto bad_path = client_->Multi({op::Create(P("ok")), op::Create(P("bad/")), op::Create(P("x"))});
  ExpectError(bad_path, grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_PATH);
  EXPECT_EQ(bad_path.failed_op, "1") << bad_path.Describe();
  EXPECT_FALSE(client_->Exists(P("ok"))->exists());

  auto too_large = client_->Multi({op::Create(P("ok")), op::Create(P("ok2")),
                                   op::Create(P("big"), std::string(kMaxDataBytes + 1, 'x'))});
  ExpectError(too_large, grpc::StatusCode::INVALID_ARGUMENT, v1::TOO_LARGE);
  EXPECT_EQ(too_large.failed_op, "2") << too_large.Describe();
  EXPECT_FALSE(client_->Exists(P("ok"))->exists());
}

TEST_F(ApiTest, EmptyMultiSucceeds) {
  auto multi = client_->Multi({});
  ASSERT_TRUE(multi.ok()) << multi.Describe();
  EXPECT_EQ(multi->results_size(), 0);
}

// ---- Sync ---------------------------------------------------------------------------------

TEST_F(ApiTest, SyncCoversTheLastWrite) {
  auto created = client_->Create(P("s"));
  ASSERT_TRUE(created.ok());
  auto set = client_->Set(P("s"), "x");
  ASSERT_TRUE(set.ok());
  auto sync = client_->Sync(P("s"));
  ASSERT_TRUE(sync.ok()) << sync.Describe();
  EXPECT_GE(sync->zxid(), set->zxid());
  auto sync_all = client_->Sync();
  ASSERT_TRUE(sync_all.ok()) << sync_all.Describe();
  EXPECT_GE(sync_all->zxid(), sync->zxid());
}

// ---- Validation ---------------------------------------------------------------------------

std::vector<std::string> BadPaths() {
  return {"",
          "a",
          "a/b",
          "/a/",
          "//",
          "//a",
          "/a//b",
          "/./a",
          "/a/.",
          "/a/./b",
          "/..",
          "/a/..",
          "/../a",
          "/a/../b",
          std::string("/a\x01z"),
          "/a\nb",
          "/tab\t",
          "/del\x7f",
          std::string("/nul\0x", 6),
          absl::StrCat("/", std::string(4096, 'x'))};
}

template <typename Response>
void ExpectInvalidPath(const Reply<Response>& reply, const std::string& path,
                       absl::string_view call) {
  SCOPED_TRACE(absl::StrCat(call, " of \"", absl::CHexEscape(path.substr(0, 40)), "\""));
  ExpectError(reply, grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_PATH);
  // The message names the path (escaped, and cut after 200 bytes).
  std::string shown = absl::CHexEscape(path.substr(0, 200));
  EXPECT_THAT(reply.status.error_message(), HasSubstr(absl::StrCat("\"", shown)));
}

TEST_F(ApiTest, EveryBadPathFormIsInvalidPath) {
  for (const std::string& path : BadPaths()) {
    ExpectInvalidPath(client_->Create(path), path, "Create");
    // A sequential create may end in '/' (the number is the whole name); the rest is invalid.
    if (path.empty() || path.back() != '/') {
      ExpectInvalidPath(client_->Create(path, "", v1::PERSISTENT_SEQUENTIAL), path, "Create seq");
    }
    ExpectInvalidPath(client_->Get(path), path, "Get");
    ExpectInvalidPath(client_->Exists(path), path, "Exists");
    ExpectInvalidPath(client_->GetChildren(path), path, "GetChildren");
    ExpectInvalidPath(client_->Set(path, "x"), path, "Set");
    ExpectInvalidPath(client_->Delete(path), path, "Delete");
    if (!path.empty()) ExpectInvalidPath(client_->Sync(path), path, "Sync");  // "" means none
    auto multi = client_->Multi({op::Check(path, -1)});
    ExpectError(multi, grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_PATH);
  }
  // Nothing was created anywhere.
  auto root = client_->GetChildren("/");
  ASSERT_TRUE(root.ok());
  for (const std::string& child : root->children()) {
    EXPECT_TRUE(child.find_first_of("\x01\n\t\x7f") == std::string::npos) << child;
    EXPECT_NE(child, "a");
  }
}

TEST_F(ApiTest, PathLengthLimitIsExactly4096Bytes) {
  std::string longest = absl::StrCat("/", std::string(4095, 'y'));
  ASSERT_EQ(longest.size(), 4096u);
  auto created = client_->Create(longest);
  ASSERT_TRUE(created.ok()) << created.Describe();
  EXPECT_TRUE(client_->Get(longest).ok());
  EXPECT_TRUE(client_->Delete(longest).ok());
  ExpectInvalidPath(client_->Create(longest + "y"), longest + "y", "Create");

  // A sequential name is checked with its suffix: too long once the suffix is added.
  std::string base = absl::StrCat("/", std::string(4090, 's'));
  auto seq = client_->Create(base, "", v1::PERSISTENT_SEQUENTIAL);
  ExpectError(seq, grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_PATH);
}

TEST_F(ApiTest, DataOverTheLimitIsTooLargeAndNothingIsApplied) {
  const std::string at_limit(kMaxDataBytes, 'a');
  const std::string over(kMaxDataBytes + 1, 'o');

  auto created = client_->Create(P("big"), over);
  ExpectError(created, grpc::StatusCode::INVALID_ARGUMENT, v1::TOO_LARGE);
  EXPECT_THAT(created.status.error_message(), HasSubstr(P("big")));
  EXPECT_FALSE(client_->Exists(P("big"))->exists());

  auto fits = client_->Create(P("fits"), at_limit);
  ASSERT_TRUE(fits.ok()) << fits.Describe();
  EXPECT_EQ(fits->stat().data_length(), kMaxDataBytes);

  auto set = client_->Set(P("fits"), over);
  ExpectError(set, grpc::StatusCode::INVALID_ARGUMENT, v1::TOO_LARGE);
  EXPECT_THAT(set.status.error_message(), HasSubstr(P("fits")));
  auto got = client_->Get(P("fits"));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->data(), at_limit);
  EXPECT_EQ(got->stat().version(), 0);

  auto multi = client_->Multi({op::Create(P("m")), op::Set(P("fits"), over)});
  ExpectError(multi, grpc::StatusCode::INVALID_ARGUMENT, v1::TOO_LARGE);
  EXPECT_FALSE(client_->Exists(P("m"))->exists());
  EXPECT_EQ(client_->Get(P("fits"))->stat().version(), 0);

  auto root = client_->Get(root_);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->stat().cversion(), 1);  // only "fits" was ever created
}

// ---- Sessions on unary calls --------------------------------------------------------------

TEST_F(ApiTest, UnknownSessionIsSessionExpired) {
  ASSERT_TRUE(client_->Create(P("n")).ok());
  const int64_t unknown = 0x7123456789abcdef;
  auto expect_expired = [&](const auto& reply, absl::string_view call) {
    SCOPED_TRACE(call);
    ExpectError(reply, grpc::StatusCode::FAILED_PRECONDITION, v1::SESSION_EXPIRED);
  };
  expect_expired(client_->Create(P("e"), "", v1::EPHEMERAL, unknown), "Create ephemeral");
  expect_expired(client_->Create(P("p"), "", v1::PERSISTENT, unknown), "Create persistent");
  expect_expired(client_->Get(P("n"), false, unknown), "Get");
  expect_expired(client_->Get(P("n"), true, unknown), "Get watch");
  expect_expired(client_->Exists(P("n"), false, unknown), "Exists");
  expect_expired(client_->GetChildren(P("n"), false, unknown), "GetChildren");
  expect_expired(client_->Set(P("n"), "x", std::nullopt, unknown), "Set");
  expect_expired(client_->Delete(P("n"), std::nullopt, unknown), "Delete");
  expect_expired(client_->Multi({op::Create(P("m"))}, unknown), "Multi");
  expect_expired(client_->Sync("", unknown), "Sync");

  auto children = client_->GetChildren(root_);
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->children(), ElementsAre("n"));
  EXPECT_EQ(client_->Get(P("n"))->stat().version(), 0);

  // A closed session is as unknown.
  SessionClient session(server_->Endpoint(0));
  ASSERT_TRUE(session.Open(10000).has_opened());
  const int64_t id = session.session_id();
  auto eph = client_->Create(P("eph"), "", v1::EPHEMERAL, id);
  ASSERT_TRUE(eph.ok()) << eph.Describe();
  auto closed = session.Close();
  ASSERT_TRUE(closed.has_closed()) << closed.ShortDebugString();
  expect_expired(client_->Create(P("eph2"), "", v1::EPHEMERAL, id), "Create after close");
  expect_expired(client_->Get(P("n"), false, id), "Get after close");
  EXPECT_FALSE(client_->Exists(P("eph"))->exists());
}

TEST_F(ApiTest, UnaryWritesWithALiveSessionWork) {
  SessionClient session(server_->Endpoint(0));
  ASSERT_TRUE(session.Open(10000).has_opened());
  const int64_t id = session.session_id();
  auto multi =
      client_->Multi({op::Create(P("m-eph"), "", v1::EPHEMERAL), op::Create(P("m-per"))}, id);
  ASSERT_TRUE(multi.ok()) << multi.Describe();
  EXPECT_EQ(multi->results(0).create().stat().ephemeral_owner(), id);
  EXPECT_EQ(multi->results(1).create().stat().ephemeral_owner(), 0);
  // An ephemeral in a Multi without a session is refused like a plain Create.
  auto no_session = client_->Multi({op::Create(P("x"), "", v1::EPHEMERAL)});
  ExpectError(no_session, grpc::StatusCode::INVALID_ARGUMENT, v1::INVALID_ARGUMENT);
  EXPECT_TRUE(client_->Set(P("m-per"), "x", 0, id).ok());
  EXPECT_TRUE(client_->Delete(P("m-per"), 1, id).ok());
  EXPECT_TRUE(client_->Sync("", id).ok());
}

}  // namespace
}  // namespace confab
