#include "server/tree/data_tree.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/check.h"
#include "server/common/errors.h"
#include "server/common/path.h"
#include "server/common/stat_proto.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

namespace confab::tree {
namespace {

// A broken invariant is a bug: crash with the values that show it.

// What a node costs besides its path and data: list node, index slot, stat (an estimate).
constexpr size_t kNodeOverheadBytes = 160;
constexpr char kSequenceFormat[] = "%010d";

// Counters wrap like ZooKeeper's ints, without signed overflow.
int32_t Incremented(int32_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v) + 1u); }
int32_t Decremented(int32_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v) - 1u); }

size_t NodeBytes(absl::string_view path, absl::string_view data) {
  return path.size() + data.size() + kNodeOverheadBytes;
}

// Hashes fixed-width fields little-endian so that every member computes the same digest.
class Hasher {
 public:
  explicit Hasher(char tag) {
    XXH3_INITSTATE(&state_);
    XXH3_64bits_reset(&state_);
    XXH3_64bits_update(&state_, &tag, 1);
  }
  void Int(int64_t v) {
    unsigned char bytes[8];
    uint64_t u = static_cast<uint64_t>(v);
    for (unsigned char& b : bytes) {
      b = static_cast<unsigned char>(u & 0xff);
      u >>= 8;
    }
    XXH3_64bits_update(&state_, bytes, sizeof(bytes));
  }
  void Bytes(absl::string_view s) {
    Int(static_cast<int64_t>(s.size()));
    XXH3_64bits_update(&state_, s.data(), s.size());
  }
  uint64_t Digest() const { return XXH3_64bits_digest(&state_); }

 private:
  XXH3_state_t state_;
};

uint64_t NodeHash(absl::string_view path, const Stat& stat, absl::string_view data) {
  Hasher h('N');
  h.Bytes(path);
  h.Bytes(data);
  for (int64_t v : {stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime,
                    int64_t{stat.version}, int64_t{stat.cversion}, stat.ephemeral_owner,
                    int64_t{stat.data_length}, int64_t{stat.num_children}}) {
    h.Int(v);
  }
  return h.Digest();
}

uint64_t SessionHash(SessionId id, int32_t timeout_ms) {
  Hasher h('S');
  h.Int(id.value());
  h.Int(timeout_ms);
  return h.Digest();
}

absl::Status NoNode(absl::string_view path) {
  return MakeError(v1::NO_NODE, absl::StrCat("node ", path, " does not exist"));
}

absl::Status BadVersion(absl::string_view path, int32_t expected, int32_t actual) {
  return MakeError(v1::BAD_VERSION, absl::StrCat("version mismatch on ", path, ": expected ",
                                                 expected, ", node has version ", actual));
}

bool IsEphemeral(v1::CreateMode mode) {
  return mode == v1::EPHEMERAL || mode == v1::EPHEMERAL_SEQUENTIAL;
}
bool IsSequential(v1::CreateMode mode) {
  return mode == v1::PERSISTENT_SEQUENTIAL || mode == v1::EPHEMERAL_SEQUENTIAL;
}

absl::string_view OpPath(const v1::Op& op) {
  switch (op.op_case()) {
    case v1::Op::kCheck:
      return op.check().path();
    case v1::Op::kCreate:
      return op.create().path();
    case v1::Op::kSet:
      return op.set().path();
    case v1::Op::kDelete:
      return op.delete_().path();
    case v1::Op::OP_NOT_SET:
      break;
  }
  return "";
}

absl::string_view TxnPath(const internal::Txn& txn) {
  switch (txn.op_case()) {
    case internal::Txn::kCreate:
      return txn.create().path();
    case internal::Txn::kSet:
      return txn.set().path();
    case internal::Txn::kDelete:
      return txn.delete_().path();
    default:
      return "";
  }
}

void SetError(const absl::Status& status, absl::string_view path, int32_t failed_op,
              v1::Error* error) {
  confab::ToProto(status, error);
  error->set_path(std::string(path));
  error->set_failed_op(failed_op);
}

}  // namespace

