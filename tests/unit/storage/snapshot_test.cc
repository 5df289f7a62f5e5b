#include "server/storage/snapshot.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/storage/test_util.h"
#include "tests/unit/tree/tree_test_util.h"

namespace confab::storage {
namespace {

using ::testing::ElementsAre;
using testing::FileSize;
using testing::FlipByte;
using ::testing::HasSubstr;
using testing::ListDir;
using testing::TempDir;
using testing::TruncateFile;
using tree::DataTree;

// Applies transactions at consecutive zxids of epoch 1 and remembers them, so that another tree
// can be brought to the state at any zxid.
class History {
 public:
  void Apply(DataTree* tree, internal::Txn txn) {
    txn.set_time_ms(1'000'000 + 10 * static_cast<int64_t>(txns_.size()));
    txns_.push_back(txn);
    internal::TxnResult result;
    std::vector<tree::WatchTrigger> triggers;
    tree->Apply(Zxid(1, static_cast<uint32_t>(txns_.size())), txn, &result, &triggers);
  }
  // Applies to `tree` (at zxid `from`) the recorded transactions up to and including `through`.
  void Replay(DataTree* tree, Zxid from, Zxid through) const {
    for (uint32_t c = from.counter() + 1; c <= through.counter(); ++c) {
      internal::TxnResult result;
      std::vector<tree::WatchTrigger> triggers;
      tree->Apply(Zxid(1, c), txns_[c - 1], &result, &triggers);
    }
  }

 private:
  std::vector<internal::Txn> txns_;
};

// Random transactions over a small namespace with sessions and ephemerals, plus a bulk of nodes
// with 4 KiB of data each so that the snapshot is larger than the writer's buffer.
void BuildTree(DataTree* tree, History* history, tree::RandomTxns* random, int random_txns,
               int bulk_nodes) {
  for (int i = 0; i < random_txns; ++i) history->Apply(tree, random->Next(*tree));
  history->Apply(tree, tree::TxnOf(tree::CreateOp("/bulk", "")));
  for (int i = 0; i < bulk_nodes; ++i) {
    history->Apply(tree,
                   tree::TxnOf(tree::CreateOp(absl::StrFormat("/bulk/n%04d", i),
                                              std::string(4096, static_cast<char>('a' + i % 26)))));
  }
}

// Writes a snapshot of `tree` the way the server does; `between_chunks` runs while the snapshot
// is pinned, between two chunks.
SnapshotInfo WriteSnapshot(DataTree* tree, const std::string& dir,
                           const std::function<void()>& between_chunks = nullptr) {
  tree::SnapshotCursor cursor = tree->BeginSnapshot();
  absl::StatusOr<std::unique_ptr<SnapshotWriter>> writer =
      SnapshotWriter::Create(dir, cursor.zxid(), cursor.digest());
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (const tree::SessionInfo& session : cursor.sessions()) {
    EXPECT_TRUE((*writer)->AddSession(session).ok());
  }
  bool more = true;
  while (more) {
    more = tree->NextSnapshotChunk(
        &cursor, 16, [&](absl::string_view path, const Stat& stat, absl::string_view data) {
          EXPECT_TRUE((*writer)->AddNode(path, stat, data).ok());
        });
    if (between_chunks && more) between_chunks();
  }
  tree->EndSnapshot();
  absl::StatusOr<std::string> path = (*writer)->Commit();
  EXPECT_TRUE(path.ok()) << path.status();
  return SnapshotInfo{path.value_or(""), cursor.zxid(), cursor.digest(), cursor.node_count()};
}

absl::StatusOr<std::optional<SnapshotInfo>> Load(const std::string& dir, DataTree* tree,
                                                 std::vector<std::string>* warnings) {
  return LoadLatestSnapshot(dir, tree, warnings);
}

void ExpectSameState(const DataTree& actual, const DataTree& expected) {
  EXPECT_EQ(actual.last_applied(), expected.last_applied());
  EXPECT_EQ(actual.digest(), expected.digest());
  EXPECT_EQ(actual.node_count(), expected.node_count());
  EXPECT_EQ(tree::ReadImage(actual), tree::ReadImage(expected));
  EXPECT_EQ(actual.Sessions(), expected.Sessions());
  for (const tree::SessionInfo& session : expected.Sessions()) {
    EXPECT_EQ(actual.EphemeralsOf(session.id), expected.EphemeralsOf(session.id));
  }
}

TEST(SnapshotTest, WrittenWhileApplyingLoadsTheStateAtItsZxid) {
  TempDir dir;
  DataTree live;
  History history;
  tree::RandomTxns random(20240601, 6);
  BuildTree(&live, &history, &random, 400, 320);
  const Zxid pinned = live.last_applied();
  ASSERT_GT(live.node_count(), 320u);
  ASSERT_GT(live.Sessions().size(), 0u);

  int chunks = 0;
  SnapshotInfo written = WriteSnapshot(&live, dir.path(), [&] {
    // Writes keep landing while the image is pinned, including on pinned nodes.
    ++chunks;
    for (int i = 0; i < 3; ++i) history.Apply(&live, random.Next(live));
    history.Apply(&live, tree::TxnOf(tree::SetOp(absl::StrFormat("/bulk/n%04d", chunks), "x")));
    history.Apply(&live, tree::TxnOf(tree::DeleteOp(absl::StrFormat("/bulk/n%04d", 300 - chunks))));
  });
  ASSERT_GT(chunks, 10);
  EXPECT_EQ(written.zxid, pinned);
  EXPECT_GT(live.last_applied(), pinned);
  EXPECT_GT(FileSize(written.path), 1u << 20);

  DataTree expected;
  history.Replay(&expected, Zxid(), pinned);
  ASSERT_EQ(expected.digest(), written.digest);

  DataTree loaded;
  std::vector<std::string> warnings;
  absl::StatusOr<std::optional<SnapshotInfo>> info = Load(dir.path(), &loaded, &warnings);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->has_value());
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ((*info)->path, written.path);
  EXPECT_EQ((*info)->zxid, pinned);
  EXPECT_EQ((*info)->digest, written.digest);
  EXPECT_EQ((*info)->nodes, expected.node_count());
  ExpectSameState(loaded, expected);

