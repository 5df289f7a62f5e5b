// Snapshot mode: the pinned image stays exactly as it was at BeginSnapshot while transactions
// keep applying, and reads always see the current state.
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/tree/data_tree.h"
#include "tests/unit/tree/tree_test_util.h"

namespace confab::tree {
namespace {

using ::testing::ElementsAre;

constexpr size_t kAll = std::numeric_limits<size_t>::max();

// Visits one chunk into `image`, checking no node is visited twice.
bool VisitChunk(const DataTree& tree, SnapshotCursor* cursor, size_t max_nodes, TreeImage* image,
                size_t* visited) {
  return tree.NextSnapshotChunk(
      cursor, max_nodes, [&](absl::string_view path, const Stat& stat, absl::string_view data) {
        ++*visited;
        const bool inserted =
            image->emplace(std::string(path), NodeImage{std::string(data), stat}).second;
        EXPECT_TRUE(inserted) << "visited twice: " << path;
      });
}

// A tree with sessions, ephemerals, data and some depth.
void Populate(Harness* h, int nodes) {
  h->Apply(OpenSessionTxn(1, 5000));
  h->Apply(OpenSessionTxn(2, 5000));
  RandomTxns source(99, 2);
  for (int i = 0; h->tree().node_count() < static_cast<size_t>(nodes) && i < 100000; ++i) {
    const internal::Txn txn = source.Next(h->tree());
    if (txn.has_close_session()) continue;
    h->Apply(txn);
  }
}

// Applies `txn` to the snapshotting tree and to a mirror that never snapshots; both must agree.
void ApplyBoth(const internal::Txn& txn, Harness* pinned, Harness* mirror) {
  const internal::TxnResult a = pinned->Apply(txn);
  const internal::TxnResult b = mirror->Apply(txn);
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString()) << txn.ShortDebugString();
  EXPECT_EQ(pinned->triggers(), mirror->triggers());
  EXPECT_EQ(pinned->tree().digest(), mirror->tree().digest());
}

TEST(SnapshotModeTest, PinnedImageStaysExactWhileWritesContinue) {
  Harness h;
  Harness mirror;
  Populate(&h, 60);
  Populate(&mirror, 60);
  ASSERT_EQ(h.tree().digest(), mirror.tree().digest());

  const TreeImage at_pin = ReadImage(h.tree());
  const std::vector<SessionInfo> sessions_at_pin = h.tree().Sessions();
  const uint64_t digest_at_pin = h.tree().digest();
  SnapshotCursor cursor = h.tree().BeginSnapshot();
  EXPECT_EQ(cursor.zxid(), h.zxid());
  EXPECT_EQ(cursor.digest(), digest_at_pin);
  EXPECT_EQ(cursor.node_count(), at_pin.size());
  EXPECT_EQ(cursor.sessions(), sessions_at_pin);

  // Writes that touch pinned nodes: every node is set (some several times), leaves deleted and
  // re-created, multis that succeed and fail, a session close that deletes ephemerals; between
  // them small chunks of the image are visited.
  TreeImage visited_image;
  size_t visited = 0;
  RandomTxns source(7, 2);
  int step = 0;
  auto visit_some = [&]() { VisitChunk(h.tree(), &cursor, 3, &visited_image, &visited); };
  for (const auto& [path, node] : at_pin) {
    ApplyBoth(TxnOf(SetOp(path, "overwritten")), &h, &mirror);
    if (++step % 4 == 0) ApplyBoth(TxnOf(SetOp(path, "twice")), &h, &mirror);
    if (step % 5 == 0) visit_some();
  }
  for (int i = 0; i < 400; ++i) {
    ApplyBoth(source.Next(h.tree()), &h, &mirror);
    if (i % 50 == 0) VisitChunk(h.tree(), &cursor, 2, &visited_image, &visited);
    if (i % 50 == 0) {
      // A multi that touches pinned nodes and fails at its last op.
      ApplyBoth(MultiTxn({SetOp("/", "root"), CreateOp("/fresh", ""), CreateOp("/fresh/x", ""),
                          DeleteOp("/fresh/x"), CheckOp("/", 12345)},
                         1),
                &h, &mirror);
    }
    if (i == 200) ApplyBoth(CloseSessionTxn(1), &h, &mirror);
    // Reads see the current state, never the pinned one.
    if (i % 40 == 0) {
      ASSERT_EQ(ReadImage(h.tree()), ReadImage(mirror.tree())) << i;
    }
  }
  EXPECT_LT(visited, at_pin.size());  // the writes really raced the visit
  while (VisitChunk(h.tree(), &cursor, 3, &visited_image, &visited)) {
  }
  EXPECT_EQ(visited, at_pin.size());
  EXPECT_EQ(visited_image, at_pin);
  EXPECT_FALSE(VisitChunk(h.tree(), &cursor, 3, &visited_image, &visited));
  EXPECT_EQ(visited, at_pin.size());

  // The image loads into a fresh tree with the pinned digest.
  DataTree loaded;
  ASSERT_TRUE(
      LoadImage(visited_image, cursor.sessions(), cursor.zxid(), cursor.digest(), &loaded).ok());
  EXPECT_EQ(loaded.digest(), digest_at_pin);
  EXPECT_EQ(ReadImage(loaded), at_pin);

  h.tree().EndSnapshot();
  EXPECT_EQ(h.tree().node_count(), mirror.tree().node_count());
  EXPECT_EQ(h.tree().approximate_bytes(), mirror.tree().approximate_bytes());
  EXPECT_EQ(h.tree().digest(), mirror.tree().digest());
  const TreeImage now = ReadImage(h.tree());
  EXPECT_EQ(now, ReadImage(mirror.tree()));

  // No inactive entry is left: a new snapshot's image is exactly the current state.
  SnapshotCursor again = h.tree().BeginSnapshot();
  EXPECT_EQ(again.node_count(), now.size());
  TreeImage second;
  size_t second_visited = 0;
  EXPECT_FALSE(VisitChunk(h.tree(), &again, kAll, &second, &second_visited));
  EXPECT_EQ(second, now);
  h.tree().EndSnapshot();
}

TEST(SnapshotModeTest, ChunksReturnFalseOnceEveryNodeWasVisited) {
  Harness h;
  for (const char* path : {"/a", "/b", "/c", "/d"}) h.Apply(CreateOp(path, ""));
  SnapshotCursor cursor = h.tree().BeginSnapshot();
  ASSERT_EQ(cursor.node_count(), 5u);
  TreeImage image;
  size_t visited = 0;
  EXPECT_TRUE(VisitChunk(h.tree(), &cursor, 2, &image, &visited));
  EXPECT_EQ(visited, 2u);
  EXPECT_TRUE(VisitChunk(h.tree(), &cursor, 0, &image, &visited));
  EXPECT_EQ(visited, 2u);
  EXPECT_TRUE(VisitChunk(h.tree(), &cursor, 2, &image, &visited));
  EXPECT_FALSE(VisitChunk(h.tree(), &cursor, 2, &image, &visited));
  EXPECT_EQ(visited, 5u);
  EXPECT_FALSE(VisitChunk(h.tree(), &cursor, 2, &image, &visited));
  EXPECT_EQ(visited, 5u);
  h.tree().EndSnapshot();
}

TEST(SnapshotModeTest, NodesMadeWhilePinnedAreNotInTheImage) {
  Harness h;
  h.Apply(CreateOp("/keep", "k"));
  h.Apply(CreateOp("/gone", "g"));
  const TreeImage at_pin = ReadImage(h.tree());
  SnapshotCursor cursor = h.tree().BeginSnapshot();
  TreeImage image;
  size_t visited = 0;
  // Visit every pinned node but the last: the cursor rests on pinned entries only.
  ASSERT_TRUE(VisitChunk(h.tree(), &cursor, 2, &image, &visited));

  h.Apply(CreateOp("/new", "n"));
  h.Apply(SetOp("/new", "n2"));  // a node made while pinned changes in place
  h.Apply(DeleteOp("/gone"));
  h.Apply(CreateOp("/gone", "back"));  // deleted and made again while pinned
  h.Apply(SetOp("/gone", "back2"));
  h.Apply(DeleteOp("/new"));
  h.Apply(SetOp("/keep", "k2"));
  h.Apply(SetOp("/keep", "k3"));
  EXPECT_EQ(h.tree().Get("/keep")->data, "k3");
  EXPECT_EQ(h.tree().Get("/gone")->data, "back2");
  EXPECT_EQ(h.tree().Get("/gone")->stat.version, 1);
  EXPECT_EQ(h.tree().node_count(), 3u);

  EXPECT_FALSE(VisitChunk(h.tree(), &cursor, 10, &image, &visited));
  EXPECT_EQ(image, at_pin);
  // Erasing what follows the last pinned entry after the visit ended is harmless too.
  h.Apply(DeleteOp("/gone"));
  EXPECT_FALSE(VisitChunk(h.tree(), &cursor, 10, &image, &visited));
  h.tree().EndSnapshot();

  std::vector<std::string> children;
  ASSERT_TRUE(h.tree().GetChildren("/", &children, nullptr).ok());
  EXPECT_THAT(children, ElementsAre("keep"));
  EXPECT_EQ(h.tree().node_count(), 2u);
  SnapshotCursor next = h.tree().BeginSnapshot();
  TreeImage after;
  size_t after_visited = 0;
  EXPECT_FALSE(VisitChunk(h.tree(), &next, kAll, &after, &after_visited));
  EXPECT_EQ(after, ReadImage(h.tree()));
  h.tree().EndSnapshot();
}

TEST(SnapshotModeTest, RepeatedSnapshotsEachSeeTheirOwnPin) {
  Harness h;
  Harness mirror;
  Populate(&h, 30);
  Populate(&mirror, 30);
  RandomTxns source(11, 2);
  for (int round = 0; round < 5; ++round) {
    const TreeImage at_pin = ReadImage(h.tree());
    SnapshotCursor cursor = h.tree().BeginSnapshot();
    TreeImage image;
    size_t visited = 0;
    bool more = true;
    while (more) {
      more = VisitChunk(h.tree(), &cursor, 1, &image, &visited);
      for (int i = 0; i < 3; ++i) ApplyBoth(source.Next(h.tree()), &h, &mirror);
    }
    EXPECT_EQ(image, at_pin) << "round " << round;
    h.tree().EndSnapshot();
    EXPECT_EQ(h.tree().approximate_bytes(), mirror.tree().approximate_bytes());
  }
  EXPECT_EQ(ReadImage(h.tree()), ReadImage(mirror.tree()));
}

TEST(SnapshotModeDeathTest, MisuseCrashes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DataTree tree;
  EXPECT_DEATH(tree.EndSnapshot(), "without a pinned snapshot");
  SnapshotCursor stale = tree.BeginSnapshot();
  EXPECT_DEATH(tree.BeginSnapshot(), "already pinned");
  tree.EndSnapshot();
  tree.BeginSnapshot();
  EXPECT_DEATH(
      tree.NextSnapshotChunk(&stale, 1, [](absl::string_view, const Stat&, absl::string_view) {}),
      "snapshot cursor of generation 1");
  tree.EndSnapshot();
}

}  // namespace
}  // namespace confab::tree
