// PeerTransport carries batches of peer envelopes between ensemble members over gRPC, and streams
// snapshot files for SNAP synchronization.
//
// Each member runs the Peer service on its peer address and opens one client stream to every other
// member, written with gRPC's callback API: Send starts a write at once when the stream is idle,
// and each write's completion takes everything queued meanwhile as one PeerBatch (batching at the
// transport layer, under the core's own batching of proposals), so no thread wakes per message.
// One maintenance thread opens streams once their peers are reachable, reconnects with a short
// backoff, and keeps idle links carrying this member's report. The batch being written when a
// stream breaks is lost as on a network, and what is queued waits for the next stream within the
// queue's bounds. ZAB's checks (prev_zxid on every append, epochs, ticks) recover from loss and
// ignore what is stale.
//
// It owns no protocol state and never blocks its callers: Send queues (bounded) and at most starts
// a write, and received batches go to the handler on gRPC threads, which must only queue them.
#ifndef CONFAB_SERVER_RPC_PEER_TRANSPORT_H_
#define CONFAB_SERVER_RPC_PEER_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "confab/internal/peer_service.pb.h"
#include "server/common/types.h"
#include "server/pipeline/peer_network.h"

namespace grpc {
class Server;
}

namespace confab::rpc {

struct PeerEndpoint {
  MemberId id;
  std::string address;  // host:port of its Peer service
};

class PeerTransport final : public pipeline::PeerNetwork {
 public:
  // Envelopes queued for one peer beyond these bounds are dropped (a peer that does not read is
  // as good as gone; the protocol resynchronizes it when it is back).
  static constexpr size_t kQueueEnvelopesMax = 100'000;
  static constexpr size_t kQueueBytesMax = 256 << 20;
  static constexpr size_t kBatchBytesMax = 8 << 20;  // per PeerBatch written
  static constexpr size_t kSnapshotChunkBytes = 1 << 20;

  // Called on gRPC threads with each batch received; must only queue it.
  using BatchHandler = std::function<void(internal::PeerBatch batch)>;
  // The path of this member's snapshot file at `zxid`, or NOT_FOUND.
  using SnapshotLocator = std::function<absl::StatusOr<std::string>(Zxid zxid)>;
  // This member's report, asked every 50 ms and sent on the next batch to each peer (an idle link
  // writes it at least twice a second).
  using ReportSource = std::function<internal::MemberReport()>;

  // `members` lists every member, this one included (its address is where it listens).
  PeerTransport(MemberId self, std::vector<PeerEndpoint> members);
  ~PeerTransport() override;  // Stop()s

  // Starts the Peer service on this member's address and the maintenance thread. The handlers
  // are set before any batch can arrive; `report` is asked on the maintenance thread.
  absl::Status Start(BatchHandler on_batch, SnapshotLocator locate_snapshot, ReportSource report);
  // Ends the streams and threads. Idempotent.
  void Stop();

  // pipeline::PeerNetwork.
  void Send(MemberId to, std::vector<internal::PeerEnvelope> envelopes) override;
  absl::Status FetchSnapshot(MemberId from, Zxid zxid, const std::string& path) override;
  std::vector<pipeline::PeerLinkStatus> Links() const override;

 private:
  class Link;
  class Service;

  Link* LinkTo(MemberId id) const;
  void Maintain();  // the maintenance thread

  const MemberId self_;
  std::string listen_address_;
  std::vector<std::unique_ptr<Link>> links_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  ReportSource report_;
  std::thread maintenance_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ = false;
};

}  // namespace confab::rpc

#endif  // CONFAB_SERVER_RPC_PEER_TRANSPORT_H_
