#include "confab/service_registry.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "sdk/src/recipes/session_renewer.h"

namespace confab {

// ---- Shared helpers ----

std::string NewUuid() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t hi = 0;
  uint64_t lo = 0;
  {
    absl::MutexLock lock(&mu);
    hi = absl::Uniform<uint64_t>(*gen);
    lo = absl::Uniform<uint64_t>(*gen);
  }
  hi = (hi & ~uint64_t{0xF000}) | uint64_t{0x4000};            // version 4
  lo = (lo & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);  // variant 10xx
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF,
                         lo >> 48, lo & uint64_t{0xFFFFFFFFFFFF});
}

int64_t SequenceOf(absl::string_view name) {
  if (name.size() < static_cast<size_t>(kSequenceDigits)) return -1;
  absl::string_view tail = name.substr(name.size() - kSequenceDigits);
  int64_t value = 0;
  for (char c : tail) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

std::string JoinPath(absl::string_view parent, absl::string_view child) {
  if (parent == "/" || parent.empty()) return absl::StrCat("/", child);
  return absl::StrCat(parent, "/", child);
}

absl::Status EnsurePath(Client& client, absl::string_view path) {
  std::string prefix;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    absl::StrAppend(&prefix, "/", part);
    auto exists = client.Exists(prefix);
    if (!exists.ok()) return exists.status();
    if (exists->has_value()) continue;
    auto created = client.Create(prefix);
    if (!created.ok() && ErrorCodeOf(created.status()) != v1::NODE_EXISTS) {
      return created.status();
    }
  }
  return absl::OkStatus();
}

namespace {

bool IsSequential(CreateMode mode) {
  return mode == CreateMode::kPersistentSequential || mode == CreateMode::kEphemeralSequential;
}

bool IsEphemeral(CreateMode mode) {
  return mode == CreateMode::kEphemeral || mode == CreateMode::kEphemeralSequential;
}

// The child of `parent` whose name starts with `prefix`, if any. An ephemeral one that belongs to
// another session is a leftover of an earlier session of the same creator (which may linger on
// the server for a while after the client declared it LOST): it is deleted, not returned, so the
// caller creates its node under its own session instead of adopting one about to vanish.
absl::StatusOr<std::optional<Created>> FindProtected(Client& client, absl::string_view parent,
                                                     absl::string_view prefix, CreateMode mode) {
  auto children = client.GetChildren(parent);
  if (!children.ok()) return children.status();
  for (const std::string& name : children->names) {
    if (!absl::StartsWith(name, prefix)) continue;
    std::string full = JoinPath(parent, name);
    auto stat = client.Exists(full);
    if (!stat.ok()) return stat.status();
    if (!stat->has_value()) continue;
    if (IsEphemeral(mode) && (*stat)->ephemeral_owner != client.session_id().value()) {
      absl::Status deleted = client.Delete(full);
      if (!deleted.ok() && ErrorCodeOf(deleted) != v1::NO_NODE) return deleted;
      continue;
    }
    return std::optional<Created>(Created{full, **stat});
  }
  return std::optional<Created>();
}

}  // namespace

