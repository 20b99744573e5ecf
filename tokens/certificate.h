// What the agent needs to know of an X.509 certificate to name and select
// keys: emails, subject, validity. Parsing is OpenSSL's.
#ifndef SMIME_TOKENS_CERTIFICATE_H_
#define SMIME_TOKENS_CERTIFICATE_H_

#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace smime::tokens {

struct CertificateSummary {
  // rfc822Name entries of subjectAltName and subject emailAddress, lower
  // case, in that order, without duplicates.
  std::vector<std::string> emails;
  std::string subject;     // RFC 2253
  std::string issuer;      // RFC 2253
  std::string serial_hex;  // upper-case hex
  int64_t not_before = 0;  // Unix seconds
  int64_t not_after = 0;   // Unix seconds
  bool is_ca = false;
};

CertificateSummary Summarize(X509* cert);

// Parses one DER certificate. INVALID_ARGUMENT when malformed.
absl::StatusOr<std::shared_ptr<X509>> ParseDerCertificate(absl::string_view der);

// DER encoding of `cert` / of a public key's SubjectPublicKeyInfo.
std::string CertificateDer(X509* cert);
std::string PublicKeyDer(EVP_PKEY* key);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_CERTIFICATE_H_
