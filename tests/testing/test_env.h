// Real parts for tests: temp dirs, subprocesses, throwaway SoftHSM tokens
// made by softhsm-config/make-token.sh, and the real agent binary.
#ifndef SMIME_TESTS_TESTING_TEST_ENV_H_
#define SMIME_TESTS_TESTING_TEST_ENV_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace smime::testing {

inline constexpr const char* kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& data, int mode = 0644);

struct CommandResult {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
};

struct RunOptions {
  std::string stdin_data;
  std::map<std::string, std::string> env;  // added to the test's environment
  // When set (and the test runs as root), the child drops to this uid/gid
  // before exec.
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  absl::Duration timeout = absl::Seconds(60);
};

inline RunOptions WithEnv(std::map<std::string, std::string> env) {
  RunOptions o;
  o.env = std::move(env);
  return o;
}
inline RunOptions AsUser(uid_t uid, gid_t gid) {
  RunOptions o;
  o.uid = uid;
  o.gid = gid;
  return o;
}

// Runs argv[0] (a path or a name on PATH) and collects its output.
CommandResult RunCommand(const std::vector<std::string>& argv, const RunOptions& options = {});
// RunCommand of `openssl args...`.
CommandResult Openssl(std::vector<std::string> args, const RunOptions& options = {});

// A throwaway SoftHSM token in its own directory.
struct TestToken {
  std::unique_ptr<TempDir> dir;
  std::string label;
  std::string conf;      // SOFTHSM2_CONF value
  std::string pin_file;  // mode 0600
  std::string Path(const std::string& rel) const { return dir->path() + "/" + rel; }
};

// Runs softhsm-config/make-token.sh; `with_test_keys` adds the keys and
// certificates that script documents (alice, bob, carol, dave, erin).
TestToken MakeToken(const std::string& label, bool with_test_keys);
// A copy of `token` in a directory of its own, for a test that changes it:
// cheaper than making one (RSA keys and certificates take seconds).
TestToken CopyToken(const TestToken& token);

// The flags that put an agent on `token` through `module`: the module, the
// token's label, its PIN file.
std::vector<std::string> AgentArgs(const TestToken& token, const std::string& module = kSoftHsmModule);

// The real smime-agent binary, started on a socket in a temp dir. Should
// the thread that started it die (a crashed test, ^C), the agent gets
// SIGTERM: it does not linger on the token and the socket.
class AgentProcess {
 public:
  // Starts the agent with `args` (plus --socket unless given, or unless
  // `default_socket` names where the agent's own default will put it) and
  // SOFTHSM2_CONF=`softhsm_conf` if not empty; waits until it serves (health
  // check) or exits. On early exit returns its stderr as the error.
  static absl::StatusOr<std::unique_ptr<AgentProcess>> Start(
      std::vector<std::string> args, const std::string& softhsm_conf,
      std::map<std::string, std::string> env = {}, const std::string& default_socket = "");
  // The same with another agent binary than the one built with the tests.
  static absl::StatusOr<std::unique_ptr<AgentProcess>> StartProgram(
      const std::string& binary, std::vector<std::string> args, const std::string& softhsm_conf,
      std::map<std::string, std::string> env = {}, const std::string& default_socket = "");
  ~AgentProcess();

  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  // SIGTERM, wait; returns the exit code (128+N if killed by signal N).
  int Stop();
  bool Running();
  // Everything the agent wrote to stderr so far.
  std::string Log() const;
  // Whether one line of the log (audit lines included) holds all `parts`.
  bool LogHasLine(const std::vector<std::string>& parts) const;
  // Runs the real smimectl against this agent's socket.
  CommandResult Smimectl(std::vector<std::string> args, const RunOptions& options = {}) const;

 private:
  AgentProcess() = default;
  std::unique_ptr<TempDir> dir_;
  std::string socket_;
  std::string log_path_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// Polls `done` until it holds or `timeout` passes; returns whether it held.
// For what a test cannot be told of (a file another process makes, a log
// line): the timeout is a generous bound for a broken run, never the
// verdict.
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout);

// Paths of the built binaries and the source tree.
std::string AgentBinary();
std::string SmimectlBinary();
std::string SourceDir();

}  // namespace smime::testing

#endif  // SMIME_TESTS_TESTING_TEST_ENV_H_
