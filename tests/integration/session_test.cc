// The Session stream against a real confabd: sessions, pipelining, watches and their ordering,
// ephemerals, close, expiry and resume.
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/testing/local_ensemble.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "session_client.h"
#include "test_server.h"
#include "unary_client.h"

namespace confab {
namespace {

using ::confab::itest::CodeOf;
using ::confab::itest::SessionClient;
using ::confab::itest::UnaryClient;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Event = SessionClient::Event;
namespace req = ::confab::itest::req;
namespace op = ::confab::itest::op;

constexpr int32_t kMinTimeoutMs = 500;
constexpr int32_t kTimeoutMs = 10000;

// (type, path, zxid) of the watch events in `events`; notices are shown with type -1.
std::vector<std::tuple<v1::EventType, std::string, int64_t>> Summary(
    const std::vector<Event>& events) {
  std::vector<std::tuple<v1::EventType, std::string, int64_t>> out;
  for (const Event& e : events) {
    if (e.is_event()) {
      out.emplace_back(e.event().type(), e.event().path(), e.event().zxid());
    } else {
      out.emplace_back(static_cast<v1::EventType>(-1), e.message.ShortDebugString(), 0);
    }
  }
  return out;
}

std::tuple<v1::EventType, std::string, int64_t> Ev(v1::EventType type, const std::string& path,
                                                   int64_t zxid) {
  return {type, path, zxid};
}

void ExpectEvent(const std::optional<Event>& event, v1::EventType type, const std::string& path,
                 int64_t zxid) {
  ASSERT_TRUE(event.has_value()) << "no event; expected " << v1::EventType_Name(type) << " "
                                 << path;
  ASSERT_TRUE(event->is_event()) << event->message.ShortDebugString();
  EXPECT_EQ(event->message.request_id(), 0);
  EXPECT_EQ(event->event().type(), type) << event->message.ShortDebugString();
  EXPECT_EQ(event->event().path(), path);
  EXPECT_EQ(event->event().zxid(), zxid);
}

void ExpectOk(const v1::SessionResponse& response) {
  EXPECT_EQ(CodeOf(response), v1::OK) << response.ShortDebugString();
}

void ExpectStreamError(const v1::SessionResponse& response, v1::ErrorCode code) {
  ASSERT_TRUE(response.has_error()) << response.ShortDebugString();
  EXPECT_EQ(response.error().code(), code) << response.ShortDebugString();
  EXPECT_FALSE(response.error().message().empty());
}

class SessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = itest::StartConfabd(
                  {absl::StrCat("--session-timeout-min-ms=", kMinTimeoutMs), "--tick-ms=50"})
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    unary_ = std::make_unique<UnaryClient>(server_->Endpoint(0));
    root_ = itest::TestRoot();
    auto created = unary_->Create(root_);
    ASSERT_TRUE(created.ok()) << created.Describe();
  }

  std::string P(absl::string_view rel) const { return absl::StrCat(root_, "/", rel); }
  std::string Endpoint() const { return server_->Endpoint(0); }

  // A new stream with a new session; nullptr (and a test failure) if it cannot be opened.
  std::unique_ptr<SessionClient> NewSession(int32_t timeout_ms = kTimeoutMs) {
    auto client = std::make_unique<SessionClient>(Endpoint());
    v1::SessionResponse opened = client->Open(timeout_ms);
    EXPECT_TRUE(opened.has_opened() && CodeOf(opened) == v1::OK) << opened.ShortDebugString();
    if (client->session_id() == 0) return nullptr;
    return client;
  }

  // Polls (bounded) until `path` does not exist; returns whether it went.
  bool WaitGone(const std::string& path, absl::Duration timeout,
                SessionClient* keep_alive = nullptr) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      auto exists = unary_->Exists(path);
      EXPECT_TRUE(exists.ok()) << exists.Describe();
      if (exists.ok() && !exists->exists()) return true;
      if (keep_alive != nullptr) ExpectOk(keep_alive->Heartbeat());
      absl::SleepFor(absl::Milliseconds(25));
    }
    return false;
  }

  static testing::LocalEnsemble* server_;
  std::unique_ptr<UnaryClient> unary_;
  std::string root_;
};

testing::LocalEnsemble* SessionTest::server_ = nullptr;

// ---- Opening ------------------------------------------------------------------------------

TEST_F(SessionTest, OpenNegotiatesTheTimeout) {
  SessionClient s(Endpoint());
  v1::SessionResponse opened = s.Open(kTimeoutMs);
  ASSERT_TRUE(opened.has_opened()) << opened.ShortDebugString();
  ExpectOk(opened);
  EXPECT_NE(opened.opened().session_id(), 0);
  EXPECT_EQ(opened.opened().timeout_ms(), kTimeoutMs);
  EXPECT_FALSE(opened.opened().resumed());

  SessionClient low(Endpoint());
  v1::SessionResponse clamped_up = low.Open(10);
  ASSERT_TRUE(clamped_up.has_opened()) << clamped_up.ShortDebugString();
  EXPECT_EQ(clamped_up.opened().timeout_ms(), kMinTimeoutMs);

  SessionClient high(Endpoint());
  v1::SessionResponse clamped_down = high.Open(1 << 30);
  ASSERT_TRUE(clamped_down.has_opened()) << clamped_down.ShortDebugString();
  EXPECT_EQ(clamped_down.opened().timeout_ms(), 60000);  // the default maximum

  EXPECT_NE(s.session_id(), low.session_id());
  EXPECT_NE(low.session_id(), high.session_id());
  EXPECT_NE(s.session_id(), high.session_id());

  v1::SessionResponse ack = s.Heartbeat();
  ASSERT_TRUE(ack.has_heartbeat()) << ack.ShortDebugString();
  EXPECT_GT(ack.heartbeat().zxid(), 0);
}

// SessionOpened.zxid is "the last zxid applied by the server": a new session must not report 0
// (or anything older than a write acknowledged before it was opened).
TEST_F(SessionTest, OpenReportsTheLastAppliedZxid) {
  auto written = unary_->Create(P("before"));
  ASSERT_TRUE(written.ok()) << written.Describe();
  SessionClient s(Endpoint());
  v1::SessionResponse opened = s.Open(kTimeoutMs);
  ASSERT_TRUE(opened.has_opened()) << opened.ShortDebugString();
  EXPECT_GE(opened.opened().zxid(), written->zxid()) << opened.ShortDebugString();
}

