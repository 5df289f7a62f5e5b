// Scenario tests of the ZAB core over the in-memory ensemble, several named after the bug reports
// in shared/LESSONS.md: each fails if that bug comes back.
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/zab/ensemble.h"

namespace confab::zab::testing {
namespace {

// Commits `count` entries through the current leader; returns their zxids.
std::vector<Zxid> CommitEntries(Ensemble& ensemble, int count, const std::string& prefix) {
  std::vector<Zxid> zxids;
  std::optional<int> leader = ensemble.Leader();
  EXPECT_TRUE(leader.has_value()) << ensemble.Dump();
  if (!leader) return zxids;
  for (int i = 0; i < count; ++i) {
    std::optional<Zxid> zxid = ensemble.Propose(*leader, absl::StrCat(prefix, i));
    EXPECT_TRUE(zxid.has_value());
    if (zxid) zxids.push_back(*zxid);
    if (i % 7 == 0) ensemble.Stabilize();  // several proposals per batch, several batches
  }
  ensemble.Stabilize();
  return zxids;
}

std::vector<int> Followers(Ensemble& ensemble, int leader) {
  std::vector<int> out;
  for (int i = 1; i <= ensemble.size(); ++i) {
    if (i != leader) out.push_back(i);
  }
  return out;
}

bool TraceMentions(const Member& member, const std::string& text) {
  for (const std::string& line : member.trace()) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

// Builds member `id`'s log with `counts[e-1]` entries in each epoch e, and its epochs.
void SeedHistory(Ensemble& ensemble, int id, Epoch current_epoch, std::vector<int> counts) {
  Node& node = ensemble.node(id);
  for (size_t e = 0; e < counts.size(); ++e) {
    for (int c = 1; c <= counts[e]; ++c) {
      const Zxid zxid(static_cast<Epoch>(e + 1), static_cast<uint32_t>(c));
      node.log.Append(Entry(zxid, absl::StrCat("seed-", zxid.ToString())));
    }
  }
  node.disk_durable = node.log.LastZxid();
  node.persisted = PersistentState{current_epoch, current_epoch};
}

// --- Election ------------------------------------------------------------------------------------

struct ElectionCase {
  std::string name;
  std::vector<std::pair<Epoch, std::vector<int>>> members;  // (current epoch, entries per epoch)
  int expected_leader;
};

class ElectionTest : public ::testing::TestWithParam<ElectionCase> {};

TEST_P(ElectionTest, ElectsTheMostUpToDateMember) {
  const ElectionCase& c = GetParam();
  Ensemble ensemble(static_cast<int>(c.members.size()), 7, Config{}, /*start=*/false);
  for (size_t i = 0; i < c.members.size(); ++i) {
    SeedHistory(ensemble, static_cast<int>(i) + 1, c.members[i].first, c.members[i].second);
  }
  for (int i = 1; i <= ensemble.size(); ++i) ensemble.Start(i);
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  EXPECT_EQ(ensemble.Leader(), c.expected_leader) << ensemble.Dump();
  // Everyone now holds the leader's history, and the new epoch is above every old one.
  const Member& leader = ensemble.member(c.expected_leader);
  for (int i = 1; i <= ensemble.size(); ++i) {
    EXPECT_EQ(ensemble.member(i).last_zxid(), leader.last_zxid()) << "member " << i;
    EXPECT_EQ(ensemble.member(i).current_epoch(), leader.current_epoch());
    EXPECT_EQ(ensemble.member(i).committed(), leader.last_zxid());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Votes, ElectionTest,
    ::testing::Values(
        // A higher current epoch beats a longer log from an older epoch.
        ElectionCase{"EpochFirst", {{2, {3, 1}}, {1, {9}}, {1, {5}}}, 1},
        // Same epoch: the longer log wins.
        ElectionCase{"ThenZxid", {{1, {5}}, {1, {7}}, {1, {5}}}, 2},
        // A tie: the highest id.
        ElectionCase{"ThenId", {{1, {4}}, {1, {4}}, {1, {4}}}, 3},
        ElectionCase{"FiveMembers", {{1, {4}}, {2, {4, 2}}, {1, {8}}, {2, {4, 1}}, {0, {}}}, 2},
        ElectionCase{"EmptyEnsembleOfFive", {{0, {}}, {0, {}}, {0, {}}, {0, {}}, {0, {}}}, 5}),
    [](const ::testing::TestParamInfo<ElectionCase>& param) { return param.param.name; });

// --- Broadcast -----------------------------------------------------------------------------------

class BroadcastTest : public ::testing::TestWithParam<int> {};

TEST_P(BroadcastTest, EstablishesAndCommitsInOrderOnEveryMember) {
  Ensemble ensemble(GetParam());
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  const int leader = *ensemble.Leader();
  std::vector<Zxid> zxids = CommitEntries(ensemble, 50, "x");
  ASSERT_EQ(zxids.size(), 50u);
  for (size_t i = 1; i < zxids.size(); ++i) EXPECT_EQ(zxids[i], zxids[i - 1].Next());
  for (int i = 1; i <= ensemble.size(); ++i) {
    const Node& node = ensemble.node(i);
    ASSERT_EQ(node.applied.size(), 50u) << "member " << i << ensemble.Dump();
    for (size_t k = 0; k < 50; ++k) {
      EXPECT_EQ(ZxidOf(node.applied[k]), zxids[k]);
      EXPECT_EQ(node.applied[k].payload(), absl::StrCat("x", k));
    }
    EXPECT_EQ(ensemble.member(i).committed(), zxids.back());
    EXPECT_FALSE(TraceMentions(ensemble.member(i), "refused")) << ensemble.Dump();
  }
  if (ensemble.size() == 1) return;
  // Proposals are batched: far fewer PROPOSAL messages than entries times followers.
  EXPECT_LT(ensemble.count_sent(internal::PeerMessage::kProposal, leader),
            50 * (ensemble.size() - 1) / 4);
  EXPECT_FALSE(ensemble.member(Followers(ensemble, leader)[0]).Propose("y").ok());
}

INSTANTIATE_TEST_SUITE_P(Sizes, BroadcastTest, ::testing::Values(1, 3, 5));

TEST(BroadcastTest, LeadershipIsConfirmedByAQuorumAndNeverByAMinority) {
  Ensemble ensemble(3, /*seed=*/7);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  auto round = ensemble.member(leader).ConfirmLeadership();
  ASSERT_TRUE(round.ok()) << round.status();
  ensemble.Stabilize();
  EXPECT_EQ(ensemble.node(leader).leadership_confirmed, *round);

  // Cut off from its followers, the leader (which has not noticed yet) gets no confirmation: a
  // Sync waiting for one is never answered with its possibly stale commit zxid.
  ensemble.Isolate(leader);
  auto cut_off = ensemble.member(leader).ConfirmLeadership();
  ASSERT_TRUE(cut_off.ok());
  ensemble.Stabilize();
  EXPECT_LT(ensemble.node(leader).leadership_confirmed, *cut_off);

  // A follower cannot confirm anything.
  const int follower = leader % 3 + 1;
  EXPECT_FALSE(ensemble.member(follower).ConfirmLeadership().ok());
}

TEST(BroadcastTest, AnEnsembleOfOneConfirmsItsLeadershipAtOnce) {
  Ensemble ensemble(1, /*seed=*/3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  auto round = ensemble.member(1).ConfirmLeadership();
  ASSERT_TRUE(round.ok());
  ensemble.Process(1);
  EXPECT_EQ(ensemble.node(1).leadership_confirmed, *round);
}

TEST(BroadcastTest, ProposeOnAFollowerNamesTheLeader) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  absl::StatusOr<Zxid> result = ensemble.member(Followers(ensemble, leader)[0]).Propose("x");
  ASSERT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(result.status().message().find(absl::StrCat("member ", leader)), std::string::npos);
}

TEST(BroadcastTest, AcksOnlyAfterLogDurableAndCommitsOnlyOnADurableQuorum) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int slow = Followers(ensemble, leader)[0];
  const int away = Followers(ensemble, leader)[1];
  ensemble.Isolate(away);
  ensemble.node(slow).auto_durable = false;
  const int acks_before = ensemble.count_sent(internal::PeerMessage::kAck, slow);
  const Zxid zxid = *ensemble.Propose(leader, "p");
  ensemble.Stabilize();
  EXPECT_EQ(ensemble.member(slow).last_zxid(), zxid);                              // appended...
  EXPECT_EQ(ensemble.count_sent(internal::PeerMessage::kAck, slow), acks_before);  // ...not acked
  EXPECT_LT(ensemble.member(leader).committed(), zxid);
  ensemble.MakeDurable(slow);
  ensemble.Stabilize();
  EXPECT_EQ(ensemble.count_sent(internal::PeerMessage::kAck, slow), acks_before + 1);
  EXPECT_EQ(ensemble.member(leader).committed(), zxid);
  EXPECT_EQ(ensemble.member(slow).committed(), zxid);
}

TEST(BroadcastTest, LeaderCommitsNothingItHasNotMadeDurableItself) {
  Ensemble ensemble(1);
  ensemble.node(1).auto_durable = false;
  ensemble.ProcessAll();
  ASSERT_TRUE(ensemble.member(1).serving());
  const Zxid zxid = *ensemble.Propose(1, "solo");
  ensemble.ProcessAll();
  EXPECT_LT(ensemble.member(1).committed(), zxid);  // etcd #14370: no ack before fsync
  ensemble.MakeDurable(1);
  EXPECT_EQ(ensemble.member(1).committed(), zxid);
  EXPECT_EQ(ensemble.node(1).applied.size(), 1u);
}

// Found by the simulator (tests/sim, seed 986): a PROPOSAL lost on its way to every follower (a
// broken stream loses what was in flight) left its entry uncommitted for as long as no later
// proposal revealed the gap, and the client waited forever.
TEST(BroadcastTest, AProposalLostToEveryFollowerIsResentAndCommits) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  CommitEntries(ensemble, 2, "a");
  const int leader = *ensemble.Leader();
  const std::optional<Zxid> lost = ensemble.Propose(leader, "lost");
  ASSERT_TRUE(lost.has_value());
  ensemble.Process(leader);
  ASSERT_EQ(std::erase_if(ensemble.in_flight(),
                          [](const internal::PeerMessage& m) { return m.has_proposal(); }),
            2u);
  ensemble.Stabilize();
  EXPECT_LT(ensemble.member(leader).committed(), *lost);
  ensemble.Run(3 * Config{}.heartbeat_ticks);
  EXPECT_EQ(ensemble.member(leader).committed(), *lost) << ensemble.Dump();
  ensemble.ExpectConverged();
  for (int i = 1; i <= ensemble.size(); ++i) {
    EXPECT_FALSE(TraceMentions(ensemble.member(i), "refused")) << ensemble.Dump();
  }
}

// A retransmission, or a duplicated PROPOSAL, repeats entries the follower holds: it skips them
// instead of refusing and resynchronizing.
TEST(BroadcastTest, AFollowerSkipsRepeatedEntriesAndAppendsTheRest) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  CommitEntries(ensemble, 2, "a");
  const int leader = *ensemble.Leader();
  ASSERT_TRUE(ensemble.Propose(leader, "b").has_value());
  ensemble.Process(leader);
  std::vector<internal::PeerMessage> first_batch;
  for (const internal::PeerMessage& m : ensemble.in_flight()) {
    if (m.has_proposal()) first_batch.push_back(m);
  }
  ASSERT_EQ(first_batch.size(), 2u);
  ensemble.Stabilize();
  ASSERT_TRUE(ensemble.Propose(leader, "c").has_value());
  ensemble.Process(leader);
  // Ahead of the proposal of "c": the first batch again (held entirely), then the first batch
  // extended with "c" (held in part).
  for (const internal::PeerMessage& repeated : first_batch) {
    internal::PeerMessage extended = repeated;
    *extended.mutable_proposal()->add_entries() = Entry(ensemble.member(leader).last_zxid(), "c");
    ensemble.in_flight().push_front(extended);
    ensemble.in_flight().push_front(repeated);
  }
  ensemble.Stabilize();
  CommitEntries(ensemble, 1, "d");
  for (int i = 1; i <= ensemble.size(); ++i) {
    EXPECT_FALSE(TraceMentions(ensemble.member(i), "refused")) << ensemble.Dump();
  }
  ensemble.ExpectConverged();
}

// --- Synchronization -----------------------------------------------------------------------------

TEST(SyncTest, RestartedFollowerCatchesUpByDiff) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  CommitEntries(ensemble, 10, "a");
  ensemble.Crash(follower);
  CommitEntries(ensemble, 10, "b");
  const int snaps = ensemble.count_sent(internal::PeerMessage::kSnap, leader);
  const int truncs = ensemble.count_sent(internal::PeerMessage::kTrunc, leader);
  const int diffs = ensemble.count_sent(internal::PeerMessage::kDiff, leader);
  ensemble.Start(follower);
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  EXPECT_EQ(ensemble.Leader(), leader);  // joined the established leader, no new election
  EXPECT_EQ(ensemble.count_sent(internal::PeerMessage::kSnap, leader), snaps);
  EXPECT_EQ(ensemble.count_sent(internal::PeerMessage::kTrunc, leader), truncs);
  EXPECT_GT(ensemble.count_sent(internal::PeerMessage::kDiff, leader), diffs);
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
  EXPECT_EQ(ensemble.node(follower).applied.size(), 21u);
  EXPECT_FALSE(TraceMentions(ensemble.member(follower), "refused")) << ensemble.Dump();
}

