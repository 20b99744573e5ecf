// A private key on a token as the agent sees it: its public key, its
// certificates and what it may do. Made by the key inventory
// (tokens/inventory.h), used through Token (tokens/token.h).
#ifndef SMIME_TOKENS_KEY_H_
#define SMIME_TOKENS_KEY_H_

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tokens/certificate.h"

namespace smime::tokens {

namespace internal {
class KeyBuilder;
}  // namespace internal

enum class KeyAlgorithm { kRsa, kEc, kOther };

// A private key found on the token, with its public key and (if paired)
// certificate. Immutable once published; shared by readers.
class Key {
 public:
  const std::string& id() const { return id_; }  // raw CKA_ID bytes
  std::string id_hex() const;                     // lower-case hex
  const std::string& label() const { return label_; }
  KeyAlgorithm algorithm() const { return algorithm_; }
  int bits() const { return bits_; }  // RSA modulus bits, EC field bits
  // "rsa2048", "p256", "p384", "rsa1024", "ec-secp521r1", ...
  const std::string& short_name() const { return short_name_; }
  const std::string& uri() const { return uri_; }
  bool can_sign() const { return can_sign_; }
  bool can_decrypt() const { return can_decrypt_; }
  bool can_derive() const { return can_derive_; }
  // Null when the token holds neither the public key nor a certificate for
  // it (possible for EC private keys alone).
  EVP_PKEY* public_key() const { return public_key_.get(); }
  X509* certificate() const { return certificate_.get(); }  // null if none
  // Every certificate on the token for this key (renewals, re-issues),
  // the one above first. Decryption matches recipients against all of them.
  const std::vector<std::shared_ptr<X509>>& certificates() const { return certificates_; }
  const CertificateSummary& cert_summary() const { return cert_summary_; }
  // CKA_END_DATE ("YYYYMMDD") of the key's public key object, empty when
  // unset: the agent's retire mark. A key with an end date on or before
  // today is retired from signing and still decrypts. (On the public
  // object because SoftHSM 2.6 cannot read back a date set on a private
  // object: C_GetAttributeValue then fails with CKR_GENERAL_ERROR.)
  const std::string& end_date() const { return end_date_; }
  bool RetiredAt(absl::Time now) const;

 private:
  friend class Token;
  friend class internal::KeyBuilder;
  Key() = default;
  CK_OBJECT_HANDLE handle_ = CK_INVALID_HANDLE;
  // The Token's login epoch when handle_ was read. A handle from before a
  // re-login (the token was logged out, or pulled and put back) may name
  // nothing, or another object, so it is never used after one.
  uint64_t login_epoch_ = 0;
  std::string id_;
  std::string label_;
  KeyAlgorithm algorithm_ = KeyAlgorithm::kOther;
  int bits_ = 0;
  std::string short_name_;
  std::string uri_;
  bool can_sign_ = false;
  bool can_decrypt_ = false;
  bool can_derive_ = false;
  std::shared_ptr<EVP_PKEY> public_key_;
  std::shared_ptr<X509> certificate_;
  std::vector<std::shared_ptr<X509>> certificates_;
  CertificateSummary cert_summary_;
  std::string end_date_;
  // The key's own public key and certificate objects, told apart from other
  // keys' by their public key value, not by CKA_ID (which another tool may
  // have given two keys): what the retire mark goes on and what deleting
  // the key destroys.
  std::vector<CK_OBJECT_HANDLE> public_key_objects_;
  std::vector<CK_OBJECT_HANDLE> certificate_objects_;
  // Why the key's objects cannot be told apart from another key's (the
  // private object shows no public key and its CKA_ID is shared), or empty.
  // Such a key lists no public key; retire, reinstate and delete refuse it.
  std::string ambiguity_;
};

using KeyList = std::vector<std::shared_ptr<const Key>>;

// The one human form of a key in messages: key "LABEL" (id HEX).
std::string Describe(const Key& key);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_KEY_H_
