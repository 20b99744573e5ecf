// The real agent on a SoftHSM token behind the fault-injection module
// (tests/testing/p11_fault_shim.cc): the token pulled between and during
// operations, put back without restarting the agent, and objects the token
// will not read. Asserts what a user sees: the error, the audit line, health,
// the key list, signatures that openssl verifies.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "tests/testing/fault_shim.h"
#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

using ::smime::testing::AgentProcess;
using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::RunCommand;
using ::smime::testing::StatusIs;
using ::smime::testing::TempDir;
using ::smime::testing::WriteFile;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace v1 = ::smime::agent::v1;

class TokenFaultsTest : public ::testing::Test {
 protected:
  // make-token.sh with test keys takes seconds (RSA keys, certificates):
  // made once, copied for each test.
  static void SetUpTestSuite() { template_ = new testing::TestToken(testing::MakeToken("faults", true)); }
  static void TearDownTestSuite() {
    delete template_;
    template_ = nullptr;
  }

  void SetUp() override {
    token_ = testing::CopyToken(*template_);
    control_ = testing::FaultControl(token_.Path("shim-control"));
  }

  // Starts the agent on the token through the shim with `faults` in force.
  void StartAgent(const std::string& faults = "", const std::vector<std::string>& extra_args = {}) {
    Control(faults);
    std::vector<std::string> args = testing::AgentArgs(token_, testing::FaultShimModule());
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    auto agent = AgentProcess::Start(args, token_.conf, control_.Env());
    ASSERT_THAT(agent.status(), IsOk());
    agent_ = *std::move(agent);
    auto c = client::AgentClient::Connect(agent_->socket());
    ASSERT_THAT(c.status(), IsOk());
    client_ = *std::move(c);
  }
  void Control(const std::string& directives) { control_.Set(directives); }

  absl::StatusOr<std::string> Sign(const std::string& key, const std::string& message) {
    bool ec = key == "bob" || key == "dave";
    v1::SignatureAlgorithm alg = ec ? v1::SIGNATURE_ALGORITHM_ECDSA_SHA256 : v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256;
    return client_->SignDigest(client::TextSelector(key), alg, testing::Sha256(message));
  }
  bool Verifies(const std::string& key, const std::string& message, const std::string& sig) {
    return testing::VerifyDigest(ReadFile(token_.Path("pub/" + key + ".pem")), testing::Sha256(message), sig,
                                 testing::Padding::kPkcs1);
  }
  bool LogHasLine(const std::vector<std::string>& parts) { return agent_->LogHasLine(parts); }
  std::vector<std::string> Labels() {
    std::vector<std::string> out;
    auto keys = client_->ListKeys();
    EXPECT_THAT(keys.status(), IsOk());
    if (keys.ok()) {
      for (const auto& k : *keys) out.push_back(k.label());
    }
    return out;
  }

  static testing::TestToken* template_;
  testing::TestToken token_;
  testing::FaultControl control_{""};
  std::unique_ptr<AgentProcess> agent_;
  std::unique_ptr<client::AgentClient> client_;
};
testing::TestToken* TokenFaultsTest::template_ = nullptr;

// The agent's own words, not the client's "the agent is not answering".
auto TokenRemoved() {
  return StatusIs(absl::StatusCode::kUnavailable,
                  AllOf(::testing::StartsWith("token \"faults\" was removed"), HasSubstr("insert it and retry")));
}

