// S/MIME with openssl as the peer: the agent signs and openssl verifies;
// the agent encrypts and each recipient opens it with its own key (openssl
// with the peer's key file, or with the token key through pkcs11-provider);
// openssl encrypts and the agent finds the key itself. Every positive check
// is paired with a tampered or wrong input that must be refused.
#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "tests/integration/smime_fixture.h"

namespace smime::integration {
namespace {

// ---------------------------------------------------------------------------
// Sign: the agent signs, openssl verifies.

struct SignCase {
  std::string name;
  std::string key;                 // selector given to smimectl
  std::string signer;              // whose certificate must be the signer's
  std::vector<std::string> flags;  // --opaque, --pss
  std::string signature_algorithm; // as `openssl cms -print` names it
  bool lf_input = false;           // give the message with LF line ends
};
void PrintTo(const SignCase& c, std::ostream* os) { *os << c.name; }

class SmimeSignTest : public SmimeTest, public ::testing::WithParamInterface<SignCase> {};

TEST_P(SmimeSignTest, OpensslVerifiesAndRejectsATamperedCopy) {
  const SignCase& c = GetParam();
  const bool opaque = std::find(c.flags.begin(), c.flags.end(), "--opaque") != c.flags.end();
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), c.lf_input ? ToLf(Message()) : Message());
  std::vector<std::string> args = {"sign", "--key", c.key, "--in", tmp.File("msg.eml"), "--out", tmp.File("signed.eml")};
  args.insert(args.end(), c.flags.begin(), c.flags.end());
  CommandResult s = Ctl(args);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.err, "");
  const std::string signed_msg = ReadFile(tmp.File("signed.eml"));

  // The outer header fields stay outside, in order; the Content-* fields
  // of the message moved into the signed entity.
  EXPECT_THAT(signed_msg, StartsWith(absl::StrCat(kOuterHeaders, "MIME-Version: 1.0\r\n")));
  const std::string header = HeaderBlock(signed_msg);
  EXPECT_EQ(Count(header, "Content-Type:"), 1u) << header;
  EXPECT_THAT(header, Not(HasSubstr("charset=utf-8")));
  EXPECT_THAT(header, Not(HasSubstr("8bit")));
  if (opaque) {
    EXPECT_THAT(header, HasSubstr("Content-Type: application/pkcs7-mime; smime-type=signed-data"));
  } else {
    EXPECT_THAT(header, HasSubstr("Content-Type: multipart/signed;"));
    EXPECT_THAT(header, HasSubstr("protocol=\"application/pkcs7-signature\""));
    EXPECT_THAT(header, HasSubstr("micalg=\"sha-256\""));
    // The signed part carries the Content-* fields and the body, CRLF.
    EXPECT_EQ(FirstBodyPart(signed_msg), kEntity);
  }

  // What was signed, as openssl sees it: SHA-256, the expected signature
  // algorithm, the signer's certificate included.
  std::string print = CmsPrint(tmp.File("signed.eml"));
  EXPECT_THAT(print, HasSubstr("algorithm: sha256 (2.16.840.1.101.3.4.2.1)"));
  EXPECT_THAT(print, HasSubstr(absl::StrCat("algorithm: ", c.signature_algorithm, " (")));
  EXPECT_THAT(print, HasSubstr("signingTime"));

  CommandResult v = Openssl({"cms", "-verify", "-CAfile", TestCa(), "-in", tmp.File("signed.eml"), "-out",
                             tmp.File("content"), "-signer", tmp.File("signer.pem")});
  ASSERT_EQ(v.exit_code, 0) << v.err;
  EXPECT_THAT(v.err, HasSubstr("Verification successful"));
  EXPECT_EQ(ReadFile(tmp.File("content")), kEntity);
  EXPECT_EQ(ReadFile(tmp.File("signer.pem")), ReadFile(Cert(c.signer)));

  // One flipped byte of the signed content: openssl and the agent refuse.
  std::string tampered = tmp.File(opaque ? "tampered.der" : "tampered.eml");
  if (opaque) {
    WriteFile(tampered, FlipIn(ToDer(tmp.File("signed.eml"), tmp.File("signed.der")), kBodyLine));
  } else {
    WriteFile(tampered, FlipIn(signed_msg, kBodyLine));
  }
  CommandResult bad = Openssl({"cms", "-verify", "-CAfile", TestCa(), "-inform", opaque ? "DER" : "SMIME", "-in",
                               tampered, "-out", tmp.File("bad-content")});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("Verification failure"));
  CommandResult agent_bad = Ctl({"verify", "--ca", TestCa(), "--in", tampered, "--out", tmp.File("agent-bad")});
  ExpectCleanFailure(agent_bad, 2, "the content does not match the signature", tmp.File("agent-bad"));
}

