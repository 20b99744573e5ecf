// smime-agent-bench: what the agent costs. Runs the same private-key
// operations on one SoftHSM token twice in one run, in-process through
// PKCS#11 (tokens::Token) and through the real agent over its Unix socket
// (client::AgentClient), at several numbers of concurrent clients, and
// reports throughput, p50/p99 latency, the agent/in-process throughput ratio
// and the latency the agent adds (STYLE.md §13, docs/PERFORMANCE.md).
//
// Machines and tokens differ; the ratio is what the agent costs, so both
// paths run back to back on the same keys of the same token. A custom
// harness rather than Google Benchmark: latency percentiles have to be taken
// over the samples of all concurrent clients together.
//
// Nothing is set up by hand: the token is made by softhsm-config/
// make-token.sh in a temporary directory, the keys are generated on it, and
// the agent binary is started as a child process on a socket in that
// directory. All of it is removed at the end.

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>  // before cms.h
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <latch>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/module.h"
#include "tokens/ossl.h"
#include "tokens/pin.h"
#include "tokens/token.h"
#include "tests/bench/provider_cms.h"

#ifndef SMIME_SOURCE_DIR
#error "SMIME_SOURCE_DIR must name the source tree (set in tests/bench/CMakeLists.txt)"
#endif
#ifndef SMIME_AGENT_BIN
#error "SMIME_AGENT_BIN must name the built smime-agent (set in tests/bench/CMakeLists.txt)"
#endif
#ifndef SMIME_SOFTHSM_MODULE
#define SMIME_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

namespace smime::bench {
namespace {

namespace v1 = ::smime::agent::v1;
using Clock = std::chrono::steady_clock;

constexpr char kTokenLabel[] = "bench";
constexpr char kRsaLabel[] = "bench-rsa";
constexpr char kEcLabel[] = "bench-p256";
// What RSA key transport carries in CMS: an AES-256 content-encryption key.
constexpr size_t kSecretBytes = 32;
// Both paths use the same session cap, so neither gets more token
// parallelism than the other.
constexpr size_t kMaxSessions = 8;
// Per call; a call that takes this long means something is broken.
constexpr absl::Duration kCallTimeout = absl::Seconds(10);
constexpr absl::Duration kAgentStartTimeout = absl::Seconds(30);
constexpr absl::Duration kAgentStopTimeout = absl::Seconds(10);

// The figures the agent is held to (the issue that asked for this benchmark).
constexpr double kMinRsaSignRatioAt2Clients = 0.95;
constexpr double kMaxP256AddedP50Us = 100.0;
constexpr double kMinSmimeSign4kRatio = 0.9;

// Set by SIGINT or SIGTERM. The run then stops at the end of the current
// cell and still stops the agent and removes its temporary directory.
std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "used in a signal handler");

void RequestStop(int /*signal*/) { stop_requested.store(true); }

struct Options {
  double seconds = 1.0;
  std::vector<int> clients = {1, 2, 8};
  // Operations to run, by name; empty runs all.
  std::vector<std::string> ops;
  int warmup_ops = 5;
  int64_t max_ops = 1'000'000;
  // Size of the one-shot large-message S/MIME run (0: skip it).
  int large_mib = 50;
  bool json = false;
  std::string module = SMIME_SOFTHSM_MODULE;
  std::string agent = SMIME_AGENT_BIN;
  std::string make_token = SMIME_SOURCE_DIR "/softhsm-config/make-token.sh";
};

// ---------------------------------------------------------------------------
// Processes and files.

// A fresh private directory under $TMPDIR (or /tmp), removed with its
// contents on destruction.
class TempDir {
 public:
  static absl::StatusOr<std::unique_ptr<TempDir>> Create() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp", "/smime-agent-bench.XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("cannot create a temporary directory ",
                                                        pattern, ": ", std::strerror(errno),
                                                        "; set TMPDIR to a writable directory"));
    }
    return std::unique_ptr<TempDir>(new TempDir(std::move(pattern)));
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (ec) {
      std::cerr << "smime-agent-bench: cannot remove " << path_ << ": " << ec.message() << "\n";
    }
  }

  const std::string& path() const { return path_; }
  std::string File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Starts `args[0]` with arguments `args` and this process's environment.
