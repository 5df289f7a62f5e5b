// confabd: flags, wiring, signals. Nothing else lives here.
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/config/json_config.h"
#include "server/pipeline/replica.h"
#include "server/rpc/callback_thread_hold.h"
#include "server/rpc/coordination_service.h"
#include "server/rpc/peer_transport.h"
#include "server/storage/durable_file.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

#ifdef CONFAB_JEMALLOC
// Read by jemalloc when it starts: pages freed by a burst go back to the system after about a
// second of activity instead of ten. Returned at once (decay 0) they cost ~7% more CPU per write
// at saturation (madvise calls and the TLB shootdowns they send to the other core; four paired
// runs) for ~4 MiB less RSS after 100,000 nodes (73 against 77 MiB).
extern "C" {
const char* malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:0";
}
#endif

ABSL_FLAG(std::string, config, "",
          "Optional JSON config file: an object of flag names to values; "
          "flags on the command line override it");
ABSL_FLAG(std::string, data_dir, "default.confab",
          "Data directory (transaction log, snapshots, epochs). Created if missing; one confabd "
          "per directory");
ABSL_FLAG(std::string, listen, "127.0.0.1:2281",
          "Client address host:port (port 0 picks a free one; the address taken is written to "
          "<data-dir>/ADDRESS)");
ABSL_FLAG(int32_t, session_timeout_min_ms, 2000, "Smallest session timeout granted");
ABSL_FLAG(int32_t, session_timeout_max_ms, 60000, "Largest session timeout granted");
ABSL_FLAG(int32_t, tick_ms, 100, "Session expiry granularity");
ABSL_FLAG(uint64_t, snapshot_every_txns, 100000,
          "Write a snapshot after this many transactions (0: never)");
ABSL_FLAG(uint32_t, snapshots_kept, 3, "Snapshots kept on disk (the log is kept from the oldest)");
ABSL_FLAG(uint64_t, max_data_bytes, 1 << 20, "Largest data of one node, in bytes");
ABSL_FLAG(uint64_t, max_txn_bytes, 4 << 20, "Largest transaction (e.g. a Multi), in bytes");
ABSL_FLAG(uint64_t, watch_history_events, 100000,
          "Recent changes remembered so that watches re-added from a zxid miss nothing");
ABSL_FLAG(std::string, log_level, "info", "Log level: trace, debug, info, warn, error");
ABSL_FLAG(uint32_t, id, 0,
          "This member's id (1..255) in --peers; standalone when --peers is empty");
ABSL_FLAG(std::string, peers, "",
          "Every member of the ensemble as id=host:port of its peer service, comma separated "
          "(this member's entry is where it listens for peers), e.g. "
          "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103. Empty: standalone");
ABSL_FLAG(int32_t, election_timeout_ticks, 5,
          "Ticks (--tick-ms) before an election round is retried (plus up to as much jitter)");
ABSL_FLAG(
    int32_t, sync_limit_ticks, 10,
    "Ticks a follower waits for its leader, and a leader for a quorum, before electing again");
ABSL_FLAG(int32_t, init_limit_ticks, 100,
          "Ticks a follower has to synchronize with a new leader (snapshot transfer included)");
ABSL_FLAG(int32_t, grpc_callback_threads, 1,
          "gRPC threads left to poll the network and run call reactions (gRPC starts at least "
          "two; the others are held idle, see server/rpc/callback_thread_hold.h). 0: all of them");

namespace {

constexpr const char* kVersion = "0.1.0";

// A clear message and a non-zero exit, never a crash, for anything the operator can fix.
[[noreturn]] void Fail(const std::string& message) {
  spdlog::critical("{}", message);
  spdlog::shutdown();
  std::exit(1);
}

absl::Status CheckFlags() {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (absl::GetFlag(FLAGS_data_dir).empty()) return bad("--data-dir must not be empty");
  if (absl::GetFlag(FLAGS_session_timeout_min_ms) <= 0) {
    return bad("--session-timeout-min-ms must be positive");
  }
  if (absl::GetFlag(FLAGS_session_timeout_max_ms) < absl::GetFlag(FLAGS_session_timeout_min_ms)) {
    return bad(absl::StrCat(
        "--session-timeout-max-ms (", absl::GetFlag(FLAGS_session_timeout_max_ms),
        ") is below --session-timeout-min-ms (", absl::GetFlag(FLAGS_session_timeout_min_ms), ")"));
  }
  if (absl::GetFlag(FLAGS_tick_ms) <= 0) return bad("--tick-ms must be positive");
  if (absl::GetFlag(FLAGS_grpc_callback_threads) < 0) {
    return bad("--grpc-callback-threads must not be negative");
  }
  if (absl::GetFlag(FLAGS_max_data_bytes) == 0 ||
      absl::GetFlag(FLAGS_max_data_bytes) > (64u << 20)) {
    return bad("--max-data-bytes must be between 1 and 67108864");
  }
  if (absl::GetFlag(FLAGS_max_txn_bytes) < absl::GetFlag(FLAGS_max_data_bytes) ||
      absl::GetFlag(FLAGS_max_txn_bytes) > (256u << 20)) {
    return bad("--max-txn-bytes must be at least --max-data-bytes and at most 268435456");
  }
  if (absl::GetFlag(FLAGS_snapshots_kept) == 0) return bad("--snapshots-kept must be at least 1");
  if (absl::GetFlag(FLAGS_election_timeout_ticks) <= 0 ||
      absl::GetFlag(FLAGS_sync_limit_ticks) <= 0 || absl::GetFlag(FLAGS_init_limit_ticks) <= 0) {
    return bad(
        "--election-timeout-ticks, --sync-limit-ticks and --init-limit-ticks must be positive");
  }
  if (spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)) == spdlog::level::off &&
      absl::GetFlag(FLAGS_log_level) != "off") {
    return bad(absl::StrCat("--log-level: unknown level \"", absl::GetFlag(FLAGS_log_level), "\""));
  }
  return absl::OkStatus();
}

