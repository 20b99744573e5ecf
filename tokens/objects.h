// Certificate objects on a token: finding them and writing them
// (C_CreateObject). Token::StoreCertificates is the public door; these
// helpers take a session handle and stay inside tokens/.
#ifndef SMIME_TOKENS_OBJECTS_H_
#define SMIME_TOKENS_OBJECTS_H_

#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokens/module.h"

namespace smime::tokens {

// PKCS#11 2.40 CKA_CERTIFICATE_CATEGORY values (p11-kit's header names the
// attribute, not its values).
enum class CertificateCategory : CK_ULONG {
  kUnspecified = 0,
  kTokenUser = 1,    // the token holds the private key
  kAuthority = 2,    // a CA certificate
  kOtherEntity = 3,  // someone else's (a correspondent's) certificate
};

// A certificate to store as a public CKO_CERTIFICATE token object.
struct CertificateToStore {
  std::shared_ptr<X509> cert;
  std::string id;     // CKA_ID, raw bytes
  std::string label;  // CKA_LABEL
  CertificateCategory category = CertificateCategory::kUnspecified;
};

// CKA_ID for a key pair, the rule GenerateKey follows: SHA-1 of the RSA
// modulus (unsigned big-endian) or of the uncompressed EC point.
// INVALID_ARGUMENT for a key that is neither RSA nor EC.
absl::StatusOr<std::string> KeyIdForPublicKey(const EVP_PKEY* key);

namespace internal {

// The CKA_ID rule itself: SHA-1 of the RSA modulus (unsigned big-endian) or
// of the uncompressed EC point, as GenerateKey reads them from the token and
// KeyIdForPublicKey from a software key.
std::string KeyIdFromPublicValue(absl::string_view modulus_or_point);

// Attribute values by type.
using AttrMap = std::map<CK_ATTRIBUTE_TYPE, std::string>;

// One attribute of an AttrMap: a CK_BBOOL that is true; a CK_ULONG
// (nullopt when absent or of another size); the bytes ("" when absent).
bool AttrTrue(const AttrMap& a, CK_ATTRIBUTE_TYPE t);
std::optional<CK_ULONG> AttrUlong(const AttrMap& a, CK_ATTRIBUTE_TYPE t);
std::string AttrStr(const AttrMap& a, CK_ATTRIBUTE_TYPE t);

// Reads the attributes in `types` that the object has; absent or sensitive
// ones are simply missing from the map. Some tokens fail a whole read with
// CKR_FUNCTION_FAILED or CKR_GENERAL_ERROR for one attribute they dislike
// (SoftHSM 2.6: CKA_END_DATE set on a private key), where PKCS#11 wants
// CKR_ATTRIBUTE_TYPE_INVALID: then each attribute is read alone and those
// that read are kept. Fails only when none does.
absl::StatusOr<AttrMap> ReadAttributes(Module& m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                                       std::initializer_list<CK_ATTRIBUTE_TYPE> types);

// Every object matching `tmpl`; C_FindObjectsFinal runs whatever happens.
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjectsMatching(Module& m, CK_SESSION_HANDLE s,
                                                                  std::vector<CK_ATTRIBUTE> tmpl);

// The CKA_VALUE (DER) of every X.509 certificate object the session sees.
absl::StatusOr<std::vector<std::string>> CertificateValues(Module& m, CK_SESSION_HANDLE s);

// Creates `c` as a token object: CKA_TOKEN true, CKA_PRIVATE false,
// CKA_SUBJECT/ISSUER/SERIAL_NUMBER/VALUE from the certificate. A token that
// does not know CKA_CERTIFICATE_CATEGORY gets the object without it.
absl::StatusOr<CK_OBJECT_HANDLE> CreateCertificateObject(Module& m, CK_SESSION_HANDLE s,
                                                         const CertificateToStore& c);

// Creates a software key pair as token objects: the private key with
// CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE false,
// CKA_SIGN and CKA_DECRYPT (RSA) or CKA_DERIVE (EC); the public key with
// CKA_VERIFY (and CKA_ENCRYPT for RSA). Both get `id` and `label`. Private
// key bytes pass through buffers wiped before return. On failure nothing
// stays on the token. Returns {private, public} handles.
absl::StatusOr<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> CreateKeyPairObjects(Module& m, CK_SESSION_HANDLE s,
                                                                                   const EVP_PKEY* key,
                                                                                   const std::string& id,
                                                                                   const std::string& label);

}  // namespace internal
}  // namespace smime::tokens

#endif  // SMIME_TOKENS_OBJECTS_H_
