// The "token gone" column of the CKR table and the padding-oracle rule:
// one list for every caller.
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"
#include "tokens/ckr_status.h"
#include "tokens/decrypt_failure.h"

namespace smime::tokens {
namespace {

using ::smime::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TokenGone, OneListForReconnectionAndMessage) {
  for (CK_RV rv : {CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID,
                   CKR_SLOT_ID_INVALID, CKR_DEVICE_ERROR}) {
    EXPECT_TRUE(IsTokenGone(rv)) << CkrName(rv);
    // What the caller reads says so too (this list once left out
    // CKR_DEVICE_ERROR, which a network HSM's module reports in an outage).
    absl::Status st = TokenGoneStatus("hsm", CkrStatus("C_Sign", rv));
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("token \"hsm\" "))) << CkrName(rv);
    EXPECT_THAT(std::string(st.message()), HasSubstr(CkrName(rv)));
    EXPECT_EQ(CkrOf(st), rv);  // the payload survives
  }
  EXPECT_THAT(TokenGoneStatus("hsm", CkrStatus("C_Sign", CKR_DEVICE_REMOVED)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("was removed; insert it and retry")));
  EXPECT_THAT(TokenGoneStatus("hsm", CkrStatus("C_Sign", CKR_DEVICE_ERROR)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot be reached")));
}

TEST(TokenGone, OtherErrorsPassUnchanged) {
  for (CK_RV rv : {CKR_USER_NOT_LOGGED_IN, CKR_GENERAL_ERROR, CKR_KEY_HANDLE_INVALID, CKR_PIN_INCORRECT}) {
    EXPECT_FALSE(IsTokenGone(rv)) << CkrName(rv);
    absl::Status st = CkrStatus("C_Sign", rv);
    EXPECT_EQ(TokenGoneStatus("hsm", st), st);
  }
  absl::Status plain = absl::UnavailableError("no CK_RV");
  EXPECT_EQ(TokenGoneStatus("hsm", plain), plain);
}

TEST(DecryptFailure, CiphertextFailuresReadTheSame) {
  for (CK_RV rv : {CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE, CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED,
                   CKR_DATA_LEN_RANGE, CKR_ARGUMENTS_BAD}) {
    EXPECT_TRUE(MustReadDecryptionFailed(CkrStatus("C_Decrypt", rv))) << CkrName(rv);
    EXPECT_THAT(AsDecryptFailure(CkrStatus("C_Decrypt", rv)),
                StatusIs(absl::StatusCode::kInvalidArgument, std::string(kDecryptionFailed)));
  }
  // The engine's view: statuses without a CK_RV, by code.
  EXPECT_TRUE(MustReadDecryptionFailed(absl::InternalError("CMS_decrypt failed")));
  EXPECT_TRUE(MustReadDecryptionFailed(absl::InvalidArgumentError("bad padding")));
  EXPECT_EQ(DecryptionFailed(), absl::InvalidArgumentError("decryption failed"));
}

TEST(DecryptFailure, FailuresTheUserCanActOnKeepTheirStatus) {
  for (CK_RV rv : {CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR, CKR_SESSION_HANDLE_INVALID, CKR_USER_NOT_LOGGED_IN,
                   CKR_PIN_LOCKED, CKR_KEY_HANDLE_INVALID}) {
    absl::Status st = CkrStatus("C_Decrypt", rv);
    EXPECT_FALSE(MustReadDecryptionFailed(st)) << CkrName(rv);
    EXPECT_EQ(AsDecryptFailure(st), st);
  }
  for (absl::Status st : {absl::UnavailableError("token \"t\" was removed"), absl::FailedPreconditionError("locked"),
                          absl::NotFoundError("key gone")}) {
    EXPECT_FALSE(MustReadDecryptionFailed(st)) << st;
  }
  EXPECT_FALSE(MustReadDecryptionFailed(absl::OkStatus()));
}

}  // namespace
}  // namespace smime::tokens