  // The loaded tree continues like the live one.
  history.Replay(&loaded, pinned, live.last_applied());
  ExpectSameState(loaded, live);
}

// Two snapshots, at zxids older < newer; returns the trees' states at each.
struct TwoSnapshots {
  SnapshotInfo older;
  SnapshotInfo newer;
  History history;
};

void WriteTwoSnapshots(const std::string& dir, TwoSnapshots* out) {
  DataTree live;
  tree::RandomTxns random(7, 4);
  BuildTree(&live, &out->history, &random, 150, 20);
  out->older = WriteSnapshot(&live, dir);
  for (int i = 0; i < 100; ++i) out->history.Apply(&live, random.Next(live));
  out->newer = WriteSnapshot(&live, dir);
  ASSERT_LT(out->older.zxid, out->newer.zxid);
}

void ExpectOlderLoadsWithWarning(const std::string& dir, const TwoSnapshots& snapshots,
                                 absl::string_view reason) {
  DataTree loaded;
  std::vector<std::string> warnings;
  absl::StatusOr<std::optional<SnapshotInfo>> info = Load(dir, &loaded, &warnings);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->zxid, snapshots.older.zxid);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr(snapshots.newer.path));
  EXPECT_THAT(warnings[0], HasSubstr(reason));
  DataTree expected;
  snapshots.history.Replay(&expected, Zxid(), snapshots.older.zxid);
  ExpectSameState(loaded, expected);
}

