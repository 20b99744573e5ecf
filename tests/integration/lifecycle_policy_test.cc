// The certificate policy through import-cert, sign and encrypt: each rule
// refused with its reason, and bad certificate files leave the token as it
// was.
#include "tests/integration/lifecycle_fixture.h"

namespace smime::lifecycle_test {
namespace {

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
class PolicyCheckTest : public LifecycleTest {};

TEST_F(PolicyCheckTest, ConformingCorrespondentCertificateIsStored) {
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
TEST_F(PolicyCheckTest, ExpiredCertificateImportsWithWarningButDoesNotSign) {
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

TEST_F(PolicyCheckTest, NotYetValidCertificateImportsWithWarning) {
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
TEST_F(PolicyCheckTest, EncryptRefusesRecipientBreakingPolicy) {
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
TEST_F(PolicyCheckTest, SignRefusesCertificateBreakingPolicy) {
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

}  // namespace
}  // namespace smime::lifecycle_test
