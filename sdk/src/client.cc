// confab::Client: each operation is a request builder plus a response parser; the engine
// (ClientSession) carries the request. The async form runs the parser and the user's callback on
// the callback thread; the blocking form waits for the response and parses it in the caller.
#include "confab/client.h"

#include <utility>

#include "absl/synchronization/notification.h"
#include "sdk/src/client_session.h"
#include "server/common/stat_proto.h"

namespace confab {
namespace {

using Completion = ClientSession::Completion;
using Delivery = ClientSession::Delivery;
using Response = absl::StatusOr<v1::SessionResponse>;

v1::CreateMode ToProto(CreateMode mode) {
  switch (mode) {
    case CreateMode::kPersistent:
      return v1::PERSISTENT;
    case CreateMode::kEphemeral:
      return v1::EPHEMERAL;
    case CreateMode::kPersistentSequential:
      return v1::PERSISTENT_SEQUENTIAL;
    case CreateMode::kEphemeralSequential:
      return v1::EPHEMERAL_SEQUENTIAL;
  }
  return v1::PERSISTENT;
}

// ---- Requests --------------------------------------------------------------------------------

void FillCreate(absl::string_view path, absl::string_view data, CreateMode mode,
                v1::CreateRequest* out) {
  out->set_path(std::string(path));
  out->set_data(std::string(data));
  out->set_mode(ToProto(mode));
}

void FillSet(absl::string_view path, absl::string_view data, std::optional<int32_t> version,
             v1::SetRequest* out) {
  out->set_path(std::string(path));
  out->set_data(std::string(data));
  if (version.has_value()) out->set_version(*version);
}

void FillDelete(absl::string_view path, std::optional<int32_t> version, v1::DeleteRequest* out) {
  out->set_path(std::string(path));
  if (version.has_value()) out->set_version(*version);
}

v1::SessionRequest CreateRequest(absl::string_view path, absl::string_view data, CreateMode mode) {
  v1::SessionRequest request;
  FillCreate(path, data, mode, request.mutable_create());
  return request;
}

v1::SessionRequest GetRequest(absl::string_view path, bool watch) {
  v1::SessionRequest request;
  request.mutable_get()->set_path(std::string(path));
  request.mutable_get()->set_watch(watch);
  return request;
}

v1::SessionRequest SetRequest(absl::string_view path, absl::string_view data,
                              std::optional<int32_t> version) {
  v1::SessionRequest request;
  FillSet(path, data, version, request.mutable_set());
  return request;
}

v1::SessionRequest DeleteRequest(absl::string_view path, std::optional<int32_t> version) {
  v1::SessionRequest request;
  FillDelete(path, version, request.mutable_delete_());
  return request;
}

v1::SessionRequest ExistsRequest(absl::string_view path, bool watch) {
  v1::SessionRequest request;
  request.mutable_exists()->set_path(std::string(path));
  request.mutable_exists()->set_watch(watch);
  return request;
}

v1::SessionRequest GetChildrenRequest(absl::string_view path, bool watch) {
  v1::SessionRequest request;
  request.mutable_get_children()->set_path(std::string(path));
  request.mutable_get_children()->set_watch(watch);
  return request;
}

v1::SessionRequest MultiRequest(std::vector<Op> ops) {
  v1::SessionRequest request;
  for (Op& op : ops) {
    v1::Op* out = request.mutable_multi()->add_ops();
    switch (op.type) {
      case Op::Type::kCheck:
        out->mutable_check()->set_path(std::move(op.path));
        out->mutable_check()->set_version(op.version.value_or(-1));
        break;
      case Op::Type::kCreate:
        FillCreate(op.path, op.data, op.mode, out->mutable_create());
        break;
      case Op::Type::kSet:
        FillSet(op.path, op.data, op.version, out->mutable_set());
        break;
      case Op::Type::kDelete:
        FillDelete(op.path, op.version, out->mutable_delete_());
        break;
    }
  }
  return request;
}

v1::SessionRequest SyncRequest(absl::string_view path) {
  v1::SessionRequest request;
  request.mutable_sync()->set_path(std::string(path));
  return request;
}

v1::SessionRequest AddWatchRequest(absl::string_view path, AddWatchMode mode) {
  v1::SessionRequest request;
  request.mutable_add_watch()->set_path(std::string(path));
  request.mutable_add_watch()->set_kind(mode == AddWatchMode::kPersistentRecursive
                                            ? v1::PERSISTENT_RECURSIVE_WATCH
                                            : v1::PERSISTENT_WATCH);
  return request;
}

// ---- Responses -------------------------------------------------------------------------------

absl::StatusOr<Created> ParseCreated(Response r) {
  if (!r.ok()) return r.status();
  v1::CreateResponse* created = r->mutable_create();
  return Created{std::move(*created->mutable_path()), FromProto(created->stat())};
}

absl::StatusOr<NodeData> ParseNodeData(Response r) {
  if (!r.ok()) return r.status();
  v1::GetResponse* get = r->mutable_get();
  return NodeData{std::move(*get->mutable_data()), FromProto(get->stat())};
}

absl::StatusOr<Stat> ParseSet(Response r) {
  if (!r.ok()) return r.status();
  return FromProto(r->set().stat());
}

absl::StatusOr<std::optional<Stat>> ParseExists(Response r) {
  if (!r.ok()) return r.status();
  if (!r->exists().exists()) return std::optional<Stat>();
  return std::optional<Stat>(FromProto(r->exists().stat()));
}

absl::StatusOr<Children> ParseChildren(Response r) {
  if (!r.ok()) return r.status();
  v1::GetChildrenResponse* children = r->mutable_get_children();
  Children out;
  out.names.reserve(children->children_size());
  for (std::string& name : *children->mutable_children()) out.names.push_back(std::move(name));
  out.stat = FromProto(children->stat());
  return out;
}

absl::StatusOr<std::vector<OpResult>> ParseMulti(Response r) {
  if (!r.ok()) return r.status();
  std::vector<OpResult> out;
  for (v1::OpResult& result : *r->mutable_multi()->mutable_results()) {
    OpResult& op = out.emplace_back();
    switch (result.result_case()) {
      case v1::OpResult::kCreate:
        op.type = Op::Type::kCreate;
        op.path = std::move(*result.mutable_create()->mutable_path());
        op.stat = FromProto(result.create().stat());
        break;
      case v1::OpResult::kSet:
        op.type = Op::Type::kSet;
        op.stat = FromProto(result.set().stat());
        break;
      case v1::OpResult::kDelete:
        op.type = Op::Type::kDelete;
        break;
      case v1::OpResult::kCheck:
      case v1::OpResult::RESULT_NOT_SET:
        op.type = Op::Type::kCheck;
        break;
    }
  }
  return out;
}

absl::Status ParseStatus(Response r) { return r.status(); }

// Fills in the paths the server does not echo (every op but Create).
void FillOpPaths(const std::vector<Op>& ops, std::vector<OpResult>* results) {
  for (size_t i = 0; i < ops.size() && i < results->size(); ++i) {
    if ((*results)[i].type != Op::Type::kCreate) (*results)[i].path = ops[i].path;
  }
}

// A blocking caller's rendezvous with the thread that completes its request.
template <typename T>
class Waiter {
 public:
  absl::AnyInvocable<void(T) &&> Completer() {
    return [this](T result) {
      result_ = std::move(result);
      done_.Notify();
    };
  }
  T Wait() {
    done_.WaitForNotification();
    return std::move(result_);
  }

