// An in-memory ensemble of zab::Members for tests: each member has a MemoryLog (entries after a
// snapshot, plus the history the snapshot holds), durable epoch records and a disk that makes
// appends durable immediately or when the test says. The Ensemble carries out every Ready in the
// contract order (persist epochs, truncate, install snapshot, append; send; apply; role) and
// delivers messages through a network that can drop, duplicate, reorder and partition, from a
// seed. Checkers run all along: one established leader per epoch, every applied history a prefix
// of one global history, and the Ready ordering rules (a message leaves only after what it
// promises is durable).
#ifndef CONFAB_TESTS_UNIT_ZAB_ENSEMBLE_H_
#define CONFAB_TESTS_UNIT_ZAB_ENSEMBLE_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "server/zab/member.h"

namespace confab::zab::testing {

using internal::LogEntry;
using internal::PeerMessage;

inline LogEntry Entry(Zxid zxid, std::string payload) {
  LogEntry entry;
  entry.set_zxid(zxid.ToInt());
  entry.set_payload(std::move(payload));
  return entry;
}

inline Zxid ZxidOf(const LogEntry& entry) { return Zxid::FromInt(entry.zxid()); }

// A member's log in memory: `entries_` follow the snapshot at `snapshot_zxid_`, whose state is
// kept as the history it holds (`snapshot_history_`), so a SNAP can copy it to another member.
class MemoryLog : public LogView {
 public:
  Zxid LastZxid() const override {
    return entries_.empty() ? snapshot_zxid_ : ZxidOf(entries_.back());
  }
  Zxid SnapshotZxid() const override { return snapshot_zxid_; }
  bool Contains(Zxid zxid) const override {
    if (zxid == snapshot_zxid_) return true;
    auto it = LowerBound(zxid);
    return it != entries_.end() && ZxidOf(*it) == zxid;
  }
  Zxid LastAtOrBefore(Zxid zxid) const override {
    auto it = LowerBound(zxid);
    if (it != entries_.end() && ZxidOf(*it) == zxid) return zxid;
    if (it != entries_.begin()) return ZxidOf(*std::prev(it));
    return snapshot_zxid_ <= zxid ? snapshot_zxid_ : Zxid();
  }
  std::vector<LogEntry> EntriesAfter(Zxid after, size_t max_entries) const override {
    EXPECT_GE(after, snapshot_zxid_) << "EntriesAfter below the snapshot";
    std::vector<LogEntry> out;
    for (auto it = LowerBound(after.Next()); it != entries_.end() && out.size() < max_entries;
         ++it) {
      if (ZxidOf(*it) > after) out.push_back(*it);
    }
    return out;
  }

  // Appends as TxnLog does: contiguous or refused (a test failure here is a gap the core let in).
  void Append(const LogEntry& entry) {
    const Zxid last = LastZxid();
    const Zxid zxid = ZxidOf(entry);
    const bool contiguous = zxid.epoch() == last.epoch()
                                ? zxid.counter() == last.counter() + 1
                                : zxid.epoch() > last.epoch() && zxid.counter() == 1;
    EXPECT_TRUE(contiguous) << "gap: " << zxid.ToString() << " after " << last.ToString();
    entries_.push_back(entry);
  }
  void TruncateAfter(Zxid zxid) {
    EXPECT_GE(zxid, snapshot_zxid_) << "TRUNC below the snapshot";
    entries_.erase(LowerBound(zxid.Next()), entries_.end());
  }
  // Replaces everything with a snapshot holding `history` (which ends at `zxid`).
  void InstallSnapshot(Zxid zxid, std::vector<LogEntry> history) {
    snapshot_zxid_ = zxid;
    snapshot_history_ = std::move(history);
    entries_.clear();
  }
  // Compacts through `zxid` (committed, applied): the snapshot now holds it.
  void TakeSnapshot(Zxid zxid) {
    if (zxid <= snapshot_zxid_) return;
    const auto end = entries_.begin() + (LowerBound(zxid.Next()) - entries_.cbegin());
    snapshot_history_.insert(snapshot_history_.end(), entries_.begin(), end);
    entries_.erase(entries_.begin(), end);
    snapshot_zxid_ = zxid;
  }
  // A crash: what the disk had not synced is gone.
  void LoseAfter(Zxid durable) { entries_.erase(LowerBound(durable.Next()), entries_.end()); }
  void Wipe() { *this = MemoryLog(); }

