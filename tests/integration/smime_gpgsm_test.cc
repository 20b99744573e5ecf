// S/MIME with gpgsm as the peer, in a throwaway GNUPGHOME: gpgsm verifies
// and opens what the agent signs and encrypts, and the agent verifies and
// opens what gpgsm makes.
#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/client.h"
#include "tests/integration/smime_fixture.h"
#include "tests/testing/gpgsm.h"

namespace smime::integration {
namespace {

// ---------------------------------------------------------------------------
// gpgsm: a throwaway GNUPGHOME that trusts the test CA and the peer CA and
// holds frank's key.

class GpgsmTest : public SmimeTest {
 protected:
  static void SetUpTestSuite() {
    home_ = new TempDir();
    gnupg_ = home_->File("gnupg");
    testing::MakeGnupgHome(gnupg_, absl::StrCat(Sha1Fingerprint(TestCa()), " S relax\n",
                                                Sha1Fingerprint(PeerCa()), " S relax\n"));
    CommandResult imp = Gpgsm({"--import", TestCa(), PeerCa(), Cert("alice"), Cert("bob"), Cert("erin")});
    ASSERT_EQ(imp.exit_code, 0) << imp.err;
    CommandResult p12 = testing::GpgsmImportKey(gnupg_, Peers().File("frank.key"), Cert("frank"), PeerCa());
    ASSERT_EQ(p12.exit_code, 0) << p12.err;
    ASSERT_THAT(p12.err, HasSubstr("secret keys imported: 1"));
  }
  static void TearDownTestSuite() {
    RunCommand({"gpgconf", "--homedir", gnupg_, "--kill", "all"});
    delete home_;
    home_ = nullptr;
  }

  // gpgsm in batch mode; `passphrase` (for frank's key) goes in on stdin.
  static CommandResult Gpgsm(std::vector<std::string> args, const std::string& passphrase = "") {
    std::vector<std::string> argv = {"gpgsm", "--batch", "--yes", "--status-fd", "2", "--pinentry-mode", "loopback"};
    if (!passphrase.empty()) argv.insert(argv.end(), {"--passphrase-fd", "0"});
    argv.insert(argv.end(), args.begin(), args.end());
    testing::RunOptions o = testing::WithEnv({{"GNUPGHOME", gnupg_}});
    o.stdin_data = passphrase;
    return RunCommand(argv, o);
  }
  // As gpgsm names certificates (VALIDSIG) and trustlist.txt takes them.
  static std::string Sha1Fingerprint(const std::string& cert) {
    CommandResult fp = Openssl({"x509", "-in", cert, "-noout", "-fingerprint", "-sha1"});
    EXPECT_EQ(fp.exit_code, 0) << fp.err;
    return absl::StrReplaceAll(absl::StripAsciiWhitespace(fp.out.substr(fp.out.find('=') + 1)), {{":", ""}});
  }

