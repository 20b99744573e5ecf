#include "tokens/ckr_status.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace smime::tokens {
namespace {

using ::smime::testing::StatusIs;
using ::testing::HasSubstr;

struct Row {
  CK_RV rv;
  absl::StatusCode code;
};

class CkrStatusTest : public ::testing::TestWithParam<Row> {};

TEST_P(CkrStatusTest, MapsToDesignedCode) {
  const Row& row = GetParam();
  EXPECT_EQ(CodeForCkr(row.rv), row.code) << CkrName(row.rv);
  absl::Status st = CkrStatus("C_Sign", row.rv);
  // OK-valued codes (already-logged-in...) still make an error when asked to.
  if (row.code != absl::StatusCode::kOk) {
    EXPECT_EQ(st.code(), row.code);
  }
  EXPECT_EQ(CkrOf(st), row.rv);
  EXPECT_THAT(std::string(st.message()), HasSubstr("C_Sign: " + CkrName(row.rv)));
}

// The error table of DESIGN.md/STYLE.md §2, row by row.
INSTANTIATE_TEST_SUITE_P(
    Table, CkrStatusTest,
    ::testing::Values(Row{CKR_TOKEN_NOT_PRESENT, absl::StatusCode::kUnavailable},
                      Row{CKR_DEVICE_REMOVED, absl::StatusCode::kUnavailable},
                      Row{CKR_SESSION_HANDLE_INVALID, absl::StatusCode::kUnavailable},
                      Row{CKR_PIN_INCORRECT, absl::StatusCode::kFailedPrecondition},
                      Row{CKR_PIN_LOCKED, absl::StatusCode::kFailedPrecondition},
                      Row{CKR_USER_NOT_LOGGED_IN, absl::StatusCode::kFailedPrecondition},
                      Row{CKR_KEY_HANDLE_INVALID, absl::StatusCode::kNotFound},
                      Row{CKR_OBJECT_HANDLE_INVALID, absl::StatusCode::kNotFound},
                      Row{CKR_DATA_LEN_RANGE, absl::StatusCode::kInvalidArgument},
                      Row{CKR_MECHANISM_INVALID, absl::StatusCode::kUnimplemented},
                      Row{CKR_SESSION_COUNT, absl::StatusCode::kResourceExhausted},
                      Row{CKR_GENERAL_ERROR, absl::StatusCode::kInternal},
                      Row{CKR_FUNCTION_FAILED, absl::StatusCode::kInternal}));

TEST(CkrStatus, OkIsOk) { EXPECT_TRUE(CkrStatus("C_Sign", CKR_OK).ok()); }

TEST(CkrStatus, UnknownVendorCodeIsInternalWithHexName) {
  const CK_RV vendor = CKR_VENDOR_DEFINED | 0x42;
  EXPECT_EQ(CodeForCkr(vendor), absl::StatusCode::kInternal);
  EXPECT_EQ(CkrName(vendor), "CKR_0x80000042");
  EXPECT_THAT(CkrStatus("C_Decrypt", vendor), StatusIs(absl::StatusCode::kInternal, HasSubstr("0x80000042")));
}

TEST(CkrStatus, PinMessageTellsWhatToDo) {
  EXPECT_THAT(CkrStatus("C_Login", CKR_PIN_INCORRECT),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not retry")));
}

TEST(CkrStatus, PlainStatusCarriesNoCkr) {
  EXPECT_FALSE(CkrOf(absl::InternalError("x")).has_value());
}

// Our matchers must be able to fail, or every test using them proves nothing.
void ExpectNotFoundIsInternal() {
  EXPECT_THAT(absl::NotFoundError("gone"), StatusIs(absl::StatusCode::kInternal, ::testing::_));
}
void ExpectMessageHere() {
  EXPECT_THAT(absl::NotFoundError("gone"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("here")));
}
void ExpectInternalOk() { EXPECT_THAT(absl::InternalError("x"), ::smime::testing::IsOk()); }
void ExpectHoldsFour() {
  absl::StatusOr<int> v = 3;
  EXPECT_THAT(v, ::smime::testing::IsOkAndHolds(4));
}

TEST(StatusMatchers, CanFail) {
  EXPECT_NONFATAL_FAILURE(ExpectNotFoundIsInternal(), "has code INTERNAL");
  EXPECT_NONFATAL_FAILURE(ExpectMessageHere(), "gone");
  EXPECT_NONFATAL_FAILURE(ExpectInternalOk(), "is OK");
  EXPECT_NONFATAL_FAILURE(ExpectHoldsFour(), "holds");
}

}  // namespace
}  // namespace smime::tokens