TEST(SnapshotTest, NewestWithFlippedByteIsSkipped) {
  TempDir dir;
  TwoSnapshots snapshots;
  WriteTwoSnapshots(dir.path(), &snapshots);
  FlipByte(snapshots.newer.path, FileSize(snapshots.newer.path) / 2);
  ExpectOlderLoadsWithWarning(dir.path(), snapshots, "checksum mismatch");
}

TEST(SnapshotTest, TruncatedNewestIsSkipped) {
  TempDir dir;
  TwoSnapshots snapshots;
  WriteTwoSnapshots(dir.path(), &snapshots);
  TruncateFile(snapshots.newer.path, FileSize(snapshots.newer.path) - 100);
  ExpectOlderLoadsWithWarning(dir.path(), snapshots, snapshots.newer.path);
}

TEST(SnapshotTest, EmptyNewestIsSkipped) {
  TempDir dir;
  TwoSnapshots snapshots;
  WriteTwoSnapshots(dir.path(), &snapshots);
  TruncateFile(snapshots.newer.path, 0);
  ExpectOlderLoadsWithWarning(dir.path(), snapshots, "too short");
}

TEST(SnapshotTest, LoadSnapshotFileLoadsExactlyThatFileOrNothing) {
  TempDir dir;
  TwoSnapshots snapshots;
  WriteTwoSnapshots(dir.path(), &snapshots);
  // The older one, though a newer one is there (a snapshot received from a leader is named).
  DataTree loaded;
  absl::StatusOr<SnapshotInfo> info =
      LoadSnapshotFile(snapshots.older.path, snapshots.older.zxid, &loaded);
  ASSERT_TRUE(info.ok()) << info.status();
  DataTree expected;
  snapshots.history.Replay(&expected, Zxid(), snapshots.older.zxid);
  ExpectSameState(loaded, expected);

  // A damaged file is refused naming it, and the tree is left untouched.
  FlipByte(snapshots.newer.path, FileSize(snapshots.newer.path) / 2);
  DataTree untouched;
  absl::StatusOr<SnapshotInfo> bad =
      LoadSnapshotFile(snapshots.newer.path, snapshots.newer.zxid, &untouched);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::IsDataLoss(bad.status())) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr(snapshots.newer.path));
  EXPECT_EQ(untouched.node_count(), 1u);
  EXPECT_TRUE(untouched.last_applied().IsZero());
}

TEST(SnapshotTest, NoUsableSnapshotIsNullopt) {
  TempDir dir;
  DataTree tree;
  std::vector<std::string> warnings;
  absl::StatusOr<std::optional<SnapshotInfo>> info = Load(dir.path(), &tree, &warnings);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->has_value());
  info = Load(dir.path() + "/missing", &tree, &warnings);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->has_value());
  EXPECT_TRUE(warnings.empty());

  TwoSnapshots snapshots;
  WriteTwoSnapshots(dir.path(), &snapshots);
  FlipByte(snapshots.newer.path, 100);
  FlipByte(snapshots.older.path, 3);
  info = Load(dir.path(), &tree, &warnings);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->has_value());
  EXPECT_EQ(warnings.size(), 2u);
  EXPECT_EQ(tree.node_count(), 1u) << "a skipped snapshot must not touch the tree";
  EXPECT_TRUE(tree.last_applied().IsZero());
}

TEST(SnapshotTest, ValidChecksumButInconsistentImageIsAnError) {
  TempDir dir;
  TwoSnapshots snapshots;
  WriteTwoSnapshots(dir.path(), &snapshots);
  // Newer still, whole and checksummed, but a node hangs under a parent it does not hold.
  const Zxid zxid = snapshots.newer.zxid.Next();
  {
    absl::StatusOr<std::unique_ptr<SnapshotWriter>> writer =
        SnapshotWriter::Create(dir.path(), zxid, 12345);
    ASSERT_TRUE(writer.ok());
    Stat root;
    root.num_children = 1;
    ASSERT_TRUE((*writer)->AddNode("/", root, "").ok());
    Stat orphan;
    orphan.data_length = 1;
    ASSERT_TRUE((*writer)->AddNode("/no/parent", orphan, "x").ok());
    ASSERT_TRUE((*writer)->Commit().ok());
  }
  DataTree tree;
  std::vector<std::string> warnings;
  absl::StatusOr<std::optional<SnapshotInfo>> info = Load(dir.path(), &tree, &warnings);
  ASSERT_FALSE(info.ok()) << "a half-loaded tree must not fall back to an older snapshot";
  EXPECT_THAT(std::string(info.status().message()), HasSubstr(ListSnapshots(dir.path())[0].path));
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("/no/parent"));
}

