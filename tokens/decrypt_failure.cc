#include "tokens/decrypt_failure.h"

#include <optional>
#include <string>

#include "tokens/ckr_status.h"

namespace smime::tokens {

absl::Status DecryptionFailed() { return absl::InvalidArgumentError(std::string(kDecryptionFailed)); }

bool MustReadDecryptionFailed(const absl::Status& failure) {
  if (failure.ok()) return false;
  std::optional<CK_RV> rv = CkrOf(failure);
  absl::StatusCode code = rv ? CodeForCkr(*rv) : failure.code();
  return code != absl::StatusCode::kUnavailable && code != absl::StatusCode::kFailedPrecondition &&
         code != absl::StatusCode::kNotFound;
}

absl::Status AsDecryptFailure(const absl::Status& failure) {
  return MustReadDecryptionFailed(failure) ? DecryptionFailed() : failure;
}

}  // namespace smime::tokens
