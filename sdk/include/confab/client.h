// confab::Client is one Confab session, as ZooKeeper's client handle: it opens the session on one
// endpoint of the ensemble, keeps it alive with heartbeats, carries every request and watch event
// over the session's ONE stream (pipelined and batched), and moves the session to another stream
// (any endpoint) when the connection breaks, re-registering its watches there.
//
// It owns: the session, its stream (and the successive ones after reconnects), two threads
// ("confab-session": heartbeats, timeouts, reconnects; "confab-callback": runs every user
// callback) and the client-side copy of the session's watches. It never retries a write whose
// outcome it cannot know, and never runs user code while holding one of its locks.
//
// Threads: every method may be called from any thread, concurrently, including from callbacks.
//
// Callbacks (async results, watchers, the state listener) all run on the one callback thread, one
// at a time, in the order their causes arrived from the server: a watch event comes before the
// response to any request that reflects its change, and responses come in request order, so a
// session's async callbacks run in the order the requests were made (while the connection holds;
// see "Across a reconnect"). A callback is never invoked inline from the call that registers it. A
// long callback delays every later one. Blocking calls return as soon as their response arrives
// (they do not wait for the callback thread), so they may be made from a callback; they then
// block the callback thread until answered.
//
// Errors: a failed call returns an absl::Status carrying our ErrorCode (confab::v1::ErrorCode,
// the wire enum) as a payload: read it with confab::ErrorCodeOf(status); the message is the
// server's and names the path. A failed Multi also carries the index of the failing op
// (confab::FailedOpOf(status)). Errors the client makes itself:
//   UNAVAILABLE      no answer within request_timeout, or the connection broke while a write
//                    (Create/Set/Delete/Multi) was in flight: its outcome is unknown (it may have
//                    been applied); the message says so. Reads are never failed this way: they
//                    are resent once the session is back.
//   SESSION_EXPIRED  the session is lost (expired, closed by the server, or unreachable for longer
//                    than its timeout) or the client was closed; every later call fails so too.
//
// Connection states (Curator's): CONNECTED once, when Connect() opened the session; SUSPENDED
// when the stream breaks or goes silent for 2/3 of the session timeout; RECONNECTED when the same
// session (same id, same ephemerals) was resumed on a new stream; LOST when the server answers
// SESSION_EXPIRED, or when a whole session timeout passed since the server was last heard from
// (the session may still linger on a server that restarted; it expires there on its own). LOST is
// final: build a new Client. Requests made while SUSPENDED wait (up to request_timeout) and are
// sent once RECONNECTED.
//
// Across a reconnect (SUSPENDED -> RECONNECTED), exactly this is guaranteed:
//   - the session, its id and its ephemeral nodes are the same;
//   - requests not yet written to the broken stream are sent on the new one, in order; reads
//     (Get/Exists/GetChildren/Sync/AddWatch) in flight are resent; writes in flight fail with
//     UNAVAILABLE (outcome unknown); a RemoveWatch in flight succeeds (the watch is not
//     re-registered);
//   - watches: the server drops a session's watches when it is resumed (they belong to a stream),
//     so before anything else on the new stream the client re-adds every watch it still holds
//     (one-shot ones not yet fired, persistent ones) with AddWatch(start_zxid = the last zxid it
//     saw). The server first replays, in zxid order, every matching change after that zxid its
//     bounded history remembers (confabd --watch-history-events; rebuilt from the log after a
//     restart), then sends live events. So as long as that history reaches back, no event is
//     missed or repeated, for one-shot and persistent watches alike, whether the break was a
//     network blip, a server restart or a move to another endpoint. A one-shot watch still fires
//     at most once.
//   - when the history does not reach back (the server says events_missed): one-shot watches get
//     ZooKeeper's setWatches semantics, synthesized by re-reading the node: NodeDeleted if it was
//     deleted (or replaced) since the read that set the watch, NodeCreated if it now exists (an
//     Exists watch on a missing node), NodeDataChanged if its mzxid passed the read's zxid,
//     NodeChildrenChanged if its pzxid did; otherwise the watch stays armed. A change undone while
//     away (created then deleted) is then not seen, as in ZooKeeper. Synthesized events carry the
//     node's czxid/mzxid/pzxid, or the zxid of the state read for NodeDeleted. Persistent watches
//     cannot be told what they missed: each of their watchers gets one kEventsMissed event (they
//     stay armed) and should re-read what it covers.
//
// On LOST, watchers are dropped without an event (the state listener is the signal) and every
// pending call fails with SESSION_EXPIRED. Close() (and the destructor) closes the session
// cleanly when connected, so its ephemerals are deleted before it returns; when disconnected it
// gives up at once and the session expires on the server after its timeout. When Close() returns
// (unless called from a callback), every callback has run and the callback thread is gone: an
// async call made after that fails with SESSION_EXPIRED, its callback run inline by the caller
// (the one exception to "never inline"). Close() from a callback is allowed: the callbacks
// still queued then run after that callback returns.
#ifndef CONFAB_CLIENT_H_
#define CONFAB_CLIENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
// ErrorCodeOf / FailedOpOf and the ErrorCode enum; Stat and SessionId (plain types shared with the
// server, so one definition exists in a program linking both).
#include "server/common/errors.h"
#include "server/common/types.h"

