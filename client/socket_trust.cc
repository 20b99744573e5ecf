#include "client/socket_trust.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/paths.h"

// What this relies on, against a path swapped between the checks and the
// connection (gRPC connects later, and again after the agent restarts):
// once every directory from / to the socket belongs to the caller or root
// and nobody else may write to it, only the caller and root can change what
// the path names. A sticky directory such as /tmp may be writable by all,
// but there only an entry's owner may rename or remove it, and the entry
// below it is checked to be the caller's or root's. So the socket gRPC
// reaches is the one checked here, or one the caller or root put there
// later. The peer check on a probe connection adds what file ownership
// cannot show: who actually serves the socket (a listening socket can be
// handed to another process).

namespace smime::client {
namespace {

bool Trusted(uid_t owner, uid_t me) { return owner == me || owner == 0; }

absl::Status Refuse(const std::string& path, const std::string& why) {
  return absl::PermissionDeniedError(
      absl::StrCat("refusing the agent socket at ", path, ": ", why, "; nothing was sent to it"));
}

std::string Mode(mode_t mode) { return absl::StrFormat("%04o", mode & 07777); }

// One directory on the way to the socket (`last`: the socket's own).
absl::Status CheckDirectory(const std::string& path, const std::string& dir, bool last, uid_t me) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    return Refuse(path, absl::StrCat("cannot stat ", dir, ": ", std::strerror(errno)));
  }
  // The path was resolved just before: a link now means it changed.
  if (!S_ISDIR(st.st_mode)) return Refuse(path, absl::StrCat(dir, " is no longer a directory"));
  if (!Trusted(st.st_uid, me)) {
    return Refuse(path, absl::StrCat("the directory ", dir, " belongs to uid ", st.st_uid, ", not to you (uid ", me,
                                     ") or root"));
  }
  bool others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  if (last && st.st_uid == me && me != 0 && (st.st_mode & 077) != 0) {
    return Refuse(path, absl::StrCat("the directory ", dir, " has mode ", Mode(st.st_mode),
                                     "; yours must be 0700 (chmod 700 ", dir, ")"));
  }
  if (others_write && (last || (st.st_mode & S_ISVTX) == 0)) {
    return Refuse(path,
                  absl::StrCat("the directory ", dir, " is writable by others (mode ", Mode(st.st_mode), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> CheckAgentSocket(const std::string& path) {
  auto missing = [&] {
    return absl::UnavailableError(
        absl::StrCat("no agent socket at ", path, "; start smime-agent or pass --socket / set ", kSocketEnv));
  };
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return missing();
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return missing();
  const std::string resolved = buf;
  const uid_t me = ::geteuid();

  const size_t slash = resolved.rfind('/');
  // From / down; `slash` is the last '/', so the walk ends there.
  for (size_t pos = 0;; pos = resolved.find('/', pos + 1)) {
    std::string dir = pos == 0 ? "/" : resolved.substr(0, pos);
    if (absl::Status s = CheckDirectory(path, dir, pos == slash, me); !s.ok()) return s;
    if (pos == slash) break;
  }

  if (::lstat(resolved.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return missing();
  if (!Trusted(st.st_uid, me)) {
    return Refuse(path, absl::StrCat("the socket belongs to uid ", st.st_uid, ", not to you (uid ", me, ") or root"));
  }

  sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (resolved.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent socket path ", resolved, " is longer than ", sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, resolved.data(), resolved.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("the agent at ", path, " is not answering (", err, ")"));
  }
  ucred cred;
  socklen_t len = sizeof(cred);
  bool got = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
  std::string err = got ? "" : std::strerror(errno);
  // Closed unused: the probe only asks who is listening.
  ::close(fd);
  if (!got) return Refuse(path, absl::StrCat("cannot tell who serves it (SO_PEERCRED: ", err, ")"));
  if (!Trusted(cred.uid, me)) {
    return Refuse(path, absl::StrCat("it is served by a process of uid ", cred.uid, " (pid ", cred.pid,
                                     "), not by you (uid ", me, ") or root"));
  }
  return resolved;
}

}  // namespace smime::client
