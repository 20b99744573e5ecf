// Agent settings from flags and an optional TOML file; flags win.
#ifndef SMIME_AGENT_DAEMON_CONFIG_H_
#define SMIME_AGENT_DAEMON_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/limits.h"

namespace smime::agent {

struct Config {
  std::string module;     // PKCS#11 module path or p11-kit name; empty: embedded store
  std::string token;      // label, serial or pkcs11: URI
  std::string pin_file;
  std::string pin_env;
  std::string socket;     // empty: DefaultSocketPath()
  std::string data_dir;   // embedded store; empty: DefaultDataDir()
  std::string log_level = "info";
  std::string audit_log;  // empty: audit lines go to stderr with the log
  int64_t max_sessions = 8;
  // Largest single gRPC message: a unary request, or the options or one data
  // chunk of a streamed S/MIME request (clients send data in chunks of
  // kStreamChunkBytes, so at least kMinRequestBytes).
  int64_t max_request_bytes = 4 << 20;
  // Largest message content to sign or encrypt; signed or encrypted input
  // (verify, decrypt) may be MaxEncodedBytes() of it (common/limits.h).
  int64_t max_message_bytes = static_cast<int64_t>(kDefaultMaxMessageBytes);
  bool allow_final_pin_try = false;
  // At shutdown, calls in flight get this long to finish; then they are
  // cancelled, and a handler that still does not return (a token call that
  // hangs) is abandoned: the agent exits anyway.
  int64_t drain_seconds = 10;
  // Connections at once; callers other than the agent's own uid share at
  // most three quarters of them, and each such uid at most
  // max_connections_per_uid, so the agent's user always has a way in.
  int64_t max_connections = 256;
  int64_t max_connections_per_uid = 32;
  // A connection with no call for this long is closed.
  int64_t connection_idle_seconds = 300;
  // Calls in flight from one client process (RESOURCE_EXHAUSTED beyond).
  int64_t max_calls_per_client = 32;
  // A streamed request or response (Sign, Verify, Encrypt, Decrypt) that
  // moves no data for this long is cancelled.
  int64_t stream_idle_seconds = 30;
  // Signed, encrypted or plain message bytes all streamed calls together may
  // hold (RESOURCE_EXHAUSTED beyond); 0: four times the largest input.
  int64_t max_bytes_in_flight = 0;
};

// One integer setting: its config key (and --flag, dashes for underscores),
// its field and its accepted range.
struct IntSetting {
  const char* key;
  int64_t Config::*field;
  int64_t min;
  int64_t max;
  const char* help;
};
const std::vector<IntSetting>& IntSettings();

// Reads a TOML file whose keys are Config's field names. Unknown keys and
// wrong types are errors (a typo must not silently fall back to defaults).
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// Checks ranges and combinations (e.g. not both pin_file and pin_env).
absl::Status Validate(const Config& config);

}  // namespace smime::agent

#endif  // SMIME_AGENT_DAEMON_CONFIG_H_