struct DataTree::Undo {
  std::string path;
  bool existed = false;
  Stat stat;
  std::optional<std::string> data;  // nullopt: the change kept the data, restore only the stat
};

NodeEntry::NodeEntry(absl::string_view path, const Stat& node_stat, absl::string_view data,
                     uint64_t made_in)
    : stat(node_stat),
      generation(made_in),
      bytes_(new char[path.size() + data.size()]),
      path_size_(static_cast<uint32_t>(path.size())),
      data_size_(static_cast<uint32_t>(data.size())) {
  std::memcpy(bytes_.get(), path.data(), path.size());
  if (!data.empty()) std::memcpy(bytes_.get() + path.size(), data.data(), data.size());
}

void NodeEntry::SetData(absl::string_view data) {
  std::unique_ptr<char[]> bytes(new char[path_size_ + data.size()]);
  std::memcpy(bytes.get(), bytes_.get(), path_size_);
  if (!data.empty()) std::memcpy(bytes.get() + path_size_, data.data(), data.size());
  bytes_ = std::move(bytes);
  data_size_ = static_cast<uint32_t>(data.size());
}

DataTree::DataTree() { PutNode("/", Stat{}, absl::string_view()); }

// ---- Apply ---------------------------------------------------------------------------------

void DataTree::Apply(Zxid zxid, const internal::Txn& txn, internal::TxnResult* result,
                     std::vector<WatchTrigger>* triggers) {
  CONFAB_CHECK(zxid > last_applied_, "apply of zxid ", zxid.ToString(),
               " at or below the last applied zxid ", last_applied_.ToString());
  CONFAB_CHECK(result != nullptr && triggers != nullptr);
  result->Clear();
  absl::Status status;
  switch (txn.op_case()) {
    case internal::Txn::kCreate:
      status = ApplyCreate(zxid, txn, txn.create(), result->mutable_create(), triggers, nullptr);
      break;
    case internal::Txn::kSet:
      status = ApplySet(zxid, txn, txn.set(), result->mutable_set(), triggers, nullptr);
      break;
    case internal::Txn::kDelete:
      status = ApplyDelete(zxid, txn.delete_(), result->mutable_delete_(), triggers, nullptr);
      break;
    case internal::Txn::kMulti:
      ApplyMulti(zxid, txn, txn.multi(), result, triggers);
      break;
    case internal::Txn::kCreateSession:
      status = ApplyCreateSession(txn.create_session());
      break;
    case internal::Txn::kCloseSession:
      status = ApplyCloseSession(zxid, txn.close_session(), triggers);
      break;
    case internal::Txn::OP_NOT_SET:
      status = MakeError(v1::INVALID_ARGUMENT,
                         absl::StrCat("transaction at ", zxid.ToString(), " has no operation"));
      break;
  }
  if (!status.ok()) {
    result->clear_result();
    SetError(status, TxnPath(txn), -1, result->mutable_error());
  }
  last_applied_ = zxid;
}