  // Every entry of this member's history, snapshot included, up to `through`.
  std::vector<LogEntry> HistoryThrough(Zxid through) const {
    std::vector<LogEntry> out;
    for (const LogEntry& entry : snapshot_history_) {
      if (ZxidOf(entry) <= through) out.push_back(entry);
    }
    for (const LogEntry& entry : entries_) {
      if (ZxidOf(entry) <= through) out.push_back(entry);
    }
    return out;
  }
  const std::vector<LogEntry>& snapshot_history() const { return snapshot_history_; }
  const std::vector<LogEntry>& entries() const { return entries_; }

 private:
  std::vector<LogEntry>::const_iterator LowerBound(Zxid zxid) const {
    return std::lower_bound(entries_.begin(), entries_.end(), zxid,
                            [](const LogEntry& e, Zxid z) { return ZxidOf(e) < z; });
  }
  Zxid snapshot_zxid_;
  std::vector<LogEntry> snapshot_history_;
  std::vector<LogEntry> entries_;
};

struct Node {
  Config config;
  PersistentState persisted;  // the durable epoch records
  MemoryLog log;
  Zxid disk_durable;  // what LogDurable has reported
  std::unique_ptr<Member> member;
  bool up = true;
  bool auto_durable = true;  // report LogDurable right after each append
  std::optional<Zxid> pending_install;
  std::vector<LogEntry> applied;  // this incarnation's delivered history (from its snapshot on)
  std::map<int64_t, std::string> proposed;  // by this incarnation as leader: zxid -> payload
  std::vector<PeerMessage> sent;            // every message it sent, when recording
  uint64_t leadership_confirmed = 0;        // the last Ready::leadership_confirmed
  int incarnation = 0;
};

struct NetworkFaults {
  double drop = 0;       // probability a delivered message is lost instead
  double duplicate = 0;  // probability it is delivered and stays in flight
  double reorder = 0;    // probability a random in-flight message goes instead of the oldest
};

class Ensemble {
 public:
  // Members 1..n with the given base config (id, members and seed are filled in).
  explicit Ensemble(int n, uint64_t seed = 1, Config base = Config{}, bool start = true)
      : rng_(seed), seed_(seed) {
    std::vector<MemberId> members;
    for (int i = 1; i <= n; ++i) members.push_back(MemberId(static_cast<uint32_t>(i)));
    nodes_.resize(static_cast<size_t>(n) + 1);
    for (int i = 1; i <= n; ++i) {
      Node& node = nodes_[static_cast<size_t>(i)];
      node.config = base;
      node.config.id = MemberId(static_cast<uint32_t>(i));
      node.config.members = members;
      node.up = false;
    }
    if (start) {
      for (int i = 1; i <= n; ++i) Start(i);
    }
  }

  int size() const { return static_cast<int>(nodes_.size()) - 1; }
  Node& node(int id) { return nodes_.at(static_cast<size_t>(id)); }
  Member& member(int id) { return *node(id).member; }
  NetworkFaults& faults() { return faults_; }
  void set_record_sent(bool record) { record_sent_ = record; }
  std::deque<PeerMessage>& in_flight() { return in_flight_; }

  // Starts (or restarts) member `id` from what its disk holds.
  void Start(int id) {
    Node& n = node(id);
    n.log.LoseAfter(n.disk_durable);
    n.disk_durable = n.log.LastZxid();
    n.pending_install.reset();
    n.applied = n.log.snapshot_history();
    n.proposed.clear();
    n.config.seed = seed_ * 1'000'003 + static_cast<uint64_t>(id) * 101 +
                    static_cast<uint64_t>(n.incarnation++);
    n.member = std::make_unique<Member>(n.config, n.persisted, &n.log);
    n.up = true;
    for (size_t k = 0; k < n.applied.size(); ++k) CheckGlobal(id, k + 1, n.applied[k]);
    Process(id);
  }
  void Crash(int id) {
    Node& n = node(id);
    n.up = false;
    n.member.reset();
  }
  void Restart(int id) {
    Crash(id);
    Start(id);
  }
  // Reports everything appended so far as durable (a slow disk catching up).
  void MakeDurable(int id) {
    Node& n = node(id);
    if (!n.up) return;
    n.disk_durable = n.log.LastZxid();
    n.member->LogDurable(n.disk_durable);
    Process(id);
  }

  // Partitions: members in different groups cannot talk. Heal() joins them again.
  void Partition(const std::vector<std::set<int>>& groups) {
    group_.clear();
    for (size_t g = 0; g < groups.size(); ++g) {
      for (int id : groups[g]) group_[id] = static_cast<int>(g);
    }
  }
  void Isolate(int id) {
    std::set<int> rest;
    for (int i = 1; i <= size(); ++i) {
      if (i != id) rest.insert(i);
    }
    Partition({{id}, rest});
  }
  void Heal() { group_.clear(); }
  bool Connected(int a, int b) const {
    if (group_.empty()) return true;
    auto ga = group_.find(a);
    auto gb = group_.find(b);
    return ga != group_.end() && gb != group_.end() && ga->second == gb->second;
  }

