#include "agent/engine/contacts.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/utf8.h"
#include "tokens/certificate.h"

namespace smime::agent {

absl::StatusOr<std::shared_ptr<X509>> ContactCertificate(const tokens::Token& token, absl::string_view email_in,
                                                         absl::Time now) {
  std::string email = absl::AsciiStrToLower(email_in);
  std::vector<std::shared_ptr<X509>> candidates = token.OtherCertificates();
  for (const auto& k : *token.Keys()) {
    candidates.insert(candidates.end(), k->certificates().begin(), k->certificates().end());
  }
  std::shared_ptr<X509> best, any;
  int64_t best_nb = 0;
  const int64_t t = absl::ToUnixSeconds(now);
  for (const auto& c : candidates) {
    tokens::CertificateSummary s = tokens::Summarize(c.get());
    if (s.is_ca || std::find(s.emails.begin(), s.emails.end(), email) == s.emails.end()) continue;
    any = c;
    if (s.not_before > t || t > s.not_after) continue;
    if (!best || s.not_before > best_nb) {
      best = c;
      best_nb = s.not_before;
    }
  }
  if (best) return best;
  // Only an expired one: let the policy say which and since when.
  if (any) return any;
  return absl::NotFoundError(absl::StrCat("no certificate for ", email,
                                          " among the contacts; import it with import-cert, or verify a signed "
                                          "mail from them"));
}

void Contacts::LearnFrom(const VerifyResult& verified, const VerifyOptions& options, absl::Time deadline) {
  // Only a signature whose chain verified makes its signers contacts.
  if (options.signature_only) return;
  std::vector<CertPtr> certs;
  for (const SignerInfo& s : verified.signers) {
    if (s.cert) certs.push_back(s.cert);
  }
  auto stored = importer_->RememberContacts(certs, absl::Now(), deadline);
  if (!stored.ok()) {
    SMIME_LOG(kWarning, "contact_not_stored").Kv("reason", stored.status().message());
    return;
  }
  // A write to the token on a caller's behalf: one line per new contact.
  for (const ImportedCertificate& c : *stored) {
    SMIME_LOG(kInfo, "contact_stored")
        .Kv("token", token_->label())
        .Kv("email", ToValidUtf8(c.label))
        .Kv("subject", ToValidUtf8(tokens::Summarize(c.cert.get()).subject))
        .Kv("source", "verified signature");
  }
}

}  // namespace smime::agent