INSTANTIATE_TEST_SUITE_P(
    Keys, SmimeSignTest,
    ::testing::Values(SignCase{"RsaMultipart", "alice@example.com", "alice", {}, "rsaEncryption"},
                      SignCase{"RsaOpaque", "alice", "alice", {"--opaque"}, "rsaEncryption"},
                      SignCase{"RsaPss", "alice", "alice", {"--pss"}, "rsassaPss"},
                      SignCase{"RsaPssOpaque", "01", "alice", {"--pss", "--opaque"}, "rsassaPss"},
                      SignCase{"EcdsaMultipart", "bob@example.com", "bob", {}, "ecdsa-with-SHA256"},
                      SignCase{"EcdsaOpaque", "bob", "bob", {"--opaque"}, "ecdsa-with-SHA256"},
                      SignCase{"CertificateUnderOtherId", "erin", "erin", {}, "rsaEncryption"},
                      SignCase{"LfInputSignedAsCrlf", "alice", "alice", {}, "rsaEncryption", true}),
    [](const auto& p) { return p.param.name; });

// The SMIMECapabilities attribute offers correspondents only the ciphers the
// agent encrypts with (AES-GCM and AES-CBC), none of OpenSSL's default DES,
// 3DES or RC2 entries.
TEST_F(SmimeTest, SignatureOffersOnlyAesCapabilities) {
  TempDir tmp;
  std::string print = CmsPrint(AgentSigned(tmp, Message()));
  size_t at = print.find("S/MIME Capabilities");
  ASSERT_NE(at, std::string::npos) << print;
  std::string caps = print.substr(at, print.find("signatureAlgorithm", at) - at);
  std::vector<std::string> offered;
  for (absl::string_view line : absl::StrSplit(caps, '\n')) {
    size_t colon = line.rfind("OBJECT            :");
    if (colon != absl::string_view::npos) offered.emplace_back(line.substr(colon + 19));
  }
  EXPECT_THAT(offered, ::testing::ElementsAre("aes-256-gcm", "aes-256-cbc", "aes-128-gcm", "aes-128-cbc")) << caps;
}

TEST_F(SmimeTest, PssSignatureParametersAreSha256WithDigestLengthSalt) {
  TempDir tmp;
  std::string signed_file = AgentSigned(tmp, Message(), {"--pss"});
  std::string print = CmsPrint(signed_file);
  size_t at = print.find("algorithm: rsassaPss");
  ASSERT_NE(at, std::string::npos) << print;
  std::string params = print.substr(at, 1200);
  EXPECT_THAT(params, HasSubstr(":sha256"));
  EXPECT_THAT(params, HasSubstr(":mgf1"));
  EXPECT_THAT(params, HasSubstr("INTEGER           :20"));  // salt 32 bytes
  // openssl agrees the PSS signature holds.
  CommandResult v = Openssl({"cms", "-verify", "-CAfile", TestCa(), "-in", signed_file, "-out", tmp.File("c")});
  EXPECT_EQ(v.exit_code, 0) << v.err;
}

// ---------------------------------------------------------------------------
// Encrypt: the agent encrypts, each recipient opens with its own key.

struct RecipientSpec {
  std::string name;
  std::vector<Opener> openers;
};

struct EncryptCase {
  std::string name;
  std::vector<std::string> flags;
  std::vector<RecipientSpec> to;        // given with --to
  std::string sender;                   // --sign-with; opens its own copy through the agent and openssl
  std::string smime_type;               // enveloped-data or authEnveloped-data
  std::vector<std::string> print_has;   // in `openssl cms -cmsout -print`
};
void PrintTo(const EncryptCase& c, std::ostream* os) { *os << c.name; }

class SmimeEncryptTest : public SmimeTest, public ::testing::WithParamInterface<EncryptCase> {};