// With `quiet_stdout` the child's stdout goes to /dev/null; stderr stays
// ours, so its complaints reach the user.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, bool quiet_stdout) {
  if (::access(args[0].c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot execute ", args[0], ": ", std::strerror(errno)));
  }
  // Built before fork: between fork and exec the child may only make
  // async-signal-safe calls.
  std::vector<std::string> storage = args;
  std::vector<char*> argv;
  for (std::string& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // If the benchmark dies (a crash, ^C), its agent must not linger on the
    // token and the socket.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    if (quiet_stdout) {
      int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      if (null_fd >= 0) ::dup2(null_fd, STDOUT_FILENO);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits until `pid` exits or `deadline` passes. Returns its exit code
// (128+N when killed by signal N), or nullopt if it still runs.
std::optional<int> WaitExit(pid_t pid, absl::Time deadline) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    if (r < 0 && errno != EINTR) return -1;  // not our child any more
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

absl::Status RunToCompletion(const std::vector<std::string>& args, absl::Duration timeout) {
  ASSIGN_OR_RETURN(pid_t pid, Spawn(args, /*quiet_stdout=*/true));
  std::optional<int> code = WaitExit(pid, absl::Now() + timeout);
  if (!code) {
    ::kill(pid, SIGKILL);
    WaitExit(pid, absl::InfiniteFuture());
    return absl::DeadlineExceededError(
        absl::StrCat(args[0], " did not finish in ", absl::FormatDuration(timeout)));
  }
  if (*code != 0) {
    return absl::InternalError(
        absl::StrCat(args[0], " failed with exit code ", *code, " (its stderr is above)"));
  }
  return absl::OkStatus();
}

// The real agent binary as a child process; stopped (SIGTERM) on
// destruction at the latest.
class AgentProcess {
 public:
  // Starts the agent and waits, with a deadline, until its health service
  // says SERVING on `socket`.
  static absl::StatusOr<std::unique_ptr<AgentProcess>> Start(const std::vector<std::string>& args,
                                                             const std::string& socket) {
    ASSIGN_OR_RETURN(pid_t pid, Spawn(args, /*quiet_stdout=*/false));
    std::unique_ptr<AgentProcess> agent(new AgentProcess(pid));
    const absl::Time deadline = absl::Now() + kAgentStartTimeout;
    absl::Status last = absl::DeadlineExceededError("no socket yet");
    while (absl::Now() < deadline) {
      if (std::optional<int> code = WaitExit(pid, absl::Now())) {
        agent->pid_ = -1;
        return absl::FailedPreconditionError(absl::StrCat("the agent exited with code ", *code,
                                                          " before serving (its stderr is above)"));
      }
      // The agent binds its socket before it opens the token, so the file
      // appears early; WaitReady then waits for the gRPC server.
      struct stat st;
      if (::stat(socket.c_str(), &st) == 0) {
        auto client = client::AgentClient::Connect(socket);
        if (client.ok()) {
          // Short slices, so an agent that dies while starting is noticed.
          last = (*client)->WaitReady(absl::Milliseconds(250));
          if (last.ok()) return agent;
          continue;
        }
        last = client.status();
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("the agent did not serve on ", socket, " within ",
                     absl::FormatDuration(kAgentStartTimeout), ": ", last.message()));
  }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;
  ~AgentProcess() { Stop(); }

  pid_t pid() const { return pid_; }

  // SIGTERM, then SIGKILL if it has not exited in time. Returns the exit
  // code (0 for a clean shutdown; 128+N if killed by signal N).
  int Stop() {
    if (pid_ < 0) return exit_code_;
    ::kill(pid_, SIGTERM);
    std::optional<int> code = WaitExit(pid_, absl::Now() + kAgentStopTimeout);
    if (!code) {
      std::cerr << "smime-agent-bench: the agent ignored SIGTERM for "
                << absl::FormatDuration(kAgentStopTimeout) << "; killing it\n";
      ::kill(pid_, SIGKILL);
      code = WaitExit(pid_, absl::InfiniteFuture());
    }
    pid_ = -1;
    exit_code_ = code.value_or(-1);
    return exit_code_;
  }

 private:
  explicit AgentProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  int exit_code_ = -1;
};

// ---------------------------------------------------------------------------
// The operations and their checks.

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return SslError(absl::StatusCode::kInternal, "RAND_bytes");
  }
  return out;
}

// Checks `signature` over the SHA-256 `digest` with the public key, the way
// a relying party would (PKCS#1 v1.5 for RSA, DER ECDSA-Sig-Value for EC).
absl::Status VerifySignature(EVP_PKEY* public_key, absl::string_view digest,
                             absl::string_view signature) {
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, public_key, nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot set up signature verification");
  }
  if (EVP_PKEY_get_base_id(public_key) == EVP_PKEY_RSA &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot select PKCS#1 v1.5 padding");
  }
  if (EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                      signature.size(), reinterpret_cast<const unsigned char*>(digest.data()),
                      digest.size()) != 1) {
    return SslError(absl::StatusCode::kDataLoss, "the signature does not verify");
  }
  return absl::OkStatus();
}

// RSAES-PKCS1-v1_5 encryption in software, as a sender's mail client does.
absl::StatusOr<std::string> EncryptPkcs1(EVP_PKEY* public_key, absl::string_view plaintext) {
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, public_key, nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot set up RSA encryption");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(plaintext.data());
  size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, in, plaintext.size()) != 1) {
    return SslError(absl::StatusCode::kInternal, "RSA encryption");
  }
  std::string out(len, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in,
                       plaintext.size()) != 1) {
    return SslError(absl::StatusCode::kInternal, "RSA encryption");
  }
  out.resize(len);
  return out;
}

// One operation, runnable both ways on the same key.
struct Workload {
  std::string name;       // e.g. "rsa2048-sign"
  std::string mechanism;  // e.g. "rsa-pkcs1-sha256"
  // One call in-process. tokens::Token is thread-safe (a session pool), so
  // every client thread shares it, as the agent's handler threads do.
  std::function<absl::StatusOr<std::string>()> in_process;
  // One call through the agent on the calling client's connection.
  std::function<absl::StatusOr<std::string>(client::AgentClient&)> agent;
  // Checks a result, so a broken path cannot produce numbers.
  std::function<absl::Status(const std::string&)> check;
};

absl::StatusOr<std::vector<Workload>> MakeWorkloads(tokens::Token* token,
                                                    std::shared_ptr<const tokens::Key> rsa,
                                                    std::shared_ptr<const tokens::Key> ec) {
  if (rsa->public_key() == nullptr || ec->public_key() == nullptr) {
    return absl::InternalError("the generated keys have no public key on the token");
  }
  // Sign a digest as CMS does: SHA-256 of the signed attributes.
  ASSIGN_OR_RETURN(std::string digest, RandomBytes(32));
  ASSIGN_OR_RETURN(std::string secret, RandomBytes(kSecretBytes));
  ASSIGN_OR_RETURN(std::string ciphertext, EncryptPkcs1(rsa->public_key(), secret));

  auto deadline = [] { return absl::Now() + kCallTimeout; };
  std::vector<Workload> out;

  const v1::KeySelector rsa_selector = client::TextSelector(kRsaLabel);
  out.push_back(Workload{
      "rsa2048-sign", tokens::SignMechanismName(tokens::SignMechanism::kRsaPkcs1Sha256),
      [=] { return token->Sign(*rsa, tokens::SignMechanism::kRsaPkcs1Sha256, digest, deadline()); },
      [=](client::AgentClient& c) {
        return c.SignDigest(rsa_selector, v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, digest);
      },
      [=](const std::string& sig) { return VerifySignature(rsa->public_key(), digest, sig); }});

  const v1::KeySelector ec_selector = client::TextSelector(kEcLabel);
  out.push_back(Workload{
      "p256-sign", tokens::SignMechanismName(tokens::SignMechanism::kEcdsaSha256),
      [=] { return token->Sign(*ec, tokens::SignMechanism::kEcdsaSha256, digest, deadline()); },
      [=](client::AgentClient& c) {
        return c.SignDigest(ec_selector, v1::SIGNATURE_ALGORITHM_ECDSA_SHA256, digest);
      },
      [=](const std::string& sig) { return VerifySignature(ec->public_key(), digest, sig); }});

  out.push_back(Workload{
      "rsa2048-decrypt", tokens::DecryptMechanismName(tokens::DecryptMechanism::kRsaPkcs1),
      [=] {
        return token->Decrypt(*rsa, tokens::DecryptMechanism::kRsaPkcs1, ciphertext, deadline());
      },
      [=](client::AgentClient& c) {
        return c.DecryptKey(rsa_selector, v1::DECRYPT_PADDING_RSA_PKCS1, ciphertext);
      },
      [=](const std::string& plaintext) {
        return plaintext == secret
                   ? absl::OkStatus()
                   : absl::DataLossError("the decrypted key differs from the one encrypted");
      }});

  // A baseline without any token call: through the agent it costs the
  // transport, authorization and handler framework alone, the floor under
  // every key operation's added latency.
  auto sorted_labels = [](std::vector<std::string> labels) {
    std::sort(labels.begin(), labels.end());
    return absl::StrJoin(labels, ",");
  };
  // The keys on the token when the run starts: ours and the test keys
  // make-token.sh imported.
  std::vector<std::string> labels_at_start;
  for (const auto& key : *token->Keys()) labels_at_start.push_back(key->label());
  const std::string expected_labels = sorted_labels(std::move(labels_at_start));
  if (!absl::StrContains(expected_labels, kRsaLabel) || !absl::StrContains(expected_labels, kEcLabel)) {
    return absl::InternalError(absl::StrCat("the token lists ", expected_labels,
                                            ", without the generated keys"));
  }
  auto list_in_process = [=]() -> absl::StatusOr<std::string> {
    std::vector<std::string> labels;
    for (const auto& key : *token->Keys()) labels.push_back(key->label());
    return sorted_labels(std::move(labels));
  };
  auto list_via_agent = [=](client::AgentClient& c) -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(std::vector<v1::KeyInfo> keys, c.ListKeys());
    std::vector<std::string> labels;
    for (const v1::KeyInfo& key : keys) labels.push_back(key.label());
    return sorted_labels(std::move(labels));
  };
  auto check_labels = [=](const std::string& labels) {
    if (labels == expected_labels) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("expected keys ", expected_labels, ", got ", labels));
  };
  out.push_back(
      Workload{"list-keys", "no token call", list_in_process, list_via_agent, check_labels});
  return out;
}

