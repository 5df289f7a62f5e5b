// Deleting a node a recipe owns (its lock or candidate node: an ephemeral only its creator ever
// names). Unlike a Delete in general, repeating it is always safe, so a reply lost to a failover
// is retried instead of leaving a node that would block every other contender while the session
// lives.
#ifndef CONFAB_SDK_SRC_RECIPES_OWN_NODE_H_
#define CONFAB_SDK_SRC_RECIPES_OWN_NODE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "confab/client.h"

namespace confab {

// Deletes `path`, retrying while the outcome is unknown (UNAVAILABLE), for up to `timeout`. A node
// already gone (NO_NODE) or a session already closed (SESSION_EXPIRED, which took the ephemeral
// with it) is success.
absl::Status DeleteOwnNode(Client& client, const std::string& path,
                           absl::Duration timeout = absl::Seconds(30));

}  // namespace confab

#endif  // CONFAB_SDK_SRC_RECIPES_OWN_NODE_H_
