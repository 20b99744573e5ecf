// S/MIME sign, verify, encrypt and decrypt with OpenSSL's CMS code; private
// keys stay on the token (agent/engine/token_pkey). The code is in one file
// per job: smime_sign.cc, smime_verify.cc, smime_encrypt.cc,
// smime_decrypt.cc, with what they share in cms_util.{h,cc}.
#ifndef SMIME_AGENT_ENGINE_SMIME_ENGINE_H_
#define SMIME_AGENT_ENGINE_SMIME_ENGINE_H_

#include <openssl/x509.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/engine/byte_stream.h"
#include "tokens/token.h"

namespace smime::agent {

using CertPtr = std::shared_ptr<X509>;

struct SignOptions {
  bool opaque = false;  // application/pkcs7-mime signed-data instead of multipart/signed
  bool pss = false;     // RSASSA-PSS (RSA keys)
};

enum class Cipher { kAes256Cbc, kAes128Cbc, kAes256Gcm };

struct EncryptOptions {
  Cipher cipher = Cipher::kAes256Cbc;
  bool oaep = false;  // RSAES-OAEP (SHA-256, MGF1-SHA-256) instead of PKCS#1 v1.5
};

struct VerifyOptions {
  std::vector<CertPtr> trust_anchors;  // at least one
  std::optional<absl::Time> at;        // check the chain as of this time
  bool at_signing_time = false;        // ... as of the signingTime attribute
  // Untrusted intermediate certificates that may help build the chain.
  std::vector<CertPtr> extra_certs;
  // Check only the signature, not the signer's certificate chain (like
  // `openssl cms -verify -noverify`); the result says who signed, not
  // whether to trust them.
  bool signature_only = false;
  // Accept signer certificates whose keyUsage/extendedKeyUsage do not allow
  // S/MIME signing (like `-purpose any`). Off: such signatures fail, as in
  // OpenSSL.
  bool any_purpose = false;
  // Digest the signed content as given. Off (the default, as in OpenSSL):
  // text content is canonicalised to CRLF line ends first, as S/MIME signs
  // it, so a detached content file with LF line ends still verifies; when
  // that digest of separately given content does not match, it is checked
  // as given too (gpgsm and `openssl cms -sign -binary` sign LF files as
  // they are).
  bool binary = false;
};

struct SignerInfo {
  std::string subject;
  std::vector<std::string> emails;
  std::optional<absl::Time> signing_time;
  // The signer's certificate.
  std::shared_ptr<X509> cert;
};

struct VerifyResult {
  // The signed MIME entity. Kept whole: it may only leave the agent once
  // the signature has checked out.
  std::string content;
  std::vector<SignerInfo> signers;
  // Set when a From header is there and no signer's certificate names it.
  std::string from_mismatch;
};

struct DecryptResult {
  // The decrypted MIME entity. Kept whole: a CBC padding or GCM tag failure
  // shows only at the end, and no plaintext leaves the agent before that.
  std::string content;
  std::string key_uri;  // the token key that opened it
  bool is_signed = false;
};

// What DecryptAndVerify found. The decryption stands on its own (it is the
// private-key operation, and what the audit line records); the check of the
// signed message inside has its own outcome.
struct DecryptVerifyResult {
  // After a verification that passed, its content is the signed content
  // inside; after one that failed, it must not leave the agent.
  DecryptResult decrypted;
  // OK when no verification was asked for.
  absl::Status verify_status;
  // Set when the verification passed (its content moved to `decrypted`).
  std::optional<VerifyResult> verified;
};

// Parses one or more certificates: DER, PEM, or a PEM bundle.
absl::StatusOr<std::vector<CertPtr>> ParseCertificates(absl::string_view data);

// Sign and Encrypt stream: they read the message from a ByteSource and
// write the S/MIME message to a ByteSink as they go, so memory stays at a
// few chunks whatever the size. When they fail, what was written to `out`
// is worthless (the caller must say so). Verify and Decrypt read their input
// as it comes, but OpenSSL's CMS parser holds the whole structure, and the
// result is only released whole, after the check.
class SmimeEngine {
 public:
  explicit SmimeEngine(tokens::Token* token) : token_(token) {}

  // `message`: an RFC 5322 message or a bare MIME entity, LF or CRLF line
  // ends. Outer header fields (From, To, Subject...) stay outside the
  // signed part, Content-* fields go inside.
  absl::Status Sign(std::shared_ptr<const tokens::Key> key, ByteSource& message, ByteSink& out,
                    const SignOptions& options, absl::Time deadline) const;
  absl::Status Encrypt(ByteSource& message, ByteSink& out, const std::vector<CertPtr>& recipients,
                       const EncryptOptions& options) const;
  // Signs with `key`, then encrypts the signed message to `recipients` and
  // the signer (so the sender can read what it sent).
  absl::Status SignAndEncrypt(std::shared_ptr<const tokens::Key> key, ByteSource& message, ByteSink& out,
                              const SignOptions& sign_options, std::vector<CertPtr> recipients,
                              const EncryptOptions& encrypt_options, absl::Time deadline) const;
  // `detached_content` (may be null or empty) is the signed content when
  // `input` is a detached signature.
  absl::StatusOr<VerifyResult> Verify(ByteSource& input, ByteSource* detached_content,
                                      const VerifyOptions& options) const;
  // Finds the token key among the message's recipients and decrypts. With
  // `only_key`, uses that key or fails.
  absl::StatusOr<DecryptResult> Decrypt(ByteSource& input, absl::Time deadline,
                                        std::shared_ptr<const tokens::Key> only_key = nullptr) const;
  // Decrypt, then (with `verify`) Verify the signed message inside, in one
  // call. The status is the decryption's; a decrypted message that is not
  // signed, or does not verify, fails `verify_status` (FAILED_PRECONDITION,
  // or Verify's code with a message that says it was decrypted).
  absl::StatusOr<DecryptVerifyResult> DecryptAndVerify(ByteSource& input, absl::Time deadline,
                                                       std::shared_ptr<const tokens::Key> only_key,
                                                       const std::optional<VerifyOptions>& verify) const;

 private:
  tokens::Token* token_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_SMIME_ENGINE_H_