// S/MIME: a whole message signed or decrypted, through the agent (its CMS
// engine, the key on the token) and in-process as an application would do
// it without the agent (OpenSSL CMS with the key through pkcs11-provider),
// on the same token's "alice" (RSA-2048 with a certificate from the test CA).
struct SmimeFixture {
  std::unique_ptr<ProviderCms> provider;
  std::shared_ptr<EVP_PKEY> key;  // alice through pkcs11-provider
  std::shared_ptr<X509> cert;     // alice's certificate
  std::shared_ptr<X509> ca;
};

absl::StatusOr<std::shared_ptr<X509>> ReadCertFile(const std::string& path) {
  SslPtr<BIO> bio(BIO_new_file(path.c_str(), "r"));
  X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (cert == nullptr) {
    return SslError(absl::StatusCode::kFailedPrecondition, absl::StrCat("cannot read ", path));
  }
  return std::shared_ptr<X509>(cert, X509_free);
}

// A text/plain MIME entity of `size` bytes with CRLF lines, as S/MIME signs.
std::string MakeEntity(size_t size) {
  std::string out = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
  const std::string line = "The quick brown fox jumps over the lazy dog, 0123456789.\r\n";
  while (out.size() + line.size() <= size) out += line;
  out.append(size - out.size() > 2 ? size - out.size() - 2 : 0, 'x');
  if (out.size() + 2 <= size) out += "\r\n";
  return out;
}

// Checks a signed message with OpenSSL's default provider against the CA.
absl::Status CheckSigned(const SmimeFixture& fx, const std::string& smime,
                         const std::string& entity) {
  SslPtr<BIO> in(BIO_new_mem_buf(smime.data(), static_cast<int>(smime.size())));
  BIO* content = nullptr;
  CMS_ContentInfo* cms = SMIME_read_CMS(in.get(), &content);
  SslPtr<BIO> content_owner(content);
  if (cms == nullptr) return SslError(absl::StatusCode::kDataLoss, "signed output does not parse");
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, fx.ca.get());
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  int ok = CMS_verify(cms, nullptr, store, content, out.get(), CMS_BINARY);
  CMS_ContentInfo_free(cms);
  X509_STORE_free(store);
  if (ok != 1) return SslError(absl::StatusCode::kDataLoss, "signature does not verify");
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  if (std::string(data, static_cast<size_t>(len)) != entity) {
    return absl::DataLossError("the verified content differs from the message signed");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> EncryptTo(X509* cert, const std::string& entity) {
  SslPtr<BIO> in(BIO_new_mem_buf(entity.data(), static_cast<int>(entity.size())));
  STACK_OF(X509)* recipients = sk_X509_new_null();
  sk_X509_push(recipients, cert);
  CMS_ContentInfo* cms = CMS_encrypt(recipients, in.get(), EVP_aes_256_cbc(), CMS_BINARY);
  sk_X509_free(recipients);
  if (cms == nullptr) return SslError(absl::StatusCode::kInternal, "CMS_encrypt");
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  int ok = SMIME_write_CMS(out.get(), cms, nullptr, CMS_BINARY);
  CMS_ContentInfo_free(cms);
  if (ok != 1) return SslError(absl::StatusCode::kInternal, "SMIME_write_CMS");
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::vector<Workload>> MakeSmimeWorkloads(std::shared_ptr<const SmimeFixture> fx) {
  std::vector<Workload> out;
  const v1::KeySelector alice = client::TextSelector("alice");
  for (const auto& [size, suffix] : {std::pair<size_t, const char*>{4 << 10, "4k"},
                                     std::pair<size_t, const char*>{1 << 20, "1m"}}) {
    auto entity = std::make_shared<const std::string>(MakeEntity(size));
    v1::SignOptions sign_options;
    *sign_options.mutable_key() = alice;
    out.push_back(Workload{
        absl::StrCat("smime-sign-", suffix), "cms rsa-pkcs1-sha256",
        [=] { return fx->provider->Sign(fx->key.get(), fx->cert.get(), *entity); },
        [=](client::AgentClient& c) { return c.SignMessage(sign_options, *entity); },
        [=](const std::string& smime) { return CheckSigned(*fx, smime, *entity); }});

    ASSIGN_OR_RETURN(std::string encrypted, EncryptTo(fx->cert.get(), *entity));
    auto ciphertext = std::make_shared<const std::string>(std::move(encrypted));
    out.push_back(Workload{
        absl::StrCat("smime-decrypt-", suffix), "cms aes256-cbc rsa-pkcs1",
        [=] { return fx->provider->Decrypt(fx->key.get(), fx->cert.get(), *ciphertext); },
        [=](client::AgentClient& c) -> absl::StatusOr<std::string> {
          ASSIGN_OR_RETURN(client::AgentClient::Decrypted d, c.DecryptMessage(*ciphertext));
          return std::move(d.content);
        },
        [=](const std::string& plain) {
          return plain == *entity ? absl::OkStatus()
                                  : absl::DataLossError("the decrypted message differs");
        }});
  }
  return out;
}

// ---------------------------------------------------------------------------
// The harness.

enum class Path { kInProcess, kAgent };

const char* PathName(Path path) { return path == Path::kInProcess ? "in_process" : "agent"; }

struct CellResult {
  std::string operation;
  std::string mechanism;
  Path path = Path::kInProcess;
  int clients = 0;
  int64_t ops = 0;
  double seconds = 0;
  double ops_per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  // CPU time per operation spent by this process (the client threads, and
  // on the in-process path the token's work too) and by the agent process.
  double bench_cpu_us_per_op = 0;
  double agent_cpu_us_per_op = 0;
};

// gRPC lets channels with equal target and arguments share one connection
// (its global subchannel pool), so AgentClients made for one socket path
// would all multiplex over a single connection. A symlink to the socket per
// client gives each client a target, hence a connection, of its own, as
// separate client processes have.
absl::StatusOr<std::vector<std::string>> MakeClientSocketLinks(const TempDir& dir,
                                                               const std::string& socket,
                                                               int count) {
  const std::string links_dir = dir.File("clients");
  if (::mkdir(links_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("cannot create ", links_dir, ": ", std::strerror(errno)));
  }
  std::vector<std::string> links;
  for (int i = 0; i < count; ++i) {
    std::string link = absl::StrCat(links_dir, "/", i, ".sock");
    if (::symlink(socket.c_str(), link.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("cannot create ", link, ": ", std::strerror(errno)));
    }
    links.push_back(std::move(link));
  }
  return links;
}

// One client's way to call the workload: for the agent path its own
// AgentClient on its own connection.
using ClientCall = std::function<absl::StatusOr<std::string>()>;

absl::StatusOr<ClientCall> MakeClientCall(const Workload& workload, Path path,
                                          const std::string& socket) {
  if (path == Path::kInProcess) return ClientCall(workload.in_process);
  auto connected = client::AgentClient::Connect(socket, kCallTimeout);
  if (!connected.ok()) return connected.status();
  std::shared_ptr<client::AgentClient> agent_client = std::move(*connected);
  return ClientCall([agent_client, &workload] { return workload.agent(*agent_client); });
}

// Nearest-rank percentile of sorted samples.
double PercentileUs(const std::vector<int64_t>& sorted_ns, double q) {
  if (sorted_ns.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted_ns.size())));
  return static_cast<double>(sorted_ns[std::clamp<size_t>(rank, 1, sorted_ns.size()) - 1]) / 1000.0;
}

