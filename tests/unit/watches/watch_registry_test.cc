#include "server/watches/watch_registry.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace confab::watches {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr SessionId kS1(1);
constexpr SessionId kS2(2);
constexpr SessionId kS3(3);

// "session:TYPE:path@zxid" for each delivery, to compare whole outcomes at once.
std::vector<std::string> Fire(WatchRegistry* registry, v1::EventType type, const std::string& path,
                              int64_t zxid = 7) {
  std::vector<Delivery> out;
  registry->Trigger(tree::WatchTrigger{type, path}, Zxid::FromInt(zxid), &out);
  std::vector<std::string> shown;
  for (const Delivery& d : out) {
    shown.push_back(absl::StrCat(d.session.value(), ":", v1::EventType_Name(d.event.type()), ":",
                                 d.event.path(), "@", d.event.zxid()));
  }
  return shown;
}

TEST(WatchRegistryTest, DataWatchFiresOnceOnCreatedChangedOrDeleted) {
  for (v1::EventType type : {v1::NODE_CREATED, v1::NODE_DATA_CHANGED, v1::NODE_DELETED}) {
    WatchRegistry registry;
    registry.Add(kS1, "/a", v1::DATA_WATCH);
    EXPECT_THAT(Fire(&registry, v1::NODE_CHILDREN_CHANGED, "/a"), IsEmpty());
    EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/b"), IsEmpty());
    EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/a/x"), IsEmpty());
    EXPECT_EQ(registry.watch_count(), 1u);
    const std::string expected = absl::StrCat("1:", v1::EventType_Name(type), ":/a@9");
    EXPECT_THAT(Fire(&registry, type, "/a", 9), ElementsAre(expected));
    EXPECT_THAT(Fire(&registry, type, "/a", 10), IsEmpty());  // one-shot
    EXPECT_EQ(registry.watch_count(), 0u);
    EXPECT_THAT(registry.WatchesOf(kS1), IsEmpty());
  }
}

TEST(WatchRegistryTest, ChildWatchFiresOnceOnChildrenChangedOrDeleted) {
  for (v1::EventType type : {v1::NODE_CHILDREN_CHANGED, v1::NODE_DELETED}) {
    WatchRegistry registry;
    registry.Add(kS2, "/a", v1::CHILD_WATCH);
    EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/a"), IsEmpty());
    EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/a"), IsEmpty());
    EXPECT_THAT(Fire(&registry, v1::NODE_CHILDREN_CHANGED, "/"), IsEmpty());
    EXPECT_THAT(Fire(&registry, type, "/a"),
                ElementsAre(absl::StrCat("2:", v1::EventType_Name(type), ":/a@7")));
    EXPECT_THAT(Fire(&registry, type, "/a"), IsEmpty());
    EXPECT_EQ(registry.watch_count(), 0u);
  }
}

TEST(WatchRegistryTest, PersistentWatchSeesEveryEventOfItsNodeAndStays) {
  WatchRegistry registry;
  registry.Add(kS1, "/a", v1::PERSISTENT_WATCH);
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/a", 1), ElementsAre("1:NODE_CREATED:/a@1"));
  EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/a", 2),
              ElementsAre("1:NODE_DATA_CHANGED:/a@2"));
  EXPECT_THAT(Fire(&registry, v1::NODE_CHILDREN_CHANGED, "/a", 3),
              ElementsAre("1:NODE_CHILDREN_CHANGED:/a@3"));
  EXPECT_THAT(Fire(&registry, v1::NODE_DELETED, "/a", 4), ElementsAre("1:NODE_DELETED:/a@4"));
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/a/b", 5), IsEmpty());  // not recursive
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/a", 6), ElementsAre("1:NODE_CREATED:/a@6"));
  EXPECT_EQ(registry.watch_count(), 1u);
}

TEST(WatchRegistryTest, RecursiveWatchSeesItsSubtreeButNotChildrenChanged) {
  WatchRegistry registry;
  registry.Add(kS1, "/a", v1::PERSISTENT_RECURSIVE_WATCH);
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/a"), ElementsAre("1:NODE_CREATED:/a@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/a/b/c"), ElementsAre("1:NODE_CREATED:/a/b/c@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/a/b"),
              ElementsAre("1:NODE_DATA_CHANGED:/a/b@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_DELETED, "/a/b/c"), ElementsAre("1:NODE_DELETED:/a/b/c@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_CHILDREN_CHANGED, "/a"), IsEmpty());
  EXPECT_THAT(Fire(&registry, v1::NODE_CHILDREN_CHANGED, "/a/b"), IsEmpty());
  // Only real ancestors: "/ab" is not below "/a", and "/" is above it.
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/ab"), IsEmpty());
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/"), IsEmpty());
  EXPECT_EQ(registry.watch_count(), 1u);

  registry.Add(kS2, "/", v1::PERSISTENT_RECURSIVE_WATCH);
  EXPECT_THAT(Fire(&registry, v1::NODE_DELETED, "/ab/c"), ElementsAre("2:NODE_DELETED:/ab/c@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/"), ElementsAre("2:NODE_DATA_CHANGED:/@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/a/x"),
              ElementsAre("1:NODE_DATA_CHANGED:/a/x@7", "2:NODE_DATA_CHANGED:/a/x@7"));
}

