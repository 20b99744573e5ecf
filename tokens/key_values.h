// Public key values between PKCS#11 attributes and OpenSSL: RSA modulus and
// exponent, EC curve and point, each way. Internal to tokens/.
#ifndef SMIME_TOKENS_KEY_VALUES_H_
#define SMIME_TOKENS_KEY_VALUES_H_

#include <openssl/evp.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace smime::tokens::internal {

// Curve NID from DER CKA_EC_PARAMS (a namedCurve OID); NID_undef otherwise.
int CurveNid(absl::string_view ec_params);
// The field size of curve `nid` in bits; 0 for an unknown curve.
int CurveBits(int nid);
// DER of the namedCurve OID of `nid`, as CKA_EC_PARAMS wants it.
std::string CurveParamsDer(int nid);

// CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 2.20+);
// some tokens return the bare point. Returns the bare point.
std::string UnwrapEcPoint(absl::string_view value);
// The other way: the DER OCTET STRING CKA_EC_POINT holds; empty on failure.
std::string WrapEcPoint(absl::string_view point);

// OpenSSL public keys from token attribute values; null when the values do
// not make a key.
std::shared_ptr<EVP_PKEY> RsaPublicKey(absl::string_view n, absl::string_view e);
std::shared_ptr<EVP_PKEY> EcPublicKey(int nid, absl::string_view point);

// A public key from DER SubjectPublicKeyInfo (CKA_PUBLIC_KEY_INFO); null
// when it does not parse.
std::shared_ptr<EVP_PKEY> PublicKeyFromDer(absl::string_view der);
// The public half of `key` (which may hold a private key too); null on
// failure.
std::shared_ptr<EVP_PKEY> PublicCopy(const EVP_PKEY* key);

// Both keys are given and have the same public value (RSA modulus and
// exponent, EC curve and point).
bool SamePublicKey(const EVP_PKEY* a, const EVP_PKEY* b);

// A BIGNUM parameter of `key` (OSSL_PKEY_PARAM_RSA_N, ...) as unsigned
// big-endian bytes ("" if absent). The caller wipes the result when it is
// private.
std::string BnParam(const EVP_PKEY* key, const char* name);
// The curve NID of an EC `key`; NID_undef when it has no named curve.
int EcCurveNid(const EVP_PKEY* key);
// The uncompressed point of an EC `key` on curve `nid`; "" on failure.
std::string EcPointUncompressed(const EVP_PKEY* key, int nid);

}  // namespace smime::tokens::internal

#endif  // SMIME_TOKENS_KEY_VALUES_H_