TEST(SyncTest, LateJoinerGetsProposalsMadeAfterItsDiffInOrder) {
  Config config;
  config.proposal_entries_max = 4;  // DIFF in several chunks
  Ensemble ensemble(3, 1, config);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  ensemble.Crash(follower);
  CommitEntries(ensemble, 4, "a");  // more than one chunk
  ensemble.Start(follower);
  // Deliver until the leader's NEWLEADER to the follower is in flight, then propose before it
  // arrives: those proposals follow it on the same path with the right prev_zxid.
  bool new_leader_in_flight = false;
  for (int i = 0; i < 1000 && !new_leader_in_flight; ++i) {
    for (const auto& message : ensemble.in_flight()) {
      if (message.has_new_leader() && message.to() == static_cast<uint32_t>(follower)) {
        new_leader_in_flight = true;
      }
    }
    if (!new_leader_in_flight) {
      ASSERT_TRUE(ensemble.DeliverOne());
    }
  }
  ASSERT_TRUE(new_leader_in_flight);
  EXPECT_GE(ensemble.count_sent(internal::PeerMessage::kDiff, leader), 2);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ensemble.Propose(leader, absl::StrCat("late", i)));
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  EXPECT_FALSE(TraceMentions(ensemble.member(follower), "refused")) << ensemble.Dump();
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
  EXPECT_EQ(ensemble.node(follower).applied.size(), 8u);
}

