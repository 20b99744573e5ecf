// Selector resolution against the keys of a real SoftHSM token.
#include "agent/key_resolver.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime::agent {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using K = KeySelector::Kind;

class KeyResolverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TestToken(testing::MakeToken("resolver", true));
    ::setenv("SOFTHSM2_CONF", dir_->conf.c_str(), 1);
    module_ = new std::shared_ptr<tokens::Module>(*tokens::Module::Load(testing::kSoftHsmModule));
    token_ = tokens::Token::Open(*module_, tokens::TokenOptions{"resolver", 2})->release();
    std::string pin = testing::ReadFile(dir_->pin_file);
    pin.pop_back();
    ASSERT_THAT(token_->Login(tokens::SecretBuffer(pin.data(), pin.size())), IsOk());
    // A key labelled like alice's hex id makes "01" ambiguous on purpose.
    ASSERT_THAT(token_->GenerateKey(tokens::KeySpec::kEcP256, "01", absl::Now() + absl::Seconds(10)).status(),
                IsOk());
  }
  static void TearDownTestSuite() {
    delete token_;
    delete module_;
    delete dir_;
  }
  absl::StatusOr<std::string> LabelOf(K kind, const std::string& value) {
    auto key = ResolveKey(*token_->Keys(), token_->info(), KeySelector{kind, value});
    if (!key.ok()) return key.status();
    return (*key)->label();
  }
  static testing::TestToken* dir_;
  static std::shared_ptr<tokens::Module>* module_;
  static tokens::Token* token_;
};
testing::TestToken* KeyResolverTest::dir_ = nullptr;
std::shared_ptr<tokens::Module>* KeyResolverTest::module_ = nullptr;
tokens::Token* KeyResolverTest::token_ = nullptr;

struct Case {
  K kind;
  std::string value;
  std::string label;  // expected; empty when an error is expected
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string message = "";
};

class KeyResolverCaseTest : public KeyResolverTest, public ::testing::WithParamInterface<Case> {};

TEST_P(KeyResolverCaseTest, Resolves) {
  const Case& c = GetParam();
  auto got = LabelOf(c.kind, c.value);
  if (c.code == absl::StatusCode::kOk) {
    EXPECT_THAT(got, testing::IsOkAndHolds(c.label));
  } else {
    EXPECT_THAT(got, StatusIs(c.code, HasSubstr(c.message)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Selectors, KeyResolverCaseTest,
    ::testing::Values(
        Case{K::kEmail, "alice@example.com", "alice"},
        Case{K::kEmail, "Alice@Example.COM", "alice"},
        Case{K::kText, "bob@example.com", "bob"},
        Case{K::kText, "erin@example.com", "erin"},  // certificate paired by public key
        Case{K::kLabel, "carol", "carol"},
        Case{K::kText, "carol", "carol"},
        Case{K::kText, "04", "dave"},
        Case{K::kText, "0x05", "erin"},
        Case{K::kId, std::string("\x02", 1), "bob"},
        Case{K::kText, "pkcs11:id=%03", "carol"},
        Case{K::kUri, "pkcs11:token=resolver;object=dave;type=private", "dave"},
        Case{K::kText, "nobody@example.com", "", absl::StatusCode::kNotFound,
             "no key matches \"nobody@example.com\""},
        Case{K::kText, "zz", "", absl::StatusCode::kNotFound, "no key matches"},
        Case{K::kText, "", "", absl::StatusCode::kInvalidArgument, "empty"},
        Case{K::kUri, "pkcs11:token=other;id=%01", "", absl::StatusCode::kNotFound, "another token"},
        Case{K::kUri, "pkcs11:token=resolver", "", absl::StatusCode::kInvalidArgument, "names no key"},
        Case{K::kUri, "pkcs11:id=%01?pin-value=1234", "", absl::StatusCode::kInvalidArgument, "PIN"},
        Case{K::kUri, "pkcs11:id=%zz", "", absl::StatusCode::kInvalidArgument, "malformed"},
        Case{K::kLabel, "", "", absl::StatusCode::kInvalidArgument, "empty"}));

TEST_F(KeyResolverTest, AmbiguousTextListsCandidates) {
  EXPECT_THAT(LabelOf(K::kText, "01"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("matches 2 keys"), HasSubstr("label \"alice\" id 01"),
                             HasSubstr("label \"01\""), HasSubstr("pkcs11: URI"))));
  // The exact kinds are not ambiguous.
  EXPECT_THAT(LabelOf(K::kLabel, "01"), testing::IsOkAndHolds("01"));
  EXPECT_THAT(LabelOf(K::kId, std::string("\x01", 1)), testing::IsOkAndHolds("alice"));
}

TEST(DescribeSelector, HidesUriQueryAndHexesIds) {
  EXPECT_EQ(DescribeSelector({K::kUri, "pkcs11:id=%01?pin-value=1234"}), "pkcs11:id=%01");
  EXPECT_EQ(DescribeSelector({K::kText, "pkcs11:id=%01?pin-value=1234"}), "pkcs11:id=%01");
  EXPECT_EQ(DescribeSelector({K::kId, std::string("\x0a\xff", 2)}), "id 0aff");
}

}  // namespace
}  // namespace smime::agent
