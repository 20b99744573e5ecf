// Issue 14 item 1: the client sends nothing to a socket that someone other
// than the caller or root could have put in place or serves. A second uid
// plays the attacker with a fake agent that only counts what arrives; the
// victim is smimectl run as a non-root uid (and as root). Needs root to
// play two uids; skipped otherwise.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

using ::smime::testing::AgentProcess;
using ::smime::testing::CommandResult;
using ::smime::testing::RunCommand;
using ::smime::testing::RunOptions;
using ::smime::testing::TempDir;
using ::testing::HasSubstr;

constexpr uid_t kVictim = 65534;  // nobody
constexpr uid_t kAttacker = 65533;

// A listener run as another uid that never answers and counts the
// connections and bytes it receives. The child only makes system calls
// (no allocation): the test process may already run gRPC threads.
class FakeAgent {
 public:
  struct Seen {
    int connections = -1;
    long bytes = -1;
  };

  // Becomes `uid`, creates `dir` with `dir_mode` unless that is 0, binds
  // `socket` (mode 0777, so that any victim can connect) and listens.
  static std::unique_ptr<FakeAgent> Start(uid_t uid, const std::string& dir, mode_t dir_mode,
                                          const std::string& socket) {
    sockaddr_un addr;
    std::memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (socket.size() >= sizeof(addr.sun_path)) return nullptr;
    std::memcpy(addr.sun_path, socket.data(), socket.size());
    int ready[2], control[2], report[2];
    if (::pipe2(ready, O_CLOEXEC) || ::pipe2(control, O_CLOEXEC) || ::pipe2(report, O_CLOEXEC)) return nullptr;
    const char* dir_c = dir.c_str();
    const char* socket_c = socket.c_str();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ready[0]);
      ::close(control[1]);
      ::close(report[0]);
      if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) _exit(10);
      ::umask(0);
      if (dir_mode != 0 && ::mkdir(dir_c, dir_mode) != 0) _exit(11);
      int lfd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) _exit(12);
      if (::chmod(socket_c, 0777) != 0 || ::listen(lfd, 16) != 0) _exit(13);
      if (::write(ready[1], "r", 1) != 1) _exit(14);
      Serve(lfd, control[0], report[1]);
    }
    ::close(ready[1]);
    ::close(control[0]);
    ::close(report[1]);
    std::unique_ptr<FakeAgent> f(new FakeAgent(pid, control[1], report[0]));
    char c;
    bool ok = ::read(ready[0], &c, 1) == 1;
    ::close(ready[0]);
    return ok ? std::move(f) : nullptr;
  }

  // Stops the listener once it has read everything that reached it.
  Seen Finish() {
    Seen seen;
    if (control_ >= 0) ::close(control_);
    control_ = -1;
    if (::read(report_, &seen, sizeof(seen)) != sizeof(seen)) seen = Seen();
    Reap();
    return seen;
  }

  ~FakeAgent() {
    if (control_ >= 0) ::close(control_);
    Reap();
  }

 private:
  FakeAgent(pid_t pid, int control, int report) : pid_(pid), control_(control), report_(report) {}

  void Reap() {
    if (pid_ > 0) {
      int status;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    if (report_ >= 0) ::close(report_);
    report_ = -1;
  }

  // Accepts and reads until the control pipe closes, then takes what is
  // still queued (the victim has exited by then, so every read ends).
  [[noreturn]] static void Serve(int lfd, int control, int report) {
    constexpr int kMax = 32;
    int conns[kMax];
    int open = 0;
    Seen seen{0, 0};
    char buf[4096];
    auto take = [&](int fd) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n > 0) seen.bytes += n;
      return n;
    };
    for (;;) {
      pollfd fds[2 + kMax];
      fds[0] = {lfd, POLLIN, 0};
      fds[1] = {control, POLLIN, 0};
      for (int i = 0; i < open; ++i) fds[2 + i] = {conns[i], POLLIN, 0};
      if (::poll(fds, static_cast<nfds_t>(2 + open), -1) < 0) continue;
      if (fds[1].revents != 0) break;
      for (int i = open - 1; i >= 0; --i) {
        if (fds[2 + i].revents != 0 && take(conns[i]) <= 0) {
          ::close(conns[i]);
          conns[i] = conns[--open];
        }
      }
      if (fds[0].revents != 0) {
        int c = ::accept(lfd, nullptr, nullptr);
        if (c >= 0) {
          ++seen.connections;
          if (open < kMax) conns[open++] = c;
          else ::close(c);
        }
      }
    }
    ::fcntl(lfd, F_SETFL, O_NONBLOCK);
    for (int c; (c = ::accept(lfd, nullptr, nullptr)) >= 0;) {
      ++seen.connections;
      if (open < kMax) conns[open++] = c;
    }
    for (int i = 0; i < open; ++i) {
      ::fcntl(conns[i], F_SETFL, O_NONBLOCK);
      while (take(conns[i]) > 0) {
      }
    }
    (void)!::write(report, &seen, sizeof(seen));
    _exit(0);
  }

  pid_t pid_;
  int control_;
  int report_;
};

class ClientTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to play a second uid (attacker) and a non-root victim";
    // Like /tmp: anyone may create entries, only their owners move them.
    ASSERT_EQ(::chmod(tmp_.path().c_str(), 01777), 0);
  }

  std::string DefaultDir(uid_t victim) const { return tmp_.File(absl::StrCat("smime-agent-", victim)); }

  // smimectl as `uid` with the default socket path under our "/tmp" (no
  // XDG_RUNTIME_DIR, no SMIME_AGENT_SOCK).
  CommandResult Smimectl(uid_t uid, std::vector<std::string> args) const {
    args.insert(args.begin(), {testing::SmimectlBinary(), "--timeout", "5"});
    RunOptions o;
    o.env = {{"TMPDIR", tmp_.path()}, {"XDG_RUNTIME_DIR", ""}, {"SMIME_AGENT_SOCK", ""}};
    if (uid != 0) {
      o.uid = uid;
      o.gid = uid;
    }
    return RunCommand(args, o);
  }

  // An import-p12 as the victim: a PKCS#12 file and its password, what the
  // attacker is after.
  CommandResult ImportP12(uid_t uid) const {
    std::string dir = tmp_.File(absl::StrCat("files-", uid));
    ::mkdir(dir.c_str(), 0700);
    EXPECT_EQ(::chown(dir.c_str(), uid, uid), 0);
    testing::WriteFile(dir + "/key.p12", "stand-in for a PKCS#12 file", 0600);
    testing::WriteFile(dir + "/password", "the-pkcs12-password\n", 0600);
    EXPECT_EQ(::chown((dir + "/key.p12").c_str(), uid, uid), 0);
    EXPECT_EQ(::chown((dir + "/password").c_str(), uid, uid), 0);
    return Smimectl(uid, {"import-p12", "--in", dir + "/key.p12", "--password-file", dir + "/password"});
  }

  TempDir tmp_;
};

TEST_F(ClientTrustTest, DefaultDirectoryMadeByAnotherUidIsRefusedBeforeAnythingIsSent) {
  for (uid_t victim : {kVictim, uid_t{0}}) {
    SCOPED_TRACE(absl::StrCat("victim uid ", victim));
    std::string dir = DefaultDir(victim);
    auto fake = FakeAgent::Start(kAttacker, dir, 0755, dir + "/agent.sock");
    ASSERT_NE(fake, nullptr);
    CommandResult r = ImportP12(victim);
    FakeAgent::Seen seen = fake->Finish();
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("refusing the agent socket at " + dir + "/agent.sock"));
    EXPECT_THAT(r.err, HasSubstr("belongs to uid 65533"));
    EXPECT_THAT(r.err, HasSubstr("nothing was sent"));
    EXPECT_EQ(seen.connections, 0);
    EXPECT_EQ(seen.bytes, 0);
  }
}

