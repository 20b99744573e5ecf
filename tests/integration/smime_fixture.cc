#include "tests/integration/smime_fixture.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace smime::integration {

std::string Message() { return absl::StrCat(kOuterHeaders, "MIME-Version: 1.0\r\n", kEntity); }
std::string ToLf(const std::string& s) { return absl::StrReplaceAll(s, {{"\r\n", "\n"}}); }

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string HeaderBlock(const std::string& msg) { return msg.substr(0, msg.find("\r\n\r\n") + 2); }

std::string FirstBodyPart(const std::string& msg) {
  std::string header = HeaderBlock(msg);
  size_t at = header.find("boundary=\"");
  if (at == std::string::npos) return "";
  at += 10;
  std::string boundary = header.substr(at, header.find('"', at) - at);
  size_t start = msg.find("--" + boundary + "\r\n");
  if (start == std::string::npos) return "";
  start += boundary.size() + 4;
  size_t end = msg.find("\r\n--" + boundary, start);
  return end == std::string::npos ? "" : msg.substr(start, end - start);
}

std::string FlipIn(std::string data, const std::string& needle) {
  size_t at = data.find(needle);
  if (at == std::string::npos) {
    ADD_FAILURE() << "\"" << needle << "\" not found";
    return data;
  }
  data[at + needle.size() - 1] ^= 0x01;
  return data;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

void ExpectCleanFailure(const CommandResult& r, int exit_code, const std::string& message, const std::string& out) {
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  EXPECT_THAT(r.err, StartsWith("smimectl: "));
  EXPECT_EQ(Count(r.err, "\n"), 1u) << "not one line: " << r.err;
  EXPECT_THAT(r.err, HasSubstr(message));
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_FALSE(Exists(out)) << out << " was written";
}

namespace {

// The token, the software peers and the agent, made once for the binary.
class SmimeEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto made = testing::TokenAgent::Make(kTokenLabel, true);
    ASSERT_THAT(made.status(), IsOk());
    shared_ = *std::move(made);
    peers_ = std::make_unique<TempDir>();
    CommandResult r = RunCommand({testing::SourceDir() + "/tests/integration/make-smime-peers.sh", peers_->path()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // openssl with the token's keys through pkcs11-provider (the quirks
    // DESIGN.md names for SoftHSM).
    WriteFile(peers_->File("pkcs11.cnf"),
              "openssl_conf = openssl_init\n"
              "[openssl_init]\nproviders = provider_sect\n"
              "[provider_sect]\ndefault = default_sect\npkcs11 = pkcs11_sect\n"
              "[default_sect]\nactivate = 1\n"
              "[pkcs11_sect]\n"
              "pkcs11-module-path = " + std::string(testing::kSoftHsmModule) + "\n"
              "pkcs11-module-quirks = no-deinit no-operation-state\n"
              "activate = 1\n");
  }
  void TearDown() override {
    shared_.reset();
    peers_.reset();
  }

  std::unique_ptr<testing::TokenAgent> shared_;
  std::unique_ptr<TempDir> peers_;
};

SmimeEnvironment* const g_env =
    static_cast<SmimeEnvironment*>(::testing::AddGlobalTestEnvironment(new SmimeEnvironment));

}  // namespace

void SmimeTest::SetUp() {
  ASSERT_TRUE(g_env->shared_ != nullptr) << "no agent";
  testing::CheckAgentBeforeTest(&Agent());
}
void SmimeTest::TearDown() {
  // Whatever the test sent, the agent still serves.
  ASSERT_TRUE(g_env->shared_ != nullptr);
  testing::CheckAgentAfterTest(&Agent());
}

const testing::TestToken& SmimeTest::Token() { return g_env->shared_->token(); }
testing::AgentProcess& SmimeTest::Agent() { return g_env->shared_->agent(); }
const TempDir& SmimeTest::Peers() { return *g_env->peers_; }

absl::StatusOr<std::unique_ptr<testing::AgentProcess>> SmimeTest::StartAnotherAgent(
    std::vector<std::string> agent_args) {
  return g_env->shared_->StartAnother(testing::AgentOptions::Args(std::move(agent_args)));
}

CommandResult SmimeTest::Ctl(std::vector<std::string> args, const testing::AgentProcess* agent) {
  return (agent != nullptr ? *agent : Agent()).Smimectl(std::move(args));
}

CommandResult SmimeTest::OpensslWithToken(std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  return RunCommand(args, testing::WithEnv({{"OPENSSL_CONF", Peers().File("pkcs11.cnf")},
                                            {"SOFTHSM2_CONF", Token().conf}}));
}

std::string SmimeTest::TokenKeyUri(const std::string& name) {
  return absl::StrCat("pkcs11:token=", kTokenLabel, ";object=", name, ";type=private?pin-source=file:",
                      Token().pin_file);
}

std::string SmimeTest::CmsPrint(const std::string& file, const std::string& inform) {
  CommandResult r = Openssl({"cms", "-cmsout", "-print", "-inform", inform, "-in", file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

std::string SmimeTest::ToDer(const std::string& smime_file, const std::string& der_file) {
  CommandResult r = Openssl({"cms", "-cmsout", "-in", smime_file, "-outform", "DER", "-out", der_file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return ReadFile(der_file);
}

std::string SmimeTest::Open(const std::string& enc, const std::string& name, Opener how, const TempDir& tmp) {
  std::string out = tmp.File(absl::StrCat("opened-", name, "-", static_cast<int>(how)));
  CommandResult r;
  switch (how) {
    case Opener::kKeyFile:
      r = Openssl({"cms", "-decrypt", "-in", enc, "-recip", Cert(name), "-inkey", KeyFile(name), "-out", out});
      break;
    case Opener::kOpensslToken:
      r = OpensslWithToken(
          {"cms", "-decrypt", "-in", enc, "-recip", Cert(name), "-inkey", TokenKeyUri(name), "-out", out});
      break;
    case Opener::kAgent:
      r = Ctl({"decrypt", "--key", name, "--in", enc, "--out", out});
      if (r.exit_code == 0) {
        EXPECT_THAT(r.err, HasSubstr(absl::StrCat(";object=", name, ";type=private"))) << r.err;
      }
      break;
  }
  EXPECT_EQ(r.exit_code, 0) << name << " (opener " << static_cast<int>(how) << "): " << r.err;
  return ReadFile(out);
}

std::string SmimeTest::AgentSigned(const TempDir& tmp, const std::string& message, std::vector<std::string> flags) {
  WriteFile(tmp.File("to-sign.eml"), message);
  std::vector<std::string> args = {"sign", "--key", "alice", "--in", tmp.File("to-sign.eml"), "--out",
                                   tmp.File("signed.eml")};
  args.insert(args.end(), flags.begin(), flags.end());
  CommandResult r = Ctl(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return tmp.File("signed.eml");
}

}  // namespace smime::integration
