// Starting and stopping the real agent: PINs, sockets, config, signals and
// the embedded default store. Each test starts its own agent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "tests/testing/agent_fixture.h"
#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

using ::smime::testing::AgentProcess;
using ::smime::testing::CommandResult;
using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
using ::smime::testing::RunCommand;
using ::smime::testing::StatusIs;
using ::smime::testing::TempDir;
using ::smime::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;

// testing::AgentArgs with a PIN file other than the token's.
std::vector<std::string> TokenArgs(const testing::TestToken& t, const std::string& pin_file) {
  return {"--module", testing::kSoftHsmModule, "--token", t.label, "--pin-file", pin_file};
}

// Runs the agent to completion (it is expected to exit on its own).
CommandResult RunAgent(const std::vector<std::string>& args, const std::string& conf,
                       std::map<std::string, std::string> env = {}) {
  std::vector<std::string> argv = {testing::AgentBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  if (!conf.empty()) env["SOFTHSM2_CONF"] = conf;
  return RunCommand(argv, testing::WithEnv(env));
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

class StartupTest : public ::testing::Test {
 protected:
  void SetUp() override { token_ = testing::MakeToken("start", false); }
  testing::TestToken token_;
  TempDir tmp_;
};

TEST_F(StartupTest, WrongPinStopsAtOnceWithOneAttempt) {
  WriteFile(tmp_.File("bad-pin"), "000000\n", 0600);
  CommandResult r = RunAgent(
      {"--module", testing::kSoftHsmModule, "--token", "start", "--pin-file", tmp_.File("bad-pin"),
       "--socket", tmp_.File("s/agent.sock"), "--log-level", "debug"},
      token_.conf);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("smime-agent: login to token \"start\" failed: the token refused the PIN"));
  EXPECT_EQ(Count(r.err, "fn=C_Login"), 1u) << r.err;  // never retried
  EXPECT_THAT(r.err, Not(HasSubstr("000000")));
  EXPECT_NE(::access(tmp_.File("s/agent.sock").c_str(), F_OK), 0);  // socket cleaned up
  // The token is still usable with the right PIN.
  auto agent = AgentProcess::Start(testing::AgentArgs(token_), token_.conf);
  EXPECT_THAT(agent.status(), IsOk());
}

TEST_F(StartupTest, PinFileMustBePrivateAndReadable) {
  WriteFile(tmp_.File("open-pin"), ReadFile(token_.pin_file), 0644);
  CommandResult r = RunAgent(TokenArgs(token_, tmp_.File("open-pin")), token_.conf);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("accessible by group or others"));
  EXPECT_THAT(r.err, HasSubstr("chmod 600"));
  r = RunAgent(TokenArgs(token_, tmp_.File("missing-pin")), token_.conf);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("cannot open PIN file"));
  r = RunAgent({"--module", testing::kSoftHsmModule, "--token", "start"}, token_.conf);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("needs a PIN"));
}

TEST_F(StartupTest, PinFromEnvironment) {
  std::string pin = ReadFile(token_.pin_file);
  pin.pop_back();
  auto agent = AgentProcess::Start({"--module", testing::kSoftHsmModule, "--token", "start", "--pin-env",
                                    "MY_TOKEN_PIN"},
                                   token_.conf, {{"MY_TOKEN_PIN", pin}});
  ASSERT_THAT(agent.status(), IsOk());
  // The agent dropped the variable (checked in pin_test: /proc shows only
  // the initial environment, and only to root, the agent being undumpable).
  CommandResult r = RunAgent({"--module", testing::kSoftHsmModule, "--token", "start", "--pin-env", "UNSET_PIN_VAR",
                              "--socket", tmp_.File("x/agent.sock")},
                             token_.conf);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("UNSET_PIN_VAR is not set"));
}

