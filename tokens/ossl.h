// Ownership of OpenSSL objects and conversion of OpenSSL's error queue into
// absl::Status (STYLE.md §4). Every OpenSSL object the project holds lives in
// an SslPtr; on failure the whole error queue is drained into the Status so
// the next request starts clean. The deleters of the types only the engine
// holds (CMS, stores, requests) and the two kinds of certificate stack are
// in tokens/ossl_types.h, which includes this header.
#ifndef SMIME_TOKENS_OSSL_H_
#define SMIME_TOKENS_OSSL_H_

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace smime {

template <class T>
struct SslFree;
#define SMIME_SSL_FREE(T, fn)              \
  template <>                              \
  struct SslFree<T> {                      \
    void operator()(T* p) const { fn(p); } \
  }
SMIME_SSL_FREE(BIO, BIO_free_all);
SMIME_SSL_FREE(BIGNUM, BN_free);
SMIME_SSL_FREE(EVP_PKEY, EVP_PKEY_free);
SMIME_SSL_FREE(EVP_PKEY_CTX, EVP_PKEY_CTX_free);
SMIME_SSL_FREE(EVP_MD_CTX, EVP_MD_CTX_free);
SMIME_SSL_FREE(X509, X509_free);
SMIME_SSL_FREE(ECDSA_SIG, ECDSA_SIG_free);
SMIME_SSL_FREE(OSSL_PARAM_BLD, OSSL_PARAM_BLD_free);
SMIME_SSL_FREE(OSSL_PARAM, OSSL_PARAM_free);
SMIME_SSL_FREE(ASN1_OBJECT, ASN1_OBJECT_free);
SMIME_SSL_FREE(GENERAL_NAMES, GENERAL_NAMES_free);
SMIME_SSL_FREE(EC_GROUP, EC_GROUP_free);
SMIME_SSL_FREE(EC_POINT, EC_POINT_free);
SMIME_SSL_FREE(PKCS12, PKCS12_free);
#undef SMIME_SSL_FREE

template <class T>
using SslPtr = std::unique_ptr<T, SslFree<T>>;

// Returns a Status with `code` and message "<what>: <queued OpenSSL errors>",
// emptying the thread's OpenSSL error queue.
absl::Status SslError(absl::StatusCode code, absl::string_view what);

// Empties the thread's OpenSSL error queue, discarding it.
void ClearSslErrors();

// The DER encoding by `i2d` (i2d_X509, i2d_X509_NAME, i2d_ASN1_OBJECT, ...)
// of `value` as a string; empty when OpenSSL cannot encode it (its error
// queue is cleared then).
template <typename T, typename I2d>
std::string DerString(const T* value, I2d i2d) {
  if (value == nullptr) return "";
  unsigned char* out = nullptr;
  int len = i2d(value, &out);
  if (len <= 0 || out == nullptr) {
    ClearSslErrors();
    return "";
  }
  std::string der(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return der;
}

// PKCS#11 (CKM_ECDSA) gives an ECDSA signature as r || s, two halves of
// equal length; X.509 and CMS want the DER ECDSA-Sig-Value. Null when
// `r_s` is empty or of odd length.
SslPtr<ECDSA_SIG> EcdsaSigFromRaw(absl::string_view r_s);
// The same as DER. INTERNAL when `r_s` is malformed (a token's fault).
absl::StatusOr<std::string> EcdsaRawToDer(absl::string_view r_s);

}  // namespace smime

#endif  // SMIME_TOKENS_OSSL_H_