TEST_P(SmimeEncryptTest, EveryRecipientOpensIt) {
  const EncryptCase& c = GetParam();
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), Message());
  std::vector<std::string> args = {"encrypt", "--in", tmp.File("msg.eml"), "--out", tmp.File("enc.eml")};
  for (const RecipientSpec& r : c.to) args.insert(args.end(), {"--to", Cert(r.name)});
  if (!c.sender.empty()) args.insert(args.end(), {"--sign-with", c.sender});
  args.insert(args.end(), c.flags.begin(), c.flags.end());
  CommandResult e = Ctl(args);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const std::string enc = ReadFile(tmp.File("enc.eml"));

  // The outer header fields stay readable; the content does not.
  EXPECT_THAT(enc, StartsWith(absl::StrCat(kOuterHeaders, "MIME-Version: 1.0\r\n")));
  const std::string header = HeaderBlock(enc);
  EXPECT_THAT(header, HasSubstr("Content-Type: application/pkcs7-mime; smime-type=" + c.smime_type + ";"));
  EXPECT_THAT(header, HasSubstr("Content-Transfer-Encoding: base64"));
  EXPECT_THAT(enc, Not(HasSubstr(kBodyLine)));
  EXPECT_THAT(enc.substr(header.size()), Not(HasSubstr("charset=utf-8")));

  std::string print = CmsPrint(tmp.File("enc.eml"));
  for (const std::string& want : c.print_has) EXPECT_THAT(print, HasSubstr(want));
  // One RecipientInfo per recipient, the sender's own included.
  EXPECT_EQ(Count(print, "d.issuerAndSerialNumber:"), c.to.size() + (c.sender.empty() ? 0 : 1)) << print;

  std::vector<RecipientSpec> everyone = c.to;
  if (!c.sender.empty()) {
    everyone.push_back({c.sender, c.sender == "bob" ? std::vector<Opener>{Opener::kAgent}
                                                    : std::vector<Opener>{Opener::kAgent, Opener::kOpensslToken}});
  }
  for (const RecipientSpec& r : everyone) {
    for (Opener how : r.openers) {
      SCOPED_TRACE(absl::StrCat(r.name, " opener ", static_cast<int>(how)));
      std::string content = Open(tmp.File("enc.eml"), r.name, how, tmp);
      if (c.sender.empty()) {
        EXPECT_EQ(content, kEntity);
        continue;
      }
      // Sign-then-encrypt: inside is a multipart/signed by the sender.
      EXPECT_THAT(content, StartsWith("Content-Type: multipart/signed;"));
      WriteFile(tmp.File("inner.eml"), content);
      CommandResult v = Openssl({"cms", "-verify", "-CAfile", TestCa(), "-in", tmp.File("inner.eml"), "-out",
                                 tmp.File("inner-content"), "-signer", tmp.File("inner-signer.pem")});
      EXPECT_EQ(v.exit_code, 0) << v.err;
      EXPECT_EQ(ReadFile(tmp.File("inner-content")), kEntity);
      EXPECT_EQ(ReadFile(tmp.File("inner-signer.pem")), ReadFile(Cert(c.sender)));
    }
  }

  // A key that is not a recipient cannot open it (openssl with another key
  // file; the agent with another token key).
  auto is_recipient = [&](const std::string& name) {
    return std::any_of(everyone.begin(), everyone.end(), [&](const RecipientSpec& r) { return r.name == name; });
  };
  for (std::string outsider : {"frank", "grace"}) {
    if (is_recipient(outsider)) continue;
    CommandResult no = Openssl({"cms", "-decrypt", "-in", tmp.File("enc.eml"), "-inkey", KeyFile(outsider),
                                "-recip", Cert(outsider), "-out", tmp.File("outsider")});
    EXPECT_NE(no.exit_code, 0) << outsider;
    break;
  }
  const std::pair<std::string, std::string> outsiders[] = {{"erin", "05"}, {"alice", "01"}, {"bob", "02"}};
  for (const auto& [outsider, id] : outsiders) {
    if (is_recipient(outsider)) continue;
    std::string out = tmp.File("outsider-" + outsider);
    CommandResult no = Ctl({"decrypt", "--key", outsider, "--in", tmp.File("enc.eml"), "--out", out});
    ExpectCleanFailure(no, 1, "key \"" + outsider + "\" (id " + id + ") cannot open this message", out);
    break;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Options, SmimeEncryptTest,
    ::testing::Values(
        EncryptCase{"Aes256CbcDefault", {}, {{"frank", {Opener::kKeyFile}}}, "", "enveloped-data",
                    {"aes-256-cbc", "rsaEncryption"}},
        EncryptCase{"Aes128Cbc", {"--cipher", "aes128-cbc"}, {{"frank", {Opener::kKeyFile}}}, "", "enveloped-data",
                    {"aes-128-cbc"}},
        EncryptCase{"Aes256CbcToTokenKey",
                    {"--cipher", "aes256-cbc"},
                    {{"alice", {Opener::kOpensslToken, Opener::kAgent}}},
                    "",
                    "enveloped-data",
                    {"aes-256-cbc"}},
        EncryptCase{"Aes256Gcm",
                    {"--cipher", "aes256-gcm"},
                    {{"frank", {Opener::kKeyFile}}, {"alice", {Opener::kOpensslToken, Opener::kAgent}}},
                    "",
                    "authEnveloped-data",
                    {"aes-256-gcm"}},
        // SoftHSM does RSA-OAEP with SHA-1 only, so openssl's pkcs11-provider
        // cannot open alice's OAEP-SHA-256 copy; the agent pads itself.
        EncryptCase{"OaepSha256",
                    {"--oaep"},
                    {{"frank", {Opener::kKeyFile}}, {"alice", {Opener::kAgent}}},
                    "",
                    "enveloped-data",
                    {"rsaesOaep", ":sha256", ":mgf1"}},
        EncryptCase{"EcRecipientEcdh", {}, {{"grace", {Opener::kKeyFile}}}, "", "enveloped-data",
                    {"d.kari", "dhSinglePass-stdDH"}},
        EncryptCase{"EcTokenRecipientEcdh", {}, {{"bob", {Opener::kAgent}}}, "", "enveloped-data", {"d.kari"}},
        EncryptCase{"TwoRecipients",
                    {},
                    {{"frank", {Opener::kKeyFile}}, {"alice", {Opener::kOpensslToken, Opener::kAgent}}},
                    "",
                    "enveloped-data",
                    {"d.ktri"}},
        EncryptCase{"RsaAndEcRecipientsGcm",
                    {"--cipher", "aes256-gcm"},
                    {{"grace", {Opener::kKeyFile}},
                     {"frank", {Opener::kKeyFile}},
                     {"bob", {Opener::kAgent}},
                     {"erin", {Opener::kOpensslToken, Opener::kAgent}}},
                    "",
                    "authEnveloped-data",
                    {"d.kari", "d.ktri"}},
        EncryptCase{"SignWithAlice", {}, {{"frank", {Opener::kKeyFile}}}, "alice", "enveloped-data", {}},
        EncryptCase{"SignWithBobGcm", {"--cipher", "aes256-gcm"}, {{"grace", {Opener::kKeyFile}}}, "bob",
                    "authEnveloped-data", {}}),
    [](const auto& p) { return p.param.name; });

