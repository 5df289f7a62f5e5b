// confabd as a process: one server per data directory, SIGTERM drains and exits 0, bad flags
// and config files are a clear message and a non-zero exit, never a crash.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "confab/testing/local_ensemble.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "test_server.h"

namespace confab {
namespace {

std::unique_ptr<v1::Coordination::Stub> Connect(const std::string& endpoint) {
  return v1::Coordination::NewStub(
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
}

// Runs confabd with `args` to completion (it is expected to refuse to start).
int RunConfabd(const std::string& args, std::string* output) {
  std::string command = absl::StrCat(CONFABD_PATH, " ", args, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[512];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) *output += buffer;
  return pclose(pipe);
}

TEST(ConfabdProcessTest, SecondServerOnTheSameDataDirIsRefused) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  std::string output;
  int status =
      RunConfabd(absl::StrCat("--data-dir=", server->DataDir(0), " --listen=127.0.0.1:0"), &output);
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("in use by another confabd"), std::string::npos) << output;
}

TEST(ConfabdProcessTest, SigtermDrainsAndExitsCleanly) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->Endpoint(0));
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext context;
    v1::CreateRequest request;
    request.set_path(absl::StrCat("/n", i));
    v1::CreateResponse response;
    ASSERT_TRUE(stub->Create(&context, request, &response).ok());
  }
  // The client stays connected: shutdown must not wait for it to go away.
  absl::Time stop_start = absl::Now();
  ASSERT_TRUE(server->Stop(0).ok());  // exit code 0 within the bound
  EXPECT_LT(absl::Now() - stop_start, absl::Seconds(3));
  ASSERT_TRUE(server->Restart(0).ok());
  stub = Connect(server->Endpoint(0));
  grpc::ClientContext context;
  v1::GetChildrenRequest request;
  request.set_path("/");
  v1::GetChildrenResponse response;
  ASSERT_TRUE(stub->GetChildren(&context, request, &response).ok());
  EXPECT_EQ(response.children_size(), 50);
}

TEST(ConfabdProcessTest, BadFlagsAreAClearErrorNotACrash) {
  for (const char* flags : {"--session-timeout-min-ms=0", "--no-such-flag=1", "--max-data-bytes=0",
                            "--data-dir=/proc/no/such/dir"}) {
    std::string output;
    int status = RunConfabd(absl::StrCat(flags, " --listen=127.0.0.1:0"), &output);
    ASSERT_TRUE(WIFEXITED(status)) << flags << ": " << output;
    EXPECT_NE(WEXITSTATUS(status), 0) << flags;
    EXPECT_FALSE(output.empty()) << flags;
  }
}

TEST(ConfabdProcessTest, ConfigFileSetsFlagsAndTheCommandLineWins) {
  std::string dir = ::testing::TempDir() + "confab-config-test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    std::ofstream config(dir + "/confabd.json");
    config << R"({"data-dir": ")" << dir << R"(/data", "max_data_bytes": 10, "listen": "bad"})";
  }
  // "listen" from the file is bad, the command line's wins; max_data_bytes from the file holds.
  auto server = itest::StartConfabd({"--config=" + dir + "/confabd.json"});
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->Endpoint(0));
  grpc::ClientContext context;
  v1::CreateRequest request;
  request.set_path("/big");
  request.set_data(std::string(11, 'x'));
  v1::CreateResponse response;
  grpc::Status status = stub->Create(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("the limit is 10"), std::string::npos)
      << status.error_message();
  std::filesystem::remove_all(dir);
}

