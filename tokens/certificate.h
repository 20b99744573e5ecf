// What the agent needs to know of an X.509 certificate to name and select
// keys (emails, subject, validity), and reading certificates from the bytes
// a user or a mail client hands over. Parsing is OpenSSL's.
#ifndef SMIME_TOKENS_CERTIFICATE_H_
#define SMIME_TOKENS_CERTIFICATE_H_

#include <openssl/x509.h>

#include <cstddef>
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

// The rfc822Name entries of `cert`'s subjectAltName as written (case kept:
// SMIMEA hashes the local part's octets), in order, exact duplicates once.
// Empty when there is no subjectAltName or it does not parse.
std::vector<std::string> SubjectAltNameEmails(X509* cert);

// Parses one DER certificate. INVALID_ARGUMENT when malformed.
absl::StatusOr<std::shared_ptr<X509>> ParseDerCertificate(absl::string_view der);

enum class CertificateParsing {
  // A certificate file a user imports: one DER certificate that fills the
  // input, or PEM whose every block is a certificate (text between blocks,
  // as `openssl x509 -text` writes, is fine). Anything else is refused with
  // what was found (a private key, a request, PKCS#7, a truncated file,
  // bytes after the certificate), in words a user can act on.
  kStrict,
  // Certificates that come with a request (extra recipients, a verify
  // chain): a DER certificate (leading whitespace skipped), or the
  // CERTIFICATE blocks of PEM, other blocks skipped.
  kLenient,
};

// The certificates in `data`, read as `mode` says; INVALID_ARGUMENT when
// there is none or (strict) when anything is wrong, and when there are more
// than `max_certificates`.
absl::StatusOr<std::vector<std::shared_ptr<X509>>> ParseCertificates(absl::string_view data, CertificateParsing mode,
                                                                     size_t max_certificates = SIZE_MAX);

// DER encoding of `cert` / of a public key's SubjectPublicKeyInfo.
std::string CertificateDer(X509* cert);
std::string PublicKeyDer(EVP_PKEY* key);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_CERTIFICATE_H_
