#include "tokens/ckr_status.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace smime::tokens {
namespace {
constexpr absl::string_view kCkrPayload = "smime.tokens/ckr";

struct Row {
  CK_RV rv;
  const char* name;
  absl::StatusCode code;
  // What the user can do next; empty for "see the agent log".
  const char* hint;
  // Not null when `rv` says the token or the session is gone (removed,
  // closed, reset, out of reach): how "token \"LABEL\" ..." goes on. An
  // operation that sees one drops its sessions and reconnects next time.
  const char* gone = nullptr;
};

constexpr const char* kRemoved = "was removed; insert it and retry";

using C = absl::StatusCode;
constexpr Row kTable[] = {
    {CKR_OK, "CKR_OK", C::kOk, ""},
    {CKR_CANCEL, "CKR_CANCEL", C::kCancelled, "the operation was cancelled"},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY", C::kResourceExhausted, "the PKCS#11 module ran out of memory"},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID", C::kUnavailable, "the token's slot is gone; is the token still inserted?", kRemoved},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR", C::kInternal, ""},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED", C::kInternal, ""},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD", C::kInvalidArgument, "the token refused the request's parameters"},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY", C::kFailedPrecondition, "the token does not allow changing this attribute"},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE", C::kPermissionDenied, "the attribute is sensitive and cannot be read"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID", C::kInvalidArgument, "the token does not know this attribute"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID", C::kInvalidArgument, "the token refused an attribute value"},
    {CKR_DATA_INVALID, "CKR_DATA_INVALID", C::kInvalidArgument, "the token refused the input data"},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE", C::kInvalidArgument, "the input has the wrong length for this key"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR", C::kUnavailable, "the token reported a device error", "cannot be reached (device error; a network HSM may be out of reach); retry when it is back"},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY", C::kResourceExhausted, "the token is out of memory"},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED", C::kUnavailable, "the token was removed; insert it and retry", kRemoved},
    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID", C::kInvalidArgument, "decryption failed"},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE", C::kInvalidArgument, "decryption failed"},
    {CKR_FUNCTION_CANCELED, "CKR_FUNCTION_CANCELED", C::kCancelled, "the operation was cancelled"},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED", C::kUnimplemented, "the token does not support this operation"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID", C::kNotFound, "the key is no longer on the token"},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE", C::kInvalidArgument, "the token does not support this key size"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT", C::kInvalidArgument, "the key type does not fit this mechanism"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED", C::kFailedPrecondition, "the key's attributes do not allow this operation"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID", C::kUnimplemented, "the token does not offer this mechanism"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID", C::kUnimplemented, "the token does not accept these mechanism parameters"},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID", C::kNotFound, "the object is no longer on the token"},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE", C::kInternal, ""},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED", C::kInternal, ""},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", C::kFailedPrecondition, "the token refused the PIN; fix the PIN file or variable (the agent does not retry, tokens lock after a few wrong PINs)"},
    {CKR_PIN_INVALID, "CKR_PIN_INVALID", C::kInvalidArgument, "the PIN has characters or a length the token does not accept"},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE", C::kInvalidArgument, "the PIN is too short or too long for this token"},
    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED", C::kFailedPrecondition, "the PIN has expired; change it with the token's tool"},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED", C::kFailedPrecondition, "the user PIN is locked; unblock it with the SO PIN"},
    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED", C::kUnavailable, "the token session closed; retry", kRemoved},
    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT", C::kResourceExhausted, "the token has no free session"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID", C::kUnavailable, "the token session is gone; was the token removed?", kRemoved},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY", C::kFailedPrecondition, "the token is read-only"},
    {CKR_SESSION_EXISTS, "CKR_SESSION_EXISTS", C::kFailedPrecondition, "the token has open sessions"},
    {CKR_SESSION_READ_ONLY_EXISTS, "CKR_SESSION_READ_ONLY_EXISTS", C::kFailedPrecondition, "a read-only session exists"},
    {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID", C::kInvalidArgument, "the signature does not verify"},
    {CKR_SIGNATURE_LEN_RANGE, "CKR_SIGNATURE_LEN_RANGE", C::kInvalidArgument, "the signature has the wrong length"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE", C::kInvalidArgument, "the token needs more attributes for this object"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT", C::kInvalidArgument, "the token refused the object's attributes"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT", C::kUnavailable, "the token is not present; insert it and retry", kRemoved},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED", C::kUnavailable, "the module does not recognise the token"},
    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED", C::kFailedPrecondition, "the token is write-protected"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN", C::kOk, ""},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN", C::kFailedPrecondition, "the token is not logged in"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED", C::kFailedPrecondition, "the token has no user PIN; initialise it first"},
    {CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID", C::kInternal, ""},
    {CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN", C::kFailedPrecondition, "another user (e.g. the SO) is logged in to the token"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL", C::kInternal, ""},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED", C::kUnavailable, "the PKCS#11 module is not started (it lost its token and could not be started again yet)", "cannot be reached (its module is being started again); retry shortly"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED", C::kOk, ""},
    {CKR_RANDOM_NO_RNG, "CKR_RANDOM_NO_RNG", C::kUnimplemented, "the token has no random generator"},
    {CKR_DOMAIN_PARAMS_INVALID, "CKR_DOMAIN_PARAMS_INVALID", C::kInvalidArgument, "the token does not support this curve"},
};

const Row* Find(CK_RV rv) {
  for (const Row& row : kTable) {
    if (row.rv == rv) return &row;
  }
  return nullptr;
}
}  // namespace

std::string CkrName(CK_RV rv) {
  if (const Row* row = Find(rv)) return row->name;
  return absl::StrFormat("CKR_0x%08X", rv);
}

absl::StatusCode CodeForCkr(CK_RV rv) {
  if (const Row* row = Find(rv)) return row->code;
  return C::kInternal;
}

absl::Status CkrStatus(absl::string_view fn, CK_RV rv) {
  if (rv == CKR_OK) return absl::OkStatus();
  const Row* row = Find(rv);
  absl::StatusCode code = row ? row->code : C::kInternal;
  if (code == C::kOk) code = C::kInternal;  // caller asked for a failure
  std::string hint = (row && row->hint[0] != '\0') ? row->hint : "token operation failed";
  absl::Status status(code, absl::StrCat(hint, " (", fn, ": ", CkrName(rv), ")"));
  status.SetPayload(kCkrPayload, absl::Cord(absl::StrCat(rv)));
  return status;
}

std::optional<CK_RV> CkrOf(const absl::Status& status) {
  auto payload = status.GetPayload(kCkrPayload);
  if (!payload) return std::nullopt;
  CK_RV rv;
  if (!absl::SimpleAtoi(std::string(*payload), &rv)) return std::nullopt;
  return rv;
}

bool IsTokenGone(CK_RV rv) {
  const Row* row = Find(rv);
  return row != nullptr && row->gone != nullptr;
}

absl::Status TokenGoneStatus(absl::string_view token_label, const absl::Status& status) {
  std::optional<CK_RV> rv = CkrOf(status);
  const Row* row = rv ? Find(*rv) : nullptr;
  if (row == nullptr || row->gone == nullptr) return status;
  absl::Status out = absl::UnavailableError(
      absl::StrCat("token \"", token_label, "\" ", row->gone, " (", row->name, ")"));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

bool StopsObjectReads(const absl::Status& status) {
  std::optional<CK_RV> rv = CkrOf(status);
  return !rv || IsTokenGone(*rv) || *rv == CKR_USER_NOT_LOGGED_IN;
}

}  // namespace smime::tokens
