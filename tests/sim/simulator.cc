#include "tests/sim/simulator.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "confab/internal/txn.pb.h"
#include "server/tree/data_tree.h"
#include "server/zab/member.h"
#include "tests/sim/linearizability.h"
#include "tests/sim/sim_disk.h"

namespace confab::sim {
namespace {

using internal::LogEntry;
using internal::PeerMessage;

constexpr int64_t kMs = 1'000;  // simulated time is in microseconds
constexpr int64_t kTickUs = 20 * kMs;
// After the faults stop, the ensemble must converge within this.
constexpr int64_t kQuietUsMax = 60'000 * kMs;
constexpr int64_t kConvergenceCheckUs = 50 * kMs;
constexpr int64_t kSyncedReadTimeoutUs = 2'000 * kMs;
// Readys carried out for one event; more means the core and the simulator feed each other forever.
constexpr int kReadysPerEventMax = 10'000;
constexpr size_t kTraceLinesPerMemberMax = 40;
// ZOOKEEPER-3911's scenario: a quorum loses power right after a NEWLEADER is acknowledged.
constexpr double kCrashAfterNewLeaderAck = 0.03;

// What one seed's run looks like: drawn first, in a fixed order, from the seed.
struct Scenario {
  int members = 3;
  int clients = 3;
  int keys = 3;
  int64_t fault_phase_us = 0;
  int64_t fault_gap_us_max = 0;  // mean time between faults is about half of this
  double drop = 0;               // per message
  double duplicate = 0;
  double reorder = 0;      // a message may overtake earlier ones on its link
  int snapshot_every = 0;  // applied entries between a member's snapshots
  zab::Config config;      // id, members and seed are per member
};

struct Envelope {
  PeerMessage message;
  std::shared_ptr<const TreeImage> snapshot;  // streamed with a SNAP
};

struct SimMember {
  int id = 0;
  SimDisk disk;  // survives crashes
  std::unique_ptr<zab::Member> core;
  std::unique_ptr<tree::DataTree> tree;
  bool up = false;
  bool paused = false;
  int incarnation = 0;
  int64_t tick_us = kTickUs;  // its clock runs a little fast or slow
  bool sync_in_flight = false;
  int64_t slow_disk_until_us = 0;
  std::shared_ptr<const TreeImage> arriving_snapshot;  // with the SNAP being stepped
  std::optional<Zxid> pending_install;
  std::vector<std::function<void()>> held;   // what reached it while paused, in order
  std::map<int64_t, size_t> pending_writes;  // as leader: zxid -> client op
  std::vector<size_t> waiting_reads;         // synced reads waiting for their zxid
  std::vector<size_t> confirming_reads;      // as leader: synced reads waiting for their round
  uint64_t leadership_confirmed = 0;         // the last Ready::leadership_confirmed
  int applied_since_snapshot = 0;
};

struct ClientOp {
  Operation op;
  enum class State { kPending, kDone, kAbandoned } state = State::kPending;
  Zxid zxid;           // writes: as assigned by the leader
  Zxid sync_zxid;      // synced reads: the leader's commit when issued
  uint64_t round = 0;  // synced reads: the leadership round that must be confirmed first
  int leader = 0;      // synced reads: the leader asked
  int member = 0;      // where it was issued (writes: the leader)
};

struct SimClient {
  int id = 0;
  int member = 1;
  std::vector<int32_t> version_hint;               // per key: the last version it saw
  std::map<std::pair<int, int>, Zxid> local_seen;  // (member, incarnation) -> last read zxid
};

// A committed transaction, as the first member that applied it saw it.
struct HistoryEntry {
  Zxid zxid;
  std::string payload;
  uint64_t digest = 0;  // of the tree after it
  std::string result;   // serialized TxnResult
};

struct Event {
  int64_t time_us;
  uint64_t sequence;
  std::function<void()> run;
};

bool Later(const Event& a, const Event& b) {
  return std::tie(a.time_us, a.sequence) > std::tie(b.time_us, b.sequence);
}

std::string KeyPath(int key) { return absl::StrCat("/k", key); }

// Client data is "w<op>": the write that set it.
int64_t DataId(absl::string_view data) {
  int64_t id = -1;
  if (data.size() > 1 && data[0] == 'w' && absl::SimpleAtoi(data.substr(1), &id)) return id;
  return -1;
}

std::string ZxidString(int64_t zxid) { return Zxid::FromInt(zxid).ToString(); }

std::string EntryRange(const google::protobuf::RepeatedPtrField<LogEntry>& entries) {
  if (entries.empty()) return "[]";
  return absl::StrCat("[", ZxidString(entries.begin()->zxid()), "..",
                      ZxidString(entries.rbegin()->zxid()), "]");
}

std::string Describe(const PeerMessage& m) {
  std::string body;
  switch (m.body_case()) {
    case PeerMessage::kVote:
      body = absl::StrCat("VOTE round ", m.vote().round(), " for ", m.vote().leader(), " (e",
                          m.vote().epoch(), " ", ZxidString(m.vote().zxid()), ") ",
                          internal::MemberState_Name(m.vote().state()));
      break;
    case PeerMessage::kFollowerInfo:
      body = absl::StrCat("FOLLOWERINFO accepted e", m.follower_info().accepted_epoch(), " last ",
                          ZxidString(m.follower_info().last_zxid()));
      break;
    case PeerMessage::kLeaderInfo:
      body = absl::StrCat("LEADERINFO e", m.leader_info().new_epoch());
      break;
    case PeerMessage::kAckEpoch:
      body = absl::StrCat("ACKEPOCH current e", m.ack_epoch().current_epoch(), " last ",
                          ZxidString(m.ack_epoch().last_zxid()));
      break;
    case PeerMessage::kTrunc:
      body = absl::StrCat("TRUNC to ", ZxidString(m.trunc().zxid()), " from ",
                          ZxidString(m.trunc().prev_zxid()));
      break;
    case PeerMessage::kSnap:
      body = absl::StrCat("SNAP at ", ZxidString(m.snap().zxid()), " from ",
                          ZxidString(m.snap().prev_zxid()));
      break;
    case PeerMessage::kDiff:
      body = absl::StrCat("DIFF after ", ZxidString(m.diff().prev_zxid()), " ",
                          EntryRange(m.diff().entries()));
      break;
    case PeerMessage::kNewLeader:
      body = absl::StrCat("NEWLEADER e", m.new_leader().epoch(), " at ",
                          ZxidString(m.new_leader().last_zxid()));
      break;
    case PeerMessage::kAckNewLeader:
      body = absl::StrCat("ACK-NEWLEADER e", m.ack_new_leader().epoch(), " at ",
                          ZxidString(m.ack_new_leader().last_zxid()));
      break;
    case PeerMessage::kUpToDate:
      body = absl::StrCat("UPTODATE committed ", ZxidString(m.up_to_date().committed_zxid()));
      break;
    case PeerMessage::kProposal:
      body = absl::StrCat("PROPOSAL after ", ZxidString(m.proposal().prev_zxid()), " ",
                          EntryRange(m.proposal().entries()));
      break;
    case PeerMessage::kAck:
      body = absl::StrCat("ACK ", ZxidString(m.ack().zxid()));
      break;
    case PeerMessage::kCommit:
      body = absl::StrCat("COMMIT ", ZxidString(m.commit().zxid()));
      break;
    case PeerMessage::kPing:
      body = absl::StrCat("PING committed ", ZxidString(m.ping().committed_zxid()));
      break;
    case PeerMessage::kPong:
      body = absl::StrCat("PONG durable ", ZxidString(m.pong().durable_zxid()));
      break;
    case PeerMessage::BODY_NOT_SET:
      body = "EMPTY";
      break;
  }
  return absl::StrCat("m", m.from(), "->m", m.to(), " e", m.epoch(), " ", body);
}

class Simulation {
 public:
  explicit Simulation(const SimulationOptions& options)
      : seed_(options.seed), trace_(options.trace), rng_(options.seed) {}

