// The one table from PKCS#11 return values to absl::StatusCode (STYLE.md §2).
#ifndef SMIME_TOKENS_CKR_STATUS_H_
#define SMIME_TOKENS_CKR_STATUS_H_

#include <p11-kit/pkcs11.h>

#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace smime::tokens {

// "CKR_PIN_INCORRECT" etc.; "CKR_0x..." for values the table lacks.
std::string CkrName(CK_RV rv);

// The status code a caller sees for `rv`.
absl::StatusCode CodeForCkr(CK_RV rv);

// A Status for a failed call `fn` (e.g. "C_Sign") that carries `rv` as a
// payload (see CkrOf) and a message a user can act on.
absl::Status CkrStatus(absl::string_view fn, CK_RV rv);

// The CK_RV a Status from CkrStatus carries, if any.
std::optional<CK_RV> CkrOf(const absl::Status& status);

// `rv` says the token or the session is gone (removed, closed, reset, or
// out of reach: CKR_DEVICE_ERROR, as a network HSM's module reports an
// outage). The "gone" column of the one table.
bool IsTokenGone(CK_RV rv);

// `status` as a caller of token `token_label` should read it: when it
// carries a token-gone CK_RV, UNAVAILABLE saying so ("token \"LABEL\" was
// removed; insert it and retry (CKR_DEVICE_REMOVED)"), its payloads kept;
// otherwise `status` itself.
absl::Status TokenGoneStatus(absl::string_view token_label, const absl::Status& status);

// Errors that say nothing about one object but about the token or the
// session (gone, logged out, or not a PKCS#11 error at all): whoever reads
// objects one by one stops on them; other errors only skip that object.
bool StopsObjectReads(const absl::Status& status);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_CKR_STATUS_H_
