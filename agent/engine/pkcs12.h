// Reading a PKCS#12 file (import-p12) into its private keys and
// certificates, within bounds on the work a hostile file can ask for: every
// key derivation's iteration count is checked before the derivation runs,
// the total is bounded, and the call's deadline is checked between steps.
#ifndef SMIME_AGENT_ENGINE_PKCS12_H_
#define SMIME_AGENT_ENGINE_PKCS12_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tokens/ossl.h"
#include "tokens/pin.h"

namespace smime::agent {

// Largest iteration count accepted for one key derivation of a PKCS#12
// file (its MAC key, an encrypted safe's key, a shrouded key bag's key):
// ten times what OWASP recommends for PBKDF2-HMAC-SHA1 in 2023, well above
// what openssl (2,048), Windows (2,000 to 10,000), NSS and Java write.
inline constexpr int64_t kMaxPkcs12Iterations = 2'000'000;
// Largest sum of iteration counts over the whole file.
inline constexpr int64_t kMaxPkcs12TotalIterations = 4 * kMaxPkcs12Iterations;

// The bounds a parse runs under: the defaults above for import-p12; the
// fuzz target sets them lower, so each input stays quick.
struct Pkcs12WorkLimits {
  int64_t max_iterations = kMaxPkcs12Iterations;
  int64_t max_total_iterations = kMaxPkcs12TotalIterations;
};

struct Pkcs12Contents {
  std::vector<SslPtr<EVP_PKEY>> keys;
  std::string key_name;  // friendlyName of the (first) key bag
  std::vector<std::shared_ptr<X509>> certs;
  std::vector<std::string> cert_names;  // friendlyName of each certificate bag
};

// The keys and certificates of PKCS#12 file `data` (DER), decrypted with
// `password`. INVALID_ARGUMENT for a file that is malformed, too large, asks
// for more key-derivation work than `limits` allow, or whose MAC or
// contents the password does not open; DEADLINE_EXCEEDED when `deadline`
// passes between two derivations.
absl::StatusOr<Pkcs12Contents> ParsePkcs12(absl::string_view data, const tokens::SecretBuffer& password,
                                           absl::Time deadline, const Pkcs12WorkLimits& limits = {});

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_PKCS12_H_
