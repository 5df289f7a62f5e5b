// The optional JSON config file of confabd: an object whose keys are flag names (with '_' or
// '-') and whose values are the flag values, e.g. {"data_dir": "/var/lib/confab",
// "listen": "0.0.0.0:2281", "session_timeout_max_ms": 30000}. Flags given on the command line win
// over the file. Unknown keys and ill-typed values are errors naming the key and the file.
#ifndef CONFAB_SERVER_CONFIG_JSON_CONFIG_H_
#define CONFAB_SERVER_CONFIG_JSON_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace confab::config {

// Sets the registered absl flags named in the JSON file at `path`. Call it before parsing the
// command line, so that flags given there override the file.
absl::Status ApplyJsonConfig(const std::string& path);

// argv with dashes in flag names turned into underscores ("--data-dir=x" -> "--data_dir=x"), so
// confabd takes the dashed spelling ZooKeeper and etcd users type as well as absl's own.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

// The value of --config (as "--config=F" or "--config F") in argv; empty when there is none.
std::string FindConfigFlag(int argc, char** argv);

}  // namespace confab::config

#endif  // CONFAB_SERVER_CONFIG_JSON_CONFIG_H_
