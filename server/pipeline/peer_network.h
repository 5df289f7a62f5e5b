// PeerNetwork is what the replication shell needs of the transport between members: queue an
// envelope for a member, fetch a snapshot file from one, and say what each link last heard. The
// server implements it over gRPC (server/rpc/peer_transport.h); the pipeline never sees gRPC.
#ifndef CONFAB_SERVER_PIPELINE_PEER_NETWORK_H_
#define CONFAB_SERVER_PIPELINE_PEER_NETWORK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "confab/internal/peer_service.pb.h"
#include "server/common/types.h"

namespace confab::pipeline {

struct PeerLinkStatus {
  MemberId id;
  std::string peer_address;
  bool connected = false;         // the outgoing stream is up
  int64_t last_heard_ms = 0;      // wall clock of the last batch received from it; 0: never
  internal::MemberReport report;  // what its last batch said of it
};

class PeerNetwork {
 public:
  virtual ~PeerNetwork() = default;
  // Queues `envelopes` for member `to`, in order; never blocks. Envelopes to one member arrive in
  // the order sent, or not at all (dropped while the link is down). Callers hand over everything
  // they have for a member at once: the link's sender wakes once for all of it.
  virtual void Send(MemberId to, std::vector<internal::PeerEnvelope> envelopes) = 0;
  // Blocking: copies member `from`'s snapshot file at `zxid` to `path` (written durably).
  virtual absl::Status FetchSnapshot(MemberId from, Zxid zxid, const std::string& path) = 0;
  virtual std::vector<PeerLinkStatus> Links() const = 0;
};

}  // namespace confab::pipeline

#endif  // CONFAB_SERVER_PIPELINE_PEER_NETWORK_H_