  // Carries out every Ready of member `id` until it has nothing more to say.
  void Process(int id) {
    Node& n = node(id);
    for (int rounds = 0; n.up && rounds < 1000; ++rounds) {
      Ready ready = n.member->GetReady();
      if (ready.Empty() && !n.pending_install) return;
      CarryOut(id, std::move(ready));
    }
  }
  void ProcessAll() {
    for (int i = 1; i <= size(); ++i) Process(i);
  }

  // Delivers one in-flight message (the oldest, or a random one when reordering); false if none.
  bool DeliverOne() {
    if (in_flight_.empty()) return false;
    size_t index = Chance(faults_.reorder) ? rng_() % in_flight_.size() : 0;
    PeerMessage message = in_flight_[index];
    if (Chance(faults_.duplicate)) {
      // Stays in flight for a second delivery.
    } else {
      in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(index));
    }
    const int to = static_cast<int>(message.to());
    const int from = static_cast<int>(message.from());
    if (Chance(faults_.drop) || !node(to).up || !Connected(from, to)) return true;
    node(to).member->Step(message);
    Process(to);
    return true;
  }
  // Delivers until nothing is in flight (no ticks pass).
  void Stabilize(int max_messages = 200'000) {
    ProcessAll();
    for (int i = 0; i < max_messages && DeliverOne(); ++i) {
    }
    EXPECT_TRUE(in_flight_.empty()) << "the ensemble did not quiesce";
  }
  void TickAll() {
    for (int i = 1; i <= size(); ++i) {
      if (!node(i).up) continue;
      node(i).member->Tick();
      Process(i);
    }
  }
  // Ticks, each followed by delivering everything in flight.
  void Run(int ticks) {
    for (int t = 0; t < ticks; ++t) {
      TickAll();
      Stabilize();
    }
  }
  // Runs until one leader serves and every live member connected to it follows it, serving.
  bool RunUntilStable(int ticks_max = 400) {
    for (int t = 0; t < ticks_max; ++t) {
      Stabilize();
      if (Stable()) return true;
      TickAll();
    }
    Stabilize();
    return Stable();
  }
  bool Stable() {
    std::optional<int> leader = Leader();
    if (!leader) return false;
    for (int i = 1; i <= size(); ++i) {
      if (!node(i).up || i == *leader || !Connected(i, *leader)) continue;
      const Member& m = member(i);
      if (m.role() != Role::kFollowing || !m.serving() ||
          m.leader() != MemberId(static_cast<uint32_t>(*leader)) ||
          m.current_epoch() != member(*leader).current_epoch()) {
        return false;
      }
    }
    return true;
  }
  // The serving leader with the highest epoch among live members.
  std::optional<int> Leader() {
    std::optional<int> best;
    for (int i = 1; i <= size(); ++i) {
      if (!node(i).up) continue;
      const Member& m = member(i);
      if (m.role() == Role::kLeading && m.serving() &&
          (!best || m.current_epoch() > member(*best).current_epoch())) {
        best = i;
      }
    }
    return best;
  }

  // Proposes on `leader`; the zxid, or nullopt if refused. Its Ready is carried out with the
  // next Process (so proposals in between batch into one PROPOSAL per follower).
  std::optional<Zxid> Propose(int leader, const std::string& payload) {
    absl::StatusOr<Zxid> zxid = member(leader).Propose(payload);
    if (!zxid.ok()) return std::nullopt;
    node(leader).proposed[zxid->ToInt()] = payload;
    return *zxid;
  }

  // Compacts member `id`'s log through what it has applied.
  void TakeSnapshot(int id) {
    Node& n = node(id);
    if (!n.up || n.applied.empty()) return;
    n.log.TakeSnapshot(ZxidOf(n.applied.back()));
  }

  // Entries whose commit a leader reported to its client (Propose returned, then committed).
  const std::map<int64_t, std::string>& acknowledged() const { return acknowledged_; }
  const std::vector<LogEntry>& global_history() const { return global_; }
  int count_sent(PeerMessage::BodyCase body, int from = 0) const {
    int count = 0;
    for (int i = 1; i < static_cast<int>(nodes_.size()); ++i) {
      if (from != 0 && i != from) continue;
      for (const PeerMessage& m : nodes_[static_cast<size_t>(i)].sent) {
        if (m.body_case() == body) ++count;
      }
    }
    return count;
  }

