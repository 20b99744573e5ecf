// The real agent on a SoftHSM token served over a socket by `p11-kit
// server`, through p11-kit's client module: the way a network HSM's client
// module behaves. The server is stopped and started again under the agent,
// which must sign again without a restart (it starts the client module
// again: the old connection never comes back by itself), and must never
// send a PIN the token has refused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

using ::smime::testing::AgentProcess;
using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;
namespace v1 = ::smime::agent::v1;

constexpr const char* kClientModule = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";

// `p11-kit server` serving one token on a socket, in its own process group
// (the server forks a p11-kit-remote for each connection; stopping the group
// stops them all, as a server machine going down would).
class TokenServer {
 public:
  TokenServer(const testing::TestToken& token, std::string socket) : token_(token), socket_(std::move(socket)) {}
  ~TokenServer() { Stop(); }

  bool Start() {
    std::vector<std::string> argv = {"p11-kit", "server", "-f", "-n", socket_, "--provider",
                                     testing::kSoftHsmModule, absl::StrCat("pkcs11:token=", token_.label)};
    std::string conf = absl::StrCat("SOFTHSM2_CONF=", token_.conf);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::putenv(conf.data());
      std::vector<char*> c_argv;
      for (auto& a : argv) c_argv.push_back(a.data());
      c_argv.push_back(nullptr);
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::execvp(c_argv[0], c_argv.data());
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);
    // Serving once a connection is accepted.
    return testing::WaitFor([&] { return Connectable(); }, absl::Seconds(30));
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    ::unlink(socket_.c_str());
  }

  std::string Address() const { return absl::StrCat("unix:path=", socket_); }

 private:
  bool Connectable() const {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_.data(), socket_.size());
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    return ok;
  }

  const testing::TestToken& token_;
  std::string socket_;
  pid_t pid_ = -1;
};

class NetworkHsmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { template_ = new testing::TestToken(testing::MakeToken("nethsm", true)); }
  static void TearDownTestSuite() {
    delete template_;
    template_ = nullptr;
  }

  void SetUp() override {
    if (::access(kClientModule, R_OK) != 0) GTEST_SKIP() << kClientModule << " is missing (p11-kit-modules)";
    token_ = testing::CopyToken(*template_);
    server_ = std::make_unique<TokenServer>(token_, token_.Path("p11-kit.sock"));
    ASSERT_TRUE(server_->Start()) << "p11-kit server did not start";
    auto agent = AgentProcess::Start(testing::AgentArgs(token_, kClientModule), token_.conf,
                                     {{"P11_KIT_SERVER_ADDRESS", server_->Address()}});
    ASSERT_THAT(agent.status(), IsOk());
    agent_ = *std::move(agent);
    auto c = client::AgentClient::Connect(agent_->socket());
    ASSERT_THAT(c.status(), IsOk());
    client_ = *std::move(c);
  }

  absl::StatusOr<std::string> Sign(const std::string& key, const std::string& message) {
    bool ec = key == "bob";
    return client_->SignDigest(client::TextSelector(key),
                               ec ? v1::SIGNATURE_ALGORITHM_ECDSA_SHA256 : v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256,
                               testing::Sha256(message));
  }
  bool Verifies(const std::string& key, const std::string& message, const std::string& sig) {
    return testing::VerifyDigest(ReadFile(token_.Path("pub/" + key + ".pem")), testing::Sha256(message), sig,
                                 testing::Padding::kPkcs1);
  }
  size_t LogCount(const std::string& needle) const {
    std::string log = agent_->Log();
    size_t n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  }

  static testing::TestToken* template_;
  testing::TestToken token_;
  std::unique_ptr<TokenServer> server_;
  std::unique_ptr<AgentProcess> agent_;
  std::unique_ptr<client::AgentClient> client_;
};
testing::TestToken* NetworkHsmTest::template_ = nullptr;

TEST_F(NetworkHsmTest, SignsAgainWithoutRestartOnceTheServerIsBack) {
  auto sig = Sign("alice", "before");
  ASSERT_THAT(sig.status(), IsOk()) << agent_->Log();
  EXPECT_TRUE(Verifies("alice", "before", *sig));

  server_->Stop();
  EXPECT_THAT(Sign("alice", "while out"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot be reached")));
  EXPECT_THAT(Sign("alice", "while out"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot be reached")));
  EXPECT_TRUE(agent_->Running());

  ASSERT_TRUE(server_->Start());
  // The agent needs no restart. How soon it signs again is reported, not
  // judged (the module is started again at most once a second; the bound
  // here is only for a machine that stalls).
  absl::Time back = absl::Now();
  absl::StatusOr<std::string> after = absl::UnknownError("not tried");
  EXPECT_TRUE(testing::WaitFor([&] { return (after = Sign("alice", "after")).ok(); }, absl::Seconds(30)))
      << after.status() << "\n" << agent_->Log();
  RecordProperty("signs_again_after_ms", absl::StrCat(absl::ToInt64Milliseconds(absl::Now() - back)));
  ASSERT_THAT(after.status(), IsOk());
  EXPECT_TRUE(Verifies("alice", "after", *after));
  auto ec = Sign("bob", "after");
  ASSERT_THAT(ec.status(), IsOk());
  EXPECT_TRUE(Verifies("bob", "after", *ec));
  std::string ct = testing::RsaEncrypt(ReadFile(token_.Path("pub/carol.pem")), "content key", testing::Padding::kPkcs1);
  auto plain = client_->DecryptKey(client::TextSelector("carol"), v1::DECRYPT_PADDING_RSA_PKCS1, ct);
  ASSERT_THAT(plain.status(), IsOk());
  EXPECT_EQ(*plain, "content key");
  auto keys = client_->ListKeys();
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_EQ(keys->size(), 5u);
  EXPECT_TRUE(agent_->LogHasLine({"event=module_reinitialize", "result=OK"})) << agent_->Log();
  // Logged in once at start and once after the server came back.
  EXPECT_EQ(LogCount("event=login token=nethsm result=OK"), 2u) << agent_->Log();
}

TEST_F(NetworkHsmTest, APinRefusedAfterTheServerReturnsIsNeverSentAgain) {
  ASSERT_THAT(Sign("alice", "before").status(), IsOk()) << agent_->Log();
  server_->Stop();
  // While the server is away, someone changes the user PIN on the token.
  std::string pin = ReadFile(token_.pin_file);
  while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
  testing::CommandResult changed = testing::RunCommand(
      {"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label", token_.label, "--login", "--pin", pin,
       "--change-pin", "--new-pin", "7654321"},
      testing::WithEnv({{"SOFTHSM2_CONF", token_.conf}}));
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  ASSERT_TRUE(server_->Start());
  // The agent reconnects and its PIN is refused: once, then never again.
  absl::StatusOr<std::string> after = absl::UnknownError("not tried");
  EXPECT_TRUE(testing::WaitFor(
      [&] { return (after = Sign("alice", "after")).status().code() == absl::StatusCode::kFailedPrecondition; },
      absl::Seconds(30)))
      << after.status() << "\n" << agent_->Log();
  EXPECT_THAT(after.status(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("PIN")));
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(Sign("alice", "again"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("PIN")));
  }
  EXPECT_EQ(LogCount("event=login token=nethsm result=refused"), 1u) << agent_->Log();
  EXPECT_TRUE(agent_->Running());
}

}  // namespace
}  // namespace smime