// ---------------------------------------------------------------------------
// The other way: openssl encrypts, the agent finds the key itself and opens it.

// Lone LFs to CRLF, as openssl canonicalises text it signs or encrypts.
std::string ToCrlf(const std::string& s) { return absl::StrReplaceAll(ToLf(s), {{"\n", "\r\n"}}); }

struct OpensslEncryptCase {
  std::string name;
  std::string cipher;                   // openssl's cipher option
  std::vector<std::string> recipients;  // certificates, in order
  std::vector<std::string> keyopts;     // after each -recip
  std::string outform;                  // SMIME, DER or PEM
  std::string want_key;                 // the token key that must open it
  std::string signer;                   // sign with this peer key first
};
void PrintTo(const OpensslEncryptCase& c, std::ostream* os) { *os << c.name; }

class OpensslToAgentTest : public SmimeTest, public ::testing::WithParamInterface<OpensslEncryptCase> {};

TEST_P(OpensslToAgentTest, AgentOpensWithoutBeingToldTheKey) {
  const OpensslEncryptCase& c = GetParam();
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), Message());
  std::string plain = tmp.File("msg.eml");
  if (!c.signer.empty()) {
    CommandResult s = Openssl({"cms", "-sign", "-signer", Cert(c.signer), "-inkey", KeyFile(c.signer), "-in",
                               tmp.File("msg.eml"), "-out", tmp.File("signed.eml")});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    plain = tmp.File("signed.eml");
  }
  std::vector<std::string> enc = {"cms", "-encrypt", c.cipher, "-in", plain, "-outform", c.outform,
                                  "-out", tmp.File("enc")};
  for (const std::string& r : c.recipients) {
    enc.insert(enc.end(), {"-recip", Cert(r)});
    enc.insert(enc.end(), c.keyopts.begin(), c.keyopts.end());
  }
  CommandResult e = Openssl(enc);
  ASSERT_EQ(e.exit_code, 0) << e.err;

  CommandResult d = Ctl({"decrypt", "--in", tmp.File("enc"), "--out", tmp.File("dec")});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_THAT(d.err, StartsWith(absl::StrCat("smimectl: decrypted with pkcs11:")));
  EXPECT_THAT(d.err, HasSubstr(absl::StrCat(";object=", c.want_key, ";type=private\n")));
  EXPECT_EQ(ReadFile(tmp.File("dec")), ToCrlf(ReadFile(plain)));
  if (c.signer.empty()) {
    EXPECT_THAT(d.err, Not(HasSubstr("signed")));
    // Asked to verify what is not signed: refused, nothing written.
    CommandResult dv = Ctl({"decrypt", "--verify", "--ca", PeerCa(), "--in", tmp.File("enc"), "--out",
                            tmp.File("dec-unsigned")});
    EXPECT_EQ(dv.exit_code, 1);
    EXPECT_THAT(dv.err, HasSubstr("the decrypted message is not signed"));
    EXPECT_FALSE(Exists(tmp.File("dec-unsigned")));
    return;
  }
  EXPECT_THAT(d.err, HasSubstr("the decrypted message is signed; check it with --verify --ca FILE"));
  // Decrypt, then verify: by hand and in one go.
  CommandResult v = Ctl({"verify", "--ca", PeerCa(), "--in", tmp.File("dec"), "--out", tmp.File("verified")});
  ASSERT_EQ(v.exit_code, 0) << v.err;
  EXPECT_THAT(v.err, HasSubstr(absl::StrCat("good signature from emailAddress=", c.signer, "@example.org")));
  EXPECT_EQ(ReadFile(tmp.File("verified")), Message());
  CommandResult dv = Ctl({"decrypt", "--verify", "--ca", PeerCa(), "--in", tmp.File("enc"), "--out",
                          tmp.File("dec-verified")});
  ASSERT_EQ(dv.exit_code, 0) << dv.err;
  EXPECT_EQ(ReadFile(tmp.File("dec-verified")), Message());
  // The wrong CA: decrypted, but not trusted.
  CommandResult wrong = Ctl({"decrypt", "--verify", "--ca", TestCa(), "--in", tmp.File("enc"), "--out",
                             tmp.File("dec-wrong")});
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_THAT(wrong.err, HasSubstr("the signer's certificate chain does not verify: unable to get local issuer certificate"));
  EXPECT_FALSE(Exists(tmp.File("dec-wrong")));
}