 private:
  absl::Notification done_;
  T result_;
};

// Runs `start(completion, delivery)` and waits for its completion (which the engine guarantees
// within request_timeout, or at a break, loss or close).
template <typename T = Response, typename Start>
T Blocking(Start start) {
  Waiter<T> waiter;
  start(waiter.Completer(), Delivery::kDirect);
  return waiter.Wait();
}

// The async completion: parse, then the user's callback, both on the callback thread.
template <typename T, typename Parse>
Completion Then(Callback<T> done, Parse parse) {
  return [done = std::move(done), parse](Response response) mutable {
    done(parse(std::move(response)));
  };
}

Completion ThenStatus(StatusCallback done) {
  return [done = std::move(done)](Response response) mutable { done(response.status()); };
}

std::optional<ClientSession::ReadWatch> ReadWatchOf(v1::WatchKind kind, Watcher watcher) {
  if (watcher == nullptr) return std::nullopt;
  return ClientSession::ReadWatch{kind, std::move(watcher)};
}

}  // namespace

// ---- Plain types -------------------------------------------------------------------------------

absl::string_view ConnectionStateName(ConnectionState state) {
  switch (state) {
    case ConnectionState::kConnected:
      return "CONNECTED";
    case ConnectionState::kSuspended:
      return "SUSPENDED";
    case ConnectionState::kReconnected:
      return "RECONNECTED";
    case ConnectionState::kLost:
      return "LOST";
  }
  return "UNKNOWN";
}

absl::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kNodeCreated:
      return "NodeCreated";
    case EventType::kNodeDeleted:
      return "NodeDeleted";
    case EventType::kNodeDataChanged:
      return "NodeDataChanged";
    case EventType::kNodeChildrenChanged:
      return "NodeChildrenChanged";
    case EventType::kEventsMissed:
      return "EventsMissed";
  }
  return "Unknown";
}

