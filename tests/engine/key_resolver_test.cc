// Selector resolution against the keys of a real SoftHSM token.
#include "agent/engine/key_resolver.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime::agent {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using K = KeySelector::Kind;

// A throwaway SoftHSM token (with the test keys when `with_keys`), opened
// and logged in through the tokens layer; lives for the test suite.
struct SuiteToken {
  testing::TestToken files;
  std::shared_ptr<tokens::Module> module;
  std::unique_ptr<tokens::Token> token;
};
SuiteToken* OpenSuiteToken(const std::string& label, bool with_keys) {
  auto* t = new SuiteToken{testing::MakeToken(label, with_keys), nullptr, nullptr};
  ::setenv("SOFTHSM2_CONF", t->files.conf.c_str(), 1);
  t->module = *tokens::Module::Load(testing::kSoftHsmModule);
  t->token = std::move(*tokens::Token::Open(t->module, tokens::TokenOptions{label, 2}));
  std::string pin = testing::ReadFile(t->files.pin_file);
  pin.pop_back();
  EXPECT_THAT(t->token->Login(tokens::SecretBuffer(pin.data(), pin.size())), IsOk());
  return t;
}

class KeyResolverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_ = OpenSuiteToken("resolver", true);
    token_ = suite_->token.get();
    // A key labelled like alice's hex id makes "01" ambiguous on purpose.
    ASSERT_THAT(token_->GenerateKey(tokens::KeySpec::kEcP256, "01", absl::Now() + absl::Seconds(10)).status(),
                IsOk());
  }
  static void TearDownTestSuite() { delete suite_; }
  absl::StatusOr<std::string> LabelOf(K kind, const std::string& value) {
    auto key = ResolveKey(*token_->Keys(), token_->info(), KeySelector{kind, value});
    if (!key.ok()) return key.status();
    return (*key)->label();
  }
  static SuiteToken* suite_;
  static tokens::Token* token_;
};
SuiteToken* KeyResolverTest::suite_ = nullptr;
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

// Key rotation: several keys with certificates for one email, at fixed
// times relative to `now_`, on a token of their own.
class RotationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_ = OpenSuiteToken("rotation", false);
    token_ = suite_->token.get();
    const absl::Duration day = absl::Hours(24);
    // label, email, notBefore and notAfter relative to now_ (no certificate
    // when both are zero).
    struct Spec {
      std::string label, email;
      absl::Duration from, until;
    };
    for (const Spec& k : std::vector<Spec>{{"old", "rot@example.com", -300 * day, 60 * day},
                                           {"new", "rot@example.com", -10 * day, 300 * day},
                                           {"future", "rot@example.com", 5 * day, 400 * day},
                                           {"lapsed", "rot@example.com", -700 * day, -300 * day},
                                           {"only-expired", "gone@example.com", -700 * day, -1 * day},
                                           {"sole", "sole@example.com", -1 * day, 100 * day},
                                           {"bare", "", absl::ZeroDuration(), absl::ZeroDuration()}}) {
      auto key = token_->GenerateKey(tokens::KeySpec::kEcP256, k.label, absl::Now() + absl::Seconds(10));
      ASSERT_THAT(key.status(), IsOk());
      if (k.email.empty()) continue;
      auto cert = testing::MakeCertFor((*key)->public_key(), k.label,
                                       {{NID_subject_alt_name, "email:" + k.email},
                                        {NID_key_usage, "critical,digitalSignature,keyAgreement"}},
                                       now_ + k.from, now_ + k.until);
      ASSERT_THAT(token_->StoreCertificates({{cert, (*key)->id(), k.label, tokens::CertificateCategory::kTokenUser}},
                                            absl::Now() + absl::Seconds(10))
                      .status(),
                  IsOk());
    }
  }
  static void TearDownTestSuite() { delete suite_; }
  static std::shared_ptr<const tokens::Key> Key(const std::string& label) {
    auto key = ResolveKey(*token_->Keys(), token_->info(), KeySelector{K::kLabel, label});
    EXPECT_THAT(key.status(), IsOk());
    return key.ok() ? *key : nullptr;
  }
  static absl::StatusOr<std::string> SignerFor(const std::string& email, absl::Time at) {
    auto key = ResolveSigningKey(*token_->Keys(), token_->info(), KeySelector{K::kText, email}, at);
    if (!key.ok()) return key.status();
    return (*key)->label();
  }
  static std::string StatusName(const std::string& label, absl::Time at) {
    return KeyStatusName(StatusOf(*Key(label), *token_->Keys(), at));
  }
  static SuiteToken* suite_;
  static tokens::Token* token_;
  static absl::Time now_;
};
SuiteToken* RotationTest::suite_ = nullptr;
tokens::Token* RotationTest::token_ = nullptr;
absl::Time RotationTest::now_ = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));

