// The S/MIME verbs end to end: the real smime-agent over a real SoftHSM token
// (keys made by openssl and pkcs11-tool), driven by the real smimectl, and
// every result checked by a peer implementation rather than by project code:
// `openssl cms` (with the peers' key files, or with the token's RSA keys
// through OpenSSL's pkcs11-provider), gpgsm in a throwaway GNUPGHOME, and
// OpenSSL's CMS library for the one message no command line can make (an old
// signingTime). Messages the peers make go the other way, through the agent.
// Every positive check is paired with a tampered or wrong input that must be
// refused, so each test can fail.
//
// Keys: the token (softhsm-config/make-token.sh) holds alice (RSA), bob
// (P-256), erin (RSA, certificate under another CKA_ID) with certificates
// from the token's test CA, and carol/dave without certificates. The
// software correspondents frank (RSA), grace (P-256) and henry (RSA, expired)
// come from make-smime-peers.sh with key files, under their own "Peer CA".
#include <gtest/gtest.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "tests/testing/gpgsm.h"
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

constexpr char kTokenLabel[] = "smime";

// The message every test sends: header fields that stay outside, and the
// MIME entity that is signed or encrypted.
constexpr char kOuterHeaders[] =
    "From: Alice <alice@example.com>\r\n"
    "To: Frank <frank@example.org>\r\n"
    "Subject: Quarterly numbers\r\n"
    "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    "Message-ID: <q1-numbers@example.com>\r\n";
constexpr char kEntity[] =
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Numbers are up.\r\n"
    "Gr\xc3\xbc\xc3\x9f" "e, Alice\r\n";
// A line of kEntity's body: flipping one of its bytes tampers the content.
constexpr char kBodyLine[] = "Numbers are up.";

std::string Message() { return absl::StrCat(kOuterHeaders, "MIME-Version: 1.0\r\n", kEntity); }
std::string ToLf(const std::string& s) { return absl::StrReplaceAll(s, {{"\r\n", "\n"}}); }

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The header block of a message (up to the first empty line).
std::string HeaderBlock(const std::string& msg) { return msg.substr(0, msg.find("\r\n\r\n") + 2); }

// The first body part of a multipart message, exactly as signed: between
// "--boundary CRLF" and "CRLF --boundary" (RFC 2046).
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

// Flips the lowest bit of the last byte of the first `needle` in `data`.
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

// Asserts what every failed smimectl verb must look like: the exit code, one
// line "smimectl: ..." naming the problem, and no --out file.
void ExpectCleanFailure(const CommandResult& r, int exit_code, const std::string& message, const std::string& out) {
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  EXPECT_THAT(r.err, StartsWith("smimectl: "));
  EXPECT_EQ(Count(r.err, "\n"), 1u) << "not one line: " << r.err;
  EXPECT_THAT(r.err, HasSubstr(message));
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_FALSE(Exists(out)) << out << " was written";
}

// The token, the software peers and the agent, made once for the binary.
class SmimeEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    token_ = std::make_unique<testing::TestToken>(testing::MakeToken(kTokenLabel, true));
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
    auto agent = testing::AgentProcess::Start(
        {"--module", testing::kSoftHsmModule, "--token", kTokenLabel, "--pin-file", token_->pin_file}, token_->conf);
    ASSERT_THAT(agent.status(), IsOk());
    agent_ = std::move(*agent);
  }
  void TearDown() override {
    agent_.reset();
    peers_.reset();
    token_.reset();
  }

  std::unique_ptr<testing::TestToken> token_;
  std::unique_ptr<TempDir> peers_;
  std::unique_ptr<testing::AgentProcess> agent_;
};

SmimeEnvironment* const g_env =
    static_cast<SmimeEnvironment*>(::testing::AddGlobalTestEnvironment(new SmimeEnvironment));

// Who can open a message, and how the test checks it.
enum class Opener {
  kKeyFile,      // openssl cms -decrypt -inkey <the peer's key file>
  kOpensslToken, // openssl cms -decrypt with the token key via pkcs11-provider (RSA)
  kAgent,        // smimectl decrypt --key NAME (where no peer tool can use the key)
};

class SmimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(g_env->agent_ != nullptr && g_env->agent_->Running())
        << (g_env->agent_ ? g_env->agent_->Log() : "no agent");
  }
  void TearDown() override {
    // Whatever the test sent, the agent still serves.
    ASSERT_TRUE(g_env->agent_ != nullptr);
    EXPECT_TRUE(g_env->agent_->Running()) << g_env->agent_->Log();
    auto c = client::AgentClient::Connect(g_env->agent_->socket());
    ASSERT_THAT(c.status(), IsOk());
    EXPECT_THAT((*c)->ListKeys().status(), IsOk());
  }

 public:
  // Helpers, also for the error table's input makers.
  // smimectl against the suite's agent, or `agent` when given.
  static CommandResult Ctl(std::vector<std::string> args, const testing::AgentProcess* agent = nullptr) {
    return (agent != nullptr ? *agent : *g_env->agent_).Smimectl(std::move(args));
  }
  static CommandResult Openssl(std::vector<std::string> args) { return testing::Openssl(std::move(args)); }
  // openssl with the token's private keys (pkcs11-provider).
  static CommandResult OpensslWithToken(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    return RunCommand(args, testing::WithEnv({{"OPENSSL_CONF", g_env->peers_->File("pkcs11.cnf")},
                                              {"SOFTHSM2_CONF", g_env->token_->conf}}));
  }
  // The PIN comes from the token's pin file, not the command line.
  static std::string TokenKeyUri(const std::string& name) {
    return absl::StrCat("pkcs11:token=", kTokenLabel, ";object=", name,
                        ";type=private?pin-source=file:", g_env->token_->pin_file);
  }

  static std::string TestCa() { return g_env->token_->Path("ca.pem"); }
  static std::string PeerCa() { return g_env->peers_->File("peer-ca.pem"); }
  static bool OnToken(const std::string& name) { return name == "alice" || name == "bob" || name == "erin"; }
  // Certificate file of a token key or a software peer.
  static std::string Cert(const std::string& name) {
    return OnToken(name) ? g_env->token_->Path("certs/" + name + ".pem") : g_env->peers_->File(name + ".pem");
  }
  static std::string KeyFile(const std::string& name) { return g_env->peers_->File(name + ".key"); }

  // `openssl cms -cmsout -print` of an S/MIME message.
  static std::string CmsPrint(const std::string& file, const std::string& inform = "SMIME") {
    CommandResult r = Openssl({"cms", "-cmsout", "-print", "-inform", inform, "-in", file});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }
  // The DER CMS inside an S/MIME message, as openssl reads it.
  static std::string ToDer(const std::string& smime_file, const std::string& der_file) {
    CommandResult r = Openssl({"cms", "-cmsout", "-in", smime_file, "-outform", "DER", "-out", der_file});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ReadFile(der_file);
  }

  // Opens `enc` as recipient `name` the way `how` says; returns the content
  // (empty with a test failure when it does not open).
  static std::string Open(const std::string& enc, const std::string& name, Opener how, const TempDir& tmp) {
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

  // A signature from alice through the agent.
  static std::string AgentSigned(const TempDir& tmp, const std::string& message, std::vector<std::string> flags = {}) {
    WriteFile(tmp.File("to-sign.eml"), message);
    std::vector<std::string> args = {"sign", "--key", "alice", "--in", tmp.File("to-sign.eml"), "--out",
                                     tmp.File("signed.eml")};
    args.insert(args.end(), flags.begin(), flags.end());
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return tmp.File("signed.eml");
  }
};

