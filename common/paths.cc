#include "common/paths.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace smime {
namespace {
std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] == '/') ? std::string(v) : fallback;
}

std::string HomeDir() {
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') return home;
  if (const passwd* pw = getpwuid(getuid()); pw != nullptr && pw->pw_dir != nullptr) {
    return pw->pw_dir;
  }
  return "/";
}
}  // namespace

std::string DefaultSocketPath() {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') {
    return absl::StrCat(runtime, "/smime-agent/agent.sock");
  }
  return absl::StrCat(EnvOr("TMPDIR", "/tmp"), "/smime-agent-", getuid(), "/agent.sock");
}

std::string DefaultDataDir() {
  return absl::StrCat(EnvOr("XDG_DATA_HOME", HomeDir() + "/.local/share"), "/smime-agent");
}

}  // namespace smime
