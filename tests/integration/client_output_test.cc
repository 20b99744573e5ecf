// Issue 14 item 8: text that reaches the agent from a token or a
// certificate is printed by smimectl with its control characters made
// visible, so it cannot forge lines or drive the terminal; --json keeps it
// exact (the JSON library escapes it).
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

using ::smime::testing::AgentProcess;
using ::smime::testing::CommandResult;
using ::smime::testing::IsOk;
using ::smime::testing::RunCommand;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// What an attacker would put in a label or an address: a line end, a
// forged smimectl line, a screen-clearing escape, a C1 CSI, a BEL.
const std::string kEvil = "evil\r\nsmimectl: good signature from CEO <ceo@example.com>\x1b[2J\xc2\x9b" "1m\a";

// The bytes a terminal would act on, other than the line ends smimectl
// writes itself; empty when there are none.
std::string RawControls(const std::string& text) {
  std::string found;
  for (size_t i = 0; i < text.size(); ++i) {
    auto b = static_cast<unsigned char>(text[i]);
    bool c1 = b == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9F &&
              static_cast<unsigned char>(text[i + 1]) >= 0x80;
    if ((b < 0x20 && b != '\n') || b == 0x7F || c1) absl::StrAppend(&found, "byte ", b, " at ", i, "; ");
  }
  return found;
}

class ClientOutputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    token_ = new testing::TestToken(testing::MakeToken("output", false));
    std::string pin = testing::ReadFile(token_->pin_file);
    while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
    // Made on the token directly, as another PKCS#11 tool would.
    CommandResult gen = RunCommand(
        {"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label", "output", "--login", "--pin", pin,
         "--keypairgen", "--key-type", "EC:prime256v1", "--id", "0e", "--label", kEvil},
        testing::WithEnv({{"SOFTHSM2_CONF", token_->conf}}));
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    auto agent = AgentProcess::Start(
        {"--module", testing::kSoftHsmModule, "--token", "output", "--pin-file", token_->pin_file}, token_->conf);
    ASSERT_THAT(agent.status(), IsOk());
    agent_ = agent->release();
  }
  static void TearDownTestSuite() {
    delete agent_;
    agent_ = nullptr;
    delete token_;
    token_ = nullptr;
  }

  static testing::TestToken* token_;
  static AgentProcess* agent_;
};
testing::TestToken* ClientOutputTest::token_ = nullptr;
AgentProcess* ClientOutputTest::agent_ = nullptr;

TEST_F(ClientOutputTest, KeysPrintsNoRawControlCharacterFromALabel) {
  CommandResult r = agent_->Smimectl({"keys"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RawControls(r.out), "");
  EXPECT_EQ(RawControls(r.err), "");
  // The header and the one key, each on its own line.
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, SizeIs(2)) << r.out;
  EXPECT_THAT(r.out,
              HasSubstr("evil\\x0d\\x0asmimectl: good signature from CEO <ceo@example.com>\\x1b[2J\\u009b1m\\x07"));
}

TEST_F(ClientOutputTest, KeysJsonKeepsTheLabelExact) {
  CommandResult r = agent_->Smimectl({"keys", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The JSON library escapes C0 itself (\u000d); the rest is left exact,
  // for programs.
  for (char c : r.out) EXPECT_TRUE(static_cast<unsigned char>(c) >= 0x20 || c == '\n') << static_cast<int>(c);
  nlohmann::json keys = nlohmann::json::parse(r.out);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0]["label"], kEvil);
}

TEST_F(ClientOutputTest, KeygenAndItsErrorsPrintNoRawControlCharacter) {
  // Whether or not the agent accepts such a label, what smimectl prints
  // (the new key, or the agent's error naming it) stays inert.
  CommandResult r = agent_->Smimectl({"keygen", "--type", "p256", "--label", kEvil + "-2"});
  EXPECT_EQ(RawControls(r.out), "");
  EXPECT_EQ(RawControls(r.err), "");
  // An error message built from agent-supplied text: a selector no key has.
  r = agent_->Smimectl({"pubkey", "--key", "nobody\x1b]0;owned\a@example.com"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(RawControls(r.err), "") << r.err;
}

TEST_F(ClientOutputTest, AgentWritesNoLabelWithAControlCharacter) {
  // Other tools (pkcs11-tool, p11tool) print labels raw: the agent does not
  // put such a label on the token, and the token is left as it was.
  CommandResult before = agent_->Smimectl({"keys", "--json"});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  for (const std::string& label : {kEvil + "-2", std::string("tab\there"), std::string("del\x7f")}) {
    CommandResult r = agent_->Smimectl({"keygen", "--type", "p256", "--label", label});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("the key label holds a control character")) << r.err;
  }
  CommandResult after = agent_->Smimectl({"keys", "--json"});
  EXPECT_EQ(after.out, before.out);
}

// A self-signed certificate and key whose rfc822Name is `email`, as PEM
// files in `dir`. Made with the library: no command line tool writes a line
// feed into an address.
void MakeSignerCert(const std::string& email, const std::string& dir) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 14);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600L * 24 * 30);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("Mallory"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  ASN1_STRING_set(ia5, email.data(), static_cast<int>(email.size()));
  GENERAL_NAME_set0_value(gn, GEN_EMAIL, ia5);
  sk_GENERAL_NAME_push(names, gn);
  X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT);
  GENERAL_NAMES_free(names);
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* f = fopen((dir + "/signer.pem").c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_X509(f, cert);
  fclose(f);
  f = fopen((dir + "/signer.key").c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
}

TEST_F(ClientOutputTest, VerifyCannotBeMadeToPrintAForgedSignatureLine) {
  testing::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(MakeSignerCert("mallory@example.org\r\nsmimectl: good signature from CEO "
                                         "<ceo@example.com>\x1b[1A",
                                         dir.path()));
  testing::WriteFile(dir.File("msg.eml"), "Subject: hello\r\n\r\nwire the money\r\n");
  CommandResult s = testing::Openssl({"cms", "-sign", "-signer", dir.File("signer.pem"), "-inkey",
                                      dir.File("signer.key"), "-in", dir.File("msg.eml"), "-out",
                                      dir.File("signed.eml")});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  CommandResult r = agent_->Smimectl(
      {"verify", "--signature-only", "--in", dir.File("signed.eml"), "--out", dir.File("content")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RawControls(r.err), "");
  std::vector<std::string> lines = absl::StrSplit(r.err, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, SizeIs(1)) << r.err;
  EXPECT_THAT(lines[0], HasSubstr("smimectl: good signature from "));
  // (The agent gives addresses in lower case.)
  EXPECT_THAT(lines[0], HasSubstr("mallory@example.org\\x0d\\x0asmimectl: good signature from ceo"));
}

}  // namespace
}  // namespace smime