// ---------------------------------------------------------------------------
// 1. sign: the agent signs, openssl verifies.

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
// 2. gpgsm: a throwaway GNUPGHOME that trusts the test CA and the peer CA and
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
    CommandResult p12 = testing::GpgsmImportKey(gnupg_, g_env->peers_->File("frank.key"), Cert("frank"), PeerCa());
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
// 3. encrypt: the agent encrypts, each recipient opens with its own key.

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
  for (std::string outsider : {"erin", "alice", "bob"}) {
    if (is_recipient(outsider)) continue;
    std::string out = tmp.File("outsider-" + outsider);
    CommandResult no = Ctl({"decrypt", "--key", outsider, "--in", tmp.File("enc.eml"), "--out", out});
    ExpectCleanFailure(no, 1, "key \"" + outsider + "\" cannot open this message", out);
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
// 4. openssl encrypts, the agent finds the key itself and opens it.

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
// 5. Bad input and errors: exit code, one clear line, no --out, agent serves.

struct ErrorCase {
  std::string name;
  // Makes inputs in `tmp`; returns smimectl's arguments, writing to `out`.
  std::function<std::vector<std::string>(const TempDir& tmp, const std::string& out)> args;
  int exit_code;
  std::string message;
};
void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class SmimeErrorTest : public SmimeTest, public ::testing::WithParamInterface<ErrorCase> {};

TEST_P(SmimeErrorTest, FailsCleanlyAndWritesNothing) {
  const ErrorCase& c = GetParam();
  TempDir tmp;
  std::string out = tmp.File("out");
  std::vector<std::string> args = c.args(tmp, out);
  if (HasFatalFailure()) return;
  CommandResult r = Ctl(args);
  ExpectCleanFailure(r, c.exit_code, c.message, out);
}

// Some bytes that are no CMS in any form (the first is not 0x30).
std::string Garbage() {
  std::string g;
  uint32_t x = 0x9e3779b9;
  for (int i = 0; i < 3000; ++i) {
    x = x * 1664525 + 1013904223;
    g.push_back(static_cast<char>(x >> 24));
  }
  g[0] = '\x01';
  return g;
}

std::string EncryptWithOpenssl(const TempDir& tmp, const std::vector<std::string>& recipients,
                               const std::string& cipher = "-aes256", const std::string& outform = "DER") {
  WriteFile(tmp.File("plain.eml"), Message());
  std::vector<std::string> args = {"cms", "-encrypt", cipher, "-in", tmp.File("plain.eml"), "-outform", outform,
                                   "-out", tmp.File("enc")};
  for (const std::string& r : recipients) args.insert(args.end(), {"-recip", SmimeTest::Cert(r)});
  CommandResult e = SmimeTest::Openssl(args);
  EXPECT_EQ(e.exit_code, 0) << e.err;
  return tmp.File("enc");
}

// Offset of the content of the last primitive `what` (e.g. "cont [ 0 ]")
// in a DER file, as `openssl asn1parse` reports it.
size_t Asn1ContentOffset(const std::string& der_file, const std::string& what) {
  CommandResult p = RunCommand({"openssl", "asn1parse", "-inform", "DER", "-in", der_file});
  EXPECT_EQ(p.exit_code, 0) << p.err;
  size_t found = 0;
  for (absl::string_view line : absl::StrSplit(p.out, '\n')) {
    if (!absl::StrContains(line, "prim: " + what)) continue;
    unsigned long offset = 0, hl = 0;
    int depth = 0;
    if (std::sscanf(std::string(line).c_str(), " %lu:d=%d hl=%lu", &offset, &depth, &hl) == 3) found = offset + hl;
  }
  EXPECT_NE(found, 0u) << p.out;
  return found;
}

const ErrorCase kErrorCases[] = {
    {"DecryptGarbage",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("garbage"), Garbage());
       return {"decrypt", "--in", tmp.File("garbage"), "--out", out};
     },
     2, "the input is not an S/MIME message, DER CMS or PEM CMS"},
    {"VerifyGarbage",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("garbage"), Garbage());
       return {"verify", "--ca", SmimeTest::TestCa(), "--in", tmp.File("garbage"), "--out", out};
     },
     2, "the input is not an S/MIME message, DER CMS or PEM CMS"},
    {"DecryptEmptyInput",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("empty"), "");
       return {"decrypt", "--in", tmp.File("empty"), "--out", out};
     },
     2, "the input is empty"},
    {"DecryptTruncatedDer",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       std::string der = ReadFile(EncryptWithOpenssl(tmp, {"alice"}));
       WriteFile(tmp.File("truncated.der"), der.substr(0, der.size() / 2));
       return {"decrypt", "--in", tmp.File("truncated.der"), "--out", out};
     },
     2, "the input is not an S/MIME message, DER CMS or PEM CMS"},
    {"DecryptTruncatedSmime",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       std::string msg = ReadFile(EncryptWithOpenssl(tmp, {"alice"}, "-aes256", "SMIME"));
       WriteFile(tmp.File("truncated.eml"), msg.substr(0, msg.size() * 2 / 3));
       return {"decrypt", "--in", tmp.File("truncated.eml"), "--out", out};
     },
     2, "the input is not an S/MIME message, DER CMS or PEM CMS"},
    {"VerifyTruncatedOpaque",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       std::string msg = ReadFile(SmimeTest::AgentSigned(tmp, Message(), {"--opaque"}));
       WriteFile(tmp.File("truncated.eml"), msg.substr(0, msg.size() / 2));
       return {"verify", "--ca", SmimeTest::TestCa(), "--in", tmp.File("truncated.eml"), "--out", out};
     },
     2, "the input is not an S/MIME message, DER CMS or PEM CMS"},
    // Neither RecipientInfo names a token key: the error says whom it is for.
    {"DecryptForOthersListsRecipients",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"decrypt", "--in", EncryptWithOpenssl(tmp, {"frank", "grace"}), "--out", out};
     },
     1,
     "smimectl: no key on the token can open this message; it was encrypted for: "
     "issuer \"CN=Peer CA\" serial 1001; issuer \"CN=Peer CA\" serial 1002\n"},
    {"DecryptWithAKeyThatIsNoRecipient",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"decrypt", "--key", "bob", "--in", EncryptWithOpenssl(tmp, {"alice"}), "--out", out};
     },
     1, "key \"bob\" cannot open this message; it was encrypted for: issuer \"O=smime-agent tests,CN=smime-agent Test CA\""},
    {"DecryptASignedMessage",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"decrypt", "--in", SmimeTest::AgentSigned(tmp, Message()), "--out", out};
     },
     2, "the input is not an encrypted message"},
    {"VerifyAnEncryptedMessage",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"verify", "--ca", SmimeTest::TestCa(), "--in", EncryptWithOpenssl(tmp, {"alice"}), "--out", out};
     },
     2, "the input is not a signed message"},
    {"VerifyWithTheWrongCa",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"verify", "--ca", SmimeTest::PeerCa(), "--in", SmimeTest::AgentSigned(tmp, Message()), "--out", out};
     },
     2, "the signer's certificate chain does not verify: unable to get local issuer certificate"},
    {"VerifyDetachedWithoutContent",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("content"), kEntity);
       CommandResult s = RunCommand({"openssl", "cms", "-sign", "-signer", SmimeTest::Cert("frank"), "-inkey",
                                     SmimeTest::KeyFile("frank"), "-in", tmp.File("content"), "-outform", "DER",
                                     "-out", tmp.File("sig.p7s")});
       EXPECT_EQ(s.exit_code, 0) << s.err;
       return {"verify", "--ca", SmimeTest::PeerCa(), "--in", tmp.File("sig.p7s"), "--out", out};
     },
     2, "the signature is detached; give the signed content too"},
    {"SignWithUnknownKey",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), Message());
       return {"sign", "--key", "nobody@example.com", "--in", tmp.File("msg.eml"), "--out", out};
     },
     1, "smimectl: no key matches \"nobody@example.com\"\n"},
    {"SignWithKeyWithoutCertificate",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), Message());
       return {"sign", "--key", "carol", "--in", tmp.File("msg.eml"), "--out", out};
     },
     1, "smimectl: key \"carol\" has no certificate; S/MIME signing needs one (import it first)\n"},
    {"SignPssWithEcKey",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), Message());
       return {"sign", "--key", "bob", "--pss", "--in", tmp.File("msg.eml"), "--out", out};
     },
     2, "smimectl: RSA-PSS needs an RSA key; \"bob\" is p256\n"},
    {"SignHeaderWithoutBody",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), "Subject: no body\r\nFrom: alice@example.com\r\n");
       return {"sign", "--key", "alice", "--in", tmp.File("msg.eml"), "--out", out};
     },
     2, "the message has no blank line between header and body"},
    {"SignThenEncryptWithKeyWithoutCertificate",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), Message());
       return {"encrypt", "--to", SmimeTest::Cert("frank"), "--sign-with", "dave", "--in", tmp.File("msg.eml"),
               "--out", out};
     },
     1, "key \"dave\" has no certificate"},
    {"EncryptToExpiredCertificate",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), Message());
       return {"encrypt", "--to", SmimeTest::Cert("henry"), "--in", tmp.File("msg.eml"), "--out", out};
     },
     1, "recipient certificate \"emailAddress=henry@example.org,CN=Henry\" expired on 2020-12-31T23:59:59Z"},
    {"EncryptToNoCertificate",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), Message());
       return {"encrypt", "--to", SmimeTest::KeyFile("frank"), "--in", tmp.File("msg.eml"), "--out", out};
     },
     2, "recipient certificate: no certificate found"},
    {"EncryptUnknownCipher",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("msg.eml"), Message());
       return {"encrypt", "--to", SmimeTest::Cert("frank"), "--cipher", "des", "--in", tmp.File("msg.eml"), "--out",
               out};
     },
     2, "smimectl: unknown --cipher \"des\"\n"},
    {"VerifyUnparsableAt",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"verify", "--ca", SmimeTest::TestCa(), "--at", "yesterday", "--in",
               SmimeTest::AgentSigned(tmp, Message()), "--out", out};
     },
     2, "smimectl: --at \"yesterday\" is neither RFC 3339 nor Unix seconds\n"},
    // smimectl refuses before sending: 64 MiB is the stream's limit.
    {"InputOverSmimectlLimit",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       WriteFile(tmp.File("huge.eml"), absl::StrCat("Subject: huge\r\n\r\n", std::string((64 << 20) + 1, 'x')));
       return {"sign", "--key", "alice", "--in", tmp.File("huge.eml"), "--out", out};
     },
     2, "huge.eml is larger than 64 MiB, the largest message the agent signs or encrypts"},
};

