// PKCS#12 import: keys bundled by `openssl pkcs12 -export` land on the
// token unextractable, sign and decrypt; bad bundles and passwords are
// refused with the token unchanged.
#include "tests/integration/lifecycle_fixture.h"

namespace smime::lifecycle_test {
namespace {

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

// A file that asks for more key-derivation work than the agent allows is
// refused before the work: the file openssl writes with 65,536 iterations,
// one of its counts raised to 8,388,607 (the same three DER bytes), for the
// MAC, the encrypted certificates and the shrouded key in turn.
TEST_F(Pkcs12Test, IterationCountsOverTheBoundAreRefusedBeforeAnyDerivation) {
  TempDir tmp;
  const std::string count = std::string("\x02\x03\x01\x00\x00", 5);  // INTEGER 65536
  const std::string raised = std::string("\x02\x03\x7f\xff\xff", 5);  // INTEGER 8388607
  std::string with_mac = ReadFile(MakeP12(tmp, "p12mac", "rsa:2048", {"-iter", "65536"}));
  std::string no_mac = ReadFile(MakeP12(tmp, "p12nomac", "rsa:2048", {"-iter", "65536", "-nomac", "-certpbe", "AES-256-CBC"}));
  auto raise = [&](std::string der, size_t which) {
    size_t at = std::string::npos;
    for (size_t i = 0; i <= which; ++i) at = der.find(count, at == std::string::npos ? 0 : at + 1);
    EXPECT_NE(at, std::string::npos) << "occurrence " << which;
    if (at != std::string::npos) der.replace(at, count.size(), raised);
    return der;
  };
  // openssl writes the certificates' encrypted safe, then the key's, then
  // the MAC: three counts with the MAC, two without.
  auto occurrences = [&](const std::string& der) {
    size_t n = 0;
    for (size_t at = der.find(count); at != std::string::npos; at = der.find(count, at + 1)) ++n;
    return n;
  };
  ASSERT_EQ(occurrences(with_mac), 3u);
  ASSERT_EQ(occurrences(no_mac), 2u);
  WriteFile(tmp.File("mac.p12"), raise(with_mac, 2));
  WriteFile(tmp.File("certs.p12"), raise(no_mac, 0));
  WriteFile(tmp.File("key.p12"), raise(no_mac, 1));

  std::string before = TokenObjects();
  for (const auto& [file, pass, what] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"mac.p12", "p12mac.pass", "for its MAC"},
           {"certs.p12", "p12nomac.pass", "for its encrypted contents"},
           {"key.p12", "p12nomac.pass", "for a private key"}}) {
    CommandResult r = Ctl({"import-p12", "--in", tmp.File(file), "--password-file", tmp.File(pass)});
    EXPECT_EQ(r.exit_code, 2) << file << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("asks for 8388607 iterations of key derivation " + what)) << file;
    EXPECT_THAT(r.err, HasSubstr("at most 2000000")) << file;
  }
  EXPECT_EQ(TokenObjects(), before);
  EXPECT_EQ(Ctl({"keys"}).exit_code, 0);
}

}  // namespace
}  // namespace smime::lifecycle_test