TEST_F(SessionTest, RequestsBeforeOpenSessionFail) {
  SessionClient s(Endpoint());
  std::vector<v1::SessionResponse> responses = s.Pipeline({
      req::Get(root_),
      req::Create(P("x")),
      req::Heartbeat(),
      req::Sync(),
      req::AddWatch(root_, v1::PERSISTENT_WATCH),
      req::Close(),
  });
  for (const v1::SessionResponse& response : responses) {
    ExpectStreamError(response, v1::SESSION_EXPIRED);
    EXPECT_THAT(response.error().message(), HasSubstr("OpenSession"));
  }
  EXPECT_FALSE(unary_->Exists(P("x"))->exists());

  // The stream is still usable: open, then work.
  ASSERT_TRUE(s.Open(kTimeoutMs).has_opened());
  ExpectOk(s.Call(req::Create(P("x"))));
  EXPECT_TRUE(unary_->Exists(P("x"))->exists());
}

TEST_F(SessionTest, OpenAndRequestsInOneMessage) {
  SessionClient s(Endpoint());
  std::vector<v1::SessionResponse> responses = s.Pipeline({
      req::Open(kTimeoutMs),
      req::Create(P("eph"), "e", v1::EPHEMERAL),
      req::Get(P("eph")),
  });
  ASSERT_TRUE(responses[0].has_opened()) << responses[0].ShortDebugString();
  const int64_t id = responses[0].opened().session_id();
  ASSERT_TRUE(responses[1].has_create()) << responses[1].ShortDebugString();
  EXPECT_EQ(responses[1].create().stat().ephemeral_owner(), id);
  ASSERT_TRUE(responses[2].has_get()) << responses[2].ShortDebugString();
  EXPECT_EQ(responses[2].get().data(), "e");
}

TEST_F(SessionTest, SecondOpenOnTheSameStreamIsInvalidArgument) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  auto other = NewSession();
  ASSERT_NE(other, nullptr);
  const int64_t id = s->session_id();

  ExpectStreamError(s->Open(kTimeoutMs), v1::INVALID_ARGUMENT);
  ExpectStreamError(s->Resume(id), v1::INVALID_ARGUMENT);
  ExpectStreamError(s->Resume(other->session_id()), v1::INVALID_ARGUMENT);
  EXPECT_EQ(s->session_id(), id);

  // The stream keeps its session.
  v1::SessionResponse created = s->Call(req::Create(P("eph"), "", v1::EPHEMERAL));
  ASSERT_TRUE(created.has_create()) << created.ShortDebugString();
  EXPECT_EQ(created.create().stat().ephemeral_owner(), id);
}

// ---- Pipelining ---------------------------------------------------------------------------

TEST_F(SessionTest, PipelinedBatchIsAnsweredInOrderAndReadsItsOwnWrites) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  std::vector<v1::SessionResponse> r = s->Pipeline({
      req::Create(P("a"), "1"),                                   // 0
      req::Get(P("a")),                                           // 1
      req::Set(P("a"), "2"),                                      // 2
      req::Get(P("a")),                                           // 3
      req::Exists(P("b")),                                        // 4
      req::Create(P("b")),                                        // 5
      req::GetChildren(root_),                                    // 6
      req::Set(P("a"), "3", 1),                                   // 7
      req::Get(P("a")),                                           // 8
      req::Create(P("a")),                                        // 9: NODE_EXISTS
      req::Delete(P("b")),                                        // 10
      req::Exists(P("b")),                                        // 11
      req::Multi({op::Create(P("c")), op::Set(P("a"), "4", 2)}),  // 12
      req::Get(P("a")),                                           // 13
      req::Set(P("a"), "5", 0),                                   // 14: BAD_VERSION
      req::Get(P("a")),                                           // 15
      req::Sync(),                                                // 16
  });
  ASSERT_EQ(r.size(), 17u);
  for (size_t i = 1; i < r.size(); ++i) {
    EXPECT_GT(r[i].request_id(), r[i - 1].request_id());
    EXPECT_GT(s->ArrivalOf(r[i]), s->ArrivalOf(r[i - 1])) << "response " << i << " came early";
  }
  ASSERT_TRUE(r[0].has_create()) << r[0].ShortDebugString();
  ASSERT_TRUE(r[1].has_get()) << r[1].ShortDebugString();
  EXPECT_EQ(r[1].get().data(), "1");
  EXPECT_EQ(r[1].get().stat().version(), 0);
  EXPECT_EQ(r[1].get().stat().mzxid(), r[0].create().zxid());
  ASSERT_TRUE(r[2].has_set()) << r[2].ShortDebugString();
  ASSERT_TRUE(r[3].has_get());
  EXPECT_EQ(r[3].get().data(), "2");
  EXPECT_EQ(r[3].get().stat().mzxid(), r[2].set().zxid());
  ASSERT_TRUE(r[4].has_exists());
  EXPECT_FALSE(r[4].exists().exists());
  ASSERT_TRUE(r[5].has_create()) << r[5].ShortDebugString();
  ASSERT_TRUE(r[6].has_get_children());
  EXPECT_THAT(r[6].get_children().children(), ElementsAre("a", "b"));
  ASSERT_TRUE(r[7].has_set()) << r[7].ShortDebugString();
  EXPECT_EQ(r[7].set().stat().version(), 2);
  ASSERT_TRUE(r[8].has_get());
  EXPECT_EQ(r[8].get().data(), "3");
  ExpectStreamError(r[9], v1::NODE_EXISTS);
  EXPECT_THAT(r[9].error().message(), HasSubstr(P("a")));
  ASSERT_TRUE(r[10].has_delete_()) << r[10].ShortDebugString();
  ASSERT_TRUE(r[11].has_exists());
  EXPECT_FALSE(r[11].exists().exists());
  ASSERT_TRUE(r[12].has_multi()) << r[12].ShortDebugString();
  ExpectOk(r[12]);
  ASSERT_TRUE(r[13].has_get());
  EXPECT_EQ(r[13].get().data(), "4");
  EXPECT_EQ(r[13].get().stat().mzxid(), r[12].multi().zxid());
  ExpectStreamError(r[14], v1::BAD_VERSION);
  ASSERT_TRUE(r[15].has_get());
  EXPECT_EQ(r[15].get().data(), "4");
  ASSERT_TRUE(r[16].has_sync());
  EXPECT_GE(r[16].sync().zxid(), r[12].multi().zxid());

  // Writes got increasing zxids in request order.
  std::vector<int64_t> zxids = {r[0].create().zxid(), r[2].set().zxid(),      r[5].create().zxid(),
                                r[7].set().zxid(),    r[10].delete_().zxid(), r[12].multi().zxid()};
  for (size_t i = 1; i < zxids.size(); ++i) EXPECT_GT(zxids[i], zxids[i - 1]);
}