// CPU time used so far by all threads of process `pid` (0: this process),
// zero if it cannot be read. Per-operation CPU cost shows whether a slower
// path spends more work or only waits more.
absl::Duration ProcessCpuTime(pid_t pid) {
  clockid_t clock = CLOCK_PROCESS_CPUTIME_ID;
  if (pid != 0 && ::clock_getcpuclockid(pid, &clock) != 0) return absl::ZeroDuration();
  timespec ts;
  if (::clock_gettime(clock, &ts) != 0) return absl::ZeroDuration();
  return absl::DurationFromTimespec(ts);
}

struct ClientState {
  std::vector<int64_t> latencies_ns;
  absl::Status status;
  Clock::time_point end;
};

// The body of one client thread between warm-up and teardown: calls until
// `deadline` or `max_calls`, recording each call's latency.
void TimedCalls(const ClientCall& call, int64_t max_calls, Clock::time_point deadline,
                ClientState& state) {
  for (int64_t n = 0; n < max_calls; ++n) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<std::string> result = call();
    const Clock::time_point t1 = Clock::now();
    if (!result.ok()) {
      state.status = result.status();
      break;
    }
    state.latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    if (t1 >= deadline || stop_requested.load(std::memory_order_relaxed)) break;
  }
  state.end = Clock::now();
}

// Runs `workload` on `clients` threads at once for `options.seconds` (or
// until options.max_ops calls in all), after an untimed warm-up in which each
// client connects and checks every result. `agent_pid` is the agent's
// process, whose CPU time is charged to the cell alongside this process's.
absl::StatusOr<CellResult> RunCell(const Workload& workload, Path path, int clients,
                                   const Options& options,
                                   const std::vector<std::string>& client_sockets,
                                   pid_t agent_pid) {
  const int64_t max_calls_per_client = std::max<int64_t>(1, options.max_ops / clients);
  // Room for ~30k calls/s per client (P-256 in-process is ~20k/s), so that
  // the vector does not grow while the clock runs.
  const auto reserve = static_cast<size_t>(
      std::min<double>(static_cast<double>(max_calls_per_client), options.seconds * 30000 + 1000));
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));

  std::vector<ClientState> states(static_cast<size_t>(clients));
  // Phases: every client warmed up -> go -> every client done -> CPU time
  // read -> teardown (closing connections is not part of the cell).
  std::latch warmed_up(clients);
  std::latch go(1);
  std::latch done(clients);
  std::latch teardown(1);
  Clock::time_point deadline;  // written before `go` opens, read after
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      ClientState& state = states[static_cast<size_t>(i)];
      absl::StatusOr<ClientCall> call =
          MakeClientCall(workload, path, client_sockets[static_cast<size_t>(i)]);
      state.status = call.status();
      for (int k = 0; state.status.ok() && k < options.warmup_ops; ++k) {
        absl::StatusOr<std::string> result = (*call)();
        state.status = result.ok() ? workload.check(*result) : result.status();
      }
      state.latencies_ns.reserve(reserve);
      warmed_up.count_down();
      go.wait();
      if (state.status.ok()) TimedCalls(*call, max_calls_per_client, deadline, state);
      done.count_down();
      teardown.wait();
    });
  }
  warmed_up.wait();
  const absl::Duration own_cpu_start = ProcessCpuTime(0);
  const absl::Duration agent_cpu_start = ProcessCpuTime(agent_pid);
  const Clock::time_point start = Clock::now();
  deadline = start + duration;
  go.count_down();
  done.wait();
  const absl::Duration own_cpu = ProcessCpuTime(0) - own_cpu_start;
  const absl::Duration agent_cpu = ProcessCpuTime(agent_pid) - agent_cpu_start;
  teardown.count_down();
  for (std::thread& t : threads) t.join();

  CellResult cell;
  cell.operation = workload.name;
  cell.mechanism = workload.mechanism;
  cell.path = path;
  cell.clients = clients;
  std::vector<int64_t> all;
  Clock::time_point end = start;
  for (size_t i = 0; i < states.size(); ++i) {
    if (!states[i].status.ok()) {
      return absl::Status(states[i].status.code(),
                          absl::StrCat(workload.name, " via ", PathName(path), ", client ", i + 1,
                                       " of ", clients, ": ", states[i].status.message()));
    }
    all.insert(all.end(), states[i].latencies_ns.begin(), states[i].latencies_ns.end());
    end = std::max(end, states[i].end);
  }
  std::sort(all.begin(), all.end());
  cell.ops = static_cast<int64_t>(all.size());
  cell.seconds = std::chrono::duration<double>(end - start).count();
  cell.ops_per_second = cell.seconds > 0 ? static_cast<double>(cell.ops) / cell.seconds : 0;
  cell.p50_us = PercentileUs(all, 0.50);
  cell.p99_us = PercentileUs(all, 0.99);
  if (cell.ops > 0) {
    cell.bench_cpu_us_per_op = absl::ToDoubleMicroseconds(own_cpu) / static_cast<double>(cell.ops);
    cell.agent_cpu_us_per_op =
        absl::ToDoubleMicroseconds(agent_cpu) / static_cast<double>(cell.ops);
  }
  return cell;
}

