// The key inventory: what Token::Refresh reads from the token and how it
// makes keys of it, in named steps (read public keys, read certificates,
// read private keys; then build keys, pair public keys, pair certificates).
// Internal to tokens/; Token publishes the result.
#ifndef SMIME_TOKENS_INVENTORY_H_
#define SMIME_TOKENS_INVENTORY_H_

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokens/key.h"
#include "tokens/module.h"

namespace smime::tokens::internal {

// A public key object, as far as pairing needs it.
struct PublicKeyObject {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  std::string id;     // CKA_ID
  std::string label;  // CKA_LABEL
  std::shared_ptr<EVP_PKEY> key;
  std::string end_date;  // the retire mark (Key::end_date), "" for none
};

// An X.509 certificate object.
struct CertificateObject {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  std::string id;     // CKA_ID
  std::string label;  // CKA_LABEL
  std::shared_ptr<X509> cert;
};

// A private key object: what it may do and what it shows of its public key.
struct PrivateKeyObject {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  std::string id;     // CKA_ID
  std::string label;  // CKA_LABEL
  KeyAlgorithm algorithm = KeyAlgorithm::kOther;
  int curve_nid = 0;  // NID_undef unless an EC key on a named curve
  bool can_sign = false;
  bool can_decrypt = false;
  bool can_derive = false;
  // The public key the private object itself shows (RSA: CKA_MODULUS and
  // CKA_PUBLIC_EXPONENT; EC: CKA_EC_POINT, which few tokens keep there; any:
  // a non-empty CKA_PUBLIC_KEY_INFO); null when it shows none (SoftHSM's EC
  // keys).
  std::shared_ptr<EVP_PKEY> public_key;
};

// Every key-related object one look at the token found.
struct TokenObjects {
  std::vector<PrivateKeyObject> private_keys;
  std::vector<PublicKeyObject> public_keys;
  std::vector<CertificateObject> certificates;
};

// The keys made of TokenObjects, sorted by CKA_ID and label, and the
// certificates that pair with none of them (CA and correspondent
// certificates).
struct Inventory {
  std::shared_ptr<KeyList> keys;
  std::vector<std::shared_ptr<X509>> others;
};

// Reads objects on one session. An object that cannot be read at all is
// left out with a warning; errors about the token or the session (gone,
// logged out) fail the read (StopsObjectReads).
class ObjectReader {
 public:
  ObjectReader(Module& module, CK_SESSION_HANDLE session, std::string token_label)
      : m_(module), s_(session), token_label_(std::move(token_label)) {}

  // Every private key, public key and certificate object the session sees.
  absl::StatusOr<TokenObjects> ReadAll();

  absl::StatusOr<std::vector<PublicKeyObject>> ReadPublicKeys(const std::vector<CK_OBJECT_HANDLE>& handles);
  absl::StatusOr<std::vector<CertificateObject>> ReadCertificates(const std::vector<CK_OBJECT_HANDLE>& handles);
  absl::StatusOr<std::vector<PrivateKeyObject>> ReadPrivateKeys(const std::vector<CK_OBJECT_HANDLE>& handles);

 private:
  Module& m_;
  const CK_SESSION_HANDLE s_;
  const std::string token_label_;
};

// Builds the keys of `objects` (handles valid in `login_epoch`); `token`
// names the token in key URIs. Public key objects and certificates pair
// with a private key by public key value. A private key that shows no
// public key takes the one public key its CKA_ID (and, if that is shared
// by several, its CKA_LABEL) names unambiguously; when that names none or
// several, the key has none and records why (its objects cannot be told
// apart from another key's).
Inventory BuildInventory(const TokenObjects& objects, const CK_TOKEN_INFO& token, uint64_t login_epoch);

}  // namespace smime::tokens::internal

#endif  // SMIME_TOKENS_INVENTORY_H_
