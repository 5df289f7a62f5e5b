#include "tests/bench/driver.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

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

}  // namespace confab::bench