// ---------------------------------------------------------------------------
// Report.

struct Comparison {
  const CellResult* in_process;
  const CellResult* agent;
  double ratio() const {
    return in_process->ops_per_second > 0 ? agent->ops_per_second / in_process->ops_per_second : 0;
  }
  double added_p50_us() const { return agent->p50_us - in_process->p50_us; }
};

struct Target {
  std::string name;
  std::string description;
  std::optional<double> value;  // unset when the cell was not measured
  double threshold;
  bool at_least;  // true: value >= threshold; false: value <= threshold
  std::optional<bool> met() const {
    if (!value) return std::nullopt;
    return at_least ? *value >= threshold : *value <= threshold;
  }
};

struct Environment {
  std::string date;
  std::string command;
  std::string arch;
  std::string kernel;
  std::string cpu_model;
  int cpus = 0;
  // 1, 5 and 15 minute load averages when the run started: other work on
  // the machine skews the figures, and this shows whether there was any.
  std::string load_average;
  std::string softhsm;
};

std::string ShellQuote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_./=:,+@%") == std::string::npos) {
    return arg;
  }
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

Environment DescribeEnvironment(int argc, char** argv, const tokens::Module& module) {
  Environment env;
  env.date = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  std::vector<std::string> args(argv, argv + argc);
  for (std::string& a : args) a = ShellQuote(a);
  env.command = absl::StrJoin(args, " ");
  utsname uts;
  if (::uname(&uts) == 0) {
    env.arch = uts.machine;
    env.kernel = absl::StrCat(uts.sysname, " ", uts.release);
  }
  // What nproc prints: the CPUs this process may run on.
  cpu_set_t set;
  CPU_ZERO(&set);
  env.cpus = ::sched_getaffinity(0, sizeof(set), &set) == 0
                 ? CPU_COUNT(&set)
                 : static_cast<int>(std::thread::hardware_concurrency());
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      env.cpu_model = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::ifstream loadavg("/proc/loadavg");
  std::string one, five, fifteen;
  if (loadavg >> one >> five >> fifteen) {
    env.load_average = absl::StrCat(one, " ", five, " ", fifteen);
  }
  CK_INFO info;
  if (P11_CALL(module, C_GetInfo, &info).ok()) {
    env.softhsm = absl::StrFormat(
        "%s %d.%d (%s)", tokens::TrimPadded(info.manufacturerID, sizeof(info.manufacturerID)),
        info.libraryVersion.major, info.libraryVersion.minor,
        tokens::TrimPadded(info.libraryDescription, sizeof(info.libraryDescription)));
  }
  return env;
}

