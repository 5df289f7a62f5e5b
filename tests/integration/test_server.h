// Shared by the integration tests: a real confabd (through LocalEnsemble) and small conveniences.
#ifndef CONFAB_TESTS_INTEGRATION_TEST_SERVER_H_
#define CONFAB_TESTS_INTEGRATION_TEST_SERVER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/testing/local_ensemble.h"
#include "gtest/gtest.h"

namespace confab::itest {

// Starts a standalone confabd with `flags`; nullptr (and a test failure) if it cannot start.
inline std::unique_ptr<testing::LocalEnsemble> StartConfabd(std::vector<std::string> flags = {}) {
  testing::LocalEnsembleOptions options;
  options.confabd_path = CONFABD_PATH;
  options.extra_flags = std::move(flags);
  auto started = testing::LocalEnsemble::Start(options);
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? std::move(*started) : nullptr;
}

// "/<name of the running test>": a node each test can work under without meeting the others.
inline std::string TestRoot() {
  return absl::StrCat("/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

// Polls `pred` every 10 ms until it holds or `timeout` passed; its last answer.
template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return pred();
}

}  // namespace confab::itest

#endif  // CONFAB_TESTS_INTEGRATION_TEST_SERVER_H_
