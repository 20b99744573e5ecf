// tokens/ on a real SoftHSM token made by softhsm-config/make-token.sh, with
// keys made by openssl and pkcs11-tool. Results are checked with OpenSSL.
#include "tokens/token.h"

#include <gtest/gtest.h>

#include <openssl/pem.h>

#include <cstdlib>

#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::Padding;
using ::smime::testing::ReadFile;
using ::smime::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

SecretBuffer Pin(const std::string& text) { return SecretBuffer(text.data(), text.size()); }

std::string FilePin(const std::string& path) {
  std::string p = ReadFile(path);
  while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
  return p;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

// One token and module per suite: PKCS#11 allows one C_Initialize per
// process, and SoftHSM reads SOFTHSM2_CONF then.
class TokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    token_dir_ = new testing::TestToken(testing::MakeToken("unit", /*with_test_keys=*/true));
    ::setenv("SOFTHSM2_CONF", token_dir_->conf.c_str(), 1);
    auto module = Module::Load(testing::kSoftHsmModule);
    ASSERT_THAT(module.status(), IsOk());
    module_ = new std::shared_ptr<Module>(*module);
    auto token = Token::Open(*module_, TokenOptions{"unit", 4});
    ASSERT_THAT(token.status(), IsOk());
    ASSERT_THAT((*token)->Login(Pin(FilePin(token_dir_->pin_file))), IsOk());
    token_ = token->release();
  }
  static void TearDownTestSuite() {
    delete token_;
    delete module_;
    delete token_dir_;
  }
  std::shared_ptr<const Key> KeyNamed(const std::string& label) {
    for (const auto& k : *token_->Keys()) {
      if (k->label() == label) return k;
    }
    ADD_FAILURE() << "no key " << label;
    return nullptr;
  }
  std::string PubPem(const std::string& name) { return ReadFile(token_dir_->Path("pub/" + name + ".pem")); }

  static testing::TestToken* token_dir_;
  static std::shared_ptr<Module>* module_;
  static Token* token_;
};
testing::TestToken* TokenTest::token_dir_ = nullptr;
std::shared_ptr<Module>* TokenTest::module_ = nullptr;
Token* TokenTest::token_ = nullptr;

TEST_F(TokenTest, DiscoversKeysMadeByOtherTools) {
  std::vector<std::string> labels, names, ids;
  for (const auto& k : *token_->Keys()) {
    labels.push_back(k->label());
    names.push_back(k->short_name());
    ids.push_back(k->id_hex());
  }
  EXPECT_THAT(labels, ElementsAre("alice", "bob", "carol", "dave", "erin"));
  EXPECT_THAT(names, ElementsAre("rsa2048", "p256", "rsa2048", "p256", "rsa2048"));
  EXPECT_THAT(ids, ElementsAre("01", "02", "03", "04", "05"));
}

TEST_F(TokenTest, PairsCertificatesByIdAndByPublicKey) {
  auto alice = KeyNamed("alice");
  ASSERT_NE(alice->certificate(), nullptr);
  EXPECT_THAT(alice->cert_summary().emails, ElementsAre("alice@example.com"));
  EXPECT_THAT(alice->cert_summary().subject, HasSubstr("CN=Alice"));
  // erin's certificate sits under CKA_ID 55, the key under 05.
  auto erin = KeyNamed("erin");
  ASSERT_NE(erin->certificate(), nullptr);
  EXPECT_THAT(erin->cert_summary().emails, ElementsAre("erin@example.com"));
  EXPECT_EQ(KeyNamed("carol")->certificate(), nullptr);
  EXPECT_EQ(KeyNamed("dave")->certificate(), nullptr);
  // dave's public key comes from the public key object pkcs11-tool made.
  EXPECT_NE(KeyNamed("dave")->public_key(), nullptr);
  EXPECT_TRUE(token_->OtherCertificates().empty());
}

TEST_F(TokenTest, DescribeIsTheOneHumanFormOfAKey) {
  EXPECT_EQ(Describe(*KeyNamed("alice")), "key \"alice\" (id 01)");
  // Token's own messages use it.
  EXPECT_THAT(token_->EcdhDerive(*KeyNamed("alice"), "x", Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key \"alice\" (id 01) is not an EC key")));
}

TEST_F(TokenTest, KeyUriNamesTokenAndObjectWithoutQuery) {
  auto alice = KeyNamed("alice");
  EXPECT_THAT(alice->uri(), HasSubstr("token=unit"));
  EXPECT_THAT(alice->uri(), HasSubstr("id=%01"));
  EXPECT_THAT(alice->uri(), HasSubstr("object=alice"));
  EXPECT_THAT(alice->uri(), HasSubstr("type=private"));
  EXPECT_EQ(alice->uri().find('?'), std::string::npos);
}

