// Replica standalone, in process: writes are answered in commit order whichever thread applies
// them (a small commit found idle is applied on the replicator's thread, the rest on the apply
// thread), and every answered write is in the tree.
#include "server/pipeline/replica.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/pipeline/admission.h"
#include "tests/unit/storage/test_util.h"

namespace confab::pipeline {
namespace {

using storage::testing::TempDir;

std::unique_ptr<Replica> OpenStandalone(const std::string& dir) {
  ReplicaOptions options;
  options.data_dir = dir;
  options.log.preallocate_bytes = 0;
  absl::StatusOr<std::unique_ptr<Replica>> replica = Replica::Open(options);
  EXPECT_TRUE(replica.ok()) << replica.status();
  return replica.ok() ? *std::move(replica) : nullptr;
}

internal::Txn Set(const std::string& path, const std::string& data, int64_t now_ms) {
  v1::SetRequest request;
  request.set_path(path);
  request.set_data(data);
  absl::StatusOr<internal::Txn> txn = AdmitSet(std::move(request), SessionId(), now_ms, Limits());
  EXPECT_TRUE(txn.ok()) << txn.status();
  return txn.ok() ? *std::move(txn) : internal::Txn();
}

internal::Txn Create(const std::string& path, int64_t now_ms) {
  v1::CreateRequest request;
  request.set_path(path);
  absl::StatusOr<internal::Txn> txn =
      AdmitCreate(std::move(request), SessionId(), now_ms, Limits());
  EXPECT_TRUE(txn.ok()) << txn.status();
  return txn.ok() ? *std::move(txn) : internal::Txn();
}

// Every answer, in the order the answers ran.
struct Answers {
  absl::Mutex mu;
  std::vector<int64_t> zxids ABSL_GUARDED_BY(mu);
  int errors ABSL_GUARDED_BY(mu) = 0;

  // Now and then an answer is slow (as a reply that takes a while to hand to gRPC): commits that
  // arrive meanwhile must wait behind it, not be applied around it.
  WriteDone Record() {
    return [this](internal::TxnResult result) {
      bool slow;
      {
        absl::MutexLock lock(&mu);
        if (result.has_error() && result.error().code() != v1::OK) ++errors;
        zxids.push_back(result.zxid());
        slow = zxids.size() % 64 == 0;
      }
      if (slow) absl::SleepFor(absl::Milliseconds(2));
    };
  }
  bool WaitFor(size_t count) {
    absl::MutexLock lock(&mu);
    auto enough = [this, count]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return zxids.size() >= count; };
    return mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }
};

TEST(ReplicaTest, AnswersRunInCommitOrderForLoneAndConcurrentWrites) {
  TempDir dir;
  std::unique_ptr<Replica> replica = OpenStandalone(dir.path());
  ASSERT_NE(replica, nullptr);
  Answers answers;
  constexpr int kKeys = 4;
  for (int k = 0; k < kKeys; ++k) {
    replica->Submit(Create(absl::StrCat("/k", k), replica->NowMs()), answers.Record());
  }
  ASSERT_TRUE(answers.WaitFor(kKeys));

  // Lone writes, one at a time: each commit is small and finds the apply thread idle.
  constexpr int kLone = 50;
  for (int i = 0; i < kLone; ++i) {
    replica->Submit(Set("/k0", absl::StrCat("lone ", i), replica->NowMs()), answers.Record());
    ASSERT_TRUE(answers.WaitFor(kKeys + i + 1));
  }
  // Then bursts (large commits, for the apply thread) beside lone writes that wait for each
  // answer (small commits, which must queue behind a batch being applied, not overtake it).
  constexpr int kBursts = 40;
  constexpr int kBurstWrites = 25;
  constexpr int kPaced = 300;
  std::thread bursts([&] {
    for (int b = 0; b < kBursts; ++b) {
      for (int i = 0; i < kBurstWrites; ++i) {
        replica->Submit(Set("/k1", absl::StrCat(b, " ", i), replica->NowMs()), answers.Record());
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  });
  std::thread paced([&] {
    for (int i = 0; i < kPaced; ++i) {
      absl::Notification answered;
      WriteDone record = answers.Record();
      replica->Submit(Set("/k2", absl::StrCat("paced ", i), replica->NowMs()),
                      [&answered, record = std::move(record)](internal::TxnResult result) mutable {
                        std::move(record)(std::move(result));
                        answered.Notify();
                      });
      answered.WaitForNotification();
    }
  });
  bursts.join();
  paced.join();
  const size_t total = kKeys + kLone + kBursts * kBurstWrites + kPaced;
  ASSERT_TRUE(answers.WaitFor(total));

  absl::MutexLock lock(&answers.mu);
  EXPECT_EQ(answers.errors, 0);
  ASSERT_EQ(answers.zxids.size(), total);
  for (size_t i = 1; i < answers.zxids.size(); ++i) {
    ASSERT_LT(answers.zxids[i - 1], answers.zxids[i]) << "answer " << i << " out of commit order";
  }
  EXPECT_EQ(replica->last_applied().ToInt(), answers.zxids.back());
  EXPECT_EQ(replica->stats().nodes, 1 + kKeys);  // the root and the keys
}

}  // namespace
}  // namespace confab::pipeline