  static TempDir* home_;
  static std::string gnupg_;
};
TempDir* GpgsmTest::home_ = nullptr;
std::string GpgsmTest::gnupg_;

struct GpgsmVerifyCase {
  std::string name;
  std::string key;
  std::vector<std::string> flags;
};
void PrintTo(const GpgsmVerifyCase& c, std::ostream* os) { *os << c.name; }

class GpgsmVerifiesAgentSignature : public GpgsmTest, public ::testing::WithParamInterface<GpgsmVerifyCase> {};

TEST_P(GpgsmVerifiesAgentSignature, GoodAndTamperedIsBad) {
  const GpgsmVerifyCase& c = GetParam();
  const bool opaque = std::find(c.flags.begin(), c.flags.end(), "--opaque") != c.flags.end();
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), Message());
  std::vector<std::string> args = {"sign", "--key", c.key, "--in", tmp.File("msg.eml"), "--out", tmp.File("signed.eml")};
  args.insert(args.end(), c.flags.begin(), c.flags.end());
  ASSERT_EQ(Ctl(args).exit_code, 0);
  // gpgsm reads binary CMS: the DER, and for multipart/signed the signed
  // part as a separate file.
  std::string der = ToDer(tmp.File("signed.eml"), tmp.File("sig.der"));
  std::vector<std::string> verify = {"--verify", tmp.File("sig.der")};
  if (opaque) {
    verify.insert(verify.begin(), {"--output", tmp.File("content")});
  } else {
    WriteFile(tmp.File("content"), FirstBodyPart(ReadFile(tmp.File("signed.eml"))));
    verify.push_back(tmp.File("content"));
  }
  CommandResult v = Gpgsm(verify);
  EXPECT_EQ(v.exit_code, 0) << v.err;
  EXPECT_THAT(v.err, HasSubstr("[GNUPG:] GOODSIG"));
  EXPECT_THAT(v.err, HasSubstr("[GNUPG:] VALIDSIG " + Sha1Fingerprint(Cert(c.key))));
  EXPECT_EQ(ReadFile(tmp.File("content")), kEntity);

  if (opaque) {
    WriteFile(tmp.File("sig.der"), FlipIn(der, kBodyLine));
    verify = {"--output", tmp.File("content2"), "--verify", tmp.File("sig.der")};
  } else {
    WriteFile(tmp.File("content"), FlipIn(kEntity, kBodyLine));
  }
  CommandResult bad = Gpgsm(verify);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("[GNUPG:] BADSIG"));
  EXPECT_THAT(bad.err, Not(HasSubstr("[GNUPG:] GOODSIG")));
}

INSTANTIATE_TEST_SUITE_P(Keys, GpgsmVerifiesAgentSignature,
                         ::testing::Values(GpgsmVerifyCase{"RsaMultipart", "alice", {}},
                                           GpgsmVerifyCase{"RsaOpaque", "alice", {"--opaque"}},
                                           GpgsmVerifyCase{"RsaPss", "alice", {"--pss"}},
                                           GpgsmVerifyCase{"EcdsaMultipart", "bob", {}},
                                           GpgsmVerifyCase{"EcdsaOpaque", "bob", {"--opaque"}}),
                         [](const auto& p) { return p.param.name; });

// gpgsm 2.2 opens neither AuthEnvelopedData (AES-GCM) nor RSAES-OAEP, and
// cannot import an EC PKCS#12: those are checked with openssl below.
struct GpgsmDecryptCase {
  std::string name;
  std::vector<std::string> flags;
  bool is_signed = false;
};
void PrintTo(const GpgsmDecryptCase& c, std::ostream* os) { *os << c.name; }

class GpgsmDecryptsAgentMessage : public GpgsmTest, public ::testing::WithParamInterface<GpgsmDecryptCase> {};

TEST_P(GpgsmDecryptsAgentMessage, ContentMatches) {
  const GpgsmDecryptCase& c = GetParam();
  TempDir tmp;
  WriteFile(tmp.File("msg.eml"), Message());
  std::vector<std::string> args = {"encrypt", "--to", Cert("frank"), "--in", tmp.File("msg.eml"), "--out",
                                   tmp.File("enc.eml")};
  args.insert(args.end(), c.flags.begin(), c.flags.end());
  CommandResult e = Ctl(args);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  std::string der = ToDer(tmp.File("enc.eml"), tmp.File("enc.der"));
  CommandResult d = Gpgsm({"--output", tmp.File("dec"), "--decrypt", tmp.File("enc.der")}, "test\n");
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_THAT(d.err, HasSubstr("[GNUPG:] DECRYPTION_OKAY"));
  std::string content = ReadFile(tmp.File("dec"));
  if (c.is_signed) {
    EXPECT_THAT(content, StartsWith("Content-Type: multipart/signed;"));
    EXPECT_EQ(FirstBodyPart(content), kEntity);
  } else {
    EXPECT_EQ(content, kEntity);
  }
  // Not a message for a key gpgsm holds: the same message to alice only.
  ASSERT_EQ(Ctl({"encrypt", "--to", Cert("alice"), "--in", tmp.File("msg.eml"), "--out", tmp.File("alice.eml")})
                .exit_code,
            0);
  ToDer(tmp.File("alice.eml"), tmp.File("alice.der"));
  CommandResult other = Gpgsm({"--output", tmp.File("dec2"), "--decrypt", tmp.File("alice.der")}, "test\n");
  EXPECT_NE(other.exit_code, 0);
  EXPECT_THAT(other.err, Not(HasSubstr("DECRYPTION_OKAY")));
}