// Reads pipelined between writes see exactly the writes before them, not later ones of the same
// batch (a read waits for the writes before it, and must not run after later ones applied).
// Writes of one session apply in the order they were sent, even when many messages are in flight
// and the server starts them from different threads (the gRPC thread that read them, the apply
// thread that finished the one before): each conditional Set expects the version the previous
// one made.
TEST_F(SessionTest, PipelinedWritesApplyInTheOrderSent) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("counter")).ok());
  constexpr int kMessages = 100;
  constexpr int kPerMessage = 10;
  int64_t id = 1000;
  for (int m = 0; m < kMessages; ++m) {
    v1::ClientMessage message;
    for (int i = 0; i < kPerMessage; ++i) {
      v1::SessionRequest* request = message.add_requests();
      request->set_request_id(++id);
      request->mutable_set()->set_path(P("counter"));
      request->mutable_set()->set_data(std::to_string(m * kPerMessage + i));
      request->mutable_set()->set_version(m * kPerMessage + i);
    }
    ASSERT_TRUE(s->Send(message));
  }
  for (int64_t r = 1001; r <= id; ++r) {
    v1::SessionResponse response = s->ResponseTo(r);
    ASSERT_TRUE(response.has_set()) << response.ShortDebugString();
    EXPECT_EQ(response.set().stat().version(), r - 1000);
  }
}

TEST_F(SessionTest, PipelinedReadsSeeExactlyTheWritesBeforeThem) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("n"), "0").ok());
  std::vector<v1::SessionRequest> batch;
  for (int i = 1; i <= 50; ++i) {
    batch.push_back(req::Set(P("n"), absl::StrCat(i)));
    batch.push_back(req::Get(P("n")));
  }
  std::vector<v1::SessionResponse> r = s->Pipeline(std::move(batch));
  for (int i = 1; i <= 50; ++i) {
    const v1::SessionResponse& set = r[2 * (i - 1)];
    const v1::SessionResponse& get = r[2 * (i - 1) + 1];
    ASSERT_TRUE(set.has_set()) << set.ShortDebugString();
    ASSERT_TRUE(get.has_get()) << get.ShortDebugString();
    EXPECT_EQ(get.get().data(), absl::StrCat(i)) << "the read after write " << i;
    EXPECT_EQ(get.get().stat().version(), i);
  }
}

TEST_F(SessionTest, ErrorsOnTheStreamAreInBand) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("p"), "p").ok());
  ASSERT_TRUE(unary_->Create(P("p/c")).ok());
  std::vector<v1::SessionResponse> r = s->Pipeline({
      req::Create(P("p")),
      req::Get(P("missing")),
      req::Set(P("p"), "x", 7),
      req::Delete(P("p")),
      req::Create(P("missing/child")),
      req::Get("no/slash"),
      req::Create(P("p/c/e"), "", v1::EPHEMERAL),
      req::GetChildren(P("missing")),
      req::Get(P("p")),
  });
  ExpectStreamError(r[0], v1::NODE_EXISTS);
  ExpectStreamError(r[1], v1::NO_NODE);
  ExpectStreamError(r[2], v1::BAD_VERSION);
  ExpectStreamError(r[3], v1::NOT_EMPTY);
  ExpectStreamError(r[4], v1::NO_NODE);
  ExpectStreamError(r[5], v1::INVALID_PATH);
  EXPECT_THAT(r[5].error().message(), HasSubstr("no/slash"));
  ASSERT_TRUE(r[6].has_create()) << r[6].ShortDebugString();  // p/c is persistent: fine
  ExpectStreamError(r[7], v1::NO_NODE);
  ASSERT_TRUE(r[8].has_get()) << "the stream goes on after errors";
  EXPECT_EQ(r[8].get().data(), "p");
  for (int i : {0, 2, 3}) EXPECT_THAT(r[i].error().message(), HasSubstr(P("p"))) << i;
  v1::SessionResponse under_ephemeral = s->Call(req::Create(P("p/c/e/x")));
  ExpectStreamError(under_ephemeral, v1::NO_CHILDREN_FOR_EPHEMERALS);
}

TEST_F(SessionTest, MultiOnTheStreamReportsTheFailedOp) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("e"), "e0").ok());
  v1::SessionResponse failed =
      s->Call(req::Multi({op::Create(P("n")), op::Set(P("e"), "x"), op::Check(P("e"), 3)}));
  ExpectStreamError(failed, v1::BAD_VERSION);
  EXPECT_EQ(failed.error().failed_op(), 2) << failed.ShortDebugString();
  ASSERT_TRUE(failed.has_multi()) << failed.ShortDebugString();
  ASSERT_EQ(failed.multi().results_size(), 3);
  EXPECT_EQ(failed.multi().results(0).error().code(), v1::RUNTIME_INCONSISTENCY);
  EXPECT_EQ(failed.multi().results(1).error().code(), v1::RUNTIME_INCONSISTENCY);
  EXPECT_EQ(failed.multi().results(2).error().code(), v1::BAD_VERSION);
  EXPECT_FALSE(unary_->Exists(P("n"))->exists());
  EXPECT_EQ(unary_->Get(P("e"))->data(), "e0");
}

// A Multi refused before the log (a malformed path in op 1) must still name the failing op:
// Error.failed_op is "index of the first failing op" for a Multi.
TEST_F(SessionTest, MultiRefusedAtAdmissionOnTheStreamReportsTheFailedOp) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  v1::SessionResponse refused = s->Call(req::Multi({op::Create(P("n")), op::Create(P("bad/"))}));
  ExpectStreamError(refused, v1::INVALID_PATH);
  EXPECT_EQ(refused.error().failed_op(), 1) << refused.ShortDebugString();
  EXPECT_FALSE(unary_->Exists(P("n"))->exists());
}

// ---- One-shot watches ---------------------------------------------------------------------

