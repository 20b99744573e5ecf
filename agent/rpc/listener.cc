#include "agent/rpc/listener.h"

#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace smime::agent {
namespace {

absl::Status Errno(absl::StatusCode code, const std::string& what) {
  return absl::Status(code, absl::StrCat(what, ": ", std::strerror(errno)));
}

// mkdir -p; the last component is created with mode 0700. A directory that
// already exists is never chmodded (it may be /tmp, or shared on purpose):
// it must already be private to this user.
absl::Status MakePrivateDir(const std::string& dir) {
  bool created = false;
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), pos == dir.size() ? 0700 : 0755) == 0) {
      created = pos == dir.size();
    } else if (errno != EEXIST) {
      return Errno(absl::StatusCode::kFailedPrecondition, absl::StrCat("cannot create ", part));
    }
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    return Errno(absl::StatusCode::kFailedPrecondition, absl::StrCat("cannot stat ", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " is not a directory"));
  }
  if (st.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("socket directory ", dir, " belongs to another user; choose another --socket"));
  }
  if ((st.st_mode & 077) != 0) {
    // Ours from the mkdir above (the umask decided its mode): made private.
    if (created && ::chmod(dir.c_str(), 0700) == 0) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrFormat(
        "socket directory %s is open to other users (mode %04o); the socket goes in a directory only its "
        "user can enter: choose another --socket, or chmod 700 the directory",
        dir, st.st_mode & 07777));
  }
  return absl::OkStatus();
}

bool FillAddr(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr->sun_path)) return false;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

ino_t InodeOf(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) ? st.st_ino : 0;
}

// At most one line a second for a kind of event that can come in floods;
// the line counts the ones left out.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(const char* event) : event_(event) {}
  // Logs (or counts) one occurrence with `what` as its reason.
  void Note(const std::string& what, uid_t uid) {
    absl::Time now = absl::Now();
    if (now - last_ < absl::Seconds(1)) {
      ++left_out_;
      return;
    }
    SMIME_LOG(kWarning, event_).Kv("reason", what).Kv("peer_uid", uid).Kv("left_out", left_out_);
    last_ = now;
    left_out_ = 0;
  }

 private:
  const char* event_;
  absl::Time last_ = absl::InfinitePast();
  size_t left_out_ = 0;
};

}  // namespace

void PeerRegistry::Add(int fd, PeerCred cred) {
  absl::MutexLock lock(&mu_);
  creds_[fd] = Entry{cred, InodeOf(fd)};
}

PeerRegistry::Counts PeerRegistry::PruneAndCount(uid_t uid, uid_t own_uid) {
  absl::MutexLock lock(&mu_);
  Counts counts;
  for (auto it = creds_.begin(); it != creds_.end();) {
    if (InodeOf(it->first) != it->second.inode) {
      it = creds_.erase(it);
      continue;
    }
    const uid_t peer = it->second.cred.uid;
    ++counts.total;
    counts.others += peer != own_uid && peer != 0;
    counts.from_uid += peer == uid;
    ++it;
  }
  return counts;
}

std::optional<PeerCred> PeerRegistry::Lookup(int fd) const {
  absl::MutexLock lock(&mu_);
  auto it = creds_.find(fd);
  if (it == creds_.end()) return std::nullopt;
  return it->second.cred;
}