TEST(SyncTest, FarBehindFollowerCatchesUpBySnapshot) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  CommitEntries(ensemble, 3, "a");
  ensemble.Crash(follower);
  CommitEntries(ensemble, 20, "b");
  ensemble.TakeSnapshot(leader);  // the entries the follower lacks are no longer in the log
  CommitEntries(ensemble, 2, "c");
  ensemble.Start(follower);
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  EXPECT_EQ(ensemble.count_sent(internal::PeerMessage::kSnap, leader), 1);
  EXPECT_EQ(ensemble.node(follower).log.SnapshotZxid(), ensemble.node(leader).log.SnapshotZxid());
  CommitEntries(ensemble, 1, "d");
  ensemble.ExpectConverged();
  EXPECT_EQ(ensemble.node(follower).applied.size(), 26u);
}

TEST(SyncTest, WipedFollowerCatchesUpBySnapshotAndDiff) {
  Config config;
  config.diff_entries_max = 8;  // a longer DIFF is replaced by SNAP
  Ensemble ensemble(3, 3, config);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  CommitEntries(ensemble, 12, "a");
  ensemble.TakeSnapshot(leader);
  CommitEntries(ensemble, 3, "b");
  ensemble.Crash(follower);
  ensemble.node(follower).log.Wipe();
  ensemble.node(follower).disk_durable = Zxid();
  ensemble.node(follower).persisted = PersistentState{};
  ensemble.Start(follower);
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  EXPECT_EQ(ensemble.count_sent(internal::PeerMessage::kSnap, leader), 1);
  EXPECT_EQ(ensemble.node(follower).log.entries().size(), 3u);  // the DIFF after the snapshot
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
}