TEST_F(ClientTrustTest, OwnDirectoryOpenToOthersIsRefused) {
  // The victim's own directory, but anyone may put a socket in it.
  std::string dir = DefaultDir(kVictim);
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), kVictim, kVictim), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  auto fake = FakeAgent::Start(kAttacker, dir, 0, dir + "/agent.sock");
  ASSERT_NE(fake, nullptr);
  CommandResult r = Smimectl(kVictim, {"keys"});
  FakeAgent::Seen seen = fake->Finish();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("has mode 0777; yours must be 0700"));
  EXPECT_EQ(seen.connections, 0);

  // Even a mode that lets others only read and enter is refused for one's
  // own directory: the agent makes it 0700.
  ASSERT_EQ(::chmod(dir.c_str(), 0711), 0);
  r = Smimectl(kVictim, {"keys"});
  EXPECT_THAT(r.err, HasSubstr("has mode 0711"));

  // Root's directory that others may write to.
  std::string root_dir = DefaultDir(0);
  ASSERT_EQ(::mkdir(root_dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(root_dir.c_str(), 0777), 0);
  auto fake_root = FakeAgent::Start(kAttacker, root_dir, 0, root_dir + "/agent.sock");
  ASSERT_NE(fake_root, nullptr);
  r = Smimectl(0, {"keys"});
  seen = fake_root->Finish();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("is writable by others (mode 0777)"));
  EXPECT_EQ(seen.connections, 0);
}

TEST_F(ClientTrustTest, SocketOfAnotherUidIsRefusedAlsoOnAnExplicitPath) {
  // The attacker's socket moved (by root) into the victim's private
  // directory: the directory is right, the socket's owner is not.
  std::string lair = tmp_.File("attacker");
  auto fake = FakeAgent::Start(kAttacker, lair, 0755, lair + "/agent.sock");
  ASSERT_NE(fake, nullptr);
  std::string dir = tmp_.File("victim");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), kVictim, kVictim), 0);
  ASSERT_EQ(::rename((lair + "/agent.sock").c_str(), (dir + "/agent.sock").c_str()), 0);
  CommandResult r = Smimectl(kVictim, {"--socket", dir + "/agent.sock", "keys"});
  FakeAgent::Seen seen = fake->Finish();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("refusing the agent socket at " + dir + "/agent.sock: the socket belongs to uid 65533"));
  EXPECT_EQ(seen.connections, 0);
}

TEST_F(ClientTrustTest, ServerOfAnotherUidIsRefusedBySoPeercred) {
  // Directory and socket file both the victim's (0700), but the listening
  // socket is held by the attacker's process: only SO_PEERCRED shows it.
  std::string dir = DefaultDir(kVictim);
  auto fake = FakeAgent::Start(kAttacker, dir, 0700, dir + "/agent.sock");
  ASSERT_NE(fake, nullptr);
  ASSERT_EQ(::chown(dir.c_str(), kVictim, kVictim), 0);
  ASSERT_EQ(::chown((dir + "/agent.sock").c_str(), kVictim, kVictim), 0);
  CommandResult r = ImportP12(kVictim);
  FakeAgent::Seen seen = fake->Finish();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("refusing the agent socket at " + dir + "/agent.sock"));
  EXPECT_THAT(r.err, HasSubstr("served by a process of uid 65533"));
  // The probe connected and sent nothing.
  EXPECT_EQ(seen.connections, 1);
  EXPECT_EQ(seen.bytes, 0);
}

