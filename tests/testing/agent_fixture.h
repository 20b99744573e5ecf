// The integration tests' one fixture: a throwaway SoftHSM token with the real
// agent on it (TokenAgent), and a base for the test suites that share one
// (SharedAgentTest). Suites that need more (a CA, software peers) add it in
// their own SetUpTestSuite after the base's.
#ifndef SMIME_TESTS_TESTING_AGENT_FIXTURE_H_
#define SMIME_TESTS_TESTING_AGENT_FIXTURE_H_

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime::testing {

// How an agent is started on a token, beyond AgentArgs.
struct AgentOptions {
  // Options with these flags only.
  static AgentOptions Args(std::vector<std::string> agent_args) {
    AgentOptions o;
    o.agent_args = std::move(agent_args);
    return o;
  }
  std::vector<std::string> agent_args;  // more flags, e.g. limits
  std::string module = kSoftHsmModule;  // or FaultShimModule()
  std::map<std::string, std::string> env;
};

class TokenAgent {
 public:
  // Makes a token labelled `label` (with make-token.sh's test keys, or
  // empty) and starts the agent on it.
  static absl::StatusOr<std::unique_ptr<TokenAgent>> Make(const std::string& label, bool with_test_keys,
                                                          AgentOptions options = {});
  // Starts the agent on a token the caller made (and filled).
  static absl::StatusOr<std::unique_ptr<TokenAgent>> StartOn(TestToken token, AgentOptions options = {});

  const TestToken& token() const { return token_; }
  AgentProcess& agent() const { return *agent_; }
  // Another agent on the same token, e.g. with other limits or through the
  // fault module; the caller stops it.
  absl::StatusOr<std::unique_ptr<AgentProcess>> StartAnother(const AgentOptions& options) const;

 private:
  TokenAgent(TestToken token, std::unique_ptr<AgentProcess> agent)
      : token_(std::move(token)), agent_(std::move(agent)) {}
  TestToken token_;
  std::unique_ptr<AgentProcess> agent_;
};

// The checks around each test on an agent that tests share: it runs before
// the test, and after it (whatever the test sent, malformed input included)
// it still serves. Fatal failures: a test does not run on a dead agent.
void CheckAgentBeforeTest(AgentProcess* agent);
void CheckAgentAfterTest(AgentProcess* agent);

// What a SharedAgentTest suite makes: TokenAgent::Make's arguments.
struct SharedAgentSpec {
  SharedAgentSpec(std::string token_label, bool test_keys = true, AgentOptions agent_options = {})
      : label(std::move(token_label)), with_test_keys(test_keys), options(std::move(agent_options)) {}
  std::string label;
  bool with_test_keys;
  AgentOptions options;
};

// A test suite whose tests share one TokenAgent, made before the first test
// and stopped after the last. `Suite` is the class deriving from this one;
// it says what to make in `static SharedAgentSpec AgentSpec()`.
template <typename Suite>
class SharedAgentTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    SharedAgentSpec spec = Suite::AgentSpec();
    auto made = TokenAgent::Make(spec.label, spec.with_test_keys, std::move(spec.options));
    ASSERT_THAT(made.status(), IsOk());
    shared_ = *std::move(made);
    token_ = &shared_->token();
    agent_ = &shared_->agent();
  }
  static void TearDownTestSuite() {
    token_ = nullptr;
    agent_ = nullptr;
    shared_.reset();
  }

 protected:
  void SetUp() override { CheckAgentBeforeTest(agent_); }
  void TearDown() override { CheckAgentAfterTest(agent_); }

  // A client of the suite's agent.
  static std::unique_ptr<client::AgentClient> Client() {
    auto c = client::AgentClient::Connect(agent_->socket());
    EXPECT_THAT(c.status(), IsOk());
    return c.ok() ? *std::move(c) : nullptr;
  }
  // The real smimectl against the suite's agent.
  static CommandResult Ctl(std::vector<std::string> args, const RunOptions& options = {}) {
    return agent_->Smimectl(std::move(args), options);
  }

  static inline std::unique_ptr<TokenAgent> shared_;
  // Views of shared_ by the names the tests use.
  static inline const TestToken* token_ = nullptr;
  static inline AgentProcess* agent_ = nullptr;
};

}  // namespace smime::testing

#endif  // SMIME_TESTS_TESTING_AGENT_FIXTURE_H_
