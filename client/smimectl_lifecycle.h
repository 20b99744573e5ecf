// smimectl verbs for the key and certificate lifecycle: csr, import-cert,
// publish. Kept apart from smimectl.cc, which only adds and dispatches them.
#ifndef SMIME_CLIENT_SMIMECTL_LIFECYCLE_H_
#define SMIME_CLIENT_SMIMECTL_LIFECYCLE_H_

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace smime::client {

class LifecycleCommands {
 public:
  // Adds the verbs to `app`; the returned object holds their options and
  // must outlive parsing.
  static std::unique_ptr<LifecycleCommands> Add(CLI::App& app);

  // True when the parsed command line chose one of these verbs.
  bool Selected() const;
  // Runs the chosen verb against the agent at `socket_path`; what went
  // wrong is for smimectl's one error printer.
  absl::Status Run(const std::string& socket_path, absl::Duration timeout);

 private:
  LifecycleCommands() = default;
  CLI::App* csr_ = nullptr;
  CLI::App* import_ = nullptr;
  CLI::App* publish_ = nullptr;
  CLI::App* import_p12_ = nullptr;
  CLI::App* retire_ = nullptr;
  CLI::App* contacts_ = nullptr;
  CLI::App* delete_ = nullptr;
  bool yes_ = false;
  bool undo_ = false;  // retire --undo
  std::string password_file_;
  std::string key_, subject_, out_, in_, cert_, url_base_;
  std::vector<std::string> emails_;
  bool der_ = false, json_ = false, full_ = false;
};

}  // namespace smime::client

#endif  // SMIME_CLIENT_SMIMECTL_LIFECYCLE_H_
