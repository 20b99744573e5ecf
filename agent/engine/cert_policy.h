// The certificate policy: the one place that decides whether a certificate
// may be imported, signed with, encrypted to or published (issue 5,
// "Certificate policy"; the checks Zammad applies). Import, S/MIME sign and
// encrypt, and publication all call CheckCertificatePolicy, so a rule is
// written, tested and changed once.
#ifndef SMIME_AGENT_ENGINE_CERT_POLICY_H_
#define SMIME_AGENT_ENGINE_CERT_POLICY_H_

#include <openssl/x509.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace smime::agent {

// What the certificate is about to be used for.
enum class CertUse {
  kImport,   // stored on the token (own, chain or correspondent certificate)
  kSign,     // the signer's certificate of outgoing mail
  kEncrypt,  // a recipient's certificate of outgoing mail
  kPublish,  // published in DNS / .well-known for others to encrypt to
};

// The rules, each named in its refusal so a user can tell which one failed.
enum class CertRule {
  kWellFormed,        // "well-formed": OpenSSL can decode the extensions
  kEmailAddress,      // "email-address": subjectAltName has an rfc822Name
  kKeyAlgorithm,      // "key-algorithm": RSA or EC key
  kKeyUsage,          // "key-usage": keyUsage present and fits the use
  kExtendedKeyUsage,  // "extended-key-usage": absent or has emailProtection
  kValidity,          // "validity": notBefore <= now <= notAfter
};
const char* CertRuleName(CertRule rule);

struct PolicyVerdict {
  // Accepted, but a person should know (e.g. an expired certificate
  // imported for reading old mail).
  std::vector<std::string> warnings;
};

// Checks `cert` for `use` at time `now`.
//
// End-entity certificates (not basicConstraints CA:TRUE) need an email
// address in subjectAltName, an RSA or EC key, a keyUsage extension that
// allows the use (digitalSignature to sign; keyEncipherment for RSA or
// keyAgreement for EC to encrypt to; any of those to import or publish), and
// an extendedKeyUsage that is absent or contains emailProtection. CA
// certificates skip these.
//
// Validity: an expired or not-yet-valid certificate is refused
// (FAILED_PRECONDITION) for signing and encrypting, saying which certificate
// and since/until when. Importing it succeeds with a warning (old mail still
// needs it); publishing an expired one is refused, a not-yet-valid one warned
// about (records go out before a rollover).
//
// Other refusals are INVALID_ARGUMENT, except for kSign, where the
// certificate is the token key's own: FAILED_PRECONDITION. Each message
// names the certificate and ends with "(certificate policy: <rule>)".
absl::StatusOr<PolicyVerdict> CheckCertificatePolicy(X509* cert, CertUse use, absl::Time now);

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_CERT_POLICY_H_
