// One PKCS#11 token: login, key discovery and pairing, and the private-key
// operations (sign a digest, RSA-decrypt, generate). Knows nothing of gRPC
// or MIME. The class is implemented by job: opening, login, reconnection
// and sessions in token.cc (and with_session.h), the key inventory in
// inventory.cc, key operations in key_ops.cc, key administration in
// key_admin.cc.
#ifndef SMIME_TOKENS_TOKEN_H_
#define SMIME_TOKENS_TOKEN_H_

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tokens/certificate.h"
#include "tokens/hex.h"
#include "tokens/inventory.h"
#include "tokens/key.h"
#include "tokens/module.h"
#include "tokens/objects.h"
#include "tokens/pin.h"
#include "tokens/session.h"

namespace smime::tokens {

enum class SignMechanism {
  kRsaPkcs1Sha256,  // RSASSA-PKCS1-v1_5 over a SHA-256 DigestInfo
  kRsaPssSha256,    // RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
  kEcdsaSha256,     // ECDSA over a SHA-256 digest; DER signature out
};

enum class DecryptMechanism {
  kRsaPkcs1,       // RSAES-PKCS1-v1_5
  kRsaOaepSha1,    // RSAES-OAEP, SHA-1, MGF1-SHA-1, empty label
  kRsaOaepSha256,  // RSAES-OAEP, SHA-256, MGF1-SHA-256, empty label
};

enum class KeySpec { kRsa2048, kRsa3072, kRsa4096, kEcP256, kEcP384 };

const char* SignMechanismName(SignMechanism m);
const char* DecryptMechanismName(DecryptMechanism m);

struct TokenOptions {
  // Token to use: a label, a serial number, or a "pkcs11:" URI naming token
  // attributes. Empty: the only initialised token of the module.
  std::string token;
  // Upper bound on concurrent sessions (also capped by the token's
  // ulMaxSessionCount).
  size_t max_sessions = 8;
};

// Token removal: an operation that finds the token gone fails with
// UNAVAILABLE ("token ... was removed; insert it and retry"); nothing is
// retried in a loop. The key list stays as it was, so listing keys still
// works. The next operation after the token is back reconnects first: a new
// anchor session, a login with the kept PIN (unless the token refused it,
// says it is locked, or the next wrong PIN would lock it), and keys re-read
// for their new handles. Recovery is lazy (no polling), which is why the
// agent's health stays SERVING while the token is out.
class Token {
 public:
  static absl::StatusOr<std::unique_ptr<Token>> Open(std::shared_ptr<Module> module,
                                                     const TokenOptions& options);
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;
  ~Token();

  // Logs the user in with `pin`, which the token keeps for re-login. Stops
  // before trying when the token says the PIN is locked, or (unless
  // `allow_final_try`) that the next wrong PIN locks it. A PIN the token
  // refuses is dropped and never sent again.
  absl::Status Login(SecretBuffer pin, bool allow_final_try = false);
  void Logout();

  // Re-reads keys and certificates from the token. An object it cannot read
  // at all is left out with a warning; a token that is gone, or a session
  // that is not logged in, fails the refresh and keeps the old list.
  absl::Status Refresh();
  // Refresh(), unless the last one was less than `age` ago. True if it
  // refreshed. Lets a lookup that found nothing see keys another tool added
  // or a reinserted token, without letting bad selectors hammer the token.
  bool RefreshIfOlderThan(absl::Duration age);
  // The current key list (a snapshot; cheap to take).
  std::shared_ptr<const KeyList> Keys() const;
  // Certificates on the token that pair with no private key (CA and
  // correspondent certificates).
  std::vector<std::shared_ptr<X509>> OtherCertificates() const;

