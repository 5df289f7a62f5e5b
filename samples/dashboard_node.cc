// dashboard_node: one node of a Superset-like cluster on the Confab recipes. It
//   - registers itself (ServiceRegistry, service "dashboard" under /superset/nodes);
//   - keeps the configuration typed in a ConfigCache over /superset/config and prints every live
//     change;
//   - contends for the "scheduled reports" leadership (LeaderElection) and runs a fake report job
//     while it leads;
//   - takes the export Mutex around a fake export, printing its fencing token.
// It exits cleanly after --run-seconds (0: never) or on SIGTERM/SIGINT.
//
//   dashboard_node --endpoints 127.0.0.1:2281 --name node-1 [--run-seconds 30]
//                  [--export-every-seconds 3] (dashes or underscores in flag names)
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/config_cache.h"
#include "confab/leader_election.h"
#include "confab/mutex.h"
#include "confab/service_registry.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, endpoints, "127.0.0.1:2281", "confabd client addresses, host:port,...");
ABSL_FLAG(std::string, name, "", "this node's name (required)");
ABSL_FLAG(int, run_seconds, 0, "exit after this many seconds (0: run until SIGTERM)");
ABSL_FLAG(std::string, root, "/superset/config", "the config subtree");
ABSL_FLAG(std::string, nodes, "/superset/nodes", "the service registry's base path");
ABSL_FLAG(std::string, election, "/superset/elections/scheduled-reports", "the election path");
ABSL_FLAG(std::string, lock, "/superset/locks/export", "the export lock path");
ABSL_FLAG(int, export_every_seconds, 3, "how often to run the fake export");

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void OnStopSignal(int /*signal*/) { stop_requested.store(true); }

// The settings this node uses, read typed from the cache (with defaults).
struct Settings {
  std::string database_uri;
  int64_t row_limit = 0;
  int64_t sqllab_timeout = 0;
  nlohmann::json feature_flags;

  static Settings From(const confab::ConfigCache& cache) {
    Settings s;
    s.database_uri = cache.GetOr<std::string>("SQLALCHEMY_DATABASE_URI", "sqlite://");
    s.row_limit = cache.GetOr<int64_t>("ROW_LIMIT", 50000);
    s.sqllab_timeout = cache.GetOr<int64_t>("SQLLAB_TIMEOUT", 30);
    s.feature_flags = cache.GetOr<nlohmann::json>("FEATURE_FLAGS", nlohmann::json::object());
    return s;
  }

  std::string ToString() const {
    return absl::StrCat("ROW_LIMIT=", row_limit, " SQLLAB_TIMEOUT=", sqllab_timeout,
                        " SQLALCHEMY_DATABASE_URI=", database_uri,
                        " FEATURE_FLAGS=", feature_flags.dump());
  }
};

std::string Show(const std::optional<nlohmann::json>& value) {
  return value.has_value() ? value->dump() : "(unset)";
}