TEST_F(RotationTest, SigningByEmailPicksNewestValidCertificate) {
  // "future" is newer but not valid yet; "lapsed" expired long ago.
  EXPECT_THAT(SignerFor("rot@example.com", now_), testing::IsOkAndHolds("new"));
  EXPECT_EQ(StatusName("new", now_), "current");
  EXPECT_EQ(StatusName("old", now_), "superseded");
  EXPECT_EQ(StatusName("future", now_), "not-yet-valid");
  EXPECT_EQ(StatusName("lapsed", now_), "expired");
  EXPECT_EQ(StatusName("bare", now_), "no-certificate");
  // The same keys at other times: before "new" existed "old" signed; once
  // "future" is valid it takes over.
  const absl::Duration day = absl::Hours(24);
  EXPECT_THAT(SignerFor("rot@example.com", now_ - 20 * day), testing::IsOkAndHolds("old"));
  EXPECT_EQ(StatusName("old", now_ - 20 * day), "current");
  EXPECT_THAT(SignerFor("rot@example.com", now_ + 6 * day), testing::IsOkAndHolds("future"));
  EXPECT_EQ(StatusName("new", now_ + 6 * day), "superseded");
  // Selectors other than an email name one key, whatever its standing.
  EXPECT_THAT(SignerFor("old", now_), testing::IsOkAndHolds("old"));
}

TEST_F(RotationTest, OnlyExpiredCertificatesResolveSoThePolicyCanSaySo) {
  // No valid certificate for the email: the one key is returned (sign then
  // refuses it as expired, naming the certificate), not "no key matches".
  EXPECT_THAT(SignerFor("gone@example.com", now_), testing::IsOkAndHolds("only-expired"));
  EXPECT_THAT(SignerFor("nobody@example.com", now_), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no key matches")));
}

TEST_F(RotationTest, RetiredKeysAreSkippedAndSaidSo) {
  // Retire "sole" as of tomorrow: today it still signs; from then it is
  // refused by email and by label, and every key for its email is retired.
  const absl::Duration day = absl::Hours(24);
  ASSERT_THAT(token_->RetireKey(*Key("sole"), now_ + day, absl::Now() + absl::Seconds(10)), IsOk());
  EXPECT_THAT(SignerFor("sole@example.com", now_), testing::IsOkAndHolds("sole"));
  EXPECT_EQ(StatusName("sole", now_ + day), "retired");
  EXPECT_THAT(SignerFor("sole", now_ + day),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("retired")));
  EXPECT_THAT(SignerFor("sole@example.com", now_ + day),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("retired")));
  // Decryption does not go through ResolveSigningKey: the key is still listed.
  EXPECT_NE(Key("sole"), nullptr);
  // Reinstated, it signs again.
  ASSERT_THAT(token_->ReinstateKey(*Key("sole"), absl::Now() + absl::Seconds(10)), IsOk());
  EXPECT_EQ(Key("sole")->end_date(), "");
  EXPECT_THAT(SignerFor("sole@example.com", now_ + day), testing::IsOkAndHolds("sole"));
  EXPECT_EQ(StatusName("sole", now_ + day), "current");
}

TEST(DescribeSelector, HidesUriQueryAndHexesIds) {
  EXPECT_EQ(DescribeSelector({K::kUri, "pkcs11:id=%01?pin-value=1234"}), "pkcs11:id=%01");
  EXPECT_EQ(DescribeSelector({K::kText, "pkcs11:id=%01?pin-value=1234"}), "pkcs11:id=%01");
  EXPECT_EQ(DescribeSelector({K::kId, std::string("\x0a\xff", 2)}), "id 0aff");
}

}  // namespace
}  // namespace smime::agent
