#include "server/watches/change_history.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/watches/watch_registry.h"

namespace confab::watches {
namespace {

tree::WatchTrigger T(v1::EventType type, std::string path) { return {type, std::move(path)}; }

std::vector<std::pair<v1::EventType, std::string>> Summary(
    const std::vector<v1::WatchEvent>& events) {
  std::vector<std::pair<v1::EventType, std::string>> out;
  for (const auto& e : events) out.emplace_back(e.type(), e.path());
  return out;
}

TEST(ChangeHistoryTest, ReplaysWhatAWatchWouldHaveSeenAfterAZxid) {
  ChangeHistory history(100, Zxid(1, 0));
  history.Record(Zxid(1, 1), T(v1::NODE_CREATED, "/a"));
  history.Record(Zxid(1, 1), T(v1::NODE_CHILDREN_CHANGED, "/"));
  history.Record(Zxid(1, 2), T(v1::NODE_DATA_CHANGED, "/a"));
  history.Record(Zxid(1, 3), T(v1::NODE_CREATED, "/a/b"));
  history.Record(Zxid(1, 3), T(v1::NODE_CHILDREN_CHANGED, "/a"));
  history.Record(Zxid(1, 4), T(v1::NODE_DATA_CHANGED, "/a"));

  std::vector<v1::WatchEvent> events;
  EXPECT_TRUE(history.Since(Zxid(1, 1), "/a", v1::PERSISTENT_WATCH, &events));
  EXPECT_EQ(Summary(events),
            (std::vector<std::pair<v1::EventType, std::string>>{{v1::NODE_DATA_CHANGED, "/a"},
                                                                {v1::NODE_CHILDREN_CHANGED, "/a"},
                                                                {v1::NODE_DATA_CHANGED, "/a"}}));
  EXPECT_EQ(events[0].zxid(), Zxid(1, 2).ToInt());

  events.clear();
  EXPECT_TRUE(history.Since(Zxid(1, 0), "/", v1::PERSISTENT_RECURSIVE_WATCH, &events));
  EXPECT_EQ(events.size(), 4u) << "created /a, data /a, created /a/b, data /a; no child events";

  // One-shot kinds: only the first, as the watch would have fired once.
  events.clear();
  EXPECT_TRUE(history.Since(Zxid(1, 1), "/a", v1::DATA_WATCH, &events));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].zxid(), Zxid(1, 2).ToInt());

  events.clear();
  EXPECT_TRUE(history.Since(Zxid(1, 4), "/a", v1::PERSISTENT_WATCH, &events));
  EXPECT_TRUE(events.empty());
}

TEST(ChangeHistoryTest, SaysWhenItNoLongerReachesBack) {
  ChangeHistory history(3, Zxid(1, 0));
  for (uint32_t i = 1; i <= 5; ++i) history.Record(Zxid(1, i), T(v1::NODE_DATA_CHANGED, "/a"));
  EXPECT_EQ(history.size(), 3u);
  EXPECT_EQ(history.covered_after(), Zxid(1, 2));
  std::vector<v1::WatchEvent> events;
  EXPECT_FALSE(history.Since(Zxid(1, 1), "/a", v1::PERSISTENT_WATCH, &events));
  EXPECT_EQ(events.size(), 3u) << "what it has is still given";
  events.clear();
  EXPECT_TRUE(history.Since(Zxid(1, 2), "/a", v1::PERSISTENT_WATCH, &events));
  EXPECT_EQ(events.size(), 3u);

  ChangeHistory fresh(10, Zxid(2, 7));
  EXPECT_FALSE(fresh.Since(Zxid(2, 6), "/a", v1::PERSISTENT_WATCH, &events))
      << "nothing before the state it started from is known";
  EXPECT_TRUE(fresh.Since(Zxid(2, 7), "/a", v1::PERSISTENT_WATCH, &events));
}

// Changes are stored in blocks of a few thousand: forgetting and replaying across their
// boundaries gives exactly the newest `capacity` changes, in order.
TEST(ChangeHistoryTest, KeepsExactlyTheNewestChangesAcrossManyBlocks) {
  constexpr uint32_t kRecorded = 20'000;
  constexpr size_t kCapacity = 9'999;
  ChangeHistory history(kCapacity, Zxid(1, 0));
  for (uint32_t i = 1; i <= kRecorded; ++i) {
    history.Record(Zxid(1, i),
                   T(v1::NODE_DATA_CHANGED, i % 2 == 0 ? "/even" : "/odd/" + std::to_string(i)));
  }
  EXPECT_EQ(history.size(), kCapacity);
  const uint32_t oldest = kRecorded - kCapacity + 1;
  EXPECT_EQ(history.covered_after(), Zxid(1, oldest - 1));

  std::vector<v1::WatchEvent> events;
  EXPECT_TRUE(history.Since(history.covered_after(), "/", v1::PERSISTENT_RECURSIVE_WATCH, &events));
  ASSERT_EQ(events.size(), kCapacity);
  for (size_t i = 0; i < events.size(); ++i) {
    const uint32_t counter = oldest + static_cast<uint32_t>(i);
    EXPECT_EQ(events[i].zxid(), Zxid(1, counter).ToInt());
    EXPECT_EQ(events[i].path(), counter % 2 == 0 ? "/even" : "/odd/" + std::to_string(counter));
  }

  events.clear();
  EXPECT_TRUE(history.Since(Zxid(1, 15'000), "/even", v1::PERSISTENT_WATCH, &events));
  ASSERT_EQ(events.size(), 2'500u);
  EXPECT_EQ(events.front().zxid(), Zxid(1, 15'002).ToInt());
  events.clear();
  EXPECT_TRUE(history.Since(Zxid(1, 12'345), "/odd/12347", v1::DATA_WATCH, &events));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].zxid(), Zxid(1, 12'347).ToInt());
  events.clear();
  EXPECT_FALSE(history.Since(Zxid(1, 5), "/even", v1::PERSISTENT_WATCH, &events));
  EXPECT_EQ(events.size(), kCapacity / 2 + 1);
}

// Matches() is what replay uses; the registry's lookups are what live delivery uses. They must
// agree on every trigger, or a resumed watch would see different events than a live one.
TEST(ChangeHistoryTest, MatchesAgreesWithTheRegistry) {
  const std::vector<std::string> paths = {"/", "/a", "/a/b", "/a/b/c", "/ab", "/x"};
  const std::vector<v1::EventType> types = {v1::NODE_CREATED, v1::NODE_DELETED,
                                            v1::NODE_DATA_CHANGED, v1::NODE_CHILDREN_CHANGED};
  const std::vector<v1::WatchKind> kinds = {v1::DATA_WATCH, v1::CHILD_WATCH, v1::PERSISTENT_WATCH,
                                            v1::PERSISTENT_RECURSIVE_WATCH};
  for (const std::string& watch_path : paths) {
    for (v1::WatchKind kind : kinds) {
      for (const std::string& path : paths) {
        for (v1::EventType type : types) {
          WatchRegistry registry;
          registry.Add(SessionId(1), watch_path, kind);
          std::vector<Delivery> out;
          registry.Trigger(T(type, path), Zxid(1, 1), &out);
          EXPECT_EQ(!out.empty(), Matches(kind, watch_path, type, path))
              << v1::WatchKind_Name(kind) << " on " << watch_path << ", "
              << v1::EventType_Name(type) << " at " << path;
        }
      }
    }
  }
}

}  // namespace
}  // namespace confab::watches