absl::StatusOr<Created> CreateProtected(Client& client, absl::string_view parent,
                                        absl::string_view name, absl::string_view data,
                                        CreateMode mode, std::string id, absl::Duration timeout) {
  // A caller-given id may have a node from an earlier attempt; a fresh one cannot.
  bool search = !id.empty();
  if (id.empty()) id = NewUuid();
  const std::string prefix = absl::StrCat(kProtectedPrefix, id, "-");
  const std::string path = JoinPath(parent, absl::StrCat(prefix, name));
  const absl::Time deadline = absl::Now() + timeout;
  // Look for a node of an earlier attempt (a caller retrying with the same id, or a create whose
  // reply was lost) before each create that might repeat one.
  while (true) {
    absl::Status status;
    if (search) {
      auto found = FindProtected(client, parent, prefix, mode);
      if (found.ok() && found->has_value()) return **found;
      if (!found.ok() && ErrorCodeOf(found.status()) != v1::NO_NODE) {
        status = found.status();
      }
    }
    if (status.ok()) {
      auto created = client.Create(path, data, mode);
      if (created.ok()) return created;
      status = created.status();
      if (ErrorCodeOf(status) == v1::NO_NODE) {  // no parent yet
        status = EnsurePath(client, parent);
        if (status.ok()) {
          search = false;
          continue;
        }
      } else if (ErrorCodeOf(status) == v1::NODE_EXISTS && !IsSequential(mode)) {
        search = true;  // ours, from an attempt whose reply was lost
        continue;
      }
    }
    // Only an unknown outcome or a timeout is worth another try.
    if (ErrorCodeOf(status) != v1::UNAVAILABLE || absl::Now() >= deadline) return status;
    search = true;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

// ---- Registration ----

Registration::Registration(Registration&& other) noexcept
    : client_(other.client_), path_(std::move(other.path_)), id_(std::move(other.id_)) {
  other.path_.clear();
}

Registration& Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    Deregister().IgnoreError();
    client_ = other.client_;
    path_ = std::move(other.path_);
    id_ = std::move(other.id_);
    other.path_.clear();
  }
  return *this;
}

Registration::~Registration() { Deregister().IgnoreError(); }

absl::Status Registration::Deregister() {
  if (path_.empty()) return absl::OkStatus();
  absl::Status status = client_->Delete(path_);
  const v1::ErrorCode code = ErrorCodeOf(status);
  if (status.ok() || code == v1::NO_NODE || code == v1::SESSION_EXPIRED) {
    path_.clear();
    return absl::OkStatus();
  }
  return status;
}

// ---- MembershipWatch ----

struct MembershipWatch::State {
  ServiceRegistry* registry;  // only its Members(); a copy, so it need not outlive the watch
  std::string service;
  absl::Mutex mu;  // held while delivering
  MembershipCallback callback;
  std::optional<std::vector<std::string>> last;  // paths last delivered
  std::atomic<bool> closed{false};
  std::atomic<std::thread::id> delivering{};

  State(ServiceRegistry registry_copy, std::string service_name, MembershipCallback cb)
      : registry(nullptr),
        service(std::move(service_name)),
        callback(std::move(cb)),
        registry_copy_(std::move(registry_copy)) {
    registry = &registry_copy_;
  }

  // Re-lists the members and delivers them if they changed. On the callback thread.
  void Refresh() {
    if (closed.load()) return;
    auto members = registry->Members(service);
    if (!members.ok()) return;  // SESSION_EXPIRED, or a timeout: the next event re-lists
    std::vector<std::string> paths;
    for (const ServiceMember& m : *members) paths.push_back(m.path);
    absl::MutexLock lock(&mu);
    if (closed.load() || (last.has_value() && *last == paths)) return;
    last = std::move(paths);
    delivering.store(std::this_thread::get_id());
    callback(*members);
    delivering.store(std::thread::id());
  }

 private:
  ServiceRegistry registry_copy_;
};

MembershipWatch::~MembershipWatch() { Close(); }

void MembershipWatch::Close() {
  if (state_->closed.exchange(true)) return;
  client_->RemoveWatch(watch_id_).IgnoreError();
  // Wait for a delivery in progress, unless it is the one calling Close().
  if (state_->delivering.load() != std::this_thread::get_id()) {
    absl::MutexLock lock(&state_->mu);
  }
}

// ---- Member nodes ----

