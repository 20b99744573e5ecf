// Ownership of OpenSSL objects and conversion of OpenSSL's error queue into
// absl::Status (STYLE.md §4). Every OpenSSL object the project holds lives in
// an SslPtr (or, for stacks of certificates, in an X509StackPtr or a
// BorrowedX509Stack); on failure the whole error queue is drained into the
// Status so the next request starts clean. This is the one header that says
// how each OpenSSL type is freed.
#ifndef SMIME_TOKENS_OSSL_H_
#define SMIME_TOKENS_OSSL_H_

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/pem.h>  // before cms.h, whose PEM declarations need its macros
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pkcs12.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
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
// agent/engine/csr.cc, agent/engine/smime_engine.cc and
// tests/bench/provider_cms.cc still define these specialisations
// themselves, and a second definition in one file does not compile. Until
// they include them from here instead (then this guard goes), a file that
// has no copy of its own asks for them by defining SMIME_OSSL_ALL_FREES
// before including this header. ASN1_BIT_STRING is OpenSSL's one
// ASN1_STRING type, so its deleter also frees ASN1_OCTET_STRING,
// ASN1_INTEGER and ASN1_IA5STRING values.
#ifdef SMIME_OSSL_ALL_FREES
SMIME_SSL_FREE(CMS_ContentInfo, CMS_ContentInfo_free);
SMIME_SSL_FREE(X509_STORE, X509_STORE_free);
SMIME_SSL_FREE(X509_REQ, X509_REQ_free);
SMIME_SSL_FREE(ASN1_BIT_STRING, ASN1_BIT_STRING_free);
SMIME_SSL_FREE(EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free);
SMIME_SSL_FREE(OSSL_STORE_CTX, OSSL_STORE_close);
template <>
struct SslFree<STACK_OF(X509_EXTENSION)> {
  void operator()(STACK_OF(X509_EXTENSION)* p) const { sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free); }
};
#endif
#undef SMIME_SSL_FREE

template <class T>
using SslPtr = std::unique_ptr<T, SslFree<T>>;

// A STACK_OF(X509) is either the owner of its certificates or a list of
// certificates someone else holds; the two are freed differently, so they
// are two types and SslPtr<STACK_OF(X509)> is none of them.
struct X509StackFree {
  void operator()(STACK_OF(X509)* p) const { sk_X509_pop_free(p, X509_free); }
};
struct X509StackShellFree {
  void operator()(STACK_OF(X509)* p) const { sk_X509_free(p); }
};
// Owns the stack and every certificate in it (push certificates with a
// reference of their own: X509_up_ref, or sk_X509_push of a new one).
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;
// Owns the stack only: the certificates are borrowed and stay alive.
using BorrowedX509Stack = std::unique_ptr<STACK_OF(X509), X509StackShellFree>;

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