  SimulationResult Run() {
    DrawScenario();
    drop_ = scenario_.drop;
    duplicate_ = scenario_.duplicate;
    reorder_ = scenario_.reorder;
    members_.resize(static_cast<size_t>(scenario_.members) + 1);
    links_.assign(members_.size(), std::vector<bool>(members_.size(), true));
    link_clock_us_.assign(members_.size(), std::vector<int64_t>(members_.size(), 0));
    for (int id = 1; id <= scenario_.members; ++id) {
      SimMember& m = member(id);
      m.id = id;
      // Clocks drift by up to 2%.
      m.tick_us = kTickUs + Uniform(-kTickUs / 50, kTickUs / 50);
      Start(m);
    }
    for (int id = 1; id <= scenario_.clients; ++id) {
      SimClient& client = clients_.emplace_back();
      client.id = id;
      client.member = static_cast<int>(Uniform(1, scenario_.members));
      client.version_hint.assign(static_cast<size_t>(scenario_.keys), 0);
      After(Uniform(0, 50 * kMs), [this, id] { IssueClientOp(id); });
    }
    ScheduleFault();
    At(scenario_.fault_phase_us, [this] { StopFaults(); });

    while (!events_.empty() && failure_.empty() && !converged_) {
      std::pop_heap(events_.begin(), events_.end(), Later);
      Event event = std::move(events_.back());
      events_.pop_back();
      now_us_ = event.time_us;
      event.run();
    }
    if (failure_.empty() && !converged_) Fail("the event queue ran dry before convergence");
    if (failure_.empty()) FinalChecks();
    stats_.simulated_ms = now_us_ / kMs;
    stats_.history_length = static_cast<int64_t>(history_.size());
    SimulationResult result;
    result.stats = stats_;
    result.failure = failure_;
    return result;
  }

 private:
  // ------------------------------------------------------------------------------------------
  // Randomness and time.

  int64_t Uniform(int64_t low, int64_t high) {
    return low + static_cast<int64_t>(rng_() % static_cast<uint64_t>(high - low + 1));
  }
  // From the top 53 bits, not std::uniform_real_distribution: its algorithm differs between
  // standard libraries, and a seed must replay the same everywhere.
  bool Chance(double p) { return static_cast<double>(rng_() >> 11) * 0x1.0p-53 < p; }

  void At(int64_t time_us, std::function<void()> run) {
    events_.push_back(Event{std::max(time_us, now_us_), next_sequence_++, std::move(run)});
    std::push_heap(events_.begin(), events_.end(), Later);
  }
  void After(int64_t delay_us, std::function<void()> run) {
    At(now_us_ + delay_us, std::move(run));
  }

