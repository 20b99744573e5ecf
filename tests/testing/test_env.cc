#include "tests/testing/test_env.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "client/client.h"

extern char** environ;

namespace smime::testing {

std::string AgentBinary() { return SMIME_AGENT_BIN; }
std::string SmimectlBinary() { return SMIMECTL_BIN; }
std::string SourceDir() { return SMIME_SOURCE_DIR; }

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = absl::StrCat(tmp && tmp[0] ? tmp : "/tmp", "/smime-test-XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data, int mode) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("cannot write " + path);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::fchmod(fd, static_cast<mode_t>(mode));
  ::close(fd);
}

namespace {
std::vector<std::string> MergedEnv(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv_in, const RunOptions& options) {
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> envs = MergedEnv(options.env);
  auto c_argv = CStrings(argv);
  auto c_env = CStrings(envs);
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) || ::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC)) {
    throw std::runtime_error("pipe failed");
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (options.gid != static_cast<gid_t>(-1) && (::setgroups(0, nullptr) != 0 || ::setgid(options.gid) != 0)) _exit(126);
    if (options.uid != static_cast<uid_t>(-1) && ::setuid(options.uid) != 0) _exit(126);
    ::execvpe(c_argv[0], c_argv.data(), c_env.data());
    _exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  CommandResult result;
  // Feed stdin and drain both outputs without deadlock.
  size_t in_off = 0;
  if (options.stdin_data.empty()) {
    ::close(in_pipe[1]);
    in_pipe[1] = -1;
  } else {
    ::fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  }
  absl::Time deadline = absl::Now() + options.timeout;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd fds[3];
    int n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_open) { out_i = n; fds[n++] = {out_pipe[0], POLLIN, 0}; }
    if (err_open) { err_i = n; fds[n++] = {err_pipe[0], POLLIN, 0}; }
    if (in_pipe[1] >= 0) { in_i = n; fds[n++] = {in_pipe[1], POLLOUT, 0}; }
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, static_cast<nfds_t>(n), wait_ms) < 0 && errno != EINTR) break;
    char buf[65536];
    auto drain = [&](int idx, int fd, std::string* dst, bool* open) {
      if (idx < 0 || fds[idx].revents == 0) return;
      ssize_t r = ::read(fd, buf, sizeof(buf));
      if (r > 0) dst->append(buf, static_cast<size_t>(r));
      else *open = false;
    };
    drain(out_i, out_pipe[0], &result.out, &out_open);
    drain(err_i, err_pipe[0], &result.err, &err_open);
    if (in_i >= 0 && fds[in_i].revents != 0) {
      ssize_t w = ::write(in_pipe[1], options.stdin_data.data() + in_off, options.stdin_data.size() - in_off);
      if (w > 0) in_off += static_cast<size_t>(w);
      if (w < 0 || in_off == options.stdin_data.size()) {
        ::close(in_pipe[1]);
        in_pipe[1] = -1;
      }
    }
  }
  if (in_pipe[1] >= 0) ::close(in_pipe[1]);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = DecodeWait(status);
  return result;
}

TestToken MakeToken(const std::string& label, bool with_test_keys) {
  TestToken t;
  t.dir = std::make_unique<TempDir>();
  t.label = label;
  std::vector<std::string> argv = {SourceDir() + "/softhsm-config/make-token.sh", t.dir->path(),
                                   "--label", label};
  if (with_test_keys) argv.push_back("--with-test-keys");
  // Seconds on an idle machine (RSA keys, certificates); the bound is for a
  // broken run only.
  RunOptions options;
  options.timeout = absl::Minutes(5);
  CommandResult r = RunCommand(argv, options);
  if (r.exit_code != 0) throw std::runtime_error("make-token.sh failed: " + r.err);
  t.conf = t.dir->path() + "/softhsm2.conf";
  t.pin_file = t.dir->path() + "/pin";
  return t;
}

