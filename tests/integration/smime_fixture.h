// What the S/MIME end-to-end tests (smime_*_test.cc, one binary) share: the
// token, the software peers and the agent, made once for the binary; the
// message every test sends; and the helpers that check results with peer
// tools rather than project code.
//
// Keys: the token (softhsm-config/make-token.sh) holds alice (RSA), bob
// (P-256), erin (RSA, certificate under another CKA_ID) with certificates
// from the token's test CA, and carol/dave without certificates. The
// software correspondents frank (RSA), grace (P-256) and henry (RSA, expired)
// come from make-smime-peers.sh with key files, under their own "Peer CA".
#ifndef SMIME_TESTS_INTEGRATION_SMIME_FIXTURE_H_
#define SMIME_TESTS_INTEGRATION_SMIME_FIXTURE_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/testing/agent_fixture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

// Not in an anonymous namespace: the fixture classes are one type in every
// file, as gtest wants of a test suite spread over files.
namespace smime::integration {

// The names every S/MIME test file uses.
using ::smime::testing::CommandResult;
using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::RunCommand;
using ::smime::testing::TempDir;
using ::smime::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

inline constexpr char kTokenLabel[] = "smime";

// The message every test sends: header fields that stay outside, and the
// MIME entity that is signed or encrypted.
inline constexpr char kOuterHeaders[] =
    "From: Alice <alice@example.com>\r\n"
    "To: Frank <frank@example.org>\r\n"
    "Subject: Quarterly numbers\r\n"
    "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    "Message-ID: <q1-numbers@example.com>\r\n";
inline constexpr char kEntity[] =
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Numbers are up.\r\n"
    "Gr\xc3\xbc\xc3\x9f" "e, Alice\r\n";
// A line of kEntity's body: flipping one of its bytes tampers the content.
inline constexpr char kBodyLine[] = "Numbers are up.";

std::string Message();
std::string ToLf(const std::string& s);
bool Exists(const std::string& path);
// The header block of a message (up to the first empty line).
std::string HeaderBlock(const std::string& msg);
// The first body part of a multipart message, exactly as signed: between
// "--boundary CRLF" and "CRLF --boundary" (RFC 2046).
std::string FirstBodyPart(const std::string& msg);
// Flips the lowest bit of the last byte of the first `needle` in `data`.
std::string FlipIn(std::string data, const std::string& needle);
size_t Count(const std::string& haystack, const std::string& needle);
// Asserts what every failed smimectl verb must look like: the exit code, one
// line "smimectl: ..." naming the problem, and no --out file.
void ExpectCleanFailure(const testing::CommandResult& r, int exit_code, const std::string& message,
                        const std::string& out);

// Who can open a message, and how the test checks it.
enum class Opener {
  kKeyFile,      // openssl cms -decrypt -inkey <the peer's key file>
  kOpensslToken, // openssl cms -decrypt with the token key via pkcs11-provider (RSA)
  kAgent,        // smimectl decrypt --key NAME (where no peer tool can use the key)
};

class SmimeTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

 public:
  // Helpers, also for the error table's input makers.
  // The binary's token, its agent, and the software peers' files.
  static const testing::TestToken& Token();
  static testing::AgentProcess& Agent();
  static const testing::TempDir& Peers();
  // Another agent on the token, with `agent_args` (e.g. other limits).
  static absl::StatusOr<std::unique_ptr<testing::AgentProcess>> StartAnotherAgent(
      std::vector<std::string> agent_args);

  // smimectl against the binary's agent, or `agent` when given.
  static testing::CommandResult Ctl(std::vector<std::string> args, const testing::AgentProcess* agent = nullptr);
  static testing::CommandResult Openssl(std::vector<std::string> args) { return testing::Openssl(std::move(args)); }
  // openssl with the token's private keys (pkcs11-provider).
  static testing::CommandResult OpensslWithToken(std::vector<std::string> args);
  // The PIN comes from the token's pin file, not the command line.
  static std::string TokenKeyUri(const std::string& name);

  static std::string TestCa() { return Token().Path("ca.pem"); }
  static std::string PeerCa() { return Peers().File("peer-ca.pem"); }
  static bool OnToken(const std::string& name) { return name == "alice" || name == "bob" || name == "erin"; }
  // Certificate file of a token key or a software peer.
  static std::string Cert(const std::string& name) {
    return OnToken(name) ? Token().Path("certs/" + name + ".pem") : Peers().File(name + ".pem");
  }
  static std::string KeyFile(const std::string& name) { return Peers().File(name + ".key"); }

  // `openssl cms -cmsout -print` of an S/MIME message.
  static std::string CmsPrint(const std::string& file, const std::string& inform = "SMIME");
  // The DER CMS inside an S/MIME message, as openssl reads it.
  static std::string ToDer(const std::string& smime_file, const std::string& der_file);
  // Opens `enc` as recipient `name` the way `how` says; returns the content
  // (empty with a test failure when it does not open).
  static std::string Open(const std::string& enc, const std::string& name, Opener how, const testing::TempDir& tmp);
  // A signature from alice through the agent.
  static std::string AgentSigned(const testing::TempDir& tmp, const std::string& message,
                                 std::vector<std::string> flags = {});
};

}  // namespace smime::integration

#endif  // SMIME_TESTS_INTEGRATION_SMIME_FIXTURE_H_