// Abseil flag names cannot hold '-': accept "--run-seconds" as "--run_seconds".
std::vector<char*> DashedFlags(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  for (std::string& arg : storage) {
    if (arg.size() <= 2 || arg.rfind("--", 0) != 0) continue;
    const size_t end = std::min(arg.find('='), arg.size());
    for (size_t i = 2; i < end; ++i) {
      if (arg[i] == '-') arg[i] = '_';
    }
  }
  std::vector<char*> pointers;
  for (std::string& arg : storage) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> arg_storage;
  std::vector<char*> args = DashedFlags(argc, argv, arg_storage);
  absl::ParseCommandLine(argc, args.data());
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) {
    std::fprintf(stderr, "dashboard_node: --name is required\n");
    return 2;
  }
  std::signal(SIGTERM, OnStopSignal);
  std::signal(SIGINT, OnStopSignal);
  const int run_seconds = absl::GetFlag(FLAGS_run_seconds);
  const absl::Time end =
      run_seconds > 0 ? absl::Now() + absl::Seconds(run_seconds) : absl::InfiniteFuture();

  auto relay = std::make_shared<confab::ConnectionStateRelay>();
  confab::ClientOptions options;
  options.endpoints = absl::GetFlag(FLAGS_endpoints);
  options.request_timeout = absl::Seconds(10);
  options.state_listener = relay->Listener();
  absl::StatusOr<std::unique_ptr<confab::Client>> connected =
      confab::Client::Connect(std::move(options));
  if (!connected.ok()) {
    std::fprintf(stderr, "dashboard_node: cannot connect: %s\n",
                 connected.status().ToString().c_str());
    return 3;
  }
  confab::Client* client = connected->get();
  relay->Subscribe([&name](confab::ConnectionState state) {
    std::printf("[%s] connection %s\n", name.c_str(),
                std::string(confab::ConnectionStateName(state)).c_str());
  });

  // Registration.
  confab::ServiceRegistry registry(client, absl::GetFlag(FLAGS_nodes));
  confab::RegisterOptions register_options;
  register_options.address = name;
  absl::StatusOr<confab::Registration> registration =
      registry.Register("dashboard", {{"name", name}}, register_options);
  if (!registration.ok()) {
    std::fprintf(stderr, "dashboard_node: register: %s\n",
                 registration.status().ToString().c_str());
    return 1;
  }
  std::printf("[%s] registered as %s\n", name.c_str(), registration->path().c_str());

  // Configuration.
  confab::ConfigCache cache(client, absl::GetFlag(FLAGS_root));
  if (absl::Status s = cache.Start(); !s.ok()) {
    std::fprintf(stderr, "dashboard_node: config cache: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("[%s] config loaded: %s\n", name.c_str(), Settings::From(cache).ToString().c_str());
  cache.AddListener([&name, &cache](const confab::ConfigChange& change) {
    std::printf("[%s] config change %s: %s -> %s (zxid %lld)\n", name.c_str(), change.key.c_str(),
                Show(change.old_value).c_str(), Show(change.new_value).c_str(),
                static_cast<long long>(change.zxid));
    std::printf("[%s] settings now: %s\n", name.c_str(), Settings::From(cache).ToString().c_str());
  });

  // Leadership of the scheduled reports.
  confab::LeaderCallbacks callbacks;
  callbacks.on_gain = [&name](int64_t epoch) {
    std::printf("[%s] became leader for scheduled reports (epoch %lld)\n", name.c_str(),
                static_cast<long long>(epoch));
  };
  callbacks.on_loss = [&name]() {
    std::printf("[%s] lost leadership of scheduled reports\n", name.c_str());
  };
  confab::LeaderElection election(client, absl::GetFlag(FLAGS_election), std::move(callbacks));
  relay->Subscribe(
      [&election](confab::ConnectionState state) { election.OnConnectionState(state); });
  if (absl::Status s = election.Start(); !s.ok()) {
    std::fprintf(stderr, "dashboard_node: election: %s\n", s.ToString().c_str());
    return 1;
  }

  confab::Mutex export_lock(client, absl::GetFlag(FLAGS_lock));
  const absl::Duration export_every = absl::Seconds(absl::GetFlag(FLAGS_export_every_seconds));
  absl::Time next_job = absl::Now();
  absl::Time next_export = absl::Now();
  int64_t jobs = 0;
  int64_t exports = 0;
  while (!stop_requested.load() && absl::Now() < end) {
    const absl::Time now = absl::Now();
    if (now >= next_job) {
      next_job = now + absl::Seconds(1);
      if (election.IsLeader()) {
        std::printf("[%s] scheduled reports job #%lld (leader, epoch %lld, ROW_LIMIT=%lld)\n",
                    name.c_str(), static_cast<long long>(++jobs),
                    static_cast<long long>(election.epoch()),
                    static_cast<long long>(cache.GetOr<int64_t>("ROW_LIMIT", 50000)));
      }
    }
    if (now >= next_export) {
      next_export = now + export_every;
      absl::StatusOr<int64_t> token = export_lock.Lock(absl::Seconds(2));
      if (token.ok()) {
        std::printf("[%s] export #%lld started under the export lock (fencing token %lld)\n",
                    name.c_str(), static_cast<long long>(++exports),
                    static_cast<long long>(*token));
        absl::SleepFor(absl::Milliseconds(100));  // the fake export
        if (absl::Status s = export_lock.Unlock(); !s.ok()) {
          std::fprintf(stderr, "dashboard_node: unlock: %s\n", s.ToString().c_str());
        }
        std::printf("[%s] export #%lld done\n", name.c_str(), static_cast<long long>(exports));
      } else {
        std::printf("[%s] export skipped: %s\n", name.c_str(),
                    std::string(token.status().message()).c_str());
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }

  std::printf("[%s] stopping (%s)\n", name.c_str(),
              stop_requested.load() ? "signal" : "run time over");
  election.Close();
  cache.Close();
  if (absl::Status s = registration->Deregister(); !s.ok()) {
    std::fprintf(stderr, "dashboard_node: deregister: %s\n", s.ToString().c_str());
  }
  if (absl::Status s = client->Close(); !s.ok()) {
    std::fprintf(stderr, "dashboard_node: close: %s\n", s.ToString().c_str());
  }
  std::printf("[%s] stopped\n", name.c_str());
  return 0;
}