double Round(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

// Column headers are written with "us" and shown with "µs": absl::StrFormat
// pads by bytes, and "µ" takes two.
std::string Micro(std::string text) { return absl::StrReplaceAll(text, {{"us", "µs"}}); }

std::string Centered(absl::string_view text, size_t width) {
  if (text.size() >= width) return std::string(text);
  const size_t left = (width - text.size()) / 2;
  return absl::StrCat(std::string(left, ' '), text, std::string(width - text.size() - left, ' '));
}

std::string FormatTargetValue(const Target& t) {
  if (!t.value) return "-";
  return t.at_least ? absl::StrFormat("%.3f", *t.value) : absl::StrFormat("%+.1f µs", *t.value);
}

void PrintTable(const Environment& env, const Options& options,
                const std::vector<Comparison>& comparisons, const std::vector<Target>& targets) {
  std::cout
      << "smime-agent-bench: key operations through the agent vs in-process, one SoftHSM token\n"
      << "date:     " << env.date << "\n"
      << "command:  " << env.command << "\n"
      << "machine:  " << env.arch << ", " << env.cpus << " CPUs (nproc)"
      << (env.cpu_model.empty() ? "" : ", " + env.cpu_model) << ", " << env.kernel
      << ", load average " << env.load_average << "\n"
      << "token:    " << env.softhsm << ", file store, token \"" << kTokenLabel << "\", "
      << kMaxSessions << " sessions per process\n"
      << "per cell: " << options.seconds << " s after " << options.warmup_ops
      << " checked warm-up calls per client; each agent client has its own connection\n\n";

  // operation, mechanism, clients | in-process | agent | comparison
  constexpr char kRow[] = "%-16s %-17s %7s |%10s%9s%9s |%10s%9s%9s |%8s%10s\n";
  std::cout << absl::StrFormat("%-42s |%s |%s |%s\n", "", Centered("in-process", 28),
                               Centered("through the agent", 28), Centered("agent/in-process", 18))
            << Micro(absl::StrFormat(kRow, "operation", "mechanism", "clients", "ops/s", "p50 us",
                                     "p99 us", "ops/s", "p50 us", "p99 us", "ratio", "+p50 us"));
  for (const Comparison& c : comparisons) {
    const CellResult& in = *c.in_process;
    const CellResult& ag = *c.agent;
    std::cout << absl::StrFormat(
        kRow, in.operation, in.mechanism, absl::StrCat(in.clients),
        absl::StrFormat("%.0f", in.ops_per_second), absl::StrFormat("%.1f", in.p50_us),
        absl::StrFormat("%.1f", in.p99_us), absl::StrFormat("%.0f", ag.ops_per_second),
        absl::StrFormat("%.1f", ag.p50_us), absl::StrFormat("%.1f", ag.p99_us),
        absl::StrFormat("%.3f", c.ratio()), absl::StrFormat("%+.1f", c.added_p50_us()));
  }
  std::cout
      << "\nratio: agent ops/s / in-process ops/s. +p50: agent p50 - in-process p50.\n"
      << "list-keys makes no token call: through the agent it is the cost of the RPC alone.\n\n";

  // CPU time per operation: what each path costs in work, not in waiting.
  constexpr char kCpuRow[] = "%-16s %7s |%12s |%12s%12s%12s\n";
  std::cout << "CPU time per operation, µs (bench: this process, i.e. the clients, and on the "
               "in-process path the token work)\n"
            << absl::StrFormat("%-24s |%s |%s\n", "", Centered("in-process", 12),
                               Centered("through the agent", 36))
            << absl::StrFormat(kCpuRow, "operation", "clients", "bench", "bench", "agent", "total");
  for (const Comparison& c : comparisons) {
    const CellResult& in = *c.in_process;
    const CellResult& ag = *c.agent;
    std::cout << absl::StrFormat(
        kCpuRow, in.operation, absl::StrCat(in.clients),
        absl::StrFormat("%.1f", in.bench_cpu_us_per_op),
        absl::StrFormat("%.1f", ag.bench_cpu_us_per_op),
        absl::StrFormat("%.1f", ag.agent_cpu_us_per_op),
        absl::StrFormat("%.1f", ag.bench_cpu_us_per_op + ag.agent_cpu_us_per_op));
  }

  std::cout << "\ntargets:\n";
  for (const Target& t : targets) {
    std::optional<bool> met = t.met();
    std::cout << absl::StrFormat("  %-9s %s: %s\n",
                                 !met   ? "[not run]"
                                 : *met ? "[met]"
                                        : "[MISSED]",
                                 t.description, FormatTargetValue(t));
  }
}

nlohmann::ordered_json ToJson(const Environment& env, const Options& options,
                              const std::vector<CellResult>& cells,
                              const std::vector<Comparison>& comparisons,
                              const std::vector<Target>& targets) {
  nlohmann::ordered_json doc;
  doc["benchmark"] = "smime-agent-bench";
  doc["date"] = env.date;
  doc["command"] = env.command;
  doc["machine"] = {{"arch", env.arch},
                    {"cpus", env.cpus},
                    {"cpu_model", env.cpu_model},
                    {"kernel", env.kernel},
                    {"load_average", env.load_average}};
  doc["token"] = {{"module", options.module},
                  {"library", env.softhsm},
                  {"label", kTokenLabel},
                  {"max_sessions", kMaxSessions}};
  doc["settings"] = {{"seconds_per_cell", options.seconds},
                     {"warmup_calls_per_client", options.warmup_ops},
                     {"max_ops_per_cell", options.max_ops},
                     {"clients", options.clients}};
  nlohmann::ordered_json& results = doc["results"] = nlohmann::ordered_json::array();
  for (const CellResult& c : cells) {
    results.push_back({{"operation", c.operation},
                       {"mechanism", c.mechanism},
                       {"path", PathName(c.path)},
                       {"clients", c.clients},
                       {"ops", c.ops},
                       {"seconds", Round(c.seconds, 4)},
                       {"ops_per_second", Round(c.ops_per_second, 1)},
                       {"p50_us", Round(c.p50_us, 1)},
                       {"p99_us", Round(c.p99_us, 1)},
                       {"bench_cpu_us_per_op", Round(c.bench_cpu_us_per_op, 1)},
                       {"agent_cpu_us_per_op", Round(c.agent_cpu_us_per_op, 1)}});
  }
  nlohmann::ordered_json& compared = doc["comparisons"] = nlohmann::ordered_json::array();
  for (const Comparison& c : comparisons) {
    compared.push_back({{"operation", c.in_process->operation},
                        {"mechanism", c.in_process->mechanism},
                        {"clients", c.in_process->clients},
                        {"throughput_ratio", Round(c.ratio(), 3)},
                        {"added_p50_us", Round(c.added_p50_us(), 1)}});
  }
  nlohmann::ordered_json& goals = doc["targets"] = nlohmann::ordered_json::array();
  for (const Target& t : targets) {
    std::optional<bool> met = t.met();
    goals.push_back(
        {{"name", t.name},
         {"description", t.description},
         {"threshold", t.threshold},
         {"value", t.value ? nlohmann::ordered_json(Round(*t.value, 3)) : nlohmann::ordered_json()},
         {"met", met ? nlohmann::ordered_json(*met) : nlohmann::ordered_json()}});
  }
  return doc;
}

const Comparison* FindComparison(const std::vector<Comparison>& comparisons,
                                 absl::string_view operation, int clients) {
  for (const Comparison& c : comparisons) {
    if (c.in_process->operation == operation && c.in_process->clients == clients) return &c;
  }
  return nullptr;
}

std::vector<Target> EvaluateTargets(const std::vector<Comparison>& comparisons) {
  std::vector<Target> targets;
  const Comparison* rsa2 = FindComparison(comparisons, "rsa2048-sign", 2);
  targets.push_back(
      Target{"rsa2048_sign_throughput_ratio_2_clients",
             absl::StrFormat("rsa2048-sign agent/in-process throughput at 2 clients >= %.2f",
                             kMinRsaSignRatioAt2Clients),
             rsa2 ? std::optional<double>(rsa2->ratio()) : std::nullopt, kMinRsaSignRatioAt2Clients,
             true});
  const Comparison* ec1 = FindComparison(comparisons, "p256-sign", 1);
  targets.push_back(Target{
      "p256_sign_added_p50_us_1_client",
      absl::StrFormat("p256-sign added p50 latency at 1 client <= %.0f µs", kMaxP256AddedP50Us),
      ec1 ? std::optional<double>(ec1->added_p50_us()) : std::nullopt, kMaxP256AddedP50Us, false});
  const Comparison* smime1 = FindComparison(comparisons, "smime-sign-4k", 1);
  targets.push_back(Target{
      "smime_sign_4k_throughput_ratio_1_client",
      absl::StrFormat("smime-sign-4k agent/in-process (pkcs11-provider) at 1 client >= %.2f",
                      kMinSmimeSign4kRatio),
      smime1 ? std::optional<double>(smime1->ratio()) : std::nullopt, kMinSmimeSign4kRatio, true});
  return targets;
}

// ---------------------------------------------------------------------------

// One large message through the agent, timed once, with the agent's peak
// resident memory (VmHWM, monotonic over its life) read after it.
struct LargeResult {
  std::string operation;
  std::string path;
  size_t bytes = 0;
  double seconds = 0;
  double agent_peak_rss_mib = -1;  // -1: not applicable or unreadable
};

std::string CertificateDer(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  std::string out(len > 0 ? reinterpret_cast<char*>(der) : "", len > 0 ? static_cast<size_t>(len) : 0);
  OPENSSL_free(der);
  return out;
}

double PeakRssMib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmHWM:")) {
      return std::strtod(line.c_str() + 6, nullptr) / 1024.0;  // kB
    }
  }
  return -1;
}