  absl::StatusOr<std::string> Sign(const Key& key, SignMechanism mechanism,
                                   absl::string_view digest, absl::Time deadline);
  // Every failure that depends on the ciphertext reads the same
  // ("decryption failed"), so callers cannot be used as a padding oracle.
  absl::StatusOr<std::string> Decrypt(const Key& key, DecryptMechanism mechanism,
                                      absl::string_view ciphertext, absl::Time deadline);
  // The private-key primitives OpenSSL's CMS code needs (through
  // agent/token_pkey): RSA with PKCS#1 v1.5 block type 1 over caller-made
  // DigestInfo (kRsaPkcs1), raw RSA (kRsaRaw, for PSS and OAEP that OpenSSL
  // pads and checks itself), ECDSA over a digest of any hash (kEcdsa, raw
  // r||s out).
  enum class Primitive { kRsaPkcs1Sign, kRsaRawSign, kRsaPkcs1Decrypt, kRsaRawDecrypt, kEcdsa };
  absl::StatusOr<std::string> PrivateOp(const Key& key, Primitive primitive, absl::string_view input,
                                        absl::Time deadline);
  // ECDH (CKM_ECDH1_DERIVE, no KDF) with the uncompressed `peer_point`;
  // returns the shared secret (the x coordinate).
  absl::StatusOr<std::string> EcdhDerive(const Key& key, absl::string_view peer_point,
                                         absl::Time deadline);

  // Key administration (GenerateKey, StoreCertificates, ImportKey, RetireKey,
  // ReinstateKey, DeleteKey) runs one call at a time per Token, so a check
  // and the write it allows (a label is free, then a key gets it) are not
  // split by another write. A write that succeeded is reported so even when
  // reading the keys again afterwards fails (that is logged, and the next
  // refresh catches up).
  //
  // Generates a key pair: private part CKA_SENSITIVE, not CKA_EXTRACTABLE,
  // CKA_ID = SHA-1 of the public key value. ALREADY_EXISTS if a private key
  // on the token already has `label`.
  absl::StatusOr<std::shared_ptr<const Key>> GenerateKey(KeySpec spec, absl::string_view label,
                                                         absl::Time deadline);

  // Stores `certs` as public certificate objects (tokens/objects.h), all or
  // nothing: when one fails, the ones this call created are destroyed. A
  // certificate whose DER is already on the token (or earlier in `certs`)
  // is skipped. Returns, per input, whether an object was created; re-reads
  // keys and certificates when one was.
  absl::StatusOr<std::vector<bool>> StoreCertificates(const std::vector<CertificateToStore>& certs,
                                                      absl::Time deadline);

  // Writes a software key pair (a PKCS#12 import) onto the token with its
  // certificates, all or nothing: the key objects as
  // internal::CreateKeyPairObjects makes them (CKA_ID = KeyIdForPublicKey),
  // then `certs` as StoreCertificates stores them (same skipping of DER
  // already present). When any step fails, every object this call created
  // is destroyed. ALREADY_EXISTS when the token holds a private key with
  // the same CKA_ID. `key` is only read; the caller frees it.
  //
  // Retire, reinstate and delete act on the key's own objects: those with
  // its public key value, never merely those with its CKA_ID (another tool
  // may have given two keys one CKA_ID). When the token does not show which
  // are the key's (tokens/inventory.h), they refuse with
  // FAILED_PRECONDITION naming the key and change nothing.
  //
  // Retires `key` from signing: sets CKA_END_DATE of its public key objects
  // to the UTC date of `now` (PKCS#11: the end date for the key). Nothing
  // else changes; the key still decrypts. FAILED_PRECONDITION when the key
  // has no public key object.
  absl::Status RetireKey(const Key& key, absl::Time now, absl::Time deadline);
  // Undoes RetireKey: clears CKA_END_DATE of `key`'s public key objects, so
  // the key signs again (if its certificate is valid).
  absl::Status ReinstateKey(const Key& key, absl::Time deadline);
  // Destroys `key`'s certificate objects (whatever their CKA_ID) and public
  // key objects, then its private key object: a failure part-way leaves the
  // key usable (it still decrypts what was encrypted to it), never a
  // certificate whose key is gone, which a sender could still pick. Returns
  // how many objects were destroyed.
  absl::StatusOr<size_t> DeleteKey(const Key& key, absl::Time deadline);

  struct ImportedKey {
    std::shared_ptr<const Key> key;
    std::vector<bool> created;  // per entry of `certs`
  };
  absl::StatusOr<ImportedKey> ImportKey(const EVP_PKEY* key, absl::string_view label,
                                        const std::vector<CertificateToStore>& certs, absl::Time deadline);

  // Test-only: points in Token's work where a test steps in, to make an
  // ordering that would otherwise depend on timing happen for certain.
  enum class TestPoint {
    kAdminWait,      // key administration waits for another one in progress
    kLabelChecked,   // GenerateKey found its label free, before generating
    kRefreshRead,    // a refresh read the objects, before publishing the keys
    kWritten,        // a key administration wrote, before reading keys again
    kDestroyObject,  // DeleteKey destroys `object` next; a non-OK status
                     // fails that C_DestroyObject as the token would
  };
  using TestHook = std::function<absl::Status(TestPoint point, CK_OBJECT_HANDLE object)>;
  void SetTestHook(TestHook hook);