INSTANTIATE_TEST_SUITE_P(Ciphers, GpgsmDecryptsAgentMessage,
                         ::testing::Values(GpgsmDecryptCase{"Aes256CbcDefault", {}},
                                           GpgsmDecryptCase{"Aes128Cbc", {"--cipher", "aes128-cbc"}},
                                           GpgsmDecryptCase{"SignedByAliceThenEncrypted", {"--sign-with", "alice"}, true}),
                         [](const auto& p) { return p.param.name; });

struct GpgsmEncryptCase {
  std::string name;
  std::string recipient;
  std::string cipher_algo;
  bool armor = false;
};
void PrintTo(const GpgsmEncryptCase& c, std::ostream* os) { *os << c.name; }

class AgentDecryptsGpgsmMessage : public GpgsmTest, public ::testing::WithParamInterface<GpgsmEncryptCase> {};

TEST_P(AgentDecryptsGpgsmMessage, AgentFindsTheKey) {
  const GpgsmEncryptCase& c = GetParam();
  TempDir tmp;
  WriteFile(tmp.File("entity"), kEntity);
  std::vector<std::string> args = {"--cipher-algo", c.cipher_algo, "--recipient", c.recipient + "@example.com",
                                   "--output", tmp.File("enc"), "--encrypt", tmp.File("entity")};
  if (c.armor) args.insert(args.begin(), "--armor");
  CommandResult e = Gpgsm(args);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  CommandResult d = Ctl({"decrypt", "--in", tmp.File("enc"), "--out", tmp.File("dec")});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_THAT(d.err, HasSubstr(absl::StrCat(";object=", c.recipient, ";type=private")));
  EXPECT_EQ(ReadFile(tmp.File("dec")), kEntity);
}

INSTANTIATE_TEST_SUITE_P(Recipients, AgentDecryptsGpgsmMessage,
                         ::testing::Values(GpgsmEncryptCase{"AliceAes128", "alice", "AES"},
                                           GpgsmEncryptCase{"AliceAes256", "alice", "AES256"},
                                           GpgsmEncryptCase{"Alice3des", "alice", "3DES"},
                                           GpgsmEncryptCase{"AliceArmored", "alice", "AES256", true},
                                           GpgsmEncryptCase{"ErinPairedByPublicKey", "erin", "AES256"}),
                         [](const auto& p) { return p.param.name; });

struct GpgsmSignCase {
  std::string name;
  bool detached;
  std::string content;
};
void PrintTo(const GpgsmSignCase& c, std::ostream* os) { *os << c.name; }

class AgentVerifiesGpgsmSignature : public GpgsmTest, public ::testing::WithParamInterface<GpgsmSignCase> {};