absl::StatusOr<std::vector<LargeResult>> RunLarge(const SmimeFixture& fx, const std::string& socket,
                                                  pid_t agent_pid, size_t bytes) {
  std::cerr << "smime-agent-bench: large message, " << (bytes >> 20) << " MiB\n";
  ASSIGN_OR_RETURN(std::unique_ptr<client::AgentClient> c,
                   client::AgentClient::Connect(socket, absl::Minutes(5)));
  const std::string entity = MakeEntity(bytes);
  std::vector<LargeResult> out;
  out.push_back({"agent peak RSS before", "agent", 0, 0, PeakRssMib(agent_pid)});
  auto timed = [&](const std::string& op, const std::string& path,
                   const std::function<absl::StatusOr<std::string>()>& call,
                   const std::function<absl::Status(const std::string&)>& check) -> absl::Status {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<std::string> result = call();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!result.ok()) return absl::Status(result.status().code(), absl::StrCat(op, " via ", path, ": ",
                                                                               result.status().message()));
    RETURN_IF_ERROR(check(*result));
    out.push_back({op, path, bytes, seconds, path == "agent" ? PeakRssMib(agent_pid) : -1});
    return absl::OkStatus();
  };
  auto check_signed = [&](const std::string& smime) { return CheckSigned(fx, smime, entity); };
  v1::SignOptions sign_options;
  *sign_options.mutable_key() = client::TextSelector("alice");
  RETURN_IF_ERROR(timed("smime-sign", "in_process",
                        [&] { return fx.provider->Sign(fx.key.get(), fx.cert.get(), entity); },
                        check_signed));
  RETURN_IF_ERROR(timed("smime-sign", "agent", [&] { return c->SignMessage(sign_options, entity); },
                        check_signed));
  v1::EncryptOptions encrypt_options;
  encrypt_options.add_recipients(CertificateDer(fx.cert.get()));
  std::string encrypted;
  RETURN_IF_ERROR(timed(
      "smime-encrypt", "agent", [&] { return c->EncryptMessage(encrypt_options, entity); },
      [&](const std::string& e) {
        encrypted = e;
        return absl::OkStatus();
      }));
  auto check_plain = [&](const std::string& plain) {
    return plain == entity ? absl::OkStatus()
                           : absl::DataLossError("the decrypted large message differs");
  };
  RETURN_IF_ERROR(timed("smime-decrypt", "in_process",
                        [&] { return fx.provider->Decrypt(fx.key.get(), fx.cert.get(), encrypted); },
                        check_plain));
  RETURN_IF_ERROR(timed(
      "smime-decrypt", "agent",
      [&]() -> absl::StatusOr<std::string> {
        ASSIGN_OR_RETURN(client::AgentClient::Decrypted d, c->DecryptMessage(encrypted));
        return std::move(d.content);
      },
      check_plain));
  return out;
}

void PrintLarge(const std::vector<LargeResult>& large) {
  if (large.empty()) return;
  std::cout << "\nlarge message, one call each (agent peak RSS: VmHWM after the call, over the "
               "agent's life)\n";
  for (const LargeResult& r : large) {
    if (r.bytes == 0) {
      std::cout << absl::StrFormat("  %-40s %8.1f MiB\n", r.operation, r.agent_peak_rss_mib);
      continue;
    }
    std::cout << absl::StrFormat("  %-14s %-10s %4d MiB %8.2f s", r.operation, r.path,
                                 static_cast<int>(r.bytes >> 20), r.seconds);
    if (r.agent_peak_rss_mib >= 0) {
      std::cout << absl::StrFormat("   agent peak RSS %6.1f MiB", r.agent_peak_rss_mib);
    }
    std::cout << "\n";
  }
}

