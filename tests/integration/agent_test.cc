// The real smime-agent on a temporary socket over a real SoftHSM token
// (keys made by openssl and pkcs11-tool), driven by the real client library
// and smimectl. Every signature and decryption is checked with the openssl
// command line.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "tests/testing/agent_fixture.h"
#include "tests/testing/fault_shim.h"
#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

using ::smime::testing::CommandResult;
using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::RunCommand;
using ::smime::testing::StatusIs;
using ::smime::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;
namespace v1 = ::smime::agent::v1;

class AgentTest : public testing::SharedAgentTest<AgentTest> {
 public:
  static testing::SharedAgentSpec AgentSpec() { return {"itest"}; }

 protected:
  std::string Pub(const std::string& name) { return token_->Path("pub/" + name + ".pem"); }
};

TEST_F(AgentTest, ListKeysThroughClient) {
  auto keys = Client()->ListKeys();
  ASSERT_THAT(keys.status(), IsOk());
  ASSERT_EQ(keys->size(), 5u);
  EXPECT_EQ((*keys)[0].label(), "alice");
  EXPECT_EQ((*keys)[0].type(), v1::KEY_TYPE_RSA_2048);
  EXPECT_EQ((*keys)[0].emails(0), "alice@example.com");
  EXPECT_TRUE((*keys)[0].has_certificate());
  EXPECT_EQ((*keys)[1].type(), v1::KEY_TYPE_EC_P256);
  EXPECT_FALSE((*keys)[2].has_certificate());
}

