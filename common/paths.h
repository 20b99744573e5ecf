// Default locations shared by the agent and its clients.
#ifndef SMIME_COMMON_PATHS_H_
#define SMIME_COMMON_PATHS_H_

#include <string>

namespace smime {

// $XDG_RUNTIME_DIR/smime-agent/agent.sock, or, without XDG_RUNTIME_DIR, a
// per-uid directory in the system temporary directory
// ($TMPDIR or /tmp)/smime-agent-<uid>/agent.sock.
std::string DefaultSocketPath();

// $XDG_DATA_HOME/smime-agent, or ~/.local/share/smime-agent.
std::string DefaultDataDir();

// The environment variable clients read the socket path from.
inline constexpr const char* kSocketEnv = "SMIME_AGENT_SOCK";

}  // namespace smime

#endif  // SMIME_COMMON_PATHS_H_