Op Op::Check(std::string path, int32_t version) {
  Op op;
  op.type = Type::kCheck;
  op.path = std::move(path);
  op.version = version;
  return op;
}

Op Op::Create(std::string path, std::string data, CreateMode mode) {
  Op op;
  op.type = Type::kCreate;
  op.path = std::move(path);
  op.data = std::move(data);
  op.mode = mode;
  return op;
}

Op Op::Set(std::string path, std::string data, std::optional<int32_t> version) {
  Op op;
  op.type = Type::kSet;
  op.path = std::move(path);
  op.data = std::move(data);
  op.version = version;
  return op;
}

Op Op::Delete(std::string path, std::optional<int32_t> version) {
  Op op;
  op.type = Type::kDelete;
  op.path = std::move(path);
  op.version = version;
  return op;
}

// ---- Client ------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  absl::StatusOr<std::shared_ptr<ClientSession>> session = ClientSession::Open(std::move(options));
  if (!session.ok()) return session.status();
  return std::unique_ptr<Client>(new Client(std::move(*session)));
}

Client::Client(std::shared_ptr<ClientSession> session) : session_(std::move(session)) {}

Client::~Client() { session_->Close().IgnoreError(); }

absl::Status Client::Close() { return session_->Close(); }

SessionId Client::session_id() const { return session_->session_id(); }
absl::Duration Client::session_timeout() const { return session_->session_timeout(); }
ConnectionState Client::state() const { return session_->state(); }

absl::StatusOr<Created> Client::Create(absl::string_view path, absl::string_view data,
                                       CreateMode mode) {
  return ParseCreated(Blocking([&](Completion done, Delivery delivery) {
    session_->Submit(CreateRequest(path, data, mode), std::nullopt, std::move(done), delivery);
  }));
}

void Client::CreateAsync(absl::string_view path, absl::string_view data, CreateMode mode,
                         Callback<Created> done) {
  session_->Submit(CreateRequest(path, data, mode), std::nullopt,
                   Then(std::move(done), &ParseCreated), Delivery::kCallbackThread);
}

absl::StatusOr<NodeData> Client::Get(absl::string_view path, Watcher watcher) {
  const bool watch = watcher != nullptr;
  return ParseNodeData(Blocking([&](Completion done, Delivery delivery) {
    session_->Submit(GetRequest(path, watch), ReadWatchOf(v1::DATA_WATCH, std::move(watcher)),
                     std::move(done), delivery);
  }));
}

void Client::GetAsync(absl::string_view path, Callback<NodeData> done, Watcher watcher) {
  const bool watch = watcher != nullptr;
  session_->Submit(GetRequest(path, watch), ReadWatchOf(v1::DATA_WATCH, std::move(watcher)),
                   Then(std::move(done), &ParseNodeData), Delivery::kCallbackThread);
}

absl::StatusOr<Stat> Client::Set(absl::string_view path, absl::string_view data,
                                 std::optional<int32_t> version) {
  return ParseSet(Blocking([&](Completion done, Delivery delivery) {
    session_->Submit(SetRequest(path, data, version), std::nullopt, std::move(done), delivery);
  }));
}

void Client::SetAsync(absl::string_view path, absl::string_view data,
                      std::optional<int32_t> version, Callback<Stat> done) {
  session_->Submit(SetRequest(path, data, version), std::nullopt, Then(std::move(done), &ParseSet),
                   Delivery::kCallbackThread);
}

absl::Status Client::Delete(absl::string_view path, std::optional<int32_t> version) {
  return ParseStatus(Blocking([&](Completion done, Delivery delivery) {
    session_->Submit(DeleteRequest(path, version), std::nullopt, std::move(done), delivery);
  }));
}

void Client::DeleteAsync(absl::string_view path, std::optional<int32_t> version,
                         StatusCallback done) {
  session_->Submit(DeleteRequest(path, version), std::nullopt, ThenStatus(std::move(done)),
                   Delivery::kCallbackThread);
}

