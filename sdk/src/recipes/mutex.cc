#include "confab/mutex.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "confab/service_registry.h"
#include "sdk/src/recipes/own_node.h"

namespace confab {

namespace {

// Set by the predecessor's watch (on the callback thread); waited on by Lock().
struct Wakeup {
  absl::Mutex mu;
  bool fired ABSL_GUARDED_BY(mu) = false;
};

}  // namespace

Mutex::Mutex(Client* client, std::string lock_path)
    : client_(client), lock_path_(std::move(lock_path)) {}

Mutex::~Mutex() {
  if (IsHeld()) Unlock().IgnoreError();
}

absl::StatusOr<int64_t> Mutex::Lock(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (busy_)
      return absl::FailedPreconditionError(
          absl::StrCat("Mutex ", lock_path_, " is already held or acquiring"));
    busy_ = true;
  }
  const absl::Time deadline = absl::Now() + timeout;
  auto fail = [&](absl::Status status, const std::string& node) {
    // Left behind, the node would block every later contender for as long as the session lives.
    if (!node.empty()) DeleteOwnNode(*client_, node).IgnoreError();
    absl::MutexLock lock(&mu_);
    busy_ = false;
    waiting_on_.clear();
    return status;
  };
  // The create gets at least a few seconds, so that a nearly expired Lock still finds (and
  // deletes) a node whose reply was lost.
  auto created =
      CreateProtected(*client_, lock_path_, "lock-", "", CreateMode::kEphemeralSequential, "",
                      std::max(absl::Seconds(3), deadline - absl::Now()));
  if (!created.ok()) return fail(created.status(), "");
  const std::string node = created->path;
  const std::string name = node.substr(node.rfind('/') + 1);
  const int64_t my_sequence = SequenceOf(name);
  while (true) {
    auto children = client_->GetChildren(lock_path_);
    if (!children.ok()) return fail(children.status(), node);
    std::vector<std::pair<int64_t, std::string>> contenders;
    for (const std::string& child : children->names) {
      const int64_t sequence = SequenceOf(child);
      if (sequence >= 0) contenders.emplace_back(sequence, child);
    }
    std::sort(contenders.begin(), contenders.end());
    auto mine = std::find(contenders.begin(), contenders.end(), std::make_pair(my_sequence, name));
    if (mine == contenders.end()) {
      return fail(absl::AbortedError(absl::StrCat("lock node ", node,
                                                  " vanished (session lost?) while acquiring")),
                  "");
    }
    if (mine == contenders.begin()) {
      absl::MutexLock lock(&mu_);
      node_ = node;
      token_ = created->stat.czxid;
      waiting_on_.clear();
      return token_;
    }
    const std::string predecessor = JoinPath(lock_path_, std::prev(mine)->second);
    auto wakeup = std::make_shared<Wakeup>();
    auto exists = client_->Exists(predecessor, [wakeup](const WatchEvent&) {
      absl::MutexLock lock(&wakeup->mu);
      wakeup->fired = true;
    });
    if (!exists.ok()) return fail(exists.status(), node);
    if (!exists->has_value()) continue;  // gone already: look again
    {
      absl::MutexLock lock(&mu_);
      waiting_on_ = predecessor;
    }
    // The watch fires on deletion (or, after a reconnect without history, a synthesized event);
    // a look every 10 s is a safety net for a watch dropped with a lost session.
    bool fired = false;
    {
      absl::MutexLock lock(&wakeup->mu);
      const absl::Time until = std::min(deadline, absl::Now() + absl::Seconds(10));
      fired = wakeup->mu.AwaitWithDeadline(absl::Condition(&wakeup->fired), until);
    }
    if (!fired && absl::Now() >= deadline) {
      return fail(absl::DeadlineExceededError(absl::StrCat(
                      "lock ", lock_path_, " not acquired within ", absl::FormatDuration(timeout))),
                  node);
    }
  }
}

absl::Status Mutex::Unlock() {
  std::string node;
  {
    absl::MutexLock lock(&mu_);
    if (node_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("Mutex ", lock_path_, " is not held"));
    }
    node = node_;
  }
  if (absl::Status status = DeleteOwnNode(*client_, node); !status.ok()) return status;
  absl::MutexLock lock(&mu_);
  node_.clear();
  token_ = 0;
  busy_ = false;
  return absl::OkStatus();
}

bool Mutex::IsHeld() const {
  absl::MutexLock lock(&mu_);
  return !node_.empty();
}

std::string Mutex::node_path() const {
  absl::MutexLock lock(&mu_);
  return node_;
}

int64_t Mutex::fencing_token() const {
  absl::MutexLock lock(&mu_);
  return token_;
}

absl::StatusOr<Op> Mutex::FenceOp() const {
  absl::MutexLock lock(&mu_);
  if (node_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("Mutex ", lock_path_, " is not held"));
  }
  return Op::Check(node_, 0);
}

std::string Mutex::WaitingOn() const {
  absl::MutexLock lock(&mu_);
  return waiting_on_;
}

}  // namespace confab
