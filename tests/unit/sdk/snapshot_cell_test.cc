// SnapshotCell (sdk/include/confab/snapshot_cell.h): a reader sees one whole published value that
// stays valid while it reads, writers never wait for readers, and replaced values are freed once
// no reader can hold them. Run under ASan (the unit label), the concurrent test also checks that
// no value is freed under a reader.
#include "confab/snapshot_cell.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace confab {
namespace {

// A value whose parts must agree: a torn or freed read breaks that.
struct Versioned {
  int64_t number = 0;
  std::string text = "0";  // heap-allocated once long enough: a freed one shows under ASan
  int64_t check = 0;

  static Versioned Of(int64_t n) {
    return Versioned{n, absl::StrCat(n, "-padding-past-the-small-string-buffer"), -n};
  }
};

TEST(SnapshotCellTest, ReadsTheLatestPublishedValue) {
  SnapshotCell<std::string> cell("first");
  EXPECT_EQ(*cell.Read(), "first");
  cell.Publish("second");
  EXPECT_EQ(*cell.Read(), "second");
  EXPECT_EQ(cell.Read()->size(), 6u);
}

TEST(SnapshotCellTest, AGuardKeepsItsValueAndDelaysOnlyFreeing) {
  SnapshotCell<std::string> cell("held");
  {
    SnapshotCell<std::string>::ReadGuard guard = cell.Read();
    for (int i = 0; i < 100; ++i) cell.Publish(absl::StrCat("value ", i));  // never waits
    EXPECT_EQ(*guard, "held");
    EXPECT_EQ(*cell.Read(), "value 99");
    EXPECT_GE(cell.RetiredForTesting(), 99u) << "nothing a reader may hold is freed";
  }
  cell.Publish("after");
  EXPECT_EQ(cell.RetiredForTesting(), 0u) << "the next publish frees what no reader holds";
  EXPECT_EQ(*cell.Read(), "after");
}

TEST(SnapshotCellTest, MovedGuardLeavesOnce) {
  SnapshotCell<int> cell(1);
  {
    SnapshotCell<int>::ReadGuard first = cell.Read();
    SnapshotCell<int>::ReadGuard moved = std::move(first);
    EXPECT_EQ(*moved, 1);
  }
  cell.Publish(2);
  cell.Publish(3);
  EXPECT_EQ(cell.RetiredForTesting(), 0u);
}

TEST(SnapshotCellTest, ConcurrentReadersSeeWholeValuesInOrder) {
  constexpr int kReaders = 3;
  constexpr int64_t kPublishes = 20000;
  SnapshotCell<Versioned> cell(Versioned::Of(0));
  std::atomic<bool> done{false};
  std::atomic<int64_t> bad{0};
  std::atomic<int64_t> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&] {
      int64_t last = 0;
      while (!done.load()) {
        SnapshotCell<Versioned>::ReadGuard v = cell.Read();
        const bool whole = v->check == -v->number && v->text == Versioned::Of(v->number).text;
        if (!whole || v->number < last) bad.fetch_add(1);
        last = v->number;
        reads.fetch_add(1);
      }
    });
  }
  // At least kPublishes, and on until the readers (maybe scheduled late on a busy machine) have
  // read many times while values changed under them.
  int64_t published = 0;
  while (published < kPublishes || reads.load() < 1000) cell.Publish(Versioned::Of(++published));
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(cell.Read()->number, published);
  cell.Publish(Versioned::Of(published + 1));
  EXPECT_EQ(cell.RetiredForTesting(), 0u);
}

}  // namespace
}  // namespace confab