  // Every live member has applied the same history, holding every acknowledged entry.
  void ExpectConverged() {
    std::optional<int> leader = Leader();
    ASSERT_TRUE(leader.has_value()) << Dump();
    const std::vector<LogEntry>& reference = node(*leader).applied;
    for (int i = 1; i <= size(); ++i) {
      if (!node(i).up) continue;
      const Node& n = node(i);
      EXPECT_EQ(n.member->committed(), member(*leader).committed()) << "member " << i << Dump();
      ASSERT_FALSE(n.applied.empty()) << "member " << i;
      EXPECT_EQ(ZxidOf(n.applied.back()), ZxidOf(reference.back())) << "member " << i << Dump();
    }
    std::map<int64_t, std::string> delivered;
    for (const LogEntry& entry : global_) delivered[entry.zxid()] = entry.payload();
    for (const auto& [zxid, payload] : acknowledged_) {
      auto it = delivered.find(zxid);
      ASSERT_TRUE(it != delivered.end())
          << "acknowledged " << Zxid::FromInt(zxid).ToString() << " lost" << Dump();
      EXPECT_EQ(it->second, payload);
      EXPECT_LE(zxid, reference.back().zxid()) << "acknowledged entry not applied everywhere";
    }
  }

  std::string Dump() {
    std::string out = absl::StrCat("\n--- ensemble (seed ", seed_, ") ---\n");
    for (int i = 1; i <= size(); ++i) {
      Node& n = node(i);
      if (!n.up) {
        absl::StrAppend(&out, "member ", i, ": down\n");
        continue;
      }
      const Member& m = *n.member;
      absl::StrAppend(&out, "member ", i, ": role ", static_cast<int>(m.role()), " leader ",
                      m.leader().value(), " epochs ", m.accepted_epoch(), "/", m.current_epoch(),
                      " last ", m.last_zxid().ToString(), " durable ", m.durable().ToString(),
                      " committed ", m.committed().ToString(), " serving ", m.serving(),
                      " applied ", n.applied.size(), "\n");
      for (const std::string& line : m.trace()) absl::StrAppend(&out, "  ", line, "\n");
    }
    return out;
  }

 private:
  bool Chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  void CarryOut(int id, Ready ready) {
    Node& n = node(id);
    Member& m = *n.member;
    if (ready.leadership_confirmed) {
      EXPECT_GT(*ready.leadership_confirmed, n.leadership_confirmed) << "rounds only grow";
      n.leadership_confirmed = *ready.leadership_confirmed;
    }
    // 1. Persist: epochs, truncate, snapshot, append.
    if (ready.accepted_epoch) {
      EXPECT_GE(*ready.accepted_epoch, n.persisted.accepted_epoch);
      n.persisted.accepted_epoch = *ready.accepted_epoch;
    }
    if (ready.current_epoch) {
      EXPECT_GE(*ready.current_epoch, n.persisted.current_epoch);
      n.persisted.current_epoch = *ready.current_epoch;
    }
    if (ready.truncate_after) {
      const Zxid zxid = *ready.truncate_after;
      EXPECT_TRUE(n.applied.empty() || ZxidOf(n.applied.back()) <= zxid)
          << "member " << id << " truncates applied entries at " << zxid.ToString();
      n.log.TruncateAfter(zxid);
      n.disk_durable = std::min(n.disk_durable, zxid);
    }
    if (ready.install_snapshot) n.pending_install = *ready.install_snapshot;
    for (const LogEntry& entry : ready.append) n.log.Append(entry);
    // 2. Send (checking what each message promises is durable).
    for (PeerMessage& message : ready.messages) {
      CheckPromises(id, message);
      if (record_sent_) n.sent.push_back(message);
      in_flight_.push_back(std::move(message));
    }
    for (const auto& [to, zxid] : ready.send_snapshot) {
      EXPECT_EQ(n.log.SnapshotZxid(), zxid);
      snapshots_in_flight_[static_cast<int>(to.value())] = {zxid, n.log.HistoryThrough(zxid)};
    }
    // 3. Apply committed entries in order.
    if (ready.commit_through) Apply(id, *ready.commit_through);
    // 4. Role.
    if (ready.role && ready.role->role == Role::kLeading && ready.role->serving) {
      auto [it, inserted] = leaders_.emplace(ready.role->epoch, id);
      EXPECT_TRUE(inserted || it->second == id)
          << "two established leaders in epoch " << ready.role->epoch << ": " << it->second
          << " and " << id << Dump();
    }
    // The disk: durability now (or when the test says), then the snapshot transfer.
    if (n.auto_durable && !ready.append.empty()) {
      n.disk_durable = n.log.LastZxid();
      m.LogDurable(n.disk_durable);
    }
    if (n.pending_install) {
      auto it = snapshots_in_flight_.find(id);
      if (it != snapshots_in_flight_.end() && it->second.first == *n.pending_install) {
        const Zxid zxid = it->second.first;
        n.log.InstallSnapshot(zxid, it->second.second);
        n.disk_durable = zxid;
        n.applied.clear();
        for (const LogEntry& entry : n.log.snapshot_history()) {
          n.applied.push_back(entry);
          CheckGlobal(id, n.applied.size(), entry);
        }
        snapshots_in_flight_.erase(it);
        n.pending_install.reset();
        m.SnapshotInstalled(zxid);
      } else {
        n.pending_install.reset();  // lost with the leader: the member will time out
      }
    }
  }