TEST(SyncTest, StaleLeaderIsTruncatedOnRejoinAndItsExtraEntriesNeverApplied) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int old_leader = *ensemble.Leader();
  CommitEntries(ensemble, 3, "a");
  const Epoch old_epoch = ensemble.member(old_leader).current_epoch();
  ensemble.Isolate(old_leader);
  std::set<int64_t> stale;
  for (int i = 0; i < 3; ++i) stale.insert(ensemble.Propose(old_leader, "stale")->ToInt());
  ensemble.Run(40);  // the old leader loses its quorum; the others elect
  const std::optional<int> new_leader = ensemble.Leader();
  ASSERT_TRUE(new_leader.has_value()) << ensemble.Dump();
  ASSERT_NE(*new_leader, old_leader);
  EXPECT_GT(ensemble.member(*new_leader).current_epoch(), old_epoch);
  EXPECT_NE(ensemble.member(old_leader).role(), Role::kLeading);
  CommitEntries(ensemble, 5, "b");
  ensemble.Heal();
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  EXPECT_GE(ensemble.count_sent(internal::PeerMessage::kTrunc, *new_leader), 1);
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
  for (const LogEntry& entry : ensemble.global_history()) {
    EXPECT_EQ(stale.count(entry.zxid()), 0u) << "a stale entry was delivered";
  }
  for (const LogEntry& entry : ensemble.node(old_leader).log.entries()) {
    EXPECT_EQ(stale.count(entry.zxid()), 0u) << "a stale entry survived TRUNC";
  }
}

