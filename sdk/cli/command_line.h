// confabctl's command line: `confabctl [GLOBAL OPTIONS] VERB [VERB OPTIONS] OPERANDS`. Global
// options may also follow the verb (`confabctl get /a -o json`); verb options must follow it; `--`
// ends options (for DATA that starts with '-'). Parsing is pure: the environment and the verbs'
// syntax are passed in, nothing is printed.
#ifndef CONFAB_SDK_CLI_COMMAND_LINE_H_
#define CONFAB_SDK_CLI_COMMAND_LINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace confab::cli {

inline constexpr absl::string_view kDefaultEndpoints = "127.0.0.1:2281";
inline constexpr char kEndpointsEnv[] = "CONFAB_ENDPOINTS";

enum class OutputFormat { kText, kJson };

enum class OptionKind { kSwitch, kInteger };

struct OptionSpec {
  absl::string_view name = {};  // as typed: "-e", "--count"
  OptionKind kind = OptionKind::kSwitch;
  absl::string_view value_name = {};  // kInteger: "VERSION"
  int32_t min_value = 0;              // kInteger
  absl::string_view help = {};
};

// What the parser needs to know of a verb.
struct VerbSyntax {
  absl::string_view name = {};
  std::vector<OptionSpec> options = {};
  absl::string_view operands = {};  // for usage: "PATH [DATA]"
  int min_operands = 0;
  int max_operands = 0;
};

struct CommandLine {
  // Global options.
  std::string endpoints;
  OutputFormat output = OutputFormat::kText;
  absl::Duration timeout = absl::Seconds(5);  // connecting, and each request
  bool help = false;
  bool version = false;

  std::string verb;  // empty when none was given
  std::vector<std::string> operands;
  std::set<std::string, std::less<>> switches;           // verb switches given
  std::map<std::string, int32_t, std::less<>> integers;  // verb integer options given

  bool Switch(absl::string_view name) const { return switches.contains(name); }
  std::optional<int32_t> Integer(absl::string_view name) const;
};

// The verb named `name`, or nullptr.
using VerbLookup = absl::FunctionRef<const VerbSyntax*(absl::string_view name)>;

// Parses `args` (argv without argv[0]) into `*out`. `endpoints_env`: the value of
// $CONFAB_ENDPOINTS, or nullptr. On a usage error, returns it (see UsageError) with `*out` filled
// as far as parsing went (out->verb names the verb, if it was reached). Operand counts are not
// checked when help or the version was asked for.
absl::Status ParseCommandLine(const std::vector<std::string>& args, const char* endpoints_env,
                              VerbLookup find_verb, CommandLine* out);

// "create [-e] [-s] PATH [DATA]".
std::string Synopsis(const VerbSyntax& verb);
// "  -v VERSION    only if the node's version is VERSION" lines, one per option.
std::string OptionsHelp(const std::vector<OptionSpec>& options);
// The global options, as OptionsHelp.
std::string GlobalOptionsHelp();

}  // namespace confab::cli

#endif  // CONFAB_SDK_CLI_COMMAND_LINE_H_
