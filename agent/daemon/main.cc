// smime-agent: keeps S/MIME private keys on a PKCS#11 token and serves key
// operations over gRPC on a private Unix socket.
#include <fcntl.h>
#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/grpcpp.h>
#include <openssl/provider.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "agent/rpc/audit.h"
#include "agent/rpc/call_limits.h"
#include "agent/daemon/config.h"
#include "agent/daemon/embedded_store.h"
#include "agent/rpc/lifecycle_service.h"
#include "agent/rpc/listener.h"
#include "agent/rpc/service.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/status_macros.h"
#include "tokens/module.h"
#include "tokens/pin.h"
#include "tokens/token.h"

#ifndef SMIME_SOFTHSM_MODULE
#define SMIME_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif
#ifndef SMIME_VERSION
#define SMIME_VERSION "0.0.0"
#endif

namespace smime::agent {
namespace {

int Fail(const absl::Status& status) {
  std::cerr << "smime-agent: " << status.message() << "\n";
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

absl::StatusOr<int> OpenAuditLog(const std::string& path) {
  if (path.empty()) return 2;
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open audit log ", path, ": ", std::strerror(errno)));
  }
  return fd;
}

// The command line over the settings file: each flag is bound to a field
// of Config, and a flag that was given replaces that field of the file's.
class FlagOverrides {
 public:
  explicit FlagOverrides(CLI::App* app) : app_(app) {}
  FlagOverrides(const FlagOverrides&) = delete;
  FlagOverrides& operator=(const FlagOverrides&) = delete;

  template <typename T>
  void Option(const std::string& name, T Config::*field, const std::string& help) {
    Bind(app_->add_option(name, given_.*field, help), field);
  }
  void Flag(const std::string& name, bool Config::*field, const std::string& help) {
    Bind(app_->add_flag(name, given_.*field, help), field);
  }
  void ApplyTo(Config& config) const {
    for (const auto& apply : apply_) apply(config);
  }

 private:
  template <typename T>
  void Bind(CLI::Option* opt, T Config::*field) {
    apply_.push_back([this, opt, field](Config& config) {
      if (opt->count() > 0) config.*field = given_.*field;
    });
  }

  CLI::App* app_;
  Config given_;
  std::vector<std::function<void(Config&)>> apply_;
};

// The PIN, and the private numbers of keys being imported, live in this
// process: no core dump may write them out, and no other process of the same
// user may read its memory (/proc/PID/mem, ptrace; only root still can). The
// secrets themselves sit in OpenSSL's secure heap, locked in memory.
absl::Status ProtectSecrets() {
  rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
    return absl::InternalError(absl::StrCat("cannot turn off core dumps: ", std::strerror(errno)));
  }
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return absl::InternalError(absl::StrCat("cannot make the process undumpable: ", std::strerror(errno)));
  }
  bool locked = false;
  RETURN_IF_ERROR(tokens::InitSecureHeap(size_t{256} << 10, &locked));
  if (!locked) {
    SMIME_LOG(kWarning, "secure_heap")
        .Kv("result", "not locked in memory (RLIMIT_MEMLOCK below 256 KiB); secrets may be swapped out");
  }
  return absl::OkStatus();
}

// Room for max_connections sockets beside the token's and gRPC's own files.
void RaiseFileLimit(int64_t max_connections) {
  rlimit fds;
  if (::getrlimit(RLIMIT_NOFILE, &fds) != 0) return;
  rlim_t want = static_cast<rlim_t>(max_connections) + 256;
  if (fds.rlim_cur >= want) return;
  fds.rlim_cur = std::min(want, fds.rlim_max);
  if (::setrlimit(RLIMIT_NOFILE, &fds) != 0 || fds.rlim_cur < want) {
    SMIME_LOG(kWarning, "file_limit")
        .Kv("result", absl::StrCat("only ", fds.rlim_cur, " open files allowed; max_connections needs ", want));
  }
}