namespace {

std::string NormalizedBasePath(absl::string_view base_path) {
  return JoinPath("/", absl::StripSuffix(absl::StripPrefix(base_path, "/"), "/"));
}

absl::StatusOr<std::string> ServicePathUnder(absl::string_view base_path,
                                             absl::string_view service) {
  if (service.empty() || absl::StrContains(service, '/')) {
    return absl::InvalidArgumentError(
        absl::StrCat("service name '", service, "': must be non-empty and without '/'"));
  }
  return JoinPath(base_path, service);
}

// Creates the member node of `options.id` (set) under `service_path` (Curator's ServiceInstance).
absl::StatusOr<Created> CreateMember(Client& client, const std::string& service_path,
                                     absl::string_view service, const nlohmann::json& payload,
                                     const RegisterOptions& options) {
  nlohmann::json data = {
      {"name", std::string(service)},
      {"id", options.id},
      {"address", options.address},
      {"port", options.port.has_value() ? nlohmann::json(*options.port) : nlohmann::json()},
      {"payload", payload},
      {"registrationTimeUTC", absl::ToUnixMillis(absl::Now())},
      {"serviceType", "DYNAMIC"},
  };
  return CreateProtected(client, service_path, "member-", data.dump(),
                         CreateMode::kEphemeralSequential, options.id, options.timeout);
}

}  // namespace

// ---- KeptRegistration ----

struct KeptRegistration::State {
  std::string service_path;
  std::string service;
  nlohmann::json payload;
  RegisterOptions options;  // its id set
  RenewedCallback on_renewed;

  absl::Mutex mu;
  std::string path ABSL_GUARDED_BY(mu);
  int64_t registrations ABSL_GUARDED_BY(mu) = 0;

  // On the renewer's thread, once per session.
  absl::Status Register(Client& client) {
    absl::StatusOr<Created> created = CreateMember(client, service_path, service, payload, options);
    if (!created.ok()) return created.status();
    bool renewed = false;
    {
      absl::MutexLock lock(&mu);
      path = created->path;
      renewed = registrations++ > 0;
    }
    if (renewed && on_renewed) on_renewed(created->path);
    return absl::OkStatus();
  }
};

KeptRegistration::KeptRegistration(std::shared_ptr<State> state, std::string id)
    : state_(std::move(state)), id_(std::move(id)) {}

KeptRegistration::~KeptRegistration() { Deregister(); }

absl::StatusOr<std::unique_ptr<KeptRegistration>> KeptRegistration::Start(
    ClientOptions client_options, absl::string_view base_path, absl::string_view service,
    nlohmann::json payload, RegisterOptions options, RenewedCallback on_renewed) {
  absl::StatusOr<std::string> service_path =
      ServicePathUnder(NormalizedBasePath(base_path), service);
  if (!service_path.ok()) return service_path.status();
  if (options.id.empty()) options.id = NewUuid();
  auto state = std::make_shared<State>();
  state->service_path = *std::move(service_path);
  state->service = std::string(service);
  state->payload = std::move(payload);
  state->options = options;
  state->on_renewed = std::move(on_renewed);
  std::unique_ptr<KeptRegistration> kept(new KeptRegistration(state, options.id));
  kept->renewer_ = std::make_unique<recipes_internal::SessionRenewer>(
      std::move(client_options), [state](Client& client) { return state->Register(client); },
      [](ConnectionState) {});
  {
    absl::MutexLock lock(&state->mu);
    if (state->mu.AwaitWithTimeout(
            absl::Condition(
                +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->registrations > 0; },
                state.get()),
            options.timeout)) {
      return kept;
    }
  }
  const absl::Status last_error = kept->renewer_->LastError();
  kept->Deregister();
  return absl::DeadlineExceededError(
      absl::StrCat("KeptRegistration: '", service, "' not registered within ",
                   absl::FormatDuration(options.timeout), "; last error: ", last_error.ToString()));
}

std::string KeptRegistration::path() const {
  absl::MutexLock lock(&state_->mu);
  return state_->path;
}

const std::string& KeptRegistration::id() const { return id_; }

void KeptRegistration::Deregister() {
  if (renewer_ != nullptr) renewer_->Stop();
}

// ---- ServiceRegistry ----