  const std::string& label() const { return label_; }
  const std::string& serial() const { return serial_; }
  const CK_TOKEN_INFO& info() const { return info_; }
  size_t max_sessions() const { return pool_->max_sessions(); }

 private:
  Token(std::shared_ptr<Module> module, CK_SLOT_ID slot, const CK_TOKEN_INFO& info,
        size_t max_sessions);
  // Runs `op` on a pooled session, after reconnecting if the token was seen
  // gone. On CKR_USER_NOT_LOGGED_IN logs in again (with the kept PIN) and
  // retries once. On token-gone errors drops the pool's sessions and marks
  // the token for reconnection; a session that turns out dead before
  // anything ran on it (the token was pulled and put back between calls)
  // gets one retry after reconnecting.
  template <typename Op>
  auto WithSession(absl::Time deadline, Op op) -> decltype(op(std::declval<Session&>()));
  // Holds key administration (see GenerateKey) for its lifetime.
  class AdminLock;
  // Calls the test hook, if any; OK without one.
  absl::Status Hook(TestPoint point, CK_OBJECT_HANDLE object = CK_INVALID_HANDLE) const;
  // Refresh() after a write that succeeded: a failure is logged (naming
  // `write`) and returned, never reported as the write's.
  absl::Status RefreshAfterWrite(absl::string_view write);
  // The key GenerateKey or ImportKey wrote, private object `handle` in
  // login epoch `epoch`: as the refreshed list shows it, or, when that
  // failed or lacks it, built from `as_written` (what the write knows).
  std::shared_ptr<const Key> WrittenKey(CK_OBJECT_HANDLE handle, uint64_t epoch, bool refreshed,
                                        const internal::TokenObjects& as_written);
  // C_DestroyObject of `object` (DeleteKey), through the test hook.
  absl::Status DestroyObject(Session& s, CK_OBJECT_HANDLE object);
  // Sets CKA_END_DATE ("YYYYMMDD", or empty for none) on `key`'s public
  // key objects, then re-reads the keys.
  absl::Status WriteRetireMark(const Key& key, const std::string& date, absl::Time deadline);
  // `key` as the token's objects show it now, read on `s`: its own public
  // key and certificate objects, or why they cannot be told apart. A
  // CKR_KEY_HANDLE_INVALID status when its private key object is gone.
  absl::StatusOr<std::shared_ptr<const Key>> ReadKeyAgain(Session& s, const Key& key);
  // FAILED_PRECONDITION: `key` (ReadKeyAgain's) has objects that cannot be
  // told apart from another key's, so nothing was `nothing_was`.
  static absl::Status CannotTellApart(const Key& key, absl::string_view nothing_was);
  // Logs in again on the anchor session, first reopening it if the token
  // was gone (reconnect_needed_) or it turns out dead. With `only_if_gone`,
  // does nothing unless reconnect_needed_ is still set (another caller may
  // have reconnected meanwhile).
  absl::Status Relogin(bool only_if_gone);
  // Opens the anchor session, if the slot holds this token (same label and
  // serial): another card in the reader gets neither our PIN nor our calls.
  absl::Status OpenAnchorLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(login_mu_);
  // OpenAnchorLocked after the token was gone. When the module's link to
  // the token broke for good (CKR_DEVICE_ERROR and the like from a network
  // HSM's client), starts the module again (Module::Reinitialize); after
  // that, or after another token of the module did, finds the token's slot
  // again by label and serial and starts the session pool afresh.
  absl::Status ReconnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(login_mu_);
  // Module::Reinitialize, for a module the agent initialised; false (and
  // logged) when it was not done.
  bool RestartModuleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(login_mu_);
  // After the module was started again: the token's slot found anew (by
  // label and serial), the pool restarted on it, the anchor reopened.
  absl::Status FindSlotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(login_mu_);
  // C_Login with pin_ on the anchor session, unless the token's flags say
  // the PIN is locked, must be changed, or (without allow_final_try_) that
  // the next wrong one locks it. True when it logged in; false when the
  // token needs no login or was logged in already.
  absl::StatusOr<bool> LoginLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(login_mu_);
  // An operation on a session of `generation` found the token gone.
  void NoteTokenGone(uint64_t generation);
  // `st` (a token-gone error) as the caller should read it.
  absl::Status GoneStatus(const absl::Status& st) const;
  // Runs `op(session, key)` on a session (WithSession). When the key's handle
  // is stale (from before a re-login) or the token says it is invalid (the
  // token was reinserted, or its objects reloaded), re-reads the keys if
  // needed and runs `op` once more on the key with the same id, label and
  // public key; FAILED_PRECONDITION when several keys are that.
  template <typename Op>
  auto WithKeySession(const Key& key, absl::Time deadline, Op op)
      -> decltype(op(std::declval<Session&>(), key));
  absl::StatusOr<std::string> DecryptOnce(Session& s, const Key& key, CK_MECHANISM* mech,
                                          absl::string_view ciphertext);
  absl::StatusOr<std::string> DecryptOaepRaw(Session& s, const Key& key, const EVP_MD* md,
                                             absl::string_view ciphertext);