TEST_F(StartupTest, UnknownTokenAndModuleAreClear) {
  CommandResult r = RunAgent({"--module", testing::kSoftHsmModule, "--token", "no-such", "--pin-file",
                              token_.pin_file, "--socket", tmp_.File("a/agent.sock")},
                             token_.conf);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no token matches \"no-such\"; available: \"start\""));
  r = RunAgent({"--module", "/nonexistent/module.so", "--pin-file", token_.pin_file, "--socket",
                tmp_.File("b/agent.sock")},
               "");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("cannot load PKCS#11 module /nonexistent/module.so"));
}

TEST_F(StartupTest, SocketDirectoryItDidNotCreateIsNeverChmodded) {
  // An existing directory open to others (as /tmp is): refused, mode kept.
  const std::string shared = tmp_.File("shared");
  ASSERT_EQ(::mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 01777), 0);
  std::vector<std::string> args = testing::AgentArgs(token_);
  args.insert(args.end(), {"--socket", shared + "/agent.sock"});
  CommandResult r = RunAgent(args, token_.conf);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("socket directory " + shared + " is open to other users (mode 1777)"));
  struct stat st;
  ASSERT_EQ(::stat(shared.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  EXPECT_NE(::access((shared + "/agent.sock").c_str(), F_OK), 0);
  // A directory it creates is made 0700 whatever the umask.
  const std::string fresh = tmp_.File("fresh/run");
  args = testing::AgentArgs(token_);
  args.insert(args.end(), {"--socket", fresh + "/agent.sock"});
  mode_t old = ::umask(0);
  auto agent = AgentProcess::Start(args, token_.conf);
  ::umask(old);
  ASSERT_THAT(agent.status(), IsOk());
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(StartupTest, MemoryIsClosedToOtherProcessesOfTheUserAndNeverDumped) {
  // As root, the agent and its peers run without capabilities, as every
  // other user's processes do (a capable root process reads anything).
  const std::vector<std::string> no_caps = {"setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"};
  const bool root = ::getuid() == 0;
  std::vector<std::string> args = testing::AgentArgs(token_);
  if (root) args.insert(args.begin(), testing::AgentBinary());
  auto agent = root ? AgentProcess::StartProgram("/usr/bin/setpriv", [&] {
    std::vector<std::string> a(no_caps.begin() + 1, no_caps.end());
    a.insert(a.end(), args.begin(), args.end());
    return a;
  }(), token_.conf)
                    : AgentProcess::Start(args, token_.conf);
  ASSERT_THAT(agent.status(), IsOk());
  const std::string proc = absl::StrCat("/proc/", (*agent)->pid());
  EXPECT_THAT(ReadFile(proc + "/limits"), ::testing::ContainsRegex("Max core file size +0 +0 "));
  auto as_peer = [&](std::vector<std::string> cmd) {
    if (root) cmd.insert(cmd.begin(), no_caps.begin(), no_caps.end());
    return cmd;
  };
  // Another process of the same user may not read its environment or memory...
  CommandResult agent_env = RunCommand(as_peer({"cat", proc + "/environ"}));
  EXPECT_NE(agent_env.exit_code, 0);
  EXPECT_THAT(agent_env.err, HasSubstr("Permission denied"));
  EXPECT_NE(RunCommand(as_peer({"cat", proc + "/mem"})).exit_code, 0);
  // ...as it may of an ordinary process of the user.
  CommandResult own = RunCommand(as_peer({"sh", "-c", "sleep 5 & cat /proc/$!/environ >/dev/null; s=$?; kill $!; exit $s"}));
  EXPECT_EQ(own.exit_code, 0) << own.err;
  EXPECT_THAT((*agent)->Log(), Not(HasSubstr("secure heap")));
}

TEST_F(StartupTest, SecondAgentOnLiveSocketIsRefusedStaleSocketReplaced) {
  auto first = AgentProcess::Start(testing::AgentArgs(token_), token_.conf);
  ASSERT_THAT(first.status(), IsOk());
  std::vector<std::string> args = testing::AgentArgs(token_);
  args.push_back("--socket");
  args.push_back((*first)->socket());
  CommandResult r = RunAgent(args, token_.conf);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("another agent is already listening on " + (*first)->socket()));
  EXPECT_TRUE((*first)->Running());

  // A socket file nobody listens on (an agent killed with SIGKILL).
  std::string stale = tmp_.File("stale.sock");
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  args.back() = stale;
  auto second = AgentProcess::Start(args, token_.conf);
  EXPECT_THAT(second.status(), IsOk());
}

TEST_F(StartupTest, SigtermFinishesCleanly) {
  auto agent = AgentProcess::Start(testing::AgentArgs(token_), token_.conf);
  ASSERT_THAT(agent.status(), IsOk());
  std::string socket = (*agent)->socket();
  EXPECT_EQ((*agent)->Stop(), 0);
  EXPECT_NE(::access(socket.c_str(), F_OK), 0);  // socket removed
  EXPECT_THAT((*agent)->Log(), HasSubstr("event=shutdown"));
  EXPECT_THAT((*agent)->Log(), HasSubstr("event=stopped"));
}

TEST_F(StartupTest, ConfigFileWithFlagsWinning) {
  WriteFile(tmp_.File("agent.toml"),
            absl::StrCat("module = \"", testing::kSoftHsmModule, "\"\n", "token = \"start\"\n",
                         "pin_file = \"", token_.pin_file, "\"\n", "socket = \"", tmp_.File("cfg/agent.sock"),
                         "\"\n", "log_level = \"warning\"\n"));
  auto agent = AgentProcess::Start({"--config", tmp_.File("agent.toml"), "--socket", tmp_.File("flag/agent.sock")},
                                   token_.conf);
  ASSERT_THAT(agent.status(), IsOk());
  EXPECT_EQ((*agent)->socket(), tmp_.File("flag/agent.sock"));
  EXPECT_NE(::access(tmp_.File("cfg/agent.sock").c_str(), F_OK), 0);
  WriteFile(tmp_.File("bad.toml"), "modul = \"x\"\n");
  CommandResult r = RunAgent({"--config", tmp_.File("bad.toml")}, token_.conf);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown key \"modul\""));
}

