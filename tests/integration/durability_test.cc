// Acknowledged writes survive kill -9 of the server, with the same stat; a second server on the
// same data directory is refused; SIGTERM drains and exits cleanly.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "confab/testing/local_ensemble.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "test_server.h"

namespace confab {
namespace {

std::unique_ptr<v1::Coordination::Stub> Connect(const std::string& endpoint) {
  return v1::Coordination::NewStub(
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
}

bool SameStat(const v1::Stat& a, const v1::Stat& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

struct Acked {
  v1::Stat stat;          // from the last acknowledged write of the path
  bool set_sent = false;  // a Set was sent (maybe applied without an acknowledgement)
  bool set_acked = false;
};

TEST(DurabilityTest, AcknowledgedWritesSurviveKill9WithTheirStat) {
  // Small snapshot interval so recovery uses a snapshot plus the log tail.
  auto server = itest::StartConfabd({"--snapshot-every-txns=700"});
  ASSERT_NE(server, nullptr);
  {
    auto stub = Connect(server->Endpoint(0));
    grpc::ClientContext context;
    v1::CreateRequest request;
    request.set_path("/load");
    v1::CreateResponse response;
    ASSERT_TRUE(stub->Create(&context, request, &response).ok());
  }

  absl::Mutex mu;
  std::map<std::string, Acked> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> ack_count{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 6; ++t) {
    writers.emplace_back([&, t] {
      auto stub = Connect(server->Endpoint(0));
      for (int i = 0; i < 100000 && !stop.load(); ++i) {
        std::string path = absl::StrCat("/load/w", t, "-", i);
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        v1::CreateRequest create;
        create.set_path(path);
        create.set_data(std::string(64 + i % 200, static_cast<char>('a' + t)));
        v1::CreateResponse created;
        if (!stub->Create(&context, create, &created).ok()) return;
        {
          absl::MutexLock lock(&mu);
          acked[path].stat = created.stat();
        }
        ++ack_count;
        if (i % 3 != 0) continue;
        grpc::ClientContext set_context;
        set_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        v1::SetRequest set;
        set.set_path(path);
        set.set_data(absl::StrCat("updated-", i));
        set.set_version(0);
        v1::SetResponse updated;
        {
          absl::MutexLock lock(&mu);
          acked[path].set_sent = true;
        }
        if (!stub->Set(&set_context, set, &updated).ok()) return;
        absl::MutexLock lock(&mu);
        acked[path].stat = updated.stat();
        acked[path].set_acked = true;
      }
    });
  }
  // Kill while writes are in flight, after enough of them for a snapshot or two.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (ack_count.load() < 2000 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(server->Kill(0).ok());
  stop = true;
  for (auto& writer : writers) writer.join();
  ASSERT_GE(ack_count.load(), 2000);

  ASSERT_TRUE(server->Restart(0).ok());
  // Recovery used a snapshot written while the writers ran, plus the log after it.
  std::ifstream log(server->LogFile(0));
  std::string log_text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(log_text.find("snapshot: " + server->DataDir(0) + "/snap/snapshot."), std::string::npos)
      << log_text;
  auto stub = Connect(server->Endpoint(0));
  absl::MutexLock lock(&mu);
  int checked = 0;
  for (const auto& [path, expect] : acked) {
    grpc::ClientContext context;
    v1::GetRequest get;
    get.set_path(path);
    v1::GetResponse got;
    grpc::Status status = stub->Get(&context, get, &got);
    ASSERT_TRUE(status.ok()) << path << " was acknowledged but is gone: " << status.error_message();
    if (expect.set_sent && !expect.set_acked) {
      // The Set may or may not have become durable before the kill; either outcome is whole.
      EXPECT_TRUE(SameStat(got.stat(), expect.stat) || got.stat().version() == 1) << path;
    } else {
      EXPECT_TRUE(SameStat(got.stat(), expect.stat))
          << path << "\n got:  " << got.stat().ShortDebugString()
          << "\n want: " << expect.stat.ShortDebugString();
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(acked.size()));
}

TEST(DurabilityTest, TornLogTailIsTruncatedAndCorruptionBeforeItIsRefused) {
  auto server = itest::StartConfabd({"--snapshot-every-txns=0"});
  ASSERT_NE(server, nullptr);
  {
    auto stub = Connect(server->Endpoint(0));
    for (int i = 0; i < 20; ++i) {
      grpc::ClientContext context;
      v1::CreateRequest request;
      request.set_path(absl::StrCat("/n", i));
      request.set_data(std::string(100, 'x'));
      v1::CreateResponse response;
      ASSERT_TRUE(stub->Create(&context, request, &response).ok());
    }
  }
  ASSERT_TRUE(server->Kill(0).ok());
  std::string log_dir = server->DataDir(0) + "/log";
  std::string segment;
  for (const auto& entry : std::filesystem::directory_iterator(log_dir)) {
    segment = entry.path().string();
  }
  ASSERT_FALSE(segment.empty());

  // A torn tail (half a record appended) is cut away: the server starts with all 20 nodes.
  {
    std::ofstream out(segment, std::ios::app | std::ios::binary);
    out << std::string("\x40\x00\x00\x00garbage", 11);
  }
  ASSERT_TRUE(server->Restart(0).ok());
  {
    auto stub = Connect(server->Endpoint(0));
    grpc::ClientContext context;
    v1::GetChildrenRequest request;
    request.set_path("/");
    v1::GetChildrenResponse response;
    ASSERT_TRUE(stub->GetChildren(&context, request, &response).ok());
    EXPECT_EQ(response.children_size(), 20);
  }
  ASSERT_TRUE(server->Stop(0).ok());
  std::ifstream log(server->LogFile(0));
  std::string log_text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(log_text.find("truncated a torn tail"), std::string::npos) << log_text;

  // A flipped byte in the middle of the log is refused, naming the file.
  {
    std::fstream file(segment, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(std::filesystem::file_size(segment) / 2));
    file.put('\xff');
  }
  absl::Status restarted = server->Restart(0);
  EXPECT_FALSE(restarted.ok());
  std::ifstream log2(server->LogFile(0));
  std::string log2_text((std::istreambuf_iterator<char>(log2)), std::istreambuf_iterator<char>());
  EXPECT_NE(log2_text.find("refusing to start"), std::string::npos) << log2_text;
  EXPECT_NE(log2_text.find(segment), std::string::npos) << log2_text;
}

}  // namespace
}  // namespace confab
