#include "tests/bench/harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tokens/pin.h"

namespace smime::bench {
namespace {

// gRPC lets channels with equal target and arguments share one connection
// (its global subchannel pool), so AgentClients made for one socket path
// would all multiplex over a single connection. A symlink to the socket per
// client gives each client a target, hence a connection, of its own, as
// separate client processes have.
absl::StatusOr<std::vector<std::string>> MakeClientSocketLinks(const testing::TempDir& dir,
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

}  // namespace

absl::StatusOr<std::unique_ptr<Harness>> Harness::Create(const Options& options) {
  // Before anything is made: a wrong path should not cost a key generation.
  for (const std::string& program : {options.make_token, options.agent}) {
    if (::access(program.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat("cannot execute ", program, ": ",
                                                        std::strerror(errno),
                                                        "; see --make-token and --agent"));
    }
  }
  std::unique_ptr<Harness> h(new Harness());
  try {
    h->dir_ = std::make_unique<testing::TempDir>();
  } catch (const std::runtime_error&) {
    const char* tmp = std::getenv("TMPDIR");
    return absl::FailedPreconditionError(absl::StrCat("cannot create a temporary directory in ",
                                                      tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp",
                                                      ": ", std::strerror(errno),
                                                      "; set TMPDIR to a writable directory"));
  }
  h->socket_ = h->dir_->File("run/agent.sock");
  if (h->socket_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::FailedPreconditionError(
        absl::StrCat("socket path ", h->socket_,
                     " is too long for a Unix socket; set TMPDIR to a shorter directory"));
  }
  RETURN_IF_ERROR(h->MakeToken(options));
  RETURN_IF_ERROR(h->MakeSmimeFixture(options));
  return h;
}

absl::Status Harness::MakeToken(const Options& options) {
  std::cerr << "smime-agent-bench: making token \"" << kTokenLabel << "\" in " << dir_->path()
            << "\n";
  // The script picks a random PIN and writes it to DIR/pin (mode 0600); the
  // agent reads the same file, so the PIN never appears on a command line.
  testing::RunOptions quiet;
  quiet.timeout = absl::Minutes(2);
  testing::CommandResult made = testing::RunCommand(
      {options.make_token, dir_->path(), "--label", kTokenLabel, "--with-test-keys"}, quiet);
  if (made.exit_code != 0) {
    std::cerr << made.err;
    return absl::InternalError(absl::StrCat(options.make_token, " failed with exit code ",
                                            made.exit_code, " (its stderr is above)"));
  }
  // SoftHSM reads its configuration when the module initialises; the agent
  // gets the same file.
  if (::setenv("SOFTHSM2_CONF", dir_->File("softhsm2.conf").c_str(), 1) != 0) {
    return absl::InternalError("setenv SOFTHSM2_CONF failed");
  }

  ASSIGN_OR_RETURN(module_, tokens::Module::Load(options.module));
  tokens::TokenOptions token_options;
  token_options.token = kTokenLabel;
  token_options.max_sessions = kMaxSessions;
  ASSIGN_OR_RETURN(token_, tokens::Token::Open(module_, token_options));
  ASSIGN_OR_RETURN(tokens::SecretBuffer pin, tokens::ReadPinFile(dir_->File("pin")));
  RETURN_IF_ERROR(token_->Login(std::move(pin)));
  std::cerr << "smime-agent-bench: generating RSA-2048 \"" << kRsaLabel << "\" and P-256 \""
            << kEcLabel << "\"\n";
  ASSIGN_OR_RETURN(rsa_, token_->GenerateKey(tokens::KeySpec::kRsa2048, kRsaLabel,
                                             absl::Now() + absl::Minutes(1)));
  ASSIGN_OR_RETURN(ec_, token_->GenerateKey(tokens::KeySpec::kEcP256, kEcLabel,
                                            absl::Now() + absl::Minutes(1)));
  return absl::OkStatus();
}

absl::Status Harness::MakeSmimeFixture(const Options& options) {
  auto fx = std::make_shared<SmimeFixture>();
  // pkcs11-provider takes the PIN file as it is: no trailing newline.
  ASSIGN_OR_RETURN(tokens::SecretBuffer raw_pin, tokens::ReadPinFile(dir_->File("pin")));
  {
    int fd = ::open(dir_->File("pin.raw").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return absl::InternalError("cannot write the provider's PIN file");
    bool ok = ::write(fd, raw_pin.data(), raw_pin.size()) == static_cast<ssize_t>(raw_pin.size());
    ::close(fd);
    if (!ok) return absl::InternalError("cannot write the provider's PIN file");
  }
  ASSIGN_OR_RETURN(fx->provider,
                   ProviderCms::Create(dir_->path(), options.module, dir_->File("pin.raw")));
  ASSIGN_OR_RETURN(fx->key, fx->provider->LoadPrivateKey(absl::StrCat(
                                "pkcs11:token=", kTokenLabel, ";object=alice;type=private")));
  ASSIGN_OR_RETURN(fx->cert, ReadCertFile(dir_->File("certs/alice.pem")));
  ASSIGN_OR_RETURN(fx->ca, ReadCertFile(dir_->File("ca.pem")));
  smime_ = std::move(fx);
  return absl::OkStatus();
}

absl::Status Harness::StartAgent(const Options& options, int clients) {
  std::cerr << "smime-agent-bench: starting " << options.agent << "\n";
  // The audit log (one line per key operation) goes to a file to keep the
  // terminal quiet; writing it is part of what the agent costs.
  ASSIGN_OR_RETURN(
      agent_, testing::AgentProcess::StartProgram(
                  options.agent,
                  {"--module", options.module, "--token", kTokenLabel, "--pin-file", dir_->File("pin"),
                   "--socket", socket_, "--max-sessions", std::to_string(kMaxSessions), "--log-level",
                   "warning", "--audit-log", dir_->File("audit.log")},
                  dir_->File("softhsm2.conf")));
  ASSIGN_OR_RETURN(client_sockets_, MakeClientSocketLinks(*dir_, socket_, clients));
  return absl::OkStatus();
}

}  // namespace smime::bench