TEST_F(SessionTest, DataWatchFiresOnce) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("n"), "0").ok());
  ExpectOk(s->Call(req::Get(P("n"), true)));
  auto set1 = unary_->Set(P("n"), "1");
  ASSERT_TRUE(set1.ok());
  ExpectEvent(s->NextEvent(), v1::NODE_DATA_CHANGED, P("n"), set1->zxid());
  ASSERT_TRUE(unary_->Set(P("n"), "2").ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre()) << "a one-shot watch fired twice";

  // Re-armed, it reports the deletion.
  ExpectOk(s->Call(req::Get(P("n"), true)));
  auto deleted = unary_->Delete(P("n"));
  ASSERT_TRUE(deleted.ok());
  ExpectEvent(s->NextEvent(), v1::NODE_DELETED, P("n"), deleted->zxid());
  ASSERT_TRUE(unary_->Create(P("n")).ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre());

  // Get of a missing node fails and sets no watch.
  ExpectStreamError(s->Call(req::Get(P("missing"), true)), v1::NO_NODE);
  ASSERT_TRUE(unary_->Create(P("missing")).ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre());
}

TEST_F(SessionTest, ExistsWatchOnAMissingNodeFiresCreated) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  v1::SessionResponse exists = s->Call(req::Exists(P("m"), true));
  ASSERT_TRUE(exists.has_exists()) << exists.ShortDebugString();
  EXPECT_FALSE(exists.exists().exists());
  auto created = unary_->Create(P("m"));
  ASSERT_TRUE(created.ok());
  ExpectEvent(s->NextEvent(), v1::NODE_CREATED, P("m"), created->zxid());
  ASSERT_TRUE(unary_->Set(P("m"), "x").ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre());

  // On an existing node it is a data watch.
  v1::SessionResponse again = s->Call(req::Exists(P("m"), true));
  EXPECT_TRUE(again.exists().exists());
  auto set = unary_->Set(P("m"), "y");
  ASSERT_TRUE(set.ok());
  ExpectEvent(s->NextEvent(), v1::NODE_DATA_CHANGED, P("m"), set->zxid());
}

TEST_F(SessionTest, ChildWatchFiresChildrenChangedAndDeleted) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("p")).ok());

  ExpectOk(s->Call(req::GetChildren(P("p"), true)));
  auto c = unary_->Create(P("p/c"));
  ASSERT_TRUE(c.ok());
  ExpectEvent(s->NextEvent(), v1::NODE_CHILDREN_CHANGED, P("p"), c->zxid());
  ASSERT_TRUE(unary_->Create(P("p/d")).ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre()) << "one-shot";

  // Data changes of the node or of a child do not fire it; a child's deletion does.
  ExpectOk(s->Call(req::GetChildren(P("p"), true)));
  ASSERT_TRUE(unary_->Set(P("p"), "x").ok());
  ASSERT_TRUE(unary_->Set(P("p/c"), "x").ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre());
  auto deleted_c = unary_->Delete(P("p/c"));
  ASSERT_TRUE(deleted_c.ok());
  ExpectEvent(s->NextEvent(), v1::NODE_CHILDREN_CHANGED, P("p"), deleted_c->zxid());

  // The node's own deletion fires NODE_DELETED.
  ASSERT_TRUE(unary_->Delete(P("p/d")).ok());
  ExpectOk(s->Call(req::GetChildren(P("p"), true)));
  auto deleted_p = unary_->Delete(P("p"));
  ASSERT_TRUE(deleted_p.ok());
  ExpectEvent(s->NextEvent(), v1::NODE_DELETED, P("p"), deleted_p->zxid());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre());

  // A data watch and a child watch on a deleted node: one NODE_DELETED, not two.
  ASSERT_TRUE(unary_->Create(P("q")).ok());
  ExpectOk(s->Call(req::Get(P("q"), true)));
  ExpectOk(s->Call(req::GetChildren(P("q"), true)));
  auto deleted_q = unary_->Delete(P("q"));
  ASSERT_TRUE(deleted_q.ok());
  EXPECT_THAT(Summary(s->SettleEvents()),
              ElementsAre(Ev(v1::NODE_DELETED, P("q"), deleted_q->zxid())));
}

// ---- Persistent watches -------------------------------------------------------------------

TEST_F(SessionTest, PersistentWatchReportsDataAndChildEventsUntilRemoved) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("pw")).ok());
  v1::SessionResponse added = s->Call(req::AddWatch(P("pw"), v1::PERSISTENT_WATCH));
  ASSERT_TRUE(added.has_add_watch()) << added.ShortDebugString();

  auto set1 = unary_->Set(P("pw"), "1");
  auto child = unary_->Create(P("pw/c"));
  auto set2 = unary_->Set(P("pw"), "2");
  ASSERT_TRUE(unary_->Set(P("pw/c"), "x").ok());  // a child's data: not this watch's
  ASSERT_TRUE(unary_->Create(P("pw/c/d")).ok());  // a grandchild: not this watch's
  ASSERT_TRUE(unary_->Delete(P("pw/c/d")).ok());  //
  auto child_gone = unary_->Delete(P("pw/c"));
  auto deleted = unary_->Delete(P("pw"));
  auto recreated = unary_->Create(P("pw"));
  ASSERT_TRUE(set1.ok() && child.ok() && set2.ok() && child_gone.ok() && deleted.ok() &&
              recreated.ok());
  EXPECT_THAT(Summary(s->SettleEvents()),
              ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("pw"), set1->zxid()),
                          Ev(v1::NODE_CHILDREN_CHANGED, P("pw"), child->zxid()),
                          Ev(v1::NODE_DATA_CHANGED, P("pw"), set2->zxid()),
                          Ev(v1::NODE_CHILDREN_CHANGED, P("pw"), child_gone->zxid()),
                          Ev(v1::NODE_DELETED, P("pw"), deleted->zxid()),
                          Ev(v1::NODE_CREATED, P("pw"), recreated->zxid())));
}

