// tokens/ over SoftHSM behind the fault-injection module
// (tests/testing/p11_fault_shim.cc), in process: objects the token will not
// read, a token pulled and put back while no call saw it go, and a PIN
// changed while the token was out (tried once, never again).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"
#include "tests/tokens/shim_token.h"
#include "tokens/token.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::StatusIs;
using ::smime::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

SecretBuffer Pin(const std::string& text) { return SecretBuffer(text.data(), text.size()); }
absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

bool VerifiesWith(const Key& key, const std::string& digest, const std::string& der_sig) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key.public_key(), nullptr);
  bool ok = ctx != nullptr && EVP_PKEY_verify_init(ctx) == 1 &&
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
            EVP_PKEY_verify(ctx, reinterpret_cast<const unsigned char*>(der_sig.data()), der_sig.size(),
                            reinterpret_cast<const unsigned char*>(digest.data()), digest.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  return ok;
}

// One SoftHSM store and one module per process (one C_Initialize; SoftHSM
// reads SOFTHSM2_CONF then), with two P-256 keys made on the token.
class TokenFaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env_ = new ShimToken("faults");
    ASSERT_NE(env_->token, nullptr);
    dir_ = &env_->dir;
    module_ = &env_->module;
    token_ = env_->token.get();
    for (const char* label : {"one", "two"}) {
      ASSERT_THAT(token_->GenerateKey(KeySpec::kEcP256, label, Soon()).status(), IsOk());
    }
  }
  static void TearDownTestSuite() { delete env_; }
  void TearDown() override {
    SetControl("");
    EXPECT_THAT(token_->Refresh(), IsOk());
    EXPECT_EQ(token_->Keys()->size(), 2u);
  }

  static void SetControl(const std::string& directives) { env_->SetControl(directives); }
  // Makes the module (not the Token) see the token gone: pulled while the
  // agent was idle.
  static void ModuleSeesRemoval() {
    SetControl("removed\n");
    CK_ULONG n = 0;
    ASSERT_THAT(P11_CALL(**module_, C_GetSlotList, CK_TRUE, nullptr, &n), IsOk());
    ASSERT_EQ(n, 0u);
  }
  static std::string Log() { return env_->Log(); }
  std::shared_ptr<const Key> KeyNamed(Token& token, const std::string& label) {
    for (const auto& k : *token.Keys()) {
      if (k->label() == label) return k;
    }
    ADD_FAILURE() << "no key " << label;
    return nullptr;
  }
  std::vector<std::string> Labels() {
    std::vector<std::string> out;
    for (const auto& k : *token_->Keys()) out.push_back(k->label());
    return out;
  }

  static testing::TestToken* dir_;
  static std::shared_ptr<Module>* module_;
  static Token* token_;
  static ShimToken* env_;
};
testing::TestToken* TokenFaultsTest::dir_ = nullptr;
std::shared_ptr<Module>* TokenFaultsTest::module_ = nullptr;
Token* TokenFaultsTest::token_ = nullptr;
ShimToken* TokenFaultsTest::env_ = nullptr;

TEST_F(TokenFaultsTest, ObjectThatReadsNotAtAllIsSkippedNotFatal) {
  std::shared_ptr<const Key> two = KeyNamed(*token_, "two");
  ASSERT_NE(two, nullptr);
  SetControl("fail-id " + two->id_hex() + "\n");
  ASSERT_THAT(token_->Refresh(), IsOk());
  EXPECT_THAT(Labels(), ElementsAre("one"));
  EXPECT_THAT(Log(), HasSubstr("event=object_skipped token=faults object=private_key handle="));
}

TEST_F(TokenFaultsTest, AttributeThatFailsTheBatchIsLeftOutAlone) {
  SetControl("fail-attr 0x3\n");  // CKA_LABEL
  ASSERT_THAT(token_->Refresh(), IsOk());
  ASSERT_EQ(token_->Keys()->size(), 2u);
  for (const auto& k : *token_->Keys()) {
    EXPECT_EQ(k->label(), "");
    EXPECT_EQ(k->short_name(), "p256");
    EXPECT_TRUE(k->can_sign());
    EXPECT_NE(k->public_key(), nullptr);
  }
  EXPECT_THAT(Log(), HasSubstr("event=attributes_unreadable handle="));
}