TestToken CopyToken(const TestToken& from) {
  TestToken t;
  t.dir = std::make_unique<TempDir>();
  t.label = from.label;
  std::filesystem::copy(from.dir->path(), t.dir->path(), std::filesystem::copy_options::recursive);
  t.conf = t.Path("softhsm2.conf");
  t.pin_file = t.Path("pin");
  // The configuration names its token store by absolute path.
  WriteFile(t.conf, absl::StrReplaceAll(ReadFile(from.conf), {{from.dir->path(), t.dir->path()}}));
  return t;
}

std::vector<std::string> AgentArgs(const TestToken& token, const std::string& module) {
  return {"--module", module, "--token", token.label, "--pin-file", token.pin_file};
}

absl::StatusOr<std::unique_ptr<AgentProcess>> AgentProcess::Start(
    std::vector<std::string> args, const std::string& softhsm_conf,
    std::map<std::string, std::string> env, const std::string& default_socket) {
  return StartProgram(AgentBinary(), std::move(args), softhsm_conf, std::move(env), default_socket);
}

absl::StatusOr<std::unique_ptr<AgentProcess>> AgentProcess::StartProgram(
    const std::string& binary, std::vector<std::string> args, const std::string& softhsm_conf,
    std::map<std::string, std::string> env, const std::string& default_socket) {
  std::unique_ptr<AgentProcess> p(new AgentProcess());
  p->dir_ = std::make_unique<TempDir>();
  bool has_socket = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--socket" && i + 1 < args.size()) {
      has_socket = true;
      p->socket_ = args[i + 1];
    }
  }
  if (!has_socket && !default_socket.empty()) {
    p->socket_ = default_socket;
  } else if (!has_socket) {
    p->socket_ = p->dir_->path() + "/run/agent.sock";
    args.push_back("--socket");
    args.push_back(p->socket_);
  }
  p->log_path_ = p->dir_->path() + "/agent.log";
  if (!softhsm_conf.empty()) env["SOFTHSM2_CONF"] = softhsm_conf;
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> envs = MergedEnv(env);
  auto c_argv = CStrings(argv);
  auto c_env = CStrings(envs);
  int log_fd = ::open(p->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) _exit(127);  // the parent died before prctl
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    _exit(127);
  }
  ::close(log_fd);
  p->pid_ = pid;
  // Ready when the health service says SERVING; failed when the process
  // exits first. Bounded by a deadline, never a fixed sleep.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    if (!p->Running()) {
      return absl::FailedPreconditionError(absl::StrCat("agent exited with ", p->exit_code_, ": ", p->Log()));
    }
    auto client = client::AgentClient::Connect(p->socket_, absl::Seconds(5));
    if (client.ok() && (*client)->WaitReady(absl::Milliseconds(500)).ok()) return p;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError("agent did not become ready: " + p->Log());
}

bool AgentProcess::Running() {
  if (pid_ < 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = DecodeWait(status);
    pid_ = -1;
    return false;
  }
  return true;
}

int AgentProcess::Stop() {
  if (pid_ < 0) return exit_code_;
  ::kill(pid_, SIGTERM);
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (Running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  if (pid_ >= 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
    exit_code_ = DecodeWait(status);
    pid_ = -1;
  }
  return exit_code_;
}

AgentProcess::~AgentProcess() { Stop(); }

std::string AgentProcess::Log() const { return ReadFile(log_path_); }

bool AgentProcess::LogHasLine(const std::vector<std::string>& parts) const {
  for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
    bool all = true;
    for (const std::string& p : parts) all = all && absl::StrContains(line, p);
    if (all) return true;
  }
  return false;
}

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (done()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

CommandResult AgentProcess::Smimectl(std::vector<std::string> args, const RunOptions& options) const {
  args.insert(args.begin(), {SmimectlBinary(), "--socket", socket_});
  return RunCommand(args, options);
}

CommandResult Openssl(std::vector<std::string> args, const RunOptions& options) {
  args.insert(args.begin(), "openssl");
  return RunCommand(args, options);
}

}  // namespace smime::testing