ServiceRegistry::ServiceRegistry(Client* client, std::string base_path)
    : client_(client), base_path_(NormalizedBasePath(base_path)) {}

absl::StatusOr<std::string> ServiceRegistry::ServicePath(absl::string_view service) const {
  return ServicePathUnder(base_path_, service);
}

absl::StatusOr<Registration> ServiceRegistry::Register(absl::string_view service,
                                                       nlohmann::json payload,
                                                       RegisterOptions options) {
  auto base = ServicePath(service);
  if (!base.ok()) return base.status();
  if (options.id.empty()) options.id = NewUuid();
  auto created = CreateMember(*client_, *base, service, payload, options);
  if (!created.ok()) return created.status();
  return Registration(client_, created->path, options.id);
}

absl::StatusOr<std::vector<ServiceMember>> ServiceRegistry::Members(absl::string_view service) {
  auto base = ServicePath(service);
  if (!base.ok()) return base.status();
  auto children = client_->GetChildren(*base);
  if (!children.ok()) {
    if (ErrorCodeOf(children.status()) == v1::NO_NODE) return std::vector<ServiceMember>();
    return children.status();
  }
  std::vector<ServiceMember> members;
  for (const std::string& name : children->names) {
    const int64_t sequence = SequenceOf(name);
    if (sequence < 0) continue;
    ServiceMember m;
    m.node = name;
    m.path = JoinPath(*base, name);
    m.sequence = sequence;
    auto got = client_->Get(m.path);
    if (!got.ok()) {
      if (ErrorCodeOf(got.status()) == v1::NO_NODE) continue;  // left meanwhile
      return got.status();
    }
    m.czxid = got->stat.czxid;
    if (absl::StartsWith(name, kProtectedPrefix) && name.size() >= kProtectedPrefix.size() + 36) {
      m.id = name.substr(kProtectedPrefix.size(), 36);
    } else {
      m.id = name;
    }
    m.service = std::string(service);
    nlohmann::json d = nlohmann::json::parse(got->data, nullptr, /*allow_exceptions=*/false);
    if (d.is_object()) {
      if (d.contains("name") && d["name"].is_string()) m.service = d["name"].get<std::string>();
      if (d.contains("id") && d["id"].is_string()) m.id = d["id"].get<std::string>();
      if (d.contains("address") && d["address"].is_string()) {
        m.address = d["address"].get<std::string>();
      }
      if (d.contains("port") && d["port"].is_number_integer()) m.port = d["port"].get<int>();
      if (d.contains("payload")) m.payload = d["payload"];
      if (d.contains("registrationTimeUTC") && d["registrationTimeUTC"].is_number()) {
        m.registration_time_utc = d["registrationTimeUTC"].get<int64_t>();
      }
    }
    members.push_back(std::move(m));
  }
  std::sort(members.begin(), members.end(),
            [](const ServiceMember& a, const ServiceMember& b) { return a.sequence < b.sequence; });
  return members;
}

absl::StatusOr<std::unique_ptr<MembershipWatch>> ServiceRegistry::Watch(
    absl::string_view service, MembershipCallback callback) {
  auto base = ServicePath(service);
  if (!base.ok()) return base.status();
  if (absl::Status s = EnsurePath(*client_, *base); !s.ok()) return s;
  auto state =
      std::make_shared<MembershipWatch::State>(*this, std::string(service), std::move(callback));
  auto id = client_->AddWatch(*base, AddWatchMode::kPersistent, [state](const WatchEvent& event) {
    if (event.type != EventType::kNodeDataChanged) state->Refresh();
  });
  if (!id.ok()) return id.status();
  // The first delivery, on the callback thread too (after any event already queued).
  client_->SyncAsync(*base, [state](absl::Status) { state->Refresh(); });
  return std::unique_ptr<MembershipWatch>(new MembershipWatch(client_, state, *id));
}

}  // namespace confab
