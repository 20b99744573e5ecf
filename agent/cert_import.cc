#include "agent/cert_import.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/cert_policy.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/ossl.h"

namespace smime::agent {
namespace {

using CertPtr = std::shared_ptr<X509>;

// One DER certificate that must fill `der` exactly.
absl::StatusOr<CertPtr> ParseExactDer(absl::string_view der, absl::string_view where) {
  const unsigned char* start = reinterpret_cast<const unsigned char*>(der.data());
  // The outer header says how long the certificate is: tells a truncated
  // file from one that is not a certificate at all.
  const unsigned char* p = start;
  long content_len = 0;
  int tag = 0, cls = 0;
  int hdr = ASN1_get_object(&p, &content_len, &tag, &cls, static_cast<long>(der.size()));
  ClearSslErrors();
  if (hdr & 0x80) {
    if (tag == V_ASN1_SEQUENCE && content_len > 0 && (hdr & V_ASN1_CONSTRUCTED)) {
      size_t want = static_cast<size_t>(p - start) + static_cast<size_t>(content_len);
      return absl::InvalidArgumentError(absl::StrCat(where, " is truncated: its DER says ", want,
                                                     " bytes, there are ", der.size()));
    }
    return absl::InvalidArgumentError(absl::StrCat(where, " is not DER (bad ASN.1 header)"));
  }
  p = start;
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (cert == nullptr) {
    ClearSslErrors();
    return absl::InvalidArgumentError(
        absl::StrCat(where, " is DER but not an X.509 certificate (a request, a key, PKCS#7 or PKCS#12?)"));
  }
  CertPtr out(cert, X509_free);
  size_t used = static_cast<size_t>(p - start);
  if (used != der.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " has ", der.size() - used, " bytes after the certificate"));
  }
  return out;
}

// What a PEM block that is not a certificate is, in words a user can act on.
absl::Status WrongPemBlock(const std::string& name) {
  if (absl::StrContains(name, "PRIVATE KEY")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the file holds a private key (PEM \"", name,
        "\"); import-cert takes certificates only and reads no key material"));
  }
  if (absl::StrContains(name, "CERTIFICATE REQUEST")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the file holds a certificate request (PEM \"", name, "\"), not a certificate; have a CA sign it first"));
  }
  if (name == "PKCS7") {
    return absl::InvalidArgumentError(
        "the file holds PKCS#7 (PEM \"PKCS7\"); extract its certificates with openssl pkcs7 -print_certs");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the file holds a PEM block \"", name, "\"; expected \"CERTIFICATE\""));
}

absl::StatusOr<std::vector<CertPtr>> ParsePem(absl::string_view data) {
  ClearSslErrors();
  SslPtr<BIO> bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  std::vector<CertPtr> out;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &der, &len) != 1) {
      unsigned long err = ERR_peek_last_error();
      ClearSslErrors();
      // No further "-----BEGIN" line: the normal end of a bundle.
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) break;
      return absl::InvalidArgumentError(absl::StrCat(
          "PEM block ", out.size() + 1, " is malformed (truncated, or its base64 or END line is broken)"));
    }
    std::string block_name(name);
    std::string block(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    if (block_name != "CERTIFICATE" && block_name != "X509 CERTIFICATE") return WrongPemBlock(block_name);
    if (out.size() == kMaxCertificatesPerFile) {
      return absl::InvalidArgumentError(
          absl::StrCat("the file holds more than ", kMaxCertificatesPerFile, " certificates"));
    }
    ASSIGN_OR_RETURN(CertPtr cert, ParseExactDer(block, absl::StrCat("PEM certificate ", out.size() + 1)));
    out.push_back(std::move(cert));
  }
  if (out.empty()) return absl::InvalidArgumentError("the file holds no PEM \"CERTIFICATE\" block");
  return out;
}

