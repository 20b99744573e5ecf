#include "tokens/certificate.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "tokens/ossl.h"

namespace smime::tokens {
namespace {

std::string NameToString(X509_NAME* name) {
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr) return "";
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

int64_t AsnTimeToUnix(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

void AddEmail(std::vector<std::string>* out, std::string email) {
  absl::AsciiStrToLower(&email);
  if (email.empty()) return;
  if (std::find(out->begin(), out->end(), email) == out->end()) out->push_back(std::move(email));
}

}  // namespace

CertificateSummary Summarize(X509* cert) {
  CertificateSummary s;
  if (cert == nullptr) return s;
  s.subject = NameToString(X509_get_subject_name(cert));
  s.issuer = NameToString(X509_get_issuer_name(cert));
  s.not_before = AsnTimeToUnix(X509_get0_notBefore(cert));
  s.not_after = AsnTimeToUnix(X509_get0_notAfter(cert));
  s.is_ca = X509_check_ca(cert) != 0 && (X509_get_extension_flags(cert) & EXFLAG_CA) != 0;
  if (SslPtr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)); bn) {
    char* hex = BN_bn2hex(bn.get());
    if (hex != nullptr) s.serial_hex = hex;
    OPENSSL_free(hex);
  }
  for (std::string& email : SubjectAltNameEmails(cert)) AddEmail(&s.emails, std::move(email));
  X509_NAME* subject = X509_get_subject_name(cert);
  for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_pkcs9_emailAddress, i)) >= 0;) {
    ASN1_STRING* v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    AddEmail(&s.emails, std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(v)),
                                    static_cast<size_t>(ASN1_STRING_length(v))));
  }
  ClearSslErrors();
  return s;
}

absl::StatusOr<std::shared_ptr<X509>> ParseDerCertificate(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (cert == nullptr) return SslError(absl::StatusCode::kInvalidArgument, "malformed certificate");
  return std::shared_ptr<X509>(cert, X509_free);
}

std::string CertificateDer(X509* cert) { return DerString(cert, i2d_X509); }

std::string PublicKeyDer(EVP_PKEY* key) { return DerString(key, i2d_PUBKEY); }

std::vector<std::string> SubjectAltNameEmails(X509* cert) {
  std::vector<std::string> out;
  if (cert == nullptr) return out;
  SslPtr<GENERAL_NAMES> sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  ClearSslErrors();
  if (!sans) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
    if (gn->type != GEN_EMAIL) continue;
    std::string e(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.rfc822Name)),
                  static_cast<size_t>(ASN1_STRING_length(gn->d.rfc822Name)));
    if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(std::move(e));
  }
  return out;
}

}  // namespace smime::tokens
