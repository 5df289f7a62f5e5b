// Service registration through faults, against a real confabd: a create whose reply is lost is
// found again by its protected prefix (no duplicate), and a KeptRegistration is registered again
// under a new session after its session is lost, whether the server closed it or the client gave
// up on a silent server (then the node the old session left behind is replaced, not duplicated).
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client_faults.h"
#include "confab/client.h"
#include "confab/service_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_client.h"
#include "test_server.h"

namespace confab {
namespace {

using itest::ConnectTo;
using itest::OptionsFor;
using itest::WaitFor;

constexpr absl::Duration kWait = absl::Seconds(20);

// The paths KeptRegistration reported through on_renewed.
class Renewals {
 public:
  RenewedCallback Callback() {
    return [this](const std::string& path) {
      absl::MutexLock lock(&mu_);
      paths_.push_back(path);
    };
  }
  std::vector<std::string> Paths() const {
    absl::MutexLock lock(&mu_);
    return paths_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> paths_ ABSL_GUARDED_BY(mu_);
};

// The owning session of the node at `path` (0 when it does not exist).
int64_t OwnerOf(Client& observer, const std::string& path) {
  absl::StatusOr<std::optional<Stat>> stat = observer.Exists(path);
  EXPECT_TRUE(stat.ok()) << stat.status();
  return stat.ok() && stat->has_value() ? (*stat)->ephemeral_owner : 0;
}

// What Register does (ServiceRegistry::Register creates its member node with CreateProtected).
TEST(RegistrationTest, AProtectedCreateWhoseReplyIsLostIsFoundInsteadOfRepeated) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  itest::TcpProxy proxy(itest::PortOf(server->Endpoint(0)));
  auto client = ConnectTo(proxy.Endpoint());
  auto observer = ConnectTo(server->Endpoint(0));
  ASSERT_TRUE(client && observer);
  const std::string service_path = "/services/api";
  ASSERT_TRUE(EnsurePath(*observer, service_path).ok());

  // The create reaches the server and is applied; its reply never comes back.
  proxy.MuteReplies(true);
  std::optional<absl::StatusOr<Created>> created;
  std::thread creating([&] {
    created.emplace(
        CreateProtected(*client, service_path, "member-", "{}", CreateMode::kEphemeralSequential));
  });
  std::vector<std::string> names;
  EXPECT_TRUE(WaitFor(
      [&] {
        names = observer->GetChildren(service_path).value_or(Children{}).names;
        return !names.empty();
      },
      kWait));
  // The connection breaks: the create fails as "outcome unknown", and is not simply repeated.
  proxy.Cut();
  proxy.MuteReplies(false);
  proxy.Restore();
  creating.join();
  ASSERT_EQ(names.size(), 1u);
  ASSERT_TRUE(created.has_value());
  ASSERT_TRUE(created->ok()) << created->status();
  EXPECT_EQ((*created)->path, JoinPath(service_path, names[0]));
  EXPECT_EQ(observer->GetChildren(service_path)->names, names) << "no duplicate";
  EXPECT_EQ(OwnerOf(*observer, (*created)->path), client->session_id().value());
}

TEST(RegistrationTest, AKeptRegistrationIsRenewedAfterTheServerClosesItsSession) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  auto observer = ConnectTo(server->Endpoint(0));
  ASSERT_TRUE(observer);
  ServiceRegistry observed(observer.get(), "/superset/nodes");
  Renewals renewals;
  RegisterOptions options;
  options.address = "web-1";
  auto kept =
      KeptRegistration::Start(OptionsFor(server->Endpoint(0)), "/superset/nodes", "dashboard",
                              {{"name", "web-1"}}, options, renewals.Callback());
  ASSERT_TRUE(kept.ok()) << kept.status();
  const std::string first_path = (*kept)->path();
  const int64_t first_session = OwnerOf(*observer, first_path);
  ASSERT_NE(first_session, 0);