absl::Status DataTree::ApplyCreate(Zxid zxid, const internal::Txn& txn,
                                   const v1::CreateRequest& request, v1::CreateResponse* response,
                                   std::vector<WatchTrigger>* triggers, UndoLog* undo) {
  const v1::CreateMode mode = request.mode();
  if (!v1::CreateMode_IsValid(mode)) {
    return MakeError(
        v1::INVALID_ARGUMENT,
        absl::StrCat("unknown create mode ", static_cast<int>(mode), " for ", request.path()));
  }
  const bool sequential = IsSequential(mode);
  // A sequential path may end in '/' (the suffix is the whole name), as in ZooKeeper; its
  // validity is that of the path with a suffix of the same length.
  absl::Status valid =
      ValidatePath(sequential ? absl::StrCat(request.path(), absl::StrFormat(kSequenceFormat, 0))
                              : request.path());
  if (!valid.ok()) return valid;
  if (!sequential && request.path() == "/") {
    return MakeError(v1::NODE_EXISTS, "node / already exists");
  }
  // For "/a/" (sequential) the parent is "/a", as for "/a/x".
  const std::string parent_path(ParentPath(absl::StrCat(request.path(), "x")));
  const NodeEntry* parent = Find(parent_path);
  if (parent == nullptr) {
    return MakeError(v1::NO_NODE, absl::StrCat("parent node ", parent_path, " of ", request.path(),
                                               " does not exist"));
  }
  if (parent->stat.ephemeral_owner != 0) {
    return MakeError(
        v1::NO_CHILDREN_FOR_EPHEMERALS,
        absl::StrCat("cannot create ", request.path(), ": parent ", parent_path, " is ephemeral"));
  }
  const SessionId owner(IsEphemeral(mode) ? txn.session_id() : 0);
  if (IsEphemeral(mode) && !HasSession(owner)) {
    return MakeError(v1::SESSION_EXPIRED,
                     absl::StrCat("cannot create ephemeral node ", request.path(), ": session ",
                                  owner.ToString(), " is not open"));
  }
  Stat parent_stat = parent->stat;
  const std::string path =
      sequential
          ? absl::StrCat(request.path(), absl::StrFormat(kSequenceFormat, parent_stat.cversion))
          : request.path();
  if (Find(path) != nullptr) {
    return MakeError(v1::NODE_EXISTS, absl::StrCat("node ", path, " already exists"));
  }

  Stat stat;
  stat.czxid = stat.mzxid = stat.pzxid = zxid.ToInt();
  stat.ctime = stat.mtime = txn.time_ms();
  stat.ephemeral_owner = owner.value();
  stat.data_length = static_cast<int32_t>(request.data().size());
  Write(path, stat, request.data(), undo);

  parent_stat.cversion = Incremented(parent_stat.cversion);
  parent_stat.pzxid = zxid.ToInt();
  parent_stat.num_children = Incremented(parent_stat.num_children);
  Write(parent_path, parent_stat, std::nullopt, undo);

  triggers->push_back({v1::NODE_CREATED, path});
  triggers->push_back({v1::NODE_CHILDREN_CHANGED, parent_path});
  response->set_path(path);
  ToProto(stat, response->mutable_stat());
  response->set_zxid(zxid.ToInt());
  return absl::OkStatus();
}

absl::Status DataTree::ApplySet(Zxid zxid, const internal::Txn& txn, const v1::SetRequest& request,
                                v1::SetResponse* response, std::vector<WatchTrigger>* triggers,
                                UndoLog* undo) {
  const absl::string_view path = request.path();
  absl::Status valid = ValidatePath(path);
  if (!valid.ok()) return valid;
  const NodeEntry* node = Find(path);
  if (node == nullptr) return NoNode(path);
  if (request.has_version() && request.version() != node->stat.version) {
    return BadVersion(path, request.version(), node->stat.version);
  }
  Stat stat = node->stat;
  stat.version = Incremented(stat.version);
  stat.mzxid = zxid.ToInt();
  stat.mtime = txn.time_ms();
  stat.data_length = static_cast<int32_t>(request.data().size());
  Write(path, stat, request.data(), undo);

  triggers->push_back({v1::NODE_DATA_CHANGED, std::string(path)});
  ToProto(stat, response->mutable_stat());
  response->set_zxid(zxid.ToInt());
  return absl::OkStatus();
}

