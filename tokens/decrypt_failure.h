// The padding-oracle rule, in one place for the token (RSA decryption) and
// the S/MIME engine (CMS decryption): a failed decryption that may depend on
// the ciphertext reads the same whatever went wrong, so no caller can learn
// from the error which part of a forged ciphertext was right.
#ifndef SMIME_TOKENS_DECRYPT_FAILURE_H_
#define SMIME_TOKENS_DECRYPT_FAILURE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace smime::tokens {

// The one message of a failed decryption.
inline constexpr absl::string_view kDecryptionFailed = "decryption failed";

// INVALID_ARGUMENT "decryption failed".
absl::Status DecryptionFailed();

// Whether `failure`, from a decryption, must read "decryption failed".
// Failures that cannot depend on the ciphertext keep their own status,
// since the user can act on them: the token is gone or out of reach
// (UNAVAILABLE), not logged in, locked or the key not allowed to decrypt
// (FAILED_PRECONDITION), the key no longer on the token (NOT_FOUND). A
// failure carrying a CK_RV is judged by the status code of that CK_RV
// (tokens/ckr_status.h), so the rule reads the same before and after the
// token's error became a Status.
bool MustReadDecryptionFailed(const absl::Status& failure);

// `failure` as a caller may see it: itself, or DecryptionFailed() when
// MustReadDecryptionFailed says so.
absl::Status AsDecryptFailure(const absl::Status& failure);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_DECRYPT_FAILURE_H_