TEST_F(TokenFaultsTest, RemovedTokenFailsClearlyAndSignsAgainOnceReinserted) {
  StartAgent();
  auto sig = Sign("alice", "before");
  ASSERT_THAT(sig.status(), IsOk());
  EXPECT_TRUE(Verifies("alice", "before", *sig));

  Control("removed\n");
  // The call that finds the token gone and the ones after it read the same.
  EXPECT_THAT(Sign("alice", "while out"), TokenRemoved());
  EXPECT_THAT(Sign("alice", "while out"), TokenRemoved());
  std::string ct = testing::RsaEncrypt(ReadFile(token_.Path("pub/carol.pem")), "content key", testing::Padding::kPkcs1);
  EXPECT_THAT(client_->DecryptKey(client::TextSelector("carol"), v1::DECRYPT_PADDING_RSA_PKCS1, ct).status(),
              TokenRemoved());
  // The lifecycle verbs say the same through smimectl, with nothing written.
  testing::TempDir tmp;
  testing::CommandResult csr = agent_->Smimectl(
      {"csr", "--key", "alice", "--subject", "/CN=Alice", "--email", "alice@example.com", "--out", tmp.File("req")});
  EXPECT_EQ(csr.exit_code, 1);
  EXPECT_THAT(csr.err, ::testing::StartsWith("smimectl: token \"faults\" was removed"));
  EXPECT_NE(::access(tmp.File("req").c_str(), F_OK), 0);
  // The agent keeps serving: health, and the key list it holds.
  EXPECT_TRUE(agent_->Running());
  EXPECT_THAT(client_->WaitReady(absl::Seconds(5)), IsOk());
  EXPECT_THAT(Labels(), ElementsAre("alice", "bob", "carol", "dave", "erin"));
  // Each failed operation left its audit line.
  EXPECT_TRUE(LogHasLine({"event=key_op", "op=sign", "object=alice", "result=UNAVAILABLE"})) << agent_->Log();
  EXPECT_TRUE(LogHasLine({"event=key_op", "op=decrypt", "object=carol", "result=UNAVAILABLE"})) << agent_->Log();

  // Put back: the next calls work, no restart; the sessions and the login
  // the agent had are gone, so it logged in again.
  Control("");
  sig = Sign("alice", "after");
  ASSERT_THAT(sig.status(), IsOk()) << agent_->Log();
  EXPECT_TRUE(Verifies("alice", "after", *sig));
  EXPECT_FALSE(Verifies("alice", "before", *sig));
  auto ec = Sign("bob", "after");
  ASSERT_THAT(ec.status(), IsOk());
  EXPECT_TRUE(Verifies("bob", "after", *ec));
  auto plain = client_->DecryptKey(client::TextSelector("carol"), v1::DECRYPT_PADDING_RSA_PKCS1, ct);
  ASSERT_THAT(plain.status(), IsOk());
  EXPECT_EQ(*plain, "content key");
  EXPECT_TRUE(LogHasLine({"event=token_reconnected"})) << agent_->Log();
  EXPECT_TRUE(agent_->Running());
}

TEST_F(TokenFaultsTest, TokenPulledDuringSignatureFailsThatCallCleanly) {
  // The module holds the signature inside C_Sign until the control file
  // changes: the token is pulled while it is under way, however long the
  // test takes to get there.
  StartAgent("sign-hold\n");
  absl::StatusOr<std::string> during = absl::UnknownError("not run");
  std::thread signer([&] { during = Sign("alice", "during"); });
  const bool inside = control_.WaitUntilSigning();
  Control("removed\n");
  signer.join();
  ASSERT_TRUE(inside) << "the signature never reached C_Sign\n" << agent_->Log();
  EXPECT_THAT(during, TokenRemoved());
  EXPECT_TRUE(LogHasLine({"event=key_op", "op=sign", "object=alice", "result=UNAVAILABLE"})) << agent_->Log();
  EXPECT_TRUE(agent_->Running());

  Control("");
  auto sig = Sign("alice", "after");
  ASSERT_THAT(sig.status(), IsOk()) << agent_->Log();
  EXPECT_TRUE(Verifies("alice", "after", *sig));
}

TEST_F(TokenFaultsTest, ShutdownDoesNotWaitForeverForACallThatHangsInTheToken) {
  // The signature hangs inside C_Sign (until the shim's 120 s hold ends);
  // SIGTERM must not wait for it beyond the drain deadline.
  StartAgent("sign-hold\n", {"--drain-seconds", "1"});
  absl::StatusOr<std::string> during = absl::UnknownError("not run");
  std::thread signer([&] { during = Sign("alice", "during"); });
  const bool inside = control_.WaitUntilSigning();
  // Stop() sends SIGTERM and, after 20 s, SIGKILL (exit code 137).
  const int code = agent_->Stop();
  signer.join();
  ASSERT_TRUE(inside) << "the signature never reached C_Sign\n" << agent_->Log();
  EXPECT_EQ(code, 1) << agent_->Log();
  EXPECT_TRUE(LogHasLine({"drain_deadline_passed", "drain_seconds=1"})) << agent_->Log();
  EXPECT_FALSE(during.ok());
  EXPECT_NE(::access(agent_->socket().c_str(), F_OK), 0) << "the socket file was left behind";
}

