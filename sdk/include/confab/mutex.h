// confab::Mutex: a distributed lock on confab::Client, with the layout of the Python binding's
// Mutex (bindings/python/README.md, "Recipes"), which is Curator's InterProcessMutex:
//
//   <lock_path>                               persistent (created on demand)
//   <lock_path>/_c_<uuid>-lock-<10 digits>    EPHEMERAL_SEQUENTIAL, one per contender
//
// The contender with the lowest sequence number holds the lock. Every other contender watches
// only its predecessor (a one-shot Exists watch) and looks again when that goes: no herd. C++ and
// Python contenders on the same path exclude each other.
//
// Fencing: Lock() returns a token, the holder's lock node czxid: it increases from one holder to
// the next. FenceOp() is a Multi op (a Check of the lock node at version 0) to put before a
// guarded write: once the lock node is gone (Unlock, or the session expired while the holder was
// paused) the Multi fails with NO_NODE and the write is not applied.
//
// Not re-entrant: Lock() on a Mutex that is held (or being acquired) fails with
// FAILED_PRECONDITION. One Mutex object is one contender: threads of a process that contend with
// each other use a Mutex object each (they may share the Client). The Mutex's methods may be
// called from any thread, but not Lock() from a Client callback (it waits for watch events,
// which run on that thread).
//
// Ownership: borrows the Client (it must outlive the Mutex); owns its lock node while held or
// acquiring. Destruction unlocks. After LOST the lock node is gone with the session: the Mutex
// no longer holds anything (Unlock then succeeds), and the application builds a new Client.
#ifndef CONFAB_MUTEX_H_
#define CONFAB_MUTEX_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "confab/client.h"

namespace confab {

class Mutex {
 public:
  Mutex(Client* client, std::string lock_path);
  ~Mutex();  // Unlock(), errors ignored
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // Waits up to `timeout` for the lock; returns the fencing token (the lock node's czxid).
  // DEADLINE_EXCEEDED on timeout (its node is then deleted); FAILED_PRECONDITION if this Mutex
  // is already held or being acquired; a Client error otherwise.
  absl::StatusOr<int64_t> Lock(absl::Duration timeout = absl::InfiniteDuration());

  // Deletes the lock node, retrying through a failover (a lock node left behind would block
  // every other contender while the session lives). FAILED_PRECONDITION if not held. A node
  // already gone (the session was lost) is success; UNAVAILABLE after 30 s without an answer
  // (the Mutex is then still held: call Unlock again).
  absl::Status Unlock();

  bool IsHeld() const;
  std::string node_path() const;  // the lock node while held, else empty
  int64_t fencing_token() const;  // while held, else 0

  // A Check op on the lock node (version 0) that makes a Multi fail unless this holder's lock
  // node still exists. FAILED_PRECONDITION if not held.
  absl::StatusOr<Op> FenceOp() const;

  // For tests and diagnostics: the predecessor node Lock() is currently waiting on, else empty.
  std::string WaitingOn() const;

 private:
  Client* client_;
  std::string lock_path_;
  mutable absl::Mutex mu_;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // held or being acquired
  std::string node_ ABSL_GUARDED_BY(mu_);   // set while held
  int64_t token_ ABSL_GUARDED_BY(mu_) = 0;
  std::string waiting_on_ ABSL_GUARDED_BY(mu_);
};

}  // namespace confab

#endif  // CONFAB_MUTEX_H_