  void DrawScenario() {
    Scenario& s = scenario_;
    s.members = Chance(0.5) ? 3 : 5;
    s.clients = static_cast<int>(Uniform(2, 5));
    s.keys = static_cast<int>(Uniform(2, 5));
    s.fault_phase_us = Uniform(2'000, 8'000) * kMs;
    s.fault_gap_us_max = Uniform(150, 1'500) * kMs;
    s.drop = Chance(0.3) ? 0 : static_cast<double>(Uniform(0, 50)) / 1000;
    s.duplicate = Chance(0.5) ? 0 : static_cast<double>(Uniform(0, 30)) / 1000;
    s.reorder = Chance(0.5) ? 0 : static_cast<double>(Uniform(0, 200)) / 1000;
    s.snapshot_every = static_cast<int>(Uniform(3, 60));
    s.config.election_timeout_ticks = static_cast<int>(Uniform(5, 15));
    s.config.vote_resend_ticks = static_cast<int>(Uniform(1, 3));
    s.config.sync_limit_ticks = static_cast<int>(Uniform(5, 15));
    s.config.init_limit_ticks = static_cast<int>(Uniform(s.config.sync_limit_ticks, 30));
    s.config.heartbeat_ticks = static_cast<int>(Uniform(1, 3));
    s.config.diff_entries_max = static_cast<size_t>(Uniform(2, 100));
    s.config.proposal_entries_max = static_cast<size_t>(Uniform(1, 32));
    for (int id = 1; id <= s.members; ++id) {
      s.config.members.push_back(MemberId(static_cast<uint32_t>(id)));
    }
    if (Tracing()) {
      Trace(absl::StrCat("seed ", seed_, ": ", s.members, " members, ", s.clients, " clients, ",
                         s.keys, " keys, faults for ", s.fault_phase_us / kMs,
                         " ms (one per <= ", s.fault_gap_us_max / kMs, " ms), drop ", s.drop,
                         ", duplicate ", s.duplicate, ", reorder ", s.reorder, ", snapshot every ",
                         s.snapshot_every, "; ticks: election ", s.config.election_timeout_ticks,
                         ", vote resend ", s.config.vote_resend_ticks, ", sync limit ",
                         s.config.sync_limit_ticks, ", init limit ", s.config.init_limit_ticks,
                         ", heartbeat ", s.config.heartbeat_ticks, "; diff_entries_max ",
                         s.config.diff_entries_max, ", proposal_entries_max ",
                         s.config.proposal_entries_max));
    }
  }

  int64_t NetworkDelayUs() {
    if (Chance(0.05)) return Uniform(5 * kMs, 60 * kMs);  // a slow path
    return Uniform(100, 3 * kMs);
  }
  int64_t FsyncDelayUs(const SimMember& m) {
    if (now_us_ < m.slow_disk_until_us) return Uniform(20 * kMs, 200 * kMs);
    return Uniform(200, 8 * kMs);
  }

  bool Tracing() const { return trace_ != nullptr; }
  void Trace(absl::string_view line) {
    *trace_ << absl::StrFormat("%10.3fms ", static_cast<double>(now_us_) / kMs) << line << '\n';
  }

  // ------------------------------------------------------------------------------------------
  // Members: start, crash, pause, and carrying out Readys.

  SimMember& member(int id) { return members_[static_cast<size_t>(id)]; }
  bool Available(const SimMember& m) const { return m.up && !m.paused; }
  int Minority() const { return (scenario_.members - 1) / 2; }
  int DownCount() {
    int down = 0;
    for (int id = 1; id <= scenario_.members; ++id) down += member(id).up ? 0 : 1;
    return down;
  }

  // Runs `run` on member `id` if it is still the same incarnation; held while it is paused.
  std::function<void()> OnMember(int id, int incarnation, std::function<void()> run) {
    return [this, id, incarnation, run = std::move(run)]() mutable {
      SimMember& m = member(id);
      if (!m.up || m.incarnation != incarnation) return;
      if (m.paused) {
        m.held.push_back(std::move(run));
        return;
      }
      run();
    };
  }

  void Start(SimMember& m) {
    m.up = true;
    if (m.disk.snapshot()) {
      absl::StatusOr<std::unique_ptr<tree::DataTree>> tree = LoadTree(*m.disk.snapshot());
      if (!tree.ok()) {
        Fail(absl::StrCat("member ", m.id, " cannot load its snapshot: ", tree.status().message()));
        return;
      }
      m.tree = *std::move(tree);
    } else {
      m.tree = std::make_unique<tree::DataTree>();
    }
    CheckLoadedTree(m, "restart");
    m.applied_since_snapshot = 0;
    zab::Config config = scenario_.config;
    config.id = MemberId(static_cast<uint32_t>(m.id));
    config.seed = seed_ * 1'000'003 + static_cast<uint64_t>(m.id) * 7'919 +
                  static_cast<uint64_t>(m.incarnation);
    m.core = std::make_unique<zab::Member>(config, m.disk.epochs(), &m.disk);
    if (Tracing()) {
      Trace(absl::StrCat("start m", m.id, " (incarnation ", m.incarnation, "): epochs ",
                         m.disk.epochs().accepted_epoch, "/", m.disk.epochs().current_epoch,
                         ", snapshot ", m.disk.SnapshotZxid().ToString(), ", log to ",
                         m.disk.LastZxid().ToString()));
    }
    const int id = m.id;
    const int incarnation = m.incarnation;
    After(Uniform(0, m.tick_us), [this, id, incarnation] { Tick(id, incarnation); });
    Process(m);
  }

  void Tick(int id, int incarnation) {
    SimMember& m = member(id);
    if (!m.up || m.incarnation != incarnation) return;
    After(m.tick_us, [this, id, incarnation] { Tick(id, incarnation); });
    if (m.paused) return;  // a stopped process's clock does not tick
    m.core->Tick();
    Process(m);
  }

  void Crash(SimMember& m) {
    for (const auto& [zxid, op] : m.pending_writes) ResolveUnknown(op);
    m.pending_writes.clear();
    for (size_t op : m.waiting_reads) Abandon(op);
    m.waiting_reads.clear();
    for (size_t op : m.confirming_reads) Abandon(op);
    m.confirming_reads.clear();
    m.leadership_confirmed = 0;  // rounds start again with the next incarnation's core
    m.core.reset();
    m.tree.reset();
    m.up = false;
    m.paused = false;
    m.held.clear();
    m.pending_install.reset();
    m.arriving_snapshot.reset();
    m.sync_in_flight = false;
    ++m.incarnation;
    const SimDisk::CrashLoss loss = m.disk.Crash(rng_);
    ++stats_.crashes;
    if (Tracing()) {
      Trace(absl::StrCat("CRASH m", m.id, ": ", loss.lost, " unsynced entries lost",
                         loss.torn ? " (the first torn)" : "", ", ", loss.survived,
                         " unsynced survived; log to ", m.disk.LastZxid().ToString()));
    }
  }

  void Pause(SimMember& m, int64_t duration_us) {
    m.paused = true;
    ++stats_.pauses;
    if (Tracing()) Trace(absl::StrCat("PAUSE m", m.id, " for ", duration_us / kMs, " ms"));
    const int id = m.id;
    const int incarnation = m.incarnation;
    After(duration_us, [this, id, incarnation] {
      SimMember& paused = member(id);
      if (paused.up && paused.incarnation == incarnation && paused.paused) Resume(paused);
    });
  }

  void Resume(SimMember& m) {
    m.paused = false;
    if (Tracing()) Trace(absl::StrCat("RESUME m", m.id, " (", m.held.size(), " events held)"));
    std::vector<std::function<void()>> held = std::move(m.held);
    m.held.clear();
    for (auto& run : held) At(now_us_, OnMember(m.id, m.incarnation, std::move(run)));
  }

  // Carries out every Ready of `m` until it has nothing more to say.
  void Process(SimMember& m) {
    for (int readys = 0; m.up && failure_.empty(); ++readys) {
      if (readys == kReadysPerEventMax) {
        Fail(absl::StrCat("member ", m.id, " produced ", readys, " Readys for one event"));
        return;
      }
      zab::Ready ready = m.core->GetReady();
      if (ready.Empty()) return;
      CarryOut(m, std::move(ready));
    }
  }

  // In the order Ready's contract gives: persist, send, apply, role.
  void CarryOut(SimMember& m, zab::Ready ready) {
    if (ready.accepted_epoch) {
      if (*ready.accepted_epoch < m.disk.epochs().accepted_epoch) {
        return Fail(
            absl::StrCat("member ", m.id, " lowers its accepted epoch to ", *ready.accepted_epoch));
      }
      m.disk.WriteAcceptedEpoch(*ready.accepted_epoch);
    }
    if (ready.current_epoch) {
      if (*ready.current_epoch < m.disk.epochs().current_epoch) {
        return Fail(
            absl::StrCat("member ", m.id, " lowers its current epoch to ", *ready.current_epoch));
      }
      m.disk.WriteCurrentEpoch(*ready.current_epoch);
    }
    if (ready.truncate_after) {
      const Zxid zxid = *ready.truncate_after;
      if (zxid < m.tree->last_applied()) {
        return Fail(absl::StrCat("member ", m.id, " truncates after ", zxid.ToString(),
                                 " though it applied through ", m.tree->last_applied().ToString()));
      }
      if (absl::Status status = m.disk.TruncateAfter(zxid); !status.ok()) {
        return Fail(absl::StrCat("member ", m.id, ": ", status.message()));
      }
      ++stats_.truncations;
      if (Tracing()) Trace(absl::StrCat("m", m.id, " truncates its log after ", zxid.ToString()));
    }
    if (ready.install_snapshot) AwaitSnapshot(m, *ready.install_snapshot);
    for (const LogEntry& entry : ready.append) {
      if (absl::Status status = m.disk.Append(entry); !status.ok()) {
        return Fail(absl::StrCat("member ", m.id, ": ", status.message()));
      }
    }
    for (PeerMessage& message : ready.messages) {
      CheckPromises(m, message);
      std::shared_ptr<const TreeImage> snapshot;
      if (message.body_case() == PeerMessage::kSnap) {
        snapshot = SnapshotFor(m, ready, MemberId(message.to()));
        if (!failure_.empty()) return;
      }
      if (message.body_case() == PeerMessage::kAckNewLeader && phase_ == Phase::kFaults &&
          Chance(kCrashAfterNewLeaderAck)) {
        After(Uniform(0, 2 * kMs), [this, id = m.id] { CrashQuorum(id); });
      }
      Send(std::move(message), std::move(snapshot));
    }
    if (ready.commit_through) Apply(m, *ready.commit_through);
    if (ready.leadership_confirmed) ReleaseConfirmedReads(m, *ready.leadership_confirmed);
    if (ready.role) OnRoleChange(m, *ready.role);
    MaybeStartSync(m);
  }

  // The snapshot a SNAP to `to` streams: the newest one on the leader's disk.
  std::shared_ptr<const TreeImage> SnapshotFor(SimMember& m, const zab::Ready& ready, MemberId to) {
    for (const auto& [member_id, zxid] : ready.send_snapshot) {
      if (member_id != to) continue;
      if (!m.disk.snapshot() || m.disk.snapshot()->zxid != zxid) {
        Fail(absl::StrCat("member ", m.id, " sends snapshot ", zxid.ToString(), " to ", to.value(),
                          " but its disk holds ", m.disk.SnapshotZxid().ToString()));
        return nullptr;
      }
      return m.disk.snapshot();
    }
    Fail(absl::StrCat("member ", m.id, " sends SNAP to ", to.value(),
                      " without asking for the snapshot to be streamed"));
    return nullptr;
  }

  void AwaitSnapshot(SimMember& m, Zxid zxid) {
    if (!m.arriving_snapshot || m.arriving_snapshot->zxid != zxid) {
      if (Tracing())
        Trace(absl::StrCat("m", m.id, " waits for snapshot ", zxid.ToString(), " in vain"));
      return;
    }
    m.pending_install = zxid;
    std::shared_ptr<const TreeImage> image = m.arriving_snapshot;
    After(Chance(0.2) ? Uniform(100 * kMs, 800 * kMs) : Uniform(100, 20 * kMs),
          OnMember(m.id, m.incarnation,
                   [this, id = m.id, image] { InstallSnapshot(member(id), image); }));
  }

  void InstallSnapshot(SimMember& m, const std::shared_ptr<const TreeImage>& image) {
    if (m.pending_install != image->zxid) return;  // abandoned with its synchronization
    m.pending_install.reset();
    if (image->zxid <= m.tree->last_applied()) {
      return Fail(absl::StrCat("member ", m.id, " would install snapshot ", image->zxid.ToString(),
                               " over applied ", m.tree->last_applied().ToString()));
    }
    absl::StatusOr<std::unique_ptr<tree::DataTree>> tree = LoadTree(*image);
    if (!tree.ok()) {
      return Fail(absl::StrCat("member ", m.id, " cannot load snapshot ", image->zxid.ToString(),
                               ": ", tree.status().message()));
    }
    m.disk.InstallSnapshot(image);
    m.tree = *std::move(tree);
    m.applied_since_snapshot = 0;
    ++stats_.snapshots_installed;
    CheckLoadedTree(m, "snapshot install");
    if (Tracing()) Trace(absl::StrCat("m", m.id, " installed snapshot ", image->zxid.ToString()));
    m.core->SnapshotInstalled(image->zxid);
    Process(m);
    ServeSyncedReads(m);
  }

  void MaybeStartSync(SimMember& m) {
    if (!m.up || m.sync_in_flight || !m.disk.HasUnsynced()) return;
    m.sync_in_flight = true;
    const uint64_t sync = m.disk.BeginSync();
    After(FsyncDelayUs(m), OnMember(m.id, m.incarnation, [this, id = m.id, sync] {
            SimMember& synced = member(id);
            synced.sync_in_flight = false;
            synced.core->LogDurable(synced.disk.CompleteSync(sync));
            Process(synced);
            MaybeStartSync(synced);
          }));
  }

  void OnRoleChange(SimMember& m, const zab::Ready::RoleChange& change) {
    if (Tracing()) {
      Trace(absl::StrCat("m", m.id, " is ", zab::RoleName(change.role),
                         change.role == zab::Role::kFollowing
                             ? absl::StrCat(" m", change.leader.value())
                             : std::string(),
                         " epoch ", change.epoch, change.serving ? " serving" : ""));
    }
    const bool serving_leader = change.role == zab::Role::kLeading && change.serving;
    if (serving_leader) {
      auto [it, inserted] = leaders_.emplace(change.epoch, m.id);
      if (!inserted && it->second != m.id) {
        return Fail(absl::StrCat("two established leaders in epoch ", change.epoch, ": m",
                                 it->second, " and m", m.id));
      }
      stats_.established_epoch = std::max<int64_t>(stats_.established_epoch, change.epoch);
    } else {
      for (const auto& [zxid, op] : m.pending_writes) ResolveUnknown(op);
      m.pending_writes.clear();
    }
    // A new session abandons a snapshot transfer of the last one.
    if (!change.serving) m.pending_install.reset();
  }

  // What a message promises must be durable before it leaves.
  void CheckPromises(const SimMember& m, const PeerMessage& message) {
    const zab::PersistentState epochs = m.disk.epochs();
    const Zxid durable = m.disk.DurableZxid();
    std::string broken;
    switch (message.body_case()) {
      case PeerMessage::kLeaderInfo:
        if (epochs.accepted_epoch != message.leader_info().new_epoch()) broken = "accepted epoch";
        break;
      case PeerMessage::kAckEpoch:
        if (epochs.accepted_epoch != message.epoch()) broken = "accepted epoch";
        break;
      case PeerMessage::kNewLeader:
        if (epochs.current_epoch != message.new_leader().epoch()) broken = "current epoch";
        break;
      case PeerMessage::kAckNewLeader:
        if (epochs.current_epoch != message.ack_new_leader().epoch()) broken = "current epoch";
        if (durable < Zxid::FromInt(message.ack_new_leader().last_zxid())) broken = "history";
        break;
      case PeerMessage::kAck:
        if (durable < Zxid::FromInt(message.ack().zxid())) broken = "log";
        break;
      case PeerMessage::kPong:
        if (durable < Zxid::FromInt(message.pong().durable_zxid())) broken = "log";
        break;
      default:
        break;
    }
    if (!broken.empty()) {
      Fail(absl::StrCat("member ", m.id, " sends ", Describe(message), " before its ", broken,
                        " is durable (epochs ", epochs.accepted_epoch, "/", epochs.current_epoch,
                        ", durable log to ", durable.ToString(), ")"));
    }
  }

  // ------------------------------------------------------------------------------------------
  // The network.

  void Send(PeerMessage message, std::shared_ptr<const TreeImage> snapshot) {
    const auto from = static_cast<size_t>(message.from());
    const auto to = static_cast<size_t>(message.to());
    if (!links_[from][to]) return Dropped(message, "partition");
    if (Chance(drop_)) return Dropped(message, "lost");
    int64_t at = now_us_ + NetworkDelayUs();
    if (!Chance(reorder_)) {
      at = std::max(at, link_clock_us_[from][to]);  // the link keeps order
      link_clock_us_[from][to] = at;
    }
    auto envelope =
        std::make_shared<const Envelope>(Envelope{std::move(message), std::move(snapshot)});
    if (Chance(duplicate_)) {
      At(at + NetworkDelayUs(), [this, envelope] { Deliver(envelope); });
    }
    At(at, [this, envelope] { Deliver(envelope); });
  }

  void Dropped(const PeerMessage& message, absl::string_view why) {
    ++stats_.messages_dropped;
    if (Tracing()) Trace(absl::StrCat("drop (", why, ") ", Describe(message)));
  }

  void Deliver(const std::shared_ptr<const Envelope>& envelope) {
    const PeerMessage& message = envelope->message;
    SimMember& m = member(static_cast<int>(message.to()));
    if (!links_[message.from()][message.to()]) return Dropped(message, "partition");
    if (!m.up) return Dropped(message, "receiver down");
    if (m.paused) {
      m.held.push_back([this, envelope] { Deliver(envelope); });
      return;
    }
    ++stats_.messages_delivered;
    if (Tracing()) Trace(absl::StrCat("deliver ", Describe(message)));
    m.arriving_snapshot = envelope->snapshot;
    m.core->Step(message);
    Process(m);
    m.arriving_snapshot.reset();
  }

  // ------------------------------------------------------------------------------------------
  // Applying committed transactions, and the history checks.

  void Apply(SimMember& m, Zxid through) {
    if (through > m.disk.DurableZxid()) {
      return Fail(absl::StrCat("member ", m.id, " commits through ", through.ToString(),
                               " past its durable log ", m.disk.DurableZxid().ToString()));
    }
    const Zxid applied = m.tree->last_applied();
    if (through <= applied) return;
    for (const LogEntry& entry : m.disk.EntriesAfter(applied, std::numeric_limits<size_t>::max())) {
      if (Zxid::FromInt(entry.zxid()) > through || !failure_.empty()) break;
      ApplyEntry(m, entry);
    }
    if (failure_.empty() && m.tree->last_applied() != through) {
      return Fail(absl::StrCat("member ", m.id, " cannot apply through ", through.ToString(),
                               ": its log holds entries only to ", m.disk.LastZxid().ToString()));
    }
    ServeSyncedReads(m);
  }

  void ApplyEntry(SimMember& m, const LogEntry& entry) {
    const Zxid zxid = Zxid::FromInt(entry.zxid());
    const Zxid previous = m.tree->last_applied();
    internal::Txn txn;
    if (!txn.ParseFromString(entry.payload())) {
      return Fail(absl::StrCat("member ", m.id, " applies ", zxid.ToString(),
                               " whose payload is not a Txn"));
    }
    internal::TxnResult result;
    std::vector<tree::WatchTrigger> triggers;
    m.tree->Apply(zxid, txn, &result, &triggers);
    CheckHistory(m, previous, entry, txn, result);
    auto pending = m.pending_writes.find(entry.zxid());
    if (pending != m.pending_writes.end()) {
      const size_t op = pending->second;
      m.pending_writes.erase(pending);
      AcknowledgeWrite(op, entry, result);
    }
    if (++m.applied_since_snapshot >= scenario_.snapshot_every) {
      m.applied_since_snapshot = 0;
      auto image = std::make_shared<const TreeImage>(CaptureTree(*m.tree));
      if (absl::Status status = m.disk.TakeSnapshot(image); !status.ok()) {
        return Fail(absl::StrCat("member ", m.id, ": ", status.message()));
      }
      ++stats_.snapshots_taken;
      if (Tracing()) Trace(absl::StrCat("m", m.id, " snapshot at ", zxid.ToString()));
    }
  }

  // PrefixConsistency, Agreement and Integrity: the entry a member applies after `previous` is the
  // one the global history holds there (or the history's next entry, proposed by a client), and
  // it gives the same digest and result as wherever else it was applied.
  void CheckHistory(const SimMember& m, Zxid previous, const LogEntry& entry,
                    const internal::Txn& txn, const internal::TxnResult& result) {
    const Zxid zxid = Zxid::FromInt(entry.zxid());
    size_t position = 0;
    if (!previous.IsZero()) {
      auto it = history_index_.find(previous.ToInt());
      if (it == history_index_.end()) {
        return Fail(absl::StrCat("member ", m.id, " applied ", previous.ToString(),
                                 " which is not in the history"));
      }
      position = it->second + 1;
    }
    std::string serialized_result = result.SerializeAsString();
    if (position < history_.size()) {
      const HistoryEntry& expected = history_[position];
      if (expected.zxid != zxid || expected.payload != entry.payload()) {
        return Fail(absl::StrCat("member ", m.id, " applies ", zxid.ToString(), " after ",
                                 previous.ToString(), " where the history has ",
                                 expected.zxid.ToString(),
                                 expected.zxid == zxid ? " with another payload" : ""));
      }
      if (expected.digest != m.tree->digest() || expected.result != serialized_result) {
        return Fail(absl::StrCat("member ", m.id, " reaches another ",
                                 expected.digest != m.tree->digest() ? "digest" : "result", " at ",
                                 zxid.ToString(), " than the member that applied it first"));
      }
      return;
    }
    if (!history_.empty() && zxid <= history_.back().zxid) {
      return Fail(absl::StrCat("member ", m.id, " applies ", zxid.ToString(), " after ",
                               history_.back().zxid.ToString()));
    }
    auto proposed = proposed_.find(entry.zxid());
    if (proposed == proposed_.end() || proposed->second != entry.payload()) {
      return Fail(absl::StrCat("member ", m.id, " applies ", zxid.ToString(),
                               " which no leader proposed with that payload"));
    }
    history_index_[entry.zxid()] = history_.size();
    history_.push_back(
        HistoryEntry{zxid, entry.payload(), m.tree->digest(), std::move(serialized_result)});
    RecordKeyChange(zxid, txn, result);
  }

  // The value of a client key after each committed transaction that changed it.
  void RecordKeyChange(Zxid zxid, const internal::Txn& txn, const internal::TxnResult& result) {
    if (result.error().code() != v1::OK) return;
    switch (txn.op_case()) {
      case internal::Txn::kCreate:
        key_history_[txn.create().path()].emplace_back(
            zxid, NodeValue{true, DataId(txn.create().data()), 0});
        break;
      case internal::Txn::kSet:
        key_history_[txn.set().path()].emplace_back(
            zxid, NodeValue{true, DataId(txn.set().data()), result.set().stat().version()});
        break;
      case internal::Txn::kDelete:
        key_history_[txn.delete_().path()].emplace_back(zxid, NodeValue{});
        break;
      default:
        break;
    }
  }

  NodeValue ValueAt(const std::string& path, Zxid zxid) const {
    auto it = key_history_.find(path);
    if (it == key_history_.end()) return NodeValue{};
    const auto& changes = it->second;
    auto after = std::upper_bound(changes.begin(), changes.end(), zxid,
                                  [](Zxid z, const auto& change) { return z < change.first; });
    return after == changes.begin() ? NodeValue{} : std::prev(after)->second;
  }

  void CheckLoadedTree(const SimMember& m, absl::string_view why) {
    const Zxid zxid = m.tree->last_applied();
    if (zxid.IsZero()) return;
    auto it = history_index_.find(zxid.ToInt());
    if (it == history_index_.end() || history_[it->second].digest != m.tree->digest()) {
      Fail(absl::StrCat("member ", m.id, " loaded a tree at ", zxid.ToString(), " on ", why,
                        it == history_index_.end() ? " which is not in the history"
                                                   : " whose digest differs from the history's"));
    }
  }

  // ------------------------------------------------------------------------------------------
  // Clients.

  void ScheduleClient(int client) {
    if (phase_ != Phase::kFaults) return;
    After(Uniform(1 * kMs, 40 * kMs), [this, client] { IssueClientOp(client); });
  }

  void SwitchMember(SimClient& client) {
    client.member = static_cast<int>(Uniform(1, scenario_.members));
  }

  void IssueClientOp(int client_id) {
    if (phase_ != Phase::kFaults || !failure_.empty()) return;
    SimClient& client = clients_[static_cast<size_t>(client_id - 1)];
    const int kind = static_cast<int>(Uniform(0, 99));
    bool issued = false;
    if (kind < 50) {
      issued = IssueWrite(client);
    } else if (kind < 80) {
      issued = IssueSyncedRead(client);
    } else {
      issued = LocalRead(client);
    }
    if (!issued) {
      SwitchMember(client);
      ScheduleClient(client_id);
    }
  }

  // Forwarded by the client's member to the leader it follows, as the shell does.
  bool IssueWrite(SimClient& client) {
    SimMember& at = member(client.member);
    if (!Available(at) || !at.core->serving()) return false;
    const int leader_id = static_cast<int>(at.core->leader().value());
    SimMember& leader = member(leader_id);
    if (!Available(leader) || !links_[static_cast<size_t>(at.id)][static_cast<size_t>(leader_id)] ||
        leader.core->role() != zab::Role::kLeading || !leader.core->serving()) {
      return false;
    }
    const int key = static_cast<int>(Uniform(0, scenario_.keys - 1));
    const size_t index = ops_.size();
    ClientOp op;
    op.op.client = client.id;
    op.op.key = key;
    op.op.data = static_cast<int64_t>(index);
    internal::Txn txn;
    txn.set_time_ms(now_us_ / kMs);
    const std::string path = KeyPath(key);
    const std::string data = absl::StrCat("w", index);
    const int choice = static_cast<int>(Uniform(0, 99));
    std::optional<int32_t> version;
    if (Chance(0.3)) {
      version = Chance(0.7) ? client.version_hint[static_cast<size_t>(key)]
                            : static_cast<int32_t>(Uniform(0, 3));
    }
    if (choice < 25) {
      op.op.kind = OpKind::kCreate;
      v1::CreateRequest* create = txn.mutable_create();
      create->set_path(path);
      create->set_data(data);
      create->set_mode(v1::PERSISTENT);
    } else if (choice < 88) {
      op.op.kind = OpKind::kSet;
      op.op.expected_version = version;
      v1::SetRequest* set = txn.mutable_set();
      set->set_path(path);
      set->set_data(data);
      if (version) set->set_version(*version);
    } else {
      op.op.kind = OpKind::kDelete;
      op.op.expected_version = version;
      v1::DeleteRequest* del = txn.mutable_delete_();
      del->set_path(path);
      if (version) del->set_version(*version);
    }
    std::string payload = txn.SerializeAsString();
    absl::StatusOr<Zxid> zxid = leader.core->Propose(payload);
    if (!zxid.ok()) {
      if (Tracing()) {
        Trace(absl::StrCat("client ", client.id, " write refused by m", leader_id, ": ",
                           zxid.status().message()));
      }
      return false;
    }
    op.zxid = *zxid;
    op.member = leader_id;
    op.op.invoke = ++clock_;
    if (Tracing()) {
      Trace(absl::StrCat("client ", client.id, " via m", at.id, " invokes ",
                         DescribeOperation(op.op), " as ", zxid->ToString(), " on m", leader_id));
    }
    proposed_[zxid->ToInt()] = std::move(payload);
    leader.pending_writes[zxid->ToInt()] = index;
    ops_.push_back(std::move(op));
    Process(leader);
    return true;
  }

  void AcknowledgeWrite(size_t index, const LogEntry& entry, const internal::TxnResult& result) {
    ClientOp& op = ops_[index];
    if (entry.payload() != proposed_[op.zxid.ToInt()]) {
      return Fail(absl::StrCat("leader m", op.member, " applied another entry at ",
                               op.zxid.ToString(), " than it proposed there"));
    }
    op.state = ClientOp::State::kDone;
    op.op.response = ++clock_;
    op.op.error = result.error().code();
    if (op.op.kind == OpKind::kSet && op.op.error == v1::OK) {
      op.op.version_after = result.set().stat().version();
    }
    SimClient& client = clients_[static_cast<size_t>(op.op.client - 1)];
    if (op.op.error == v1::OK) {
      client.version_hint[static_cast<size_t>(op.op.key)] =
          op.op.kind == OpKind::kSet ? op.op.version_after : 0;
    } else {
      ++stats_.writes_failed;
    }
    ++stats_.writes_acknowledged;
    if (Tracing()) Trace(absl::StrCat("client ", client.id, " returns ", DescribeOperation(op.op)));
    ScheduleClient(client.id);
  }

  void ResolveUnknown(size_t index) {
    ClientOp& op = ops_[index];
    if (op.state != ClientOp::State::kPending) return;
    op.state = ClientOp::State::kDone;
    op.op.unknown = true;
    ++stats_.writes_unknown;
    if (Tracing())
      Trace(absl::StrCat("client ", op.op.client, " learns nothing of ", DescribeOperation(op.op)));
    ScheduleClient(op.op.client);
  }

  // A read that will not complete (its member crashed or it timed out): never in the history.
  void Abandon(size_t index) {
    ClientOp& op = ops_[index];
    if (op.state != ClientOp::State::kPending) return;
    op.state = ClientOp::State::kAbandoned;
    if (Tracing())
      Trace(absl::StrCat("client ", op.op.client, " gives up ", DescribeOperation(op.op)));
    ScheduleClient(op.op.client);
  }

  // A synced read is served as the server serves Sync: the leader the member follows (or the
  // member itself, leading) takes its commit zxid and asks a quorum to confirm it still leads
  // (Member::ConfirmLeadership); once one has, the member waits to apply that zxid and reads. A
  // leader cut off (or paused) serves on until it notices, but can no longer be confirmed: its
  // older commit never makes a read stale. (The request reaches the leader at once here; any
  // delivery delay is a schedule the network could also produce.)
  bool IssueSyncedRead(SimClient& client) {
    SimMember& at = member(client.member);
    if (!Available(at) || !at.core->serving()) return false;
    const int leader_id = at.core->role() == zab::Role::kLeading
                              ? at.id
                              : static_cast<int>(at.core->leader().value());
    if (leader_id == 0) return false;
    SimMember& leader = member(leader_id);
    if (!Available(leader) || leader.core->role() != zab::Role::kLeading ||
        !leader.core->serving()) {
      return false;
    }
    absl::StatusOr<uint64_t> round = leader.core->ConfirmLeadership();
    if (!round.ok()) return false;
    const size_t index = ops_.size();
    ClientOp& op = ops_.emplace_back();
    op.op.client = client.id;
    op.op.key = static_cast<int>(Uniform(0, scenario_.keys - 1));
    op.op.kind = OpKind::kRead;
    op.op.invoke = ++clock_;
    op.sync_zxid = leader.core->committed();
    op.round = *round;
    op.leader = leader_id;
    op.member = at.id;
    if (Tracing()) {
      Trace(absl::StrCat("client ", client.id, " invokes synced read(k", op.op.key, ") on m", at.id,
                         ": m", leader_id, " confirms round ", *round, " at ",
                         op.sync_zxid.ToString()));
    }
    leader.confirming_reads.push_back(index);
    After(kSyncedReadTimeoutUs, [this, index] {
      if (ops_[index].state == ClientOp::State::kPending) {
        std::erase(member(ops_[index].member).waiting_reads, index);
        std::erase(member(ops_[index].leader).confirming_reads, index);
        Abandon(index);
      }
    });
    Process(leader);  // the PINGs of the round
    return true;
  }

  void ReleaseConfirmedReads(SimMember& leader, uint64_t confirmed) {
    if (confirmed <= leader.leadership_confirmed) {
      return Fail(absl::StrCat("m", leader.id, " confirmed round ", confirmed, " after ",
                               leader.leadership_confirmed));
    }
    leader.leadership_confirmed = confirmed;
    std::vector<size_t> still;
    std::set<int> readers;
    for (size_t index : leader.confirming_reads) {
      ClientOp& op = ops_[index];
      if (op.state != ClientOp::State::kPending) continue;
      if (op.round > confirmed) {
        still.push_back(index);
        continue;
      }
      member(op.member).waiting_reads.push_back(index);
      readers.insert(op.member);
    }
    leader.confirming_reads = std::move(still);
    for (int reader : readers) ServeSyncedReads(member(reader));
  }

  NodeValue ReadKey(const SimMember& m, int key) {
    absl::StatusOr<tree::NodeRead> read = m.tree->Get(KeyPath(key));
    if (!read.ok()) return NodeValue{};
    return NodeValue{true, DataId(read->data), read->stat.version};
  }

  // A read sees the history's state at the zxid its member applied.
  void CheckReadValue(const SimMember& m, int client, int key, const NodeValue& seen) {
    const Zxid applied = m.tree->last_applied();
    const NodeValue expected = ValueAt(KeyPath(key), applied);
    if (!(seen == expected)) {
      Fail(absl::StrCat("client ", client, " read k", key, " on m", m.id, " at ",
                        applied.ToString(), " and saw w", seen.data, " v", seen.version,
                        seen.exists ? "" : " (absent)", " where the history has w", expected.data,
                        " v", expected.version, expected.exists ? "" : " (absent)"));
    }
  }

  void ServeSyncedReads(SimMember& m) {
    if (m.waiting_reads.empty() || !m.up) return;
    std::vector<size_t> waiting = std::move(m.waiting_reads);
    m.waiting_reads.clear();
    for (size_t index : waiting) {
      ClientOp& op = ops_[index];
      if (op.state != ClientOp::State::kPending) continue;
      if (m.tree->last_applied() < op.sync_zxid) {
        m.waiting_reads.push_back(index);
        continue;
      }
      op.op.read = ReadKey(m, op.op.key);
      op.op.response = ++clock_;
      op.state = ClientOp::State::kDone;
      ++stats_.synced_reads;
      CheckReadValue(m, op.op.client, op.op.key, op.op.read);
      SimClient& client = clients_[static_cast<size_t>(op.op.client - 1)];
      if (op.op.read.exists) {
        client.version_hint[static_cast<size_t>(op.op.key)] = op.op.read.version;
      }
      if (Tracing()) {
        Trace(absl::StrCat("client ", client.id, " returns ", DescribeOperation(op.op), " at ",
                           m.tree->last_applied().ToString()));
      }
      ScheduleClient(client.id);
    }
  }

  // A plain read of the member's tree: never goes back for one client on one member.
  bool LocalRead(SimClient& client) {
    SimMember& at = member(client.member);
    if (!Available(at)) return false;
    const int key = static_cast<int>(Uniform(0, scenario_.keys - 1));
    const NodeValue seen = ReadKey(at, key);
    const Zxid applied = at.tree->last_applied();
    ++stats_.local_reads;
    if (Tracing()) {
      Trace(absl::StrCat("client ", client.id, " local read(k", key, ") on m", at.id, " at ",
                         applied.ToString(), " -> ",
                         seen.exists ? absl::StrCat("w", seen.data, " v", seen.version) : "none"));
    }
    Zxid& last = client.local_seen[{at.id, at.incarnation}];
    if (applied < last) {
      Fail(absl::StrCat("client ", client.id, " read m", at.id, " at ", applied.ToString(),
                        " after reading it at ", last.ToString()));
      return true;
    }
    last = applied;
    CheckReadValue(at, client.id, key, seen);
    ScheduleClient(client.id);
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // Faults.

  void ScheduleFault() {
    After(Uniform(10 * kMs, scenario_.fault_gap_us_max), [this] {
      if (phase_ != Phase::kFaults) return;
      InjectFault();
      ScheduleFault();
    });
  }

  std::optional<int> ServingLeader() {
    for (int id = 1; id <= scenario_.members; ++id) {
      SimMember& m = member(id);
      if (m.up && m.core->role() == zab::Role::kLeading && m.core->serving()) return id;
    }
    return std::nullopt;
  }

  // The leader half the time (faults there find the most bugs), else anyone.
  int Target() {
    std::optional<int> leader = ServingLeader();
    if (leader && Chance(0.5)) return *leader;
    return static_cast<int>(Uniform(1, scenario_.members));
  }

  void InjectFault() {
    const int kind = static_cast<int>(Uniform(0, 99));
    if (kind < 25) {
      SimMember& m = member(Target());
      // Mostly a minority is down at a time; sometimes more, and nothing can commit meanwhile.
      if (m.up && (DownCount() < Minority() || Chance(0.2))) {
        Crash(m);
        ScheduleRestart(m, Uniform(10 * kMs, 2'000 * kMs));
      }
    } else if (kind < 32) {
      CrashQuorum(static_cast<int>(Uniform(1, scenario_.members)));
    } else if (kind < 60) {
      Partition();
    } else if (kind < 72) {
      SimMember& m = member(Target());
      if (Available(m)) Pause(m, Uniform(10 * kMs, 1'500 * kMs));
    } else if (kind < 80) {
      SimMember& m = member(static_cast<int>(Uniform(1, scenario_.members)));
      m.slow_disk_until_us = now_us_ + Uniform(100 * kMs, 2'000 * kMs);
      if (Tracing())
        Trace(absl::StrCat("SLOW DISK m", m.id, " until ", m.slow_disk_until_us / kMs, " ms"));
    }
  }

  // Power loss of a quorum at once, `first` and the members after it.
  void CrashQuorum(int first) {
    for (int k = 0; k < scenario_.members / 2 + 1; ++k) {
      SimMember& m = member((first + k - 1) % scenario_.members + 1);
      if (!m.up) continue;
      Crash(m);
      ScheduleRestart(m, Uniform(1 * kMs, 500 * kMs));
    }
  }

  void ScheduleRestart(SimMember& m, int64_t delay_us) {
    const int incarnation = m.incarnation;
    After(delay_us, [this, id = m.id, incarnation] {
      SimMember& down = member(id);
      if (!down.up && down.incarnation == incarnation) Start(down);
    });
  }

  void Partition() {
    const size_t n = members_.size();
    links_.assign(n, std::vector<bool>(n, true));
    std::vector<int> side(n, 0);
    std::string shape;
    const int kind = static_cast<int>(Uniform(0, 99));
    if (kind < 35) {
      const int isolated = Target();
      side[static_cast<size_t>(isolated)] = 1;
      shape = absl::StrCat("isolate m", isolated);
    } else if (kind < 70) {
      for (size_t id = 1; id < n; ++id) side[id] = static_cast<int>(rng_() % 2);
      shape = "split";
    } else if (kind < 85) {
      // A bridge: two sides that cannot talk, and one member that talks with both.
      for (size_t id = 1; id < n; ++id) side[id] = static_cast<int>(rng_() % 2);
      const int bridge = static_cast<int>(Uniform(1, scenario_.members));
      side[static_cast<size_t>(bridge)] = 2;
      shape = absl::StrCat("bridge through m", bridge);
    } else {
      // One way: messages from one member are lost, messages to it arrive.
      const int mute = Target();
      for (size_t to = 1; to < n; ++to) links_[static_cast<size_t>(mute)][to] = false;
      shape = absl::StrCat("one way: m", mute, " cannot send");
    }
    for (size_t a = 1; a < n; ++a) {
      for (size_t b = 1; b < n; ++b) {
        if (side[a] != side[b] && side[a] != 2 && side[b] != 2) links_[a][b] = false;
      }
    }
    const int partition = ++partition_;
    ++stats_.partitions;
    const int64_t duration_us = Uniform(50 * kMs, 3'000 * kMs);
    if (Tracing()) {
      std::vector<std::string> cut;
      for (size_t a = 1; a < n; ++a) {
        for (size_t b = 1; b < n; ++b) {
          if (!links_[a][b]) cut.push_back(absl::StrCat(a, "->", b));
        }
      }
      Trace(absl::StrCat("PARTITION ", partition, " (", shape, ") for ", duration_us / kMs,
                         " ms, cut ", absl::StrJoin(cut, " ")));
    }
    After(duration_us, [this, partition] {
      if (partition_ == partition) Heal();
    });
  }

  void Heal() {
    ++partition_;
    links_.assign(members_.size(), std::vector<bool>(members_.size(), true));
    if (Tracing()) Trace("HEAL");
  }

  // ------------------------------------------------------------------------------------------
  // The end: heal everything, wait for quiet, check.

  void StopFaults() {
    phase_ = Phase::kQuiet;
    if (Tracing()) Trace("faults stop: heal, resume, restart; clients stop");
    drop_ = duplicate_ = reorder_ = 0;
    Heal();
    for (int id = 1; id <= scenario_.members; ++id) {
      SimMember& m = member(id);
      m.slow_disk_until_us = 0;
      if (!m.up) {
        Start(m);
      } else if (m.paused) {
        Resume(m);
      }
    }
    quiet_deadline_us_ = now_us_ + kQuietUsMax;
    After(kConvergenceCheckUs, [this] { CheckConverged(); });
  }

  void CheckConverged() {
    if (!failure_.empty()) return;
    if (Converged()) {
      converged_ = true;
      if (Tracing()) Trace("converged");
      return;
    }
    if (now_us_ >= quiet_deadline_us_) {
      return Fail(absl::StrCat("no convergence within ", kQuietUsMax / kMs,
                               " ms after the faults stopped"));
    }
    After(kConvergenceCheckUs, [this] { CheckConverged(); });
  }

  bool Converged() {
    std::optional<int> leader_id = ServingLeader();
    if (!leader_id) return false;
    const zab::Member& leader = *member(*leader_id).core;
    if (leader.committed() != leader.last_zxid()) return false;
    for (int id = 1; id <= scenario_.members; ++id) {
      const SimMember& m = member(id);
      if (!Available(m) || !m.core->serving() ||
          m.core->current_epoch() != leader.current_epoch() ||
          m.tree->last_applied() != leader.last_zxid() ||
          m.tree->digest() != member(*leader_id).tree->digest()) {
        return false;
      }
      if (id != *leader_id && (m.core->role() != zab::Role::kFollowing ||
                               m.core->leader() != MemberId(static_cast<uint32_t>(*leader_id)))) {
        return false;
      }
    }
    return true;
  }

  void FinalChecks() {
    const SimMember& any = member(1);
    const Zxid last = any.tree->last_applied();
    const Zxid history_last = history_.empty() ? Zxid() : history_.back().zxid;
    if (last != history_last) {
      return Fail(absl::StrCat("members converged at ", last.ToString(),
                               " but the history ends at ", history_last.ToString()));
    }
    // Every acknowledged write survived.
    for (const ClientOp& op : ops_) {
      if (op.op.kind == OpKind::kRead || op.op.unknown || op.state != ClientOp::State::kDone) {
        continue;
      }
      auto it = history_index_.find(op.zxid.ToInt());
      if (it == history_index_.end() ||
          history_[it->second].payload != proposed_[op.zxid.ToInt()]) {
        return Fail(absl::StrCat("acknowledged write ", op.zxid.ToString(), " (",
                                 DescribeOperation(op.op), ") is not in the final history"));
      }
    }
    // The history replayed from scratch reaches the members' digest (snapshots lost nothing).
    tree::DataTree replay;
    for (const HistoryEntry& entry : history_) {
      internal::Txn txn;
      txn.ParseFromString(entry.payload);
      internal::TxnResult result;
      std::vector<tree::WatchTrigger> triggers;
      replay.Apply(entry.zxid, txn, &result, &triggers);
    }
    if (replay.digest() != any.tree->digest()) {
      return Fail("replaying the history from scratch gives another digest than the members'");
    }
    // The clients' writes and synced reads are linearizable. Writes still pending are unknown.
    std::vector<Operation> history;
    for (ClientOp& op : ops_) {
      if (op.state == ClientOp::State::kPending && op.op.kind != OpKind::kRead) {
        op.op.unknown = true;
        op.state = ClientOp::State::kDone;
      }
      if (op.state == ClientOp::State::kDone) history.push_back(op.op);
    }
    const LinearizabilityResult linearizable = CheckLinearizable(history);
    if (linearizable.inconclusive) {
      ++stats_.inconclusive;
      if (Tracing())
        Trace(absl::StrCat("linearizability inconclusive: ", linearizable.explanation));
    }
    if (!linearizable.linearizable) {
      return Fail(
          absl::StrCat("the clients' history is not linearizable: ", linearizable.explanation));
    }
  }

  // ------------------------------------------------------------------------------------------
  // Failure.

  void Fail(std::string what) {
    if (!failure_.empty()) return;
    failure_ = absl::StrCat(what, "\n  at ", now_us_ / kMs, " ms simulated\n");
    for (int id = 1; id <= scenario_.members; ++id) {
      const SimMember& m = member(id);
      if (!m.up) {
        absl::StrAppend(&failure_, "m", id, ": down; disk epochs ", m.disk.epochs().accepted_epoch,
                        "/", m.disk.epochs().current_epoch, ", log to ",
                        m.disk.LastZxid().ToString(), "\n");
        continue;
      }
      const zab::Member& core = *m.core;
      absl::StrAppend(&failure_, "m", id, m.paused ? " (paused)" : "", ": ",
                      zab::RoleName(core.role()), " leader ", core.leader().value(), " epochs ",
                      core.accepted_epoch(), "/", core.current_epoch(), " last ",
                      core.last_zxid().ToString(), " durable ", core.durable().ToString(),
                      " committed ", core.committed().ToString(), " applied ",
                      m.tree->last_applied().ToString(), " snapshot ",
                      m.disk.SnapshotZxid().ToString(), core.serving() ? " serving" : "", "\n");
      const auto& lines = core.trace();
      const size_t skip =
          lines.size() > kTraceLinesPerMemberMax ? lines.size() - kTraceLinesPerMemberMax : 0;
      for (size_t i = skip; i < lines.size(); ++i)
        absl::StrAppend(&failure_, "    ", lines[i], "\n");
    }
    if (Tracing()) Trace(absl::StrCat("FAILED: ", failure_));
  }

  enum class Phase { kFaults, kQuiet };

  const uint64_t seed_;
  std::ostream* const trace_;
  std::mt19937_64 rng_;
  Scenario scenario_;
  double drop_ = 0;
  double duplicate_ = 0;
  double reorder_ = 0;
  Phase phase_ = Phase::kFaults;
  int64_t now_us_ = 0;
  uint64_t next_sequence_ = 0;
  std::vector<Event> events_;                        // a heap by (time, sequence)
  std::vector<SimMember> members_;                   // [0] unused: ids start at 1
  std::vector<std::vector<bool>> links_;             // [from][to]
  std::vector<std::vector<int64_t>> link_clock_us_;  // the last delivery time on a link
  int partition_ = 0;
  std::vector<SimClient> clients_;
  std::vector<ClientOp> ops_;
  int64_t clock_ = 0;  // the history's logical clock
  std::map<Epoch, int> leaders_;
  absl::flat_hash_map<int64_t, std::string> proposed_;  // zxid -> payload
  std::vector<HistoryEntry> history_;
  absl::flat_hash_map<int64_t, size_t> history_index_;
  std::map<std::string, std::vector<std::pair<Zxid, NodeValue>>> key_history_;
  int64_t quiet_deadline_us_ = 0;
  bool converged_ = false;
  std::string failure_;
  SimulationStats stats_;
};

}  // namespace

void SimulationStats::Add(const SimulationStats& o) {
  simulated_ms += o.simulated_ms;
  writes_acknowledged += o.writes_acknowledged;
  writes_failed += o.writes_failed;
  writes_unknown += o.writes_unknown;
  synced_reads += o.synced_reads;
  local_reads += o.local_reads;
  crashes += o.crashes;
  partitions += o.partitions;
  pauses += o.pauses;
  snapshots_taken += o.snapshots_taken;
  snapshots_installed += o.snapshots_installed;
  truncations += o.truncations;
  messages_delivered += o.messages_delivered;
  messages_dropped += o.messages_dropped;
  established_epoch += o.established_epoch;
  history_length += o.history_length;
  inconclusive += o.inconclusive;
}

std::string SimulationStats::ToString() const {
  return absl::StrCat(
      simulated_ms, " ms simulated; writes: ", writes_acknowledged, " acknowledged (",
      writes_failed, " failed conditionally), ", writes_unknown, " unknown; reads: ", synced_reads,
      " synced, ", local_reads, " local; ", history_length, " committed; faults: ", crashes,
      " crashes, ", partitions, " partitions, ", pauses, " pauses; ", messages_delivered,
      " messages delivered, ", messages_dropped, " dropped; sync: ", snapshots_installed, " SNAP, ",
      truncations, " TRUNC; ", snapshots_taken, " snapshots; epochs reached ", established_epoch,
      "; ", inconclusive, " linearizability searches inconclusive");
}

SimulationResult RunSimulation(const SimulationOptions& options) {
  return Simulation(options).Run();
}

std::string ReplayCommand(uint64_t seed) {
  return absl::StrCat("confab_sim --seed=", seed, " --trace");
}

namespace {

std::atomic<uint64_t> seed_running{0};

// Async-signal-safe: formats with no allocation and writes with write(2).
void OnAbort(int) {
  char digits[24];
  size_t length = 0;
  uint64_t seed = seed_running.load();
  do {
    digits[length++] = static_cast<char>('0' + seed % 10);
    seed /= 10;
  } while (seed != 0);
  char line[160];
  size_t out = 0;
  auto append = [&line, &out](const char* text) {
    while (*text != '\0' && out < sizeof(line)) line[out++] = *text++;
  };
  auto append_seed = [&] {
    for (size_t i = length; i > 0 && out < sizeof(line); --i) line[out++] = digits[i - 1];
  };
  append("\nconfab_sim: aborted in seed ");
  append_seed();
  append("; replay with: confab_sim --seed=");
  append_seed();
  append(" --trace\n");
  [[maybe_unused]] ssize_t written = write(STDERR_FILENO, line, out);
}

}  // namespace

void ReportSeedOnAbort(uint64_t seed) {
  [[maybe_unused]] static const bool installed = [] {
    struct sigaction action = {};
    action.sa_handler = OnAbort;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    sigaction(SIGABRT, &action, nullptr);
    return true;
  }();
  seed_running.store(seed);
}

}  // namespace confab::sim
