#include "sdk/cli/verbs.h"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "sdk/cli/exit_status.h"
#include "sdk/cli/output.h"
#include "sdk/cli/stop_signal.h"
#include "server/common/errors.h"

namespace confab::cli {
namespace {

using json = nlohmann::ordered_json;

// rmr lists a node again when it gained children after it was listed (NOT_EMPTY), at most this
// many times per node: a subtree that keeps growing is reported rather than chased forever.
constexpr int kDeleteAttemptsMax = 10;

bool Json(const VerbContext& c) { return c.command_line.output == OutputFormat::kJson; }
const std::string& PathOperand(const VerbContext& c) { return c.command_line.operands[0]; }

std::string ChildPath(absl::string_view parent, absl::string_view name) {
  return parent == "/" ? absl::StrCat("/", name) : absl::StrCat(parent, "/", name);
}

// The DATA operand at `index`: "" when absent, stdin's content when "-".
absl::StatusOr<std::string> DataOperand(const VerbContext& c, size_t index) {
  const std::vector<std::string>& operands = c.command_line.operands;
  if (index >= operands.size()) return std::string();
  if (operands[index] != "-") return operands[index];
  std::string data(std::istreambuf_iterator<char>(std::cin), {});
  if (std::cin.bad()) return MakeError(v1::INVALID_ARGUMENT, "cannot read DATA from stdin");
  return data;
}

absl::Status RunCreate(const VerbContext& c) {
  absl::StatusOr<std::string> data = DataOperand(c, 1);
  if (!data.ok()) return data.status();
  const bool ephemeral = c.command_line.Switch("-e");
  const bool sequential = c.command_line.Switch("-s");
  const CreateMode mode =
      ephemeral ? (sequential ? CreateMode::kEphemeralSequential : CreateMode::kEphemeral)
                : (sequential ? CreateMode::kPersistentSequential : CreateMode::kPersistent);
  absl::StatusOr<Created> created = c.client->Create(PathOperand(c), *data, mode);
  if (!created.ok()) return created.status();
  if (Json(c)) {
    PrintJson({{"path", created->path}, {"stat", StatJson(created->stat)}});
  } else {
    std::cout << created->path << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunGet(const VerbContext& c) {
  absl::StatusOr<NodeData> node = c.client->Get(PathOperand(c));
  if (!node.ok()) return node.status();
  if (Json(c)) {
    json out = {{"path", PathOperand(c)}};
    SetDataJson(node->data, &out);
    out["stat"] = StatJson(node->stat);
    PrintJson(out);
  } else {
    std::cout << node->data << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunSet(const VerbContext& c) {
  absl::StatusOr<std::string> data = DataOperand(c, 1);
  if (!data.ok()) return data.status();
  absl::StatusOr<Stat> stat = c.client->Set(PathOperand(c), *data, c.command_line.Integer("-v"));
  if (!stat.ok()) return stat.status();
  if (Json(c)) PrintJson({{"path", PathOperand(c)}, {"stat", StatJson(*stat)}});
  return absl::OkStatus();
}

absl::Status RunDelete(const VerbContext& c) {
  absl::Status deleted = c.client->Delete(PathOperand(c), c.command_line.Integer("-v"));
  if (!deleted.ok()) return deleted;
  if (Json(c)) PrintJson({{"path", PathOperand(c)}});
  return absl::OkStatus();
}

// Deletes `path` and its subtree, deepest first, counting the nodes it deleted. Others may change
// the subtree meanwhile: a node already gone is done (NO_NODE is tolerated, except when the first
// listing of `path` finds nothing: then there was nothing to delete and that is the answer), and
// a node that gained children since it was listed (NOT_EMPTY) is listed again. The root itself
// stays: rmr / empties the tree.
absl::Status DeleteSubtree(Client& client, const std::string& path, int64_t* deleted) {
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<Children> children = client.GetChildren(path);
    if (!children.ok()) {
      if (attempt > 1 && ErrorCodeOf(children.status()) == v1::NO_NODE) return absl::OkStatus();
      return children.status();
    }
    for (const std::string& name : children->names) {
      absl::Status child = DeleteSubtree(client, ChildPath(path, name), deleted);
      if (!child.ok() && ErrorCodeOf(child) != v1::NO_NODE) return child;
    }
    if (path == "/") return absl::OkStatus();
    absl::Status status = client.Delete(path);
    if (status.ok()) {
      ++*deleted;
      return absl::OkStatus();
    }
    if (ErrorCodeOf(status) == v1::NO_NODE) return absl::OkStatus();
    if (ErrorCodeOf(status) != v1::NOT_EMPTY || attempt == kDeleteAttemptsMax) return status;
  }
}

absl::Status RunDeleteRecursive(const VerbContext& c) {
  int64_t deleted = 0;
  absl::Status status = DeleteSubtree(*c.client, PathOperand(c), &deleted);
  if (!status.ok()) return status;
  if (Json(c)) PrintJson({{"path", PathOperand(c)}, {"deleted", deleted}});
  return absl::OkStatus();
}

absl::Status RunList(const VerbContext& c) {
  absl::StatusOr<Children> children = c.client->GetChildren(PathOperand(c));
  if (!children.ok()) return children.status();
  if (Json(c)) {
    PrintJson({{"path", PathOperand(c)}, {"children", children->names}});
  } else {
    for (const std::string& name : children->names) std::cout << name << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunStat(const VerbContext& c) {
  absl::StatusOr<std::optional<Stat>> stat = c.client->Exists(PathOperand(c));
  if (!stat.ok()) return stat.status();
  if (!stat->has_value()) {
    return MakeError(v1::NO_NODE, absl::StrCat("node ", PathOperand(c), " does not exist"));
  }
  if (Json(c)) {
    PrintJson({{"path", PathOperand(c)}, {"stat", StatJson(**stat)}});
  } else {
    std::cout << StatText(**stat);
  }
  return absl::OkStatus();
}

// A subtree as listed node by node: not one snapshot, so a node deleted while it is read is left
// out (only the root must exist).
struct TreeNode {
  std::string path;
  std::vector<TreeNode> children;
};

absl::StatusOr<TreeNode> ReadTree(Client& client, const std::string& path) {
  absl::StatusOr<Children> children = client.GetChildren(path);
  if (!children.ok()) return children.status();
  TreeNode node{path, {}};
  for (const std::string& name : children->names) {
    absl::StatusOr<TreeNode> child = ReadTree(client, ChildPath(path, name));
    if (child.ok()) {
      node.children.push_back(*std::move(child));
    } else if (ErrorCodeOf(child.status()) != v1::NO_NODE) {
      return child.status();
    }
  }
  return node;
}

void PrintTreeText(const TreeNode& node, int depth) {
  const absl::string_view name =
      depth == 0 ? absl::string_view(node.path)
                 : absl::string_view(node.path).substr(node.path.rfind('/') + 1);
  std::cout << std::string(2 * depth, ' ') << name << "\n";
  for (const TreeNode& child : node.children) PrintTreeText(child, depth + 1);
}

json TreeJson(const TreeNode& node) {
  json children = json::array();
  for (const TreeNode& child : node.children) children.push_back(TreeJson(child));
  return {{"path", node.path}, {"children", std::move(children)}};
}

absl::Status RunTree(const VerbContext& c) {
  absl::StatusOr<TreeNode> tree = ReadTree(*c.client, PathOperand(c));
  if (!tree.ok()) return tree.status();
  if (Json(c)) {
    PrintJson(TreeJson(*tree));
  } else {
    PrintTreeText(*tree, 0);
  }
  return absl::OkStatus();
}

absl::Status RunWatch(const VerbContext& c) {
  const bool json_output = Json(c);
  const std::optional<int32_t> count = c.command_line.Integer("--count");
  StopSignal& stop = StopSignal::Get();
  stop.CatchInterrupts();
  // Runs on the client's callback thread, one event at a time; owns what it touches, since it
  // may run until the client is closed.
  auto printed = std::make_shared<int64_t>(0);
  Watcher print = [printed, count, json_output, &stop](const WatchEvent& event) {
    if (count.has_value() && *printed >= *count) return;  // done; the session is closing
    if (json_output) {
      PrintJson(EventJson(event));
    } else {
      std::cout << EventText(event) << "\n";
    }
    std::cout.flush();
    if (count.has_value() && ++*printed >= *count) stop.Fire();
  };
  const AddWatchMode mode =
      c.command_line.Switch("-r") ? AddWatchMode::kPersistentRecursive : AddWatchMode::kPersistent;
  absl::StatusOr<WatchId> id = c.client->AddWatch(PathOperand(c), mode, std::move(print));
  if (!id.ok()) return id.status();
  stop.Wait();  // Ctrl-C, --count events, or the session lost (see the state listener)
  if (c.client->state() == ConnectionState::kLost) {
    return MakeError(v1::SESSION_EXPIRED,
                     "the session was lost: changes after the last event printed were not seen");
  }
  return absl::OkStatus();
}

// ---- status: the unary Status call, no session (it must answer when no session can open, e.g.
// on a member that is electing a leader). The first endpoint that answers is shown.

void PrintStatusText(const std::string& endpoint, const v1::StatusResponse& s) {
  std::cout << "endpoint = " << endpoint << "\nversion = " << s.version()
            << "\nmember_id = " << s.member_id() << "\nrole = " << v1::MemberRole_Name(s.role())
            << "\nserving = " << (s.serving() ? "true" : "false")
            << "\nleader_id = " << s.leader_id() << "\nepoch = " << s.epoch()
            << "\nlast_zxid = " << ZxidText(s.last_zxid()) << "\ndigest = " << HexText(s.digest())
            << "\nnode_count = " << s.node_count() << "\nsession_count = " << s.session_count()
            << "\nwatch_count = " << s.watch_count() << "\nlog_fsyncs = " << s.log_fsyncs()
            << "\nlog_records = " << s.log_records()
            << "\nsnapshots_written = " << s.snapshots_written()
            << "\nuptime = " << absl::FormatDuration(absl::Milliseconds(s.uptime_ms())) << "\n";
  for (const v1::MemberStatus& m : s.members()) {
    std::cout << "member." << m.id() << " = " << m.address() << " " << v1::MemberRole_Name(m.role())
              << " " << (m.serving() ? "serving" : "not-serving")
              << " last_zxid=" << ZxidText(m.last_zxid()) << "\n";
  }
}

json StatusJson(const std::string& endpoint, const v1::StatusResponse& s) {
  json members = json::array();
  for (const v1::MemberStatus& m : s.members()) {
    members.push_back({{"id", m.id()},
                       {"address", m.address()},
                       {"role", v1::MemberRole_Name(m.role())},
                       {"serving", m.serving()},
                       {"last_zxid", m.last_zxid()}});
  }
  return {{"endpoint", endpoint},
          {"version", s.version()},
          {"member_id", s.member_id()},
          {"role", v1::MemberRole_Name(s.role())},
          {"serving", s.serving()},
          {"leader_id", s.leader_id()},
          {"epoch", s.epoch()},
          {"last_zxid", s.last_zxid()},
          {"digest", s.digest()},
          {"node_count", s.node_count()},
          {"session_count", s.session_count()},
          {"watch_count", s.watch_count()},
          {"log_fsyncs", s.log_fsyncs()},
          {"log_records", s.log_records()},
          {"snapshots_written", s.snapshots_written()},
          {"uptime_ms", s.uptime_ms()},
          {"members", std::move(members)}};
}

absl::Status RunStatus(const VerbContext& c) {
  std::vector<std::string> failures;
  for (absl::string_view part : absl::StrSplit(c.command_line.endpoints, ',')) {
    const std::string endpoint(absl::StripAsciiWhitespace(part));
    if (endpoint.empty()) continue;
    std::unique_ptr<v1::Coordination::Stub> stub = v1::Coordination::NewStub(
        grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + c.command_line.timeout));
    v1::StatusResponse response;
    grpc::Status answer = stub->Status(&context, v1::StatusRequest(), &response);
    if (!answer.ok()) {
      failures.push_back(absl::StrCat(endpoint, ": ", answer.error_message()));
      continue;
    }
    if (Json(c)) {
      PrintJson(StatusJson(endpoint, response));
    } else {
      PrintStatusText(endpoint, response);
    }
    return absl::OkStatus();
  }
  return CannotConnect(MakeError(
      v1::UNAVAILABLE, absl::StrCat("no endpoint answered (", absl::StrJoin(failures, "; "), ")")));
}

absl::Status RunHelp(const VerbContext& c) {
  if (c.command_line.operands.empty()) {
    std::cout << GeneralHelp();
    return absl::OkStatus();
  }
  const VerbSpec* verb = FindVerb(c.command_line.operands[0]);
  if (verb == nullptr) {
    return UsageError(absl::StrCat("unknown verb \"", c.command_line.operands[0], "\""));
  }
  std::cout << VerbHelp(*verb);
  return absl::OkStatus();
}

constexpr OptionSpec kVersionOption = {
    .name = "-v",
    .kind = OptionKind::kInteger,
    .value_name = "VERSION",
    .min_value = 0,
    .help = "only if the node's version is VERSION (else BAD_VERSION)"};

}  // namespace

const std::vector<VerbSpec>& Verbs() {
  static const std::vector<VerbSpec>* const verbs = new std::vector<VerbSpec>{
      {.syntax = {.name = "create",
                  .options = {{.name = "-e",
                               .help = "ephemeral: deleted when confabctl exits (see below)"},
                              {.name = "-s", .help = "sequential: a 10-digit counter is appended"}},
                  .operands = "PATH [DATA]",
                  .min_operands = 1,
                  .max_operands = 2},
       .summary = "create a node; prints the path created",
       .details =
           "Each confabctl run is one session, closed when it exits: an ephemeral node (-e) is\n"
           "deleted as soon as confabctl exits, as with zkCli. It is useful to check that a path\n"
           "can be created; a process that must hold an ephemeral node keeps its own session.\n",
       .run = &RunCreate},
      {.syntax = {.name = "get", .operands = "PATH", .min_operands = 1, .max_operands = 1},
       .summary = "print a node's data (json: data and stat)",
       .details = "In json, data that is not UTF-8 is given as data_base64 instead of data.\n",
       .run = &RunGet},
      {.syntax = {.name = "set",
                  .options = {kVersionOption},
                  .operands = "PATH DATA",
                  .min_operands = 2,
                  .max_operands = 2},
       .summary = "replace a node's data",
       .run = &RunSet},
      {.syntax = {.name = "delete",
                  .options = {kVersionOption},
                  .operands = "PATH",
                  .min_operands = 1,
                  .max_operands = 1},
       .summary = "delete a node (it must have no children)",
       .run = &RunDelete},
      {.syntax = {.name = "rmr", .operands = "PATH", .min_operands = 1, .max_operands = 1},
       .summary = "delete a node and its whole subtree, deepest first",
       .details =
           "Tolerates concurrent changes: nodes deleted by others meanwhile are skipped, a node\n"
           "that gains children while it is being deleted is listed again. `rmr /` empties the\n"
           "tree.\n",
       .run = &RunDeleteRecursive},
      {.syntax = {.name = "ls", .operands = "PATH", .min_operands = 1, .max_operands = 1},
       .summary = "list a node's children, one per line",
       .run = &RunList},
      {.syntax = {.name = "stat", .operands = "PATH", .min_operands = 1, .max_operands = 1},
       .summary = "print a node's stat (zxids in hex, times in ISO-8601 UTC)",
       .run = &RunStat},
      {.syntax = {.name = "tree", .operands = "PATH", .min_operands = 1, .max_operands = 1},
       .summary = "print a subtree, indented",
       .details = "The subtree is read node by node, not as one snapshot.\n",
       .run = &RunTree},
      {.syntax = {.name = "watch",
                  .options = {{.name = "-r", .help = "recursive: events of the whole subtree"},
                              {.name = "--count",
                               .kind = OptionKind::kInteger,
                               .value_name = "N",
                               .min_value = 1,
                               .help = "exit after N events"}},
                  .operands = "PATH",
                  .min_operands = 1,
                  .max_operands = 1},
       .summary = "print a node's changes as they happen, until Ctrl-C",
       .details =
           "A persistent watch (-r: persistent recursive). One line per event: TYPE PATH ZXID\n"
           "(json: one object per line). The node need not exist. Exits 0 on Ctrl-C or after\n"
           "--count events, 1 if the session is lost.\n",
       .run = &RunWatch},
      {.syntax = {.name = "status"},
       .summary = "show the ensemble as the first endpoint that answers sees it",
       .details = "Members, role, leader, epoch, last zxid, serving, counts. Opens no session.\n",
       .needs_session = false,
       .run = &RunStatus},
      {.syntax = {.name = "help", .operands = "[VERB]", .max_operands = 1},
       .summary = "show this help, or a verb's",
       .needs_session = false,
       .run = &RunHelp},
  };
  return *verbs;
}

const VerbSpec* FindVerb(absl::string_view name) {
  for (const VerbSpec& verb : Verbs()) {
    if (verb.syntax.name == name) return &verb;
  }
  return nullptr;
}

std::string UsageLine(const VerbSpec& verb) {
  return absl::StrCat("usage: confabctl [GLOBAL OPTIONS] ", Synopsis(verb.syntax), "\n");
}

std::string GeneralHelp() {
  std::string out =
      "confabctl: the command-line client of Confab.\n\n"
      "usage: confabctl [GLOBAL OPTIONS] VERB [OPTIONS] OPERANDS\n\nverbs:\n";
  size_t width = 0;
  for (const VerbSpec& verb : Verbs()) width = std::max(width, Synopsis(verb.syntax).size());
  for (const VerbSpec& verb : Verbs()) {
    const std::string synopsis = Synopsis(verb.syntax);
    absl::StrAppend(&out, "  ", synopsis, std::string(width - synopsis.size() + 2, ' '),
                    verb.summary, "\n");
  }
  absl::StrAppend(
      &out, "\nglobal options (before or after the verb):\n", GlobalOptionsHelp(),
      "\nDATA \"-\" reads the data from stdin; `--` ends the options.\n"
      "Each run is one session, closed at exit: ephemeral nodes (create -e) are deleted when\n"
      "confabctl exits, as with zkCli.\n"
      "Errors: \"confabctl: VERB PATH: ERROR_CODE: message\" on stderr. Exit codes: 0 done,\n"
      "1 the operation failed, 2 usage error, 3 cannot connect.\n");
  return out;
}

std::string VerbHelp(const VerbSpec& verb) {
  std::string out = absl::StrCat(UsageLine(verb), "\n", verb.summary, "\n");
  if (!verb.syntax.options.empty()) {
    absl::StrAppend(&out, "\noptions:\n", OptionsHelp(verb.syntax.options));
  }
  if (!verb.details.empty()) absl::StrAppend(&out, "\n", verb.details);
  return out;
}

}  // namespace confab::cli
