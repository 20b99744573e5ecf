// The operations smime-agent-bench measures, each runnable both ways on the
// same key (in-process and through the agent) with a check of its result,
// so a broken path cannot produce numbers.
#ifndef SMIME_TESTS_BENCH_WORKLOADS_H_
#define SMIME_TESTS_BENCH_WORKLOADS_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"
#include "tests/bench/provider_cms.h"
#include "tokens/token.h"

namespace smime::bench {

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

// The key operations on the generated keys (`rsa`, `ec`) and a key listing
// with no token call.
absl::StatusOr<std::vector<Workload>> MakeWorkloads(tokens::Token* token,
                                                    std::shared_ptr<const tokens::Key> rsa,
                                                    std::shared_ptr<const tokens::Key> ec);

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

absl::StatusOr<std::shared_ptr<X509>> ReadCertFile(const std::string& path);
// A text/plain MIME entity of `size` bytes with CRLF lines, as S/MIME signs.
std::string MakeEntity(size_t size);
// Checks a signed message with OpenSSL's default provider against the CA.
absl::Status CheckSigned(const SmimeFixture& fx, const std::string& smime, const std::string& entity);
// Whole messages signed and decrypted, 4 KiB and 1 MiB.
absl::StatusOr<std::vector<Workload>> MakeSmimeWorkloads(std::shared_ptr<const SmimeFixture> fx);

}  // namespace smime::bench

#endif  // SMIME_TESTS_BENCH_WORKLOADS_H_
