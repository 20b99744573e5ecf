// Keys that share a CKA_ID (issue 14 item 2), in process over SoftHSM, on
// the token of tests/tokens/shared_id_token.h: two RSA and two EC key pairs
// imported by pkcs11-tool under one CKA_ID each, with their certificates,
// and two EC key pairs generated on the token with one CKA_ID and label. Each key shows its own public key and
// certificate; retiring or deleting one leaves the other as it was; keys
// whose objects cannot be told apart are refused, not guessed at.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"
#include "tests/tokens/shared_id_token.h"
#include "tokens/objects.h"
#include "tokens/ossl.h"
#include "tokens/token.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }

class SharedIdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    made_ = new testing::SharedIdToken("shared-id");
    dir_ = &made_->token();
    ::setenv("SOFTHSM2_CONF", dir_->conf.c_str(), 1);
    auto module = Module::Load(testing::kSoftHsmModule);
    ASSERT_THAT(module.status(), IsOk());
    module_ = new std::shared_ptr<Module>(*module);
    auto token = Token::Open(*module_, TokenOptions{"shared-id", 4});
    ASSERT_THAT(token.status(), IsOk());
    ASSERT_THAT((*token)->Login(SecretBuffer(made_->pin().data(), made_->pin().size())), IsOk());
    token_ = token->release();
  }
  static void TearDownTestSuite() {
    delete token_;
    delete module_;
    delete made_;
  }

  static std::vector<std::shared_ptr<const Key>> Named(const std::string& label) {
    std::vector<std::shared_ptr<const Key>> out;
    for (const auto& k : *token_->Keys()) {
      if (k->label() == label) out.push_back(k);
    }
    return out;
  }
  static std::shared_ptr<const Key> KeyNamed(const std::string& label) {
    auto keys = Named(label);
    EXPECT_THAT(keys, SizeIs(1)) << label;
    return keys.empty() ? nullptr : keys.front();
  }
  // How many objects of `cls` the token holds under CKA_ID `id`.
  static size_t Count(CK_OBJECT_CLASS cls, const std::string& id) {
    Module& m = **module_;
    CK_SLOT_ID slots[8];
    CK_ULONG n = 8;
    EXPECT_THAT(P11_CALL(m, C_GetSlotList, CK_TRUE, slots, &n), IsOk());
    for (CK_ULONG i = 0; i < n; ++i) {
      CK_TOKEN_INFO info;
      if (!P11_CALL(m, C_GetTokenInfo, slots[i], &info).ok() ||
          TrimPadded(info.label, sizeof(info.label)) != "shared-id") {
        continue;
      }
      CK_SESSION_HANDLE s;
      EXPECT_THAT(P11_CALL(m, C_OpenSession, slots[i], CKF_SERIAL_SESSION, nullptr, nullptr, &s), IsOk());
      std::string raw = *HexDecode(id);
      auto found = internal::FindObjectsMatching(m, s, {{CKA_CLASS, &cls, sizeof(cls)},
                                                        {CKA_ID, raw.data(), raw.size()}});
      (void)P11_CALL(m, C_CloseSession, s);
      EXPECT_THAT(found.status(), IsOk());
      return found.ok() ? found->size() : 0;
    }
    ADD_FAILURE() << "no token shared-id";
    return 0;
  }
  // `key` shows the public key and certificate files of `name` say.
  static void ExpectOwn(const Key& key, const std::string& name) {
    ASSERT_NE(key.public_key(), nullptr) << name;
    EXPECT_EQ(PublicKeyDer(key.public_key()), ReadFile(dir_->Path(name + ".pub"))) << name;
    ASSERT_NE(key.certificate(), nullptr) << name;
    EXPECT_EQ(CertificateDer(key.certificate()), ReadFile(dir_->Path(name + ".crt"))) << name;
    EXPECT_EQ(key.certificates().size(), 1u) << name;
  }
  // The key signs and OpenSSL verifies the signature with `name`'s key.
  static void ExpectSigns(const Key& key, const std::string& name) {
    std::string digest = testing::Sha256(name);
    auto mech = key.algorithm() == KeyAlgorithm::kEc ? SignMechanism::kEcdsaSha256 : SignMechanism::kRsaPkcs1Sha256;
    auto sig = token_->Sign(key, mech, digest, Soon());
    ASSERT_THAT(sig.status(), IsOk());
    EXPECT_TRUE(testing::VerifyDigest(ReadFile(dir_->Path(name + ".pem")), digest, *sig, testing::Padding::kPkcs1));
  }

  static testing::SharedIdToken* made_;
  static const testing::TestToken* dir_;
  static std::shared_ptr<Module>* module_;
  static Token* token_;
};
testing::SharedIdToken* SharedIdTest::made_ = nullptr;
const testing::TestToken* SharedIdTest::dir_ = nullptr;
std::shared_ptr<Module>* SharedIdTest::module_ = nullptr;
Token* SharedIdTest::token_ = nullptr;