TEST_F(SessionTest, PersistentRecursiveWatchReportsTheSubtreeWithoutChildEvents) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("rw")).ok());
  ExpectOk(s->Call(req::AddWatch(P("rw"), v1::PERSISTENT_RECURSIVE_WATCH)));

  auto a = unary_->Create(P("rw/a"));
  auto ab = unary_->Create(P("rw/a/b"), "b");
  auto set_ab = unary_->Set(P("rw/a/b"), "b2");
  auto set_rw = unary_->Set(P("rw"), "r");
  ASSERT_TRUE(unary_->Create(P("rwx")).ok());  // a sibling sharing the prefix: not watched
  ASSERT_TRUE(unary_->Set(root_, "x").ok());   // the parent: not watched
  auto del_ab = unary_->Delete(P("rw/a/b"));
  auto del_a = unary_->Delete(P("rw/a"));
  auto multi = unary_->Multi({op::Create(P("rw/m1")), op::Create(P("rw/m2"))});
  ASSERT_TRUE(a.ok() && ab.ok() && set_ab.ok() && set_rw.ok() && del_ab.ok() && del_a.ok() &&
              multi.ok());
  EXPECT_THAT(Summary(s->SettleEvents()),
              ElementsAre(Ev(v1::NODE_CREATED, P("rw/a"), a->zxid()),
                          Ev(v1::NODE_CREATED, P("rw/a/b"), ab->zxid()),
                          Ev(v1::NODE_DATA_CHANGED, P("rw/a/b"), set_ab->zxid()),
                          Ev(v1::NODE_DATA_CHANGED, P("rw"), set_rw->zxid()),
                          Ev(v1::NODE_DELETED, P("rw/a/b"), del_ab->zxid()),
                          Ev(v1::NODE_DELETED, P("rw/a"), del_a->zxid()),
                          Ev(v1::NODE_CREATED, P("rw/m1"), multi->zxid()),
                          Ev(v1::NODE_CREATED, P("rw/m2"), multi->zxid())));
}

TEST_F(SessionTest, RemoveWatchStopsEvents) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  auto other = NewSession();
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(unary_->Create(P("n")).ok());

  ExpectOk(s->Call(req::AddWatch(P("n"), v1::PERSISTENT_WATCH)));
  ExpectOk(other->Call(req::AddWatch(P("n"), v1::PERSISTENT_WATCH)));
  v1::SessionResponse removed = s->Call(req::RemoveWatch(P("n"), v1::PERSISTENT_WATCH));
  ASSERT_TRUE(removed.has_remove_watch()) << removed.ShortDebugString();
  auto set = unary_->Set(P("n"), "x");
  ASSERT_TRUE(set.ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre());
  EXPECT_THAT(Summary(other->SettleEvents()),
              ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("n"), set->zxid())))
      << "another session's watch is its own";

  // A watch that is not there: NO_NODE, naming the path.
  v1::SessionResponse again = s->Call(req::RemoveWatch(P("n"), v1::PERSISTENT_WATCH));
  ExpectStreamError(again, v1::NO_NODE);
  EXPECT_THAT(again.error().message(), HasSubstr(P("n")));
  ExpectStreamError(s->Call(req::RemoveWatch(P("n"), v1::PERSISTENT_RECURSIVE_WATCH)), v1::NO_NODE);
  ExpectStreamError(s->Call(req::RemoveWatch(P("nowhere"), v1::DATA_WATCH)), v1::NO_NODE);

  // One-shot watches can be removed too.
  ExpectOk(s->Call(req::Get(P("n"), true)));
  ExpectOk(s->Call(req::RemoveWatch(P("n"), v1::DATA_WATCH)));
  ExpectOk(s->Call(req::GetChildren(P("n"), true)));
  ExpectOk(s->Call(req::RemoveWatch(P("n"), v1::CHILD_WATCH)));
  ExpectOk(s->Call(req::AddWatch(P("n"), v1::PERSISTENT_RECURSIVE_WATCH)));
  ExpectOk(s->Call(req::RemoveWatch(P("n"), v1::PERSISTENT_RECURSIVE_WATCH)));
  ASSERT_TRUE(unary_->Set(P("n"), "y").ok());
  ASSERT_TRUE(unary_->Create(P("n/c")).ok());
  EXPECT_THAT(Summary(s->SettleEvents()), ElementsAre());

  // AddWatch takes every kind (one-shot ones fire once), and a valid path.
  ExpectOk(s->Call(req::AddWatch(P("n"), v1::DATA_WATCH)));
  auto set3 = unary_->Set(P("n"), "z");
  ASSERT_TRUE(set3.ok());
  ASSERT_TRUE(unary_->Set(P("n"), "zz").ok());
  EXPECT_THAT(Summary(s->SettleEvents()),
              ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("n"), set3->zxid())));
  ExpectStreamError(s->Call(req::AddWatch(P("n"), static_cast<v1::WatchKind>(9))),
                    v1::INVALID_ARGUMENT);
  ExpectStreamError(s->Call(req::AddWatch("n", v1::PERSISTENT_WATCH)), v1::INVALID_PATH);
  ExpectStreamError(s->Call(req::RemoveWatch(P("n/"), v1::PERSISTENT_WATCH)), v1::INVALID_PATH);
}

// ---- Ordering of events and responses ------------------------------------------------------

TEST_F(SessionTest, EventOfOwnWriteComesBeforeItsResponse) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("n")).ok());
  ExpectOk(s->Call(req::Get(P("n"), true)));
  v1::SessionResponse set = s->Call(req::Set(P("n"), "x"));
  ASSERT_TRUE(set.has_set()) << set.ShortDebugString();
  std::vector<Event> events = s->DrainEvents();  // no waiting: it must be here already
  ASSERT_THAT(Summary(events), ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("n"), set.set().zxid())));
  EXPECT_LT(events[0].seq, s->ArrivalOf(set));

  // Own creation under an Exists watch, own deletion under a child watch.
  ExpectOk(s->Call(req::Exists(P("m"), true)));
  v1::SessionResponse created = s->Call(req::Create(P("m")));
  events = s->DrainEvents();
  ASSERT_THAT(Summary(events), ElementsAre(Ev(v1::NODE_CREATED, P("m"), created.create().zxid())));
  EXPECT_LT(events[0].seq, s->ArrivalOf(created));
  ExpectOk(s->Call(req::GetChildren(root_, true)));
  v1::SessionResponse deleted = s->Call(req::Delete(P("m")));
  events = s->DrainEvents();
  ASSERT_THAT(Summary(events),
              ElementsAre(Ev(v1::NODE_CHILDREN_CHANGED, root_, deleted.delete_().zxid())));
  EXPECT_LT(events[0].seq, s->ArrivalOf(deleted));

  // A pipelined run of writes under a persistent watch: each event before its write's response.
  ExpectOk(s->Call(req::AddWatch(P("n"), v1::PERSISTENT_WATCH)));
  std::vector<v1::SessionRequest> writes;
  for (int i = 0; i < 10; ++i) writes.push_back(req::Set(P("n"), absl::StrCat(i)));
  std::vector<v1::SessionResponse> responses = s->Pipeline(std::move(writes));
  events = s->DrainEvents();
  ASSERT_EQ(events.size(), responses.size());
  for (size_t i = 0; i < responses.size(); ++i) {
    ASSERT_TRUE(responses[i].has_set()) << responses[i].ShortDebugString();
    EXPECT_EQ(events[i].event().zxid(), responses[i].set().zxid());
    EXPECT_LT(events[i].seq, s->ArrivalOf(responses[i])) << i;
  }
}