TEST_F(TokenFaultsTest, KeyGenerationWhileRemovedWritesNothing) {
  StartAgent();
  Control("removed\n");
  EXPECT_THAT(client_->GenerateKey(v1::KEY_TYPE_EC_P256, "late").status(), TokenRemoved());
  Control("");
  // Counted by another program on the token itself, not from the agent's list.
  std::string pin = ReadFile(token_.pin_file);
  pin.pop_back();
  auto private_keys = [&] {
    testing::CommandResult r = RunCommand({"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label",
                                           token_.label, "--login", "--pin", pin, "--list-objects", "--type",
                                           "privkey"},
                                          testing::WithEnv({{"SOFTHSM2_CONF", token_.conf}}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    size_t n = 0;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) n += absl::StartsWith(line, "Private Key Object");
    return n;
  };
  EXPECT_EQ(private_keys(), 5u);
  EXPECT_THAT(client_->GenerateKey(v1::KEY_TYPE_EC_P256, "late").status(), IsOk()) << agent_->Log();
  EXPECT_EQ(private_keys(), 6u);
}

TEST_F(TokenFaultsTest, AttributeTheTokenWillNotReadHidesNoKey) {
  // CKA_END_DATE (the retire mark) is read from every public key object;
  // the token fails each such read as a whole.
  StartAgent("fail-attr 0x111\n");
  auto keys = client_->ListKeys();
  ASSERT_THAT(keys.status(), IsOk());
  ASSERT_EQ(keys->size(), 5u);
  EXPECT_EQ((*keys)[0].label(), "alice");
  EXPECT_EQ((*keys)[0].type(), v1::KEY_TYPE_RSA_2048);
  EXPECT_EQ((*keys)[0].emails(0), "alice@example.com");
  EXPECT_EQ((*keys)[1].type(), v1::KEY_TYPE_EC_P256);
  // dave's EC public key is only on its public key object: read attribute
  // by attribute, all but the end date.
  testing::CommandResult pub = RunCommand({testing::SmimectlBinary(), "--socket", agent_->socket(), "pubkey", "--key", "dave"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_EQ(pub.out, ReadFile(token_.Path("pub/dave.pem")));
  auto sig = Sign("dave", "odd token");
  ASSERT_THAT(sig.status(), IsOk());
  EXPECT_TRUE(Verifies("dave", "odd token", *sig));
  EXPECT_TRUE(LogHasLine({"event=attributes_unreadable", "attributes=0x111", "rv=CKR_FUNCTION_FAILED"}))
      << agent_->Log();
}

TEST_F(TokenFaultsTest, ObjectTheTokenWillNotReadIsLeftOut) {
  StartAgent("fail-id 03\n");  // carol's private and public key objects
  EXPECT_THAT(Labels(), ElementsAre("alice", "bob", "dave", "erin"));
  auto sig = Sign("alice", "without carol");
  ASSERT_THAT(sig.status(), IsOk());
  EXPECT_TRUE(Verifies("alice", "without carol", *sig));
  EXPECT_TRUE(LogHasLine({"event=object_skipped", "object=private_key", "handle=", "CKR_FUNCTION_FAILED"}))
      << agent_->Log();
}

// Storing a certificate compares it with those on the token; one the token
// will not read is left out of the comparison instead of failing the import.
TEST_F(TokenFaultsTest, CertificateTheTokenWillNotReadDoesNotBlockImports) {
  StartAgent("fail-id 55\n");  // erin's certificate object
  testing::TempDir tmp;
  testing::CommandResult made = testing::Openssl(
      {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
       tmp.File("peer.key"), "-out", tmp.File("peer.pem"), "-days", "30", "-subj", "/CN=Peer", "-addext",
       "subjectAltName=email:peer@example.org", "-addext", "keyUsage=critical,digitalSignature,keyAgreement",
       "-addext", "extendedKeyUsage=emailProtection"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  testing::CommandResult imp = agent_->Smimectl({"import-cert", "--in", tmp.File("peer.pem")});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_THAT(imp.out, HasSubstr("correspondent (contact) certificate"));
  EXPECT_THAT(agent_->Smimectl({"contacts"}).out, HasSubstr("peer@example.org"));
  EXPECT_TRUE(LogHasLine({"event=object_skipped", "object=certificate", "CKR_FUNCTION_FAILED"})) << agent_->Log();
}

}  // namespace
}  // namespace smime
