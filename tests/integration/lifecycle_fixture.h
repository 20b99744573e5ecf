// The fixture of the lifecycle integration tests (lifecycle_*_test.cc):
// the real smime-agent over a SoftHSM token, driven by the real smimectl,
// with an `openssl ca` made per suite and helpers that list the token's
// objects with pkcs11-tool.
#ifndef SMIME_TESTS_INTEGRATION_LIFECYCLE_FIXTURE_H_
#define SMIME_TESTS_INTEGRATION_LIFECYCLE_FIXTURE_H_

#include <gtest/gtest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "tests/testing/agent_fixture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime::lifecycle_test {

using ::smime::testing::CommandResult;
using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::RunCommand;
using ::smime::testing::TempDir;
using ::smime::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

inline constexpr char kTokenLabel[] = "life";

inline constexpr char kMessage[] =
    "From: New Person <new.person@example.com>\r\n"
    "To: Frank <frank@example.org>\r\n"
    "Subject: hello from a fresh key\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Signed with a key whose certificate was requested and imported by smimectl.\r\n";

// Extensions of a certificate the policy accepts for an RSA key.
inline constexpr char kGoodRsaExt[] =
    "subjectAltName=email:p@example.com\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=emailProtection\n";

class LifecycleTest : public testing::SharedAgentTest<LifecycleTest> {
 public:
  static testing::SharedAgentSpec AgentSpec() { return {kTokenLabel}; }
  static void SetUpTestSuite() {
    SharedAgentTest::SetUpTestSuite();
    if (::testing::Test::HasFatalFailure()) return;
    ca_ = new TempDir();
    MakeCa(*ca_);
  }
  static void TearDownTestSuite() {
    delete ca_;
    ca_ = nullptr;
    SharedAgentTest::TearDownTestSuite();
  }

 protected:
  // An `openssl ca` set-up: certificates with the request's extensions
  // (copy_extensions), or with an extension section of the test's choice.
  static void MakeCa(const TempDir& dir) {
    WriteFile(dir.File("index.txt"), "");
    WriteFile(dir.File("serial"), "1000\n");
    WriteFile(dir.File("ca.cnf"), absl::StrCat("[ca]\ndefault_ca = test\n[test]\ndir = ", dir.path(),
                                                "\ndatabase = $dir/index.txt\nserial = $dir/serial\n"
                                                "new_certs_dir = $dir\ndefault_md = sha256\npolicy = any\n"
                                                "unique_subject = no\ncopy_extensions = copyall\n"
                                                "[any]\ncommonName = supplied\norganizationName = optional\n"));
    CommandResult r = Openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.File("ca.key"),
                               "-out", dir.File("ca.pem"), "-days", "30", "-subj", "/CN=Lifecycle Test CA",
                               "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                               "keyUsage=critical,keyCertSign,cRLSign"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // Issues a certificate for the request `csr`. `dates`: {"-days", "30"} or
  // {"-startdate", X, "-enddate", Y}. `extensions`: empty to copy the
  // request's, else the lines of the only extensions the certificate gets.
  static std::string Issue(const std::string& csr, const std::string& out_name,
                           std::vector<std::string> dates = {"-days", "30"}, const std::string& extensions = "") {
    std::vector<std::string> args = {"ca", "-batch", "-notext", "-preserveDN", "-config", ca_->File("ca.cnf"), "-cert",
                                     ca_->File("ca.pem"), "-keyfile", ca_->File("ca.key"), "-in", csr,
                                     "-out", ca_->File(out_name)};
    args.insert(args.end(), dates.begin(), dates.end());
    if (!extensions.empty()) {
      WriteFile(ca_->File(out_name + ".ext"), "[ext]\n" + extensions);
      args.insert(args.end(), {"-extfile", ca_->File(out_name + ".ext"), "-extensions", "ext"});
    }
    CommandResult r = Openssl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ca_->File(out_name);
  }

  // A software key and request made by openssl (a correspondent, or a
  // certificate to test the policy with).
  static std::string SoftwareRequest(const TempDir& tmp, const std::string& name,
                                     const std::string& algorithm = "rsa:2048") {
    std::vector<std::string> args = {"req", "-new", "-nodes", "-keyout", tmp.File(name + ".key"),
                                     "-subj", "/CN=" + name, "-out", tmp.File(name + ".csr")};
    if (algorithm == "ed25519") {
      args.insert(args.end(), {"-newkey", "ed25519"});
    } else {
      args.insert(args.end(), {"-newkey", algorithm});
    }
    CommandResult r = Openssl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return tmp.File(name + ".csr");
  }

  static CommandResult Openssl(std::vector<std::string> args) { return testing::Openssl(std::move(args)); }
  static CommandResult Shell(const std::string& script) { return RunCommand({"sh", "-c", script}); }

  // Every object on the token as pkcs11-tool lists it (logged in, so
  // private objects too): the test's "before and after".
  static std::string TokenObjects(bool login = true) {
    std::string pin(absl::StripAsciiWhitespace(ReadFile(token_->pin_file)));
    std::vector<std::string> args = {"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label",
                                     kTokenLabel, "--list-objects"};
    if (login) args.insert(args.end(), {"--login", "--pin", pin});
    CommandResult r = RunCommand(args, testing::WithEnv({{"SOFTHSM2_CONF", token_->conf}}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  // Makes a key on the token and returns its hex id.
  static std::string Keygen(const std::string& type, const std::string& label) {
    CommandResult r = Ctl({"keygen", "--type", type, "--label", label, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["id"];
  }

  static nlohmann::json KeyJson(const std::string& label) {
    CommandResult r = Ctl({"keys", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const auto& k : nlohmann::json::parse(r.out)) {
      if (k["label"] == label) return k;
    }
    ADD_FAILURE() << "no key " << label << " in " << r.out;
    return {};
  }

  static inline TempDir* ca_ = nullptr;
};
}  // namespace smime::lifecycle_test

#endif  // SMIME_TESTS_INTEGRATION_LIFECYCLE_FIXTURE_H_
