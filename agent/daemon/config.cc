#include "agent/daemon/config.h"

#include <toml++/toml.h>

#include <set>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace smime::agent {
namespace {

template <typename T>
constexpr const char* kTypeName = std::is_same_v<T, bool> ? "true or false"
                                  : std::is_same_v<T, std::string> ? "a string"
                                                                  : "an integer";

// value_exact, not value: toml++'s value<int64_t>() converts a float such as
// 1e41 with undefined behaviour, and would silently accept 4.7 as 4.
template <typename T>
absl::Status Read(const toml::table& t, const char* key, T* out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return absl::OkStatus();
  std::optional<T> v = n->value_exact<T>();
  if (!v) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"", key, "\" has the wrong type (it must be ", kTypeName<T>, ")"));
  }
  *out = *v;
  return absl::OkStatus();
}

}  // namespace

const std::vector<IntSetting>& IntSettings() {
  static const std::vector<IntSetting> kSettings = {
      {"max_sessions", &Config::max_sessions, 1, 256, "concurrent token sessions"},
      {"max_request_bytes", &Config::max_request_bytes, static_cast<int64_t>(kMinRequestBytes), int64_t{1} << 30,
       "largest single gRPC message (a unary request, or one chunk of a streamed one)"},
      {"max_message_bytes", &Config::max_message_bytes, 1024, int64_t{1} << 30,
       "largest message content to sign or encrypt (signed or encrypted input may be about 3/2 of it)"},
      {"drain_seconds", &Config::drain_seconds, 1, 600,
       "at shutdown, how long calls in flight may take before they are cancelled and abandoned"},
      {"max_connections", &Config::max_connections, 8, 65536,
       "connections at once (other uids than the agent's share three quarters of them)"},
      {"max_connections_per_uid", &Config::max_connections_per_uid, 1, 65536,
       "connections at once from one uid other than the agent's"},
      {"connection_idle_seconds", &Config::connection_idle_seconds, 1, 86400,
       "close a connection that has had no call for this long"},
      {"max_calls_per_client", &Config::max_calls_per_client, 1, 4096, "calls in flight from one client process"},
      {"stream_idle_seconds", &Config::stream_idle_seconds, 1, 3600,
       "cancel a streamed call that moves no data for this long"},
      {"max_bytes_in_flight", &Config::max_bytes_in_flight, 0, int64_t{1} << 40,
       "message bytes all streamed calls together may hold (0: four times the largest input)"},
  };
  return kSettings;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ":", where.line, ":", where.column,
                                                   ": ", std::string(e.description())));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read config ", path, ": ", e.what()));
  }
  std::set<std::string> known = {"module", "token", "pin_file", "pin_env", "socket", "data_dir",
                                 "log_level", "audit_log", "allow_final_pin_try"};
  for (const IntSetting& s : IntSettings()) known.insert(s.key);
  for (const auto& [key, value] : table) {
    if (!known.count(std::string(key.str()))) {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", path, ": unknown key \"", std::string(key.str()), "\""));
    }
  }
  if (table.contains("pin")) {
    return absl::InvalidArgumentError("PINs do not go in the config file; use pin_file or pin_env");
  }
  Config c;
  absl::Status st;
  for (auto [key, field] : std::initializer_list<std::pair<const char*, std::string*>>{
           {"module", &c.module}, {"token", &c.token}, {"pin_file", &c.pin_file},
           {"pin_env", &c.pin_env}, {"socket", &c.socket}, {"data_dir", &c.data_dir},
           {"log_level", &c.log_level}, {"audit_log", &c.audit_log}}) {
    if (st = Read(table, key, field); !st.ok()) return st;
  }
  for (const IntSetting& s : IntSettings()) {
    if (st = Read(table, s.key, &(c.*s.field)); !st.ok()) return st;
  }
  if (st = Read(table, "allow_final_pin_try", &c.allow_final_pin_try); !st.ok()) return st;
  return c;
}

absl::Status Validate(const Config& c) {
  if (!c.pin_file.empty() && !c.pin_env.empty()) {
    return absl::InvalidArgumentError("give either a PIN file or a PIN variable, not both");
  }
  if (!c.module.empty() && c.pin_file.empty() && c.pin_env.empty()) {
    return absl::InvalidArgumentError(
        "a token needs a PIN: pass --pin-file FILE or --pin-env VAR (or set pin_file/pin_env)");
  }
  if (c.max_request_bytes < static_cast<int64_t>(kMinRequestBytes) || c.max_request_bytes > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("max_request_bytes must be between ", HumanBytes(kMinRequestBytes),
                                                   " and 1 GiB (S/MIME data travels in ",
                                                   HumanBytes(kStreamChunkBytes), " chunks)"));
  }
  for (const IntSetting& s : IntSettings()) {
    if (c.*s.field < s.min || c.*s.field > s.max) {
      return absl::InvalidArgumentError(absl::StrCat(s.key, " must be between ", s.min, " and ", s.max));
    }
  }
  if (c.max_connections_per_uid > c.max_connections) {
    return absl::InvalidArgumentError("max_connections_per_uid must not be more than max_connections");
  }
  LogLevel level;
  if (!ParseLogLevel(c.log_level, &level)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level \"", c.log_level, "\"; use debug, info, warning or error"));
  }
  return absl::OkStatus();
}

}  // namespace smime::agent