// ZOOKEEPER-3911 / -3023: a NEWLEADER ACK must mean the synced history is durable. The leader
// syncs a slow-disk follower by DIFF; it may not count it (nor serve) before its disk has the
// history; then every member of that quorum crashes, and nothing committed may be lost.
TEST(SyncTest, Zookeeper3911CrashQuorumRightAfterNewLeaderAckLosesNothing) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int partner = Followers(ensemble, leader)[0];
  const int slow = Followers(ensemble, leader)[1];
  CommitEntries(ensemble, 3, "a");
  ensemble.Isolate(slow);
  CommitEntries(ensemble, 3, "b");  // committed by {leader, partner}; the slow one lacks them
  ensemble.Crash(partner);
  ensemble.node(slow).auto_durable = false;
  const int acks_before = ensemble.count_sent(internal::PeerMessage::kAckNewLeader, slow);
  ensemble.Heal();
  // The slow member notices it missed proposals and rejoins; the leader loses its quorum, the two
  // left elect again and sync the slow member by DIFF. Without a durable ACK nobody establishes.
  ensemble.Run(25);
  EXPECT_EQ(ensemble.count_sent(internal::PeerMessage::kAckNewLeader, slow), acks_before)
      << ensemble.Dump();
  EXPECT_FALSE(ensemble.Leader().has_value()) << ensemble.Dump();
  EXPECT_LT(ensemble.member(slow).durable(), ensemble.member(slow).last_zxid());
  // Let the disk catch up.
  for (int t = 0; t < 200 && !ensemble.Leader(); ++t) {
    ensemble.MakeDurable(slow);
    ensemble.Stabilize();
    if (!ensemble.Leader()) ensemble.TickAll();
  }
  ASSERT_TRUE(ensemble.Leader().has_value()) << ensemble.Dump();
  const int established = *ensemble.Leader();
  EXPECT_GT(ensemble.count_sent(internal::PeerMessage::kAckNewLeader), 0);
  const Zxid y = *ensemble.Propose(established, "y");
  ensemble.Stabilize();
  EXPECT_LT(ensemble.member(established).committed(), y);  // the slow disk has not made y durable
  ensemble.MakeDurable(slow);
  ensemble.Stabilize();
  ASSERT_EQ(ensemble.member(established).committed(), y) << ensemble.Dump();
  // Crash the whole quorum that established and committed; the old leader stays down, so only
  // the slow member's disk can still hold the history.
  ensemble.Crash(leader);
  ensemble.Crash(slow);
  ensemble.node(slow).auto_durable = true;
  ensemble.Start(slow);
  ensemble.Start(partner);
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
  EXPECT_EQ(ensemble.node(slow).applied.size(), 8u) << ensemble.Dump();
}

