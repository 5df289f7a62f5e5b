// ConfigCache against a real confabd, beyond the basics in recipes_test.cc: bound values
// (Bind<T>) following changes and keeping the last good value on a type error; releases applied
// every one, whole and in order under concurrent publishers, and across a lost session of an
// own-session cache; the fallback file written after changes, and a start from it while the
// ensemble is down (stale), then the sync once it is back.
#include "confab/config_cache.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "confab/config_publisher.h"
#include "confab/service_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/durable_file.h"
#include "test_client.h"
#include "test_server.h"

namespace confab {
namespace {

using itest::ConnectTo;
using itest::OptionsFor;
using itest::WaitFor;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr absl::Duration kWait = absl::Seconds(20);

// What callbacks record, read by the test thread.
template <typename T>
class Recorded {
 public:
  void Add(T item) {
    absl::MutexLock lock(&mu_);
    items_.push_back(std::move(item));
  }
  std::vector<T> Items() const {
    absl::MutexLock lock(&mu_);
    return items_;
  }
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return items_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<T> items_ ABSL_GUARDED_BY(mu_);
};

// Two keys, both set by every release of these tests.
ConfigSchema CounterSchema() {
  ConfigSchema schema;
  schema.keys["COUNTER"] = ValueRule::Of(ValueType::kInteger).Required();
  schema.keys["BY"] = ValueRule::Of(ValueType::kString).Required();
  return schema;
}

// A file path under the test's temporary directory, removed with the object.
class TempFile {
 public:
  TempFile()
      : path_(absl::StrCat(::testing::TempDir(), "confab-",
                           ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                           ".json")) {
    std::filesystem::remove(path_);
  }
  ~TempFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

  // The file's JSON, or null when it cannot be read.
  json Read() const {
    absl::StatusOr<std::string> text = storage::ReadWholeFile(path_);
    if (!text.ok()) return nullptr;
    return json::parse(*text, nullptr, /*allow_exceptions=*/false);
  }

 private:
  std::string path_;
};

class ConfigCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = itest::StartConfabd().release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  std::unique_ptr<Client> Connect() { return ConnectTo(server_->Endpoint(0)); }