TEST_F(AgentTest, KeysJsonHasDocumentedFields) {
  CommandResult r = Ctl({"keys", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 5u);
  const auto& alice = j[0];
  EXPECT_EQ(alice["id"], "01");
  EXPECT_EQ(alice["label"], "alice");
  EXPECT_EQ(alice["token"], "itest");
  EXPECT_EQ(alice["algorithm"], "rsa2048");
  EXPECT_EQ(alice["emails"], nlohmann::json::array({"alice@example.com"}));
  EXPECT_THAT(alice["subject"].get<std::string>(), HasSubstr("CN=Alice"));
  EXPECT_THAT(alice["uri"].get<std::string>(), HasSubstr("pkcs11:"));
  // RFC 3339, UTC, and the same instant openssl reports.
  std::string not_after = alice["not_after"];
  EXPECT_EQ(not_after.size(), 20u);
  EXPECT_EQ(not_after.back(), 'Z');
  CommandResult end = RunCommand({"openssl", "x509", "-in", token_->Path("certs/alice.pem"), "-noout", "-enddate",
                           "-dateopt", "iso_8601"});
  ASSERT_EQ(end.exit_code, 0) << end.err;
  EXPECT_THAT(end.out, HasSubstr(not_after.substr(0, 10)));
  EXPECT_EQ(j[1]["algorithm"], "p256");
  EXPECT_FALSE(j[2].contains("not_after"));  // carol: no certificate
  EXPECT_EQ(j[2]["emails"], nlohmann::json::array());
}

TEST_F(AgentTest, KeysTableForPeople) {
  CommandResult r = Ctl({"keys"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("LABEL"));
  EXPECT_THAT(r.out, HasSubstr("bob@example.com"));
}

TEST_F(AgentTest, CertificatePemAndDerMatchWhatWasImported) {
  TempDir tmp;
  CommandResult pem = Ctl({"cert", "--key", "alice@example.com"});
  ASSERT_EQ(pem.exit_code, 0) << pem.err;
  EXPECT_EQ(pem.out, ReadFile(token_->Path("certs/alice.pem")));
  CommandResult der = Ctl({"cert", "--key", "erin@example.com", "--der", "--out", tmp.File("erin.der")});
  ASSERT_EQ(der.exit_code, 0) << der.err;
  CommandResult x = RunCommand({"openssl", "x509", "-inform", "DER", "-in", tmp.File("erin.der"), "-noout", "-subject"});
  EXPECT_EQ(x.exit_code, 0);
  EXPECT_THAT(x.out, HasSubstr("erin@example.com"));
}

TEST_F(AgentTest, CertificateOfKeyWithoutOneIsNotFound) {
  CommandResult r = Ctl({"cert", "--key", "carol"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("has no certificate"));
}

TEST_F(AgentTest, PublicKeysMatchOpensslForEveryKey) {
  for (const char* name : {"alice", "bob", "carol", "dave", "erin"}) {
    CommandResult r = Ctl({"pubkey", "--key", name});
    ASSERT_EQ(r.exit_code, 0) << name << r.err;
    EXPECT_EQ(r.out, ReadFile(Pub(name))) << name;
  }
}

struct SignCase {
  std::string key;
  std::string alg;
  std::string pub;
  std::vector<std::string> sigopts;
};

TEST_F(AgentTest, SignDigestVerifiesWithOpensslDgst) {
  TempDir tmp;
  testing::WriteFile(tmp.File("msg"), "The quick brown fox\r\n");
  std::string digest_hex = absl::BytesToHexString(testing::Sha256("The quick brown fox\r\n"));
  std::vector<SignCase> cases = {
      {"alice@example.com", "rsa-pkcs1-sha256", "alice", {}},
      {"alice", "rsa-pss-sha256", "alice", {"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"}},
      {"03", "rsa-pkcs1-sha256", "carol", {}},
      {"bob@example.com", "ecdsa-sha256", "bob", {}},
      {"dave", "ecdsa-sha256", "dave", {}},
  };
  for (const SignCase& c : cases) {
    std::string sig = tmp.File(c.pub + "-" + c.alg + ".sig");
    CommandResult r = Ctl({"sign-digest", "--key", c.key, "--alg", c.alg, "--digest", digest_hex, "--out", sig});
    ASSERT_EQ(r.exit_code, 0) << c.key << " " << r.err;
    std::vector<std::string> verify = {"openssl", "dgst", "-sha256", "-verify", Pub(c.pub), "-signature", sig};
    verify.insert(verify.end(), c.sigopts.begin(), c.sigopts.end());
    verify.push_back(tmp.File("msg"));
    CommandResult v = RunCommand(verify);
    EXPECT_EQ(v.exit_code, 0) << c.key << " " << c.alg << ": " << v.out << v.err;
    EXPECT_THAT(v.out, HasSubstr("Verified OK"));
    // The check can fail: the signature does not verify for another message.
    testing::WriteFile(tmp.File("other"), "The quick brown fox.\r\n");
    verify.back() = tmp.File("other");
    EXPECT_NE(RunCommand(verify).exit_code, 0) << c.key;
  }
}

TEST_F(AgentTest, DecryptKeyOpensWhatOpensslPkeyutlEncrypted) {
  TempDir tmp;
  testing::WriteFile(tmp.File("cek"), testing::Sha256("content key"));
  struct Case {
    std::string padding;
    std::vector<std::string> opts;
  };
  std::vector<Case> cases = {
      {"pkcs1", {}},
      {"oaep-sha1", {"-pkeyopt", "rsa_padding_mode:oaep"}},
      {"oaep-sha256", {"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt",
                       "rsa_mgf1_md:sha256"}},
  };
  for (const char* key : {"alice", "carol"}) {
    for (const Case& c : cases) {
      std::string ct = tmp.File(absl::StrCat(key, "-", c.padding, ".bin"));
      std::vector<std::string> enc = {"openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", Pub(key),
                                      "-in", tmp.File("cek"), "-out", ct};
      enc.insert(enc.end(), c.opts.begin(), c.opts.end());
      ASSERT_EQ(RunCommand(enc).exit_code, 0);
      std::string out = tmp.File(absl::StrCat(key, "-", c.padding, ".out"));
      CommandResult r = Ctl({"decrypt-key", "--key", key, "--padding", c.padding, "--in", ct, "--out", out});
      ASSERT_EQ(r.exit_code, 0) << key << " " << c.padding << ": " << r.err;
      EXPECT_EQ(ReadFile(out), ReadFile(tmp.File("cek"))) << key << " " << c.padding;
      struct stat st;
      ASSERT_EQ(::stat(out.c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0777, 0600u);  // a recovered key is a secret
    }
  }
}

TEST_F(AgentTest, SelectorsByUriIdLabelAndEmail) {
  auto keys = Client()->ListKeys();
  ASSERT_THAT(keys.status(), IsOk());
  for (const std::string& sel : {(*keys)[3].uri(), std::string("04"), std::string("dave"),
                                 std::string("pkcs11:object=dave")}) {
    CommandResult r = Ctl({"pubkey", "--key", sel});
    EXPECT_EQ(r.exit_code, 0) << sel << r.err;
    EXPECT_EQ(r.out, ReadFile(Pub("dave"))) << sel;
  }
  CommandResult r = Ctl({"pubkey", "--key", "BOB@EXAMPLE.COM"});
  EXPECT_EQ(r.out, ReadFile(Pub("bob")));
}

TEST_F(AgentTest, UnknownKeyIsClearAndWritesNothing) {
  TempDir tmp;
  CommandResult r = Ctl({"sign-digest", "--key", "nobody@example.com", "--alg", "ecdsa-sha256", "--digest",
                         std::string(64, 'a'), "--out", tmp.File("sig")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "smimectl: no key matches \"nobody@example.com\"\n");
  EXPECT_NE(::access(tmp.File("sig").c_str(), F_OK), 0);
  EXPECT_THAT(Client()->GetPublicKey(client::TextSelector("nobody@example.com")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no key matches")));
}

TEST_F(AgentTest, BadRequestsGetClearErrors) {
  auto c = Client();
  auto alice = client::TextSelector("alice");
  auto bob = client::TextSelector("bob");
  EXPECT_THAT(c->SignDigest(alice, v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, "short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 bytes")));
  EXPECT_THAT(c->SignDigest(bob, v1::SIGNATURE_ALGORITHM_RSA_PSS_SHA256, std::string(32, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ecdsa-sha256")));
  EXPECT_THAT(c->SignDigest(alice, v1::SIGNATURE_ALGORITHM_UNSPECIFIED, std::string(32, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("choose a signature algorithm")));
  EXPECT_THAT(c->SignDigest(v1::KeySelector(), v1::SIGNATURE_ALGORITHM_ECDSA_SHA256, std::string(32, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names no key")));
  EXPECT_THAT(c->DecryptKey(alice, v1::DECRYPT_PADDING_RSA_PKCS1, std::string(256, '\x01')),
              StatusIs(absl::StatusCode::kInvalidArgument, "decryption failed"));
  EXPECT_THAT(c->DecryptKey(alice, v1::DECRYPT_PADDING_RSA_OAEP_SHA256, std::string(256, '\x01')),
              StatusIs(absl::StatusCode::kInvalidArgument, "decryption failed"));
  EXPECT_THAT(c->DecryptKey(alice, v1::DECRYPT_PADDING_RSA_PKCS1, "garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be 256 bytes")));
  EXPECT_THAT(c->DecryptKey(bob, v1::DECRYPT_PADDING_RSA_PKCS1, std::string(64, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA")));
  EXPECT_THAT(c->GenerateKey(v1::KEY_TYPE_UNSPECIFIED, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("choose a key type")));
  EXPECT_THAT(c->GenerateKey(v1::KEY_TYPE_EC_P256, "alice"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("alice")));
  EXPECT_THAT(c->SignDigest(client::TextSelector("pkcs11:id=%01?pin-value=1234"),
                            v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, std::string(32, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PIN")));
}

TEST_F(AgentTest, SmimectlUsageErrors) {
  CommandResult r = Ctl({"sign-digest", "--key", "alice", "--alg", "md5", "--digest", "00", "--out", "/dev/null"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown --alg \"md5\""));
  r = Ctl({"sign-digest", "--key", "alice", "--alg", "ecdsa-sha256", "--digest", "xyz", "--out", "/dev/null"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--digest must be hex"));
  r = Ctl({"cert"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--key is required"));
  for (const char* verb : {"keys", "cert", "pubkey", "sign-digest", "decrypt-key", "keygen"}) {
    CommandResult h = RunCommand({testing::SmimectlBinary(), verb, "--help"});
    EXPECT_EQ(h.exit_code, 0) << verb;
    EXPECT_THAT(h.out, HasSubstr("Usage")) << verb;
  }
}

TEST_F(AgentTest, AmbiguousSelectorNamesCandidates) {
  // A key whose label is another key's hex id.
  CommandResult g = Ctl({"keygen", "--type", "p256", "--label", "05"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  CommandResult r = Ctl({"pubkey", "--key", "05"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("matches 2 keys"));
  EXPECT_THAT(r.err, HasSubstr("label \"erin\""));
}

TEST_F(AgentTest, KeygenMakesSensitiveNonExtractableKeysThatSign) {
  for (const char* type : {"p256", "p384", "rsa2048", "rsa3072"}) {
    std::string label = absl::StrCat("new-", type);
    CommandResult g = Ctl({"keygen", "--type", type, "--label", label, "--json"});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    auto j = nlohmann::json::parse(g.out);
    EXPECT_EQ(j["algorithm"], type);
    EXPECT_EQ(j["label"], label);
    EXPECT_EQ(j["id"].get<std::string>().size(), 40u);
    TempDir tmp;
    ASSERT_EQ(Ctl({"pubkey", "--key", label, "--out", tmp.File("pub.pem")}).exit_code, 0);
    testing::WriteFile(tmp.File("msg"), label);
    std::string alg = type[0] == 'p' ? "ecdsa-sha256" : "rsa-pkcs1-sha256";
    CommandResult s = Ctl({"sign-digest", "--key", label, "--alg", alg, "--digest",
                           absl::BytesToHexString(testing::Sha256(label)), "--out", tmp.File("sig")});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    EXPECT_EQ(RunCommand({"openssl", "dgst", "-sha256", "-verify", tmp.File("pub.pem"), "-signature", tmp.File("sig"),
                   tmp.File("msg")}).exit_code, 0) << type;
  }
  // Another tool's view of the token: the private keys are sensitive and
  // were never extractable.
  std::string pin = ReadFile(token_->pin_file);
  pin.pop_back();
  CommandResult objs = RunCommand({"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label", "itest",
                            "--login", "--pin", pin, "--list-objects", "--type", "privkey"},
                           testing::WithEnv({{"SOFTHSM2_CONF", token_->conf}}));
  ASSERT_EQ(objs.exit_code, 0) << objs.err;
  for (const char* type : {"p256", "p384", "rsa2048", "rsa3072"}) {
    std::string label = absl::StrCat("new-", type);
    size_t at = objs.out.find("label:      " + label + "\n");
    ASSERT_NE(at, std::string::npos) << objs.out;
    size_t access = objs.out.find("Access:", at);
    std::string line = objs.out.substr(access, objs.out.find('\n', access) - access);
    EXPECT_THAT(line, HasSubstr("sensitive")) << label;
    EXPECT_THAT(line, HasSubstr("never extractable")) << label;
  }
}

TEST_F(AgentTest, OversizedRequestIsRefusedAndAgentServes) {
  auto c = Client();
  EXPECT_THAT(c->SignDigest(client::TextSelector("alice"), v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256,
                            std::string(5 << 20, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
}

TEST_F(AgentTest, GarbageAndHalfCallsOnTheSocketDoNotHurt) {
  for (int i = 0; i < 20; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, agent_->socket().c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string junk = i % 2 == 0 ? std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                                  : std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + std::string(i * 100, '\xff');
    (void)!::write(fd, junk.data(), junk.size());
    if (i % 3 == 0) ::shutdown(fd, SHUT_WR);
    ::close(fd);
  }
  // A client that gives up mid-call (deadline far shorter than the call).
  auto c = client::AgentClient::Connect(agent_->socket(), absl::Microseconds(1));
  ASSERT_THAT(c.status(), IsOk());
  for (int i = 0; i < 10; ++i) (void)(*c)->SignDigest(client::TextSelector("alice"),
                                                       v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256,
                                                       std::string(32, 'x'));
  EXPECT_THAT(Client()->SignDigest(client::TextSelector("alice"), v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256,
                                   std::string(32, 'x')).status(),
              IsOk());
}

TEST_F(AgentTest, ConcurrentClientsAllGetValidSignatures) {
  constexpr int kClients = 8, kCalls = 25;
  std::vector<std::thread> threads;
  std::vector<int> good(kClients, 0);
  std::string digest = testing::Sha256("concurrent");
  std::string alice_pub = ReadFile(Pub("alice")), bob_pub = ReadFile(Pub("bob"));
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto c = client::AgentClient::Connect(agent_->socket());
      if (!c.ok()) return;
      bool rsa = t % 2 == 0;
      for (int i = 0; i < kCalls; ++i) {
        auto sig = (*c)->SignDigest(client::TextSelector(rsa ? "alice" : "bob"),
                                    rsa ? v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256 : v1::SIGNATURE_ALGORITHM_ECDSA_SHA256,
                                    digest);
        if (sig.ok() && testing::VerifyDigest(rsa ? alice_pub : bob_pub, digest, *sig, testing::Padding::kPkcs1)) {
          ++good[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kClients; ++t) EXPECT_EQ(good[t], kCalls) << "client " << t;
}

// The caller's deadline bounds the wait for a token session. The agent has
// one session, and the fault module keeps a first signature inside C_Sign
// until the test lets it go, so the session is busy for as long as the test
// needs on any machine. A second caller with a short deadline then ends in
// the session wait (RESOURCE_EXHAUSTED, audited) or at its own deadline; it
// neither hangs nor fails otherwise. The held signature completes once let
// go, and the agent serves on.
TEST_F(AgentTest, DeadlineBoundsTheWaitForATokenSession) {
  TempDir tmp;
  const testing::FaultControl control(tmp.File("shim-control"));
  control.Set("sign-hold\n");
  testing::AgentOptions through_shim = testing::AgentOptions::Args({"--max-sessions", "1"});
  through_shim.module = testing::FaultShimModule();
  through_shim.env = control.Env();
  auto agent = shared_->StartAnother(through_shim);
  ASSERT_THAT(agent.status(), IsOk());
  const auto alice = client::TextSelector("alice");
  const std::string digest = testing::Sha256("held in the token");
  absl::StatusOr<std::string> held = absl::UnknownError("not run");
  std::thread holder([&] {
    auto c = client::AgentClient::Connect((*agent)->socket(), absl::Seconds(120));
    held = c.ok() ? (*c)->SignDigest(alice, v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, digest) : c.status();
  });
  // Whatever fails below, the held call is let go and its thread joined.
  absl::Cleanup release = [&] {
    control.Set("");
    if (holder.joinable()) holder.join();
  };
  ASSERT_TRUE(control.WaitUntilSigning()) << "the first signature never reached C_Sign\n" << (*agent)->Log();

  // The deadline is short, yet long enough for the call to reach the agent;
  // should a loaded machine take longer to deliver it (no audit line), the
  // next attempt allows twice as long.
  bool gave_up = false;
  for (absl::Duration deadline = absl::Milliseconds(250); !gave_up && deadline <= absl::Seconds(16);
       deadline *= 2) {
    auto c = client::AgentClient::Connect((*agent)->socket(), deadline);
    ASSERT_THAT(c.status(), IsOk());
    ASSERT_THAT((*c)->WaitReady(absl::Seconds(30)), IsOk());  // connected before the clock runs
    absl::Status st = (*c)->SignDigest(alice, v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, digest).status();
    EXPECT_TRUE(absl::IsDeadlineExceeded(st) || absl::IsResourceExhausted(st)) << st;
    // The client may hear its own deadline before the agent's answer, and
    // the agent audits the call when the wait ends.
    gave_up = testing::WaitFor(
        [&] { return (*agent)->LogHasLine({"event=key_op", "op=sign", "result=RESOURCE_EXHAUSTED"}); },
        absl::Seconds(5));
  }
  EXPECT_TRUE(gave_up) << "no call gave up in the session wait\n" << (*agent)->Log();

  std::move(release).Invoke();
  ASSERT_THAT(held.status(), IsOk()) << (*agent)->Log();
  EXPECT_TRUE(testing::VerifyDigest(ReadFile(Pub("alice")), digest, *held, testing::Padding::kPkcs1));
  EXPECT_TRUE((*agent)->LogHasLine({"event=key_op", "op=sign", "result=OK"})) << (*agent)->Log();
  auto c = client::AgentClient::Connect((*agent)->socket());
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_THAT((*c)->SignDigest(alice, v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, std::string(32, 'x')).status(),
              IsOk());
}

TEST_F(AgentTest, EveryKeyOperationLeavesOneAuditLineWithoutSecrets) {
  auto c = Client();
  ASSERT_THAT(c->SignDigest(client::TextSelector("carol"), v1::SIGNATURE_ALGORITHM_RSA_PSS_SHA256,
                            testing::Sha256("audit me")).status(), IsOk());
  (void)c->DecryptKey(client::TextSelector("carol"), v1::DECRYPT_PADDING_RSA_PKCS1, std::string(256, '\x02'));
  (void)c->SignDigest(client::TextSelector("mallory@example.com"), v1::SIGNATURE_ALGORITHM_ECDSA_SHA256,
                      std::string(32, 'x'));
  std::string log = agent_->Log();
  std::string uid = absl::StrCat("peer_uid=", ::getuid());
  auto has_line = [&](const std::vector<std::string>& parts) { return agent_->LogHasLine(parts); };
  EXPECT_TRUE(has_line({"event=key_op", "op=sign", "object=carol", "mechanism=rsa-pss-sha256", uid,
                        "peer_pid=", "result=OK", "duration_ms="}))
      << log;
  EXPECT_TRUE(has_line({"event=key_op", "op=decrypt", "object=carol", "result=INVALID_ARGUMENT"})) << log;
  EXPECT_TRUE(has_line({"event=key_op", "op=sign", "key=mallory@example.com", "result=NOT_FOUND"})) << log;
  // The PIN never reaches the log.
  std::string pin = ReadFile(token_->pin_file);
  pin.pop_back();
  EXPECT_THAT(log, Not(HasSubstr(pin)));
}

TEST_F(AgentTest, SocketIsPrivate) {
  struct stat st;
  ASSERT_EQ(::stat(agent_->socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string dir = agent_->socket().substr(0, agent_->socket().rfind('/'));
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(AgentTest, ForeignUidIsRefusedBySoPeercred) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another uid";
  // Open the file permissions on purpose: SO_PEERCRED must still refuse.
  std::string dir = agent_->socket().substr(0, agent_->socket().rfind('/'));
  std::string parent = dir.substr(0, dir.rfind('/'));
  ASSERT_EQ(::chmod(parent.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(agent_->socket().c_str(), 0666), 0);
  CommandResult r = Ctl({"keys"}, testing::AsUser(65534, 65534));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("uid 65534 may not use this agent"));
  CommandResult s = Ctl({"sign-digest", "--key", "alice", "--alg", "rsa-pkcs1-sha256", "--digest",
                         std::string(64, 'a'), "--out", "/dev/null"},
                        testing::AsUser(65534, 65534));
  ::chmod(agent_->socket().c_str(), 0600);
  ::chmod(dir.c_str(), 0700);
  ::chmod(parent.c_str(), 0700);
  EXPECT_NE(s.exit_code, 0);
  // The refused private-key call leaves an audit line naming the uid that
  // was refused (it once read peer_uid=4294967295).
  EXPECT_TRUE(agent_->LogHasLine({"event=key_op", "op=sign", "peer_uid=65534 peer_pid=", "result=PERMISSION_DENIED"}))
      << agent_->Log();
}

}  // namespace
}  // namespace smime
