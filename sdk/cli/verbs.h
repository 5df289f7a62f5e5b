// confabctl's verbs: one table gives each verb its syntax (for the parser), its help, whether it
// needs a session, and the function that runs it. A verb prints its result to stdout and returns
// the failure, if any, for the caller to report; it never exits.
#ifndef CONFAB_SDK_CLI_VERBS_H_
#define CONFAB_SDK_CLI_VERBS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "confab/client.h"
#include "sdk/cli/command_line.h"

namespace confab::cli {

struct VerbContext {
  const CommandLine& command_line;
  Client* client;  // the session; nullptr for a verb that needs none
};

struct VerbSpec {
  VerbSyntax syntax = {};
  absl::string_view summary = {};  // one line, for the list of verbs
  absl::string_view details = {};  // for `confabctl help VERB`; may be empty
  bool needs_session = true;
  absl::Status (*run)(const VerbContext& context) = nullptr;
};

const std::vector<VerbSpec>& Verbs();
const VerbSpec* FindVerb(absl::string_view name);

std::string GeneralHelp();
std::string VerbHelp(const VerbSpec& verb);
// "usage: confabctl [GLOBAL OPTIONS] set [-v VERSION] PATH DATA".
std::string UsageLine(const VerbSpec& verb);

}  // namespace confab::cli

#endif  // CONFAB_SDK_CLI_VERBS_H_
