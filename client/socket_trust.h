// Whether a client may talk to the socket at a path: the checks every client
// makes before it sends the agent anything (a PIN-less request can still
// carry a PKCS#12 file and its password). Without them, another local user
// who made the predictable default directory (/tmp/smime-agent-UID) first
// could serve a fake agent there and read what is sent to it.
#ifndef SMIME_CLIENT_SOCKET_TRUST_H_
#define SMIME_CLIENT_SOCKET_TRUST_H_

#include <string>

#include "absl/status/statusor.h"

namespace smime::client {

// Checks the socket at `path` and returns the path to connect to (`path`
// with its symbolic links resolved), or why not:
//   UNAVAILABLE when there is no socket or nothing answers on it;
//   PERMISSION_DENIED, naming the path and what is wrong, when
//   - a directory on the way belongs to someone other than the caller or
//     root, or others may write to it (a sticky one such as /tmp excepted);
//   - the socket's own directory, when it is the caller's, is open to group
//     or others at all (the agent makes it 0700), or, when it is root's, is
//     writable by them;
//   - the socket file belongs to someone other than the caller or root;
//   - the process serving it (SO_PEERCRED of a probe connection, closed
//     before returning) runs as someone other than the caller or root.
// "The caller" is the effective uid.
absl::StatusOr<std::string> CheckAgentSocket(const std::string& path);

}  // namespace smime::client

#endif  // SMIME_CLIENT_SOCKET_TRUST_H_