absl::Status DataTree::ApplyDelete(Zxid zxid, const v1::DeleteRequest& request,
                                   v1::DeleteResponse* response,
                                   std::vector<WatchTrigger>* triggers, UndoLog* undo) {
  const absl::string_view path = request.path();
  absl::Status valid = ValidatePath(path);
  if (!valid.ok()) return valid;
  if (path == "/") return MakeError(v1::INVALID_ARGUMENT, "cannot delete the root node /");
  const NodeEntry* node = Find(path);
  if (node == nullptr) return NoNode(path);
  if (request.has_version() && request.version() != node->stat.version) {
    return BadVersion(path, request.version(), node->stat.version);
  }
  if (node->stat.num_children != 0) {
    return MakeError(v1::NOT_EMPTY, absl::StrCat("cannot delete ", path, ": it has ",
                                                 node->stat.num_children, " children"));
  }
  DeleteNode(zxid, path, triggers, undo);
  response->set_zxid(zxid.ToInt());
  return absl::OkStatus();
}

void DataTree::DeleteNode(Zxid zxid, absl::string_view path, std::vector<WatchTrigger>* triggers,
                          UndoLog* undo) {
  const std::string parent_path(ParentPath(path));
  const NodeEntry* parent = Find(parent_path);
  CONFAB_CHECK(parent != nullptr, "node ", path, " has no parent in the tree");
  Stat parent_stat = parent->stat;
  parent_stat.cversion = Incremented(parent_stat.cversion);
  parent_stat.pzxid = zxid.ToInt();
  parent_stat.num_children = Decremented(parent_stat.num_children);
  triggers->push_back({v1::NODE_DELETED, std::string(path)});
  triggers->push_back({v1::NODE_CHILDREN_CHANGED, parent_path});
  Remove(path, undo);
  Write(parent_path, parent_stat, std::nullopt, undo);
}

absl::Status DataTree::ApplyCheck(const v1::CheckRequest& request) const {
  const absl::string_view path = request.path();
  absl::Status valid = ValidatePath(path);
  if (!valid.ok()) return valid;
  const NodeEntry* node = Find(path);
  if (node == nullptr) return NoNode(path);
  if (request.version() != -1 && request.version() != node->stat.version) {
    return BadVersion(path, request.version(), node->stat.version);
  }
  return absl::OkStatus();
}

absl::Status DataTree::ApplyOp(Zxid zxid, const internal::Txn& txn, const v1::Op& op,
                               v1::OpResult* result, std::vector<WatchTrigger>* triggers,
                               UndoLog* undo) {
  switch (op.op_case()) {
    case v1::Op::kCheck: {
      absl::Status status = ApplyCheck(op.check());
      if (status.ok()) result->mutable_check();
      return status;
    }
    case v1::Op::kCreate:
      return ApplyCreate(zxid, txn, op.create(), result->mutable_create(), triggers, undo);
    case v1::Op::kSet:
      return ApplySet(zxid, txn, op.set(), result->mutable_set(), triggers, undo);
    case v1::Op::kDelete:
      return ApplyDelete(zxid, op.delete_(), result->mutable_delete_(), triggers, undo);
    case v1::Op::OP_NOT_SET:
      break;
  }
  return MakeError(v1::INVALID_ARGUMENT, "op has no request");
}

void DataTree::ApplyMulti(Zxid zxid, const internal::Txn& txn, const v1::MultiRequest& request,
                          internal::TxnResult* result, std::vector<WatchTrigger>* triggers) {
  v1::MultiResponse* response = result->mutable_multi();
  response->set_zxid(zxid.ToInt());
  std::vector<WatchTrigger> multi_triggers;
  UndoLog undo;
  for (int i = 0; i < request.ops_size(); ++i) {
    v1::OpResult* op_result = response->add_results();
    absl::Status status = ApplyOp(zxid, txn, request.ops(i), op_result, &multi_triggers, &undo);
    if (status.ok()) {
      SetError(status, "", -1, op_result->mutable_error());
      continue;
    }
    Rollback(&undo);
    const absl::string_view failed_path = OpPath(request.ops(i));
    SetError(MakeError(ErrorCodeOf(status), absl::StrCat("multi op ", i, ": ", status.message())),
             failed_path, i, result->mutable_error());
    response->clear_results();
    const absl::Status rolled_back =
        MakeError(v1::RUNTIME_INCONSISTENCY, absl::StrCat("rolled back: op ", i, " failed"));
    for (int j = 0; j < request.ops_size(); ++j) {
      SetError(j == i ? status : rolled_back, OpPath(request.ops(j)), i,
               response->add_results()->mutable_error());
    }
    return;
  }
  triggers->insert(triggers->end(), std::make_move_iterator(multi_triggers.begin()),
                   std::make_move_iterator(multi_triggers.end()));
}

