#include "agent/engine/cert_import.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <cstring>
#include <optional>
#include <openssl/x509v3.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/engine/cert_policy.h"
#include "agent/engine/pkcs12.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/objects.h"
#include "tokens/ossl.h"

namespace smime::agent {
namespace {

using CertPtr = std::shared_ptr<X509>;

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

// The token key whose public key `cert` carries, if any.
std::shared_ptr<const tokens::Key> OwnerOf(X509* cert, const tokens::KeyList& keys) {
  std::shared_ptr<const tokens::Key> owner;
  for (const auto& k : keys) {
    if (k->public_key() != nullptr && EVP_PKEY_eq(k->public_key(), X509_get0_pubkey(cert)) == 1) owner = k;
  }
  ClearSslErrors();
  return owner;
}

// How a certificate that no token key owns is stored: a CA certificate as
// a chain certificate, anyone else's as a correspondent's; CKA_ID the SHA-1
// of its public key bits; label its first email (not a CA), else its CN,
// else its subject. Sets `imp`'s role, id and label.
tokens::CertificateToStore PlaceForeign(ImportedCertificate& imp, const tokens::CertificateSummary& s) {
  X509* cert = imp.cert.get();
  imp.role = s.is_ca ? ImportedCertificate::Role::kChain : ImportedCertificate::Role::kCorrespondent;
  imp.id = KeyBitsSha1(cert);
  imp.label = (!s.is_ca && !s.emails.empty()) ? s.emails.front() : CommonName(cert);
  if (imp.label.empty()) imp.label = s.subject;
  return {imp.cert, imp.id, imp.label,
          s.is_ca ? tokens::CertificateCategory::kAuthority : tokens::CertificateCategory::kOtherEntity};
}

// Where a key's certificate goes: the key's CKA_ID and label, so tools that
// pair by either find it.
struct KeyPlace {
  std::string id, label;
};

// Checks each of `certs` against the import policy (CertUse::kImport), all
// before anything is written, and files it in `out` and `store`: as the key
// certificate `key_for(i, summary)` places (std::optional<KeyPlace>), else as
// PlaceForeign does. A refusal is the policy's, its message led by
// `which(i)` (empty: the policy's message alone).
template <typename KeyFor, typename Which>
absl::Status PlanImport(const std::vector<CertPtr>& certs, absl::Time now, KeyFor key_for, Which which,
                        std::vector<ImportedCertificate>& out, std::vector<tokens::CertificateToStore>& store) {
  for (size_t i = 0; i < certs.size(); ++i) {
    X509* cert = certs[i].get();
    auto verdict = CheckCertificatePolicy(cert, CertUse::kImport, now);
    if (!verdict.ok()) {
      std::string lead = which(i);
      if (lead.empty()) return verdict.status();
      return absl::Status(verdict.status().code(), absl::StrCat(lead, ": ", verdict.status().message()));
    }
    tokens::CertificateSummary s = tokens::Summarize(cert);
    ImportedCertificate imp;
    imp.cert = certs[i];
    imp.warnings = std::move(verdict->warnings);
    if (std::optional<KeyPlace> place = key_for(i, s)) {
      imp.role = ImportedCertificate::Role::kKey;
      imp.id = std::move(place->id);
      imp.label = std::move(place->label);
      store.push_back({certs[i], imp.id, imp.label, tokens::CertificateCategory::kTokenUser});
    } else {
      store.push_back(PlaceForeign(imp, s));
    }
    out.push_back(std::move(imp));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<CertPtr>> ParseCertificateFile(absl::string_view data) {
  if (data.size() > kMaxCertificateFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the certificate file is larger than ", kMaxCertificateFileBytes, " bytes"));
  }
  return tokens::ParseCertificates(data, tokens::CertificateParsing::kStrict, kMaxCertificatesPerFile);
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
  auto key_for = [&](size_t i, const tokens::CertificateSummary& s) -> std::optional<KeyPlace> {
    std::shared_ptr<const tokens::Key> owner = s.is_ca ? nullptr : OwnerOf(certs[i].get(), *keys);
    if (!owner) return std::nullopt;
    return KeyPlace{owner->id(), owner->label()};
  };
  auto which = [&](size_t i) {
    return certs.size() == 1 ? std::string() : absl::StrCat("certificate ", i + 1, " of ", certs.size());
  };
  RETURN_IF_ERROR(PlanImport(certs, now, key_for, which, out, store));
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

absl::StatusOr<std::vector<ImportedCertificate>> CertificateImporter::RememberContacts(
    const std::vector<CertPtr>& certs, absl::Time now, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<const tokens::KeyList> keys = token_->Keys();
  std::vector<ImportedCertificate> out;
  std::vector<tokens::CertificateToStore> store;
  for (const CertPtr& cert : certs) {
    tokens::CertificateSummary s = tokens::Summarize(cert.get());
    if (s.is_ca || s.emails.empty() || OwnerOf(cert.get(), *keys)) continue;
    bool conforms = CheckCertificatePolicy(cert.get(), CertUse::kImport, now).ok();
    ClearSslErrors();
    if (!conforms) continue;
    ImportedCertificate imp;
    imp.cert = cert;
    tokens::CertificateToStore entry = PlaceForeign(imp, s);
    if (imp.id.empty()) continue;
    store.push_back(std::move(entry));
    out.push_back(std::move(imp));
  }
  if (store.empty()) return out;
  ASSIGN_OR_RETURN(std::vector<bool> created, token_->StoreCertificates(store, deadline));
  std::vector<ImportedCertificate> stored;
  for (size_t i = 0; i < out.size() && i < created.size(); ++i) {
    if (!created[i]) continue;
    out[i].created = true;
    stored.push_back(std::move(out[i]));
  }
  return stored;
}

}  // namespace smime::agent

namespace smime::agent {
namespace {

// What was found in a PKCS#12 file's bags.
}  // namespace

absl::StatusOr<ImportedPkcs12> CertificateImporter::ImportPkcs12(absl::string_view data,
                                                                 const tokens::SecretBuffer& password,
                                                                 absl::Time now, absl::Time deadline) {
  ASSIGN_OR_RETURN(Pkcs12Contents contents, ParsePkcs12(data, password, deadline));
  if (contents.keys.empty()) {
    return absl::InvalidArgumentError(
        "the PKCS#12 file holds no private key; import its certificates with import-cert");
  }
  if (contents.keys.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("the PKCS#12 file holds ", contents.keys.size(),
                                                   " private keys; import-p12 takes files with one key"));
  }
  SslPtr<EVP_PKEY> key = std::move(contents.keys.front());
  if (!EVP_PKEY_is_a(key.get(), "RSA") && !EVP_PKEY_is_a(key.get(), "EC")) {
    return absl::InvalidArgumentError(absl::StrCat("the PKCS#12 key is ", EVP_PKEY_get0_type_name(key.get()),
                                                   "; only RSA and EC keys are supported"));
  }
  size_t own = contents.certs.size();
  for (size_t i = 0; i < contents.certs.size(); ++i) {
    if (EVP_PKEY_eq(X509_get0_pubkey(contents.certs[i].get()), key.get()) == 1) {
      own = i;
      break;
    }
  }
  ClearSslErrors();
  if (own == contents.certs.size()) {
    return absl::InvalidArgumentError("the PKCS#12 file holds no certificate for its private key");
  }
  // The key's certificate first, then the others in file order.
  std::vector<CertPtr> certs = {contents.certs[own]};
  for (size_t i = 0; i < contents.certs.size(); ++i) {
    if (i != own) certs.push_back(contents.certs[i]);
  }
  ASSIGN_OR_RETURN(std::string key_id, tokens::KeyIdForPublicKey(key.get()));
  tokens::CertificateSummary own_summary = tokens::Summarize(certs[0].get());
  std::string label = contents.key_name;
  if (label.empty()) label = contents.cert_names[own];
  if (label.empty() && !own_summary.emails.empty()) label = own_summary.emails.front();
  if (label.empty()) label = CommonName(certs[0].get());
  if (label.empty()) label = "imported";
  if (label.size() > 128) label.resize(128);

  std::vector<ImportedCertificate> out;
  std::vector<tokens::CertificateToStore> store;
  auto key_for = [&](size_t i, const tokens::CertificateSummary&) -> std::optional<KeyPlace> {
    if (i != 0) return std::nullopt;
    return KeyPlace{key_id, label};
  };
  auto which = [](size_t i) {
    return absl::StrCat(i == 0 ? "the key's certificate" : "a chain certificate", " in the PKCS#12 file");
  };
  RETURN_IF_ERROR(PlanImport(certs, now, key_for, which, out, store));
  absl::MutexLock lock(&mu_);
  auto imported = token_->ImportKey(key.get(), label, store, deadline);
  key.reset();  // the software key's last use
  if (!imported.ok()) return imported.status();
  for (size_t i = 0; i < out.size(); ++i) out[i].created = imported->created[i];
  out[0].key = imported->key;
  return ImportedPkcs12{imported->key, std::move(out)};
}

}  // namespace smime::agent
