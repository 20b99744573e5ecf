// Certificate import: a DER certificate, a PEM certificate or a PEM bundle,
// checked by the certificate policy, sorted into key, chain and
// correspondent certificates, and stored on the token all or nothing.
#ifndef SMIME_AGENT_ENGINE_CERT_IMPORT_H_
#define SMIME_AGENT_ENGINE_CERT_IMPORT_H_

#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/limits.h"
#include "tokens/token.h"

namespace smime::agent {

// Most certificates in one bundle. (File size limits: common/limits.h.)
inline constexpr size_t kMaxCertificatesPerFile = 64;

// Parses `data` strictly: one DER certificate (nothing after it), or PEM
// with only CERTIFICATE blocks (text between blocks is allowed, as openssl
// writes it). Anything else is INVALID_ARGUMENT saying what was found: a
// private key, a request, truncated or trailing DER, no certificate.
absl::StatusOr<std::vector<std::shared_ptr<X509>>> ParseCertificateFile(absl::string_view data);

struct ImportedCertificate {
  enum class Role { kKey, kChain, kCorrespondent };
  Role role = Role::kCorrespondent;
  bool created = false;  // false: the same certificate was already there
  std::shared_ptr<X509> cert;
  std::string id;     // CKA_ID
  std::string label;  // CKA_LABEL
  std::shared_ptr<const tokens::Key> key;  // kKey: the key, after the import
  std::vector<std::string> warnings;
};

// What a PKCS#12 import wrote.
struct ImportedPkcs12 {
  std::shared_ptr<const tokens::Key> key;  // the key, after the import
  // The key's certificate first, then the chain, as in the file.
  std::vector<ImportedCertificate> certificates;
};

class CertificateImporter {
 public:
  explicit CertificateImporter(tokens::Token* token) : token_(token) {}

  // Imports every certificate in `data` (see ParseCertificateFile). The
  // policy (agent/cert_policy.h, CertUse::kImport) runs on every
  // certificate before anything is written; one refusal refuses the file.
  absl::StatusOr<std::vector<ImportedCertificate>> Import(absl::string_view data, absl::Time now,
                                                          absl::Time deadline);

  // Imports the one private key of a PKCS#12 file (DER; modern PBES2/AES or
  // legacy RC2/3DES, which needs OpenSSL's legacy provider loaded) with its
  // certificate and chain (Token::ImportKey: all or nothing). The key's
  // certificate must pass the policy (CertUse::kImport; expired: warning).
  // Label: the key's friendlyName, else the certificate's, else its first
  // email. INVALID_ARGUMENT for "wrong PKCS#12 password", a file that is not
  // PKCS#12, with no key or several, or without the key's certificate;
  // ALREADY_EXISTS when the key is on the token. Decrypted key bytes are
  // wiped and the EVP_PKEY freed before returning.
  absl::StatusOr<ImportedPkcs12> ImportPkcs12(absl::string_view data, const tokens::SecretBuffer& password,
                                              absl::Time now, absl::Time deadline);

  // Stores `certs` (signers whose signature and chain verified) as
  // correspondent certificates, the way Import stores one: those that are
  // not CA certificates, carry an email, belong to no token key and pass
  // the policy; the others are left out, not refused. Returns the ones
  // newly written (a certificate already on the token is not).
  absl::StatusOr<std::vector<ImportedCertificate>> RememberContacts(const std::vector<std::shared_ptr<X509>>& certs,
                                                                    absl::Time now, absl::Time deadline);

 private:
  tokens::Token* token_;
  // One import at a time: "already on the token?" and the write are one step.
  absl::Mutex mu_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_CERT_IMPORT_H_