TEST_F(SharedIdTest, EachKeyShowsItsOwnPublicKeyAndCertificate) {
  for (const char* name : {"r1", "r2", "e1", "e2"}) {
    auto key = KeyNamed(name);
    ASSERT_NE(key, nullptr);
    ExpectOwn(*key, name);
    ExpectSigns(*key, name);
  }
  EXPECT_TRUE(token_->OtherCertificates().empty());
  // Same CKA_ID, same label, and the private objects show no public key:
  // neither is given the other's (nor a guess).
  auto twins = Named("twin");
  ASSERT_THAT(twins, SizeIs(2));
  for (const auto& t : twins) EXPECT_EQ(t->public_key(), nullptr);
}

TEST_F(SharedIdTest, RetireOneLeavesTheOther) {
  for (auto [retired, other] : {std::pair{"r1", "r2"}, std::pair{"e2", "e1"}}) {
    ASSERT_THAT(token_->RetireKey(*KeyNamed(retired), absl::Now(), Soon()), IsOk());
    EXPECT_FALSE(KeyNamed(retired)->end_date().empty()) << retired;
    EXPECT_TRUE(KeyNamed(other)->end_date().empty()) << other;
    ASSERT_THAT(token_->RetireKey(*KeyNamed(other), absl::Now(), Soon()), IsOk());
    ASSERT_THAT(token_->ReinstateKey(*KeyNamed(retired), Soon()), IsOk());
    EXPECT_TRUE(KeyNamed(retired)->end_date().empty()) << retired;
    EXPECT_FALSE(KeyNamed(other)->end_date().empty()) << other;
    ASSERT_THAT(token_->ReinstateKey(*KeyNamed(other), Soon()), IsOk());
    EXPECT_TRUE(KeyNamed(other)->end_date().empty()) << other;
  }
}

TEST_F(SharedIdTest, KeysThatCannotBeToldApartAreRefused) {
  auto twins = Named("twin");
  ASSERT_THAT(twins, SizeIs(2));
  auto refused = [](absl::string_view what) {
    return StatusIs(absl::StatusCode::kFailedPrecondition,
                    AllOf(HasSubstr("key \"twin\" (id 0c) cannot be told apart"), HasSubstr(what)));
  };
  EXPECT_THAT(token_->RetireKey(*twins[0], absl::Now(), Soon()), refused("Nothing was retired"));
  EXPECT_THAT(token_->ReinstateKey(*twins[1], Soon()), refused("Nothing was reinstated"));
  EXPECT_THAT(token_->DeleteKey(*twins[0], Soon()), refused("Nothing was deleted"));
  EXPECT_EQ(Count(CKO_PRIVATE_KEY, "0c"), 2u);
  EXPECT_EQ(Count(CKO_PUBLIC_KEY, "0c"), 2u);
  ASSERT_THAT(token_->Refresh(), IsOk());
  EXPECT_THAT(Named("twin"), SizeIs(2));
}

TEST_F(SharedIdTest, DeleteOneLeavesTheOtherWhole) {
  for (auto [doomed, kept, id] : {std::tuple{"r1", "r2", "0a"}, std::tuple{"e2", "e1", "0b"}}) {
    auto deleted = token_->DeleteKey(*KeyNamed(doomed), Soon());
    ASSERT_THAT(deleted, IsOk()) << doomed;
    EXPECT_EQ(*deleted, 3u) << doomed;  // its private key, public key, certificate
    EXPECT_THAT(Named(doomed), SizeIs(0));
    EXPECT_EQ(Count(CKO_PRIVATE_KEY, id), 1u) << kept;
    EXPECT_EQ(Count(CKO_PUBLIC_KEY, id), 1u) << kept;
    EXPECT_EQ(Count(CKO_CERTIFICATE, id), 1u) << kept;
    auto key = KeyNamed(kept);
    ASSERT_NE(key, nullptr);
    ExpectOwn(*key, kept);
    ExpectSigns(*key, kept);
  }
  EXPECT_TRUE(token_->OtherCertificates().empty());
}

}  // namespace
}  // namespace smime::tokens
