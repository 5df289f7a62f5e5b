// Direct tests of one zab::Member: what a Ready holds after single events.
#include "server/zab/member.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/unit/zab/ensemble.h"

namespace confab::zab::testing {
namespace {

Config ThreeMembers(uint32_t id) {
  Config config;
  config.id = MemberId(id);
  config.members = {MemberId(1), MemberId(2), MemberId(3)};
  return config;
}

// A LOOKING member's vote for `leader` in round `round`.
internal::PeerMessage LookingVote(uint32_t from, uint32_t to, uint32_t leader, uint64_t round) {
  internal::PeerMessage vote;
  vote.set_from(from);
  vote.set_to(to);
  vote.mutable_vote()->set_round(round);
  vote.mutable_vote()->set_leader(leader);
  vote.mutable_vote()->set_state(internal::LOOKING);
  return vote;
}

TEST(MemberTest, StartsLookingAndVotesForItselfToEveryOtherMember) {
  MemoryLog log;
  log.Append(Entry(Zxid(1, 1), "a"));
  Member member(ThreeMembers(2), PersistentState{1, 1}, &log);
  EXPECT_EQ(member.role(), Role::kLooking);
  EXPECT_EQ(member.durable(), Zxid(1, 1));  // what the log holds after recovery is durable
  EXPECT_EQ(member.committed(), Zxid());    // only the snapshot is known committed
  Ready ready = member.GetReady();
  ASSERT_TRUE(ready.role.has_value());
  EXPECT_EQ(ready.role->role, Role::kLooking);
  ASSERT_EQ(ready.messages.size(), 2u);
  for (const internal::PeerMessage& message : ready.messages) {
    EXPECT_EQ(message.vote().leader(), 2u);
    EXPECT_EQ(message.vote().epoch(), 1u);
    EXPECT_EQ(message.vote().zxid(), Zxid(1, 1).ToInt());
    EXPECT_EQ(message.vote().state(), internal::LOOKING);
  }
  EXPECT_TRUE(member.GetReady().Empty());
}

TEST(MemberTest, ResendsItsVoteAndRestartsTheRoundWithJitter) {
  MemoryLog log;
  Member member(ThreeMembers(1), PersistentState{}, &log);
  member.GetReady();
  member.Tick();
  EXPECT_TRUE(member.GetReady().messages.empty());
  member.Tick();  // vote_resend_ticks
  EXPECT_EQ(member.GetReady().messages.size(), 2u);
  uint64_t round = 0;
  for (int t = 0; t < 25 && round <= 1; ++t) {
    member.Tick();
    for (const auto& message : member.GetReady().messages) round = message.vote().round();
  }
  EXPECT_EQ(round, 2u);  // within election_timeout_ticks .. twice that
}

TEST(MemberTest, AdoptsABetterVoteAndAnswersAnOlderRound) {
  MemoryLog log;
  Member member(ThreeMembers(1), PersistentState{}, &log);
  member.GetReady();
  member.Step(LookingVote(3, 1, 3, 5));
  // Round 5 and member 3's vote: a quorum (itself and 3) -> follows 3.
  EXPECT_EQ(member.role(), Role::kFollowing);
  EXPECT_EQ(member.leader(), MemberId(3));
  Ready ready = member.GetReady();
  ASSERT_FALSE(ready.messages.empty());
  EXPECT_TRUE(ready.messages.back().has_follower_info());
  EXPECT_EQ(ready.messages.back().to(), 3u);
}

TEST(MemberTest, FollowerWhoseLeaderNeverAnswersLooksAgainAfterSyncLimit) {
  // Member 1 counted member 3's vote, but 3 has moved on (it follows another leader, or was a
  // vote behind): no LEADERINFO will come. Discovery is one round trip, so member 1 looks again
  // after sync_limit_ticks rather than waiting out init_limit_ticks (meant for snapshots).
  MemoryLog log;
  Config config = ThreeMembers(1);
  config.sync_limit_ticks = 10;
  config.init_limit_ticks = 100;
  Member member(config, PersistentState{}, &log);
  member.GetReady();
  member.Step(LookingVote(3, 1, 3, 5));
  ASSERT_EQ(member.role(), Role::kFollowing);
  member.GetReady();
  for (int t = 0; t < config.sync_limit_ticks; ++t) member.Tick();
  EXPECT_EQ(member.role(), Role::kFollowing);
  member.Tick();
  EXPECT_EQ(member.role(), Role::kLooking);
}

TEST(MemberTest, LeaderWithoutAQuorumOfFollowersLooksAgainAfterSyncLimit) {
  MemoryLog log;
  Config config = ThreeMembers(3);
  config.sync_limit_ticks = 10;
  config.init_limit_ticks = 100;
  Member member(config, PersistentState{}, &log);
  member.GetReady();
  member.Step(LookingVote(1, 3, 3, 5));
  ASSERT_EQ(member.role(), Role::kLeading);
  member.GetReady();
  // Member 1 never sends FOLLOWERINFO (it moved on to another leader).
  for (int t = 0; t < config.sync_limit_ticks; ++t) member.Tick();
  EXPECT_EQ(member.role(), Role::kLeading);
  member.Tick();
  EXPECT_EQ(member.role(), Role::kLooking);
}

TEST(MemberTest, StandaloneMemberEstablishesItselfAndServes) {
  MemoryLog log;
  Config config;
  config.id = MemberId(1);
  config.members = {MemberId(1)};
  Member member(config, PersistentState{}, &log);
  EXPECT_EQ(member.role(), Role::kLeading);
  EXPECT_TRUE(member.serving());
  Ready ready = member.GetReady();
  EXPECT_EQ(ready.accepted_epoch, 1u);
  EXPECT_EQ(ready.current_epoch, 1u);
  ASSERT_TRUE(ready.role.has_value());
  EXPECT_TRUE(ready.role->serving);
  EXPECT_EQ(*member.Propose("x"), Zxid(1, 1));
  EXPECT_EQ(*member.Propose("y"), Zxid(1, 2));
  ready = member.GetReady();
  EXPECT_EQ(ready.append.size(), 2u);
  EXPECT_TRUE(ready.messages.empty());
  EXPECT_FALSE(ready.commit_through.has_value());  // not before it is durable
}

TEST(MemberTest, ProposalsBetweenTwoGetReadyCallsAreBounded) {
  MemoryLog log;
  Config config;
  config.id = MemberId(1);
  config.members = {MemberId(1)};
  config.proposal_entries_max = 2;
  Member member(config, PersistentState{}, &log);
  member.GetReady();
  EXPECT_TRUE(member.Propose("a").ok());
  EXPECT_TRUE(member.Propose("b").ok());
  EXPECT_EQ(member.Propose("c").status().code(), absl::StatusCode::kResourceExhausted);
  for (const auto& entry : member.GetReady().append) log.Append(entry);
  EXPECT_TRUE(member.Propose("c").ok());
}

TEST(MemberTest, TraceIsBounded) {
  MemoryLog log;
  Member member(ThreeMembers(1), PersistentState{}, &log);
  for (int t = 0; t < 10'000; ++t) {
    member.Tick();
    member.GetReady();
  }
  EXPECT_LE(member.trace().size(), 256u);
  EXPECT_NE(member.trace().back().find("timed out"), std::string::npos);
}

}  // namespace
}  // namespace confab::zab::testing