absl::Status RunBenchmark(const Options& options, int argc, char** argv) {
  // Before anything is made: a wrong path should not cost a key generation.
  for (const std::string& program : {options.make_token, options.agent}) {
    if (::access(program.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat("cannot execute ", program, ": ",
                                                        std::strerror(errno),
                                                        "; see --make-token and --agent"));
    }
  }
  // Declared first, removed last: the token store and the agent's socket
  // live in it.
  ASSIGN_OR_RETURN(std::unique_ptr<TempDir> dir, TempDir::Create());
  const std::string socket = dir->File("run/agent.sock");
  if (socket.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::FailedPreconditionError(
        absl::StrCat("socket path ", socket,
                     " is too long for a Unix socket; set TMPDIR to a shorter directory"));
  }
  std::cerr << "smime-agent-bench: making token \"" << kTokenLabel << "\" in " << dir->path()
            << "\n";
  // The script picks a random PIN and writes it to DIR/pin (mode 0600); the
  // agent reads the same file, so the PIN never appears on a command line.
  RETURN_IF_ERROR(
      RunToCompletion({options.make_token, dir->path(), "--label", kTokenLabel, "--with-test-keys"},
                      absl::Minutes(2)));
  // SoftHSM reads its configuration when the module initialises; the agent
  // inherits the variable.
  if (::setenv("SOFTHSM2_CONF", dir->File("softhsm2.conf").c_str(), 1) != 0) {
    return absl::InternalError("setenv SOFTHSM2_CONF failed");
  }

  ASSIGN_OR_RETURN(std::shared_ptr<tokens::Module> module, tokens::Module::Load(options.module));
  tokens::TokenOptions token_options;
  token_options.token = kTokenLabel;
  token_options.max_sessions = kMaxSessions;
  ASSIGN_OR_RETURN(std::unique_ptr<tokens::Token> token,
                   tokens::Token::Open(module, token_options));
  ASSIGN_OR_RETURN(tokens::SecretBuffer pin, tokens::ReadPinFile(dir->File("pin")));
  RETURN_IF_ERROR(token->Login(std::move(pin)));
  std::cerr << "smime-agent-bench: generating RSA-2048 \"" << kRsaLabel << "\" and P-256 \""
            << kEcLabel << "\"\n";
  // Generated before the agent starts, which reads the token's keys once
  // when it opens the token.
  ASSIGN_OR_RETURN(
      std::shared_ptr<const tokens::Key> rsa,
      token->GenerateKey(tokens::KeySpec::kRsa2048, kRsaLabel, absl::Now() + absl::Minutes(1)));
  ASSIGN_OR_RETURN(
      std::shared_ptr<const tokens::Key> ec,
      token->GenerateKey(tokens::KeySpec::kEcP256, kEcLabel, absl::Now() + absl::Minutes(1)));
  ASSIGN_OR_RETURN(std::vector<Workload> workloads, MakeWorkloads(token.get(), rsa, ec));
  auto fx = std::make_shared<SmimeFixture>();
  {
    // pkcs11-provider takes the PIN file as it is: no trailing newline.
    ASSIGN_OR_RETURN(tokens::SecretBuffer raw_pin, tokens::ReadPinFile(dir->File("pin")));
    {
      int fd = ::open(dir->File("pin.raw").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) return absl::InternalError("cannot write the provider's PIN file");
      bool ok = ::write(fd, raw_pin.data(), raw_pin.size()) == static_cast<ssize_t>(raw_pin.size());
      ::close(fd);
      if (!ok) return absl::InternalError("cannot write the provider's PIN file");
    }
    ASSIGN_OR_RETURN(fx->provider,
                     ProviderCms::Create(dir->path(), options.module, dir->File("pin.raw")));
    ASSIGN_OR_RETURN(fx->key, fx->provider->LoadPrivateKey(absl::StrCat(
                                  "pkcs11:token=", kTokenLabel, ";object=alice;type=private")));
    ASSIGN_OR_RETURN(fx->cert, ReadCertFile(dir->File("certs/alice.pem")));
    ASSIGN_OR_RETURN(fx->ca, ReadCertFile(dir->File("ca.pem")));
    ASSIGN_OR_RETURN(std::vector<Workload> smime, MakeSmimeWorkloads(fx));
    for (Workload& w : smime) workloads.push_back(std::move(w));
  }
  if (!options.ops.empty()) {
    std::vector<Workload> chosen;
    for (const std::string& name : options.ops) {
      auto it = std::find_if(workloads.begin(), workloads.end(),
                             [&](const Workload& w) { return w.name == name; });
      if (it == workloads.end()) {
        std::vector<std::string> names;
        for (const Workload& w : workloads) names.push_back(w.name);
        return absl::InvalidArgumentError(absl::StrCat("unknown operation \"", name,
                                                       "\"; known: ", absl::StrJoin(names, ", ")));
      }
      chosen.push_back(*it);
    }
    workloads = std::move(chosen);
  }
  const Environment env = DescribeEnvironment(argc, argv, *module);

  std::cerr << "smime-agent-bench: starting " << options.agent << "\n";
  // The audit log (one line per key operation) goes to a file to keep the
  // terminal quiet; writing it is part of what the agent costs.
  ASSIGN_OR_RETURN(
      std::unique_ptr<AgentProcess> agent,
      AgentProcess::Start(
          {options.agent, "--module", options.module, "--token", kTokenLabel, "--pin-file",
           dir->File("pin"), "--socket", socket, "--max-sessions", std::to_string(kMaxSessions),
           "--log-level", "warning", "--audit-log", dir->File("audit.log")},
          socket));

  const int max_clients = *std::max_element(options.clients.begin(), options.clients.end());
  ASSIGN_OR_RETURN(std::vector<std::string> client_sockets,
                   MakeClientSocketLinks(*dir, socket, max_clients));

  // Each (operation, clients) pair runs in-process then through the agent,
  // back to back, so slow drift of the machine affects both alike.
  const size_t total = workloads.size() * options.clients.size() * 2;
  std::vector<CellResult> cells;
  cells.reserve(total);  // never reallocated: comparisons point into it
  std::vector<Comparison> comparisons;
  for (const Workload& workload : workloads) {
    for (int clients : options.clients) {
      const CellResult* pair[2];
      for (Path path : {Path::kInProcess, Path::kAgent}) {
        if (stop_requested) return absl::CancelledError("interrupted");
        absl::StatusOr<CellResult> cell =
            RunCell(workload, path, clients, options, client_sockets, agent->pid());
        // ^C reaches the agent too; report the interruption, not its effect.
        if (stop_requested) return absl::CancelledError("interrupted");
        if (!cell.ok()) return cell.status();
        cells.push_back(*std::move(cell));
        pair[path == Path::kAgent] = &cells.back();
        std::cerr << absl::StrFormat(
            "[%2d/%d] %-16s %-10s %d client%s: %8.0f ops/s  p50 %7.1f µs\n", cells.size(), total,
            workload.name, PathName(path), clients, clients == 1 ? "" : "s",
            cells.back().ops_per_second, cells.back().p50_us);
      }
      comparisons.push_back(Comparison{pair[0], pair[1]});
    }
  }
  const std::vector<Target> targets = EvaluateTargets(comparisons);
  std::vector<LargeResult> large;
  if (options.large_mib > 0 && !stop_requested) {
    ASSIGN_OR_RETURN(large, RunLarge(*fx, client_sockets[0], agent->pid(),
                                     static_cast<size_t>(options.large_mib) << 20));
  }

  if (int code = agent->Stop(); code != 0) {
    std::cerr << "smime-agent-bench: warning: the agent exited with code " << code
              << " on SIGTERM\n";
  }
  if (options.json) {
    nlohmann::ordered_json doc = ToJson(env, options, cells, comparisons, targets);
    nlohmann::ordered_json& big = doc["large_message"] = nlohmann::ordered_json::array();
    for (const LargeResult& r : large) {
      big.push_back({{"operation", r.operation},
                     {"path", r.path},
                     {"bytes", r.bytes},
                     {"seconds", Round(r.seconds, 3)},
                     {"agent_peak_rss_mib", Round(r.agent_peak_rss_mib, 1)}});
    }
    std::cout << doc.dump(2) << "\n";
  } else {
    PrintTable(env, options, comparisons, targets);
    PrintLarge(large);
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  CLI::App app{
      "smime-agent-bench: RSA-2048 and P-256 key operations on a throwaway SoftHSM token, "
      "in-process through PKCS#11 and through smime-agent over its Unix socket"};
  Options options;
  app.add_option("--seconds", options.seconds, "timed seconds per cell (operation, path, clients)")
      ->check(CLI::Range(0.01, 600.0));
  app.add_option("--clients", options.clients, "numbers of concurrent clients to measure")
      ->check(CLI::Range(1, 64))
      ->delimiter(',');
  app.add_option("--warmup", options.warmup_ops,
                 "untimed, checked calls per client before each cell")
      ->check(CLI::Range(1, 10000));
  app.add_option("--max-ops", options.max_ops, "upper bound on timed calls per cell")
      ->check(CLI::PositiveNumber);
  app.add_option("--ops", options.ops, "operations to run (default: all), e.g. p256-sign")
      ->delimiter(',');
  app.add_option("--large-mib", options.large_mib,
                 "size of the one-shot large-message S/MIME run, MiB (0: skip)")
      ->check(CLI::Range(0, 60));
  app.add_flag("--json", options.json, "print a JSON document instead of the table");
  app.add_option("--module", options.module, "SoftHSM2 PKCS#11 module");
  app.add_option("--agent", options.agent, "smime-agent binary to start");
  app.add_option("--make-token", options.make_token,
                 "softhsm-config/make-token.sh to make the token with");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  struct sigaction action = {};
  action.sa_handler = RequestStop;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  // The tokens layer logs each key load at info level; the agent child runs
  // at warning too, so only trouble reaches the terminal.
  SetLogLevel(LogLevel::kWarning);
  absl::Status status = RunBenchmark(options, argc, argv);
  if (!status.ok()) {
    std::cerr << "smime-agent-bench: " << status << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace smime::bench

int main(int argc, char** argv) { return smime::bench::Main(argc, argv); }