  itest::CloseSessionElsewhere(server->Endpoint(0), SessionId(first_session));
  ASSERT_TRUE(WaitFor([&] { return !renewals.Paths().empty(); }, kWait));
  const std::string renewed_path = renewals.Paths()[0];
  EXPECT_NE(renewed_path, first_path);
  EXPECT_EQ((*kept)->path(), renewed_path);
  const int64_t renewed_session = OwnerOf(*observer, renewed_path);
  EXPECT_NE(renewed_session, 0);
  EXPECT_NE(renewed_session, first_session) << "a new session";
  absl::StatusOr<std::vector<ServiceMember>> members = observed.Members("dashboard");
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), 1u);
  EXPECT_EQ((*members)[0].path, renewed_path);
  EXPECT_EQ((*members)[0].id, (*kept)->id()) << "the same member";
  EXPECT_EQ((*members)[0].address, "web-1");
  EXPECT_EQ((*members)[0].payload, nlohmann::json({{"name", "web-1"}}));

  // Deregistering closes its session: the member is gone at once.
  kept->reset();
  members = observed.Members("dashboard");
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_TRUE(members->empty());
  EXPECT_EQ(renewals.Paths().size(), 1u);
}

// The client declares LOST on its own (nothing heard for the session timeout while the server is
// stopped); the server, back, still holds the old session and its node for a while. The renewal
// replaces that node: one member, owned by the new session.
TEST(RegistrationTest, AKeptRegistrationReplacesTheNodeItsLostSessionLeftBehind) {
  auto server = itest::StartConfabd({"--session-timeout-min-ms=500"});
  ASSERT_NE(server, nullptr);
  Renewals renewals;
  absl::Mutex states_mu;
  std::vector<ConnectionState> states;
  ClientOptions own = OptionsFor(server->Endpoint(0));
  own.session_timeout = absl::Seconds(1);
  own.connect_timeout = absl::Seconds(2);
  own.state_listener = [&](ConnectionState s) {
    absl::MutexLock lock(&states_mu);
    states.push_back(s);
  };
  auto kept = KeptRegistration::Start(std::move(own), "/services", "worker", nullptr, {},
                                      renewals.Callback());
  ASSERT_TRUE(kept.ok()) << kept.status();
  const std::string first_path = (*kept)->path();

  ASSERT_TRUE(server->Pause(0).ok());
  const bool lost = WaitFor(
      [&] {
        absl::MutexLock lock(&states_mu);
        return std::find(states.begin(), states.end(), ConnectionState::kLost) != states.end();
      },
      kWait);
  ASSERT_TRUE(server->Resume(0).ok());
  ASSERT_TRUE(lost);
  ASSERT_TRUE(WaitFor([&] { return !renewals.Paths().empty(); }, kWait));

  auto observer = ConnectTo(server->Endpoint(0));
  ASSERT_TRUE(observer);
  const std::string renewed_path = renewals.Paths()[0];
  EXPECT_NE(renewed_path, first_path);
  EXPECT_FALSE(observer->Exists(first_path)->has_value()) << "the old session's node is gone";
  absl::StatusOr<std::vector<ServiceMember>> members =
      ServiceRegistry(observer.get()).Members("worker");
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), 1u) << "no duplicate";
  EXPECT_EQ((*members)[0].path, renewed_path);
  EXPECT_EQ((*members)[0].id, (*kept)->id());
  const int64_t owner = OwnerOf(*observer, renewed_path);
  EXPECT_NE(owner, 0);
  {
    absl::MutexLock lock(&states_mu);
    EXPECT_EQ(states.back(), ConnectionState::kConnected) << "a new session";
  }
}

TEST(RegistrationTest, AKeptRegistrationThatCannotRegisterInTimeFails) {
  ClientOptions nowhere = OptionsFor("127.0.0.1:1");  // nothing listens there
  nowhere.connect_timeout = absl::Milliseconds(200);
  RegisterOptions options;
  options.timeout = absl::Milliseconds(500);
  auto kept = KeptRegistration::Start(std::move(nowhere), "/services", "api", nullptr, options);
  EXPECT_EQ(kept.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(kept.status().message()), ::testing::HasSubstr("not registered"));
}

}  // namespace
}  // namespace confab