absl::StatusOr<std::optional<Stat>> Client::Exists(absl::string_view path, Watcher watcher) {
  const bool watch = watcher != nullptr;
  return ParseExists(Blocking([&](Completion done, Delivery delivery) {
    session_->Submit(ExistsRequest(path, watch), ReadWatchOf(v1::DATA_WATCH, std::move(watcher)),
                     std::move(done), delivery);
  }));
}

void Client::ExistsAsync(absl::string_view path, Callback<std::optional<Stat>> done,
                         Watcher watcher) {
  const bool watch = watcher != nullptr;
  session_->Submit(ExistsRequest(path, watch), ReadWatchOf(v1::DATA_WATCH, std::move(watcher)),
                   Then(std::move(done), &ParseExists), Delivery::kCallbackThread);
}

absl::StatusOr<Children> Client::GetChildren(absl::string_view path, Watcher watcher) {
  const bool watch = watcher != nullptr;
  return ParseChildren(Blocking([&](Completion done, Delivery delivery) {
    session_->Submit(GetChildrenRequest(path, watch),
                     ReadWatchOf(v1::CHILD_WATCH, std::move(watcher)), std::move(done), delivery);
  }));
}

void Client::GetChildrenAsync(absl::string_view path, Callback<Children> done, Watcher watcher) {
  const bool watch = watcher != nullptr;
  session_->Submit(GetChildrenRequest(path, watch),
                   ReadWatchOf(v1::CHILD_WATCH, std::move(watcher)),
                   Then(std::move(done), &ParseChildren), Delivery::kCallbackThread);
}

absl::StatusOr<std::vector<OpResult>> Client::Multi(std::vector<Op> ops) {
  v1::SessionRequest request = MultiRequest(ops);
  absl::StatusOr<std::vector<OpResult>> results =
      ParseMulti(Blocking([&](Completion done, Delivery delivery) {
        session_->Submit(std::move(request), std::nullopt, std::move(done), delivery);
      }));
  if (results.ok()) FillOpPaths(ops, &*results);
  return results;
}

void Client::MultiAsync(std::vector<Op> ops, Callback<std::vector<OpResult>> done) {
  v1::SessionRequest request = MultiRequest(ops);
  auto parse = [ops = std::move(ops)](Response response) {
    absl::StatusOr<std::vector<OpResult>> results = ParseMulti(std::move(response));
    if (results.ok()) FillOpPaths(ops, &*results);
    return results;
  };
  session_->Submit(std::move(request), std::nullopt, Then(std::move(done), std::move(parse)),
                   Delivery::kCallbackThread);
}

absl::Status Client::Sync(absl::string_view path) {
  return ParseStatus(Blocking([&](Completion done, Delivery delivery) {
    session_->Submit(SyncRequest(path), std::nullopt, std::move(done), delivery);
  }));
}

void Client::SyncAsync(absl::string_view path, StatusCallback done) {
  session_->Submit(SyncRequest(path), std::nullopt, ThenStatus(std::move(done)),
                   Delivery::kCallbackThread);
}

absl::StatusOr<WatchId> Client::AddWatch(absl::string_view path, AddWatchMode mode,
                                         Watcher watcher) {
  absl::StatusOr<uint64_t> id = Blocking<absl::StatusOr<uint64_t>>(
      [&](ClientSession::WatchCompletion done, Delivery delivery) {
        session_->AddWatch(AddWatchRequest(path, mode), std::move(watcher), std::move(done),
                           delivery);
      });
  if (!id.ok()) return id.status();
  return WatchId{*id};
}

void Client::AddWatchAsync(absl::string_view path, AddWatchMode mode, Watcher watcher,
                           Callback<WatchId> done) {
  ClientSession::WatchCompletion completion =
      [done = std::move(done)](absl::StatusOr<uint64_t> id) mutable {
        if (!id.ok()) {
          done(id.status());
        } else {
          done(WatchId{*id});
        }
      };
  session_->AddWatch(AddWatchRequest(path, mode), std::move(watcher), std::move(completion),
                     Delivery::kCallbackThread);
}

absl::Status Client::RemoveWatch(WatchId id) {
  return ParseStatus(Blocking([&](Completion done, Delivery delivery) {
    session_->RemoveWatch(static_cast<uint64_t>(id), std::move(done), delivery);
  }));
}

void Client::RemoveWatchAsync(WatchId id, StatusCallback done) {
  session_->RemoveWatch(static_cast<uint64_t>(id), ThenStatus(std::move(done)),
                        Delivery::kCallbackThread);
}

}  // namespace confab
