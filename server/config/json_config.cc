#include "server/config/json_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"

namespace confab::config {
namespace {

std::string NormalizeName(absl::string_view name) {
  return absl::StrReplaceAll(name, {{"-", "_"}});
}

}  // namespace

std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
  std::vector<std::string> args;
  bool flags_done = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") flags_done = true;
    if (i > 0 && !flags_done && absl::StartsWith(arg, "-")) {
      size_t start = arg.find_first_not_of('-');
      size_t end = std::min(arg.find('='), arg.size());
      for (size_t j = start; j < end; ++j) {
        if (arg[j] == '-') arg[j] = '_';
      }
    }
    args.push_back(std::move(arg));
  }
  return args;
}

std::string FindConfigFlag(int argc, char** argv) {
  std::string config;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::StartsWith(arg, "-")) continue;
    arg.remove_prefix(absl::StartsWith(arg, "--") ? 2 : 1);
    absl::string_view name = arg.substr(0, arg.find('='));
    if (name == "config") {
      if (arg.find('=') != absl::string_view::npos) {
        config = std::string(arg.substr(arg.find('=') + 1));
      } else if (i + 1 < argc) {
        config = argv[i + 1];
      }
    }
  }
  return config;
}

absl::Status ApplyJsonConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json json = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, " is not valid JSON"));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, " must hold a JSON object of flag names to values"));
  }
  for (const auto& [key, value] : json.items()) {
    std::string name = NormalizeName(key);
    if (name == "config") {
      return absl::InvalidArgumentError(absl::StrCat("config file ", path,
                                                     ": \"config\" cannot be set in a config "
                                                     "file"));
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": unknown key \"", key,
                                                     "\" (keys are confabd's "
                                                     "flag names; see confabd --help)"));
    }
    std::string text_value;
    if (value.is_string()) {
      text_value = value.get<std::string>();
    } else if (value.is_number() || value.is_boolean()) {
      text_value = value.dump();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": key \"", key,
                                                     "\" must be a string, number or boolean"));
    }
    std::string error;
    if (!flag->ParseFrom(text_value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": key \"", key,
                                                     "\" has bad value ", text_value, ": ", error));
    }
  }
  return absl::OkStatus();
}

}  // namespace confab::config