// ZOOKEEPER-4925 / -4785: a counter check accepts (2,1) after (1,3) though the leader's history has
// (1,4) and (1,5) in between; prev_zxid does not.
TEST(SyncTest, RefusesAProposalThatSkipsEntriesAcrossEpochs) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  CommitEntries(ensemble, 3, "a");
  for (int i = 1; i <= 3; ++i) ensemble.Restart(i);  // a new epoch with no proposals yet
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  Member& member = ensemble.member(follower);
  const Zxid last = member.last_zxid();
  const Epoch epoch = member.current_epoch();
  ASSERT_LT(last.epoch(), epoch);
  internal::PeerMessage message;
  message.set_from(static_cast<uint32_t>(leader));
  message.set_to(static_cast<uint32_t>(follower));
  message.set_epoch(epoch);
  message.mutable_proposal()->set_prev_zxid(Zxid(last.epoch(), last.counter() + 2).ToInt());
  *message.mutable_proposal()->add_entries() = Entry(Zxid(epoch, 1), "after a hole");
  member.Step(message);
  ensemble.Process(follower);
  EXPECT_EQ(member.role(), Role::kLooking);
  EXPECT_EQ(member.last_zxid(), last);
  EXPECT_EQ(ensemble.node(follower).log.LastZxid(), last);
  EXPECT_TRUE(TraceMentions(member, "refused PROPOSAL")) << ensemble.Dump();
}

TEST(SyncTest, RefusesAProposalWithACounterGap) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  CommitEntries(ensemble, 3, "a");
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  Member& member = ensemble.member(follower);
  const Zxid last = member.last_zxid();
  internal::PeerMessage message;
  message.set_from(static_cast<uint32_t>(leader));
  message.set_to(static_cast<uint32_t>(follower));
  message.set_epoch(member.accepted_epoch());
  message.mutable_proposal()->set_prev_zxid(last.ToInt());
  *message.mutable_proposal()->add_entries() = Entry(last.Next().Next(), "gap");
  member.Step(message);
  ensemble.Process(follower);
  EXPECT_EQ(member.role(), Role::kLooking);
  EXPECT_EQ(ensemble.node(follower).log.LastZxid(), last);
  EXPECT_TRUE(TraceMentions(member, "does not follow")) << ensemble.Dump();
  // It rejoins and catches up.
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  CommitEntries(ensemble, 1, "b");
  ensemble.ExpectConverged();
}

TEST(SyncTest, RefusesADiffThatDoesNotContinueItsLog) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  CommitEntries(ensemble, 3, "a");
  ensemble.Crash(follower);
  CommitEntries(ensemble, 3, "b");
  ensemble.Start(follower);
  bool tampered = false;
  for (int i = 0; i < 1000 && !tampered; ++i) {
    for (auto& message : ensemble.in_flight()) {
      if (message.has_diff() && message.to() == static_cast<uint32_t>(follower)) {
        // As if the leader had skipped the follower's first missing entry.
        const Zxid prev = Zxid::FromInt(message.diff().prev_zxid());
        message.mutable_diff()->set_prev_zxid(prev.Next().ToInt());
        message.mutable_diff()->mutable_entries()->erase(
            message.mutable_diff()->mutable_entries()->begin());
        tampered = true;
        break;
      }
    }
    if (!tampered) {
      ASSERT_TRUE(ensemble.DeliverOne());
    }
  }
  ASSERT_TRUE(tampered);
  const Zxid last = ensemble.node(follower).log.LastZxid();
  for (int i = 0; i < 1000 && ensemble.member(follower).role() != Role::kLooking; ++i) {
    ASSERT_TRUE(ensemble.DeliverOne());
  }
  EXPECT_EQ(ensemble.node(follower).log.LastZxid(), last) << "a gap was accepted";
  EXPECT_TRUE(TraceMentions(ensemble.member(follower), "refused DIFF")) << ensemble.Dump();
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
}

// --- Epochs --------------------------------------------------------------------------------------

