// Certificates made in tests with OpenSSL's APIs (no files, no openssl
// CLI): a key of each kind and X.509 extensions in OpenSSL config syntax.
#ifndef SMIME_TESTS_ENGINE_TEST_CERTS_H_
#define SMIME_TESTS_ENGINE_TEST_CERTS_H_

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "tokens/ossl.h"

namespace smime::testing {

enum class KeyKind { kRsa, kEc, kEd25519 };

inline EVP_PKEY* NewKey(KeyKind kind) {
  switch (kind) {
    case KeyKind::kRsa: return EVP_RSA_gen(2048);
    case KeyKind::kEc: return EVP_EC_gen("P-256");
    case KeyKind::kEd25519: return EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  }
  return nullptr;
}

// One key per kind for the whole run: key generation is the slow part.
inline EVP_PKEY* CachedKey(KeyKind kind) {
  static EVP_PKEY* keys[3] = {nullptr, nullptr, nullptr};
  EVP_PKEY*& k = keys[static_cast<int>(kind)];
  if (k == nullptr) k = NewKey(kind);
  return k;
}

using Extensions = std::vector<std::pair<int, std::string>>;

// A certificate for `subject_key` named CN=`cn`, with `exts` (OpenSSL
// config syntax), valid from `not_before` to `not_after`, signed by a
// throwaway issuer key.
inline std::shared_ptr<X509> MakeCertFor(EVP_PKEY* subject_key, const std::string& cn, const Extensions& exts,
                                         absl::Time not_before, absl::Time not_after) {
  SslPtr<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), name);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
  X509_set_pubkey(cert.get(), subject_key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    if (ext == nullptr) continue;
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  EXPECT_GT(X509_sign(cert.get(), CachedKey(KeyKind::kRsa), EVP_sha256()), 0);
  return std::shared_ptr<X509>(cert.release(), X509_free);
}

// A certificate for a `kind` key with `exts`, valid from now+`from` to
// now+`until`.
inline std::shared_ptr<X509> MakeCert(KeyKind kind, const Extensions& exts, absl::Duration from = -absl::Hours(24),
                                      absl::Duration until = absl::Hours(24 * 365)) {
  absl::Time now = absl::Now();
  return MakeCertFor(CachedKey(kind), "Policy Test", exts, now + from, now + until);
}

// `cert` as one PEM "CERTIFICATE" block.
inline std::string Pem(X509* cert) {
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace smime::testing

#endif  // SMIME_TESTS_ENGINE_TEST_CERTS_H_