INSTANTIATE_TEST_SUITE_P(Inputs, SmimeErrorTest, ::testing::ValuesIn(kErrorCases),
                         [](const auto& p) { return p.param.name; });

std::string FlipAt(std::string data, size_t offset) {
  data.at(offset) ^= 0x01;
  return data;
}

// AES-GCM: one flipped bit of the ciphertext or of the tag, and the message
// does not open (and nothing of it comes out).
struct GcmTamperCase {
  std::string name;
  bool tag;  // flip in the MAC instead of the ciphertext
};
void PrintTo(const GcmTamperCase& c, std::ostream* os) { *os << c.name; }

class GcmTamperTest : public SmimeTest, public ::testing::WithParamInterface<GcmTamperCase> {};

TEST_P(GcmTamperTest, DecryptionFailsCleanly) {
  TempDir tmp;
  std::string enc = EncryptWithOpenssl(tmp, {"alice"}, "-aes-256-gcm", "DER");
  // The untouched message opens.
  CommandResult ok = Ctl({"decrypt", "--in", enc, "--out", tmp.File("ok")});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  ASSERT_EQ(ReadFile(tmp.File("ok")), Message());
  std::string der = ReadFile(enc);
  // AuthEnvelopedData ends with the 16-byte MAC; the ciphertext is the
  // [0] IMPLICIT encryptedContent before it.
  size_t offset = GetParam().tag ? der.size() - 5 : Asn1ContentOffset(enc, "cont [ 0 ]") + 7;
  WriteFile(tmp.File("tampered.der"), FlipAt(der, offset));
  CommandResult r = Ctl({"decrypt", "--in", tmp.File("tampered.der"), "--out", tmp.File("out")});
  ExpectCleanFailure(r, 2, "smimectl: decryption failed\n", tmp.File("out"));
  // openssl agrees it is broken (with the token key through pkcs11-provider).
  CommandResult o = OpensslWithToken({"cms", "-decrypt", "-inform", "DER", "-in", tmp.File("tampered.der"), "-recip",
                                      Cert("alice"), "-inkey", TokenKeyUri("alice"), "-out", tmp.File("o")});
  EXPECT_NE(o.exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(Where, GcmTamperTest,
                         ::testing::Values(GcmTamperCase{"Ciphertext", false}, GcmTamperCase{"Tag", true}),
                         [](const auto& p) { return p.param.name; });

// A message over --max-message-bytes: the stream is refused, the
// agent serves on.
TEST_F(SmimeTest, MessageOverAgentRequestLimitIsRefused) {
  TempDir tmp;
  auto small = testing::AgentProcess::Start({"--module", testing::kSoftHsmModule, "--token", kTokenLabel, "--pin-file",
                                             g_env->token_->pin_file, "--max-message-bytes", "1048576"},
                                            g_env->token_->conf);
  ASSERT_THAT(small.status(), IsOk());
  WriteFile(tmp.File("big.eml"), absl::StrCat("Subject: big\r\n\r\n", std::string(1536 << 10, 'x')));
  CommandResult r = Ctl({"sign", "--key", "alice", "--in", tmp.File("big.eml"), "--out", tmp.File("out")},
                        small->get());
  ExpectCleanFailure(r, 1, "larger than", tmp.File("out"));
  WriteFile(tmp.File("small.eml"), Message());
  CommandResult s = Ctl({"sign", "--key", "alice", "--in", tmp.File("small.eml"), "--out", tmp.File("ok")},
                        small->get());
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_TRUE((*small)->Running());
}

// ---------------------------------------------------------------------------
// 6. verify options.

// `openssl x509 -<field>` of a certificate as Unix seconds.
int64_t CertTime(const std::string& cert, const std::string& field) {
  CommandResult r = RunCommand({"openssl", "x509", "-in", cert, "-noout", "-" + field, "-dateopt", "iso_8601"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string value(absl::StripAsciiWhitespace(r.out.substr(r.out.find('=') + 1)));
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime("%Y-%m-%d %H:%M:%SZ", value, &t, &err)) << value << ": " << err;
  return absl::ToUnixSeconds(t);
}

std::string Rfc3339(int64_t s) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(s), absl::UTCTimeZone());
}

TEST_F(SmimeTest, VerifyAtBeforeCertificateValidityFailsAndNowPasses) {
  TempDir tmp;
  std::string signed_file = AgentSigned(tmp, Message());
  int64_t not_before = CertTime(Cert("alice"), "startdate");
  struct At {
    std::string at;
    bool ok;
  };
  for (const At& a : std::vector<At>{{std::to_string(not_before - 86400), false},
                                     {Rfc3339(not_before - 1), false},
                                     {Rfc3339(not_before + 60), true},
                                     {std::to_string(absl::ToUnixSeconds(absl::Now())), true}}) {
    SCOPED_TRACE(a.at);
    std::string out = tmp.File("out-" + a.at);
    CommandResult r = Ctl({"verify", "--ca", TestCa(), "--at", a.at, "--in", signed_file, "--out", out});
    if (a.ok) {
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(ReadFile(out), kEntity);
    } else {
      ExpectCleanFailure(r, 2, "the signer's certificate chain does not verify: certificate is not yet valid", out);
    }
  }
  // openssl, asked the same, agrees.
  EXPECT_NE(Openssl({"cms", "-verify", "-CAfile", TestCa(), "-attime", std::to_string(not_before - 86400), "-in",
                     signed_file, "-out", tmp.File("o1")})
                .exit_code,
            0);
  EXPECT_EQ(Openssl({"cms", "-verify", "-CAfile", TestCa(), "-attime", std::to_string(not_before + 60), "-in",
                     signed_file, "-out", tmp.File("o2")})
                .exit_code,
            0);
}

TEST_F(SmimeTest, VerifyAtSigningTimeUsesTheAgentsSigningTime) {
  TempDir tmp;
  int64_t before = absl::ToUnixSeconds(absl::Now());
  std::string signed_file = AgentSigned(tmp, Message());
  int64_t after = absl::ToUnixSeconds(absl::Now());
  CommandResult r = Ctl({"verify", "--ca", TestCa(), "--at-signing-time", "--in", signed_file, "--out", tmp.File("o")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(tmp.File("o")), kEntity);
  size_t at = r.err.find(", signed ");
  ASSERT_NE(at, std::string::npos) << r.err;
  absl::Time t;
  std::string err;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%SZ", r.err.substr(at + 9, 20), &t, &err)) << r.err;
  EXPECT_GE(absl::ToUnixSeconds(t), before - 1);
  EXPECT_LE(absl::ToUnixSeconds(t), after + 1);
}

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
template <typename T, void (*F)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, F>>;

// A multipart/signed message made with OpenSSL's CMS library, with the
// signingTime attribute set to `when` (no command line sets it).
std::string OpensslSignAt(const std::string& cert_file, const std::string& key_file, const std::string& entity,
                          absl::Time when) {
  Owned<BIO, BIO_free_all> cb(BIO_new_file(cert_file.c_str(), "r"));
  Owned<X509, X509_free> cert(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  Owned<BIO, BIO_free_all> kb(BIO_new_file(key_file.c_str(), "r"));
  Owned<EVP_PKEY, EVP_PKEY_free> key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  if (!cert || !key) {
    ADD_FAILURE() << "cannot read " << cert_file << " / " << key_file;
    return "";
  }
  const unsigned int flags = CMS_DETACHED | CMS_PARTIAL | CMS_BINARY;
  Owned<CMS_ContentInfo, CMS_ContentInfo_free> cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, flags));
  CMS_SignerInfo* si = CMS_add1_signer(cms.get(), cert.get(), key.get(), EVP_sha256(), flags);
  Owned<ASN1_TIME, ASN1_TIME_free> t(ASN1_TIME_set(nullptr, absl::ToTimeT(when)));
  if (si == nullptr || !t ||
      CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, ASN1_STRING_type(t.get()), t.get(), -1) != 1) {
    ADD_FAILURE() << "cannot add the signer with a signingTime: " << ERR_error_string(ERR_get_error(), nullptr);
    return "";
  }
  Owned<BIO, BIO_free_all> in(BIO_new_mem_buf(entity.data(), static_cast<int>(entity.size())));
  if (CMS_final(cms.get(), in.get(), nullptr, flags) != 1) {
    ADD_FAILURE() << "CMS_final: " << ERR_error_string(ERR_get_error(), nullptr);
    return "";
  }
  Owned<BIO, BIO_free_all> again(BIO_new_mem_buf(entity.data(), static_cast<int>(entity.size())));
  Owned<BIO, BIO_free_all> out(BIO_new(BIO_s_mem()));
  // CMS_REUSE_DIGEST: write the signature made above instead of signing the
  // detached data a second time.
  if (SMIME_write_CMS(out.get(), cms.get(), again.get(), flags | CMS_REUSE_DIGEST) != 1) {
    ADD_FAILURE() << "SMIME_write_CMS: " << ERR_error_string(ERR_get_error(), nullptr);
    return "";
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// Old mail: henry's certificate expired at the end of 2020; a message he
// signed in June 2020 verifies as of its signingTime, not as of now.
TEST_F(SmimeTest, VerifyAtSigningTimeAcceptsOldMailFromAnExpiredCertificate) {
  TempDir tmp;
  const absl::Time june = absl::FromCivil(absl::CivilSecond(2020, 6, 1, 12, 0, 0), absl::UTCTimeZone());
  std::string msg = OpensslSignAt(Cert("henry"), KeyFile("henry"), kEntity, june);
  ASSERT_FALSE(msg.empty());
  WriteFile(tmp.File("old.eml"), msg);
  EXPECT_THAT(CmsPrint(tmp.File("old.eml")), HasSubstr("UTCTIME:Jun  1 12:00:00 2020 GMT"));

  CommandResult now = Ctl({"verify", "--ca", PeerCa(), "--in", tmp.File("old.eml"), "--out", tmp.File("now")});
  ExpectCleanFailure(now, 2, "the signer's certificate chain does not verify: certificate has expired", tmp.File("now"));

  CommandResult then = Ctl({"verify", "--ca", PeerCa(), "--at-signing-time", "--in", tmp.File("old.eml"), "--out",
                            tmp.File("then")});
  ASSERT_EQ(then.exit_code, 0) << then.err;
  EXPECT_EQ(ReadFile(tmp.File("then")), kEntity);
  EXPECT_EQ(then.err,
            "smimectl: good signature from emailAddress=henry@example.org,CN=Henry <henry@example.org>, signed "
            "2020-06-01T12:00:00Z\n");

  CommandResult at = Ctl({"verify", "--ca", PeerCa(), "--at", "2020-06-01T12:00:00Z", "--in", tmp.File("old.eml"),
                          "--out", tmp.File("at")});
  EXPECT_EQ(at.exit_code, 0) << at.err;
  // A signingTime outside the certificate's life does not help: tamper
  // nothing, but ask for a time after expiry.
  CommandResult late = Ctl({"verify", "--ca", PeerCa(), "--at", "2021-06-01T00:00:00Z", "--in", tmp.File("old.eml"),
                            "--out", tmp.File("late")});
  ExpectCleanFailure(late, 2, "the signer's certificate chain does not verify: certificate has expired", tmp.File("late"));
  // openssl agrees on both instants.
  EXPECT_EQ(Openssl({"cms", "-verify", "-CAfile", PeerCa(), "-attime", std::to_string(absl::ToUnixSeconds(june)),
                     "-in", tmp.File("old.eml"), "-out", tmp.File("o1")})
                .exit_code,
            0);
  EXPECT_NE(Openssl({"cms", "-verify", "-CAfile", PeerCa(), "-in", tmp.File("old.eml"), "-out", tmp.File("o2")})
                .exit_code,
            0);
}

TEST_F(SmimeTest, VerifyAtSigningTimeWithoutTheAttributeIsClear) {
  TempDir tmp;
  WriteFile(tmp.File("entity"), kEntity);
  CommandResult s = Openssl({"cms", "-sign", "-noattr", "-signer", Cert("frank"), "-inkey", KeyFile("frank"), "-in",
                             tmp.File("entity"), "-out", tmp.File("noattr.eml")});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  CommandResult r = Ctl({"verify", "--ca", PeerCa(), "--at-signing-time", "--in", tmp.File("noattr.eml"), "--out",
                         tmp.File("out")});
  ExpectCleanFailure(r, 2, "smimectl: the signature carries no signingTime attribute\n", tmp.File("out"));
  // Without the option the same message verifies (and names no time).
  CommandResult ok = Ctl({"verify", "--ca", PeerCa(), "--in", tmp.File("noattr.eml"), "--out", tmp.File("ok")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.err, "smimectl: good signature from emailAddress=frank@example.org,CN=Frank <frank@example.org>\n");
}

struct FromCase {
  std::string name;
  std::string from_field;  // the From line, or empty for none
  std::string warning;     // the address warned about, or empty
};
void PrintTo(const FromCase& c, std::ostream* os) { *os << c.name; }

class FromAddressTest : public SmimeTest, public ::testing::WithParamInterface<FromCase> {};

TEST_P(FromAddressTest, WarnsWhenTheSignerDoesNotOwnTheFromAddress) {
  const FromCase& c = GetParam();
  TempDir tmp;
  std::string msg = absl::StrCat(c.from_field, "Subject: from check\r\nMIME-Version: 1.0\r\n", kEntity);
  std::string signed_file = AgentSigned(tmp, msg);
  CommandResult r = Ctl({"verify", "--ca", TestCa(), "--in", signed_file, "--out", tmp.File("out")});
  ASSERT_EQ(r.exit_code, 0) << r.err;  // the signature holds either way
  EXPECT_EQ(ReadFile(tmp.File("out")), kEntity);
  EXPECT_THAT(r.err, StartsWith("smimectl: good signature from emailAddress=alice@example.com,CN=Alice"));
  const std::string warning = "smimectl: warning: the signer's certificate does not name the From address ";
  if (c.warning.empty()) {
    EXPECT_THAT(r.err, Not(HasSubstr("warning")));
  } else {
    EXPECT_THAT(r.err, HasSubstr(warning + c.warning + "\n"));
  }
  EXPECT_THAT(r.out, Not(HasSubstr("warning")));
}

INSTANTIATE_TEST_SUITE_P(
    Froms, FromAddressTest,
    ::testing::Values(FromCase{"Mismatch", "From: Mallory <mallory@example.com>\r\n", "mallory@example.com"},
                      FromCase{"BareMismatch", "From: bob@example.com\r\n", "bob@example.com"},
                      FromCase{"MatchIgnoresCaseAndName", "From: \"Alice A.\" <ALICE@Example.COM>\r\n", ""},
                      FromCase{"NoFrom", "", ""}),
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
  auto c = client::AgentClient::Connect(g_env->agent_->socket());
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

// --max-message-bytes bounds the whole S/MIME stream, not one gRPC message:
// an agent started with a 2 MiB limit refuses to sign a 3 MiB message.
TEST_F(SmimeTest, MaxMessageBytesBoundsWholeMessages) {
  TempDir tmp;
  auto agent = testing::AgentProcess::Start({"--module", testing::kSoftHsmModule, "--token", kTokenLabel,
                                             "--pin-file", g_env->token_->pin_file, "--max-message-bytes", "2097152"},
                                            g_env->token_->conf);
  ASSERT_THAT(agent.status(), IsOk());
  WriteFile(tmp.File("big.eml"), absl::StrCat("Subject: big\r\n\r\n", std::string(3 << 20, 'x')));
  CommandResult r = Ctl({"sign", "--key", "alice", "--in", tmp.File("big.eml"), "--out", tmp.File("out")},
                        agent->get());
  ExpectCleanFailure(r, 1, "larger than the agent's limit of 2 MiB", tmp.File("out"));
  EXPECT_TRUE((*agent)->Running());
}

// A stream refused for its size is audited as RESOURCE_EXHAUSTED, for the
// caller who sent it: the caller is identified before the data is read.
TEST_F(SmimeTest, OversizedStreamIsAuditedAsResourceExhaustedForTheCaller) {
  TempDir tmp;
  auto agent = testing::AgentProcess::Start(
      {"--module", testing::kSoftHsmModule, "--token", kTokenLabel, "--pin-file", g_env->token_->pin_file,
       "--max-message-bytes", "1048576", "--audit-log", tmp.File("audit.log")},
      g_env->token_->conf);
  ASSERT_THAT(agent.status(), IsOk());
  // Over the 1 MiB message limit, and over the 2.5 MiB allowed for encoded
  // (signed or encrypted) input.
  WriteFile(tmp.File("big.eml"), absl::StrCat("Subject: big\r\n\r\n", std::string(3 << 20, 'x')));
  CommandResult s = Ctl({"sign", "--key", "alice", "--in", tmp.File("big.eml"), "--out", tmp.File("out")},
                        agent->get());
  EXPECT_EQ(s.exit_code, 1) << s.err;
  // A real enveloped message, so the agent reads on until the limit.
  CommandResult enc = RunCommand({"openssl", "cms", "-encrypt", "-aes256", "-in", tmp.File("big.eml"), "-out",
                                  tmp.File("big.p7m"), g_env->token_->Path("certs/alice.pem")});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  CommandResult d = Ctl({"decrypt", "--in", tmp.File("big.p7m"), "--out", tmp.File("out")}, agent->get());
  EXPECT_EQ(d.exit_code, 1) << d.err;
  (*agent)->Stop();
  std::string audit = ReadFile(tmp.File("audit.log"));
  for (const char* op : {"op=smime_sign", "op=smime_decrypt"}) {
    bool found = false;
    for (absl::string_view line : absl::StrSplit(audit, '\n')) {
      if (!absl::StrContains(line, op)) continue;
      found = true;
      EXPECT_THAT(std::string(line), HasSubstr("result=RESOURCE_EXHAUSTED"));
      EXPECT_THAT(std::string(line), HasSubstr(absl::StrCat("peer_uid=", ::getuid(), " ")));
    }
    EXPECT_TRUE(found) << op << " not audited:\n" << audit;
  }
}

// A chain failure names its reason (unknown issuer, not yet valid,
// expired) as `openssl cms -verify` does, so a user can tell a wrong --ca
// from an expired certificate.
struct VerifyReasonCase {
  std::string name;
  std::string reason;  // X509_verify_cert_error_string
};
void PrintTo(const VerifyReasonCase& c, std::ostream* os) { *os << c.name; }

class VerifyFailureReasonTest : public SmimeTest, public ::testing::WithParamInterface<VerifyReasonCase> {};

TEST_P(VerifyFailureReasonTest, SmimectlNamesTheCertificateProblem) {
  const VerifyReasonCase& c = GetParam();
  TempDir tmp;
  std::string file, ca = TestCa();
  std::vector<std::string> at;
  if (c.name == "UnknownIssuer") {
    file = AgentSigned(tmp, Message());
    ca = PeerCa();
  } else if (c.name == "NotYetValid") {
    file = AgentSigned(tmp, Message());
    at = {"-attime", std::to_string(CertTime(Cert("alice"), "startdate") - 86400)};
  } else {
    WriteFile(tmp.File("old.eml"), OpensslSignAt(Cert("henry"), KeyFile("henry"), kEntity,
                                                 absl::FromCivil(absl::CivilSecond(2020, 6, 1), absl::UTCTimeZone())));
    file = tmp.File("old.eml");
    ca = PeerCa();
  }
  std::vector<std::string> o = {"cms", "-verify", "-CAfile", ca, "-in", file, "-out", tmp.File("o")};
  o.insert(o.end(), at.begin(), at.end());
  CommandResult ossl = Openssl(o);
  ASSERT_NE(ossl.exit_code, 0);
  ASSERT_THAT(ossl.err, HasSubstr("Verify error: " + c.reason));  // what openssl says
  std::vector<std::string> args = {"verify", "--ca", ca, "--in", file, "--out", tmp.File("out")};
  if (!at.empty()) args.insert(args.end(), {"--at", at[1]});
  CommandResult r = Ctl(args);
  ExpectCleanFailure(r, 2, "the signer's certificate chain does not verify: " + c.reason, tmp.File("out"));
}

INSTANTIATE_TEST_SUITE_P(Reasons, VerifyFailureReasonTest,
                         ::testing::Values(VerifyReasonCase{"UnknownIssuer", "unable to get local issuer certificate"},
                                           VerifyReasonCase{"NotYetValid", "certificate is not yet valid"},
                                           VerifyReasonCase{"Expired", "certificate has expired"}),
                         [](const auto& p) { return p.param.name; });

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
}  // namespace smime
