#include "server/sessions/session_tracker.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace confab::sessions {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr SessionId kA(0x1a);
constexpr SessionId kB(0x2b);
constexpr SessionId kC(0x3c);

TEST(SessionTrackerTest, DeadlinesRoundUpToTheNextTick) {
  SessionTracker tracker(1000);
  tracker.Add(kA, 2500, 10'000);  // 12'500 -> 13'000
  tracker.Add(kB, 3000, 10'000);  // 13'000 is a boundary: the next one, 14'000, as ZooKeeper
  EXPECT_THAT(tracker.TakeExpired(12'999), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(13'000), ElementsAre(kA));
  EXPECT_THAT(tracker.TakeExpired(13'999), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(14'000), ElementsAre(kB));
}

TEST(SessionTrackerTest, TouchPushesTheDeadlineOutAndNeverIn) {
  SessionTracker tracker(100);
  tracker.Add(kA, 1000, 0);             // deadline 1100
  EXPECT_TRUE(tracker.Touch(kA, 450));  // 1450 -> 1500
  EXPECT_THAT(tracker.TakeExpired(1499), IsEmpty());
  EXPECT_TRUE(tracker.Touch(kA, 10));  // an earlier clock does not pull it back to 1100
  EXPECT_THAT(tracker.TakeExpired(1499), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(1500), ElementsAre(kA));
  EXPECT_FALSE(tracker.Touch(kB, 10));
}

TEST(SessionTrackerTest, ExpiredSessionsAreReturnedOnceSortedAndStayTracked) {
  SessionTracker tracker(10);
  tracker.Add(kC, 100, 0);
  tracker.Add(kA, 200, 0);
  tracker.Add(kB, 50, 0);
  EXPECT_THAT(tracker.TakeExpired(1000), ElementsAre(kA, kB, kC));
  EXPECT_THAT(tracker.TakeExpired(2000), IsEmpty());
  EXPECT_TRUE(tracker.Contains(kA));
  EXPECT_EQ(tracker.size(), 3u);

  // Touched after expiring (the close is not applied yet): tracked again with a new deadline.
  EXPECT_TRUE(tracker.Touch(kB, 2000));  // 2050 -> 2060
  EXPECT_THAT(tracker.TakeExpired(2059), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(2060), ElementsAre(kB));

  tracker.Remove(kA);
  tracker.Remove(kB);
  EXPECT_FALSE(tracker.Contains(kA));
  EXPECT_EQ(tracker.size(), 1u);
}

TEST(SessionTrackerTest, RemovedSessionsNeverExpire) {
  SessionTracker tracker(10);
  tracker.Add(kA, 100, 0);
  tracker.Add(kB, 100, 0);
  tracker.Remove(kA);
  tracker.Remove(kC);  // unknown: nothing to do
  EXPECT_FALSE(tracker.Contains(kA));
  EXPECT_FALSE(tracker.Touch(kA, 50));
  EXPECT_THAT(tracker.TakeExpired(1000), ElementsAre(kB));
  EXPECT_EQ(tracker.size(), 1u);
}

TEST(SessionTrackerTest, AddAgainRetracksWithTheNewTimeout) {
  SessionTracker tracker(10);
  tracker.Add(kA, 100, 0);   // 110
  tracker.Add(kA, 500, 50);  // 560
  EXPECT_EQ(tracker.size(), 1u);
  EXPECT_THAT(tracker.TakeExpired(559), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(560), ElementsAre(kA));
  tracker.Add(kA, 100, 1000);  // re-tracked after expiring: 1110
  EXPECT_THAT(tracker.TakeExpired(1109), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(1110), ElementsAre(kA));
  EXPECT_TRUE(tracker.Touch(kA, 2000));  // 2100 -> 2110
  EXPECT_THAT(tracker.TakeExpired(2110), ElementsAre(kA));
}

TEST(SessionTrackerTest, ManySessionsExpireInBatchesPerTick) {
  SessionTracker tracker(100);
  std::vector<SessionId> even;
  std::vector<SessionId> odd;
  for (int64_t i = 50; i >= 1; --i) {
    // 1000 and 1050 both round to 1100; 1100 to 1200.
    const int32_t timeout_ms = i % 2 == 0 ? (i % 4 == 0 ? 1000 : 1050) : 1100;
    tracker.Add(SessionId(i), timeout_ms, 0);
  }
  for (int64_t i = 1; i <= 50; ++i) (i % 2 == 0 ? even : odd).push_back(SessionId(i));
  EXPECT_EQ(tracker.TakeExpired(1199), even);
  EXPECT_EQ(tracker.TakeExpired(1199).size(), 0u);
  EXPECT_EQ(tracker.TakeExpired(5000), odd);
  EXPECT_EQ(tracker.size(), 50u);
}

TEST(SessionTrackerTest, AfterAStallEverySessionGetsAFullTimeoutButExpiringOnesStayExpiring) {
  SessionTracker tracker(100);
  tracker.Add(kA, 1000, 0);  // deadline 1100
  tracker.Add(kB, 1000, 0);
  tracker.Add(kC, 500, 0);                                 // deadline 600
  EXPECT_THAT(tracker.TakeExpired(700), ElementsAre(kC));  // its close is being proposed
  // The server was stopped from 700 to 5000: A and B would all be overdue.
  tracker.TouchAll(5000);
  EXPECT_THAT(tracker.TakeExpired(5000), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(6099), IsEmpty());
  EXPECT_THAT(tracker.TakeExpired(6100), ElementsAre(kA, kB));
}

}  // namespace
}  // namespace confab::sessions
