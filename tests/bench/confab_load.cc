// confab_load: drives a confabd with C client sessions x K requests in flight over the Session
// stream for a bounded time after a warm-up, and prints one JSON line: ops/s and latency
// percentiles (µs). The first piece of the benchmark suite (tests/bench); runs on demand, not in
// the test suite.
//
//   confab_load --endpoint=127.0.0.1:2281 --workload=write --clients=8 --inflight=16
//               --duration_s=10 --warmup_s=2 --value_bytes=256
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, endpoint, "127.0.0.1:2281", "confabd client address");
ABSL_FLAG(std::string, workload, "write",
          "write (set on own keys) | read (get) | create (ephemeral sequential)");
ABSL_FLAG(int, clients, 8, "sessions, each on its own channel");
ABSL_FLAG(int, inflight, 16, "requests in flight per session");
ABSL_FLAG(int, duration_s, 10, "measured seconds");
ABSL_FLAG(int, warmup_s, 2, "seconds before measuring");
ABSL_FLAG(int, value_bytes, 256, "value size");
ABSL_FLAG(int, keys_per_client, 100, "keys each client writes or reads");

namespace {

using Clock = std::chrono::steady_clock;

struct ClientResult {
  std::vector<int64_t> latencies_us;
  int64_t errors = 0;
};

void RunClient(int index, const std::string& endpoint, const std::string& workload,
               Clock::time_point measure_from, Clock::time_point end, ClientResult* result) {
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);  // a connection per client
  auto channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
  auto stub = confab::v1::Coordination::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->Session(&context);
  auto call = [&](const confab::v1::SessionRequest& request) {
    confab::v1::ClientMessage message;
    *message.add_requests() = request;
    stream->Write(message);
    confab::v1::ServerMessage reply;
    while (stream->Read(&reply)) {
      for (const auto& r : reply.responses()) {
        if (r.request_id() == request.request_id()) return r;
      }
    }
    return confab::v1::SessionResponse();
  };
  confab::v1::SessionRequest open;
  open.set_request_id(-1);
  open.mutable_open()->set_timeout_ms(30000);
  call(open);
  std::string base = absl::StrCat("/bench/c", index);
  std::string value(absl::GetFlag(FLAGS_value_bytes), 'v');
  int keys = absl::GetFlag(FLAGS_keys_per_client);
  confab::v1::SessionRequest setup;
  setup.set_request_id(-2);
  setup.mutable_create()->set_path(base);
  call(setup);
  for (int k = 0; k < keys; ++k) {
    confab::v1::SessionRequest create;
    create.set_request_id(-3 - k);
    create.mutable_create()->set_path(absl::StrCat(base, "/k", k));
    create.mutable_create()->set_data(value);
    call(create);
  }

  int inflight_max = absl::GetFlag(FLAGS_inflight);
  absl::Mutex mu;
  std::deque<Clock::time_point> sent;  // responses come back in request order
  int inflight = 0;
  bool done = false;
  std::thread reader([&] {
    confab::v1::ServerMessage reply;
    while (stream->Read(&reply)) {
      Clock::time_point now = Clock::now();
      absl::MutexLock lock(&mu);
      for (const auto& r : reply.responses()) {
        if (r.request_id() <= 0) continue;
        Clock::time_point start = sent.front();
        sent.pop_front();
        --inflight;
        if (r.has_error() && r.error().code() != confab::v1::OK) ++result->errors;
        if (start >= measure_from && now <= end) {
          result->latencies_us.push_back(
              std::chrono::duration_cast<std::chrono::microseconds>(now - start).count());
        }
      }
      if (done && inflight == 0) return;
    }
  });
  int64_t id = 0;
  while (Clock::now() < end) {
    confab::v1::ClientMessage message;
    {
      absl::MutexLock lock(&mu);
      auto room = [&] { return inflight < inflight_max; };
      mu.AwaitWithTimeout(absl::Condition(&room), absl::Milliseconds(100));
      Clock::time_point now = Clock::now();
      while (inflight < inflight_max) {
        confab::v1::SessionRequest* request = message.add_requests();
        request->set_request_id(++id);
        std::string path = absl::StrCat(base, "/k", id % keys);
        if (workload == "read") {
          request->mutable_get()->set_path(path);
        } else if (workload == "create") {
          request->mutable_create()->set_path(absl::StrCat(base, "/e-"));
          request->mutable_create()->set_mode(confab::v1::EPHEMERAL_SEQUENTIAL);
          request->mutable_create()->set_data(value);
        } else {
          request->mutable_set()->set_path(path);
          request->mutable_set()->set_data(value);
        }
        sent.push_back(now);
        ++inflight;
      }
    }
    if (message.requests_size() > 0 && !stream->Write(message)) break;
  }
  {
    absl::MutexLock lock(&mu);
    done = true;
    auto drained = [&] { return inflight == 0; };
    mu.AwaitWithTimeout(absl::Condition(&drained), absl::Seconds(10));
  }
  stream->WritesDone();
  context.TryCancel();
  reader.join();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string endpoint = absl::GetFlag(FLAGS_endpoint);
  std::string workload = absl::GetFlag(FLAGS_workload);
  int clients = absl::GetFlag(FLAGS_clients);
  {
    auto stub = confab::v1::Coordination::NewStub(
        grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    confab::v1::CreateRequest request;
    request.set_path("/bench");
    confab::v1::CreateResponse response;
    stub->Create(&context, request, &response);  // exists already on a re-run: fine
  }
  Clock::time_point measure_from =
      Clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_warmup_s));
  Clock::time_point end = measure_from + std::chrono::seconds(absl::GetFlag(FLAGS_duration_s));
  std::vector<ClientResult> results(clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back(RunClient, i, endpoint, workload, measure_from, end, &results[i]);
  }
  for (auto& t : threads) t.join();
  std::vector<int64_t> all;
  int64_t errors = 0;
  for (auto& r : results) {
    all.insert(all.end(), r.latencies_us.begin(), r.latencies_us.end());
    errors += r.errors;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0 : all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
  };
  nlohmann::json line = {
      {"system", "confab"},
      {"workload", workload},
      {"clients", clients},
      {"inflight", absl::GetFlag(FLAGS_inflight)},
      {"value_bytes", absl::GetFlag(FLAGS_value_bytes)},
      {"ops_per_s", static_cast<double>(all.size()) / absl::GetFlag(FLAGS_duration_s)},
      {"p50_us", pct(0.50)},
      {"p99_us", pct(0.99)},
      {"p999_us", pct(0.999)},
      {"max_us", all.empty() ? 0 : all.back()},
      {"errors", errors},
  };
  std::printf("%s\n", line.dump().c_str());
  return 0;
}