  static testing::LocalEnsemble* server_;
};

testing::LocalEnsemble* ConfigCacheTest::server_ = nullptr;

TEST_F(ConfigCacheTest, BoundValuesFollowChangesAndKeepTheLastGoodValueOnATypeError) {
  auto reader = Connect();
  auto writer = Connect();
  ASSERT_TRUE(reader && writer);
  const std::string root = itest::TestRoot();
  ASSERT_TRUE(EnsurePath(*writer, root).ok());
  ASSERT_TRUE(writer->Create(root + "/ROW_LIMIT", "5000").ok());
  ASSERT_TRUE(writer->Create(root + "/NAME", "\"first\"").ok());

  Recorded<absl::Status> errors;
  ConfigCache cache(reader.get(), root);
  cache.AddErrorListener([&errors](const absl::Status& error) { errors.Add(error); });
  BoundValue<int> row_limit = cache.Bind<int>("ROW_LIMIT", -1);
  EXPECT_EQ(row_limit.Get(), -1) << "the default until loaded";
  ASSERT_TRUE(cache.Start().ok());
  EXPECT_EQ(row_limit.Get(), 5000);
  BoundValue<int> unset = cache.Bind<int>("UNSET", 7);
  EXPECT_EQ(unset.Get(), 7);
  BoundValue<std::string> name = cache.Bind<std::string>("NAME");
  EXPECT_EQ(*name.Read(), "first");

  ASSERT_TRUE(writer->Set(root + "/ROW_LIMIT", "6000").ok());
  ASSERT_TRUE(cache.Sync().ok());
  EXPECT_EQ(row_limit.Get(), 6000);
  EXPECT_TRUE(row_limit.status().ok());

  // Not an int: the last good value stays; the error names the key, the type and the value.
  ASSERT_TRUE(writer->Set(root + "/ROW_LIMIT", "\"lots\"").ok());
  ASSERT_TRUE(cache.Sync().ok());
  EXPECT_EQ(row_limit.Get(), 6000);
  EXPECT_EQ(row_limit.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(row_limit.status().message(),
            "config key 'ROW_LIMIT': expected int32, got string \"lots\"");
  EXPECT_EQ(cache.Get<std::string>("ROW_LIMIT").value_or(""), "lots") << "the cache has it";
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors.Items()[0], row_limit.status());

  ASSERT_TRUE(writer->Set(root + "/ROW_LIMIT", "7000").ok());
  ASSERT_TRUE(cache.Sync().ok());
  EXPECT_EQ(row_limit.Get(), 7000);
  EXPECT_TRUE(row_limit.status().ok());

  // A read in progress keeps the value it began with; the next read sees the change.
  {
    BoundValue<std::string>::ReadGuard during = name.Read();
    ASSERT_TRUE(writer->Set(root + "/NAME", "\"second\"").ok());
    ASSERT_TRUE(cache.Sync().ok());
    EXPECT_EQ(*during, "first");
    EXPECT_EQ(name.Get(), "second");
  }

  ASSERT_TRUE(writer->Delete(root + "/ROW_LIMIT").ok());
  ASSERT_TRUE(cache.Sync().ok());
  EXPECT_EQ(row_limit.Get(), -1) << "unset again: the default";
  EXPECT_EQ(errors.size(), 1u);

  // A bound value may outlive its cache: it keeps its last value.
  cache.Close();
  EXPECT_EQ(name.Get(), "second");
}

TEST_F(ConfigCacheTest, EveryReleaseIsAppliedWholeAndInOrderUnderConcurrentPublishers) {
  constexpr int kReleasesEach = 15;
  auto reader = Connect();
  auto client_a = Connect();
  auto client_b = Connect();
  ASSERT_TRUE(reader && client_a && client_b);
  const std::string config_root = itest::TestRoot() + "/config";
  const std::string release_root = itest::TestRoot() + "/releases";
  ConfigPublisher publisher_a(client_a.get(), config_root, release_root, CounterSchema());
  ConfigPublisher publisher_b(client_b.get(), config_root, release_root, CounterSchema());

  // What each publish made: release number -> its content and zxid.
  absl::Mutex published_mu;
  std::map<int64_t, std::pair<std::map<std::string, json>, int64_t>> published;
  std::atomic<bool> failed{false};
  // Each publisher releases 2 before the cache starts, 8 while it loads, 5 after it loaded.
  absl::Notification starting;
  absl::Notification started;
  auto publish_all = [&](ConfigPublisher& publisher, const std::string& by, int base) {
    for (int k = 1; k <= kReleasesEach && !failed; ++k) {
      if (k == 3) starting.WaitForNotification();
      if (k == 11) started.WaitForNotification();
      const std::map<std::string, json> content = {{"COUNTER", base + k}, {"BY", by}};
      for (int attempt = 0;; ++attempt) {
        absl::StatusOr<PublishResult> result = publisher.Publish(content, by, "");
        if (result.ok()) {
          absl::MutexLock lock(&published_mu);
          published[result->release] = {content, result->zxid};
          break;
        }
        // A conflict means the other publisher released: retry; anything else is a failure.
        if (result.status().code() != absl::StatusCode::kAborted || attempt > 100) {
          ADD_FAILURE() << result.status();
          failed = true;
          return;
        }
      }
    }
  };
  auto published_count = [&] {
    absl::MutexLock lock(&published_mu);
    return published.size();
  };

  Recorded<Release> releases;
  Recorded<ConfigChange> counter_changes;
  ConfigCacheOptions options;
  options.release_root = release_root;
  ConfigCache cache(reader.get(), config_root, options);
  cache.AddReleaseListener([&releases](const Release& r) { releases.Add(r); });
  cache.AddListener([&counter_changes](const ConfigChange& c) { counter_changes.Add(c); },
                    "COUNTER");

  std::thread a([&] { publish_all(publisher_a, "a", 1000); });
  std::thread b([&] { publish_all(publisher_b, "b", 2000); });
  EXPECT_TRUE(WaitFor([&] { return published_count() >= 4 || failed; }, kWait));
  starting.Notify();
  const absl::Status start = cache.Start();
  started.Notify();
  a.join();
  b.join();
  ASSERT_TRUE(start.ok()) << start;
  ASSERT_FALSE(failed);
  ASSERT_TRUE(cache.Sync().ok());

  constexpr int64_t kTotal = 2 * kReleasesEach;
  ASSERT_EQ(published_count(), static_cast<size_t>(kTotal));
  EXPECT_EQ(cache.release(), kTotal);
  EXPECT_EQ(cache.zxid(), published[kTotal].second);
  EXPECT_EQ(cache.Get<int>("COUNTER").value_or(-1), published[kTotal].first["COUNTER"]);
  EXPECT_EQ(cache.Get<std::string>("BY").value_or(""), published[kTotal].first["BY"]);

  // Every release after the one loaded, once, in order, each with its own content: nothing
  // coalesced, even though two publishers raced.
  std::vector<Release> seen = releases.Items();
  ASSERT_FALSE(seen.empty());
  const int64_t loaded = seen.front().number - 1;
  EXPECT_GE(loaded, 4);
  EXPECT_LE(loaded, kTotal - 10) << "the last 5 of each come after the load";
  std::vector<int64_t> numbers;
  for (const Release& r : seen) numbers.push_back(r.number);
  std::vector<int64_t> expected_numbers;
  for (int64_t n = loaded + 1; n <= kTotal; ++n) expected_numbers.push_back(n);
  EXPECT_THAT(numbers, ElementsAreArray(expected_numbers));
  for (const Release& r : seen) {
    EXPECT_EQ(r.content, published[r.number].first) << "release " << r.number;
    EXPECT_EQ(r.zxid, published[r.number].second) << "release " << r.number;
  }
  // Each release changed COUNTER: one change per release, at the release's zxid.
  std::vector<ConfigChange> changes = counter_changes.Items();
  ASSERT_EQ(changes.size(), seen.size());
  for (size_t i = 0; i < changes.size(); ++i) {
    EXPECT_EQ(changes[i].new_value, published[seen[i].number].first["COUNTER"]);
    EXPECT_EQ(changes[i].zxid, seen[i].zxid);
  }
}

// A cache with its own session loses it (the server is paused past the session timeout), is
// stale meanwhile, and after the new session applies every release published in between, in
// order.
TEST(ConfigCacheSessionTest, AnOwnSessionCacheCatchesUpEveryReleaseAfterItsSessionIsLost) {
  auto server = itest::StartConfabd({"--session-timeout-min-ms=500"});
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(server->Endpoint(0));
  ASSERT_TRUE(client);
  const std::string config_root = "/config";
  const std::string release_root = "/releases";
  ConfigPublisher publisher(client.get(), config_root, release_root, CounterSchema());
  ASSERT_TRUE(publisher.Publish({{"COUNTER", 1}, {"BY", "p"}}, "p", "").ok());

  Recorded<bool> stale_changes;
  Recorded<int64_t> releases;
  Recorded<std::string> states;
  ClientOptions own = OptionsFor(server->Endpoint(0));
  own.session_timeout = absl::Seconds(1);
  own.connect_timeout = absl::Seconds(2);
  own.state_listener = [&states](ConnectionState s) {
    states.Add(std::string(ConnectionStateName(s)));
  };
  ConfigCacheOptions options;
  options.release_root = release_root;
  ConfigCache cache(std::move(own), config_root, options);
  cache.AddStaleListener([&stale_changes](bool stale) { stale_changes.Add(stale); });
  cache.AddReleaseListener([&releases](const Release& r) { releases.Add(r.number); });
  ASSERT_TRUE(cache.Start().ok());
  EXPECT_FALSE(cache.IsStale());
  EXPECT_EQ(cache.release(), 1);

  ASSERT_TRUE(server->Pause(0).ok());
  const bool went_stale = WaitFor([&] { return cache.IsStale(); }, kWait);
  ASSERT_TRUE(server->Resume(0).ok());
  ASSERT_TRUE(went_stale);
  for (int n = 2; n <= 4; ++n) {
    absl::StatusOr<PublishResult> result =
        publisher.Publish({{"COUNTER", n}, {"BY", "p"}}, "p", "");
    ASSERT_TRUE(result.ok()) << result.status();
  }
  ASSERT_TRUE(WaitFor([&] { return cache.release() == 4 && !cache.IsStale(); }, kWait));
  EXPECT_EQ(cache.Get<int>("COUNTER").value_or(-1), 4);
  EXPECT_THAT(releases.Items(), ElementsAre(2, 3, 4));
  EXPECT_THAT(stale_changes.Items(), ElementsAre(true, false));
  std::vector<std::string> seen_states = states.Items();
  ASSERT_GE(seen_states.size(), 3u);
  EXPECT_EQ(seen_states[0], "CONNECTED");
  EXPECT_NE(std::find(seen_states.begin(), seen_states.end(), "LOST"), seen_states.end());
  EXPECT_EQ(seen_states.back(), "CONNECTED") << "a new session";
}

// The fallback file follows the cache's changes; a cache with its own session starts from it
// while the ensemble is down (stale), and syncs once the ensemble is back.
TEST(ConfigCacheSessionTest, StartsFromTheFallbackFileWhileTheEnsembleIsDownThenSyncs) {
  auto server = itest::StartConfabd();
  ASSERT_NE(server, nullptr);
  const std::string endpoint = server->Endpoint(0);
  const std::string root = "/config";
  TempFile fallback;
  ConfigCacheOptions options;
  options.fallback_path = fallback.path();
  {
    auto client = ConnectTo(endpoint);
    ASSERT_TRUE(client);
    ASSERT_TRUE(EnsurePath(*client, root).ok());
    ASSERT_TRUE(client->Create(root + "/ROW_LIMIT", "5000").ok());
    ASSERT_TRUE(client->Create(root + "/NAME", "\"superset\"").ok());
    ConfigCache cache(client.get(), root, options);
    ASSERT_TRUE(cache.Start().ok());
    auto file_has = [&](int row_limit) {
      json file = fallback.Read();
      return file.is_object() && file["values"]["ROW_LIMIT"] == row_limit;
    };
    ASSERT_TRUE(WaitFor([&] { return file_has(5000); }, kWait)) << "written after the load";
    ASSERT_TRUE(client->Set(root + "/ROW_LIMIT", "6000").ok());
    ASSERT_TRUE(WaitFor([&] { return file_has(6000); }, kWait)) << "and after a change";
    ASSERT_TRUE(cache.Sync().ok());
    cache.Close();  // writes the last state
    json file = fallback.Read();
    EXPECT_EQ(file["root"], root);
    EXPECT_EQ(file["zxid"], cache.zxid());
    EXPECT_EQ(file["values"], json({{"NAME", "superset"}, {"ROW_LIMIT", 6000}}));
  }

  ASSERT_TRUE(server->Stop(0).ok());
  Recorded<bool> stale_changes;
  Recorded<ConfigChange> changes;
  ClientOptions own = OptionsFor(endpoint);
  own.connect_timeout = absl::Milliseconds(500);
  ConfigCache cache(std::move(own), root, options);
  cache.AddStaleListener([&stale_changes](bool stale) { stale_changes.Add(stale); });
  cache.AddListener([&changes](const ConfigChange& c) { changes.Add(c); });
  BoundValue<int> row_limit = cache.Bind<int>("ROW_LIMIT");
  ASSERT_TRUE(cache.Start(absl::Seconds(1)).ok());
  EXPECT_TRUE(cache.IsStale());
  EXPECT_EQ(cache.GetOr<int>("ROW_LIMIT", 0), 6000);
  EXPECT_EQ(cache.GetOr<std::string>("NAME", ""), "superset");
  EXPECT_EQ(row_limit.Get(), 6000);

  // The ensemble comes back, with a change made meanwhile.
  ASSERT_TRUE(server->Restart(0).ok());
  {
    auto client = ConnectTo(endpoint);
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->Set(root + "/ROW_LIMIT", "7000").ok());
  }
  ASSERT_TRUE(WaitFor([&] { return !cache.IsStale() && row_limit.Get() == 7000; }, kWait));
  ASSERT_TRUE(cache.Sync().ok());
  EXPECT_EQ(cache.GetOr<int>("ROW_LIMIT", 0), 7000);
  EXPECT_THAT(stale_changes.Items(), ElementsAre(false));
  std::vector<ConfigChange> seen = changes.Items();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().key, "ROW_LIMIT");
  EXPECT_EQ(seen.back().old_value, json(6000)) << "told what changed since the file";
  EXPECT_EQ(seen.back().new_value, json(7000));
  EXPECT_TRUE(WaitFor([&] { return fallback.Read()["values"]["ROW_LIMIT"] == 7000; }, kWait));
}

// Without the ensemble and without a fallback file, an own-session cache does not start; a
// fallback file of another root is refused, not used.
TEST(ConfigCacheSessionTest, NoStartWithoutTheEnsembleOrAUsableFallbackFile) {
  TempFile fallback;
  ASSERT_TRUE(storage::WriteFileDurably(fallback.path(), json({{"root", "/other"},
                                                               {"release_root", ""},
                                                               {"zxid", 1},
                                                               {"release", 0},
                                                               {"values", {{"A", 1}}}})
                                                             .dump())
                  .ok());
  ClientOptions own = OptionsFor("127.0.0.1:1");  // nothing listens there
  own.connect_timeout = absl::Milliseconds(200);
  ConfigCacheOptions options;
  options.fallback_path = fallback.path();
  ConfigCache cache(std::move(own), "/config", options);
  absl::Status started = cache.Start(absl::Milliseconds(500));
  EXPECT_EQ(started.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(started.message(), HasSubstr("is of root '/other'"));
  EXPECT_FALSE(cache.Raw("A").has_value());
}

}  // namespace
}  // namespace confab
