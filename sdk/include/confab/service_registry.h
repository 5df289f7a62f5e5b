// ServiceRegistry: service discovery on confab::Client, with the node layout of the Python
// binding (bindings/python/README.md, "Recipes"), which is Apache Curator's, so C++ and Python
// processes see each other's members:
//
//   <base_path>/<service>                                persistent (created on demand)
//   <base_path>/<service>/_c_<uuid>-member-<10 digits>   EPHEMERAL_SEQUENTIAL, one per member
//   data: {"name": service, "id": uuid, "address": ..., "port": ..., "payload": ...,
//          "registrationTimeUTC": ms, "serviceType": "DYNAMIC"}   (Curator's ServiceInstance)
//
// This header also holds the helpers every recipe shares: Curator's protected create (a create
// whose reply was lost is found again by its `_c_<uuid>-` prefix instead of being repeated),
// sequence numbers of sequential nodes, and EnsurePath.
//
// Ownership: the registry, its Registrations and MembershipWatches borrow the Client (not owned);
// the Client must outlive them. A Registration owns its member node: destroying it (or
// Deregister) deletes the node. A member node is ephemeral: it also goes with the session
// (Client::Close, or LOST).
//
// After LOST: the Client is final (client.h), and so are the members it created. A member that
// must outlive its session is a KeptRegistration: it owns a Client of its own and, after LOST,
// registers again under a new session and reports the new node (below). With ServiceRegistry
// the application rebuilds by hand: a new Client, a new ServiceRegistry on it, and Register again
// (pass the old Registration's id() in RegisterOptions::id to keep the member's identity; a node
// of the old session still lingering is then replaced, not duplicated). Registrations of the lost
// Client may simply be destroyed (their delete fails with SESSION_EXPIRED, which is ignored).
//
// Threads: every method may be called from any thread. Membership callbacks run on the Client's
// callback thread (see client.h): one at a time, in zxid order of the changes that caused them.
#ifndef CONFAB_SERVICE_REGISTRY_H_
#define CONFAB_SERVICE_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "nlohmann/json.hpp"

namespace confab {

// ---- Shared by the recipes ----

inline constexpr absl::string_view kProtectedPrefix = "_c_";
inline constexpr int kSequenceDigits = 10;

// A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
std::string NewUuid();

// The sequence number a sequential create appended to `name` (its last 10 characters, all
// digits), or -1 when it has none.
int64_t SequenceOf(absl::string_view name);

// `parent` + "/" + `child` (no double slash for the root).
std::string JoinPath(absl::string_view parent, absl::string_view child);

// Creates every missing node of `path` (persistent, empty data); existing ones are fine.
absl::Status EnsurePath(Client& client, absl::string_view path);

// Creates parent/_c_<id>-<name>[sequence] exactly once (parents created as needed), even when
// the create's reply is lost (UNAVAILABLE: outcome unknown): before trying again, the parent's
// children are searched for one carrying the `_c_<id>-` prefix, and that node is returned.
// A given `id` is searched for before the first try too. For the ephemeral modes, a node found
// with the prefix but owned by another session (an earlier session of the same creator, lingering
// on the server) is deleted and the node created under this session: never a duplicate, never a
// node about to vanish with its session. Gives up after `timeout`. An empty `id` takes a fresh
// UUID.
absl::StatusOr<Created> CreateProtected(Client& client, absl::string_view parent,
                                        absl::string_view name, absl::string_view data,
                                        CreateMode mode, std::string id = "",
                                        absl::Duration timeout = absl::Seconds(30));

// ---- The registry ----

// One member of a service, as read from its node.
struct ServiceMember {
  std::string node;     // the node's name, e.g. "_c_<uuid>-member-0000000003"
  std::string path;     // the node's full path
  std::string id;       // the member's id (the uuid of the protection prefix)
  std::string service;  // "name" in the node's data
  std::string address;
  std::optional<int> port;
  nlohmann::json payload;             // null when none
  int64_t registration_time_utc = 0;  // ms since the Unix epoch
  int64_t sequence = -1;
  int64_t czxid = 0;
};

struct RegisterOptions {
  std::string address;
  std::optional<int> port;
  std::string id;  // empty: a fresh UUID; set it to re-register a member under a new session
  absl::Duration timeout = absl::Seconds(30);
};

// A registered member. RAII: destruction deregisters (deletes the node). Movable, not copyable.
// Its methods are not meant to be called concurrently with its destruction.
class Registration {
 public:
  Registration(Registration&& other) noexcept;
  Registration& operator=(Registration&& other) noexcept;
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ~Registration();  // Deregister(), errors ignored

  const std::string& path() const { return path_; }  // empty once deregistered
  const std::string& id() const { return id_; }

  // Deletes the member node; idempotent. A node already gone (NO_NODE, or SESSION_EXPIRED: it
  // went with its session) is success.
  absl::Status Deregister();