namespace confab {

enum class CreateMode { kPersistent, kEphemeral, kPersistentSequential, kEphemeralSequential };

enum class ConnectionState { kConnected, kSuspended, kReconnected, kLost };
absl::string_view ConnectionStateName(ConnectionState state);

enum class EventType {
  kNodeCreated,
  kNodeDeleted,
  kNodeDataChanged,
  kNodeChildrenChanged,
  // A persistent watch may have missed events while the client was disconnected (the server's
  // change history no longer reached back): re-read what it covers. The watch stays armed.
  kEventsMissed,
};
absl::string_view EventTypeName(EventType type);

struct WatchEvent {
  EventType type = EventType::kNodeCreated;
  std::string path;
  int64_t zxid = 0;  // the transaction that caused the event
  bool operator==(const WatchEvent&) const = default;
};

// How a persistent watch (AddWatch) follows its path.
enum class AddWatchMode {
  kPersistent,           // data and child events of the node, until removed
  kPersistentRecursive,  // created/deleted/data-changed events of the node and its whole subtree
};

// Names a persistent watch for RemoveWatch.
enum class WatchId : uint64_t {};

using Watcher = absl::AnyInvocable<void(const WatchEvent& event)>;
using StateListener = absl::AnyInvocable<void(ConnectionState state)>;
template <typename T>
using Callback = absl::AnyInvocable<void(absl::StatusOr<T> result)>;
using StatusCallback = absl::AnyInvocable<void(absl::Status status)>;

struct Created {
  std::string path;  // with the sequence suffix for sequential modes
  Stat stat;
};

struct NodeData {
  std::string data;
  Stat stat;
};

struct Children {
  std::vector<std::string> names;  // sorted
  Stat stat;
};

// One operation of a Multi. Build with the factories.
struct Op {
  enum class Type { kCheck, kCreate, kSet, kDelete };

  static Op Check(std::string path, int32_t version);
  static Op Create(std::string path, std::string data = "",
                   CreateMode mode = CreateMode::kPersistent);
  static Op Set(std::string path, std::string data, std::optional<int32_t> version = std::nullopt);
  static Op Delete(std::string path, std::optional<int32_t> version = std::nullopt);

  Type type = Type::kCheck;
  std::string path;
  std::string data;                           // kCreate, kSet
  CreateMode mode = CreateMode::kPersistent;  // kCreate
  std::optional<int32_t> version;  // kCheck (always set), kSet, kDelete (absent: any version)
};

// The result of one op of a Multi that applied (a Multi applies all its ops or none).
struct OpResult {
  Op::Type type = Op::Type::kCheck;
  std::string path;  // kCreate: the created path (with a sequence suffix); else the op's path
  Stat stat;         // kCreate, kSet
};

struct ClientOptions {
  // "host:port,host:port": the ensemble. The session opens on a random one; on failure the
  // client moves to the next.
  std::string endpoints;
  // Requested; the server clamps it to its bounds (session_timeout() tells what was granted).
  absl::Duration session_timeout = absl::Seconds(10);
  // Bounds Connect() as a whole, and each attempt to open or resume the session on one endpoint.
  absl::Duration connect_timeout = absl::Seconds(5);
  // A call not answered within this fails with UNAVAILABLE (counted from the call, including any
  // time spent waiting for a reconnect).
  absl::Duration request_timeout = absl::Seconds(30);
  // Delay between reconnect attempts: doubling from the first to the max, with jitter.
  absl::Duration reconnect_backoff_initial = absl::Milliseconds(20);
  absl::Duration reconnect_backoff_max = absl::Seconds(1);
  // Told of every state change, on the callback thread, starting with CONNECTED.
  StateListener state_listener;
};

class ClientSession;

class Client {
 public:
  // Opens a new session: blocks until it is open (CONNECTED) or connect_timeout has passed.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);