  std::shared_ptr<Module> module_;
  // The module generation the slot, the anchor session and the pool's
  // sessions belong to; once the module's is newer, they are all gone.
  std::atomic<uint64_t> module_generation_;
  CK_SLOT_ID slot_ ABSL_GUARDED_BY(login_mu_);
  CK_TOKEN_INFO info_;
  std::string label_;
  std::string serial_;
  std::unique_ptr<SessionPool> pool_;

  absl::Mutex login_mu_;
  // Held open while the token is in: closing a token's last session logs the
  // user out. Reopened after the token was gone.
  CK_SESSION_HANDLE anchor_session_ ABSL_GUARDED_BY(login_mu_) = CK_INVALID_HANDLE;
  SecretBuffer pin_ ABSL_GUARDED_BY(login_mu_);
  bool pin_refused_ ABSL_GUARDED_BY(login_mu_) = false;
  bool allow_final_try_ ABSL_GUARDED_BY(login_mu_) = false;
  // Set (with login_mu_ held) when an operation found the token gone; the
  // next operation reconnects first. Read without the lock on the fast path.
  std::atomic<bool> reconnect_needed_{false};
  // Set once a C_Login succeeded: from then on a key list is only read from
  // a logged-in session (a logged-out one sees no private keys).
  std::atomic<bool> user_logged_in_{false};
  // Grows with each successful C_Login and each reconnection
  // (Key::login_epoch_).
  std::atomic<uint64_t> login_epoch_{0};

  // Each refresh takes the next number before it reads; the key list only
  // ever moves to a refresh that started later (in a later login epoch, or
  // the same one and a larger number), so a slow refresh from before a
  // write cannot hide what the write made.
  std::atomic<uint64_t> refresh_count_{0};
  mutable absl::Mutex keys_mu_;
  std::shared_ptr<const KeyList> keys_ ABSL_GUARDED_BY(keys_mu_);
  uint64_t keys_epoch_ ABSL_GUARDED_BY(keys_mu_) = 0;  // login epoch of keys_
  uint64_t keys_refresh_ ABSL_GUARDED_BY(keys_mu_) = 0;  // refresh number of keys_
  std::vector<std::shared_ptr<X509>> other_certs_ ABSL_GUARDED_BY(keys_mu_);
  absl::Time last_refresh_ ABSL_GUARDED_BY(keys_mu_) = absl::InfinitePast();

  // Set once the token refused OAEP with these parameters; then OAEP is
  // decoded here from a raw RSA (CKM_RSA_X_509) result.
  std::atomic<bool> oaep_sha1_raw_{false};
  std::atomic<bool> oaep_sha256_raw_{false};

  // Key administration, one at a time (AdminLock).
  absl::Mutex admin_mu_;
  mutable absl::Mutex hook_mu_;
  TestHook hook_ ABSL_GUARDED_BY(hook_mu_);
};

// Initialises the first token-less slot of `module` (SoftHSM's free slot) as
// a new token named `label`, sets the user PIN, and returns nothing else:
// reopen the module's slot list to find it. For the embedded store and
// tests; real hardware is initialised with its vendor's tools.
absl::Status InitializeToken(Module& module, absl::string_view label, const SecretBuffer& so_pin,
                             const SecretBuffer& user_pin);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_TOKEN_H_