TEST_F(StartupTest, SighupPicksUpKeysAddedByAnotherTool) {
  auto agent = AgentProcess::Start(testing::AgentArgs(token_), token_.conf);
  ASSERT_THAT(agent.status(), IsOk());
  auto c = client::AgentClient::Connect((*agent)->socket());
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ((*c)->ListKeys()->size(), 0u);
  std::string pin = ReadFile(token_.pin_file);
  pin.pop_back();
  CommandResult gen = RunCommand({"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label", "start", "--login",
                           "--pin", pin, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "0a", "--label",
                           "late"},
                          testing::WithEnv({{"SOFTHSM2_CONF", token_.conf}}));
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  ::kill((*agent)->pid(), SIGHUP);
  // The agent re-reads the token when it gets to the signal; the bound is
  // for a broken run only.
  size_t n = 0;
  testing::WaitFor(
      [&] {
        auto keys = (*c)->ListKeys();
        n = keys.ok() ? keys->size() : 0;
        return n != 0;
      },
      absl::Seconds(30));
  EXPECT_EQ(n, 1u);
}

TEST(TokenRemovalTest, RemovedTokenFailsClearlyAndAgentKeepsServing) {
  auto made = testing::TokenAgent::Make("removable", true);
  ASSERT_THAT(made.status(), IsOk());
  const testing::TestToken& token = (*made)->token();
  testing::AgentProcess* agent = &(*made)->agent();
  auto c = client::AgentClient::Connect(agent->socket());
  ASSERT_THAT(c.status(), IsOk());
  auto sign = [&] {
    return (*c)->SignDigest(client::TextSelector("alice"), agent::v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256,
                            testing::Sha256("removal")).status();
  };
  ASSERT_THAT(sign(), IsOk());
  // SoftHSM's closest thing to pulling the card: its store disappears.
  std::string store = token.Path("tokens"), away = token.Path("tokens.away");
  ASSERT_EQ(::rename(store.c_str(), away.c_str()), 0);
  EXPECT_THAT(sign(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no longer on the token")));
  EXPECT_TRUE(agent->Running());
  // Later calls fail the same clear way and the agent keeps serving. (A
  // SoftHSM store that comes back stays invalid in the process that saw it
  // vanish; pulling and re-inserting a token is shown through the fault
  // module in token_faults_test.)
  EXPECT_THAT(sign(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("alice")));
  EXPECT_THAT((*c)->ListKeys().status(), IsOk());
  ASSERT_EQ(::rename(away.c_str(), store.c_str()), 0);
}

TEST(EmbeddedStoreTest, NewcomerGeneratesKeyAndSignsWithNoHardware) {
  TempDir home;
  std::map<std::string, std::string> env = {{"XDG_DATA_HOME", home.File("data")},
                                            {"XDG_RUNTIME_DIR", home.File("run")}};
  ASSERT_EQ(::mkdir(home.File("run").c_str(), 0700), 0);
  std::string socket = home.File("run/smime-agent/agent.sock");
  {
    // No flags at all: embedded store, default socket.
    auto agent = AgentProcess::Start({}, "", env, socket);
    ASSERT_THAT(agent.status(), IsOk());
    EXPECT_THAT((*agent)->Log(), HasSubstr("protected by file permissions only"));
    CommandResult g = RunCommand({testing::SmimectlBinary(), "keygen", "--type", "p256", "--label", "me"},
                          testing::WithEnv({{"SMIME_AGENT_SOCK", socket}}));
    ASSERT_EQ(g.exit_code, 0) << g.err;
  }
  struct stat st;
  std::string store = home.File("data/smime-agent");
  ASSERT_EQ(::stat(store.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((store + "/user-pin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The key survives a restart and signs; openssl verifies.
  auto agent = AgentProcess::Start({}, "", env, socket);
  ASSERT_THAT(agent.status(), IsOk());
  auto run_ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), testing::SmimectlBinary());
    return RunCommand(args, testing::WithEnv({{"SMIME_AGENT_SOCK", socket}}));
  };
  ASSERT_EQ(run_ctl({"pubkey", "--key", "me", "--out", home.File("me.pem")}).exit_code, 0);
  WriteFile(home.File("msg"), "hello from the embedded store\n");
  CommandResult s = run_ctl({"sign-digest", "--key", "me", "--alg", "ecdsa-sha256", "--digest",
                             absl::BytesToHexString(testing::Sha256("hello from the embedded store\n")), "--out",
                             home.File("sig")});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  CommandResult v = RunCommand({"openssl", "dgst", "-sha256", "-verify", home.File("me.pem"), "-signature",
                         home.File("sig"), home.File("msg")});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  // Flags that only make sense with a real token are refused, not ignored.
  CommandResult r = RunCommand({testing::AgentBinary(), "--pin-file", "/x", "--socket", home.File("other.sock")},
                        testing::WithEnv(env));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("need --module"));
}

TEST(SmimectlTest, NoAgentIsAClearError) {
  TempDir tmp;
  CommandResult r = RunCommand({testing::SmimectlBinary(), "--socket", tmp.File("none.sock"), "keys"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no agent socket at " + tmp.File("none.sock")));
  r = RunCommand({testing::SmimectlBinary(), "keys"}, testing::WithEnv({{"SMIME_AGENT_SOCK", tmp.File("env.sock")}}));
  EXPECT_THAT(r.err, HasSubstr(tmp.File("env.sock")));
}

}  // namespace
}  // namespace smime