absl::Status DataTree::ApplyCreateSession(const internal::CreateSessionTxn& request) {
  const SessionId id(request.session_id());
  if (id.IsNone()) return MakeError(v1::INVALID_ARGUMENT, "session id 0 is reserved");
  if (HasSession(id)) {
    return MakeError(v1::INVALID_ARGUMENT,
                     absl::StrCat("session ", id.ToString(), " is already open"));
  }
  PutSession(id, request.timeout_ms());
  return absl::OkStatus();
}

absl::Status DataTree::ApplyCloseSession(Zxid zxid, const internal::CloseSessionTxn& request,
                                         std::vector<WatchTrigger>* triggers) {
  const SessionId id(request.session_id());
  if (!HasSession(id)) {
    return MakeError(v1::SESSION_EXPIRED, absl::StrCat("session ", id.ToString(), " is not open"));
  }
  for (const std::string& path : EphemeralsOf(id)) {
    const NodeEntry* node = Find(path);
    CONFAB_CHECK(node != nullptr && node->stat.num_children == 0, "ephemeral node ", path,
                 " of session ", id.ToString(), " is missing or has children");
    DeleteNode(zxid, path, triggers, nullptr);
  }
  EraseSession(id);
  return absl::OkStatus();
}

// ---- Primitives ----------------------------------------------------------------------------

const NodeEntry* DataTree::Find(absl::string_view path) const {
  auto it = index_.find(path);
  return it == index_.end() ? nullptr : &**it;
}

void DataTree::Write(absl::string_view path, const Stat& stat,
                     std::optional<absl::string_view> data, UndoLog* undo) {
  if (undo != nullptr) {
    const NodeEntry* old = Find(path);
    Undo& u = undo->emplace_back();
    u.path = std::string(path);
    if (old != nullptr) {
      u.existed = true;
      u.stat = old->stat;
      if (data.has_value()) u.data = std::string(old->data());
    }
  }
  PutNode(path, stat, data);
}

void DataTree::Remove(absl::string_view path, UndoLog* undo) {
  if (undo != nullptr) {
    const NodeEntry* old = Find(path);
    CONFAB_CHECK(old != nullptr, "removing missing node ", path);
    undo->push_back(Undo{std::string(path), true, old->stat, std::string(old->data())});
  }
  EraseNode(path);
}

void DataTree::Rollback(UndoLog* undo) {
  for (auto it = undo->rbegin(); it != undo->rend(); ++it) {
    if (it->existed) {
      PutNode(it->path, it->stat, it->data);
    } else {
      EraseNode(it->path);
    }
  }
  undo->clear();
}

bool DataTree::IsPinned(const NodeEntry& entry) const {
  return snapshot_pinned_ && entry.generation < generation_;
}