 private:
  friend class ServiceRegistry;
  Registration(Client* client, std::string path, std::string id)
      : client_(client), path_(std::move(path)), id_(std::move(id)) {}

  Client* client_ = nullptr;
  std::string path_;
  std::string id_;
};

using MembershipCallback = absl::AnyInvocable<void(const std::vector<ServiceMember>& members)>;

// Delivers the whole member list of a service on every change. Close() (or destruction) stops
// it; after Close() returns the callback is not running and is not invoked again, except when
// Close() is called from that callback itself (it then returns at once).
class MembershipWatch {
 public:
  ~MembershipWatch();  // Close()
  MembershipWatch(const MembershipWatch&) = delete;
  MembershipWatch& operator=(const MembershipWatch&) = delete;

  void Close();

  struct State;  // shared with the Client's callbacks (internal)

 private:
  friend class ServiceRegistry;
  MembershipWatch(Client* client, std::shared_ptr<State> state, WatchId id)
      : client_(client), state_(std::move(state)), watch_id_(id) {}

  Client* client_;
  std::shared_ptr<State> state_;
  WatchId watch_id_;
};

namespace recipes_internal {
class SessionRenewer;
}  // namespace recipes_internal

using RenewedCallback = absl::AnyInvocable<void(const std::string& path)>;

// A member kept registered across session expiry, as Curator's ServiceDiscovery re-registers
// after a reconnect. It owns its Client (a session of its own, from `client_options`; nothing else
// runs on it). When that session is LOST (expired, closed by the server, or not heard from for
// its timeout), it connects a new Client, retrying with the options' reconnect backoff while no
// member answers, registers the member again under the same id, and calls on_renewed(new path).
// Between LOST and the new registration the member is absent from Members(). A node of the old
// session still lingering on the server (the client declared LOST on its own timer) is deleted
// by the new registration's protected create: there is never a duplicate.
//
// on_renewed runs on the registration's own thread ("confab-renew"), one call at a time; it may
// call path() and id(), not Deregister(). The state listener of `client_options`, if any, is told
// the states of every session in turn (CONNECTED, ..., LOST, CONNECTED, ...).
class KeptRegistration {
 public:
  // Registers as ServiceRegistry(client, base_path).Register(service, payload, options) would, on
  // a Client of its own; returns once registered, or the error when that has not happened within
  // options.timeout (the connect included).
  static absl::StatusOr<std::unique_ptr<KeptRegistration>> Start(
      ClientOptions client_options, absl::string_view base_path, absl::string_view service,
      nlohmann::json payload, RegisterOptions options = {}, RenewedCallback on_renewed = nullptr);

  ~KeptRegistration();  // Deregister()
  KeptRegistration(const KeptRegistration&) = delete;
  KeptRegistration& operator=(const KeptRegistration&) = delete;

  // The member node last registered (already gone while a lost session is being renewed).
  std::string path() const;
  const std::string& id() const;

  // Stops renewing and closes the session: the member node goes with it (at once when connected,
  // else when the session expires on the server). Waits for a connect in progress (at most the
  // connect_timeout). Idempotent; not from on_renewed.
  void Deregister();

  struct State;  // shared with the renewing thread (internal)

 private:
  KeptRegistration(std::shared_ptr<State> state, std::string id);

  std::shared_ptr<State> state_;
  std::string id_;
  std::unique_ptr<recipes_internal::SessionRenewer> renewer_;
};

class ServiceRegistry {
 public:
  // `client` must outlive the registry and everything it returns.
  explicit ServiceRegistry(Client* client, std::string base_path = "/services");

  // <base_path>/<service>; `service` is not empty and has no '/'.
  absl::StatusOr<std::string> ServicePath(absl::string_view service) const;

  // Adds a member: an ephemeral sequential node with Curator's protected prefix, created at most
  // once even if its reply is lost (CreateProtected). The service node is created if missing.
  absl::StatusOr<Registration> Register(absl::string_view service, nlohmann::json payload,
                                        RegisterOptions options = {});

  // The current members, in registration (sequence) order; empty if the service has none.
  absl::StatusOr<std::vector<ServiceMember>> Members(absl::string_view service);

  // Calls `callback(members)` once with the current members, then after every change of the
  // membership (a persistent watch on the service node; each child event re-lists it; a list
  // equal to the last delivered one is not delivered again). Every invocation runs on the
  // Client's callback thread, in zxid order; it may call the Client (blocking calls too) and
  // Members(), but a long callback delays every other callback of the Client. Re-listing makes
  // blocking reads on that thread. The service node is created if missing.
  absl::StatusOr<std::unique_ptr<MembershipWatch>> Watch(absl::string_view service,
                                                         MembershipCallback callback);

 private:
  Client* client_;
  std::string base_path_;
};

}  // namespace confab

#endif  // CONFAB_SERVICE_REGISTRY_H_
