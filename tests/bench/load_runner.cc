#include "tests/bench/load_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tests/bench/server_probe.h"

namespace confab::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kMiB = 1 << 20;
// Bounds on the waits after a window: for requests still in flight, for late notifications.
constexpr absl::Duration kDrainMax = absl::Seconds(30);
constexpr absl::Duration kWatchDrain = absl::Seconds(2);
// Memory is read this long after the last node was created (let background work settle).
constexpr absl::Duration kMemorySettle = absl::Seconds(2);

int64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

Clock::duration ToClock(absl::Duration d) {
  return std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
}

// CPU of the servers and of this process, and the leader's counters, at one instant.
struct Probe {
  Clock::time_point at;
  std::optional<double> server_cpu_s;
  double self_cpu_s = 0;
  ServerCounters counters;
};

Probe TakeProbe(Driver& driver, const std::vector<int>& pids) {
  Probe probe;
  probe.at = Clock::now();
  probe.self_cpu_s = SelfCpuSeconds();
  if (!pids.empty()) {
    double sum = 0;
    bool known = true;
    for (int pid : pids) {
      absl::StatusOr<double> cpu = ProcessCpuSeconds(pid);
      known = known && cpu.ok();
      if (cpu.ok()) sum += *cpu;
    }
    if (known) probe.server_cpu_s = sum;
  }
  probe.counters = driver.Counters();
  return probe;
}

// Throughput and cost per operation over the window [before, after] in which `ops` completed.
void AddWindow(const Probe& before, const Probe& after, int64_t ops, nlohmann::json* out) {
  const double seconds = std::chrono::duration<double>(after.at - before.at).count();
  const double per_op = ops > 0 ? 1e6 / static_cast<double>(ops) : 0;
  (*out)["ops"] = ops;
  (*out)["window_s"] = seconds;
  (*out)["ops_per_s"] = static_cast<double>(ops) / seconds;
  const double self_cpu = after.self_cpu_s - before.self_cpu_s;
  (*out)["bench_cpu_cores"] = self_cpu / seconds;
  (*out)["bench_cpu_us_per_op"] = self_cpu * per_op;
  if (before.server_cpu_s && after.server_cpu_s) {
    const double server_cpu = *after.server_cpu_s - *before.server_cpu_s;
    (*out)["server_cpu_cores"] = server_cpu / seconds;
    (*out)["server_cpu_us_per_op"] = server_cpu * per_op;
  }
  const ServerCounters& b = before.counters;
  const ServerCounters& a = after.counters;
  if (b.fsyncs && a.fsyncs) {
    const int64_t fsyncs = *a.fsyncs - *b.fsyncs;
    (*out)["leader_fsyncs_per_s"] = static_cast<double>(fsyncs) / seconds;
    if (b.writes && a.writes && fsyncs > 0) {
      (*out)["writes_per_fsync"] =
          static_cast<double>(*a.writes - *b.writes) / static_cast<double>(fsyncs);
    }
  }
}

void AddLatencies(std::vector<int64_t>* latencies_us, nlohmann::json* out) {
  std::sort(latencies_us->begin(), latencies_us->end());
  auto at = [&](double fraction) -> int64_t {
    if (latencies_us->empty()) return 0;
    size_t index = static_cast<size_t>(fraction * static_cast<double>(latencies_us->size()));
    return (*latencies_us)[std::min(latencies_us->size() - 1, index)];
  };
  (*out)["p50_us"] = at(0.50);
  (*out)["p99_us"] = at(0.99);
  (*out)["p999_us"] = at(0.999);
  (*out)["max_us"] = latencies_us->empty() ? 0 : latencies_us->back();
}

absl::StatusOr<std::vector<std::unique_ptr<ClientSession>>> ConnectAll(Driver& driver, int first,
                                                                       int count) {
  std::vector<std::unique_ptr<ClientSession>> sessions;
  for (int i = first; i < first + count; ++i) {
    absl::StatusOr<std::unique_ptr<ClientSession>> session = driver.Connect(i);
    if (!session.ok()) {
      return absl::Status(session.status().code(),
                          absl::StrCat("session ", i, ": ", session.status().message()));
    }
    sessions.push_back(*std::move(session));
  }
  return sessions;
}