  void Apply(int id, Zxid through) {
    Node& n = node(id);
    const Zxid applied = n.applied.empty() ? Zxid() : ZxidOf(n.applied.back());
    EXPECT_LE(through, n.disk_durable) << "member " << id << " applies past its durable log";
    for (const LogEntry& entry : n.log.HistoryThrough(through)) {
      if (ZxidOf(entry) <= applied) continue;
      EXPECT_TRUE(n.applied.empty() || ZxidOf(entry) > ZxidOf(n.applied.back()));
      n.applied.push_back(entry);
      CheckGlobal(id, n.applied.size(), entry);
      auto proposed = n.proposed.find(entry.zxid());
      if (proposed != n.proposed.end() && n.member->role() == Role::kLeading) {
        acknowledged_[entry.zxid()] = proposed->second;
      }
    }
    EXPECT_TRUE(!n.applied.empty() && ZxidOf(n.applied.back()) == through)
        << "member " << id << " cannot apply through " << through.ToString() << Dump();
  }

  // PrefixConsistency and Agreement: the entry at position `count` of every member's delivered
  // history is the same.
  void CheckGlobal(int id, size_t count, const LogEntry& entry) {
    const size_t index = count - 1;
    if (index < global_.size()) {
      EXPECT_EQ(global_[index].zxid(), entry.zxid())
          << "member " << id << " delivered " << ZxidOf(entry).ToString() << " at position "
          << index << " where another delivered " << ZxidOf(global_[index]).ToString();
      EXPECT_EQ(global_[index].payload(), entry.payload());
    } else {
      EXPECT_EQ(index, global_.size());
      global_.push_back(entry);
    }
  }

  // The Ready ordering: what a message promises is durable before it leaves.
  void CheckPromises(int id, const PeerMessage& message) {
    const Node& n = node(id);
    switch (message.body_case()) {
      case PeerMessage::kLeaderInfo:
        EXPECT_EQ(n.persisted.accepted_epoch, message.leader_info().new_epoch());
        break;
      case PeerMessage::kAckEpoch:
        EXPECT_EQ(n.persisted.accepted_epoch, message.epoch())
            << "ACKEPOCH before accepted epoch is durable";
        break;
      case PeerMessage::kNewLeader:
        EXPECT_EQ(n.persisted.current_epoch, message.new_leader().epoch());
        break;
      case PeerMessage::kAckNewLeader:
        EXPECT_EQ(n.persisted.current_epoch, message.ack_new_leader().epoch())
            << "NEWLEADER ACK before current epoch is durable";
        EXPECT_GE(n.disk_durable, Zxid::FromInt(message.ack_new_leader().last_zxid()))
            << "member " << id << " acks NEWLEADER before its log is durable";
        break;
      case PeerMessage::kAck:
        EXPECT_GE(n.disk_durable, Zxid::FromInt(message.ack().zxid()))
            << "member " << id << " acks before durable";
        break;
      case PeerMessage::kPong:
        EXPECT_GE(n.disk_durable, Zxid::FromInt(message.pong().durable_zxid()));
        break;
      default:
        break;
    }
  }

  std::vector<Node> nodes_;
  std::deque<PeerMessage> in_flight_;
  std::map<int, std::pair<Zxid, std::vector<LogEntry>>> snapshots_in_flight_;
  std::map<int, int> group_;
  NetworkFaults faults_;
  std::mt19937_64 rng_;
  uint64_t seed_;
  bool record_sent_ = true;
  std::vector<LogEntry> global_;
  std::map<Epoch, int> leaders_;
  std::map<int64_t, std::string> acknowledged_;
};

}  // namespace confab::zab::testing

#endif  // CONFAB_TESTS_UNIT_ZAB_ENSEMBLE_H_
