#include "server/common/types.h"

#include "absl/strings/str_format.h"

namespace confab {

std::string Zxid::ToString() const { return absl::StrFormat("0x%x:%u", epoch(), counter()); }

std::string SessionId::ToString() const {
  return absl::StrFormat("0x%016x", static_cast<uint64_t>(value_));
}

}  // namespace confab
