// confabctl, the command-line client of Confab (as zkCli.sh or etcdctl): parses the command
// line, opens one session for the verb (most need one), runs it, closes the session, and turns
// the outcome into a message on stderr and an exit code (see exit_status.h). Run
// `confabctl help` for the verbs.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "confab/client.h"
#include "sdk/cli/command_line.h"
#include "sdk/cli/exit_status.h"
#include "sdk/cli/stop_signal.h"
#include "sdk/cli/verbs.h"
#include "server/common/errors.h"

namespace confab::cli {
namespace {

// Short, as suits a CLI: a confabctl that is killed leaves its session (and its ephemeral nodes)
// behind for at most this long. A normal exit closes the session at once.
constexpr absl::Duration kSessionTimeout = absl::Seconds(5);

// Run on the client's callback thread.
void ReportStateChange(ConnectionState state) {
  if (state == ConnectionState::kConnected) return;
  std::cerr << "confabctl: session " << ConnectionStateName(state) << "\n";
  if (state == ConnectionState::kLost) StopSignal::Get().Fire();  // ends a watch
}

absl::Status RunWithSession(const VerbSpec& verb, const CommandLine& command_line) {
  ClientOptions options;
  options.endpoints = command_line.endpoints;
  options.session_timeout = kSessionTimeout;
  options.connect_timeout = command_line.timeout;
  options.request_timeout = command_line.timeout;
  options.state_listener = &ReportStateChange;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(std::move(options));
  if (!client.ok()) return CannotConnect(client.status());
  absl::Status status = verb.run({command_line, client->get()});
  if (absl::Status closed = (*client)->Close(); !closed.ok() && status.ok()) {
    std::cerr << "confabctl: warning: the session was not closed (" << closed.message()
              << "); its ephemeral nodes last until it expires\n";
  }
  return status;
}

void ReportFailure(const CommandLine& command_line, const absl::Status& status) {
  const VerbSpec* verb = FindVerb(command_line.verb);
  if (IsUsageError(status)) {
    std::cerr << "confabctl: " << (verb == nullptr ? "" : command_line.verb + ": ")
              << status.message() << "\n"
              << (verb == nullptr ? "usage: confabctl [GLOBAL OPTIONS] VERB [OPTIONS] OPERANDS\n"
                                    "`confabctl help` lists the verbs\n"
                                  : UsageLine(*verb));
    return;
  }
  std::string where = command_line.verb;
  if (!command_line.operands.empty()) where += " " + command_line.operands[0];
  std::cerr << "confabctl: " << where << ": " << v1::ErrorCode_Name(ErrorCodeOf(status)) << ": "
            << status.message() << "\n";
}

int Main(int argc, char** argv) {
  CommandLine command_line;
  const std::vector<std::string> args(argv + 1, argv + argc);
  absl::Status status = ParseCommandLine(
      args, std::getenv(kEndpointsEnv),
      [](absl::string_view name) -> const VerbSyntax* {
        const VerbSpec* verb = FindVerb(name);
        return verb == nullptr ? nullptr : &verb->syntax;
      },
      &command_line);
  const VerbSpec* verb = FindVerb(command_line.verb);
  if (status.ok() && command_line.version) {
    std::cout << "confabctl " << CONFAB_VERSION << "\n";
    return 0;
  }
  if (status.ok() && command_line.help) {
    std::cout << (verb == nullptr ? GeneralHelp() : VerbHelp(*verb));
    return 0;
  }
  if (status.ok() && verb == nullptr) {
    std::cerr << "confabctl: no verb given\n\n" << GeneralHelp();
    return static_cast<int>(ExitCode::kUsage);
  }
  if (status.ok()) {
    status = verb->needs_session ? RunWithSession(*verb, command_line)
                                 : verb->run({command_line, nullptr});
  }
  std::cout.flush();
  if (!status.ok()) ReportFailure(command_line, status);
  return static_cast<int>(ExitCodeOf(status));
}

}  // namespace
}  // namespace confab::cli

int main(int argc, char** argv) { return confab::cli::Main(argc, argv); }
