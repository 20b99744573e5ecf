// Certificate objects written by Token::StoreCertificates on a real SoftHSM
// token: what is stored, that re-storing is a no-op, and that a failure
// half-way leaves the token as it was.
#include "tokens/objects.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"
#include "tokens/certificate.h"
#include "tokens/token.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;
using ::smime::testing::ReadFile;
using ::smime::testing::StatusIs;
using ::testing::ElementsAre;

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

class ObjectsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TestToken(testing::MakeToken("objects", /*with_test_keys=*/false));
    ::setenv("SOFTHSM2_CONF", dir_->conf.c_str(), 1);
    auto module = Module::Load(testing::kSoftHsmModule);
    ASSERT_THAT(module.status(), IsOk());
    module_ = new std::shared_ptr<Module>(*module);
    auto token = Token::Open(*module_, TokenOptions{"objects", 2});
    ASSERT_THAT(token.status(), IsOk());
    std::string pin = ReadFile(dir_->pin_file);
    while (!pin.empty() && pin.back() == '\n') pin.pop_back();
    ASSERT_THAT((*token)->Login(SecretBuffer(pin.data(), pin.size())), IsOk());
    token_ = token->release();
  }
  static void TearDownTestSuite() {
    delete token_;
    delete module_;
    delete dir_;
  }
  static std::vector<std::string> StoredDer() {
    std::vector<std::string> out;
    for (const auto& c : token_->OtherCertificates()) out.push_back(CertificateDer(c.get()));
    return out;
  }

  static testing::TestToken* dir_;
  static std::shared_ptr<Module>* module_;
  static Token* token_;
};
testing::TestToken* ObjectsTest::dir_ = nullptr;
std::shared_ptr<Module>* ObjectsTest::module_ = nullptr;
Token* ObjectsTest::token_ = nullptr;

TEST_F(ObjectsTest, StoresOnceAndSkipsDuplicates) {
  auto peer = MakeCert(KeyKind::kRsa, {{NID_subject_alt_name, "email:peer@example.com"}});
  CertificateToStore c{peer, "\x01\x02", "peer@example.com", CertificateCategory::kOtherEntity};
  auto first = token_->StoreCertificates({c, c}, Soon());
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(*first, ElementsAre(true, false));  // the second copy is the first's duplicate
  EXPECT_THAT(StoredDer(), ElementsAre(CertificateDer(peer.get())));
  auto again = token_->StoreCertificates({c}, Soon());
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(*again, ElementsAre(false));
  EXPECT_EQ(StoredDer().size(), 1u);
}

TEST_F(ObjectsTest, FailureHalfWayRemovesWhatItWrote) {
  std::vector<std::string> before = StoredDer();
  auto good = MakeCert(KeyKind::kEc, {{NID_subject_alt_name, "email:good@example.com"}});
  std::shared_ptr<X509> empty(X509_new(), X509_free);  // cannot be encoded
  auto result = token_->StoreCertificates(
      {{good, "\x03", "good", CertificateCategory::kOtherEntity}, {empty, "\x04", "bad", CertificateCategory::kOtherEntity}},
      Soon());
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  ASSERT_THAT(token_->Refresh(), IsOk());
  EXPECT_EQ(StoredDer(), before);
}

}  // namespace
}  // namespace smime::tokens
