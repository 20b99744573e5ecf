// The key and certificate lifecycle end to end (issue 5, part 1): the real
// smime-agent over a SoftHSM token, driven by the real smimectl, every result
// checked with the openssl command line and the token's objects listed with
// pkcs11-tool.
//
// A key made on the token gets a request (checked by `openssl req -verify`),
// a certificate from a CA made here (`openssl ca`, extensions copied from
// the request), is imported with the CA in a bundle, and signs mail that
// `openssl cms -verify -CAfile` accepts. Each certificate policy rule is
// refused through import-cert with its reason, bad files leave the token as
// it was, and publication records are compared with values openssl computes.
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

namespace smime {
namespace {

using ::smime::testing::CommandResult;
using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::RunCommand;
using ::smime::testing::TempDir;
using ::smime::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kTokenLabel[] = "life";

constexpr char kMessage[] =
    "From: New Person <new.person@example.com>\r\n"
    "To: Frank <frank@example.org>\r\n"
    "Subject: hello from a fresh key\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Signed with a key whose certificate was requested and imported by smimectl.\r\n";

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

// ---- From an empty key to signed mail --------------------------------------

struct KeyTypeCase {
  std::string type;         // smimectl keygen --type
  std::string key_usage;    // as `openssl req -text` prints the requested keyUsage
};

class LifecycleFlowTest : public LifecycleTest, public ::testing::WithParamInterface<KeyTypeCase> {};

TEST_P(LifecycleFlowTest, KeygenCsrCaImportSignVerify) {
  TempDir tmp;
  const std::string label = "fresh-" + GetParam().type;
  const std::string id = Keygen(GetParam().type, label);

  // The request, signed on the token.
  CommandResult csr = Ctl({"csr", "--key", label, "--subject", "/CN=New Person/O=Example Ltd", "--email",
                           "new.person@example.com", "--email", "np@example.org", "--out", tmp.File("req.pem")});
  ASSERT_EQ(csr.exit_code, 0) << csr.err;
  // OpenSSL 3.0's `req -verify` exits 0 either way; its verdict is the text.
  CommandResult verify = Openssl({"req", "-in", tmp.File("req.pem"), "-verify", "-noout"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_THAT(verify.err, HasSubstr("self-signature verify OK"));
  CommandResult text = Openssl({"req", "-in", tmp.File("req.pem"), "-noout", "-text"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("Subject: CN = New Person, O = Example Ltd"));
  EXPECT_THAT(text.out, HasSubstr("email:new.person@example.com, email:np@example.org"));
  EXPECT_THAT(text.out, HasSubstr("X509v3 Key Usage: critical\n" + std::string(20, ' ') + GetParam().key_usage));
  EXPECT_THAT(text.out, HasSubstr("E-mail Protection"));
  // The request carries the token key's public key.
  CommandResult pub = Ctl({"pubkey", "--key", label});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  CommandResult req_pub = Openssl({"req", "-in", tmp.File("req.pem"), "-noout", "-pubkey"});
  EXPECT_EQ(req_pub.out, pub.out);
  // A flipped signature bit does not verify: the check above can fail.
  ASSERT_EQ(Ctl({"csr", "--key", label, "--subject", "/CN=New Person", "--email", "new.person@example.com",
                 "--der", "--out", tmp.File("req.der")}).exit_code, 0);
  std::string der = ReadFile(tmp.File("req.der"));
  der.back() ^= 0x01;
  WriteFile(tmp.File("bad.der"), der);
  CommandResult bad = Openssl({"req", "-inform", "DER", "-in", tmp.File("bad.der"), "-verify", "-noout"});
  EXPECT_THAT(bad.err, HasSubstr("self-signature verify failure"));
  EXPECT_THAT(bad.err, Not(HasSubstr("verify OK")));
  // Audited as a private-key operation on that key.
  EXPECT_THAT(agent_->Log(), HasSubstr("event=key_op op=csr key=\"pkcs11:"));

  // The CA issues, copying the requested extensions.
  std::string cert = Issue(tmp.File("req.pem"), label + ".pem");
  WriteFile(tmp.File("bundle.pem"), ReadFile(cert) + ReadFile(ca_->File("ca.pem")));
  std::string before = TokenObjects();
  CommandResult imp = Ctl({"import-cert", "--in", tmp.File("bundle.pem")});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_THAT(imp.out, HasSubstr(absl::StrCat("stored certificate \"O=Example Ltd,CN=New Person\" "
                                              "<new.person@example.com, np@example.org> for key \"",
                                              label, "\" (id ", id, ")")));
  // The CA may be on the token from the other key type's run already.
  EXPECT_THAT(imp.out, HasSubstr("\"CN=Lifecycle Test CA\""));
  EXPECT_TRUE(imp.err.empty()) << imp.err;

  // The certificate object: the key's CKA_ID and label, public.
  std::string public_objects = TokenObjects(/*login=*/false);
  EXPECT_THAT(public_objects, HasSubstr(absl::StrCat("label:      ", label, "\n  subject:    DN: CN=New Person")));
  EXPECT_THAT(public_objects, HasSubstr(absl::StrCat("ID:         ", id)));
  EXPECT_THAT(public_objects, HasSubstr("subject:    DN: CN=Lifecycle Test CA"));

  // `smimectl keys` shows it at once.
  nlohmann::json key = KeyJson(label);
  EXPECT_EQ(key["emails"], nlohmann::json::array({"new.person@example.com", "np@example.org"}));

  // Re-importing changes nothing.
  std::string after = TokenObjects();
  CommandResult again = Ctl({"import-cert", "--in", tmp.File("bundle.pem")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("is already on the token; nothing changed"));
  EXPECT_EQ(std::count(again.out.begin(), again.out.end(), '\n'), 2) << again.out;
  EXPECT_THAT(again.out, Not(HasSubstr("stored")));
  EXPECT_EQ(TokenObjects(), after);
  EXPECT_NE(before, after);

  // Sign with the new key; openssl verifies against the CA (the chain
  // certificate came from the token).
  WriteFile(tmp.File("msg.eml"), kMessage);
  CommandResult sign = Ctl({"sign", "--key", label, "--in", tmp.File("msg.eml"), "--out", tmp.File("signed.eml")});
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  CommandResult ok = Openssl({"cms", "-verify", "-in", tmp.File("signed.eml"), "-CAfile", ca_->File("ca.pem"),
                              "-out", tmp.File("content.txt")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ReadFile(tmp.File("content.txt")), HasSubstr("requested and imported by smimectl"));
  // ... and not against another CA.
  EXPECT_NE(Openssl({"cms", "-verify", "-in", tmp.File("signed.eml"), "-CAfile", token_->Path("ca.pem"), "-out",
                     tmp.File("other.txt")}).exit_code,
            0);
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, LifecycleFlowTest,
                         ::testing::Values(KeyTypeCase{"rsa2048", "Digital Signature, Key Encipherment"},
                                           KeyTypeCase{"p256", "Digital Signature, Key Agreement"}),
                         [](const auto& p) { return p.param.type; });

// ---- Requests that cannot be made -------------------------------------------

struct CsrErrorCase {
  std::string name;
  std::vector<std::string> args;  // after "csr"
  int exit_code;
  std::string message;
};

class CsrErrorTest : public LifecycleTest, public ::testing::WithParamInterface<CsrErrorCase> {};

TEST_P(CsrErrorTest, RefusedWithoutOutput) {
  TempDir tmp;
  std::vector<std::string> args = {"csr"};
  args.insert(args.end(), GetParam().args.begin(), GetParam().args.end());
  args.insert(args.end(), {"--out", tmp.File("req.pem")});
  CommandResult r = Ctl(args);
  EXPECT_EQ(r.exit_code, GetParam().exit_code) << r.err;
  EXPECT_THAT(r.err, StartsWith("smimectl: "));
  EXPECT_THAT(r.err, HasSubstr(GetParam().message));
  EXPECT_FALSE(RunCommand({"test", "-e", tmp.File("req.pem")}).exit_code == 0);
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, CsrErrorTest,
    ::testing::ValuesIn(std::vector<CsrErrorCase>{
        {"UnknownKey", {"--key", "nobody", "--subject", "/CN=X", "--email", "x@example.com"}, 1,
         "no key matches \"nobody\""},
        {"SubjectWithoutSlash", {"--key", "carol", "--subject", "CN=Carol", "--email", "c@example.com"}, 2,
         "the subject must start with '/'"},
        {"UnknownAttribute", {"--key", "carol", "--subject", "/XY=1", "--email", "c@example.com"}, 2,
         "unknown attribute type \"XY\""},
        {"BadEmail", {"--key", "carol", "--subject", "/CN=Carol", "--email", "carol at example.com"}, 2,
         "is not an email address"},
    }),
    [](const auto& p) { return p.param.name; });

// ---- The certificate policy, through import-cert ----------------------------

struct PolicyCase {
  std::string name;
  std::string algorithm;   // openssl req -newkey
  std::string extensions;  // the certificate's extension section
  std::string message;     // the refusal's reason
};

class PolicyImportTest : public LifecycleTest, public ::testing::WithParamInterface<PolicyCase> {};

TEST_P(PolicyImportTest, RefusedWithReasonAndTokenUnchanged) {
  TempDir tmp;
  const PolicyCase& c = GetParam();
  std::string cert = Issue(SoftwareRequest(tmp, c.name, c.algorithm), c.name + ".pem", {"-days", "30"},
                           c.extensions);
  std::string before = TokenObjects();
  CommandResult r = Ctl({"import-cert", "--in", cert});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err, absl::StrCat("smimectl: certificate \"CN=", c.name, "\" ", c.message, "\n"));
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(TokenObjects(), before);
}

const std::string kGoodRsaExt =
    "subjectAltName=email:p@example.com\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=emailProtection\n";

INSTANTIATE_TEST_SUITE_P(
    Rules, PolicyImportTest,
    ::testing::ValuesIn(std::vector<PolicyCase>{
        {"NoEmail", "rsa:2048",
         "subjectAltName=DNS:mail.example.com\nkeyUsage=digitalSignature,keyEncipherment\n",
         "has no email address in subjectAltName (certificate policy: email-address)"},
        {"NoSan", "rsa:2048", "keyUsage=digitalSignature\n",
         "has no email address in subjectAltName (certificate policy: email-address)"},
        {"Ed25519", "ed25519", "subjectAltName=email:e@example.com\nkeyUsage=digitalSignature\n",
         "has a key of type ED25519; S/MIME here needs an RSA or EC key (certificate policy: key-algorithm)"},
        {"NoKeyUsage", "rsa:2048", "subjectAltName=email:k@example.com\n",
         "has no keyUsage extension; S/MIME needs digitalSignature and/or keyEncipherment (keyAgreement for EC "
         "encryption) (certificate policy: key-usage)"},
        {"WrongKeyUsage", "rsa:2048", "subjectAltName=email:k@example.com\nkeyUsage=nonRepudiation\n",
         "keyUsage has neither digitalSignature nor keyEncipherment (certificate policy: key-usage)"},
        {"ServerAuthOnly", "rsa:2048",
         "subjectAltName=email:s@example.com\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
         "extendedKeyUsage lacks emailProtection (certificate policy: extended-key-usage)"},
    }),
    [](const auto& p) { return p.param.name; });

// The same certificates pass when they follow the rules: the refusals above
// are the rules', not the set-up's.
TEST_F(LifecycleTest, ConformingCorrespondentCertificateIsStored) {
  TempDir tmp;
  std::string cert = Issue(SoftwareRequest(tmp, "Frank Peer"), "frank.pem", {"-days", "30"},
                           "subjectAltName=email:frank@example.org\nkeyUsage=digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=emailProtection\n");
  std::string before = TokenObjects();
  CommandResult r = Ctl({"import-cert", "--in", cert});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "stored certificate \"CN=Frank Peer\" <frank@example.org> as a correspondent (contact) "
                   "certificate: its key is not on the token\n");
  std::string after = TokenObjects();
  EXPECT_NE(after, before);
  EXPECT_THAT(after, HasSubstr("label:      frank@example.org"));
  // Once is enough.
  CommandResult again = Ctl({"import-cert", "--in", cert, "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto j = nlohmann::json::parse(again.out);
  EXPECT_EQ(j[0]["role"], "correspondent");
  EXPECT_EQ(j[0]["created"], false);
  EXPECT_EQ(TokenObjects(), after);
}

// Expired: stored with a warning (old mail needs it), refused for signing
// with which certificate and since when.
TEST_F(LifecycleTest, ExpiredCertificateImportsWithWarningButDoesNotSign) {
  TempDir tmp;
  Keygen("p256", "retired");
  ASSERT_EQ(Ctl({"csr", "--key", "retired", "--subject", "/CN=Retired", "--email", "retired@example.com", "--out",
                 tmp.File("req.pem")}).exit_code,
            0);
  std::string cert =
      Issue(tmp.File("req.pem"), "retired.pem", {"-startdate", "20200101000000Z", "-enddate", "20201231235959Z"});
  CommandResult imp = Ctl({"import-cert", "--in", cert});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_THAT(imp.out, HasSubstr("stored certificate \"CN=Retired\" <retired@example.com> for key \"retired\""));
  EXPECT_EQ(imp.err, "smimectl: warning: certificate \"CN=Retired\" expired on 2020-12-31T23:59:59Z; kept for "
                     "verifying and decrypting old mail, but it cannot sign or be encrypted to\n");
  WriteFile(tmp.File("msg.eml"), kMessage);
  CommandResult sign = Ctl({"sign", "--key", "retired", "--in", tmp.File("msg.eml"), "--out", tmp.File("s.eml")});
  EXPECT_EQ(sign.exit_code, 1);
  EXPECT_THAT(sign.err, HasSubstr("signer certificate \"CN=Retired\" expired on 2020-12-31T23:59:59Z"));
  // Encrypting to it is refused the same way.
  CommandResult enc = Ctl({"encrypt", "--to", cert, "--in", tmp.File("msg.eml"), "--out", tmp.File("e.eml")});
  EXPECT_EQ(enc.exit_code, 1);
  EXPECT_THAT(enc.err, HasSubstr("recipient certificate \"CN=Retired\" expired on 2020-12-31T23:59:59Z"));
}

TEST_F(LifecycleTest, NotYetValidCertificateImportsWithWarning) {
  TempDir tmp;
  std::string cert = Issue(SoftwareRequest(tmp, "Future Peer"), "future.pem",
                           {"-startdate", "20990101000000Z", "-enddate", "20991231235959Z"}, kGoodRsaExt);
  CommandResult r = Ctl({"import-cert", "--in", cert});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("smimectl: warning: certificate \"CN=Future Peer\" is not valid before "
                               "2099-01-01T00:00:00Z"));
}

// The same policy guards outgoing mail: a recipient certificate that breaks
// a rule is refused for encryption, naming the rule ...
TEST_F(LifecycleTest, EncryptRefusesRecipientBreakingPolicy) {
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), kMessage);
  std::string server = Issue(SoftwareRequest(tmp, "Server Only"), "server-only.pem", {"-days", "30"},
                             "subjectAltName=email:srv@example.com\nkeyUsage=digitalSignature,keyEncipherment\n"
                             "extendedKeyUsage=serverAuth\n");
  CommandResult r = Ctl({"encrypt", "--to", server, "--in", tmp.File("msg.eml"), "--out", tmp.File("e.eml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "smimectl: recipient certificate \"CN=Server Only\" extendedKeyUsage lacks emailProtection "
                   "(certificate policy: extended-key-usage)\n");
  std::string sign_only = Issue(SoftwareRequest(tmp, "Sign Only"), "sign-only.pem", {"-days", "30"},
                                "subjectAltName=email:so@example.com\nkeyUsage=digitalSignature\n");
  r = Ctl({"encrypt", "--to", sign_only, "--in", tmp.File("msg.eml"), "--out", tmp.File("e.eml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("keyUsage lacks keyEncipherment, which encrypting to an RSA key needs "
                               "(certificate policy: key-usage)"));
  // A conforming recipient passes.
  std::string good = Issue(SoftwareRequest(tmp, "Good Peer"), "good-peer.pem", {"-days", "30"}, kGoodRsaExt);
  r = Ctl({"encrypt", "--to", good, "--in", tmp.File("msg.eml"), "--out", tmp.File("e.eml")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// ... and a token key whose certificate another tool stored (import-cert
// would have refused it) does not sign.
TEST_F(LifecycleTest, SignRefusesCertificateBreakingPolicy) {
  TempDir tmp;
  std::string id = Keygen("p256", "no-san");
  ASSERT_EQ(Ctl({"csr", "--key", "no-san", "--subject", "/CN=No San", "--email", "x@example.com", "--out",
                 tmp.File("req.pem")}).exit_code,
            0);
  // `openssl x509 -req` copies none of the request's extensions.
  WriteFile(tmp.File("ext"), "keyUsage=digitalSignature\n");
  CommandResult x = Openssl({"x509", "-req", "-in", tmp.File("req.pem"), "-CA", ca_->File("ca.pem"), "-CAkey",
                             ca_->File("ca.key"), "-set_serial", "77", "-days", "30", "-extfile", tmp.File("ext"),
                             "-outform", "DER", "-out", tmp.File("no-san.der")});
  ASSERT_EQ(x.exit_code, 0) << x.err;
  std::string pin(absl::StripAsciiWhitespace(ReadFile(token_->pin_file)));
  CommandResult w = RunCommand({"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label", kTokenLabel,
                                "--login", "--pin", pin, "--write-object", tmp.File("no-san.der"), "--type", "cert",
                                "--id", id, "--label", "no-san"},
                               testing::WithEnv({{"SOFTHSM2_CONF", token_->conf}}));
  ASSERT_EQ(w.exit_code, 0) << w.err;
  // Any import re-reads the token; this one changes nothing.
  ASSERT_EQ(Ctl({"import-cert", "--in", ca_->File("ca.pem")}).exit_code, 0);
  ASSERT_EQ(KeyJson("no-san")["subject"], "CN=No San");
  WriteFile(tmp.File("msg.eml"), kMessage);
  CommandResult r = Ctl({"sign", "--key", "no-san", "--in", tmp.File("msg.eml"), "--out", tmp.File("s.eml")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "smimectl: signer certificate \"CN=No San\" has no email address in subjectAltName "
                   "(certificate policy: email-address)\n");
}

// ---- Bad files ----------------------------------------------------------------

struct BadFileCase {
  std::string name;
  std::function<std::string(const std::string& pem, const std::string& der)> make;
  std::string message;
};

class BadFileTest : public LifecycleTest, public ::testing::WithParamInterface<BadFileCase> {};

TEST_P(BadFileTest, InvalidArgumentAndTokenUnchanged) {
  TempDir tmp;
  std::string pem = ReadFile(ca_->File("ca.pem"));
  CommandResult der = Openssl({"x509", "-in", ca_->File("ca.pem"), "-outform", "DER"});
  ASSERT_EQ(der.exit_code, 0);
  WriteFile(tmp.File("input"), GetParam().make(pem, der.out));
  std::string before = TokenObjects();
  CommandResult r = Ctl({"import-cert", "--in", tmp.File("input")});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, StartsWith("smimectl: "));
  EXPECT_THAT(r.err, HasSubstr(GetParam().message));
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(TokenObjects(), before);
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, BadFileTest,
    ::testing::ValuesIn(std::vector<BadFileCase>{
        {"Empty", [](auto&, auto&) { return std::string(); }, "the certificate file is empty"},
        {"Garbage", [](auto&, auto&) { return std::string("this is not a certificate\n"); },
         "neither a DER certificate nor PEM"},
        {"TruncatedDer", [](auto&, auto& der) { return der.substr(0, der.size() - 40); }, "is truncated"},
        {"DerWithTrailingData", [](auto&, auto& der) { return der + "tail"; }, "4 bytes after the certificate"},
        {"WrongPemHeader",
         [](auto& pem, auto&) {
           std::string s = pem;
           s.replace(s.find("BEGIN CERTIFICATE"), 17, "BEGIN X509 CRL");
           s.replace(s.find("END CERTIFICATE"), 15, "END X509 CRL");
           return s;
         },
         "holds a PEM block \"X509 CRL\"; expected \"CERTIFICATE\""},
        {"PrivateKeyInBundle",
         [](auto& pem, auto&) {
           return pem + "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
         },
         "holds a private key"},
        {"TruncatedPem", [](auto& pem, auto&) { return pem.substr(0, pem.size() / 2); }, "is malformed"},
        // A good certificate followed by a bad one: nothing is stored.
        {"GoodThenBad",
         [](auto& pem, auto&) {
           return pem + "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
         },
         "PEM certificate 2 is DER but not an X.509 certificate"},
    }),
    [](const auto& p) { return p.param.name; });

// ---- Publication -------------------------------------------------------------

class PublishTest : public LifecycleTest {
 protected:
  static void SetUpTestSuite() {
    LifecycleTest::SetUpTestSuite();
    dir_ = new TempDir();
    // Mixed case on purpose: RFC 8162 hashes the local part as written.
    cert_ = Issue(SoftwareRequest(*dir_, "Alice Smith"), "alice-smith.pem", {"-days", "30"},
                  "subjectAltName=email:Alice.Smith@Example.COM\nkeyUsage=digitalSignature,keyEncipherment\n"
                  "extendedKeyUsage=emailProtection\n");
  }
  static void TearDownTestSuite() {
    delete dir_;
    LifecycleTest::TearDownTestSuite();
  }
  static std::string Hex(const std::string& script) {
    CommandResult r = Shell(script);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // "SHA2-256(stdin)= <hex>" or "(stdin)= <hex>"
    std::string out(absl::StripAsciiWhitespace(r.out));
    return out.substr(out.rfind(' ') + 1);
  }
  static TempDir* dir_;
  static std::string cert_;
};
TempDir* PublishTest::dir_ = nullptr;
std::string PublishTest::cert_;

TEST_F(PublishTest, ZoneLinesMatchOpenssl) {
  std::string local_hash = Hex("printf '%s' 'Alice.Smith' | openssl dgst -sha256");
  std::string lower_hash = Hex("printf '%s' 'alice.smith' | openssl dgst -sha256");
  ASSERT_NE(local_hash, lower_hash);
  std::string spki_hash = Hex(absl::StrCat("openssl x509 -in '", cert_,
                                           "' -noout -pubkey | openssl pkey -pubin -outform DER | "
                                           "openssl dgst -sha256"));
  CommandResult r = Ctl({"publish", "--cert", cert_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\n", local_hash.substr(0, 56),
                                            "._smimecert.example.com. IN SMIMEA 3 1 1 ", spki_hash, "\n")));
  EXPECT_THAT(r.out, HasSubstr("\nAlice\\.Smith._smime.example.com. IN TXT "
                               "\"https://example.com/.well-known/smime/Alice.Smith.pem\"\n"));
  EXPECT_THAT(r.out, HasSubstr("https://example.com/.well-known/smime/Alice.Smith.pem"));
  // Every line is a record or a zone-file comment.
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, ";") || absl::StrContains(line, " IN ")) << line;
  }
}

TEST_F(PublishTest, FullCertificateAndJson) {
  std::string der_hex = Hex(absl::StrCat("openssl x509 -in '", cert_, "' -outform DER | od -An -v -tx1 | tr -d ' \\n' "
                                         "| sed 's/^/x= /'"));
  CommandResult r = Ctl({"publish", "--cert", cert_, "--full", "--json", "--url-base",
                         "https://keys.example.net/smime/"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["publications"].size(), 1u);
  const auto& p = j["publications"][0];
  EXPECT_EQ(p["email"], "Alice.Smith@Example.COM");
  EXPECT_EQ(p["url"], "https://keys.example.net/smime/Alice.Smith.pem");
  EXPECT_EQ(p["well_known_file"], "Alice.Smith.pem");
  EXPECT_EQ(p["smimea"]["usage"], 3);
  EXPECT_EQ(p["smimea"]["selector"], 0);
  EXPECT_EQ(p["smimea"]["matching_type"], 0);
  EXPECT_EQ(p["smimea"]["data"], der_hex);
  EXPECT_EQ(p["txt"]["rdata"], "\"https://keys.example.net/smime/Alice.Smith.pem\"");
  EXPECT_EQ(j["certificate_pem"], ReadFile(cert_));
}

TEST_F(PublishTest, TokenKeyCertificate) {
  CommandResult r = Ctl({"publish", "--key", "alice"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string hash = Hex("printf '%s' alice | openssl dgst -sha256");
  EXPECT_THAT(r.out, HasSubstr(hash.substr(0, 56) + "._smimecert.example.com. IN SMIMEA 3 1 1 "));
}

TEST_F(PublishTest, Refusals) {
  TempDir tmp;
  std::string expired = Issue(SoftwareRequest(tmp, "Old Peer"), "old.pem",
                              {"-startdate", "20200101000000Z", "-enddate", "20201231235959Z"}, kGoodRsaExt);
  CommandResult r = Ctl({"publish", "--cert", expired});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "smimectl: certificate \"CN=Old Peer\" expired on 2020-12-31T23:59:59Z (certificate policy: "
                   "validity)\n");
  r = Ctl({"publish", "--cert", ca_->File("ca.pem")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("is a CA certificate"));
  r = Ctl({"publish", "--cert", cert_, "--url-base", "http://example.com/"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("must start with https://"));
  r = Ctl({"publish"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("publish needs --cert FILE or --key SEL"));
}

// ---- Rotation: retire and delete ----------------------------------------------

TEST_F(LifecycleTest, RotationSignsWithNewestRetireFallsBackDeleteDestroys) {
  TempDir tmp;
  const std::string email = "rotate@example.com";
  absl::Time now = absl::Now();
  auto when = [](absl::Time t) { return absl::FormatTime("%Y%m%d%H%M%SZ", t, absl::UTCTimeZone()); };
  std::map<std::string, std::string> ids, certs;
  // The older certificate first, the newer one an hour old.
  for (const auto& [label, start] : std::vector<std::pair<std::string, absl::Time>>{
           {"rot-old", now - absl::Hours(48)}, {"rot-new", now - absl::Hours(1)}}) {
    ids[label] = Keygen("rsa2048", label);
    ASSERT_EQ(Ctl({"csr", "--key", label, "--subject", "/CN=Rotating Person", "--email", email, "--out",
                   tmp.File(label + ".csr")}).exit_code,
              0);
    certs[label] = Issue(tmp.File(label + ".csr"), label + ".pem",
                         {"-startdate", when(start), "-enddate", when(now + absl::Hours(24 * 30))});
    CommandResult imp = Ctl({"import-cert", "--in", certs[label]});
    ASSERT_EQ(imp.exit_code, 0) << imp.err;
  }
  EXPECT_EQ(KeyJson("rot-old")["status"], "superseded");
  EXPECT_EQ(KeyJson("rot-new")["status"], "current");

  // Signing by email picks the newest valid certificate, not "ambiguous".
  WriteFile(tmp.File("msg.eml"), kMessage);
  auto signer_of = [&](const std::string& name) -> std::string {
    CommandResult sign = Ctl({"sign", "--key", email, "--in", tmp.File("msg.eml"), "--out", tmp.File(name)});
    EXPECT_EQ(sign.exit_code, 0) << sign.err;
    CommandResult v = Openssl({"cms", "-verify", "-in", tmp.File(name), "-CAfile", ca_->File("ca.pem"), "-signer",
                               tmp.File(name + ".signer"), "-out", tmp.File(name + ".txt")});
    EXPECT_EQ(v.exit_code, 0) << v.err;
    return Openssl({"x509", "-in", tmp.File(name + ".signer"), "-noout", "-serial"}).out;
  };
  auto serial_of = [&](const std::string& label) {
    return Openssl({"x509", "-in", certs[label], "-noout", "-serial"}).out;
  };
  EXPECT_EQ(signer_of("s1.eml"), serial_of("rot-new"));

  // Mail to both keys, before any change.
  for (const std::string label : {"rot-old", "rot-new"}) {
    ASSERT_EQ(Openssl({"cms", "-encrypt", "-aes256", "-in", tmp.File("msg.eml"), "-out",
                       tmp.File("to-" + label + ".eml"), certs[label]}).exit_code,
              0);
  }

  // Retire the newer key: the older one signs again; the retired one
  // refuses to sign when named, and still decrypts.
  CommandResult retire = Ctl({"retire", "--key", "rot-new"});
  ASSERT_EQ(retire.exit_code, 0) << retire.err;
  EXPECT_THAT(retire.out, HasSubstr("retired key \"rot-new\""));
  EXPECT_EQ(KeyJson("rot-new")["status"], "retired");
  EXPECT_EQ(KeyJson("rot-old")["status"], "current");
  EXPECT_EQ(signer_of("s2.eml"), serial_of("rot-old"));
  CommandResult named = Ctl({"sign", "--key", "rot-new", "--in", tmp.File("msg.eml"), "--out", tmp.File("s3.eml")});
  EXPECT_EQ(named.exit_code, 1);
  EXPECT_THAT(named.err, HasSubstr("is retired from signing"));
  for (const std::string label : {"rot-old", "rot-new"}) {
    CommandResult dec = Ctl({"decrypt", "--in", tmp.File("to-" + label + ".eml"), "--out", tmp.File(label + ".out")});
    EXPECT_EQ(dec.exit_code, 0) << label << ": " << dec.err;
    EXPECT_THAT(ReadFile(tmp.File(label + ".out")), HasSubstr("requested and imported by smimectl"));
  }
  // The mark is the token's own: CKA_END_DATE of the public key object.
  EXPECT_THAT(agent_->Log(), HasSubstr("op=retire"));

  // Retirement can be undone: the newer key signs by email again. Undoing
  // it twice is refused and changes nothing.
  CommandResult undo = Ctl({"retire", "--key", "rot-new", "--undo"});
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  EXPECT_THAT(undo.out, HasSubstr("reinstated key \"rot-new\""));
  EXPECT_THAT(undo.out, HasSubstr("status now current"));
  EXPECT_EQ(KeyJson("rot-old")["status"], "superseded");
  EXPECT_EQ(signer_of("s2b.eml"), serial_of("rot-new"));
  EXPECT_THAT(agent_->Log(), HasSubstr("op=reinstate"));
  std::string reinstated = TokenObjects();
  CommandResult again = Ctl({"retire", "--key", "rot-new", "--undo"});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("is not retired"));
  EXPECT_EQ(TokenObjects(), reinstated);
  ASSERT_EQ(Ctl({"retire", "--key", "rot-new"}).exit_code, 0);

  // Delete asks for --yes and changes nothing without it.
  std::string before = TokenObjects();
  EXPECT_THAT(before, HasSubstr("ID:         " + ids["rot-new"]));
  CommandResult no = Ctl({"delete", "--key", "rot-new"});
  EXPECT_EQ(no.exit_code, 2);
  EXPECT_THAT(no.err, HasSubstr("confirm with --yes"));
  EXPECT_EQ(TokenObjects(), before);
  CommandResult del = Ctl({"delete", "--key", "rot-new", "--yes"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_THAT(del.out, HasSubstr("3 token objects destroyed"));
  std::string after = TokenObjects();
  EXPECT_THAT(after, Not(HasSubstr("ID:         " + ids["rot-new"])));
  EXPECT_THAT(after, HasSubstr("ID:         " + ids["rot-old"]));
  EXPECT_NE(Ctl({"keys", "--json"}).out.find("rot-old"), std::string::npos);
  EXPECT_EQ(Ctl({"keys", "--json"}).out.find("rot-new"), std::string::npos);
  EXPECT_EQ(signer_of("s4.eml"), serial_of("rot-old"));
}

// ---- Contacts -------------------------------------------------------------------

TEST_F(LifecycleTest, EncryptToContactByEmail) {
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), kMessage);
  // Not imported yet: a clear NOT_FOUND, no output.
  CommandResult none = Ctl({"encrypt", "--to", "carol.contact@example.com", "--in", tmp.File("msg.eml"), "--out",
                            tmp.File("none.eml")});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("no certificate for carol.contact@example.com among the contacts"));

  std::string cert = Issue(SoftwareRequest(tmp, "carol-contact"), "carol-contact.pem", {"-days", "30"},
                           "subjectAltName = email:Carol.Contact@example.com\n"
                           "keyUsage = critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage = emailProtection\n");
  CommandResult imp = Ctl({"import-cert", "--in", cert});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_THAT(imp.out, HasSubstr("correspondent (contact) certificate"));

  CommandResult list = Ctl({"contacts", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  bool listed = false;
  for (const auto& c : nlohmann::json::parse(list.out)) {
    if (c["emails"] == nlohmann::json::array({"carol.contact@example.com"})) listed = true;
  }
  EXPECT_TRUE(listed) << list.out;
  EXPECT_THAT(Ctl({"contacts"}).out, HasSubstr("carol.contact@example.com\t\"CN=carol-contact\""));

  // By address (any case), together with a certificate file.
  CommandResult enc = Ctl({"encrypt", "--to", "Carol.Contact@Example.com", "--in", tmp.File("msg.eml"), "--out",
                           tmp.File("enc.eml")});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  CommandResult dec = Openssl({"cms", "-decrypt", "-in", tmp.File("enc.eml"), "-inkey", tmp.File("carol-contact.key"),
                               "-recip", cert, "-out", tmp.File("dec.eml")});
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_THAT(ReadFile(tmp.File("dec.eml")), HasSubstr("requested and imported by smimectl"));
}

TEST_F(LifecycleTest, VerifiedSignerBecomesContact) {
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), kMessage);
  std::string cert = Issue(SoftwareRequest(tmp, "dan-signer"), "dan-signer.pem", {"-days", "30"},
                           "subjectAltName = email:dan.signer@example.com\n"
                           "keyUsage = critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage = emailProtection\n");
  ASSERT_EQ(Openssl({"cms", "-sign", "-in", tmp.File("msg.eml"), "-signer", cert, "-inkey",
                     tmp.File("dan-signer.key"), "-out", tmp.File("signed.eml")}).exit_code,
            0);
  EXPECT_THAT(Ctl({"contacts"}).out, Not(HasSubstr("dan.signer@example.com")));
  // --signature-only checks no chain: nothing is remembered.
  ASSERT_EQ(Ctl({"verify", "--signature-only", "--in", tmp.File("signed.eml"), "--out", tmp.File("c0.txt")}).exit_code,
            0);
  EXPECT_THAT(Ctl({"contacts"}).out, Not(HasSubstr("dan.signer@example.com")));
  CommandResult v = Ctl({"verify", "--ca", ca_->File("ca.pem"), "--in", tmp.File("signed.eml"), "--out",
                         tmp.File("c1.txt")});
  ASSERT_EQ(v.exit_code, 0) << v.err;
  EXPECT_THAT(Ctl({"contacts"}).out, HasSubstr("dan.signer@example.com"));
  // The write to the token is logged, once.
  auto stored_lines = [] {
    return std::vector<std::string>(absl::StrSplit(agent_->Log(), "event=contact_stored")).size() - 1;
  };
  EXPECT_THAT(agent_->Log(), HasSubstr("email=dan.signer@example.com"));
  const size_t stored = stored_lines();
  EXPECT_GE(stored, 1u);
  CommandResult enc = Ctl({"encrypt", "--to", "dan.signer@example.com", "--in", tmp.File("msg.eml"), "--out",
                           tmp.File("enc.eml")});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  CommandResult dec = Openssl({"cms", "-decrypt", "-in", tmp.File("enc.eml"), "-inkey", tmp.File("dan-signer.key"),
                               "-out", tmp.File("dec.eml")});
  EXPECT_EQ(dec.exit_code, 0) << dec.err;
  // Verifying again stores no duplicate.
  std::string before = Ctl({"contacts", "--json"}).out;
  ASSERT_EQ(Ctl({"verify", "--ca", ca_->File("ca.pem"), "--in", tmp.File("signed.eml"), "--out",
                 tmp.File("c2.txt")}).exit_code,
            0);
  EXPECT_EQ(Ctl({"contacts", "--json"}).out, before);
  EXPECT_EQ(stored_lines(), stored);
}

// The token's own signatures verify like anyone's, but the signer is not a
// correspondent: its certificate is already on the token, as the key's.
TEST_F(LifecycleTest, OwnSignatureDoesNotBecomeAContact) {
  TempDir tmp;
  Keygen("p256", "self-signer");
  ASSERT_EQ(Ctl({"csr", "--key", "self-signer", "--subject", "/CN=Self Signer", "--email", "self.signer@example.com",
                 "--out", tmp.File("req.pem")}).exit_code,
            0);
  ASSERT_EQ(Ctl({"import-cert", "--in", Issue(tmp.File("req.pem"), "self-signer.pem", {"-days", "30"})}).exit_code, 0);
  WriteFile(tmp.File("msg.eml"), kMessage);
  ASSERT_EQ(Ctl({"sign", "--key", "self-signer", "--in", tmp.File("msg.eml"), "--out", tmp.File("s.eml")}).exit_code,
            0);
  std::string before = TokenObjects();
  CommandResult v = Ctl({"verify", "--ca", ca_->File("ca.pem"), "--in", tmp.File("s.eml"), "--out",
                         tmp.File("c.txt")});
  ASSERT_EQ(v.exit_code, 0) << v.err;
  EXPECT_THAT(v.err, HasSubstr("self.signer@example.com"));
  EXPECT_THAT(Ctl({"contacts"}).out, Not(HasSubstr("self.signer@example.com")));
  EXPECT_EQ(TokenObjects(), before);
}

// ---- PKCS#12 import -----------------------------------------------------------

// A software key and certificate from the test CA, bundled by
// `openssl pkcs12 -export` (plus `extra` flags, e.g. -legacy), then imported.
class Pkcs12Test : public LifecycleTest {
 protected:
  // Makes NAME.p12 in `tmp` for a fresh key of `algorithm` with email
  // NAME@example.com; the password "pw-NAME" in NAME.pass (mode 0600).
  static std::string MakeP12(const TempDir& tmp, const std::string& name, const std::string& algorithm,
                             std::vector<std::string> extra = {}) {
    std::string csr = algorithm == "ec" ? EcRequest(tmp, name) : SoftwareRequest(tmp, name, algorithm);
    std::string ku = absl::StartsWith(algorithm, "ec") ? "digitalSignature,keyAgreement"
                                                      : "digitalSignature,keyEncipherment";
    std::string cert = Issue(csr, name + ".pem", {"-days", "30"},
                             absl::StrCat("subjectAltName = email:", name, "@example.com\nkeyUsage = critical,", ku,
                                          "\nextendedKeyUsage = emailProtection\n"));
    WriteFile(tmp.File(name + ".pass"), "pw-" + name + "\n");
    EXPECT_EQ(RunCommand({"chmod", "600", tmp.File(name + ".pass")}).exit_code, 0);
    std::vector<std::string> args = {"pkcs12", "-export", "-inkey", tmp.File(name + ".key"), "-in", cert,
                                     "-certfile", ca_->File("ca.pem"), "-name", name, "-passout",
                                     "file:" + tmp.File(name + ".pass"), "-out", tmp.File(name + ".p12")};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Openssl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return tmp.File(name + ".p12");
  }
  static std::string EcRequest(const TempDir& tmp, const std::string& name) {
    CommandResult r = Openssl({"req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                               "-keyout", tmp.File(name + ".key"), "-subj", "/CN=" + name, "-out",
                               tmp.File(name + ".csr")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return tmp.File(name + ".csr");
  }
};

struct Pkcs12Case {
  std::string name;
  std::string algorithm;            // openssl req -newkey
  std::vector<std::string> extra;   // openssl pkcs12 -export flags
  std::string mac_or_cipher;        // what `openssl pkcs12 -info` says about the file
};

class Pkcs12FlowTest : public Pkcs12Test, public ::testing::WithParamInterface<Pkcs12Case> {};

TEST_P(Pkcs12FlowTest, ImportedKeySignsAndDecryptsAndIsNotExtractable) {
  TempDir tmp;
  const std::string name = "p12" + absl::AsciiStrToLower(GetParam().name);
  std::string p12 = MakeP12(tmp, name, GetParam().algorithm, GetParam().extra);
  CommandResult info = Openssl({"pkcs12", "-info", "-noout", "-legacy", "-in", p12, "-passin",
                                "file:" + tmp.File(name + ".pass")});
  EXPECT_THAT(info.err, HasSubstr(GetParam().mac_or_cipher));

  CommandResult imp = Ctl({"import-p12", "--in", p12, "--password-file", tmp.File(name + ".pass"), "--json"});
  ASSERT_EQ(imp.exit_code, 0) << imp.err << agent_->Log();
  nlohmann::json j = nlohmann::json::parse(imp.out);
  EXPECT_EQ(j["label"], name);
  // CKA_ID: SHA-1 of the public key, the rule keygen follows.
  std::string id = j["id"];
  EXPECT_EQ(id.size(), 40u);
  ASSERT_EQ(j["certificates"].size(), 2u);
  EXPECT_EQ(j["certificates"][0]["role"], "key");
  EXPECT_EQ(j["certificates"][0]["id"], id);
  EXPECT_EQ(j["certificates"][1]["role"], "chain");
  EXPECT_EQ(KeyJson(name)["emails"], nlohmann::json::array({name + "@example.com"}));
  EXPECT_THAT(agent_->Log(), HasSubstr("op=import_p12"));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("pw-" + name)));

  // The private key object: sensitive, never extractable.
  std::string objects = TokenObjects();
  size_t at = objects.find(absl::StrCat("Private Key Object"));
  bool found = false;
  for (; at != std::string::npos; at = objects.find("Private Key Object", at + 1)) {
    size_t end = at;
    while ((end = objects.find('\n', end + 1)) != std::string::npos && end + 1 < objects.size() &&
           objects[end + 1] == ' ') {
    }
    std::string block = objects.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (!absl::StrContains(block, "label:      " + name + "\n")) continue;
    found = true;
    EXPECT_THAT(block, HasSubstr("ID:         " + id));
    // pkcs11-tool prints "extractable" for CKA_EXTRACTABLE=TRUE. SoftHSM
    // (as PKCS#11 says for C_CreateObject) sets CKA_ALWAYS_SENSITIVE and
    // CKA_NEVER_EXTRACTABLE false for a key that was once in software, so
    // "always sensitive, never extractable" is for keys made on the token.
    EXPECT_THAT(block, HasSubstr("Access:     sensitive"));
    EXPECT_THAT(block, Not(HasSubstr("extractable"))) << block;
  }
  EXPECT_TRUE(found) << objects;
  EXPECT_THAT(objects, HasSubstr(absl::StrCat("Public Key Object")));

  // Sign with the imported key; openssl verifies against the CA.
  WriteFile(tmp.File("msg.eml"), kMessage);
  CommandResult sign = Ctl({"sign", "--key", name, "--in", tmp.File("msg.eml"), "--out", tmp.File("signed.eml")});
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  CommandResult ok = Openssl({"cms", "-verify", "-in", tmp.File("signed.eml"), "-CAfile", ca_->File("ca.pem"),
                              "-out", tmp.File("content.txt")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;

  // Mail encrypted to the certificate by openssl opens through the agent
  // (RSA; EC key agreement through the token is a known OpenSSL limit, so
  // the agent's own encrypt is used for both).
  CommandResult enc = Ctl({"encrypt", "--to", ca_->File(name + ".pem"), "--in", tmp.File("msg.eml"), "--out",
                           tmp.File("enc.eml")});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  CommandResult dec = Ctl({"decrypt", "--in", tmp.File("enc.eml"), "--out", tmp.File("dec.eml")});
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_THAT(ReadFile(tmp.File("dec.eml")), HasSubstr("requested and imported by smimectl"));
  if (absl::StartsWith(GetParam().algorithm, "rsa")) {
    ASSERT_EQ(Openssl({"cms", "-encrypt", "-aes256", "-in", tmp.File("msg.eml"), "-out", tmp.File("enc2.eml"),
                       ca_->File(name + ".pem")}).exit_code,
              0);
    CommandResult dec2 = Ctl({"decrypt", "--in", tmp.File("enc2.eml"), "--out", tmp.File("dec2.eml")});
    ASSERT_EQ(dec2.exit_code, 0) << dec2.err;
    EXPECT_THAT(ReadFile(tmp.File("dec2.eml")), HasSubstr("requested and imported by smimectl"));
  }

  // The same file again: refused, nothing written.
  std::string before = TokenObjects();
  CommandResult again = Ctl({"import-p12", "--in", p12, "--password-file", tmp.File(name + ".pass")});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already on the token"));
  EXPECT_EQ(TokenObjects(), before);
}

INSTANTIATE_TEST_SUITE_P(
    Forms, Pkcs12FlowTest,
    ::testing::Values(Pkcs12Case{"ModernRsa", "rsa:2048", {}, "PBES2, PBKDF2, AES-256-CBC"},
                      Pkcs12Case{"LegacyRsa", "rsa:2048", {"-legacy"}, "pbeWithSHA1And40BitRC2-CBC"},
                      Pkcs12Case{"ModernEc", "ec", {}, "PBES2, PBKDF2, AES-256-CBC"},
                      Pkcs12Case{"LegacyEc", "ec", {"-legacy"}, "pbeWithSHA1And3-KeyTripleDES-CBC"}),
    [](const auto& p) { return p.param.name; });

TEST_F(Pkcs12Test, RefusalsWriteNothing) {
  TempDir tmp;
  std::string p12 = MakeP12(tmp, "p12refused", "rsa:2048");
  WriteFile(tmp.File("wrong.pass"), "not-the-password\n");
  ASSERT_EQ(RunCommand({"chmod", "600", tmp.File("wrong.pass")}).exit_code, 0);
  // No key: certificates only.
  ASSERT_EQ(Openssl({"pkcs12", "-export", "-nokeys", "-in", ca_->File("p12refused.pem"), "-passout",
                     "file:" + tmp.File("p12refused.pass"), "-out", tmp.File("nokey.p12")}).exit_code,
            0);
  WriteFile(tmp.File("garbage.p12"), std::string("\x30\x82\x01\x00garbage", 11));
  std::string truncated = ReadFile(p12);
  WriteFile(tmp.File("truncated.p12"), truncated.substr(0, truncated.size() / 2));

  std::string before = TokenObjects();
  struct Case {
    std::string file, pass;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {p12, tmp.File("wrong.pass"), "wrong PKCS#12 password"},
           {tmp.File("nokey.p12"), tmp.File("p12refused.pass"), "holds no private key"},
           {tmp.File("garbage.p12"), tmp.File("p12refused.pass"), "not PKCS#12"},
           {tmp.File("truncated.p12"), tmp.File("p12refused.pass"), "not PKCS#12"},
       }) {
    CommandResult r = Ctl({"import-p12", "--in", c.file, "--password-file", c.pass});
    EXPECT_EQ(r.exit_code, 2) << c.file << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << c.file;
  }
  EXPECT_EQ(TokenObjects(), before);
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("not-the-password")));

  // A password file others can read is refused before anything is sent.
  ASSERT_EQ(RunCommand({"chmod", "644", tmp.File("wrong.pass")}).exit_code, 0);
  CommandResult open = Ctl({"import-p12", "--in", p12, "--password-file", tmp.File("wrong.pass")});
  EXPECT_EQ(open.exit_code, 1);
  EXPECT_THAT(open.err, HasSubstr("chmod 600"));
}

}  // namespace
}  // namespace smime
