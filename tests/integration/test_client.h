// Shared by the integration tests that use the SDK: a client with the tests' timeouts.
#ifndef CONFAB_TESTS_INTEGRATION_TEST_CLIENT_H_
#define CONFAB_TESTS_INTEGRATION_TEST_CLIENT_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "confab/client.h"
#include "gtest/gtest.h"

namespace confab::itest {

// Client options for `endpoints` with the tests' timeouts: a request may wait 10 s (a failover),
// reconnects retry every 200 ms at most.
inline ClientOptions OptionsFor(const std::string& endpoints) {
  ClientOptions options;
  options.endpoints = endpoints;
  options.request_timeout = absl::Seconds(10);
  options.reconnect_backoff_max = absl::Milliseconds(200);
  return options;
}

// A connected client with OptionsFor(endpoints); nullptr (and a test failure) if it cannot
// connect.
inline std::unique_ptr<Client> ConnectTo(const std::string& endpoints) {
  auto client = Client::Connect(OptionsFor(endpoints));
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

}  // namespace confab::itest

#endif  // CONFAB_TESTS_INTEGRATION_TEST_CLIENT_H_