// Runs `work(i)` for i in [0, n) on n threads; the first error, if any.
absl::Status InParallel(int n, const std::function<absl::Status(int)>& work) {
  std::vector<absl::Status> results(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { results[i] = work(i); });
  for (std::thread& t : threads) t.join();
  for (absl::Status& status : results) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

enum class OpMix { kSet, kGet, kRegister, kCreate, kMixed };

// One session of the closed loop and what its requests measured.
struct LoopClient {
  std::unique_ptr<ClientSession> session;
  std::string dir;                // "/bench/c<i>"
  std::vector<std::string> keys;  // its own keys
  absl::Mutex mu;
  uint64_t issued ABSL_GUARDED_BY(mu) = 0;
  std::mt19937_64 rng ABSL_GUARDED_BY(mu);
  std::vector<int64_t> latencies_us ABSL_GUARDED_BY(mu);
  int64_t errors ABSL_GUARDED_BY(mu) = 0;
};

// `inflight` request slots per client, each sending its next request when the last is answered,
// until `end` or until the client has sent `budget` requests (0: no budget). A failed request
// ends its slot (a system that fails requests is reported, not hammered).
class ClosedLoop {
 public:
  ClosedLoop(std::vector<LoopClient*> clients, OpMix mix, const LoadOptions& options,
             Clock::time_point measure_from, Clock::time_point end, uint64_t budget)
      : clients_(std::move(clients)),
        mix_(mix),
        options_(options),
        value_(options.value_bytes, 'v'),
        measure_from_(measure_from),
        end_(end),
        budget_(budget) {}

  void Start() {
    {
      absl::MutexLock lock(&mu_);
      running_ = static_cast<int>(clients_.size()) * options_.inflight;
    }
    for (LoopClient* client : clients_) {
      for (int slot = 0; slot < options_.inflight; ++slot) Issue(client);
    }
  }

  // True once every slot has ended.
  bool Wait(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&ended), timeout);
  }

 private:
  void Issue(LoopClient* client) {
    uint64_t n = 0;
    bool read = mix_ == OpMix::kGet;
    {
      absl::MutexLock lock(&client->mu);
      if (budget_ != 0 && client->issued >= budget_) {
        EndSlot();
        return;
      }
      n = client->issued++;
      if (mix_ == OpMix::kMixed) {
        read = std::uniform_real_distribution<double>(0, 1)(client->rng) < options_.read_fraction;
      }
    }
    const Clock::time_point start = Clock::now();
    Done done = [this, client, start](OpResult result) { Complete(client, start, result); };
    ClientSession& session = *client->session;
    switch (mix_) {
      case OpMix::kRegister:
        session.Register(client->dir, value_, std::move(done));
        return;
      case OpMix::kCreate:
        session.Create(absl::StrCat(client->dir, "/n", n), value_, std::move(done));
        return;
      case OpMix::kSet:
      case OpMix::kGet:
      case OpMix::kMixed: {
        const std::string& key = client->keys[n % client->keys.size()];
        if (read) {
          session.Get(key, options_.read_mode, std::move(done));
        } else {
          session.Set(key, value_, std::move(done));
        }
        return;
      }
    }
  }

  void Complete(LoopClient* client, Clock::time_point start, OpResult result) {
    const Clock::time_point now = Clock::now();
    {
      absl::MutexLock lock(&client->mu);
      if (!result.ok) {
        ++client->errors;
      } else if (start >= measure_from_ && now <= end_) {
        client->latencies_us.push_back(Micros(now - start));
      }
    }
    if (result.ok && now < end_) {
      Issue(client);
    } else {
      EndSlot();
    }
  }

  void EndSlot() {
    absl::MutexLock lock(&mu_);
    --running_;
  }

  const std::vector<LoopClient*> clients_;
  const OpMix mix_;
  const LoadOptions& options_;
  const std::string value_;
  const Clock::time_point measure_from_;
  const Clock::time_point end_;
  const uint64_t budget_;
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::StatusOr<OpMix> MixOf(const LoadOptions& options) {
  if (options.workload == "write") return OpMix::kSet;
  if (options.workload == "read") return OpMix::kGet;
  if (options.workload == "create") return OpMix::kRegister;
  if (options.workload == "mixed") return OpMix::kMixed;
  if (options.workload == "memory") return OpMix::kCreate;
  return absl::InvalidArgumentError(absl::StrCat("unknown workload ", options.workload,
                                                 " (write, read, create, mixed, memory or watch)"));
}

std::vector<int64_t> RssOf(const std::vector<int>& pids) {
  std::vector<int64_t> rss;
  for (int pid : pids) {
    absl::StatusOr<int64_t> bytes = ProcessRssBytes(pid);
    rss.push_back(bytes.ok() ? *bytes : -1);
  }
  return rss;
}