TEST(ConfabdProcessTest, BadConfigFilesAreClearErrors) {
  std::string dir = ::testing::TempDir() + "confab-bad-config";
  std::filesystem::create_directories(dir);
  struct Case {
    std::string content;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{{R"({"no_such_flag": 1})", "unknown key \"no_such_flag\""},
                                         {R"({"tick_ms": "many"})", "bad value"},
                                         {"not json", "is not valid JSON"},
                                         {"[1]", "must hold a JSON object"}}) {
    {
      std::ofstream config(dir + "/c.json");
      config << c.content;
    }
    std::string output;
    int status = RunConfabd(
        absl::StrCat("--config=", dir, "/c.json --data-dir=", dir, "/data --listen=127.0.0.1:0"),
        &output);
    ASSERT_TRUE(WIFEXITED(status)) << output;
    EXPECT_NE(WEXITSTATUS(status), 0) << c.content;
    EXPECT_NE(output.find(c.message), std::string::npos) << c.content << ": " << output;
  }
  std::string output;
  int status = RunConfabd("--config=/no/such/file.json", &output);
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(output.find("cannot read config file /no/such/file.json"), std::string::npos) << output;
  std::filesystem::remove_all(dir);
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// Generic gRPC tooling finds its way: health checking answers SERVING, and server reflection
// lists the Coordination service. Spoken with a generic stub and hand-encoded messages, as a
// tool that knows nothing of Confab would.
TEST(ConfabdProcessTest, HealthCheckingAndReflection) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  auto channel = grpc::CreateChannel(server->Endpoint(0), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);

  // grpc.health.v1.HealthCheckRequest{} -> HealthCheckResponse{status: SERVING (1)}.
  grpc::Slice empty("", 0);
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext health_context;
  absl::Notification health_done;
  grpc::Status health_status;
  stub.UnaryCall(&health_context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status status) {
                   health_status = std::move(status);
                   health_done.Notify();
                 });
  ASSERT_TRUE(health_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(health_status.ok()) << health_status.error_message();
  std::string bytes = Bytes(response);
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));

  // grpc.reflection.v1alpha.ServerReflectionRequest{list_services: ""} (field 7).
  grpc::ClientContext reflection_context;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &reflection_context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  auto next = [&](intptr_t expect) {
    ASSERT_EQ(cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + std::chrono::seconds(10)),
              grpc::CompletionQueue::GOT_EVENT);
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), expect);
    EXPECT_TRUE(ok);
  };
  call->StartCall(reinterpret_cast<void*>(1));
  next(1);
  grpc::Slice list(std::string("\x3a\x00", 2));
  grpc::ByteBuffer list_request(&list, 1);
  call->Write(list_request, reinterpret_cast<void*>(2));
  next(2);
  grpc::ByteBuffer list_response;
  call->Read(&list_response, reinterpret_cast<void*>(3));
  next(3);
  bytes = Bytes(list_response);
  EXPECT_NE(bytes.find("confab.v1.Coordination"), std::string::npos);
  reflection_context.TryCancel();
  call->Finish(&health_status, reinterpret_cast<void*>(4));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST(ConfabdProcessTest, StatusDescribesTheStandaloneMember) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->Endpoint(0));
  v1::CreateResponse created;
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    v1::CreateRequest request;
    request.set_path(absl::StrCat("/s", i));
    ASSERT_TRUE(stub->Create(&context, request, &created).ok());
  }
  grpc::ClientContext context;
  v1::StatusResponse status;
  ASSERT_TRUE(stub->Status(&context, v1::StatusRequest(), &status).ok());
  EXPECT_EQ(status.role(), v1::STANDALONE);
  EXPECT_TRUE(status.serving());
  EXPECT_EQ(status.last_zxid(), created.zxid());
  EXPECT_EQ(status.epoch(), static_cast<uint32_t>(created.zxid() >> 32));
  EXPECT_EQ(status.node_count(), 4u) << "the root and three nodes";
  EXPECT_GE(status.log_records(), 3u);
  EXPECT_NE(status.digest(), 0u);
  EXPECT_NE(status.version(), "");
  ASSERT_EQ(status.members_size(), 1);
  EXPECT_EQ(status.members(0).address(), server->Endpoint(0));
}

TEST(ConfabdProcessTest, VersionAndHelp) {
  std::string output;
  int status = RunConfabd("--version", &output);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(output.find("confabd 0."), std::string::npos) << output;
  output.clear();
  RunConfabd("--help", &output);
  EXPECT_NE(output.find("--data_dir"), std::string::npos) << output;
}

}  // namespace
}  // namespace confab