std::optional<PeerCred> PeerRegistry::LookupPeer(const std::string& grpc_peer) const {
  constexpr absl::string_view kPrefix = "fd:";
  if (grpc_peer.compare(0, kPrefix.size(), kPrefix.data(), kPrefix.size()) != 0) return std::nullopt;
  int fd;
  if (!absl::SimpleAtoi(absl::string_view(grpc_peer).substr(kPrefix.size()), &fd)) return std::nullopt;
  return Lookup(fd);
}

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Bind(const std::string& path) {
  sockaddr_un addr;
  if (path.empty() || path[0] != '/' || !FillAddr(path, &addr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path must be absolute and shorter than ", sizeof(addr.sun_path), " bytes: ", path));
  }
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty()) {
    if (absl::Status st = MakePrivateDir(dir); !st.ok()) return st;
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a socket; remove it or choose another --socket"));
    }
    // A live agent answers; a stale file from a crashed one refuses.
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) ::close(probe);
    if (live) {
      return absl::AlreadyExistsError(
          absl::StrCat("another agent is already listening on ", path));
    }
    SMIME_LOG(kInfo, "stale_socket_removed").Kv("socket", path);
    ::unlink(path.c_str());
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(absl::StatusCode::kInternal, "socket");
  // Created 0600 from the start: no window in which others could connect.
  mode_t old_umask = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old_umask);
  if (rc != 0) {
    absl::Status err = Errno(absl::StatusCode::kFailedPrecondition, absl::StrCat("cannot bind ", path));
    ::close(fd);
    return err;
  }
  if (::listen(fd, 64) != 0) {
    absl::Status err = Errno(absl::StatusCode::kInternal, "listen");
    ::close(fd);
    ::unlink(path.c_str());
    return err;
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    absl::Status err = Errno(absl::StatusCode::kInternal, "pipe");
    ::close(fd);
    ::unlink(path.c_str());
    return err;
  }
  return std::unique_ptr<UnixListener>(new UnixListener(path, fd, pipefd[0], pipefd[1]));
}

UnixListener::~UnixListener() {
  Stop();
  ::close(wake_read_);
  ::close(wake_write_);
}

void UnixListener::Start(grpc::Server* server, PeerRegistry* peers, ConnectionLimits limits) {
  thread_ = std::thread([this, server, peers, limits] { AcceptLoop(server, peers, limits); });
}

const char* UnixListener::Refusal(const PeerRegistry::Counts& counts, const ConnectionLimits& limits, bool trusted) {
  if (counts.total >= limits.max_total) return "max_connections reached";
  if (trusted) return nullptr;
  if (counts.others >= limits.max_total - limits.max_total / 4) return "the other uids' share of max_connections reached";
  if (counts.from_uid >= limits.max_per_other_uid) return "max_connections_per_uid reached";
  return nullptr;
}

void UnixListener::AcceptLoop(grpc::Server* server, PeerRegistry* peers, ConnectionLimits limits) {
  const uid_t own_uid = ::geteuid();
  RateLimitedLog accept_failed("accept_failed");
  RateLimitedLog refused("connection_refused");
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      SMIME_LOG(kError, "accept_loop_failed").Kv("error", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;  // Stop()
    if (!(fds[0].revents & POLLIN)) continue;
    int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        const int err = errno;
        accept_failed.Note(std::strerror(err), static_cast<uid_t>(-1));
        if (err == EMFILE || err == ENFILE) ::usleep(100000);  // let fds free up
      }
      continue;
    }
    ucred cred;
    socklen_t len = sizeof(cred);
    if (::getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      SMIME_LOG(kWarning, "peer_cred_failed").Kv("error", std::strerror(errno));
      ::close(conn);
      continue;
    }
    const PeerRegistry::Counts counts = peers->PruneAndCount(cred.uid, own_uid);
    if (const char* why = Refusal(counts, limits, cred.uid == own_uid || cred.uid == 0)) {
      refused.Note(why, cred.uid);
      ::close(conn);
      continue;
    }
    // Recorded before gRPC sees the fd, so a call can never find a stale
    // entry from an earlier connection with the same fd number.
    peers->Add(conn, PeerCred{cred.uid, cred.pid, cred.gid});
    SMIME_LOG(kDebug, "connection").Kv("peer_uid", cred.uid).Kv("peer_pid", cred.pid).Kv("fd", conn);
    grpc::AddInsecureChannelFromFd(server, conn);
  }
}

void UnixListener::Stop() {
  if (stopped_) return;
  stopped_ = true;
  char c = 1;
  (void)!::write(wake_write_, &c, 1);
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
  ::unlink(path_.c_str());
}

}  // namespace smime::agent