struct SignCase {
  const char* key;
  SignMechanism mechanism;
  Padding padding;
};
class TokenSignTest : public TokenTest, public ::testing::WithParamInterface<SignCase> {};

TEST_P(TokenSignTest, SignatureVerifiesWithOpenssl) {
  const SignCase& c = GetParam();
  std::string digest = testing::Sha256("message for " + std::string(c.key));
  auto sig = token_->Sign(*KeyNamed(c.key), c.mechanism, digest, Soon());
  ASSERT_THAT(sig.status(), IsOk());
  EXPECT_TRUE(testing::VerifyDigest(PubPem(c.key), digest, *sig, c.padding));
  // And the check can fail: another digest does not verify.
  EXPECT_FALSE(testing::VerifyDigest(PubPem(c.key), testing::Sha256("other"), *sig, c.padding));
}

INSTANTIATE_TEST_SUITE_P(
    Mechanisms, TokenSignTest,
    ::testing::Values(SignCase{"alice", SignMechanism::kRsaPkcs1Sha256, Padding::kPkcs1},
                      SignCase{"alice", SignMechanism::kRsaPssSha256, Padding::kPss},
                      SignCase{"carol", SignMechanism::kRsaPkcs1Sha256, Padding::kPkcs1},
                      SignCase{"bob", SignMechanism::kEcdsaSha256, Padding::kPkcs1},
                      SignCase{"dave", SignMechanism::kEcdsaSha256, Padding::kPkcs1}));

