// quickstart: shows a running confabd at work over the raw confab.v1 gRPC API: a session, a few
// writes and reads, a sequential ephemeral registration, a watch firing, a conditional write
// refused with its error code, and an atomic Multi.
//
//   quickstart [--endpoint 127.0.0.1:2281]
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "confab/v1/coordination.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, endpoint, "127.0.0.1:2281", "confabd client address");

namespace {

using confab::v1::ClientMessage;
using confab::v1::Coordination;
using confab::v1::ServerMessage;
using confab::v1::SessionResponse;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "quickstart: %s\n", what.c_str());
  std::exit(1);
}

std::string ErrorCode(const grpc::ClientContext& context) {
  auto it = context.GetServerTrailingMetadata().find("confab-error-code");
  return it == context.GetServerTrailingMetadata().end()
             ? "?"
             : std::string(it->second.data(), it->second.size());
}

// The session stream: one request at a time here, responses read until the one with our id
// (printing watch events that come first).
class Session {
 public:
  explicit Session(Coordination::Stub* stub) : stream_(stub->Session(&context_)) {}

  SessionResponse Call(confab::v1::SessionRequest request) {
    request.set_request_id(++last_id_);
    ClientMessage message;
    *message.add_requests() = request;
    if (!stream_->Write(message)) Die("session stream broke");
    for (;;) {
      if (pending_index_ >= pending_.responses_size()) {
        if (!stream_->Read(&pending_)) Die("session stream ended");
        pending_index_ = 0;
      }
      SessionResponse response = pending_.responses(pending_index_++);
      if (response.has_event()) {
        std::printf("  watch event: %s %s (zxid %lld)\n",
                    confab::v1::EventType_Name(response.event().type()).c_str(),
                    response.event().path().c_str(),
                    static_cast<long long>(response.event().zxid()));
        continue;
      }
      if (response.request_id() == last_id_) return response;
    }
  }

  void Close() {
    confab::v1::SessionRequest request;
    request.mutable_close();
    Call(request);
    stream_->WritesDone();
    stream_->Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<ClientMessage, ServerMessage>> stream_;
  ServerMessage pending_;
  int pending_index_ = 0;
  int64_t last_id_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string endpoint = absl::GetFlag(FLAGS_endpoint);
  auto channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    Die("cannot connect to confabd at " + endpoint);
  }
  auto stub = Coordination::NewStub(channel);
  std::printf("connected to confabd at %s\n", endpoint.c_str());

  Session session(stub.get());
  confab::v1::SessionRequest open;
  open.mutable_open()->set_timeout_ms(10000);
  SessionResponse opened = session.Call(open);
  if (opened.has_error() && opened.error().code() != confab::v1::OK) {
    Die("open session: " + opened.error().message());
  }
  std::printf("session 0x%llx open (timeout %d ms)\n",
              static_cast<unsigned long long>(opened.opened().session_id()),
              opened.opened().timeout_ms());

  // A config subtree, as a dashboard fleet would keep it. Re-runs find it there already.
  for (auto [path, data] : {std::pair{"/superset", ""},
                            {"/superset/config", ""},
                            {"/superset/config/ROW_LIMIT", "50000"},
                            {"/superset/config/SQLLAB_TIMEOUT", "30"},
                            {"/superset/nodes", ""}}) {
    grpc::ClientContext context;
    confab::v1::CreateRequest create;
    create.set_path(path);
    create.set_data(data);
    confab::v1::CreateResponse created;
    grpc::Status status = stub->Create(&context, create, &created);
    if (status.ok()) {
      std::printf("created %s (zxid %lld)\n", created.path().c_str(),
                  static_cast<long long>(created.zxid()));
    } else if (ErrorCode(context) == "NODE_EXISTS") {
      std::printf("%s exists already (%s)\n", path, status.error_message().c_str());
    } else {
      Die(absl::StrCat("create ", path, ": ", status.error_message()));
    }
  }

  // Register this process: an ephemeral sequential node owned by the session.
  confab::v1::SessionRequest reg;
  reg.mutable_create()->set_path("/superset/nodes/node-");
  reg.mutable_create()->set_data(R"({"host":"127.0.0.1","role":"web"})");
  reg.mutable_create()->set_mode(confab::v1::EPHEMERAL_SEQUENTIAL);
  SessionResponse registered = session.Call(reg);
  std::printf("registered as %s (ephemeral, owner 0x%llx)\n", registered.create().path().c_str(),
              static_cast<unsigned long long>(registered.create().stat().ephemeral_owner()));

  // Read with a watch, then change the value from "another client" (a unary call).
  confab::v1::SessionRequest get;
  get.mutable_get()->set_path("/superset/config/ROW_LIMIT");
  get.mutable_get()->set_watch(true);
  SessionResponse got = session.Call(get);
  std::printf("ROW_LIMIT = %s (version %d), watching it\n", got.get().data().c_str(),
              got.get().stat().version());
  {
    grpc::ClientContext context;
    confab::v1::SetRequest set;
    set.set_path("/superset/config/ROW_LIMIT");
    set.set_data(std::to_string(std::stoi(got.get().data()) + 1000));
    set.set_version(got.get().stat().version());
    confab::v1::SetResponse updated;
    grpc::Status status = stub->Set(&context, set, &updated);
    if (!status.ok()) Die("set: " + status.error_message());
    std::printf("set ROW_LIMIT (now version %d)\n", updated.stat().version());
  }
  got = session.Call(get);  // the watch event is printed before this response
  std::printf("ROW_LIMIT = %s (version %d)\n", got.get().data().c_str(),
              got.get().stat().version());

  // A conditional write with a stale version is refused, with our error code.
  {
    grpc::ClientContext context;
    confab::v1::SetRequest set;
    set.set_path("/superset/config/ROW_LIMIT");
    set.set_data("1");
    set.set_version(0);
    confab::v1::SetResponse updated;
    grpc::Status status = stub->Set(&context, set, &updated);
    std::printf("stale set refused: %s: %s\n", ErrorCode(context).c_str(),
                status.error_message().c_str());
  }

  // An atomic batch: check a version and write two keys, all or nothing.
  {
    grpc::ClientContext context;
    confab::v1::MultiRequest multi;
    auto* check = multi.add_ops()->mutable_check();
    check->set_path("/superset/config/ROW_LIMIT");
    check->set_version(got.get().stat().version());
    auto* set = multi.add_ops()->mutable_set();
    set->set_path("/superset/config/ROW_LIMIT");
    set->set_data("50000");
    auto* timeout = multi.add_ops()->mutable_set();
    timeout->set_path("/superset/config/SQLLAB_TIMEOUT");
    timeout->set_data("60");
    confab::v1::MultiResponse result;
    grpc::Status status = stub->Multi(&context, multi, &result);
    if (!status.ok()) Die("multi: " + status.error_message());
    std::printf("multi applied %d ops at zxid %lld\n", result.results_size(),
                static_cast<long long>(result.zxid()));
  }

  confab::v1::SessionRequest list;
  list.mutable_get_children()->set_path("/superset/nodes");
  SessionResponse children = session.Call(list);
  std::printf("registered nodes: %d\n", children.get_children().children_size());
  session.Close();
  std::printf("session closed: its ephemeral %s is gone\n", registered.create().path().c_str());
  return 0;
}
