// Agent settings from flags and an optional TOML file; flags win.
#ifndef SMIME_AGENT_DAEMON_CONFIG_H_
#define SMIME_AGENT_DAEMON_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

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
};

// Reads a TOML file whose keys are Config's field names. Unknown keys and
// wrong types are errors (a typo must not silently fall back to defaults).
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// Checks ranges and combinations (e.g. not both pin_file and pin_env).
absl::Status Validate(const Config& config);

}  // namespace smime::agent

#endif  // SMIME_AGENT_DAEMON_CONFIG_H_