TEST(EpochTest, EpochsArePersistedBeforeTheyAreActedOnAndSurviveRestart) {
  // The ensemble checks every ACKEPOCH / NEWLEADER ACK leaves after its epoch is durable.
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  CommitEntries(ensemble, 2, "a");
  std::vector<Epoch> epochs;
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(ensemble.node(i).persisted.accepted_epoch, ensemble.member(i).accepted_epoch());
    EXPECT_EQ(ensemble.node(i).persisted.current_epoch, ensemble.member(i).current_epoch());
    epochs.push_back(ensemble.member(i).current_epoch());
  }
  EXPECT_EQ(epochs[0], 1u);
  for (int i = 1; i <= 3; ++i) ensemble.Crash(i);
  for (int i = 1; i <= 3; ++i) {
    ensemble.Start(i);
    EXPECT_EQ(ensemble.member(i).current_epoch(), epochs[static_cast<size_t>(i - 1)]);
  }
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  const int leader = *ensemble.Leader();
  EXPECT_EQ(ensemble.member(leader).current_epoch(), 2u);
  EXPECT_EQ(ensemble.Propose(leader, "b")->epoch(), 2u);
  ensemble.Stabilize();
  ensemble.ExpectConverged();
}

// --- Failure detection and partitions ------------------------------------------------------------

TEST(PartitionTest, LeaderWithoutQuorumStepsDownAndMajorityElectsAHigherEpoch) {
  Ensemble ensemble(5);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int old_leader = *ensemble.Leader();
  CommitEntries(ensemble, 5, "a");
  const Epoch old_epoch = ensemble.member(old_leader).current_epoch();
  std::vector<int> others = Followers(ensemble, old_leader);
  ensemble.Partition({{old_leader, others[0]}, {others[1], others[2], others[3]}});
  ensemble.Run(40);
  EXPECT_NE(ensemble.member(old_leader).role(), Role::kLeading) << ensemble.Dump();
  EXPECT_TRUE(TraceMentions(ensemble.member(old_leader), "within sync_limit_ticks"));
  const std::optional<int> new_leader = ensemble.Leader();
  ASSERT_TRUE(new_leader.has_value()) << ensemble.Dump();
  EXPECT_GT(ensemble.member(*new_leader).current_epoch(), old_epoch);
  CommitEntries(ensemble, 3, "b");
  EXPECT_EQ(ensemble.node(*new_leader).applied.size(), 8u);
  ensemble.Heal();
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
}

TEST(PartitionTest, MinorityLeadersUncommittedProposalsAreTruncatedAfterHeal) {
  Ensemble ensemble(5);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int old_leader = *ensemble.Leader();
  CommitEntries(ensemble, 2, "a");
  std::vector<int> others = Followers(ensemble, old_leader);
  ensemble.Partition({{old_leader, others[0]}, {others[1], others[2], others[3]}});
  std::set<int64_t> minority;
  for (int i = 0; i < 4; ++i) minority.insert(ensemble.Propose(old_leader, "minority")->ToInt());
  ensemble.Stabilize();
  EXPECT_LT(ensemble.member(old_leader).committed().ToInt(), *minority.begin());
  EXPECT_EQ(ensemble.member(others[0]).last_zxid().ToInt(), *minority.rbegin());  // replicated
  ensemble.Run(40);
  CommitEntries(ensemble, 3, "majority");
  ensemble.Heal();
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  CommitEntries(ensemble, 1, "c");
  ensemble.ExpectConverged();
  for (int id : {old_leader, others[0]}) {
    for (const LogEntry& entry : ensemble.node(id).log.entries()) {
      EXPECT_EQ(minority.count(entry.zxid()), 0u) << "member " << id << " kept a minority entry";
    }
  }
  for (const LogEntry& entry : ensemble.global_history()) {
    EXPECT_EQ(minority.count(entry.zxid()), 0u);
  }
}

TEST(PartitionTest, FollowerCutOffFromItsLeaderLooksAgainAndRejoins) {
  Ensemble ensemble(3);
  ASSERT_TRUE(ensemble.RunUntilStable());
  const int leader = *ensemble.Leader();
  const int follower = Followers(ensemble, leader)[0];
  ensemble.Isolate(follower);
  ensemble.Run(15);
  EXPECT_EQ(ensemble.member(follower).role(), Role::kLooking);
  EXPECT_EQ(ensemble.Leader(), leader);  // the other two keep a quorum
  CommitEntries(ensemble, 3, "a");
  ensemble.Heal();
  ASSERT_TRUE(ensemble.RunUntilStable()) << ensemble.Dump();
  EXPECT_EQ(ensemble.Leader(), leader);
  CommitEntries(ensemble, 1, "b");
  ensemble.ExpectConverged();
}

}  // namespace
}  // namespace confab::zab::testing
