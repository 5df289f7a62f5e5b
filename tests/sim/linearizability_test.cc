// The linearizability checker on small hand-made histories that are and are not linearizable,
// and on random histories that are linearizable by construction.
#include "tests/sim/linearizability.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace confab::sim {
namespace {

using ::testing::HasSubstr;

Operation Write(OpKind kind, int64_t data, int64_t invoke, int64_t response,
                v1::ErrorCode error = v1::OK) {
  Operation op;
  op.kind = kind;
  op.data = data;
  op.invoke = invoke;
  op.response = response;
  op.error = error;
  return op;
}

Operation Create(int64_t data, int64_t invoke, int64_t response, v1::ErrorCode error = v1::OK) {
  return Write(OpKind::kCreate, data, invoke, response, error);
}

Operation Set(int64_t data, int32_t version_after, int64_t invoke, int64_t response) {
  Operation op = Write(OpKind::kSet, data, invoke, response);
  op.version_after = version_after;
  return op;
}

Operation SetIf(int32_t expected, int64_t data, int64_t invoke, int64_t response,
                v1::ErrorCode error, int32_t version_after = 0) {
  Operation op = Set(data, version_after, invoke, response);
  op.expected_version = expected;
  op.error = error;
  return op;
}

Operation Delete(std::optional<int32_t> expected, int64_t invoke, int64_t response,
                 v1::ErrorCode error = v1::OK) {
  Operation op = Write(OpKind::kDelete, 0, invoke, response, error);
  op.expected_version = expected;
  return op;
}

Operation Read(NodeValue seen, int64_t invoke, int64_t response) {
  Operation op;
  op.kind = OpKind::kRead;
  op.read = seen;
  op.invoke = invoke;
  op.response = response;
  return op;
}

Operation Unknown(Operation op) {
  op.unknown = true;
  op.response = 0;
  return op;
}

Operation OnKey(int key, Operation op) {
  op.key = key;
  return op;
}

NodeValue Value(int64_t data, int32_t version) { return NodeValue{true, data, version}; }
const NodeValue kAbsent{};

bool Linearizable(const std::vector<Operation>& history) {
  return CheckLinearizable(history).linearizable;
}

TEST(LinearizabilityTest, EmptyHistoryIsLinearizable) { EXPECT_TRUE(Linearizable({})); }

TEST(LinearizabilityTest, SequentialHistoryFollowingTheModelIsLinearizable) {
  EXPECT_TRUE(Linearizable({
      Read(kAbsent, 1, 2),
      Create(1, 3, 4),
      Read(Value(1, 0), 5, 6),
      Set(2, 1, 7, 8),
      Read(Value(2, 1), 9, 10),
      Delete(1, 11, 12),
      Read(kAbsent, 13, 14),
      Delete(std::nullopt, 15, 16, v1::NO_NODE),
      Write(OpKind::kSet, 3, 17, 18, v1::NO_NODE),
  }));
}

TEST(LinearizabilityTest, SuccessOnAnAbsentNodeIsNot) {
  EXPECT_FALSE(Linearizable({Create(1, 1, 2), Delete(std::nullopt, 3, 4), Set(3, 1, 5, 6)}));
  EXPECT_FALSE(Linearizable({Delete(std::nullopt, 1, 2)}));
}

TEST(LinearizabilityTest, ReadOfAValueOverwrittenBeforeItStartedIsNot) {
  const std::vector<Operation> history = {
      Create(1, 1, 2),
      Set(2, 1, 3, 4),
      Read(Value(1, 0), 5, 6),
  };
  const LinearizabilityResult result = CheckLinearizable(history);
  EXPECT_FALSE(result.linearizable);
  EXPECT_FALSE(result.inconclusive);
  EXPECT_THAT(result.explanation, HasSubstr("key 0"));
  EXPECT_THAT(result.explanation, HasSubstr("read(k0) -> w1 v0"));
}

TEST(LinearizabilityTest, ReadsDuringAWriteMaySeeOldThenNewButNotNewThenOld) {
  EXPECT_TRUE(Linearizable({
      Create(1, 1, 2),
      Set(2, 1, 3, 10),
      Read(Value(1, 0), 4, 5),
      Read(Value(2, 1), 6, 7),
  }));
  EXPECT_FALSE(Linearizable({
      Create(1, 1, 2),
      Set(2, 1, 3, 10),
      Read(Value(2, 1), 4, 5),
      Read(Value(1, 0), 6, 7),
  }));
}

TEST(LinearizabilityTest, ConcurrentReadsMayBeOrderedEitherWay) {
  EXPECT_TRUE(Linearizable({
      Create(1, 1, 2),
      Set(2, 1, 3, 10),
      Read(Value(2, 1), 4, 8),
      Read(Value(1, 0), 5, 9),
  }));
}

TEST(LinearizabilityTest, ConditionalWritesFailExactlyWhenTheVersionDiffers) {
  EXPECT_TRUE(Linearizable({
      Create(1, 1, 2),
      SetIf(0, 2, 3, 4, v1::OK, 1),
      SetIf(0, 3, 5, 6, v1::BAD_VERSION),
      Delete(0, 7, 8, v1::BAD_VERSION),
      Delete(1, 9, 10),
  }));
  EXPECT_FALSE(Linearizable({
      Create(1, 1, 2),
      SetIf(0, 2, 3, 4, v1::OK, 1),
      SetIf(1, 3, 5, 6, v1::BAD_VERSION),
  }));
  EXPECT_FALSE(Linearizable({
      Create(1, 1, 2),
      SetIf(0, 2, 3, 4, v1::OK, 1),
      SetIf(0, 3, 5, 6, v1::OK, 2),
  }));
}

TEST(LinearizabilityTest, ASetReportsTheVersionItMade) {
  EXPECT_FALSE(Linearizable({Create(1, 1, 2), Set(2, 2, 3, 4)}));
}

TEST(LinearizabilityTest, OnlyOneOfConcurrentCreatesSucceeds) {
  EXPECT_TRUE(Linearizable({Create(1, 1, 4), Create(2, 2, 3, v1::NODE_EXISTS)}));
  EXPECT_TRUE(Linearizable({
      Create(1, 1, 4, v1::NODE_EXISTS),
      Create(2, 2, 3),
      Read(Value(2, 0), 5, 6),
  }));
  EXPECT_FALSE(Linearizable({Create(1, 1, 4), Create(2, 2, 3)}));
}

TEST(LinearizabilityTest, AWriteOfUnknownOutcomeMayTakeEffectOrNot) {
  EXPECT_TRUE(Linearizable({
      Create(1, 1, 2),
      Unknown(Set(2, 1, 3, 0)),
      Read(Value(1, 0), 5, 6),
  }));
  EXPECT_TRUE(Linearizable({
      Create(1, 1, 2),
      Unknown(Set(2, 1, 3, 0)),
      Read(Value(1, 0), 5, 6),
      Read(Value(2, 1), 7, 8),
  }));
  // Once seen, it stays (nothing else overwrote it).
  EXPECT_FALSE(Linearizable({
      Create(1, 1, 2),
      Unknown(Set(2, 1, 3, 0)),
      Read(Value(2, 1), 5, 6),
      Read(Value(1, 0), 7, 8),
  }));
}

TEST(LinearizabilityTest, AWriteOfUnknownOutcomeTakesEffectOnlyAfterItWasInvoked) {
  EXPECT_FALSE(Linearizable({
      Create(1, 1, 2),
      Read(Value(2, 1), 3, 4),
      Unknown(Set(2, 1, 5, 0)),
  }));
}

TEST(LinearizabilityTest, AWriteOfUnknownOutcomeCanExplainALaterSuccess) {
  // The create's outcome is unknown, but a later successful set needs the node to exist.
  EXPECT_TRUE(Linearizable({Unknown(Create(1, 1, 0)), Set(2, 1, 3, 4)}));
  EXPECT_FALSE(Linearizable({Set(2, 1, 1, 2), Unknown(Create(1, 3, 0))}));
}

TEST(LinearizabilityTest, KeysAreCheckedIndependently) {
  const LinearizabilityResult result = CheckLinearizable({
      OnKey(0, Create(1, 1, 2)),
      OnKey(1, Create(2, 3, 4)),
      OnKey(0, Read(Value(1, 0), 5, 6)),
      OnKey(1, Delete(std::nullopt, 7, 8)),
      OnKey(1, Read(Value(2, 0), 9, 10)),
  });
  EXPECT_FALSE(result.linearizable);
  EXPECT_THAT(result.explanation, HasSubstr("key 1"));
  // A read of one key is not affected by writes of another.
  EXPECT_TRUE(Linearizable({
      OnKey(0, Create(1, 1, 2)),
      OnKey(1, Read(kAbsent, 3, 4)),
  }));
}

TEST(LinearizabilityTest, GivesUpPastTheStateBoundWithoutClaimingAFailure) {
  std::vector<Operation> history = {Create(0, 1, 2)};
  for (int i = 1; i <= 12; ++i) history.push_back(Unknown(Set(i, 0, 2 + i, 0)));
  history.push_back(Read(Value(0, 0), 100, 101));
  const LinearizabilityResult bounded = CheckLinearizable(history, 10);
  EXPECT_TRUE(bounded.inconclusive);
  EXPECT_TRUE(bounded.linearizable);
  const LinearizabilityResult full = CheckLinearizable(history);
  EXPECT_FALSE(full.inconclusive);
  EXPECT_TRUE(full.linearizable);
}

// Histories made from a sequential run of the model, each operation's interval stretched around
// its point in that run, are linearizable however much they overlap.
TEST(LinearizabilityTest, RandomHistoriesLinearizableByConstructionPass) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::vector<Operation> history;
    std::vector<NodeValue> values(3);
    const int count = 20 + static_cast<int>(rng() % 40);
    for (int i = 0; i < count; ++i) {
      const int key = static_cast<int>(rng() % 3);
      NodeValue& value = values[static_cast<size_t>(key)];
      const int64_t point = 100 * (i + 1);
      Operation op;
      op.key = key;
      op.client = static_cast<int>(rng() % 4);
      op.invoke = point - 1 - static_cast<int64_t>(rng() % 250);
      op.response = point + 1 + static_cast<int64_t>(rng() % 250);
      switch (rng() % 4) {
        case 0:
          op.kind = OpKind::kCreate;
          op.data = i;
          op.error = value.exists ? v1::NODE_EXISTS : v1::OK;
          if (!value.exists) value = NodeValue{true, i, 0};
          break;
        case 1:
          op.kind = OpKind::kSet;
          op.data = i;
          if (rng() % 2 == 0) op.expected_version = static_cast<int32_t>(rng() % 3);
          if (!value.exists) {
            op.error = v1::NO_NODE;
          } else if (op.expected_version && *op.expected_version != value.version) {
            op.error = v1::BAD_VERSION;
          } else {
            value = NodeValue{true, i, value.version + 1};
            op.version_after = value.version;
          }
          break;
        case 2:
          op.kind = OpKind::kDelete;
          op.error = value.exists ? v1::OK : v1::NO_NODE;
          value = NodeValue{};
          break;
        default:
          op.kind = OpKind::kRead;
          op.read = value;
          break;
      }
      if (op.kind != OpKind::kRead && rng() % 10 == 0) op.unknown = true;
      // Distinct times, as the simulator's logical clock gives.
      op.invoke = op.invoke * 1000 + i;
      op.response = op.response * 1000 + 500 + i;
      history.push_back(op);
    }
    const LinearizabilityResult result = CheckLinearizable(history);
    ASSERT_TRUE(result.linearizable) << "round " << round << ": " << result.explanation;
    ASSERT_FALSE(result.inconclusive) << "round " << round;
  }
}

}  // namespace
}  // namespace confab::sim