TEST(SnapshotTest, LoadNeedsAFreshTree) {
  TempDir dir;
  TwoSnapshots snapshots;
  WriteTwoSnapshots(dir.path(), &snapshots);
  DataTree used;
  History history;
  history.Apply(&used, tree::TxnOf(tree::CreateOp("/x", "")));
  EXPECT_TRUE(absl::IsFailedPrecondition(Load(dir.path(), &used, nullptr).status()));
}

TEST(SnapshotTest, ListPurgeAndTemporaryFiles) {
  TempDir dir;
  DataTree live;
  History history;
  tree::RandomTxns random(99, 3);
  std::vector<SnapshotInfo> written;
  for (int round = 0; round < 4; ++round) {
    BuildTree(&live, &history, &random, 20, 0);
    written.push_back(WriteSnapshot(&live, dir.path()));
  }
  testing::WriteFile(dir.path() + "/notes", "not a snapshot");
  testing::WriteFile(dir.path() + "/snapshot.12", "not a snapshot name");
  {
    // A writer that never commits leaves nothing behind.
    absl::StatusOr<std::unique_ptr<SnapshotWriter>> writer =
        SnapshotWriter::Create(dir.path(), Zxid(9, 9), 0);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->AddSession(tree::SessionInfo{SessionId(5), 1000}).ok());
    EXPECT_EQ(ListDir(dir.path()).size(), 7u);  // 4 snapshots, 2 others, this one's .tmp
  }
  EXPECT_EQ(ListDir(dir.path()).size(), 6u);

  std::vector<SnapshotInfo> listed = ListSnapshots(dir.path());
  ASSERT_EQ(listed.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const SnapshotInfo& expected = written[3 - i];
    EXPECT_EQ(listed[i].path, expected.path);
    EXPECT_EQ(listed[i].zxid, expected.zxid);
    EXPECT_EQ(listed[i].digest, expected.digest);
    EXPECT_EQ(listed[i].nodes, expected.nodes);
  }

  EXPECT_TRUE(absl::IsInvalidArgument(PurgeSnapshots(dir.path(), 0)));
  ASSERT_TRUE(PurgeSnapshots(dir.path(), 2).ok());
  listed = ListSnapshots(dir.path());
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].zxid, written[3].zxid);
  EXPECT_EQ(listed[1].zxid, written[2].zxid);
  ASSERT_TRUE(PurgeSnapshots(dir.path(), 5).ok());
  EXPECT_EQ(ListSnapshots(dir.path()).size(), 2u);

  // A temporary left by a crash is removed when loading.
  const std::string stale = written[3].path + ".tmp";
  testing::WriteFile(stale, "partial");
  DataTree loaded;
  absl::StatusOr<std::optional<SnapshotInfo>> info = Load(dir.path(), &loaded, nullptr);
  ASSERT_TRUE(info.ok() && info->has_value()) << info.status();
  EXPECT_EQ((*info)->zxid, written[3].zxid);
  EXPECT_THAT(ListDir(dir.path()),
              ElementsAre("notes",
                          ::testing::EndsWith(absl::StrFormat(
                              "%016x", static_cast<uint64_t>(written[2].zxid.ToInt()))),
                          ::testing::EndsWith(absl::StrFormat(
                              "%016x", static_cast<uint64_t>(written[3].zxid.ToInt()))),
                          "snapshot.12"));
}

}  // namespace
}  // namespace confab::storage
