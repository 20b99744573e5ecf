// The local transport: a Unix socket, mode 0600 in a 0700 directory, whose
// connections we accept ourselves so each caller's uid and pid can be read
// with SO_PEERCRED before the connection is handed to gRPC.
#ifndef SMIME_AGENT_RPC_LISTENER_H_
#define SMIME_AGENT_RPC_LISTENER_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class Server;
}

namespace smime::agent {

struct PeerCred {
  uid_t uid = static_cast<uid_t>(-1);
  pid_t pid = 0;
  gid_t gid = static_cast<gid_t>(-1);
};

// Which credentials each accepted connection has, keyed by the fd gRPC names
// in ServerContext::peer() ("fd:N").
class PeerRegistry {
 public:
  // Connections open now, from the agent's own uid or root ("trusted") and
  // from other uids; `from_uid`: from uid `uid`.
  struct Counts {
    size_t total = 0;
    size_t others = 0;
    size_t from_uid = 0;
  };

  void Add(int fd, PeerCred cred);
  // Forgets connections gRPC has closed (their fd gone, or now another
  // file), and counts the rest for a new connection from `uid`.
  Counts PruneAndCount(uid_t uid, uid_t own_uid);
  std::optional<PeerCred> Lookup(int fd) const;
  // Parses "fd:N" (as gRPC names connections added from an fd).
  std::optional<PeerCred> LookupPeer(const std::string& grpc_peer) const;

 private:
  mutable absl::Mutex mu_;
  struct Entry {
    PeerCred cred;
    ino_t inode;  // the socket's, to tell a reused fd number apart
  };
  std::map<int, Entry> creds_ ABSL_GUARDED_BY(mu_);
};

// How many connections the listener keeps (Config's max_connections and
// max_connections_per_uid): uids other than the agent's own and root share
// three quarters of `max_total`, at most `max_per_other_uid` each, so the
// agent's user always has a quarter to itself.
struct ConnectionLimits {
  size_t max_total = 256;
  size_t max_per_other_uid = 32;
};

class UnixListener {
 public:
  // Creates the socket's directory (0700) if needed, refuses when another
  // agent answers on `path`, removes a stale socket file, binds (0600) and
  // listens.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Bind(const std::string& path);
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;
  ~UnixListener();

  // Accepts connections on a thread, records their credentials in `peers`
  // and hands them to `server`.
  void Start(grpc::Server* server, PeerRegistry* peers, ConnectionLimits limits = {});
  // Stops accepting and removes the socket file.
  void Stop();
  const std::string& path() const { return path_; }

 private:
  UnixListener(std::string path, int fd, int wake_read, int wake_write)
      : path_(std::move(path)), fd_(fd), wake_read_(wake_read), wake_write_(wake_write) {}
  void AcceptLoop(grpc::Server* server, PeerRegistry* peers, ConnectionLimits limits);
  // Why a new connection from `uid` is refused, or null when it is not.
  static const char* Refusal(const PeerRegistry::Counts& counts, const ConnectionLimits& limits, bool trusted);

  std::string path_;
  int fd_;
  int wake_read_;
  int wake_write_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_LISTENER_H_
