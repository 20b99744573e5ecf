// S/MIME bad input and errors through smimectl and the agent: each fails
// with its exit code and one clear line, writes no --out file, and the agent
// serves on; tampered AES-GCM does not open; the size limits hold for whole
// streams and are audited.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/integration/smime_fixture.h"

namespace smime::integration {
namespace {

// ---------------------------------------------------------------------------
// Bad input and errors: exit code, one clear line, no --out, agent serves.

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
    // For hundreds of recipients the error names the first five and counts
    // the rest: listed in full it outgrew gRPC's metadata limit, and the
    // caller saw "received initial metadata size exceeds limit" instead.
    {"DecryptForManyOthersNamesTheFirstFew",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"decrypt", "--in", EncryptWithOpenssl(tmp, std::vector<std::string>(300, "frank")), "--out", out};
     },
     1,
     "smimectl: no key on the token can open this message; it was encrypted for: "
     "issuer \"CN=Peer CA\" serial 1001; issuer \"CN=Peer CA\" serial 1001; issuer \"CN=Peer CA\" serial 1001; "
     "issuer \"CN=Peer CA\" serial 1001; issuer \"CN=Peer CA\" serial 1001; and 295 more\n"},
    {"DecryptWithAKeyThatIsNoRecipient",
     [](const TempDir& tmp, const std::string& out) -> std::vector<std::string> {
       return {"decrypt", "--key", "bob", "--in", EncryptWithOpenssl(tmp, {"alice"}), "--out", out};
     },
     1, "key \"bob\" (id 02) cannot open this message; it was encrypted for: issuer \"O=smime-agent tests,CN=smime-agent Test CA\""},
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
     1, "smimectl: key \"carol\" (id 03) has no certificate; S/MIME signing needs one (import it first)\n"},
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
     1, "key \"dave\" (id 04) has no certificate"},
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
  auto small = StartAnotherAgent({"--max-message-bytes", "1048576"});
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
// Regressions: each of these was a bug once (found by these tests).

// --max-message-bytes bounds the whole S/MIME stream, not one gRPC message:
// an agent started with a 2 MiB limit refuses to sign a 3 MiB message.
TEST_F(SmimeTest, MaxMessageBytesBoundsWholeMessages) {
  TempDir tmp;
  auto agent = StartAnotherAgent({"--max-message-bytes", "2097152"});
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
  auto agent = StartAnotherAgent({"--max-message-bytes", "1048576", "--audit-log", tmp.File("audit.log")});
  ASSERT_THAT(agent.status(), IsOk());
  // Over the 1 MiB message limit, and over the 2.5 MiB allowed for encoded
  // (signed or encrypted) input.
  WriteFile(tmp.File("big.eml"), absl::StrCat("Subject: big\r\n\r\n", std::string(3 << 20, 'x')));
  CommandResult s = Ctl({"sign", "--key", "alice", "--in", tmp.File("big.eml"), "--out", tmp.File("out")},
                        agent->get());
  EXPECT_EQ(s.exit_code, 1) << s.err;
  // A real enveloped message, so the agent reads on until the limit.
  CommandResult enc = RunCommand({"openssl", "cms", "-encrypt", "-aes256", "-in", tmp.File("big.eml"), "-out",
                                  tmp.File("big.p7m"), Token().Path("certs/alice.pem")});
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

}  // namespace
}  // namespace smime::integration