TEST_F(SessionTest, EventOfAnotherClientsChangeComesBeforeAReadReflectingIt) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(unary_->Create(P("n"), "0").ok());
  ExpectOk(s->Call(req::Get(P("n"), true)));
  auto set = unary_->Set(P("n"), "1");
  ASSERT_TRUE(set.ok());
  v1::SessionResponse read = s->Call(req::Get(P("n")));
  ASSERT_TRUE(read.has_get());
  EXPECT_EQ(read.get().data(), "1");
  std::vector<Event> events = s->DrainEvents();
  ASSERT_THAT(Summary(events), ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("n"), set->zxid())));
  EXPECT_LT(events[0].seq, s->ArrivalOf(read));

  // Under concurrent writes: whenever a read reflects a change (its mzxid), the change's event
  // has already arrived; event zxids strictly increase; every write produced exactly one event.
  ExpectOk(s->Call(req::AddWatch(P("n"), v1::PERSISTENT_WATCH)));
  std::vector<int64_t> write_zxids;
  std::thread writer([&] {
    UnaryClient writer_client(Endpoint());
    for (int i = 0; i < 100; ++i) {
      auto w = writer_client.Set(P("n"), absl::StrCat("w", i));
      if (!w.ok()) return;
      write_zxids.push_back(w->zxid());
    }
  });
  std::vector<std::pair<int64_t, int64_t>> reads;  // (arrival, mzxid)
  for (int i = 0; i < 100; ++i) {
    v1::SessionResponse r = s->Call(req::Get(P("n")));
    EXPECT_TRUE(r.has_get()) << r.ShortDebugString();
    if (!r.has_get()) break;
    reads.emplace_back(s->ArrivalOf(r), r.get().stat().mzxid());
  }
  writer.join();
  ASSERT_EQ(write_zxids.size(), 100u);
  events = s->SettleEvents();
  std::vector<int64_t> event_zxids;
  for (const Event& e : events) {
    ASSERT_TRUE(e.is_event());
    event_zxids.push_back(e.event().zxid());
    for (const auto& [arrival, mzxid] : reads) {
      if (e.event().zxid() <= mzxid) {
        EXPECT_LT(e.seq, arrival) << "event " << e.message.ShortDebugString()
                                  << " came after a read at mzxid " << mzxid;
      }
    }
  }
  EXPECT_EQ(event_zxids, write_zxids);
  for (size_t i = 1; i < event_zxids.size(); ++i) EXPECT_GT(event_zxids[i], event_zxids[i - 1]);
}

// ---- Unary calls and sessions --------------------------------------------------------------

TEST_F(SessionTest, UnaryWatchWithoutSessionIsInvalidArgument) {
  ASSERT_TRUE(unary_->Create(P("n")).ok());
  auto expect_refused = [&](const auto& reply, absl::string_view call) {
    SCOPED_TRACE(call);
    EXPECT_EQ(reply.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << reply.Describe();
    EXPECT_EQ(reply.error_code, "INVALID_ARGUMENT") << reply.Describe();
    EXPECT_THAT(reply.status.error_message(), HasSubstr(P("n")));
  };
  expect_refused(unary_->Get(P("n"), true), "Get");
  expect_refused(unary_->Exists(P("n"), true), "Exists");
  expect_refused(unary_->GetChildren(P("n"), true), "GetChildren");
  // No watch was left behind: a session watching the node later sees one event only.
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  ExpectOk(s->Call(req::Get(P("n"), true)));
  auto set = unary_->Set(P("n"), "x");
  ASSERT_TRUE(set.ok());
  EXPECT_THAT(Summary(s->SettleEvents()),
              ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("n"), set->zxid())));
}

TEST_F(SessionTest, UnaryWatchWithSessionDeliversOnItsStream) {
  auto s = NewSession();
  ASSERT_NE(s, nullptr);
  const int64_t id = s->session_id();
  ASSERT_TRUE(unary_->Create(P("n")).ok());
  ASSERT_TRUE(unary_->Get(P("n"), true, id).ok());
  ASSERT_TRUE(unary_->Exists(P("m"), true, id).ok());
  ASSERT_TRUE(unary_->GetChildren(P("n"), true, id).ok());
  auto set = unary_->Set(P("n"), "x");
  auto created = unary_->Create(P("m"));
  auto child = unary_->Create(P("n/c"));
  ASSERT_TRUE(set.ok() && created.ok() && child.ok());
  EXPECT_THAT(Summary(s->SettleEvents()),
              ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("n"), set->zxid()),
                          Ev(v1::NODE_CREATED, P("m"), created->zxid()),
                          Ev(v1::NODE_CHILDREN_CHANGED, P("n"), child->zxid())));
}

// ---- Ephemerals, close, expiry, resume ----------------------------------------------------

