#include "tests/bench/driver.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "tests/bench/server_probe.h"

namespace confab::bench {

namespace {
constexpr int kSequenceDigits = 20;
}  // namespace

std::string SequencedValue(int64_t seq, int value_bytes) {
  std::string value = absl::StrFormat("%0*d", kSequenceDigits, seq);
  if (static_cast<int>(value.size()) < value_bytes) value.resize(value_bytes, 'v');
  return value;
}

int64_t SequenceOf(absl::string_view value) {
  int64_t seq = -1;
  if (value.size() < kSequenceDigits || !absl::SimpleAtoi(value.substr(0, kSequenceDigits), &seq)) {
    return -1;
  }
  return seq;
}

ServerCounters LeaderCountersOverTcp(const std::vector<std::string>& endpoints,
                                     absl::string_view request,
                                     absl::FunctionRef<bool(absl::string_view status)> is_leader,
                                     absl::string_view writes_metric,
                                     absl::string_view fsyncs_metric) {
  for (const std::string& endpoint : endpoints) {
    absl::StatusOr<std::string> status = FetchOverTcp(endpoint, request, absl::Seconds(2));
    if (!status.ok() || !is_leader(*status)) continue;
    ServerCounters counters;
    if (auto writes = FindMetric(*status, writes_metric)) {
      counters.writes = static_cast<int64_t>(*writes);
    }
    if (auto fsyncs = FindMetric(*status, fsyncs_metric)) {
      counters.fsyncs = static_cast<int64_t>(*fsyncs);
    }
    return counters;
  }
  return ServerCounters{};
}

}  // namespace confab::bench
