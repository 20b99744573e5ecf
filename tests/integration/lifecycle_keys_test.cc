// The key lifecycle end to end: a key made on the token gets a request
// (checked by `openssl req -verify`), a certificate from the suite's CA
// (`openssl ca`, extensions copied from the request), is imported with the
// CA in a bundle and signs mail that `openssl cms -verify -CAfile` accepts;
// requests that cannot be made; rotation by retire and delete.
#include "tests/integration/lifecycle_fixture.h"

namespace smime::lifecycle_test {
namespace {

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

}  // namespace
}  // namespace smime::lifecycle_test