TEST_F(SessionTest, ClosingASessionDeletesItsEphemerals) {
  auto a = NewSession();
  ASSERT_NE(a, nullptr);
  auto b = NewSession();
  ASSERT_NE(b, nullptr);
  const int64_t id = a->session_id();
  v1::SessionResponse e1 = a->Call(req::Create(P("e1"), "", v1::EPHEMERAL));
  v1::SessionResponse e2 = a->Call(req::Create(P("e-"), "", v1::EPHEMERAL_SEQUENTIAL));
  ASSERT_TRUE(e1.has_create() && e2.has_create()) << e1.ShortDebugString();
  EXPECT_EQ(e1.create().stat().ephemeral_owner(), id);
  EXPECT_EQ(e2.create().stat().ephemeral_owner(), id);
  EXPECT_EQ(e2.create().path(), P("e-0000000001"));
  ASSERT_TRUE(unary_->Create(P("keep")).ok());

  ExpectOk(b->Call(req::Exists(P("e1"), true)));
  ExpectOk(b->Call(req::GetChildren(root_, true)));

  v1::SessionResponse closed = a->Call(req::Close());
  ASSERT_TRUE(closed.has_closed()) << closed.ShortDebugString();
  ExpectOk(closed);

  // The closing session is told (request_id 0, SESSION_EXPIRED) before the close's response.
  std::vector<Event> notices = a->DrainEvents();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].message.request_id(), 0);
  EXPECT_EQ(CodeOf(notices[0].message), v1::SESSION_EXPIRED) << notices[0].message.DebugString();
  EXPECT_LT(notices[0].seq, a->ArrivalOf(closed));
  ExpectStreamError(a->Call(req::Get(root_)), v1::SESSION_EXPIRED);
  ExpectStreamError(a->Call(req::Create(P("late"))), v1::SESSION_EXPIRED);

  // The watcher sees the deletion, at the close's zxid.
  std::vector<Event> events = b->SettleEvents();
  ASSERT_EQ(events.size(), 2u) << ::testing::PrintToString(Summary(events));
  const int64_t close_zxid = events[0].event().zxid();
  EXPECT_THAT(Summary(events),
              ::testing::UnorderedElementsAre(Ev(v1::NODE_DELETED, P("e1"), close_zxid),
                                              Ev(v1::NODE_CHILDREN_CHANGED, root_, close_zxid)));
  EXPECT_GT(close_zxid, e2.create().zxid());

  auto children = unary_->GetChildren(root_);
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->children(), ElementsAre("keep"));
  EXPECT_FALSE(unary_->Exists(P("late"))->exists());
  a->Detach();

  SessionClient again(Endpoint());
  ExpectStreamError(again.Resume(id), v1::SESSION_EXPIRED);
}

// SessionClosed.zxid is the zxid of the close (the transaction that deleted the ephemerals).
TEST_F(SessionTest, SessionClosedCarriesTheZxidOfTheClose) {
  auto a = NewSession();
  ASSERT_NE(a, nullptr);
  auto b = NewSession();
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->Call(req::Create(P("e"), "", v1::EPHEMERAL)).has_create());
  ExpectOk(b->Call(req::Exists(P("e"), true)));
  v1::SessionResponse closed = a->Call(req::Close());
  ASSERT_TRUE(closed.has_closed()) << closed.ShortDebugString();
  std::optional<Event> deleted = b->NextEvent();
  ASSERT_TRUE(deleted.has_value() && deleted->is_event());
  EXPECT_EQ(deleted->event().type(), v1::NODE_DELETED);
  EXPECT_EQ(closed.closed().zxid(), deleted->event().zxid()) << closed.ShortDebugString();
}

TEST_F(SessionTest, ASessionThatStopsHeartbeatingExpires) {
  auto a = NewSession(kMinTimeoutMs);
  ASSERT_NE(a, nullptr);
  auto b = NewSession(kMinTimeoutMs);
  ASSERT_NE(b, nullptr);
  const int64_t a_id = a->session_id();
  ASSERT_TRUE(a->Call(req::Create(P("a"), "", v1::EPHEMERAL)).has_create());
  ASSERT_TRUE(b->Call(req::Create(P("b"), "", v1::EPHEMERAL)).has_create());
  ExpectOk(b->Call(req::Exists(P("a"), true)));

  absl::Time last_touch_sent = absl::Now();
  ExpectOk(a->Heartbeat());
  a->Abandon();

  ASSERT_TRUE(WaitGone(P("a"), absl::Seconds(5), b.get())) << "expired session kept its ephemeral";
  EXPECT_GE(absl::Now() - last_touch_sent, absl::Milliseconds(kMinTimeoutMs))
      << "expired before its timeout";
  std::vector<Event> events = b->SettleEvents();
  ASSERT_EQ(events.size(), 1u) << ::testing::PrintToString(Summary(events));
  EXPECT_EQ(events[0].event().type(), v1::NODE_DELETED);
  EXPECT_EQ(events[0].event().path(), P("a"));

  // The heartbeating session lives on well past its timeout.
  absl::Time until = last_touch_sent + absl::Milliseconds(3 * kMinTimeoutMs);
  while (absl::Now() < until) {
    ExpectOk(b->Heartbeat());
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(unary_->Exists(P("b"))->exists());
  ExpectOk(b->Call(req::Get(P("b"))));
  auto with_a = unary_->Get(root_, false, a_id);
  EXPECT_EQ(with_a.error_code, "SESSION_EXPIRED") << with_a.Describe();

  SessionClient resume(Endpoint());
  ExpectStreamError(resume.Resume(a_id), v1::SESSION_EXPIRED);
  // Without a session the stream refuses work.
  ExpectStreamError(resume.Call(req::Get(root_)), v1::SESSION_EXPIRED);
  SessionClient unknown(Endpoint());
  ExpectStreamError(unknown.Resume(0x0123456789abcdef), v1::SESSION_EXPIRED);
}

// A server that did not run for longer than a session's timeout (SIGSTOP here; a stall in real
// life) does not expire its clients' sessions the moment it runs again: they could not be heard.
TEST_F(SessionTest, SessionsSurviveAServerStallLongerThanTheirTimeout) {
  auto s = NewSession(kMinTimeoutMs);
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->Call(req::Create(P("eph"), "", v1::EPHEMERAL)).has_create());
  ASSERT_TRUE(server_->Pause(0).ok());
  absl::SleepFor(absl::Milliseconds(3 * kMinTimeoutMs));
  ASSERT_TRUE(server_->Resume(0).ok());
  ExpectOk(s->Heartbeat());
  absl::SleepFor(absl::Milliseconds(kMinTimeoutMs / 2));
  ExpectOk(s->Heartbeat());
  EXPECT_TRUE(unary_->Exists(P("eph"))->exists());
}