TEST_F(TokenTest, SignRefusesWrongDigestLengthAndWrongAlgorithm) {
  auto alice = KeyNamed("alice");
  EXPECT_THAT(token_->Sign(*alice, SignMechanism::kRsaPkcs1Sha256, "short", Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 bytes")));
  std::string digest(32, 'x');
  EXPECT_THAT(token_->Sign(*alice, SignMechanism::kEcdsaSha256, digest, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rsa-pkcs1-sha256")));
  EXPECT_THAT(token_->Sign(*KeyNamed("bob"), SignMechanism::kRsaPssSha256, digest, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ecdsa-sha256")));
}

struct DecryptCase {
  const char* key;
  DecryptMechanism mechanism;
  Padding padding;
};
class TokenDecryptTest : public TokenTest, public ::testing::WithParamInterface<DecryptCase> {};

TEST_P(TokenDecryptTest, OpensWhatOpensslEncrypted) {
  const DecryptCase& c = GetParam();
  const std::string secret = testing::Sha256(c.key);  // 32 bytes, like an AES-256 key
  std::string ct = testing::RsaEncrypt(PubPem(c.key), secret, c.padding);
  auto plain = token_->Decrypt(*KeyNamed(c.key), c.mechanism, ct, Soon());
  ASSERT_THAT(plain.status(), IsOk());
  EXPECT_EQ(*plain, secret);
}

TEST_P(TokenDecryptTest, TamperedCiphertextFailsUniformly) {
  const DecryptCase& c = GetParam();
  std::string ct = testing::RsaEncrypt(PubPem(c.key), "secret", c.padding);
  ct[ct.size() / 2] ^= 0x01;
  EXPECT_THAT(token_->Decrypt(*KeyNamed(c.key), c.mechanism, ct, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, "decryption failed"));
}

INSTANTIATE_TEST_SUITE_P(
    Paddings, TokenDecryptTest,
    ::testing::Values(DecryptCase{"alice", DecryptMechanism::kRsaPkcs1, Padding::kPkcs1},
                      DecryptCase{"alice", DecryptMechanism::kRsaOaepSha1, Padding::kOaepSha1},
                      // SoftHSM has no OAEP-SHA256: decoded from raw RSA.
                      DecryptCase{"alice", DecryptMechanism::kRsaOaepSha256, Padding::kOaepSha256},
                      DecryptCase{"carol", DecryptMechanism::kRsaOaepSha256, Padding::kOaepSha256}));

TEST_F(TokenTest, OaepWithWrongHashFailsLikeAnyBadCiphertext) {
  std::string ct = testing::RsaEncrypt(PubPem("alice"), "secret", Padding::kOaepSha1);
  EXPECT_THAT(token_->Decrypt(*KeyNamed("alice"), DecryptMechanism::kRsaOaepSha256, ct, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, "decryption failed"));
  // PKCS#1 v1.5 ciphertext read as OAEP, and vice versa: same message.
  std::string v15 = testing::RsaEncrypt(PubPem("alice"), "secret", Padding::kPkcs1);
  EXPECT_THAT(token_->Decrypt(*KeyNamed("alice"), DecryptMechanism::kRsaOaepSha1, v15, Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, "decryption failed"));
}

TEST_F(TokenTest, DecryptRefusesWrongLengthAndEcKey) {
  EXPECT_THAT(token_->Decrypt(*KeyNamed("alice"), DecryptMechanism::kRsaPkcs1, "abc", Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be 256 bytes")));
  EXPECT_THAT(token_->Decrypt(*KeyNamed("bob"), DecryptMechanism::kRsaPkcs1, std::string(32, 'x'), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA")));
}

TEST_F(TokenTest, GeneratesKeysWithIdFromPublicKey) {
  for (auto [spec, name] : {std::pair{KeySpec::kEcP256, "p256"}, std::pair{KeySpec::kEcP384, "p384"},
                            std::pair{KeySpec::kRsa2048, "rsa2048"}}) {
    std::string label = std::string("gen-") + name;
    auto key = token_->GenerateKey(spec, label, Soon());
    ASSERT_THAT(key.status(), IsOk()) << name;
    EXPECT_EQ((*key)->short_name(), name);
    EXPECT_EQ((*key)->id().size(), 20u);  // SHA-1
    ASSERT_NE((*key)->public_key(), nullptr);
    // The key signs, and OpenSSL verifies with the public key we list.
    std::string digest = testing::Sha256(label);
    auto mech = (*key)->algorithm() == KeyAlgorithm::kEc ? SignMechanism::kEcdsaSha256
                                                          : SignMechanism::kRsaPkcs1Sha256;
    auto sig = token_->Sign(**key, mech, digest, Soon());
    ASSERT_THAT(sig.status(), IsOk());
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, (*key)->public_key());
    char* data;
    long len = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<size_t>(len));
    BIO_free(bio);
    EXPECT_TRUE(testing::VerifyDigest(pem, digest, *sig, Padding::kPkcs1));
  }
  EXPECT_THAT(token_->GenerateKey(KeySpec::kEcP256, "gen-p256", Soon()),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("gen-p256")));
  EXPECT_THAT(token_->GenerateKey(KeySpec::kEcP256, "", Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label")));
}

class TokenOpenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    token_dir_ = new testing::TestToken(testing::MakeToken("open-test", false));
    ::setenv("SOFTHSM2_CONF", token_dir_->conf.c_str(), 1);
    module_ = new std::shared_ptr<Module>(*Module::Load(testing::kSoftHsmModule));
  }
  static void TearDownTestSuite() {
    delete module_;
    delete token_dir_;
  }
  static testing::TestToken* token_dir_;
  static std::shared_ptr<Module>* module_;
};
testing::TestToken* TokenOpenTest::token_dir_ = nullptr;
std::shared_ptr<Module>* TokenOpenTest::module_ = nullptr;

TEST_F(TokenOpenTest, WrongPinIsRefusedOnceAndTokenStaysUsable) {
  auto token = Token::Open(*module_, TokenOptions{"open-test", 2});
  ASSERT_THAT(token.status(), IsOk());
  EXPECT_THAT((*token)->Login(Pin("wrong-pin")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("CKR_PIN_INCORRECT")));
  EXPECT_THAT((*token)->Login(Pin(FilePin(token_dir_->pin_file))), IsOk());
}

TEST_F(TokenOpenTest, SelectsByLabelSerialOrUri) {
  auto by_label = Token::Open(*module_, TokenOptions{"open-test", 2});
  ASSERT_THAT(by_label.status(), IsOk());
  std::string serial = (*by_label)->serial();
  EXPECT_THAT(Token::Open(*module_, TokenOptions{serial, 2}).status(), IsOk());
  EXPECT_THAT(Token::Open(*module_, TokenOptions{"pkcs11:token=open-test", 2}).status(), IsOk());
  EXPECT_THAT(Token::Open(*module_, TokenOptions{"", 2}).status(), IsOk());  // the only one
  EXPECT_THAT(Token::Open(*module_, TokenOptions{"nope", 2}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"open-test\"")));
  EXPECT_THAT(Token::Open(*module_, TokenOptions{"pkcs11:token=x?pin-value=1", 2}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PIN")));
}

TEST(ModuleTest, MissingModuleIsNotFound) {
  EXPECT_THAT(Module::Load("/nonexistent/libpkcs11.so"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot load")));
  EXPECT_THAT(Module::Load("/usr/lib/x86_64-linux-gnu/libz.so.1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a PKCS#11 module")));
  EXPECT_THAT(Module::Load("no-such-registered-module"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("p11-kit")));
}

}  // namespace
}  // namespace smime::tokens
