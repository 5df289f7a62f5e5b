// Sessions survive a server restart: resumed within their timeout they keep their ephemerals;
// not resumed, they expire after the restart and their ephemerals go.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
namespace req = ::confab::itest::req;

constexpr int32_t kLongTimeoutMs = 2000;
constexpr int32_t kShortTimeoutMs = 1000;

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = itest::StartConfabd({"--session-timeout-min-ms=500", "--tick-ms=50"});
    ASSERT_NE(server_, nullptr);
  }

  std::string Endpoint() const { return server_->Endpoint(0); }

  std::unique_ptr<SessionClient> NewSession(int32_t timeout_ms) {
    auto client = std::make_unique<SessionClient>(Endpoint());
    v1::SessionResponse opened = client->Open(timeout_ms);
    EXPECT_TRUE(opened.has_opened() && CodeOf(opened) == v1::OK) << opened.ShortDebugString();
    EXPECT_EQ(opened.opened().timeout_ms(), timeout_ms);
    if (client->session_id() == 0) return nullptr;
    return client;
  }

  // SIGTERM (clean exit required), then start again on the same directory and port. The open
  // streams are ended by the server.
  void StopAndRestart(const std::vector<SessionClient*>& streams) {
    ASSERT_TRUE(server_->Stop(0).ok());
    for (SessionClient* stream : streams) {
      std::optional<grpc::Status> end = stream->WaitStreamEnd();
      ASSERT_TRUE(end.has_value()) << "the stream outlived the server";
    }
    restarted_at_ = absl::Now();
    absl::Status restarted = server_->Restart(0);
    ASSERT_TRUE(restarted.ok()) << restarted;
  }

  // Polls (bounded) until `path` does not exist, heartbeating `keep_alive` meanwhile.
  bool WaitGone(UnaryClient& unary, const std::string& path, absl::Duration timeout,
                SessionClient* keep_alive) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      auto exists = unary.Exists(path);
      EXPECT_TRUE(exists.ok()) << exists.Describe();
      if (exists.ok() && !exists->exists()) return true;
      if (keep_alive != nullptr) {
        v1::SessionResponse ack = keep_alive->Heartbeat();
        EXPECT_EQ(CodeOf(ack), v1::OK) << ack.ShortDebugString();
      }
      absl::SleepFor(absl::Milliseconds(25));
    }
    return false;
  }

  std::unique_ptr<testing::LocalEnsemble> server_;
  absl::Time restarted_at_;
};

TEST_F(RestartTest, SessionResumedAfterRestartKeepsItsEphemerals) {
  auto a = NewSession(kLongTimeoutMs);
  ASSERT_NE(a, nullptr);
  const int64_t id = a->session_id();
  v1::SessionResponse eph = a->Call(req::Create("/a", "data", v1::EPHEMERAL));
  ASSERT_TRUE(eph.has_create()) << eph.ShortDebugString();
  v1::SessionResponse seq = a->Call(req::Create("/a-", "", v1::EPHEMERAL_SEQUENTIAL));
  ASSERT_TRUE(seq.has_create()) << seq.ShortDebugString();

  StopAndRestart({a.get()});

  SessionClient resumed(Endpoint());
  v1::SessionResponse opened = resumed.Resume(id);
  ASSERT_TRUE(opened.has_opened()) << opened.ShortDebugString();
  EXPECT_TRUE(opened.opened().resumed());
  EXPECT_EQ(opened.opened().session_id(), id);
  EXPECT_EQ(opened.opened().timeout_ms(), kLongTimeoutMs);
  EXPECT_GE(opened.opened().zxid(), seq.create().zxid());

  v1::SessionResponse got = resumed.Call(req::Get("/a"));
  ASSERT_TRUE(got.has_get()) << got.ShortDebugString();
  EXPECT_EQ(got.get().data(), "data");
  EXPECT_EQ(got.get().stat().ephemeral_owner(), id);
  EXPECT_EQ(got.get().stat().czxid(), eph.create().zxid());

  // Still there after the timeout has passed since the restart, as long as it heartbeats.
  while (absl::Now() < restarted_at_ + absl::Milliseconds(kLongTimeoutMs + 500)) {
    ASSERT_EQ(CodeOf(resumed.Heartbeat()), v1::OK);
    absl::SleepFor(absl::Milliseconds(100));
  }
  UnaryClient unary(Endpoint());
  auto children = unary.GetChildren("/");
  ASSERT_TRUE(children.ok()) << children.Describe();
  EXPECT_THAT(children->children(), ElementsAre("a", seq.create().path().substr(1)));

  // And it is a working session: new ephemerals, then a close that takes them all.
  v1::SessionResponse more = resumed.Call(req::Create("/b", "", v1::EPHEMERAL));
  ASSERT_TRUE(more.has_create()) << more.ShortDebugString();
  EXPECT_EQ(more.create().stat().ephemeral_owner(), id);
  ASSERT_TRUE(resumed.Close().has_closed());
  children = unary.GetChildren("/");
  ASSERT_TRUE(children.ok());
  EXPECT_THAT(children->children(), ElementsAre());
}