void DataTree::PutNode(absl::string_view path, const Stat& stat,
                       std::optional<absl::string_view> data) {
  auto found = index_.find(path);
  if (found == index_.end()) {
    CONFAB_CHECK(data.has_value(), "stat-only change of missing node ", path);
    NodeEntry& entry = nodes_.emplace_back(path, stat, *data, generation_);
    index_.insert(std::prev(nodes_.end()));
    if (entry.path() != "/") {
      children_[ParentPath(entry.path())].insert(std::string(BaseName(entry.path())));
    }
    if (stat.ephemeral_owner != 0) {
      ephemerals_[SessionId(stat.ephemeral_owner)].insert(std::string(entry.path()));
    }
    digest_ += NodeHash(entry.path(), entry.stat, entry.data());
    approximate_bytes_ += NodeBytes(entry.path(), entry.data());
    return;
  }

  NodeList::iterator old = *found;
  digest_ -= NodeHash(old->path(), old->stat, old->data());
  approximate_bytes_ -= NodeBytes(old->path(), old->data());
  if (old->stat.ephemeral_owner != stat.ephemeral_owner) {
    if (old->stat.ephemeral_owner != 0) {
      auto owned = ephemerals_.find(SessionId(old->stat.ephemeral_owner));
      owned->second.erase(std::string(old->path()));
      if (owned->second.empty()) ephemerals_.erase(owned);
    }
    if (stat.ephemeral_owner != 0) {
      ephemerals_[SessionId(stat.ephemeral_owner)].insert(std::string(old->path()));
    }
  }

  NodeList::iterator current = old;
  if (IsPinned(*old)) {
    // The pinned image keeps the old entry; the current state continues in a copy.
    nodes_.emplace_back(old->path(), stat, data.value_or(old->data()), generation_);
    current = std::prev(nodes_.end());
    retired_.push_back(old);
    index_.erase(found);
    index_.insert(current);
  } else if (data.has_value()) {
    old->SetData(*data);
  }
  current->stat = stat;
  digest_ += NodeHash(current->path(), current->stat, current->data());
  approximate_bytes_ += NodeBytes(current->path(), current->data());
}

void DataTree::EraseNode(absl::string_view path) {
  auto found = index_.find(path);
  CONFAB_CHECK(found != index_.end(), "erasing missing node ", path);
  NodeList::iterator entry = *found;
  CONFAB_CHECK(entry->path() != "/", "erasing the root node");
  CONFAB_CHECK(!children_.contains(entry->path()), "erasing node ", entry->path(),
               " which has children");
  digest_ -= NodeHash(entry->path(), entry->stat, entry->data());
  approximate_bytes_ -= NodeBytes(entry->path(), entry->data());
  auto siblings = children_.find(ParentPath(entry->path()));
  CONFAB_CHECK(siblings != children_.end(), "node ", entry->path(), " missing from its parent");
  siblings->second.erase(std::string(BaseName(entry->path())));
  if (siblings->second.empty()) children_.erase(siblings);
  if (entry->stat.ephemeral_owner != 0) {
    auto owned = ephemerals_.find(SessionId(entry->stat.ephemeral_owner));
    CONFAB_CHECK(owned != ephemerals_.end(), "ephemeral ", entry->path(), " missing from owner");
    owned->second.erase(std::string(entry->path()));
    if (owned->second.empty()) ephemerals_.erase(owned);
  }
  index_.erase(found);
  if (IsPinned(*entry)) {
    retired_.push_back(entry);
  } else {
    nodes_.erase(entry);
  }
}

void DataTree::PutSession(SessionId id, int32_t timeout_ms) {
  auto [it, inserted] = sessions_.try_emplace(id, timeout_ms);
  if (!inserted) {
    digest_ -= SessionHash(id, it->second);
    it->second = timeout_ms;
  }
  digest_ += SessionHash(id, timeout_ms);
}

void DataTree::EraseSession(SessionId id) {
  auto it = sessions_.find(id);
  CONFAB_CHECK(it != sessions_.end(), "erasing missing session ", id.ToString());
  CONFAB_CHECK(!ephemerals_.contains(id), "erasing session ", id.ToString(),
               " which still owns ephemerals");
  digest_ -= SessionHash(id, it->second);
  sessions_.erase(it);
}

uint64_t DataTree::ComputeDigest() const {
  uint64_t digest = 0;
  for (NodeList::iterator entry : index_) {
    digest += NodeHash(entry->path(), entry->stat, entry->data());
  }
  for (const auto& [id, timeout_ms] : sessions_) digest += SessionHash(id, timeout_ms);
  return digest;
}

// ---- Reads ---------------------------------------------------------------------------------

