// Facts about requests that the server and the client libraries must agree on.
#ifndef CONFAB_SERVER_COMMON_REQUESTS_H_
#define CONFAB_SERVER_COMMON_REQUESTS_H_

#include "confab/v1/coordination.pb.h"

namespace confab {

// Writes change the replicated state (and are not idempotent: a client may not resend one whose
// outcome it does not know). Everything else on a session stream is a read or session upkeep.
inline bool IsWriteRequest(v1::SessionRequest::RequestCase kind) {
  switch (kind) {
    case v1::SessionRequest::kCreate:
    case v1::SessionRequest::kSet:
    case v1::SessionRequest::kDelete:
    case v1::SessionRequest::kMulti:
    case v1::SessionRequest::kClose:
      return true;
    default:
      return false;
  }
}

}  // namespace confab

#endif  // CONFAB_SERVER_COMMON_REQUESTS_H_
