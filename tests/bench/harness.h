// What one smime-agent-bench run measures on, made in this order and
// removed in the reverse: a temporary directory (the token store, the
// agent's socket, the provider's configuration), a token made by
// softhsm-config/make-token.sh with an RSA-2048 and a P-256 key generated on
// it, the in-process paths (tokens::Token; OpenSSL's CMS with the token key
// through pkcs11-provider), and, once started, the real agent with a socket
// link per client.
#ifndef SMIME_TESTS_BENCH_HARNESS_H_
#define SMIME_TESTS_BENCH_HARNESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/bench/options.h"
#include "tests/bench/workloads.h"
#include "tests/testing/test_env.h"
#include "tokens/module.h"
#include "tokens/token.h"

namespace smime::bench {

class Harness {
 public:
  // Everything but the agent.
  static absl::StatusOr<std::unique_ptr<Harness>> Create(const Options& options);
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Starts options.agent on the token (it reads the token's keys once, when
  // it opens it: after the keys are made) with a socket link for each of
  // `clients` clients.
  absl::Status StartAgent(const Options& options, int clients);

  const tokens::Module& module() const { return *module_; }
  tokens::Token* token() const { return token_.get(); }
  const std::shared_ptr<const tokens::Key>& rsa() const { return rsa_; }
  const std::shared_ptr<const tokens::Key>& ec() const { return ec_; }
  std::shared_ptr<const SmimeFixture> smime() const { return smime_; }
  // After StartAgent.
  testing::AgentProcess& agent() const { return *agent_; }
  const std::vector<std::string>& client_sockets() const { return client_sockets_; }

 private:
  Harness() = default;
  absl::Status MakeToken(const Options& options);
  absl::Status MakeSmimeFixture(const Options& options);

  std::unique_ptr<testing::TempDir> dir_;  // first: removed last
  std::string socket_;
  std::shared_ptr<tokens::Module> module_;
  std::unique_ptr<tokens::Token> token_;
  std::shared_ptr<const tokens::Key> rsa_;
  std::shared_ptr<const tokens::Key> ec_;
  std::shared_ptr<SmimeFixture> smime_;
  std::unique_ptr<testing::AgentProcess> agent_;
  std::vector<std::string> client_sockets_;
};

}  // namespace smime::bench

#endif  // SMIME_TESTS_BENCH_HARNESS_H_
