// Micro-benchmarks of the bytes every request crosses: a Session stream batch of 16 sets of 256
// bytes (ClientMessage) encoded by the client and decoded by the server, its 16 responses
// (ServerMessage) the other way, and the transaction the server logs and every member parses
// (Txn).
#include <string>

#include "benchmark/benchmark.h"
#include "confab/internal/txn.pb.h"
#include "confab/v1/coordination.pb.h"

namespace confab {
namespace {

constexpr int kBatch = 16;

v1::ClientMessage SetBatch() {
  v1::ClientMessage message;
  for (int i = 0; i < kBatch; ++i) {
    v1::SessionRequest* request = message.add_requests();
    request->set_request_id(1000 + i);
    request->mutable_set()->set_path("/bench/c3/k" + std::to_string(i));
    request->mutable_set()->set_data(std::string(256, 'v'));
  }
  return message;
}

v1::ServerMessage SetResponses() {
  v1::ServerMessage message;
  for (int i = 0; i < kBatch; ++i) {
    v1::SessionResponse* response = message.add_responses();
    response->set_request_id(1000 + i);
    v1::Stat* stat = response->mutable_set()->mutable_stat();
    stat->set_czxid(0x100000001);
    stat->set_mzxid(0x1000f4240 + i);
    stat->set_pzxid(0x100000001);
    stat->set_ctime(1700000000000);
    stat->set_mtime(1700000001000);
    stat->set_version(4711);
    stat->set_data_length(256);
    response->mutable_set()->set_zxid(0x1000f4240 + i);
  }
  return message;
}

internal::Txn SetTxn() {
  internal::Txn txn;
  txn.set_time_ms(1700000000000);
  txn.set_session_id(0x1234567890);
  txn.mutable_set()->set_path("/bench/c3/k17");
  txn.mutable_set()->set_data(std::string(256, 'v'));
  return txn;
}

template <typename Message>
void Encode(benchmark::State& state, const Message& message, int64_t items) {
  std::string bytes;
  for (auto _ : state) {
    bytes.clear();
    message.SerializeToString(&bytes);
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetItemsProcessed(state.iterations() * items);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}

template <typename Message>
void Decode(benchmark::State& state, const Message& message, int64_t items) {
  const std::string bytes = message.SerializeAsString();
  Message parsed;
  for (auto _ : state) {
    if (!parsed.ParseFromString(bytes)) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(&parsed);
  }
  state.SetItemsProcessed(state.iterations() * items);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}

void BM_ClientMessageEncode(benchmark::State& state) { Encode(state, SetBatch(), kBatch); }
void BM_ClientMessageDecode(benchmark::State& state) { Decode(state, SetBatch(), kBatch); }
void BM_ServerMessageEncode(benchmark::State& state) { Encode(state, SetResponses(), kBatch); }
void BM_ServerMessageDecode(benchmark::State& state) { Decode(state, SetResponses(), kBatch); }
void BM_TxnEncode(benchmark::State& state) { Encode(state, SetTxn(), 1); }
void BM_TxnDecode(benchmark::State& state) { Decode(state, SetTxn(), 1); }
BENCHMARK(BM_ClientMessageEncode);
BENCHMARK(BM_ClientMessageDecode);
BENCHMARK(BM_ServerMessageEncode);
BENCHMARK(BM_ServerMessageDecode);
BENCHMARK(BM_TxnEncode);
BENCHMARK(BM_TxnDecode);

}  // namespace
}  // namespace confab

BENCHMARK_MAIN();