absl::StatusOr<nlohmann::json> RunClosedLoop(Driver& driver, const LoadOptions& options) {
  absl::StatusOr<OpMix> mix = MixOf(options);
  if (!mix.ok()) return mix.status();
  const bool memory = *mix == OpMix::kCreate;
  absl::StatusOr<std::vector<std::unique_ptr<ClientSession>>> sessions =
      ConnectAll(driver, 0, options.clients);
  if (!sessions.ok()) return sessions.status();

  std::vector<std::unique_ptr<LoopClient>> clients;
  for (int i = 0; i < options.clients; ++i) {
    auto client = std::make_unique<LoopClient>();
    client->session = std::move((*sessions)[i]);
    client->dir = memory ? absl::StrCat("/bench/mem/c", i) : absl::StrCat("/bench/c", i);
    client->rng.seed(static_cast<uint64_t>(i) + 1);
    if (*mix == OpMix::kSet || *mix == OpMix::kGet || *mix == OpMix::kMixed) {
      for (int k = 0; k < options.keys_per_client; ++k) {
        client->keys.push_back(absl::StrCat(client->dir, "/k", k));
      }
    }
    clients.push_back(std::move(client));
  }
  // Setup: each client's directory and keys, written by the clients themselves, in parallel.
  const std::string value(options.value_bytes, 'v');
  absl::Status setup = InParallel(options.clients, [&](int i) {
    LoopClient& client = *clients[i];
    absl::Status made = client.session->Put(client.dir, "");
    for (size_t k = 0; made.ok() && k < client.keys.size(); ++k) {
      made = client.session->Put(client.keys[k], value);
    }
    return made;
  });
  if (!setup.ok()) return setup;

  std::vector<int64_t> rss_before;
  if (memory) rss_before = RssOf(options.server_pids);
  const uint64_t budget =
      memory ? static_cast<uint64_t>((options.memory_nodes + options.clients - 1) / options.clients)
             : 0;
  const Clock::time_point measure_from =
      Clock::now() + (memory ? Clock::duration::zero() : ToClock(options.warmup));
  const Clock::time_point end =
      memory ? Clock::time_point::max() : measure_from + ToClock(options.duration);
  std::vector<LoopClient*> raw;
  for (auto& client : clients) raw.push_back(client.get());
  ClosedLoop loop(raw, *mix, options, measure_from, end, budget);

  Probe before = TakeProbe(driver, options.server_pids);
  loop.Start();
  if (!memory) {
    std::this_thread::sleep_until(measure_from);
    before = TakeProbe(driver, options.server_pids);
    std::this_thread::sleep_until(end);
  } else {
    loop.Wait(absl::InfiniteDuration());
  }
  const Probe after = TakeProbe(driver, options.server_pids);
  const bool drained = loop.Wait(kDrainMax);

  nlohmann::json out;
  std::vector<int64_t> latencies;
  int64_t errors = 0;
  for (auto& client : clients) {
    absl::MutexLock lock(&client->mu);
    latencies.insert(latencies.end(), client->latencies_us.begin(), client->latencies_us.end());
    errors += client->errors;
  }
  AddWindow(before, after, static_cast<int64_t>(latencies.size()), &out);
  AddLatencies(&latencies, &out);
  out["errors"] = errors;
  if (!drained) out["undrained"] = true;
  if (memory) {
    absl::SleepFor(kMemorySettle);
    const std::vector<int64_t> rss_after = RssOf(options.server_pids);
    const int64_t nodes = static_cast<int64_t>(budget) * options.clients;
    nlohmann::json before_mib = nlohmann::json::array();
    nlohmann::json after_mib = nlohmann::json::array();
    double max_mib = 0;
    double max_bytes_per_node = std::numeric_limits<double>::lowest();
    for (size_t i = 0; i < rss_after.size(); ++i) {
      before_mib.push_back(static_cast<double>(rss_before[i]) / kMiB);
      after_mib.push_back(static_cast<double>(rss_after[i]) / kMiB);
      max_mib = std::max(max_mib, static_cast<double>(rss_after[i]) / kMiB);
      max_bytes_per_node =
          std::max(max_bytes_per_node,
                   static_cast<double>(rss_after[i] - rss_before[i]) / static_cast<double>(nodes));
    }
    out["nodes"] = nodes;
    out["rss_before_mib"] = before_mib;
    out["rss_after_mib"] = after_mib;
    out["rss_max_mib"] = max_mib;
    out["rss_bytes_per_node"] = max_bytes_per_node;
  }
  // Sessions close here (Confab and ZooKeeper delete their ephemerals).
  clients.clear();
  return out;
}

// What the watchers of one session were told, and when.
struct NoticeLog {
  struct Entry {
    WatchNotice notice;
    Clock::time_point at;
  };
  absl::Mutex mu;
  std::vector<Entry> entries ABSL_GUARDED_BY(mu);
};

