// Publication records compared with values openssl computes, and the
// contacts the agent keeps (encrypt by email, verified signers).
#include "tests/integration/lifecycle_fixture.h"

namespace smime::lifecycle_test {
namespace {

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

// ---- Contacts -------------------------------------------------------------------

class ContactsTest : public LifecycleTest {};

TEST_F(ContactsTest, EncryptToContactByEmail) {
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

TEST_F(ContactsTest, VerifiedSignerBecomesContact) {
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
TEST_F(ContactsTest, OwnSignatureDoesNotBecomeAContact) {
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

}  // namespace
}  // namespace smime::lifecycle_test
