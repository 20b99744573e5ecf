#include "agent/daemon/embedded_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/token.h"

namespace smime::agent {
namespace {

absl::Status MakeDir(const std::string& dir, mode_t mode) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), pos == dir.size() ? mode : 0755) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create ", part, ": ", std::strerror(errno)));
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " is not a directory"));
  }
  if ((st.st_mode & 077) != 0) {
    SMIME_LOG(kWarning, "permissions_fixed").Kv("path", dir).Kv("mode", "0700");
    if (::chmod(dir.c_str(), 0700) != 0) {
      return absl::FailedPreconditionError(absl::StrCat("cannot chmod 700 ", dir));
    }
  }
  return absl::OkStatus();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<EmbeddedStore> OpenEmbeddedStore(const std::string& data_dir,
                                                const std::string& softhsm_module) {
  RETURN_IF_ERROR(MakeDir(data_dir, 0700));
  const std::string token_dir = data_dir + "/tokens";
  const std::string conf = data_dir + "/softhsm2.conf";
  const std::string user_pin_file = data_dir + "/user-pin";
  const std::string so_pin_file = data_dir + "/so-pin";
  RETURN_IF_ERROR(MakeDir(token_dir, 0700));
  if (!Exists(conf)) {
    std::ofstream out(conf);
    out << "# SoftHSM store of smime-agent's embedded default (for trying out and tests).\n"
        << "directories.tokendir = " << token_dir << "\n"
        << "objectstore.backend = file\n"
        << "log.level = ERROR\n"
        << "slots.removable = false\n";
    if (!out) return absl::FailedPreconditionError(absl::StrCat("cannot write ", conf));
  }
  ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);
  ASSIGN_OR_RETURN(std::shared_ptr<tokens::Module> module, tokens::Module::Load(softhsm_module));

  if (!Exists(user_pin_file)) {
    SMIME_LOG(kInfo, "embedded_store_created").Kv("dir", data_dir).Kv("token", kEmbeddedTokenLabel);
    ASSIGN_OR_RETURN(tokens::SecretBuffer user_pin, tokens::RandomPin(32));
    ASSIGN_OR_RETURN(tokens::SecretBuffer so_pin, tokens::RandomPin(32));
    ::unlink(so_pin_file.c_str());
    RETURN_IF_ERROR(tokens::WritePinFile(so_pin_file, so_pin));
    absl::Status st = tokens::InitializeToken(*module, kEmbeddedTokenLabel, so_pin, user_pin);
    // The user PIN file is written last: its presence means "store ready".
    if (st.ok()) st = tokens::WritePinFile(user_pin_file, user_pin);
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("cannot create the embedded token in ", data_dir,
                                                  ": ", st.message()));
    }
  }
  ASSIGN_OR_RETURN(tokens::SecretBuffer pin, tokens::ReadPinFile(user_pin_file));
  return EmbeddedStore{std::move(module), kEmbeddedTokenLabel, std::move(pin)};
}

}  // namespace smime::agent