TEST_P(AgentVerifiesGpgsmSignature, GoodAndTamperedIsRefused) {
  const GpgsmSignCase& c = GetParam();
  TempDir tmp;
  WriteFile(tmp.File("content"), c.content);
  CommandResult s = Gpgsm({"--local-user", "frank@example.org", "--output", tmp.File("sig.der"),
                           c.detached ? "--detach-sign" : "--sign", tmp.File("content")},
                          "test\n");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  auto args = [&](const std::string& out) {
    std::vector<std::string> a = {"verify", "--ca", PeerCa(), "--in", tmp.File("sig.der"), "--out", out};
    if (c.detached) a.insert(a.end(), {"--content", tmp.File("content")});
    return a;
  };
  CommandResult v = Ctl(args(tmp.File("out")));
  ASSERT_EQ(v.exit_code, 0) << v.err;
  EXPECT_THAT(v.err, HasSubstr("good signature from emailAddress=frank@example.org,CN=Frank <frank@example.org>"));
  EXPECT_EQ(ReadFile(tmp.File("out")), c.content);

  if (c.detached) {
    WriteFile(tmp.File("content"), FlipIn(c.content, "hello"));
  } else {
    WriteFile(tmp.File("sig.der"), FlipIn(ReadFile(tmp.File("sig.der")), "hello"));
  }
  CommandResult bad = Ctl(args(tmp.File("out.bad")));
  ExpectCleanFailure(bad, 2, "does not match the signature", tmp.File("out.bad"));
}

INSTANTIATE_TEST_SUITE_P(
    Forms, AgentVerifiesGpgsmSignature,
    ::testing::Values(GpgsmSignCase{"OpaqueCrlf", false, "Content-Type: text/plain\r\n\r\nhello gpgsm\r\n"},
                      GpgsmSignCase{"OpaqueLf", false, "Content-Type: text/plain\n\nhello gpgsm\n"},
                      GpgsmSignCase{"DetachedCrlf", true, "Content-Type: text/plain\r\n\r\nhello gpgsm\r\n"}),
    [](const auto& p) { return p.param.name; });

// ---------------------------------------------------------------------------
// Regressions: each of these was a bug once (found by these tests).

namespace v1 = ::smime::agent::v1;

class GpgsmDetachedTest : public GpgsmTest {};

// gpgsm signs the bytes of a file as they are (LF line ends); the agent
// first digests detached content canonicalised to CRLF, as S/MIME signs
// text, and falls back to the bytes as given (or --binary asks for them).
TEST_F(GpgsmDetachedTest, SmimectlVerifiesGpgsmDetachedSignatureOverLfText) {
  TempDir tmp;
  const std::string content = "Content-Type: text/plain\n\nhello gpgsm, LF only\n";
  WriteFile(tmp.File("content"), content);
  CommandResult s = Gpgsm({"--local-user", "frank@example.org", "--output", tmp.File("sig.der"), "--detach-sign",
                           tmp.File("content")},
                          "test\n");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  // The peers agree the signature is good over these exact bytes...
  CommandResult o = Openssl({"cms", "-verify", "-binary", "-inform", "DER", "-in", tmp.File("sig.der"), "-content",
                             tmp.File("content"), "-CAfile", PeerCa(), "-out", tmp.File("o")});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  // ...and so does the agent when asked for binary content over its API.
  auto c = client::AgentClient::Connect(Agent().socket());
  ASSERT_THAT(c.status(), IsOk());
  v1::VerifyOptions opts;
  opts.add_trust_anchors(ReadFile(PeerCa()));
  opts.set_binary(true);
  auto api = (*c)->VerifyMessage(opts, ReadFile(tmp.File("sig.der")), content);
  ASSERT_THAT(api.status(), IsOk());
  EXPECT_EQ(api->content, content);
  // smimectl cannot: without a flag it fails ("signature verification
  // failed: ... content verify error"), and it has no --binary.
  CommandResult binary = Ctl({"verify", "--binary", "--ca", PeerCa(), "--in", tmp.File("sig.der"), "--content",
                              tmp.File("content"), "--out", tmp.File("out2")});
  EXPECT_EQ(binary.exit_code, 0) << "smimectl verify --binary: " << binary.err;
  EXPECT_EQ(ReadFile(tmp.File("out2")), content);
}

}  // namespace
}  // namespace smime::integration