TEST_F(SessionTest, ResumeOnANewStreamKeepsEphemeralsAndReplaysMissedEventsFromAZxid) {
  auto a = NewSession(2000);
  ASSERT_NE(a, nullptr);
  const int64_t id = a->session_id();
  ASSERT_TRUE(a->Call(req::Create(P("eph"), "", v1::EPHEMERAL)).has_create());
  ASSERT_TRUE(unary_->Create(P("w")).ok());
  v1::SessionResponse added = a->Call(req::AddWatch(P("w"), v1::PERSISTENT_WATCH));
  ExpectOk(added);
  const int64_t last_seen = added.add_watch().zxid();

  // Detached: the session's watches stay with the old stream; what happens now is missed.
  a->Detach();
  auto set = unary_->Set(P("w"), "while detached");
  ASSERT_TRUE(set.ok());
  ASSERT_TRUE(unary_->Create(P("w/child")).ok());

  SessionClient b(Endpoint());
  v1::SessionResponse resumed = b.Resume(id);
  ASSERT_TRUE(resumed.has_opened()) << resumed.ShortDebugString();
  EXPECT_TRUE(resumed.opened().resumed());
  EXPECT_EQ(resumed.opened().session_id(), id);
  EXPECT_EQ(resumed.opened().timeout_ms(), 2000);
  EXPECT_GE(resumed.opened().zxid(), set->zxid());
  // Nothing arrives by itself: watches are re-added, from the last zxid seen.
  EXPECT_THAT(Summary(b.SettleEvents()), ElementsAre());
  v1::SessionResponse readded = b.Call(req::AddWatch(P("w"), v1::PERSISTENT_WATCH, last_seen));
  ExpectOk(readded);
  EXPECT_FALSE(readded.add_watch().events_missed());
  std::optional<Event> missed = b.NextEvent();
  ExpectEvent(missed, v1::NODE_DATA_CHANGED, P("w"), set->zxid());
  if (missed.has_value()) {
    EXPECT_LT(missed->seq, b.ArrivalOf(readded)) << "replayed events precede the response";
  }
  std::optional<Event> missed_child = b.NextEvent();
  ASSERT_TRUE(missed_child.has_value());
  EXPECT_EQ(missed_child->event().type(), v1::NODE_CHILDREN_CHANGED);

  v1::SessionResponse eph = b.Call(req::Get(P("eph")));
  ASSERT_TRUE(eph.has_get()) << eph.ShortDebugString();
  EXPECT_EQ(eph.get().stat().ephemeral_owner(), id);
  v1::SessionResponse eph2 = b.Call(req::Create(P("eph2"), "", v1::EPHEMERAL));
  ASSERT_TRUE(eph2.has_create()) << eph2.ShortDebugString();
  EXPECT_EQ(eph2.create().stat().ephemeral_owner(), id);
  // The re-added persistent watch keeps firing.
  auto set2 = unary_->Set(P("w"), "after resume");
  ASSERT_TRUE(set2.ok());
  ExpectEvent(b.NextEvent(), v1::NODE_DATA_CHANGED, P("w"), set2->zxid());

  // Abruptly dropped (cancelled) this time, resumed again within the timeout.
  b.Abandon();
  SessionClient c(Endpoint());
  v1::SessionResponse resumed_again = c.Resume(id);
  ASSERT_TRUE(resumed_again.has_opened()) << resumed_again.ShortDebugString();
  EXPECT_TRUE(resumed_again.opened().resumed());
  v1::SessionResponse children = c.Call(req::GetChildren(root_));
  ASSERT_TRUE(children.has_get_children());
  EXPECT_THAT(children.get_children().children(), ElementsAre("eph", "eph2", "w"));
  // A one-shot watch re-added from before a change fires at once with that change, and only once.
  v1::SessionResponse oneshot = c.Call(req::AddWatch(P("w"), v1::DATA_WATCH, last_seen));
  ExpectOk(oneshot);
  EXPECT_THAT(Summary(c.SettleEvents()),
              ElementsAre(Ev(v1::NODE_DATA_CHANGED, P("w"), set->zxid())));
  ASSERT_TRUE(unary_->Set(P("w"), "later").ok());
  EXPECT_THAT(Summary(c.SettleEvents()), ElementsAre());
  ExpectOk(c.Heartbeat());

  // Closed from the resumed stream, the ephemerals go.
  v1::SessionResponse closed = c.Close();
  ASSERT_TRUE(closed.has_closed()) << closed.ShortDebugString();
  EXPECT_FALSE(unary_->Exists(P("eph"))->exists());
  EXPECT_FALSE(unary_->Exists(P("eph2"))->exists());
}

TEST_F(SessionTest, SequentialEphemeralsOfManySessionsAreDistinctAndIncreasing) {
  ASSERT_TRUE(unary_->Create(P("election")).ok());
  constexpr int kSessions = 12;
  std::vector<std::unique_ptr<SessionClient>> sessions;
  for (int i = 0; i < kSessions; ++i) {
    sessions.push_back(NewSession());
    ASSERT_NE(sessions.back(), nullptr);
  }

  // One after the other: names increase.
  std::vector<std::string> names;
  for (auto& s : sessions) {
    v1::SessionResponse r = s->Call(req::Create(P("election/n-"), "", v1::EPHEMERAL_SEQUENTIAL));
    ASSERT_TRUE(r.has_create()) << r.ShortDebugString();
    EXPECT_EQ(r.create().stat().ephemeral_owner(), s->session_id());
    if (!names.empty()) {
      EXPECT_GT(r.create().path(), names.back());
    }
    names.push_back(r.create().path());
  }
  EXPECT_EQ(names.front(), P("election/n-0000000000"));
  EXPECT_EQ(names.back(), P(absl::StrCat("election/n-00000000", kSessions - 1)));

  // All at once: distinct names, in zxid order.
  std::vector<std::pair<int64_t, std::string>> concurrent(kSessions);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back([&, i] {
      v1::SessionResponse r =
          sessions[i]->Call(req::Create(P("election/n-"), "", v1::EPHEMERAL_SEQUENTIAL));
      concurrent[i] = {r.create().zxid(), r.create().path()};
    });
  }
  for (auto& t : threads) t.join();
  std::sort(concurrent.begin(), concurrent.end());
  for (int i = 0; i < kSessions; ++i) {
    EXPECT_NE(concurrent[i].first, 0) << "create " << i << " failed";
    if (i > 0) {
      EXPECT_GT(concurrent[i].second, concurrent[i - 1].second);
    }
  }
  EXPECT_GT(concurrent.front().second, names.back());

  auto children = unary_->GetChildren(P("election"));
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(children->children_size(), 2 * kSessions);

  // A session's close takes exactly its own.
  ASSERT_TRUE(sessions[0]->Close().has_closed());
  children = unary_->GetChildren(P("election"));
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(children->children_size(), 2 * kSessions - 2);
  EXPECT_FALSE(unary_->Exists(names[0])->exists());
  EXPECT_TRUE(unary_->Exists(names[1])->exists());
}

}  // namespace
}  // namespace confab