absl::StatusOr<NodeRead> DataTree::Get(absl::string_view path) const {
  const NodeEntry* node = Find(path);
  if (node == nullptr) return NoNode(path);
  return NodeRead{std::string(node->data()), node->stat};
}

absl::StatusOr<Stat> DataTree::GetStat(absl::string_view path) const {
  const NodeEntry* node = Find(path);
  if (node == nullptr) return NoNode(path);
  return node->stat;
}

absl::Status DataTree::GetChildren(absl::string_view path, std::vector<std::string>* children,
                                   Stat* stat) const {
  const NodeEntry* node = Find(path);
  if (node == nullptr) return NoNode(path);
  if (children != nullptr) {
    children->clear();
    auto it = children_.find(path);
    if (it != children_.end()) children->assign(it->second.begin(), it->second.end());
  }
  if (stat != nullptr) *stat = node->stat;
  return absl::OkStatus();
}

bool DataTree::HasSession(SessionId id) const { return sessions_.contains(id); }

std::optional<int32_t> DataTree::SessionTimeout(SessionId id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  return it->second;
}

std::vector<SessionInfo> DataTree::Sessions() const {
  std::vector<SessionInfo> sessions;
  sessions.reserve(sessions_.size());
  for (const auto& [id, timeout_ms] : sessions_) sessions.push_back({id, timeout_ms});
  std::sort(sessions.begin(), sessions.end(),
            [](const SessionInfo& a, const SessionInfo& b) { return a.id < b.id; });
  return sessions;
}

std::vector<std::string> DataTree::EphemeralsOf(SessionId id) const {
  auto it = ephemerals_.find(id);
  if (it == ephemerals_.end()) return {};
  return std::vector<std::string>(it->second.begin(), it->second.end());
}

// ---- Snapshots -----------------------------------------------------------------------------

SnapshotCursor DataTree::BeginSnapshot() {
  CONFAB_CHECK(!snapshot_pinned_, "a snapshot is already pinned");
  CONFAB_CHECK(retired_.empty() && nodes_.size() == index_.size(), "unpinned tree holds ",
               nodes_.size(), " entries for ", index_.size(), " nodes");
  ++generation_;
  snapshot_pinned_ = true;
  pinned_count_ = nodes_.size();
  SnapshotCursor cursor;
  cursor.zxid_ = last_applied_;
  cursor.digest_ = digest_;
  cursor.node_count_ = pinned_count_;
  cursor.generation_ = generation_;
  cursor.sessions_ = Sessions();
  cursor.next_ = nodes_.begin();
  return cursor;
}

bool DataTree::NextSnapshotChunk(SnapshotCursor* cursor, size_t max_nodes,
                                 const NodeVisitor& visit) const {
  CONFAB_CHECK(snapshot_pinned_ && cursor->generation_ == generation_,
               "snapshot cursor of generation ", cursor->generation_,
               " used while the tree is pinned=", snapshot_pinned_, " at generation ", generation_);
  CONFAB_CHECK(cursor->node_count_ == pinned_count_);
  for (size_t n = 0; n < max_nodes && cursor->visited_ < cursor->node_count_; ++n) {
    const NodeEntry& entry = *cursor->next_;
    visit(entry.path(), entry.stat, entry.data());
    // Advance only onto pinned entries: what follows the last one may be erased meanwhile.
    if (++cursor->visited_ < cursor->node_count_) ++cursor->next_;
  }
  return cursor->visited_ < cursor->node_count_;
}

void DataTree::EndSnapshot() {
  CONFAB_CHECK(snapshot_pinned_, "EndSnapshot without a pinned snapshot");
  for (NodeList::iterator entry : retired_) nodes_.erase(entry);
  retired_.clear();
  snapshot_pinned_ = false;
  pinned_count_ = 0;
  CONFAB_CHECK(nodes_.size() == index_.size(), "after a snapshot ", nodes_.size(),
               " entries remain for ", index_.size(), " nodes");
}