absl::StatusOr<nlohmann::json> RunWatch(Driver& driver, const LoadOptions& options) {
  const std::string key = "/bench/watched";
  absl::StatusOr<std::vector<std::unique_ptr<ClientSession>>> writer = ConnectAll(driver, 0, 1);
  if (!writer.ok()) return writer.status();
  ClientSession& writer_session = *(*writer)[0];
  absl::Status put = writer_session.Put(key, SequencedValue(0, options.value_bytes));
  if (!put.ok()) return put;

  absl::StatusOr<std::vector<std::unique_ptr<ClientSession>>> sessions =
      ConnectAll(driver, 1, options.watch_sessions);
  if (!sessions.ok()) return sessions.status();
  const int per_session = options.watchers / options.watch_sessions;
  const int watchers = per_session * options.watch_sessions;
  std::vector<std::unique_ptr<NoticeLog>> logs;
  std::vector<WatchSink> sinks;
  for (int s = 0; s < options.watch_sessions; ++s) {
    logs.push_back(std::make_unique<NoticeLog>());
    NoticeLog* log = logs.back().get();
    sinks.push_back([log](const WatchNotice& notice) {
      const Clock::time_point now = Clock::now();
      absl::MutexLock lock(&log->mu);
      log->entries.push_back({notice, now});
    });
  }
  absl::Status armed = InParallel(options.watch_sessions, [&](int s) {
    return (*sessions)[s]->WatchKey(key, options.watch_kind, s * per_session, per_session,
                                    &sinks[s]);
  });
  if (!armed.ok()) return armed;

  // The writer: one set every interval, paced by the clock (not by the answers).
  absl::Mutex writes_mu;
  std::vector<Clock::time_point> sent{Clock::now()};  // indexed by sequence number
  absl::flat_hash_map<int64_t, int64_t> seq_of_version;
  int64_t write_errors = 0;
  const Clock::time_point measure_from = Clock::now() + ToClock(options.warmup);
  const Clock::time_point end = measure_from + ToClock(options.duration);
  int64_t first_measured = -1;
  int64_t last_measured = -1;
  Probe before = TakeProbe(driver, options.server_pids);
  bool window_open = false;
  for (Clock::time_point next = Clock::now(); next < end; next += ToClock(options.watch_interval)) {
    std::this_thread::sleep_until(next);
    if (!window_open && Clock::now() >= measure_from) {
      before = TakeProbe(driver, options.server_pids);
      window_open = true;
    }
    int64_t seq = 0;
    {
      absl::MutexLock lock(&writes_mu);
      seq = static_cast<int64_t>(sent.size());
      sent.push_back(Clock::now());
      if (window_open) {
        if (first_measured < 0) first_measured = seq;
        last_measured = seq;
      }
    }
    writer_session.Set(key, SequencedValue(seq, options.value_bytes), [&, seq](OpResult result) {
      absl::MutexLock lock(&writes_mu);
      if (result.ok) {
        seq_of_version[result.version] = seq;
      } else {
        ++write_errors;
      }
    });
  }
  const Probe after = TakeProbe(driver, options.server_pids);
  absl::SleepFor(kWatchDrain);
  // No notice and no write's answer arrives after this.
  sessions->clear();
  writer->clear();

  // Match every notice to the write it reports; keep those of writes sent inside the window.
  absl::MutexLock lock(&writes_mu);
  const int64_t measured_writes = first_measured < 0 ? 0 : last_measured - first_measured + 1;
  const int64_t expected = measured_writes * watchers;
  std::vector<bool> seen(static_cast<size_t>(expected), false);
  std::vector<int64_t> latencies;
  int64_t duplicates = 0;
  int64_t unmatched = 0;
  for (auto& log : logs) {
    absl::MutexLock log_lock(&log->mu);
    for (const NoticeLog::Entry& entry : log->entries) {
      int64_t seq = entry.notice.seq;
      if (seq < 0) {
        auto found = seq_of_version.find(entry.notice.version);
        if (found == seq_of_version.end()) {
          ++unmatched;
          continue;
        }
        seq = found->second;
      }
      if (seq < first_measured || seq > last_measured) continue;
      const size_t slot =
          static_cast<size_t>((seq - first_measured) * watchers + entry.notice.watcher);
      if (seen[slot]) {
        ++duplicates;
        continue;
      }
      seen[slot] = true;
      latencies.push_back(Micros(entry.at - sent[static_cast<size_t>(seq)]));
    }
  }
  const int64_t delivered = static_cast<int64_t>(latencies.size());
  nlohmann::json out;
  AddWindow(before, after, delivered, &out);
  AddLatencies(&latencies, &out);
  out["errors"] = write_errors;
  out["watchers"] = watchers;
  out["writes"] = measured_writes;
  out["events_expected"] = expected;
  out["events_delivered"] = delivered;
  out["events_unseen"] = expected - delivered;
  out["events_duplicated"] = duplicates;
  out["events_unmatched"] = unmatched;
  return out;
}

}  // namespace

absl::StatusOr<nlohmann::json> RunWorkload(Driver& driver, const LoadOptions& options) {
  if (options.workload == "watch") return RunWatch(driver, options);
  return RunClosedLoop(driver, options);
}

}  // namespace confab::bench