TEST_F(RestartTest, SessionNotResumedAfterRestartExpires) {
  auto kept = NewSession(kLongTimeoutMs);
  ASSERT_NE(kept, nullptr);
  auto lost = NewSession(kShortTimeoutMs);
  ASSERT_NE(lost, nullptr);
  const int64_t kept_id = kept->session_id();
  const int64_t lost_id = lost->session_id();
  ASSERT_TRUE(kept->Call(req::Create("/kept", "", v1::EPHEMERAL)).has_create());
  ASSERT_TRUE(lost->Call(req::Create("/lost", "", v1::EPHEMERAL)).has_create());
  ASSERT_TRUE(lost->Call(req::Create("/persistent")).has_create());

  StopAndRestart({kept.get(), lost.get()});

  SessionClient resumed(Endpoint());
  ASSERT_TRUE(resumed.Resume(kept_id).has_opened());
  // A watcher on the resumed session sees the other's ephemeral go.
  v1::SessionResponse watch = resumed.Call(req::Exists("/lost", true));
  ASSERT_TRUE(watch.has_exists()) << watch.ShortDebugString();
  EXPECT_TRUE(watch.exists().exists()) << "expired too early after the restart";

  UnaryClient unary(Endpoint());
  ASSERT_TRUE(WaitGone(unary, "/lost", absl::Seconds(5), &resumed))
      << "a session not resumed after the restart kept its ephemeral";
  // The timeout counts from the restart, not from the last contact before it.
  EXPECT_GE(absl::Now() - restarted_at_, absl::Milliseconds(kShortTimeoutMs));
  std::vector<SessionClient::Event> events = resumed.SettleEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event().type(), v1::NODE_DELETED);
  EXPECT_EQ(events[0].event().path(), "/lost");

  EXPECT_TRUE(unary.Exists("/kept")->exists());
  EXPECT_TRUE(unary.Exists("/persistent")->exists());
  SessionClient late(Endpoint());
  v1::SessionResponse refused = late.Resume(lost_id);
  EXPECT_EQ(CodeOf(refused), v1::SESSION_EXPIRED) << refused.ShortDebugString();
}

TEST_F(RestartTest, SessionsSurviveKill9) {
  auto a = NewSession(kLongTimeoutMs);
  ASSERT_NE(a, nullptr);
  const int64_t id = a->session_id();
  ASSERT_TRUE(a->Call(req::Create("/a", "", v1::EPHEMERAL)).has_create());
  ASSERT_TRUE(server_->Kill(0).ok());
  ASSERT_TRUE(a->WaitStreamEnd().has_value());
  ASSERT_TRUE(server_->Restart(0).ok());

  SessionClient resumed(Endpoint());
  v1::SessionResponse opened = resumed.Resume(id);
  ASSERT_TRUE(opened.has_opened()) << opened.ShortDebugString();
  EXPECT_TRUE(opened.opened().resumed());
  v1::SessionResponse got = resumed.Call(req::Get("/a"));
  ASSERT_TRUE(got.has_get()) << got.ShortDebugString();
  EXPECT_EQ(got.get().stat().ephemeral_owner(), id);
}

}  // namespace
}  // namespace confab