TEST_F(ClientTrustTest, SymlinkIsCheckedWhereItLeads) {
  // A link in the victim's own directory to the attacker's socket.
  std::string lair = tmp_.File("attacker");
  auto fake = FakeAgent::Start(kAttacker, lair, 0755, lair + "/agent.sock");
  ASSERT_NE(fake, nullptr);
  std::string dir = DefaultDir(kVictim);
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::symlink((lair + "/agent.sock").c_str(), (dir + "/agent.sock").c_str()), 0);
  ASSERT_EQ(::lchown((dir + "/agent.sock").c_str(), kVictim, kVictim), 0);
  ASSERT_EQ(::chown(dir.c_str(), kVictim, kVictim), 0);
  CommandResult r = Smimectl(kVictim, {"keys"});
  FakeAgent::Seen seen = fake->Finish();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("belongs to uid 65533"));
  EXPECT_EQ(seen.connections, 0);
}

// The real agent, started by the same user at the default path, still
// serves: as root through the test's own helpers, and as a non-root user.
TEST_F(ClientTrustTest, RealAgentAtTheDefaultPathServesRoot) {
  std::map<std::string, std::string> env = {{"XDG_DATA_HOME", tmp_.File("data-root")},
                                            {"XDG_RUNTIME_DIR", ""},
                                            {"TMPDIR", tmp_.path()},
                                            {"SMIME_AGENT_SOCK", ""}};
  auto agent = AgentProcess::Start({}, "", env, DefaultDir(0) + "/agent.sock");
  ASSERT_THAT(agent.status(), testing::IsOk());
  CommandResult g = Smimectl(0, {"keygen", "--type", "p256", "--label", "root-key"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  CommandResult k = Smimectl(0, {"keys"});
  EXPECT_EQ(k.exit_code, 0) << k.err;
  EXPECT_THAT(k.out, HasSubstr("root-key"));
}

TEST_F(ClientTrustTest, RealAgentAtTheDefaultPathServesANonRootUser) {
  std::string data = tmp_.File("data-nobody");
  ASSERT_EQ(::mkdir(data.c_str(), 0700), 0);
  ASSERT_EQ(::chown(data.c_str(), kVictim, kVictim), 0);
  std::vector<std::string> envs = {"XDG_DATA_HOME=" + data, "TMPDIR=" + tmp_.path(), "HOME=" + data,
                                   "PATH=/usr/bin:/bin"};
  std::vector<char*> c_env;
  for (auto& e : envs) c_env.push_back(e.data());
  c_env.push_back(nullptr);
  std::string bin = testing::AgentBinary();
  char* c_argv[] = {bin.data(), nullptr};
  std::string log = tmp_.File("agent-nobody.log");
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    if (::setgroups(0, nullptr) != 0 || ::setgid(kVictim) != 0 || ::setuid(kVictim) != 0) _exit(126);
    ::execve(c_argv[0], c_argv, c_env.data());
    _exit(127);
  }
  ::close(log_fd);
  ASSERT_GT(pid, 0);
  // Ready when smimectl, as that user, gets an answer; bounded by a
  // deadline, not a fixed sleep.
  CommandResult k;
  bool exited = false;
  for (absl::Time deadline = absl::Now() + absl::Seconds(30); absl::Now() < deadline;) {
    k = Smimectl(kVictim, {"keys"});
    if (k.exit_code == 0) break;
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      exited = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(k.exit_code, 0) << k.err << testing::ReadFile(log);
  CommandResult g = Smimectl(kVictim, {"keygen", "--type", "p256", "--label", "nobody-key"});
  EXPECT_EQ(g.exit_code, 0) << g.err;
  k = Smimectl(kVictim, {"keys"});
  EXPECT_THAT(k.out, HasSubstr("nobody-key"));
  // Trust goes one way: root's client does not take a user's socket.
  CommandResult as_root = Smimectl(0, {"--socket", DefaultDir(kVictim) + "/agent.sock", "keys"});
  EXPECT_THAT(as_root.err, HasSubstr("belongs to uid 65534, not to you (uid 0) or root"));
  if (!exited) {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
  }
}

}  // namespace
}  // namespace smime