  ~Client();  // Close()

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Closes the session (see the header comment) and stops the client; idempotent. Returns an
  // error when the session could not be closed on the server (it then expires on its own).
  absl::Status Close();

  SessionId session_id() const;
  absl::Duration session_timeout() const;  // negotiated
  ConnectionState state() const;           // the last state reported

  // ---- Operations: blocking, and async (the callback runs once, on the callback thread) ----

  absl::StatusOr<Created> Create(absl::string_view path, absl::string_view data = "",
                                 CreateMode mode = CreateMode::kPersistent);
  void CreateAsync(absl::string_view path, absl::string_view data, CreateMode mode,
                   Callback<Created> done);

  // With a watcher: a one-shot data watch, set if the node exists (NodeDataChanged or
  // NodeDeleted fires once).
  absl::StatusOr<NodeData> Get(absl::string_view path, Watcher watcher = nullptr);
  void GetAsync(absl::string_view path, Callback<NodeData> done, Watcher watcher = nullptr);

  // `version`: the expected version; absent: any.
  absl::StatusOr<Stat> Set(absl::string_view path, absl::string_view data,
                           std::optional<int32_t> version = std::nullopt);
  void SetAsync(absl::string_view path, absl::string_view data, std::optional<int32_t> version,
                Callback<Stat> done);

  absl::Status Delete(absl::string_view path, std::optional<int32_t> version = std::nullopt);
  void DeleteAsync(absl::string_view path, std::optional<int32_t> version, StatusCallback done);

  // nullopt when the node does not exist. With a watcher: a one-shot data watch set either way
  // (NodeCreated, NodeDataChanged or NodeDeleted fires once).
  absl::StatusOr<std::optional<Stat>> Exists(absl::string_view path, Watcher watcher = nullptr);
  void ExistsAsync(absl::string_view path, Callback<std::optional<Stat>> done,
                   Watcher watcher = nullptr);

  // With a watcher: a one-shot child watch (NodeChildrenChanged or NodeDeleted fires once).
  absl::StatusOr<Children> GetChildren(absl::string_view path, Watcher watcher = nullptr);
  void GetChildrenAsync(absl::string_view path, Callback<Children> done, Watcher watcher = nullptr);

  // All ops apply at one zxid, or none does: then the status is the failing op's error (its code,
  // FailedOpOf(status) its index).
  absl::StatusOr<std::vector<OpResult>> Multi(std::vector<Op> ops);
  void MultiAsync(std::vector<Op> ops, Callback<std::vector<OpResult>> done);

  // Returns once every write acknowledged (to anyone) before it is applied on the server this
  // session talks to. `path` is validated but does not narrow anything today.
  absl::Status Sync(absl::string_view path = "/");
  void SyncAsync(absl::string_view path, StatusCallback done);

  // A persistent watch: `watcher` runs for every matching event until RemoveWatch (or LOST).
  absl::StatusOr<WatchId> AddWatch(absl::string_view path, AddWatchMode mode, Watcher watcher);
  void AddWatchAsync(absl::string_view path, AddWatchMode mode, Watcher watcher,
                     Callback<WatchId> done);
  // After it returns, the watcher is not invoked again (except an invocation already running).
  absl::Status RemoveWatch(WatchId id);
  void RemoveWatchAsync(WatchId id, StatusCallback done);

 private:
  explicit Client(std::shared_ptr<ClientSession> session);

  // Shared with the callback thread, which may outlive this object when it is destroyed from a
  // callback.
  std::shared_ptr<ClientSession> session_;
};

}  // namespace confab

#endif  // CONFAB_CLIENT_H_
