// The deleters of the OpenSSL types that only the S/MIME engine, the CSR
// writer and the CMS benchmark hold (CMS messages, certificate stores and
// requests, extensions, OSSL_STORE), and the two kinds of certificate stack.
// Together with tokens/ossl.h (the deleters tokens/ needs itself), this is
// the one place that says how each OpenSSL type is freed.
// A file that holds one of these types includes this header, never a
// local SslFree specialisation (a second definition of one does not
// compile, and a local one could free differently).
#ifndef SMIME_TOKENS_OSSL_TYPES_H_
#define SMIME_TOKENS_OSSL_TYPES_H_

#include <openssl/asn1.h>
#include <openssl/pem.h>  // before cms.h, whose PEM declarations need its macros
#include <openssl/cms.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>

#include "tokens/ossl.h"

namespace smime {

#define SMIME_SSL_FREE(T, fn)              \
  template <>                              \
  struct SslFree<T> {                      \
    void operator()(T* p) const { fn(p); } \
  }
SMIME_SSL_FREE(CMS_ContentInfo, CMS_ContentInfo_free);
SMIME_SSL_FREE(X509_STORE, X509_STORE_free);
SMIME_SSL_FREE(X509_REQ, X509_REQ_free);
// ASN1_BIT_STRING is OpenSSL's one ASN1_STRING type, so this deleter also
// frees ASN1_OCTET_STRING, ASN1_INTEGER and ASN1_IA5STRING values.
SMIME_SSL_FREE(ASN1_BIT_STRING, ASN1_BIT_STRING_free);
SMIME_SSL_FREE(EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free);
SMIME_SSL_FREE(OSSL_STORE_CTX, OSSL_STORE_close);
#undef SMIME_SSL_FREE
// The extensions a CSR asks for: the stack and every extension in it.
template <>
struct SslFree<STACK_OF(X509_EXTENSION)> {
  void operator()(STACK_OF(X509_EXTENSION)* p) const { sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free); }
};

// A STACK_OF(X509) either owns its certificates or lists certificates that
// someone else holds. The two are freed differently, so they are two named
// types, and SslPtr<STACK_OF(X509)> is deliberately neither (whoever reads
// one cannot tell which it is).
struct X509StackFree {
  void operator()(STACK_OF(X509)* p) const { sk_X509_pop_free(p, X509_free); }
};
struct X509StackShellFree {
  void operator()(STACK_OF(X509)* p) const { sk_X509_free(p); }
};
// Owns the stack and every certificate in it: push certificates that carry
// a reference of their own (X509_up_ref first, or a new certificate).
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;
// Owns the stack only: the certificates are borrowed and outlive it.
using BorrowedX509Stack = std::unique_ptr<STACK_OF(X509), X509StackShellFree>;

}  // namespace smime

#endif  // SMIME_TOKENS_OSSL_TYPES_H_
