#include "sdk/cli/command_line.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sdk/cli/exit_status.h"

namespace confab::cli {
namespace {

struct HelpLine {
  std::string left;  // "-v VERSION"
  absl::string_view help;
};

std::string FormatHelpLines(const std::vector<HelpLine>& lines) {
  size_t width = 0;
  for (const HelpLine& line : lines) width = std::max(width, line.left.size());
  std::string out;
  for (const HelpLine& line : lines) {
    absl::StrAppend(&out, "  ", line.left, std::string(width - line.left.size() + 2, ' '),
                    line.help, "\n");
  }
  return out;
}

std::string OptionWithValue(const OptionSpec& option) {
  return option.kind == OptionKind::kSwitch ? std::string(option.name)
                                            : absl::StrCat(option.name, " ", option.value_name);
}

const OptionSpec* FindOption(const std::vector<OptionSpec>& options, absl::string_view name) {
  for (const OptionSpec& option : options) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

}  // namespace

std::optional<int32_t> CommandLine::Integer(absl::string_view name) const {
  auto it = integers.find(name);
  if (it == integers.end()) return std::nullopt;
  return it->second;
}

absl::Status ParseCommandLine(const std::vector<std::string>& args, const char* endpoints_env,
                              VerbLookup find_verb, CommandLine* out) {
  *out = CommandLine();
  out->endpoints = endpoints_env != nullptr && endpoints_env[0] != '\0'
                       ? std::string(endpoints_env)
                       : std::string(kDefaultEndpoints);
  const VerbSyntax* verb = nullptr;
  bool operands_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& token = args[i];
    if (operands_only || token.size() < 2 || token[0] != '-') {  // "-" is an operand (stdin)
      if (verb != nullptr) {
        out->operands.push_back(token);
        continue;
      }
      verb = find_verb(token);
      if (verb == nullptr) return UsageError(absl::StrCat("unknown verb \"", token, "\""));
      out->verb = token;
      continue;
    }
    if (token == "--") {
      operands_only = true;
      continue;
    }
    // "--name=value" carries its value; otherwise an option with a value takes the next token.
    std::string name = token;
    std::optional<std::string> inline_value;
    if (size_t eq = token.find('='); absl::StartsWith(token, "--") && eq != std::string::npos) {
      name = token.substr(0, eq);
      inline_value = token.substr(eq + 1);
    }
    auto value = [&]() -> std::optional<std::string> {
      if (inline_value.has_value()) return inline_value;
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    auto no_value = [&]() -> absl::Status {
      return inline_value.has_value() ? UsageError(absl::StrCat(name, " takes no value"))
                                      : absl::OkStatus();
    };
    auto missing_value = [&] { return UsageError(absl::StrCat(name, " needs a value")); };

    if (name == "-h" || name == "--help") {
      if (absl::Status s = no_value(); !s.ok()) return s;
      out->help = true;
    } else if (name == "--version") {
      if (absl::Status s = no_value(); !s.ok()) return s;
      out->version = true;
    } else if (name == "--endpoints") {
      std::optional<std::string> endpoints = value();
      if (!endpoints.has_value()) return missing_value();
      if (endpoints->empty()) return UsageError("--endpoints is empty (want HOST:PORT,...)");
      out->endpoints = *std::move(endpoints);
    } else if (name == "-o" || name == "--output") {
      std::optional<std::string> format = value();
      if (!format.has_value()) return missing_value();
      if (*format == "text") {
        out->output = OutputFormat::kText;
      } else if (*format == "json") {
        out->output = OutputFormat::kJson;
      } else {
        return UsageError(absl::StrCat(name, " must be text or json, not \"", *format, "\""));
      }
    } else if (name == "--timeout") {
      std::optional<std::string> text = value();
      if (!text.has_value()) return missing_value();
      if (!absl::ParseDuration(*text, &out->timeout) || out->timeout <= absl::ZeroDuration()) {
        return UsageError(absl::StrCat(
            "--timeout must be a positive duration such as 500ms or 5s, not \"", *text, "\""));
      }
    } else if (const OptionSpec* option =
                   verb == nullptr ? nullptr : FindOption(verb->options, name);
               option == nullptr) {
      return UsageError(absl::StrCat("unknown option ", name));
    } else if (option->kind == OptionKind::kSwitch) {
      if (absl::Status s = no_value(); !s.ok()) return s;
      out->switches.insert(name);
    } else {
      std::optional<std::string> text = value();
      if (!text.has_value()) return missing_value();
      int32_t number = 0;
      if (!absl::SimpleAtoi(*text, &number) || number < option->min_value) {
        return UsageError(absl::StrCat(name, " must be an integer >= ", option->min_value,
                                       ", not \"", *text, "\""));
      }
      out->integers[name] = number;
    }
  }
  if (verb == nullptr || out->help || out->version) return absl::OkStatus();
  const int operands = static_cast<int>(out->operands.size());
  if (operands < verb->min_operands) {
    return UsageError(absl::StrCat("missing operand (want ", verb->operands, ")"));
  }
  if (operands > verb->max_operands) {
    return UsageError(absl::StrCat("too many operands (want ",
                                   verb->operands.empty() ? "none" : verb->operands, ")"));
  }
  return absl::OkStatus();
}

std::string Synopsis(const VerbSyntax& verb) {
  std::string out(verb.name);
  for (const OptionSpec& option : verb.options) {
    absl::StrAppend(&out, " [", OptionWithValue(option), "]");
  }
  if (!verb.operands.empty()) absl::StrAppend(&out, " ", verb.operands);
  return out;
}

std::string OptionsHelp(const std::vector<OptionSpec>& options) {
  std::vector<HelpLine> lines;
  for (const OptionSpec& option : options) lines.push_back({OptionWithValue(option), option.help});
  return FormatHelpLines(lines);
}

std::string GlobalOptionsHelp() {
  return FormatHelpLines({
      {"--endpoints HOST:PORT,...",
       "the ensemble (default: $CONFAB_ENDPOINTS, else 127.0.0.1:2281)"},
      {"-o, --output text|json", "output format (default text); json: one object per line"},
      {"--timeout DURATION",
       "bound on connecting and on each request, e.g. 500ms, 5s (default 5s)"},
      {"-h, --help", "this help; `confabctl help VERB` for one verb"},
      {"--version", "print confabctl's version"},
  });
}

}  // namespace confab::cli
