#include "tests/testing/agent_fixture.h"

namespace smime::testing {
namespace {

absl::StatusOr<std::unique_ptr<AgentProcess>> StartAgent(const TestToken& token, const AgentOptions& options) {
  std::vector<std::string> args = AgentArgs(token, options.module);
  args.insert(args.end(), options.agent_args.begin(), options.agent_args.end());
  return AgentProcess::Start(std::move(args), token.conf, options.env);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenAgent>> TokenAgent::Make(const std::string& label, bool with_test_keys,
                                                             AgentOptions options) {
  return StartOn(MakeToken(label, with_test_keys), std::move(options));
}

absl::StatusOr<std::unique_ptr<TokenAgent>> TokenAgent::StartOn(TestToken token, AgentOptions options) {
  auto agent = StartAgent(token, options);
  if (!agent.ok()) return agent.status();
  return std::unique_ptr<TokenAgent>(new TokenAgent(std::move(token), *std::move(agent)));
}

absl::StatusOr<std::unique_ptr<AgentProcess>> TokenAgent::StartAnother(const AgentOptions& options) const {
  return StartAgent(token_, options);
}

void CheckAgentBeforeTest(AgentProcess* agent) {
  ASSERT_TRUE(agent != nullptr && agent->Running()) << (agent != nullptr ? agent->Log() : "no agent");
}

void CheckAgentAfterTest(AgentProcess* agent) {
  ASSERT_TRUE(agent != nullptr);
  EXPECT_TRUE(agent->Running()) << agent->Log();
  auto c = client::AgentClient::Connect(agent->socket());
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_THAT((*c)->ListKeys().status(), IsOk());
}

}  // namespace smime::testing