TEST_F(TokenFaultsTest, TokenGoneFailsTheRefreshAndKeepsTheKeys) {
  SetControl("removed\n");
  EXPECT_THAT(token_->Refresh(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("was removed")));
  EXPECT_THAT(Labels(), UnorderedElementsAre("one", "two"));  // sorted by CKA_ID, a hash
}

TEST_F(TokenFaultsTest, PulledAndPutBackUnseenRecoversOnTheFirstCall) {
  std::shared_ptr<const Key> one = KeyNamed(*token_, "one");
  ASSERT_NE(one, nullptr);
  std::string digest = testing::Sha256("idle");
  ASSERT_THAT(token_->Sign(*one, SignMechanism::kEcdsaSha256, digest, Soon()).status(), IsOk());
  // The pool's idle session, the anchor session and the login all die
  // without the Token seeing a failure.
  ModuleSeesRemoval();
  SetControl("");
  auto sig = token_->Sign(*one, SignMechanism::kEcdsaSha256, digest, Soon());
  ASSERT_THAT(sig.status(), IsOk());
  EXPECT_TRUE(VerifiesWith(*one, digest, *sig));
}

TEST_F(TokenFaultsTest, PinChangedWhileOutIsTriedOnceNeverAgain) {
  // A token of its own in the same store, so the suite's PIN stays.
  const std::string old_pin = "1234-old", new_pin = "5678-new";
  ASSERT_THAT(InitializeToken(**module_, "pin-test", Pin("so-pin-0000"), Pin(old_pin)), IsOk());
  auto opened = Token::Open(*module_, TokenOptions{"pin-test", 2});
  ASSERT_THAT(opened.status(), IsOk());
  std::unique_ptr<Token> token = *std::move(opened);
  ASSERT_THAT(token->Login(Pin(old_pin)), IsOk());
  auto key = token->GenerateKey(KeySpec::kEcP256, "k", Soon());
  ASSERT_THAT(key.status(), IsOk());
  std::string digest = testing::Sha256("pin");
  ASSERT_THAT(token->Sign(**key, SignMechanism::kEcdsaSha256, digest, Soon()).status(), IsOk());

  // Out, and back with another PIN (changed on another machine, say).
  SetControl("removed\n");
  EXPECT_THAT(token->Sign(**key, SignMechanism::kEcdsaSha256, digest, Soon()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("\"pin-test\" was removed")));
  SetControl("");
  Module& m = **module_;
  CK_SLOT_ID slot = 0;
  {
    CK_ULONG n = 16;
    CK_SLOT_ID slots[16];
    ASSERT_THAT(P11_CALL(m, C_GetSlotList, CK_TRUE, slots, &n), IsOk());
    for (CK_ULONG i = 0; i < n; ++i) {
      CK_TOKEN_INFO info;
      if (P11_CALL(m, C_GetTokenInfo, slots[i], &info).ok() && TrimPadded(info.label, sizeof(info.label)) == "pin-test") {
        slot = slots[i];
      }
    }
  }
  CK_SESSION_HANDLE s;
  ASSERT_THAT(P11_CALL(m, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s), IsOk());
  std::string o = old_pin, n = new_pin;
  auto bytes = [](std::string& p) { return reinterpret_cast<CK_UTF8CHAR*>(p.data()); };
  ASSERT_THAT(P11_CALL(m, C_Login, s, CKU_USER, bytes(o), o.size()), IsOk());
  ASSERT_THAT(P11_CALL(m, C_SetPIN, s, bytes(o), o.size(), bytes(n), n.size()), IsOk());
  ASSERT_THAT(P11_CALL(m, C_Logout, s), IsOk());
  ASSERT_THAT(P11_CALL(m, C_CloseSession, s), IsOk());

  size_t logins_before = 0, logins_after = 0;
  auto count_logins = [&] {
    std::string log = Log();
    size_t c = 0;
    for (absl::string_view line : absl::StrSplit(log, '\n')) c += absl::StrContains(line, "fn=C_Login ");
    return c;
  };
  logins_before = count_logins();
  EXPECT_THAT(token->Sign(**key, SignMechanism::kEcdsaSha256, digest, Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("refused the PIN")));
  EXPECT_THAT(token->Sign(**key, SignMechanism::kEcdsaSha256, digest, Soon()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no usable PIN")));
  logins_after = count_logins();
  EXPECT_EQ(logins_after - logins_before, 1u) << Log();  // one refused C_Login, not two
  EXPECT_THAT(Log(), ::testing::Not(HasSubstr(old_pin)));
}

}  // namespace
}  // namespace smime::tokens
