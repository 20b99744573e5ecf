#include "agent/engine/cert_policy.h"

#include <algorithm>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "tokens/certificate.h"
#include "tokens/ossl.h"

namespace smime::agent {
namespace {

std::string FormatTime(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(unix_seconds), absl::UTCTimeZone());
}

const char* Role(CertUse use) {
  switch (use) {
    case CertUse::kSign: return "signer certificate";
    case CertUse::kEncrypt: return "recipient certificate";
    case CertUse::kImport:
    case CertUse::kPublish: return "certificate";
  }
  return "certificate";
}

// A refusal naming the certificate and the rule.
absl::Status Refuse(absl::StatusCode code, CertUse use, const tokens::CertificateSummary& s, CertRule rule,
                    absl::string_view what) {
  return absl::Status(code, absl::StrCat(Role(use), " \"", s.subject, "\" ", what,
                                         " (certificate policy: ", CertRuleName(rule), ")"));
}

bool HasEmailInSan(X509* cert) {
  std::vector<std::string> emails = tokens::SubjectAltNameEmails(cert);
  return std::any_of(emails.begin(), emails.end(), [](const std::string& e) { return !e.empty(); });
}

// The rules for end-entity certificates, in the order a person fixes them.
absl::Status CheckEndEntity(X509* cert, CertUse use, const tokens::CertificateSummary& s) {
  // Signing with the token's own certificate: the key's state, not the
  // caller's input, is wrong.
  const absl::StatusCode code =
      use == CertUse::kSign ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kInvalidArgument;
  if (!HasEmailInSan(cert)) {
    return Refuse(code, use, s, CertRule::kEmailAddress, "has no email address in subjectAltName");
  }
  EVP_PKEY* pkey = X509_get0_pubkey(cert);
  int base_id = pkey == nullptr ? NID_undef : EVP_PKEY_get_base_id(pkey);
  ClearSslErrors();
  const bool rsa = base_id == EVP_PKEY_RSA;
  const bool ec = base_id == EVP_PKEY_EC;
  if (!rsa && !ec) {
    const char* name = base_id == NID_undef ? "unknown" : OBJ_nid2sn(base_id);
    return Refuse(code, use, s, CertRule::kKeyAlgorithm,
                  absl::StrCat("has a key of type ", name, "; S/MIME here needs an RSA or EC key"));
  }
  const uint32_t ku = X509_get_key_usage(cert);
  if (ku == UINT32_MAX) {
    return Refuse(code, use, s, CertRule::kKeyUsage,
                  "has no keyUsage extension; S/MIME needs digitalSignature and/or keyEncipherment "
                  "(keyAgreement for EC encryption)");
  }
  switch (use) {
    case CertUse::kSign:
      if (!(ku & KU_DIGITAL_SIGNATURE)) {
        return Refuse(code, use, s, CertRule::kKeyUsage, "keyUsage lacks digitalSignature, which signing needs");
      }
      break;
    case CertUse::kEncrypt:
      if (rsa && !(ku & KU_KEY_ENCIPHERMENT)) {
        return Refuse(code, use, s, CertRule::kKeyUsage,
                      "keyUsage lacks keyEncipherment, which encrypting to an RSA key needs");
      }
      if (ec && !(ku & KU_KEY_AGREEMENT)) {
        return Refuse(code, use, s, CertRule::kKeyUsage,
                      "keyUsage lacks keyAgreement, which encrypting to an EC key needs");
      }
      break;
    case CertUse::kImport:
    case CertUse::kPublish: {
      uint32_t mail = KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT | (ec ? KU_KEY_AGREEMENT : 0);
      if (!(ku & mail)) {
        return Refuse(code, use, s, CertRule::kKeyUsage,
                      ec ? "keyUsage has none of digitalSignature, keyEncipherment, keyAgreement"
                         : "keyUsage has neither digitalSignature nor keyEncipherment");
      }
      break;
    }
  }
  const uint32_t xku = X509_get_extended_key_usage(cert);
  if (xku != UINT32_MAX && !(xku & XKU_SMIME)) {
    return Refuse(code, use, s, CertRule::kExtendedKeyUsage, "extendedKeyUsage lacks emailProtection");
  }
  return absl::OkStatus();
}

}  // namespace

const char* CertRuleName(CertRule rule) {
  switch (rule) {
    case CertRule::kWellFormed: return "well-formed";
    case CertRule::kEmailAddress: return "email-address";
    case CertRule::kKeyAlgorithm: return "key-algorithm";
    case CertRule::kKeyUsage: return "key-usage";
    case CertRule::kExtendedKeyUsage: return "extended-key-usage";
    case CertRule::kValidity: return "validity";
  }
  return "unknown";
}

absl::StatusOr<PolicyVerdict> CheckCertificatePolicy(X509* cert, CertUse use, absl::Time now) {
  if (cert == nullptr) return absl::InvalidArgumentError("no certificate");
  const tokens::CertificateSummary s = tokens::Summarize(cert);
  // OpenSSL caches the extensions once; a certificate whose extensions it
  // cannot decode would otherwise read as "no keyUsage".
  if (X509_check_purpose(cert, -1, 0) != 1 || (X509_get_extension_flags(cert) & EXFLAG_INVALID)) {
    ClearSslErrors();
    return Refuse(use == CertUse::kSign ? absl::StatusCode::kFailedPrecondition
                                        : absl::StatusCode::kInvalidArgument,
                  use, s, CertRule::kWellFormed, "has extensions that cannot be decoded");
  }
  if (!s.is_ca) {
    if (absl::Status st = CheckEndEntity(cert, use, s); !st.ok()) return st;
  }

  PolicyVerdict verdict;
  const int64_t t = absl::ToUnixSeconds(now);
  const bool expired = t > s.not_after;
  const bool early = t < s.not_before;
  if (!expired && !early) return verdict;
  const std::string when = expired ? absl::StrCat("expired on ", FormatTime(s.not_after))
                                   : absl::StrCat("is not valid before ", FormatTime(s.not_before));
  switch (use) {
    case CertUse::kSign:
    case CertUse::kEncrypt:
      return Refuse(absl::StatusCode::kFailedPrecondition, use, s, CertRule::kValidity, when);
    case CertUse::kPublish:
      if (expired) return Refuse(absl::StatusCode::kFailedPrecondition, use, s, CertRule::kValidity, when);
      verdict.warnings.push_back(absl::StrCat(Role(use), " \"", s.subject, "\" ", when,
                                              "; correspondents cannot encrypt to it until then"));
      return verdict;
    case CertUse::kImport:
      verdict.warnings.push_back(absl::StrCat(
          Role(use), " \"", s.subject, "\" ", when,
          expired ? "; kept for verifying and decrypting old mail, but it cannot sign or be encrypted to"
                  : "; it cannot sign or be encrypted to until then"));
      return verdict;
  }
  return verdict;
}

}  // namespace smime::agent