INSTANTIATE_TEST_SUITE_P(
    Messages, OpensslToAgentTest,
    ::testing::Values(
        OpensslEncryptCase{"Aes128", "-aes128", {"alice"}, {}, "SMIME", "alice", ""},
        OpensslEncryptCase{"Aes256Der", "-aes256", {"alice"}, {}, "DER", "alice", ""},
        OpensslEncryptCase{"Aes256GcmPem", "-aes-256-gcm", {"alice"}, {}, "PEM", "alice", ""},
        OpensslEncryptCase{"OaepSha256",
                           "-aes256",
                           {"alice"},
                           {"-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"},
                           "SMIME",
                           "alice",
                           ""},
        OpensslEncryptCase{"OaepSha1ToCertificateUnderOtherId", "-aes256", {"erin"},
                           {"-keyopt", "rsa_padding_mode:oaep"}, "SMIME", "erin", ""},
        OpensslEncryptCase{"SeveralRecipientsOneOnTheToken", "-aes256", {"frank", "grace", "erin"}, {}, "SMIME",
                           "erin", ""},
        OpensslEncryptCase{"EcRecipientEcdh", "-aes256", {"bob"}, {}, "SMIME", "bob", ""},
        OpensslEncryptCase{"EcRecipientGcm", "-aes-256-gcm", {"grace", "bob"}, {}, "DER", "bob", ""},
        OpensslEncryptCase{"SignThenEncrypt", "-aes256", {"alice"}, {}, "SMIME", "alice", "frank"},
        OpensslEncryptCase{"EcdsaSignThenEncryptGcm", "-aes-256-gcm", {"bob"}, {}, "SMIME", "bob", "grace"}),
    [](const auto& p) { return p.param.name; });

// ---------------------------------------------------------------------------
// Regressions: each of these was a bug once (found by these tests).

// With --sign-with, the sender's certificate is added as a recipient unless
// it is already one of --to: one RecipientInfo per key, not two.
TEST_F(SmimeTest, SenderWhoIsAlsoARecipientGetsOneRecipientInfo) {
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), Message());
  CommandResult e = Ctl({"encrypt", "--to", Cert("alice"), "--to", Cert("frank"), "--sign-with", "alice", "--in",
                         tmp.File("msg.eml"), "--out", tmp.File("enc.eml")});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_EQ(Count(CmsPrint(tmp.File("enc.eml")), "d.issuerAndSerialNumber:"), 2u)
      << "alice is listed twice among the RecipientInfos";
}

}  // namespace
}  // namespace smime::integration