TEST(WatchRegistryTest, OneEventPerSessionAndTriggerInSessionOrder) {
  WatchRegistry registry;
  registry.Add(kS3, "/a", v1::DATA_WATCH);
  registry.Add(kS1, "/a", v1::DATA_WATCH);
  registry.Add(kS1, "/a", v1::PERSISTENT_WATCH);
  registry.Add(kS1, "/a", v1::PERSISTENT_RECURSIVE_WATCH);
  registry.Add(kS1, "/", v1::PERSISTENT_RECURSIVE_WATCH);
  registry.Add(kS2, "/a", v1::CHILD_WATCH);
  registry.Add(kS2, "/a", v1::DATA_WATCH);
  EXPECT_EQ(registry.watch_count(), 7u);

  EXPECT_THAT(Fire(&registry, v1::NODE_DELETED, "/a"),
              ElementsAre("1:NODE_DELETED:/a@7", "2:NODE_DELETED:/a@7", "3:NODE_DELETED:/a@7"));
  // Every one-shot watch that matched was consumed, even where the session got its event
  // through another watch; the persistent ones stay.
  EXPECT_EQ(registry.watch_count(), 3u);
  EXPECT_THAT(registry.WatchesOf(kS1), ElementsAre(Pair("/", v1::PERSISTENT_RECURSIVE_WATCH),
                                                   Pair("/a", v1::PERSISTENT_WATCH),
                                                   Pair("/a", v1::PERSISTENT_RECURSIVE_WATCH)));
  EXPECT_THAT(registry.WatchesOf(kS2), IsEmpty());
  EXPECT_THAT(registry.WatchesOf(kS3), IsEmpty());
}

TEST(WatchRegistryTest, AddIsIdempotentAndRemoveSaysWhetherItRemoved) {
  WatchRegistry registry;
  registry.Add(kS1, "/a", v1::DATA_WATCH);
  registry.Add(kS1, "/a", v1::DATA_WATCH);
  EXPECT_EQ(registry.watch_count(), 1u);
  registry.Add(kS1, "/a", v1::CHILD_WATCH);
  registry.Add(kS2, "/a", v1::DATA_WATCH);
  EXPECT_EQ(registry.watch_count(), 3u);

  EXPECT_FALSE(registry.Remove(kS1, "/a", v1::PERSISTENT_WATCH));
  EXPECT_FALSE(registry.Remove(kS1, "/b", v1::DATA_WATCH));
  EXPECT_FALSE(registry.Remove(kS3, "/a", v1::DATA_WATCH));
  EXPECT_TRUE(registry.Remove(kS1, "/a", v1::DATA_WATCH));
  EXPECT_FALSE(registry.Remove(kS1, "/a", v1::DATA_WATCH));
  EXPECT_EQ(registry.watch_count(), 2u);
  EXPECT_THAT(registry.WatchesOf(kS1), ElementsAre(Pair("/a", v1::CHILD_WATCH)));
  EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/a"),
              ElementsAre("2:NODE_DATA_CHANGED:/a@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_CHILDREN_CHANGED, "/a"),
              ElementsAre("1:NODE_CHILDREN_CHANGED:/a@7"));
  EXPECT_EQ(registry.watch_count(), 0u);
}

TEST(WatchRegistryTest, RemoveSessionDropsAllItsWatchesOnly) {
  WatchRegistry registry;
  registry.Add(kS1, "/a", v1::DATA_WATCH);
  registry.Add(kS1, "/b", v1::CHILD_WATCH);
  registry.Add(kS1, "/", v1::PERSISTENT_RECURSIVE_WATCH);
  registry.Add(kS2, "/a", v1::DATA_WATCH);
  registry.RemoveSession(kS1);
  registry.RemoveSession(kS3);  // unknown: nothing to do
  EXPECT_EQ(registry.watch_count(), 1u);
  EXPECT_THAT(registry.WatchesOf(kS1), IsEmpty());
  EXPECT_THAT(Fire(&registry, v1::NODE_DATA_CHANGED, "/a"),
              ElementsAre("2:NODE_DATA_CHANGED:/a@7"));
  EXPECT_THAT(Fire(&registry, v1::NODE_CHILDREN_CHANGED, "/b"), IsEmpty());
  EXPECT_THAT(Fire(&registry, v1::NODE_CREATED, "/c"), IsEmpty());
}

TEST(WatchRegistryTest, WatchesOfIsSortedByPathThenKind) {
  WatchRegistry registry;
  registry.Add(kS1, "/b", v1::DATA_WATCH);
  registry.Add(kS1, "/a/z", v1::PERSISTENT_WATCH);
  registry.Add(kS1, "/a", v1::CHILD_WATCH);
  registry.Add(kS1, "/a", v1::DATA_WATCH);
  registry.Add(kS2, "/other", v1::DATA_WATCH);
  EXPECT_THAT(registry.WatchesOf(kS1),
              ElementsAre(Pair("/a", v1::DATA_WATCH), Pair("/a", v1::CHILD_WATCH),
                          Pair("/a/z", v1::PERSISTENT_WATCH), Pair("/b", v1::DATA_WATCH)));
}

TEST(WatchRegistryTest, WatchesLostIsNotATreeChange) {
  WatchRegistry registry;
  registry.Add(kS1, "/a", v1::DATA_WATCH);
  registry.Add(kS1, "/", v1::PERSISTENT_RECURSIVE_WATCH);
  EXPECT_THAT(Fire(&registry, v1::WATCHES_LOST, "/a"), IsEmpty());
  EXPECT_EQ(registry.watch_count(), 2u);
}

}  // namespace
}  // namespace confab::watches
