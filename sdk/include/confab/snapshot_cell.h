// SnapshotCell<T>: one value that writers replace now and then and readers read often, with no
// lock and no allocation on the read side (read-copy-update). It backs ConfigCache::Bind.
//
//   Publish(value)  moves the value into a new immutable heap node, makes it current with one
//                   atomic exchange and retires the node it replaced. Writers are serialized by the
//                   cell's mutex; they never wait for readers.
//   Read()          returns a ReadGuard on the node current when the read began: a const T that
//                   stays valid, unchanged, until the guard is destroyed, whatever is published
//                   meanwhile. A read costs two atomic loads and an increment and decrement of a
//                   shared counter: no lock, no allocation, no system call.
//
// Reclamation (why a retired node is never freed under a reader): a reader announces itself in
// one of two counters, chosen by the parity of the cell's epoch, BEFORE it loads the current node
// (every step sequentially consistent). The epoch advances, at a publish, only when the counter of
// the other parity reads zero. A node retired at epoch e is freed once the epoch reaches e + 2:
// both counters have then been seen at zero after the node stopped being current, and every
// reader that could have loaded it had announced itself before that. A guard held for long only
// delays freeing (one node per publish meanwhile); it never blocks a writer.
//
// A ReadGuard must not outlive its cell, and is used by one thread at a time.
#ifndef CONFAB_SNAPSHOT_CELL_H_
#define CONFAB_SNAPSHOT_CELL_H_

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace confab {

template <typename T>
class SnapshotCell {
 public:
  class ReadGuard {
   public:
    ReadGuard(ReadGuard&& other) noexcept
        : value_(other.value_), readers_(std::exchange(other.readers_, nullptr)) {}
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;
    ReadGuard& operator=(ReadGuard&&) = delete;
    ~ReadGuard() {
      if (readers_ != nullptr) readers_->fetch_sub(1, std::memory_order_release);
    }

    const T& operator*() const { return *value_; }
    const T* operator->() const { return value_; }

   private:
    friend class SnapshotCell;
    ReadGuard(const T* value, std::atomic<int64_t>* readers) : value_(value), readers_(readers) {}

    const T* value_;
    std::atomic<int64_t>* readers_;
  };

  explicit SnapshotCell(T initial) : current_(new T(std::move(initial))) {}
  ~SnapshotCell() {
    delete current_.load();
    for (const Retired& r : retired_) delete r.value;
  }
  SnapshotCell(const SnapshotCell&) = delete;
  SnapshotCell& operator=(const SnapshotCell&) = delete;

  ReadGuard Read() const {
    std::atomic<int64_t>& readers = readers_[epoch_.load() & 1].count;
    readers.fetch_add(1);
    return ReadGuard(current_.load(), &readers);
  }

  void Publish(T value) {
    const T* fresh = new T(std::move(value));
    absl::MutexLock lock(&mu_);
    retired_.push_back(Retired{current_.exchange(fresh), epoch_.load()});
    for (int step = 0; step < 2; ++step) {
      const uint64_t epoch = epoch_.load();
      if (readers_[(epoch + 1) & 1].count.load() != 0) break;
      epoch_.store(epoch + 1);
    }
    const uint64_t epoch = epoch_.load();
    std::erase_if(retired_, [epoch](const Retired& r) {
      if (r.epoch + 2 > epoch) return false;
      delete r.value;
      return true;
    });
  }

  // Retired nodes not freed yet (tests).
  size_t RetiredForTesting() const {
    absl::MutexLock lock(&mu_);
    return retired_.size();
  }

 private:
  struct alignas(64) Readers {  // one cache line each: readers of both parities do not collide
    std::atomic<int64_t> count{0};
  };
  struct Retired {
    const T* value;
    uint64_t epoch;  // the epoch when it stopped being current
  };

  mutable Readers readers_[2];
  alignas(64) std::atomic<uint64_t> epoch_{0};
  std::atomic<const T*> current_;
  mutable absl::Mutex mu_;
  std::vector<Retired> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace confab

#endif  // CONFAB_SNAPSHOT_CELL_H_
