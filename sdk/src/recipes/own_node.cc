#include "sdk/src/recipes/own_node.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "server/common/errors.h"

namespace confab {

absl::Status DeleteOwnNode(Client& client, const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = absl::Milliseconds(20);
  for (;;) {
    absl::Status status = client.Delete(path);
    const v1::ErrorCode code = ErrorCodeOf(status);
    if (status.ok() || code == v1::NO_NODE || code == v1::SESSION_EXPIRED) {
      return absl::OkStatus();
    }
    if (code != v1::UNAVAILABLE || absl::Now() + backoff > deadline) return status;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

}  // namespace confab