std::string CommonName(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return "";
  ASN1_STRING* v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, v);
  if (len < 0) {
    ClearSslErrors();
    return "";
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

// CKA_ID for a certificate without a token key: the SHA-1 of its public key
// bits, as RFC 5280 §4.2.1.2 (1) derives a subjectKeyIdentifier.
std::string KeyBitsSha1(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_pubkey_digest(cert, EVP_sha1(), md, &len) != 1) {
    ClearSslErrors();
    return "";
  }
  return std::string(reinterpret_cast<char*>(md), len);
}

}  // namespace

absl::StatusOr<std::vector<CertPtr>> ParseCertificateFile(absl::string_view data) {
  if (data.size() > kMaxCertificateFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the certificate file is larger than ", kMaxCertificateFileBytes, " bytes"));
  }
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(data);
  if (trimmed.empty()) return absl::InvalidArgumentError("the certificate file is empty");
  if (static_cast<unsigned char>(data[0]) == 0x30) {
    ASSIGN_OR_RETURN(CertPtr cert, ParseExactDer(data, "the DER certificate"));
    return std::vector<CertPtr>{std::move(cert)};
  }
  if (absl::StrContains(data, "-----BEGIN ")) return ParsePem(data);
  return absl::InvalidArgumentError(
      "the file is neither a DER certificate nor PEM (no \"-----BEGIN CERTIFICATE-----\" line)");
}

absl::StatusOr<std::vector<ImportedCertificate>> CertificateImporter::Import(absl::string_view data, absl::Time now,
                                                                             absl::Time deadline) {
  ASSIGN_OR_RETURN(std::vector<CertPtr> certs, ParseCertificateFile(data));
  absl::MutexLock lock(&mu_);
  // Sort against the keys on the token now, not as of the last look.
  RETURN_IF_ERROR(token_->Refresh());
  std::shared_ptr<const tokens::KeyList> keys = token_->Keys();

  std::vector<ImportedCertificate> out;
  std::vector<tokens::CertificateToStore> store;
  for (size_t i = 0; i < certs.size(); ++i) {
    X509* cert = certs[i].get();
    auto verdict = CheckCertificatePolicy(cert, CertUse::kImport, now);
    if (!verdict.ok()) {
      if (certs.size() == 1) return verdict.status();
      return absl::Status(verdict.status().code(), absl::StrCat("certificate ", i + 1, " of ", certs.size(),
                                                                 ": ", verdict.status().message()));
    }
    tokens::CertificateSummary s = tokens::Summarize(cert);
    ImportedCertificate imp;
    imp.cert = certs[i];
    imp.warnings = std::move(verdict->warnings);
    tokens::CertificateCategory category;
    std::shared_ptr<const tokens::Key> owner;
    if (!s.is_ca) {
      for (const auto& k : *keys) {
        if (k->public_key() != nullptr && EVP_PKEY_eq(k->public_key(), X509_get0_pubkey(cert)) == 1) owner = k;
      }
      ClearSslErrors();
    }
    if (owner) {
      // The key's certificate: same CKA_ID, and the key's label, so tools
      // that pair by either find it.
      imp.role = ImportedCertificate::Role::kKey;
      imp.id = owner->id();
      imp.label = owner->label();
      category = tokens::CertificateCategory::kTokenUser;
    } else {
      imp.role = s.is_ca ? ImportedCertificate::Role::kChain : ImportedCertificate::Role::kCorrespondent;
      imp.id = KeyBitsSha1(cert);
      imp.label = CommonName(cert);
      if (!s.is_ca && !s.emails.empty()) imp.label = s.emails.front();
      if (imp.label.empty()) imp.label = s.subject;
      category = s.is_ca ? tokens::CertificateCategory::kAuthority : tokens::CertificateCategory::kOtherEntity;
    }
    store.push_back({certs[i], imp.id, imp.label, category});
    out.push_back(std::move(imp));
  }
  ASSIGN_OR_RETURN(std::vector<bool> created, token_->StoreCertificates(store, deadline));
  keys = token_->Keys();
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].created = created[i];
    if (out[i].role != ImportedCertificate::Role::kKey) continue;
    for (const auto& k : *keys) {
      if (k->id() == out[i].id && k->label() == out[i].label) out[i].key = k;
    }
  }
  return out;
}

}  // namespace smime::agent