// Parses --peers ("1=host:port,2=host:port,..."), checking ids and that --id is one of them.
absl::StatusOr<std::vector<confab::rpc::PeerEndpoint>> ParsePeers(const std::string& spec,
                                                                  uint32_t self) {
  std::vector<confab::rpc::PeerEndpoint> peers;
  if (spec.empty()) return peers;
  bool self_listed = false;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> parts = absl::StrSplit(item, absl::MaxSplits('=', 1));
    uint32_t id = 0;
    if (!absl::SimpleAtoi(parts.first, &id) || id == 0 || id > 255 || parts.second.empty() ||
        parts.second.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--peers: \"", std::string(item), "\" is not id=host:port with an id in 1..255"));
    }
    for (const auto& peer : peers) {
      if (peer.id.value() == id) {
        return absl::InvalidArgumentError(absl::StrCat("--peers: member ", id, " is listed twice"));
      }
    }
    self_listed |= id == self;
    peers.push_back({confab::MemberId(id), parts.second});
  }
  if (!self_listed) {
    return absl::InvalidArgumentError(
        absl::StrCat("--id ", self, " is not one of the members in --peers"));
  }
  return peers;
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken by sigwait in the main thread; block them before any thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Debian's abseil is built with lock-order (deadlock) detection on, which records every
  // acquisition in a global graph: ~1% of a member's CPU at saturation. The tests, which link
  // the same code without this line, keep checking lock order.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  auto logger = spdlog::stderr_color_mt("confabd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  absl::SetProgramUsageMessage(
      "the Confab coordination server.\n"
      "  confabd [--data-dir DIR] [--listen HOST:PORT] [--config FILE.json] ...\n"
      "Standalone by default (an ensemble of one) on ./default.confab.");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return absl::StrCat("confabd ", kVersion, "\n"); };
  usage.normalize_filename = [](absl::string_view f) { return std::string(f); };
  absl::SetFlagsUsageConfig(usage);

  std::vector<std::string> args = confab::config::NormalizeFlagNames(argc, argv);
  std::vector<char*> arg_ptrs;
  for (std::string& arg : args) arg_ptrs.push_back(arg.data());
  int arg_count = static_cast<int>(arg_ptrs.size());
  arg_ptrs.push_back(nullptr);
  if (std::string config = confab::config::FindConfigFlag(arg_count, arg_ptrs.data());
      !config.empty()) {
    if (auto status = confab::config::ApplyJsonConfig(config); !status.ok()) {
      Fail(std::string(status.message()));
    }
  }
  absl::ParseCommandLine(arg_count, arg_ptrs.data());
  if (auto status = CheckFlags(); !status.ok()) Fail(std::string(status.message()));
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));

  confab::pipeline::ReplicaOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.session_timeout_min_ms = absl::GetFlag(FLAGS_session_timeout_min_ms);
  options.session_timeout_max_ms = absl::GetFlag(FLAGS_session_timeout_max_ms);
  options.tick_ms = absl::GetFlag(FLAGS_tick_ms);
  options.snapshot_every_txns = absl::GetFlag(FLAGS_snapshot_every_txns);
  options.snapshots_kept = absl::GetFlag(FLAGS_snapshots_kept);
  options.limits.data_bytes_max = absl::GetFlag(FLAGS_max_data_bytes);
  options.limits.txn_bytes_max = absl::GetFlag(FLAGS_max_txn_bytes);
  options.watch_history_events = absl::GetFlag(FLAGS_watch_history_events);

  options.election_timeout_ticks = absl::GetFlag(FLAGS_election_timeout_ticks);
  options.sync_limit_ticks = absl::GetFlag(FLAGS_sync_limit_ticks);
  options.init_limit_ticks = absl::GetFlag(FLAGS_init_limit_ticks);

  auto peers = ParsePeers(absl::GetFlag(FLAGS_peers), absl::GetFlag(FLAGS_id));
  if (!peers.ok()) Fail(std::string(peers.status().message()));
  std::unique_ptr<confab::rpc::PeerTransport> transport;
  if (!peers->empty()) {
    options.self = confab::MemberId(absl::GetFlag(FLAGS_id));
    for (const auto& peer : *peers) options.members.push_back(peer.id);
    transport = std::make_unique<confab::rpc::PeerTransport>(options.self, *peers);
    options.network = transport.get();
  } else if (absl::GetFlag(FLAGS_id) != 0) {
    Fail("--id needs --peers (the ensemble's members); leave both out for a standalone server");
  }

  spdlog::info("confabd {} starting: data dir {}{}", kVersion, options.data_dir,
               peers->empty()
                   ? std::string(", standalone")
                   : absl::StrCat(", member ", options.self.value(), " of ", peers->size()));
  auto replica = confab::pipeline::Replica::Open(options);
  if (!replica.ok()) {
    Fail(absl::StrCat("cannot start on data dir ", options.data_dir, ": ",
                      replica.status().message()));
  }
  const confab::pipeline::RecoveryInfo& recovery = (*replica)->recovery();
  for (const std::string& warning : recovery.warnings) spdlog::warn("{}", warning);
  if (recovery.log.truncated_tail) {
    spdlog::warn("log {}: truncated a torn tail of {} bytes at offset {}",
                 recovery.log.truncated_file, recovery.log.truncated_bytes,
                 recovery.log.truncated_at_offset);
  }
  spdlog::info(
      "recovered the log to zxid {} (snapshot: {}; {} log records after it) in {} ms; "
      "accepted epoch {}, current epoch {}",
      recovery.last_zxid.ToString(),
      recovery.snapshot_path.empty() ? std::string("none") : recovery.snapshot_path,
      recovery.log_records_after_snapshot, recovery.duration_ms, recovery.accepted_epoch,
      recovery.current_epoch);

  confab::rpc::CoordinationService service(replica->get(),
                                           {kVersion, absl::Now(), transport.get()});
  // Generic gRPC tooling (grpcurl, other languages' clients) can check health and discover the API.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  std::string listen = absl::GetFlag(FLAGS_listen);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  int message_max = static_cast<int>(options.limits.txn_bytes_max + (1 << 20));
  builder.SetMaxReceiveMessageSize(message_max);
  builder.SetMaxSendMessageSize(message_max);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Fail(absl::StrCat("cannot listen on ", listen, " (address in use or not valid?)"));
  }
  std::string address = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  service.SetAddress(address);
  if (auto status =
          confab::storage::WriteFileDurably(options.data_dir + "/ADDRESS", address + "\n");
      !status.ok()) {
    Fail(std::string(status.message()));
  }
  spdlog::info("listening on {}", address);
  if (transport != nullptr) {
    confab::pipeline::Replica* member = replica->get();
    absl::Status started = transport->Start(
        [member](confab::internal::PeerBatch batch) {
          member->replicator()->Receive(std::move(batch));
        },
        [member](confab::Zxid zxid) { return member->SnapshotPathAt(zxid); },
        [member, address] {
          confab::internal::MemberReport report;
          const confab::pipeline::RoleState role = member->role();
          report.set_client_address(address);
          report.set_state(role.role == confab::zab::Role::kLeading ? confab::internal::LEADING
                           : role.role == confab::zab::Role::kFollowing
                               ? confab::internal::FOLLOWING
                               : confab::internal::LOOKING);
          report.set_serving(role.serving);
          report.set_leader(role.leader.value());
          report.set_epoch(role.epoch);
          report.set_last_applied(member->last_applied().ToInt());
          return report;
        });
    if (!started.ok()) Fail(std::string(started.message()));
    spdlog::info("listening for peers on {}", absl::GetFlag(FLAGS_peers));
  }

  confab::rpc::CallbackThreadHold callback_threads(address,
                                                   absl::GetFlag(FLAGS_grpc_callback_threads));

  int exit_code = 0;
  for (;;) {
    timespec wait{1, 0};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {}; draining in-flight requests", strsignal(sig));
      break;
    }
    if (absl::Status health = (*replica)->health(); !health.ok()) {
      spdlog::critical("stopping: {}", health.ToString());
      exit_code = 1;
      break;
    }
  }
  callback_threads.Release();
  // Answer what is in flight, then stop the gRPC server without waiting for idle clients.
  if (!service.Drain(absl::Seconds(10))) {
    spdlog::warn("some requests were still in flight after 10s; cancelling them");
  }
  server->Shutdown(std::chrono::system_clock::now());
  // Writes still in flight are decided through the peers, which stop after.
  (*replica)->Shutdown();
  if (transport != nullptr) transport->Stop();
  confab::pipeline::Replica::Stats stats = (*replica)->stats();
  spdlog::info("stopped at zxid {}: {} writes in {} fsyncs", stats.last_applied.ToString(),
               stats.log.records, stats.log.batches);
  spdlog::shutdown();
  return exit_code;
}
