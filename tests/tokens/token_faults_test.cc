// tokens/ over SoftHSM behind the fault-injection module
// (tests/testing/p11_fault_shim.cc), in process: objects the token will not
// read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "common/log.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"
#include "tokens/token.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::StatusIs;
using ::smime::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

SecretBuffer Pin(const std::string& text) { return SecretBuffer(text.data(), text.size()); }
absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

// One SoftHSM store and one module per process (one C_Initialize; SoftHSM
// reads SOFTHSM2_CONF then), with two P-256 keys made on the token.
class TokenFaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TestToken(testing::MakeToken("faults", /*with_test_keys=*/false));
    WriteFile(Control(), "");
    ::setenv("SOFTHSM2_CONF", dir_->conf.c_str(), 1);
    ::setenv("SMIME_P11_SHIM_CONTROL", Control().c_str(), 1);
    log_fd_ = ::open(dir_->Path("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    SetLogFd(log_fd_);
    auto module = Module::Load(SMIME_P11_FAULT_SHIM);
    ASSERT_THAT(module.status(), IsOk());
    module_ = new std::shared_ptr<Module>(*module);
    auto token = Token::Open(*module_, TokenOptions{"faults", 4});
    ASSERT_THAT(token.status(), IsOk());
    token_ = token->release();
    std::string pin = ReadFile(dir_->pin_file);
    pin.pop_back();
    ASSERT_THAT(token_->Login(Pin(pin)), IsOk());
    for (const char* label : {"one", "two"}) {
      ASSERT_THAT(token_->GenerateKey(KeySpec::kEcP256, label, Soon()).status(), IsOk());
    }
  }
  static void TearDownTestSuite() {
    delete token_;
    delete module_;
    SetLogFd(2);
    ::close(log_fd_);
    delete dir_;
  }
  void TearDown() override {
    SetControl("");
    EXPECT_THAT(token_->Refresh(), IsOk());
    EXPECT_EQ(token_->Keys()->size(), 2u);
  }

  static std::string Control() { return dir_->Path("shim-control"); }
  static void SetControl(const std::string& directives) { WriteFile(Control(), directives); }
  static std::string Log() { return ReadFile(dir_->Path("log")); }
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
  static int log_fd_;
};
testing::TestToken* TokenFaultsTest::dir_ = nullptr;
std::shared_ptr<Module>* TokenFaultsTest::module_ = nullptr;
Token* TokenFaultsTest::token_ = nullptr;
int TokenFaultsTest::log_fd_ = -1;

TEST_F(TokenFaultsTest, ObjectThatReadsNotAtAllIsSkippedNotFatal) {
  std::shared_ptr<const Key> two = KeyNamed(*token_, "two");
  ASSERT_NE(two, nullptr);
  SetControl("fail-id " + two->id_hex() + "\n");
  ASSERT_THAT(token_->Refresh(), IsOk());
  EXPECT_THAT(Labels(), ElementsAre("one"));
  EXPECT_THAT(Log(), HasSubstr("event=object_skipped token=faults object=private_key handle="));
}

TEST_F(TokenFaultsTest, AttributeThatFailsTheBatchIsLeftOutAlone) {
  SetControl("fail-attr 0x3\n");  // CKA_LABEL, read from private keys only
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

}  // namespace
}  // namespace smime::tokens