int Run(int argc, char** argv) {
  CLI::App app{"smime-agent: S/MIME private keys on a PKCS#11 token, served over gRPC"};
  app.set_version_flag("--version", SMIME_VERSION);
  std::string config_file;
  app.add_option("--config", config_file, "TOML file with the settings below (flags win)");
  FlagOverrides flags(&app);
  flags.Option("--module", &Config::module,
               "PKCS#11 module path or p11-kit module name; "
               "none: the embedded SoftHSM store");
  flags.Option("--token", &Config::token, "token label, serial number or pkcs11: URI");
  flags.Option("--pin-file", &Config::pin_file, "file holding the user PIN (mode 0600)");
  flags.Option("--pin-env", &Config::pin_env, "environment variable holding the user PIN");
  flags.Option("--socket", &Config::socket, "Unix socket path (default: " + DefaultSocketPath() + ")");
  flags.Option("--data-dir", &Config::data_dir, "embedded store directory (default: " + DefaultDataDir() + ")");
  flags.Option("--log-level", &Config::log_level, "debug, info, warning or error");
  flags.Option("--audit-log", &Config::audit_log, "append audit lines to this file instead of stderr");
  for (const IntSetting& setting : IntSettings()) {
    flags.Option("--" + absl::StrReplaceAll(setting.key, {{"_", "-"}}), setting.field, setting.help);
  }
  flags.Flag("--allow-final-pin-try", &Config::allow_final_pin_try,
             "log in even when the token says a wrong PIN now locks it");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  Config config;
  if (!config_file.empty()) {
    auto loaded = LoadConfigFile(config_file);
    if (!loaded.ok()) return Fail(loaded.status());
    config = *loaded;
  }
  // Flags given on the command line win over the file.
  flags.ApplyTo(config);
  if (absl::Status st = Validate(config); !st.ok()) return Fail(st);
  LogLevel level;
  ParseLogLevel(config.log_level, &level);
  SetLogLevel(level);
  if (absl::Status st = ProtectSecrets(); !st.ok()) return Fail(st);
  RaiseFileLimit(config.max_connections);
  if (config.socket.empty()) config.socket = DefaultSocketPath();
  if (config.data_dir.empty()) config.data_dir = DefaultDataDir();

  // Debian's abseil is built with Mutex deadlock detection on, which keeps a
  // lock graph on every Lock (about 1% of the agent's CPU under load): a
  // debugging aid, not for a daemon on the request path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Signals are taken synchronously by this thread; every other thread
  // (gRPC's, the listener) inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // Old mail uses RC2 and 3DES: keep them readable. New mail only uses the
  // default provider's AES (the engine offers nothing weaker).
  // The providers are unloaded when Run returns, after everything declared
  // below (keys, contexts) is gone, so the agent exits with nothing of
  // OpenSSL's left allocated (LeakSanitizer checks that in CI).
  struct UnloadProvider {
    void operator()(OSSL_PROVIDER* p) const { OSSL_PROVIDER_unload(p); }
  };
  std::unique_ptr<OSSL_PROVIDER, UnloadProvider> legacy(OSSL_PROVIDER_load(nullptr, "legacy"));
  if (legacy == nullptr) {
    SMIME_LOG(kWarning, "legacy_provider").Kv("result", "not loaded; RC2 mail will not open");
  }
  std::unique_ptr<OSSL_PROVIDER, UnloadProvider> default_provider(OSSL_PROVIDER_load(nullptr, "default"));
  if (default_provider == nullptr) {
    return Fail(absl::InternalError("cannot load OpenSSL's default provider"));
  }

  auto audit_fd = OpenAuditLog(config.audit_log);
  if (!audit_fd.ok()) return Fail(audit_fd.status());
  AuditLog audit(*audit_fd);

  // Claim the socket first: a second agent stops before touching the token.
  auto listener = UnixListener::Bind(config.socket);
  if (!listener.ok()) return Fail(listener.status());

  std::shared_ptr<tokens::Module> module;
  tokens::TokenOptions token_options;
  token_options.max_sessions = static_cast<size_t>(config.max_sessions);
  tokens::SecretBuffer pin;
  if (config.module.empty()) {
    if (!config.pin_file.empty() || !config.pin_env.empty() || !config.token.empty()) {
      return Fail(absl::InvalidArgumentError(
          "--token/--pin-file/--pin-env need --module; without one the agent uses its embedded store"));
    }
    const char* softhsm = std::getenv("SMIME_AGENT_SOFTHSM_MODULE");
    auto store = OpenEmbeddedStore(config.data_dir, softhsm ? softhsm : SMIME_SOFTHSM_MODULE);
    if (!store.ok()) return Fail(store.status());
    SMIME_LOG(kWarning, "embedded_store")
        .Kv("dir", config.data_dir)
        .Kv("note", "SoftHSM store for trying out and tests; keys are protected by file permissions only");
    module = store->module;
    token_options.token = store->token_label;
    pin = std::move(store->pin);
  } else {
    auto loaded = tokens::Module::Load(config.module);
    if (!loaded.ok()) return Fail(loaded.status());
    module = *loaded;
    token_options.token = config.token;
    auto read = config.pin_file.empty() ? tokens::TakePinFromEnv(config.pin_env)
                                        : tokens::ReadPinFile(config.pin_file);
    if (!read.ok()) return Fail(read.status());
    pin = std::move(*read);
  }
  auto token = tokens::Token::Open(module, token_options);
  if (!token.ok()) return Fail(token.status());
  // One attempt only: a wrong PIN is reported and the agent stops, since
  // retrying would lock a real token.
  if (absl::Status st = (*token)->Login(std::move(pin), config.allow_final_pin_try); !st.ok()) {
    return Fail(st);
  }

  PeerRegistry peers;
  CallLimitOptions limit_options;
  limit_options.max_calls_per_client = static_cast<size_t>(config.max_calls_per_client);
  limit_options.stream_idle = absl::Seconds(config.stream_idle_seconds);
  limit_options.max_bytes_in_flight = config.max_bytes_in_flight > 0
                                          ? static_cast<size_t>(config.max_bytes_in_flight)
                                          : 4 * MaxEncodedBytes(static_cast<size_t>(config.max_message_bytes));
  CallLimits limits(limit_options);
  ServiceOptions service_options;
  service_options.max_message_bytes = static_cast<size_t>(config.max_message_bytes);
  service_options.limits = &limits;
  CertificateImporter importer(token->get());
  AgentService service(token->get(), &importer, &peers, &audit, service_options);
  LifecycleService lifecycle(token->get(), &importer, &peers, &audit);
  lifecycle.SetLimits(&limits);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  builder.RegisterService(&lifecycle);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_request_bytes));
  // A thread per call in flight, at most one per allowed connection: past
  // that, gRPC answers RESOURCE_EXHAUSTED instead of starting more.
  grpc::ResourceQuota quota("smime-agent");
  quota.SetMaxThreads(static_cast<int>(config.max_connections));
  builder.SetResourceQuota(quota);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(std::min<int64_t>(config.connection_idle_seconds * 1000, INT32_MAX)));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, static_cast<int>(config.max_calls_per_client));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return Fail(absl::InternalError("gRPC server failed to start"));
  server->GetHealthCheckService()->SetServingStatus(true);
  (*listener)->Start(server.get(), &peers,
                     ConnectionLimits{static_cast<size_t>(config.max_connections),
                                      static_cast<size_t>(config.max_connections_per_uid)});
  SMIME_LOG(kInfo, "ready")
      .Kv("socket", config.socket)
      .Kv("token", (*token)->label())
      .Kv("keys", (*token)->Keys()->size())
      .Kv("pid", ::getpid());

  int sig = 0;
  while (sigwait(&signals, &sig) == 0) {
    if (sig == SIGHUP) {
      // Re-read the token's keys (e.g. after pkcs11-tool added one).
      absl::Status st = (*token)->Refresh();
      SMIME_LOG(kInfo, "reload").Kv("result", st.ok() ? "OK" : std::string(st.message()));
      continue;
    }
    break;
  }
  SMIME_LOG(kInfo, "shutdown").Kv("signal", strsignal(sig));
  (*listener)->Stop();  // no new connections; socket file removed
  server->GetHealthCheckService()->SetServingStatus(false);
  // gRPC cancels the calls still running at the drain deadline, then waits
  // for their handlers to return. One that never does (a token call that
  // hangs) must not keep the agent from stopping: a watchdog ends the process
  // a little after the deadline, without the logout (the session belongs to
  // the hung call's thread; closing the process ends it on the token).
  const auto drain = std::chrono::seconds(config.drain_seconds);
  std::thread([drain] {
    std::this_thread::sleep_for(drain + std::chrono::seconds(2));
    SMIME_LOG(kError, "drain_deadline_passed")
        .Kv("drain_seconds", std::chrono::duration_cast<std::chrono::seconds>(drain).count())
        .Kv("note", "a call did not return after it was cancelled; exiting without waiting for it");
    std::_Exit(1);
  }).detach();
  server->Shutdown(std::chrono::system_clock::now() + drain);
  server->Wait();
  (*token)->Logout();
  token->reset();
  module.reset();
  SMIME_LOG(kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace smime::agent

int main(int argc, char** argv) { return smime::agent::Run(argc, argv); }
