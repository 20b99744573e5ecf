// PKCS#10 certification requests signed on the token: the subject in the
// "/CN=.../O=..." form openssl uses, subjectAltName emails, and the
// keyUsage / extendedKeyUsage an S/MIME certificate needs.
#ifndef SMIME_AGENT_ENGINE_CSR_H_
#define SMIME_AGENT_ENGINE_CSR_H_

#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tokens/token.h"

namespace smime::agent {

// Parses "/CN=Alice/O=Example Ltd" as `openssl req -subj` does: '/'
// separates attributes, '+' joins attributes into one multi-valued RDN, '\'
// escapes the next character. Types are OpenSSL short or long names or
// dotted OIDs; values are UTF-8. INVALID_ARGUMENT names what is wrong.
absl::StatusOr<std::shared_ptr<X509_NAME>> ParseSubject(absl::string_view text);

// Checks that `email` is an addr-spec we can put in an rfc822Name: ASCII,
// one '@', non-empty local part and domain, no spaces or controls.
absl::Status ValidateEmail(absl::string_view email);

struct CsrSpec {
  std::string subject;              // openssl "/CN=..." form
  std::vector<std::string> emails;  // at least one
};

// Makes and signs (SHA-256, on the token) a request for `key`. Returns the
// DER CertificationRequest, checked against the key's public key.
absl::StatusOr<std::string> MakeCsr(tokens::Token* token, std::shared_ptr<const tokens::Key> key,
                                    const CsrSpec& spec, absl::Time deadline);

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_CSR_H_
