// Bounded, seeded fuzzing of every decoder that takes bytes from outside: log segments, snapshot
// files, peer messages and client requests. Each starts from valid input, damages it (flipped
// bytes, cut tails, inserted garbage, duplicated ranges) or makes it up, and checks the decoder
// only ever returns a result or an error: no crash, no sanitizer report (CI runs this under
// ASan+UBSan), and whatever it accepts is consistent. Deterministic: a failing iteration names
// its seed; CONFAB_FUZZ_ITERATIONS runs more.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confab/internal/peer.pb.h"
#include "confab/internal/txn.pb.h"
#include "gtest/gtest.h"
#include "server/pipeline/admission.h"
#include "server/storage/snapshot.h"
#include "server/storage/txn_log.h"
#include "server/tree/data_tree.h"
#include "server/zab/member.h"

namespace confab {
namespace {

int Iterations(int default_count) {
  const char* env = std::getenv("CONFAB_FUZZ_ITERATIONS");
  return env != nullptr ? std::atoi(env) : default_count;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/confab-fuzz-XXXXXX";
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : "";
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// One random damage to `bytes`.
void Mutate(std::mt19937_64* rng, std::string* bytes) {
  auto pick = [&](size_t n) { return n == 0 ? 0 : static_cast<size_t>((*rng)() % n); };
  switch ((*rng)() % 5) {
    case 0:  // flip a few bytes
      for (int i = 0, n = 1 + static_cast<int>(pick(4)); i < n && !bytes->empty(); ++i) {
        (*bytes)[pick(bytes->size())] ^= static_cast<char>(1 + pick(255));
      }
      break;
    case 1:  // cut the tail
      bytes->resize(pick(bytes->size() + 1));
      break;
    case 2: {  // insert garbage
      std::string garbage(1 + pick(64), '\0');
      for (char& c : garbage) c = static_cast<char>((*rng)());
      bytes->insert(pick(bytes->size() + 1), garbage);
      break;
    }
    case 3: {  // duplicate a range
      size_t from = pick(bytes->size() + 1);
      size_t length = pick(bytes->size() - from + 1);
      bytes->insert(pick(bytes->size() + 1), bytes->substr(from, length));
      break;
    }
    default:  // zero a range (a hole the file system filled)
      if (!bytes->empty()) {
        size_t from = pick(bytes->size());
        size_t length = std::min(bytes->size() - from, 1 + pick(128));
        std::fill(bytes->begin() + static_cast<std::ptrdiff_t>(from),
                  bytes->begin() + static_cast<std::ptrdiff_t>(from + length), '\0');
      }
  }
}

TEST(DecodersFuzzTest, DamagedLogSegmentsAreRecoveredOrRefusedNeverMisread) {
  // A valid log to damage: records of varying size over two epochs.
  TempDir valid;
  {
    storage::LogRecoveryReport report;
    auto log = storage::TxnLog::Open(valid.path(), storage::LogOptions(), &report);
    ASSERT_TRUE(log.ok()) << log.status();
    for (uint32_t i = 1; i <= 40; ++i) {
      ASSERT_TRUE(
          (*log)->Append(Zxid(1, i), std::string(i * 7, static_cast<char>('a' + i % 26))).ok());
    }
    for (uint32_t i = 1; i <= 10; ++i) ASSERT_TRUE((*log)->Append(Zxid(2, i), "x").ok());
    ASSERT_TRUE((*log)->Sync().ok());
  }
  std::string segment_name;
  for (const auto& entry : std::filesystem::directory_iterator(valid.path())) {
    segment_name = entry.path().filename().string();
  }
  const std::string original = ReadFile(valid.path() + "/" + segment_name);

  for (int seed = 0; seed < Iterations(400); ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937_64 rng(seed);
    std::string bytes = original;
    for (int m = 0, n = 1 + static_cast<int>(rng() % 3); m < n; ++m) Mutate(&rng, &bytes);
    TempDir dir;
    WriteFile(dir.path() + "/" + segment_name, bytes);
    storage::LogRecoveryReport report;
    auto log = storage::TxnLog::Open(dir.path(), storage::LogOptions(), &report);
    if (!log.ok()) continue;  // refused, with a message: fine
    // Accepted: what it reads back is a contiguous prefix of what was written.
    Zxid last;
    size_t records = 0;
    absl::Status read = (*log)->ReadAfter(Zxid(), [&](Zxid zxid, absl::string_view) {
      const bool contiguous =
          last.IsZero()
              ? zxid == Zxid(1, 1)
              : (zxid == last.Next() || (zxid.epoch() > last.epoch() && zxid.counter() == 1));
      EXPECT_TRUE(contiguous) << zxid.ToString() << " after " << last.ToString();
      last = zxid;
      ++records;
      return absl::OkStatus();
    });
    EXPECT_TRUE(read.ok()) << read;
    EXPECT_EQ((*log)->last_zxid(), last);
    EXPECT_LE(records, 50u);
  }
}

TEST(DecodersFuzzTest, DamagedSnapshotsAreSkippedOrLoadedWholeNeverHalfLoaded) {
  TempDir valid;
  tree::DataTree source;
  internal::Txn txn;
  txn.set_time_ms(1);
  for (uint32_t i = 1; i <= 60; ++i) {
    txn.mutable_create()->set_path(absl::StrCat("/n", i));
    txn.mutable_create()->set_data(std::string(i, 'd'));
    internal::TxnResult result;
    std::vector<tree::WatchTrigger> triggers;
    source.Apply(Zxid(1, i), txn, &result, &triggers);
  }
  {
    tree::SnapshotCursor cursor = source.BeginSnapshot();
    auto writer = storage::SnapshotWriter::Create(valid.path(), cursor.zxid(), cursor.digest());
    ASSERT_TRUE(writer.ok()) << writer.status();
    while (source.NextSnapshotChunk(
        &cursor, 16, [&](absl::string_view path, const Stat& stat, absl::string_view data) {
          ASSERT_TRUE((*writer)->AddNode(path, stat, data).ok());
        })) {
    }
    source.EndSnapshot();
    ASSERT_TRUE((*writer)->Commit().ok());
  }
  std::string file_name;
  for (const auto& entry : std::filesystem::directory_iterator(valid.path())) {
    file_name = entry.path().filename().string();
  }
  const std::string original = ReadFile(valid.path() + "/" + file_name);

  for (int seed = 0; seed < Iterations(300); ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937_64 rng(seed);
    std::string bytes = original;
    Mutate(&rng, &bytes);
    TempDir dir;
    WriteFile(dir.path() + "/" + file_name, bytes);
    tree::DataTree loaded;
    std::vector<std::string> warnings;
    auto info = storage::LoadLatestSnapshot(dir.path(), &loaded, &warnings);
    if (!info.ok() || !info->has_value()) continue;  // skipped or refused: fine
    // Loaded: then it is the whole image, digest verified.
    EXPECT_EQ(loaded.digest(), source.digest());
    EXPECT_EQ(loaded.node_count(), source.node_count());
  }
}

TEST(DecodersFuzzTest, ArbitraryPeerMessagesNeverCrashAMember) {
  // Input from peers is never trusted: whatever arrives, a member answers, ignores or goes back
  // to election, and never trips an invariant check.
  class EmptyLog : public zab::LogView {
   public:
    Zxid LastZxid() const override { return Zxid(); }
    Zxid SnapshotZxid() const override { return Zxid(); }
    bool Contains(Zxid zxid) const override { return zxid.IsZero(); }
    Zxid LastAtOrBefore(Zxid) const override { return Zxid(); }
    std::vector<internal::LogEntry> EntriesAfter(Zxid, size_t) const override { return {}; }
  };
  EmptyLog log;
  for (int seed = 0; seed < Iterations(300); ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937_64 rng(seed);
    zab::Config config;
    config.id = MemberId(1);
    config.members = {MemberId(1), MemberId(2), MemberId(3)};
    config.seed = static_cast<uint64_t>(seed);
    zab::Member member(config, zab::PersistentState{}, &log);
    for (int step = 0; step < 40; ++step) {
      internal::PeerMessage message;
      message.set_from(1 + static_cast<uint32_t>(rng() % 4));
      message.set_to(1);
      message.set_epoch(static_cast<uint32_t>(rng() % 3));
      auto zxid = [&] { return Zxid(static_cast<Epoch>(rng() % 3), rng() % 4).ToInt(); };
      switch (rng() % 15) {
        case 0: {
          auto* vote = message.mutable_vote();
          vote->set_round(rng() % 3);
          vote->set_leader(static_cast<uint32_t>(rng() % 4));
          vote->set_zxid(zxid());
          vote->set_epoch(static_cast<uint32_t>(rng() % 3));
          vote->set_state(static_cast<internal::MemberState>(rng() % 3));
          break;
        }
        case 1:
          message.mutable_follower_info()->set_accepted_epoch(static_cast<uint32_t>(rng() % 3));
          message.mutable_follower_info()->set_last_zxid(zxid());
          break;
        case 2:
          message.mutable_leader_info()->set_new_epoch(static_cast<uint32_t>(rng() % 4));
          break;
        case 3:
          message.mutable_ack_epoch()->set_current_epoch(static_cast<uint32_t>(rng() % 3));
          message.mutable_ack_epoch()->set_last_zxid(zxid());
          break;
        case 4:
          message.mutable_trunc()->set_zxid(zxid());
          break;
        case 5:
          message.mutable_snap()->set_zxid(zxid());
          break;
        case 6: {
          auto* entry = message.mutable_diff()->add_entries();
          entry->set_zxid(zxid());
          entry->set_payload("p");
          break;
        }
        case 7:
          message.mutable_new_leader()->set_epoch(static_cast<uint32_t>(rng() % 3));
          message.mutable_new_leader()->set_last_zxid(zxid());
          break;
        case 8:
          message.mutable_ack_new_leader()->set_epoch(static_cast<uint32_t>(rng() % 3));
          break;
        case 9:
          message.mutable_up_to_date()->set_committed_zxid(zxid());
          break;
        case 10: {
          auto* entry = message.mutable_proposal()->add_entries();
          entry->set_zxid(zxid());
          break;
        }
        case 11:
          message.mutable_ack()->set_zxid(zxid());
          break;
        case 12:
          message.mutable_commit()->set_zxid(zxid());
          break;
        case 13:
          message.mutable_ping()->set_committed_zxid(zxid());
          break;
        default:
          message.mutable_pong()->set_durable_zxid(zxid());
          break;
      }
      member.Step(message);
      if (rng() % 4 == 0) member.Tick();
      zab::Ready ready = member.GetReady();
      // Whatever the member asks its caller to do, it acknowledges only what it had durable.
      if (!ready.append.empty()) member.LogDurable(Zxid::FromInt(ready.append.back().zxid()));
    }
  }
}

TEST(DecodersFuzzTest, ArbitraryRequestBytesAreAdmittedOrRefusedCleanly) {
  const pipeline::Limits limits;
  for (int seed = 0; seed < Iterations(3000); ++seed) {
    std::mt19937_64 rng(seed);
    std::string bytes(rng() % 96, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    // Printable paths are likelier to reach the deeper checks.
    if (seed % 2 == 0) {
      for (char& c : bytes) c = "/ab.\x01-_"[static_cast<size_t>(c) % 7];
    }
    v1::SessionRequest request;
    if (!request.ParseFromString(bytes)) {
      request.mutable_create()->set_path(bytes);
      request.mutable_create()->set_mode(static_cast<v1::CreateMode>(rng() % 6));
    }
    const SessionId session(static_cast<int64_t>(rng() % 2));
    switch (request.request_case()) {
      case v1::SessionRequest::kCreate:
        (void)pipeline::AdmitCreate(request.create(), session, 1, limits);
        break;
      case v1::SessionRequest::kSet:
        (void)pipeline::AdmitSet(request.set(), session, 1, limits);
        break;
      case v1::SessionRequest::kDelete:
        (void)pipeline::AdmitDelete(request.delete_(), session, 1, limits);
        break;
      case v1::SessionRequest::kMulti:
        (void)pipeline::AdmitMulti(request.multi(), session, 1, limits);
        break;
      default:
        (void)pipeline::ValidateRead(bytes, rng() % 2 == 0, session);
        break;
    }
  }
}

}  // namespace
}  // namespace confab
