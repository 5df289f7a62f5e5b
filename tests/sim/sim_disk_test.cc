// The simulated disk: what survives a crash, what an fsync covers, and the LogView it gives the
// core across truncation and compaction.
#include "tests/sim/sim_disk.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace confab::sim {
namespace {

internal::LogEntry Entry(Zxid zxid) {
  internal::LogEntry entry;
  entry.set_zxid(zxid.ToInt());
  entry.set_payload(zxid.ToString());
  return entry;
}

void AppendAll(SimDisk& disk, const std::vector<Zxid>& zxids) {
  for (Zxid zxid : zxids) ASSERT_TRUE(disk.Append(Entry(zxid)).ok()) << zxid.ToString();
}

// A tree at `zxid` holding one node, as a snapshot image.
std::shared_ptr<const TreeImage> ImageAt(Zxid zxid) {
  tree::DataTree tree;
  internal::Txn txn;
  txn.mutable_create()->set_path("/a");
  txn.mutable_create()->set_data("x");
  internal::TxnResult result;
  std::vector<tree::WatchTrigger> triggers;
  tree.Apply(zxid, txn, &result, &triggers);
  return std::make_shared<const TreeImage>(CaptureTree(tree));
}

TEST(SimDiskTest, AppendsAreDurableOnlyOnceASyncThatBeganAfterThemCompletes) {
  SimDisk disk;
  AppendAll(disk, {Zxid(1, 1), Zxid(1, 2)});
  EXPECT_EQ(disk.DurableZxid(), Zxid());
  const uint64_t sync = disk.BeginSync();
  AppendAll(disk, {Zxid(1, 3)});
  EXPECT_EQ(disk.CompleteSync(sync), Zxid(1, 2));
  EXPECT_TRUE(disk.HasUnsynced());
  EXPECT_EQ(disk.CompleteSync(disk.BeginSync()), Zxid(1, 3));
  EXPECT_FALSE(disk.HasUnsynced());
}

TEST(SimDiskTest, RefusesAGap) {
  SimDisk disk;
  AppendAll(disk, {Zxid(1, 1)});
  EXPECT_FALSE(disk.Append(Entry(Zxid(1, 3))).ok());
  EXPECT_FALSE(disk.Append(Entry(Zxid(2, 2))).ok());
  EXPECT_TRUE(disk.Append(Entry(Zxid(2, 1))).ok());
}

TEST(SimDiskTest, ACrashKeepsTheSyncedPrefixAndAtMostSomeOfTheRest) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SimDisk disk;
    disk.WriteAcceptedEpoch(2);
    disk.WriteCurrentEpoch(1);
    AppendAll(disk, {Zxid(1, 1), Zxid(1, 2)});
    disk.CompleteSync(disk.BeginSync());
    AppendAll(disk, {Zxid(1, 3), Zxid(1, 4), Zxid(1, 5)});
    std::mt19937_64 rng(seed);
    const SimDisk::CrashLoss loss = disk.Crash(rng);
    EXPECT_EQ(loss.lost + loss.survived, 3u);
    EXPECT_EQ(disk.LastZxid(), Zxid(1, static_cast<uint32_t>(2 + loss.survived)));
    EXPECT_EQ(disk.DurableZxid(), disk.LastZxid());  // recovery syncs what it read
    EXPECT_EQ(disk.epochs().accepted_epoch, 2u);
    EXPECT_EQ(disk.epochs().current_epoch, 1u);
  }
}

TEST(SimDiskTest, TruncationIsDurableAndShrinksTheDurablePrefix) {
  SimDisk disk;
  AppendAll(disk, {Zxid(1, 1), Zxid(1, 2), Zxid(1, 3)});
  const uint64_t sync = disk.BeginSync();
  ASSERT_TRUE(disk.TruncateAfter(Zxid(1, 1)).ok());
  AppendAll(disk, {Zxid(2, 1)});
  // The sync began before 2:1 was written: it covers only what is left of the old entries.
  EXPECT_EQ(disk.CompleteSync(sync), Zxid(1, 1));
  std::mt19937_64 rng(1);
  disk.Crash(rng);
  EXPECT_LE(disk.LastZxid(), Zxid(2, 1));
  EXPECT_FALSE(disk.Contains(Zxid(1, 2)));
}

TEST(SimDiskTest, ASnapshotCompactsTheLogBeforeIt) {
  SimDisk disk;
  AppendAll(disk, {Zxid(1, 1), Zxid(1, 2), Zxid(1, 3)});
  EXPECT_FALSE(disk.TakeSnapshot(ImageAt(Zxid(1, 2))).ok());  // not durable yet
  disk.CompleteSync(disk.BeginSync());
  ASSERT_TRUE(disk.TakeSnapshot(ImageAt(Zxid(1, 2))).ok());
  EXPECT_EQ(disk.SnapshotZxid(), Zxid(1, 2));
  EXPECT_EQ(disk.entry_count(), 1u);
  EXPECT_TRUE(disk.Contains(Zxid(1, 2)));
  EXPECT_FALSE(disk.Contains(Zxid(1, 1)));
  EXPECT_EQ(disk.LastAtOrBefore(Zxid(1, 2)), Zxid(1, 2));
  EXPECT_EQ(disk.LastAtOrBefore(Zxid(1, 1)), Zxid());
  EXPECT_EQ(disk.LastAtOrBefore(Zxid(3, 7)), Zxid(1, 3));
  ASSERT_EQ(disk.EntriesAfter(Zxid(1, 2), 10).size(), 1u);
  EXPECT_FALSE(disk.TruncateAfter(Zxid(1, 1)).ok());
}

TEST(SimDiskTest, AnInstalledSnapshotReplacesTheLog) {
  SimDisk disk;
  AppendAll(disk, {Zxid(1, 1), Zxid(1, 2)});
  disk.InstallSnapshot(ImageAt(Zxid(3, 9)));
  EXPECT_EQ(disk.LastZxid(), Zxid(3, 9));
  EXPECT_EQ(disk.DurableZxid(), Zxid(3, 9));
  EXPECT_TRUE(disk.Append(Entry(Zxid(3, 10))).ok());
}

TEST(SimDiskTest, ATreeImageLoadsBackToTheSameDigest) {
  std::shared_ptr<const TreeImage> image = ImageAt(Zxid(1, 1));
  absl::StatusOr<std::unique_ptr<tree::DataTree>> loaded = LoadTree(*image);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->digest(), image->digest);
  EXPECT_EQ((*loaded)->last_applied(), Zxid(1, 1));
  EXPECT_TRUE((*loaded)->Get("/a").ok());
}

}  // namespace
}  // namespace confab::sim
