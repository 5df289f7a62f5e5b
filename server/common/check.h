// CONFAB_CHECK: an invariant that must hold. A failure is a bug report, not an error path: it
// prints the condition, where, and the offending values, then aborts.
//   CONFAB_CHECK(zxid > last_applied_, "apply ", zxid.ToString(), " after ", ...);
#ifndef CONFAB_SERVER_COMMON_CHECK_H_
#define CONFAB_SERVER_COMMON_CHECK_H_

#include <string>

#include "absl/strings/str_cat.h"

namespace confab::internal_check {

[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              const std::string& detail);

}  // namespace confab::internal_check

#define CONFAB_CHECK(condition, ...)                                                        \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      ::confab::internal_check::CheckFailed(__FILE__, __LINE__, #condition,                 \
                                            ::absl::StrCat("" __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                                       \
  } while (false)

#endif  // CONFAB_SERVER_COMMON_CHECK_H_