// ---- Recovery ------------------------------------------------------------------------------

absl::Status DataTree::LoadNode(absl::string_view path, const Stat& stat, absl::string_view data) {
  CONFAB_CHECK(last_applied_.IsZero() && !snapshot_pinned_, "LoadNode into a tree in use");
  absl::Status valid = ValidatePath(path);
  if (!valid.ok()) {
    return MakeError(v1::INTERNAL, absl::StrCat("snapshot node: ", valid.message()));
  }
  if (stat.data_length < 0 || static_cast<size_t>(stat.data_length) != data.size()) {
    return MakeError(v1::INTERNAL,
                     absl::StrCat("snapshot node ", path, " has data_length ", stat.data_length,
                                  " but ", data.size(), " bytes of data"));
  }
  if (path != "/" && Find(path) != nullptr) {
    return MakeError(v1::INTERNAL, absl::StrCat("snapshot holds node ", path, " twice"));
  }
  PutNode(path, stat, data);
  return absl::OkStatus();
}

absl::Status DataTree::LoadSession(const SessionInfo& session) {
  CONFAB_CHECK(last_applied_.IsZero() && !snapshot_pinned_, "LoadSession into a tree in use");
  if (session.id.IsNone()) return MakeError(v1::INTERNAL, "snapshot holds session id 0");
  if (HasSession(session.id)) {
    return MakeError(v1::INTERNAL,
                     absl::StrCat("snapshot holds session ", session.id.ToString(), " twice"));
  }
  PutSession(session.id, session.timeout_ms);
  return absl::OkStatus();
}

absl::Status DataTree::FinishLoad(Zxid zxid, uint64_t expected_digest) {
  CONFAB_CHECK(last_applied_.IsZero() && !snapshot_pinned_, "FinishLoad into a tree in use");
  // The children and ephemeral indexes were built by PutNode as nodes arrived (in any order);
  // what is left is to check that they agree with the stats: first that every node hangs where
  // it should (the root cause of most other disagreements), then the counts. Load order makes
  // the first error reported stable.
  for (const NodeEntry& entry : nodes_) {
    if (entry.path() != "/" && Find(ParentPath(entry.path())) == nullptr) {
      return MakeError(v1::INTERNAL, absl::StrCat("snapshot node ", entry.path(), " has no parent ",
                                                  ParentPath(entry.path())));
    }
    const SessionId owner(entry.stat.ephemeral_owner);
    if (!owner.IsNone() && !HasSession(owner)) {
      return MakeError(v1::INTERNAL,
                       absl::StrCat("snapshot node ", entry.path(), " is owned by session ",
                                    owner.ToString(), " which is not in the snapshot"));
    }
  }
  for (const NodeEntry& entry : nodes_) {
    auto children = children_.find(entry.path());
    const size_t child_count = children == children_.end() ? 0 : children->second.size();
    if (entry.stat.num_children < 0 ||
        static_cast<size_t>(entry.stat.num_children) != child_count) {
      return MakeError(v1::INTERNAL,
                       absl::StrCat("snapshot node ", entry.path(), " has num_children ",
                                    entry.stat.num_children, " but ", child_count, " children"));
    }
    if (entry.stat.ephemeral_owner != 0 && child_count != 0) {
      return MakeError(v1::INTERNAL, absl::StrCat("snapshot node ", entry.path(),
                                                  " is ephemeral but has children"));
    }
  }
  const uint64_t computed = ComputeDigest();
  CONFAB_CHECK(computed == digest_, "incremental digest ", absl::Hex(digest_),
               " differs from the recomputed ", absl::Hex(computed));
  if (computed != expected_digest) {
    return MakeError(v1::INTERNAL, absl::StrCat("snapshot at ", zxid.ToString(), " has digest 0x",
                                                absl::Hex(computed), ", expected 0x",
                                                absl::Hex(expected_digest)));
  }
  last_applied_ = zxid;
  return absl::OkStatus();
}

}  // namespace confab::tree
