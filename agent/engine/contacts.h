// Correspondents: the certificates of other people that the agent keeps on
// the token (CKO_CERTIFICATE, category "other entity"). Encryption looks
// them up by email; a verified signature adds its signers (through the
// certificate importer, so they are stored the way import-cert stores them).
#ifndef SMIME_AGENT_ENGINE_CONTACTS_H_
#define SMIME_AGENT_ENGINE_CONTACTS_H_

#include <openssl/x509.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/engine/cert_import.h"
#include "agent/engine/smime_engine.h"
#include "tokens/token.h"

namespace smime::agent {

// The certificate to encrypt to for `email`: among the token's
// correspondent certificates and its keys' certificates (not CA ones), the
// newest (notBefore) valid at `now`; else an expired one (the policy then
// says why); NOT_FOUND when none carries the address.
absl::StatusOr<std::shared_ptr<X509>> ContactCertificate(const tokens::Token& token, absl::string_view email,
                                                         absl::Time now);

class Contacts {
 public:
  // `importer` writes the certificates; the Lifecycle service shares it, so
  // imports and learned contacts are one step at a time.
  Contacts(tokens::Token* token, CertificateImporter* importer) : token_(token), importer_(importer) {}

  // ContactCertificate on this token.
  absl::StatusOr<std::shared_ptr<X509>> CertificateFor(absl::string_view email, absl::Time now) const {
    return ContactCertificate(*token_, email, now);
  }

  // Stores the certificates of `verified`'s signers as contacts, unless they
  // are the token's own keys' (CertificateImporter::RememberContacts); only
  // when their chain was checked (not with `options.signature_only`). A
  // failure is logged and costs only the convenience: the verification
  // itself stands.
  void LearnFrom(const VerifyResult& verified, const VerifyOptions& options, absl::Time deadline);

 private:
  tokens::Token* token_;
  CertificateImporter* importer_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_CONTACTS_H_
