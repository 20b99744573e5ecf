// What a hostile or broken client can hold of the real agent: connections
// (in total and from another uid), calls in flight from one process, streams
// that neither send nor read, and message bytes in flight. Each limit is
// set low on the command line so a test reaches it with little traffic; the
// verdicts wait for events (WaitFor), never for a guessed time.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "smime/agent/v1/agent.grpc.pb.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

namespace v1 = ::smime::agent::v1;
using ::smime::testing::AgentProcess;
using ::smime::testing::CommandResult;
using ::testing::HasSubstr;

// `nonblocking`: a full backlog (an agent that stopped accepting) fails the
// connect at once instead of blocking it.
int ConnectRaw(const std::string& path, bool nonblocking = false) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

class FloodsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { token_ = new testing::TestToken(testing::MakeToken("floods", true)); }
  static void TearDownTestSuite() {
    delete token_;
    token_ = nullptr;
  }

  void StartAgent(const std::vector<std::string>& extra) {
    std::vector<std::string> args = testing::AgentArgs(*token_);
    args.insert(args.end(), extra.begin(), extra.end());
    auto agent = AgentProcess::Start(args, token_->conf);
    ASSERT_THAT(agent.status(), testing::IsOk());
    agent_ = *std::move(agent);
    stub_ = v1::Agent::NewStub(
        grpc::CreateChannel("unix:" + agent_->socket(), grpc::InsecureChannelCredentials()));
  }
  CommandResult Ctl(std::vector<std::string> args) const { return agent_->Smimectl(std::move(args)); }
  // ListKeys from this process; `own_connection`: over a connection of its
  // own (the agent also bounds calls per connection, which makes a further
  // call on a full one wait instead of failing).
  grpc::Status ListKeys(bool own_connection = false) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListKeysRequest req;
    v1::ListKeysResponse resp;
    if (!own_connection) return stub_->ListKeys(&ctx, req, &resp);
    grpc::ChannelArguments args;
    args.SetInt("smime.test.connection", ++connections_);  // not shared with another channel
    auto stub = v1::Agent::NewStub(
        grpc::CreateCustomChannel("unix:" + agent_->socket(), grpc::InsecureChannelCredentials(), args));
    return stub->ListKeys(&ctx, req, &resp);
  }

  // A Verify stream that sends its options and `data_bytes` of a message,
  // then waits (until the test cancels it or the agent does).
  struct OpenStream {
    std::unique_ptr<grpc::ClientContext> ctx = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<grpc::ClientReaderWriter<v1::VerifyRequest, v1::VerifyResponse>> stream;
  };
  OpenStream Stall(size_t data_bytes, bool end = false) {
    OpenStream s;
    s.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    s.stream = stub_->Verify(s.ctx.get());
    v1::VerifyRequest options;
    options.mutable_options()->set_signature_only(true);
    s.stream->Write(options);
    for (size_t sent = 0; sent < data_bytes; sent += 64 << 10) {
      v1::VerifyRequest chunk;
      chunk.set_data(std::string(std::min<size_t>(64 << 10, data_bytes - sent), 'A'));
      if (!s.stream->Write(chunk)) break;
    }
    if (end) s.stream->WritesDone();
    return s;
  }
  static grpc::Status Finish(OpenStream& s) {
    v1::VerifyResponse resp;
    while (s.stream->Read(&resp)) {
    }
    return s.stream->Finish();
  }

  static testing::TestToken* token_;
  std::unique_ptr<AgentProcess> agent_;
  std::unique_ptr<v1::Agent::Stub> stub_;
  int connections_ = 0;
};

testing::TestToken* FloodsTest::token_ = nullptr;

TEST_F(FloodsTest, ConnectionFloodFromAnotherUidLeavesTheUserAWayIn) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  // The agent starts with the usual 1,024 open files (inherited).
  rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit usual{std::min<rlim_t>(1024, saved.rlim_max), saved.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &usual), 0);
  StartAgent({});
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  // Let uid 65534 reach the socket, as a careless mode would.
  std::string dir = agent_->socket().substr(0, agent_->socket().rfind('/'));
  std::string parent = dir.substr(0, dir.rfind('/'));
  ASSERT_EQ(::chmod(parent.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(agent_->socket().c_str(), 0666), 0);
  // 1,100 idle connections from uid 65534: more than the agent's default
  // 1,024 open files, as the review's flood.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    rlimit fds{4096, std::max<rlim_t>(4096, saved.rlim_max)};
    ::setrlimit(RLIMIT_NOFILE, &fds);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(3);
    // Keep connecting until 1,100 are open: a full backlog (the agent is
    // behind, or has stopped accepting) is retried for up to 20 s, so an
    // agent that runs out of descriptors is still flooded past its limit.
    size_t opened = 0;
    absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (opened < 1100 && absl::Now() < give_up) {
      if (ConnectRaw(agent_->socket(), /*nonblocking=*/true) >= 0) {
        ++opened;
      } else {
        ::usleep(2000);
      }
    }
    char c = opened > 0 ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  EXPECT_EQ(c, 'y');
  // The agent's user still gets in, from a new process and through the
  // client library, while the flood's connections are open.
  CommandResult keys = Ctl({"keys"});
  EXPECT_EQ(keys.exit_code, 0) << keys.err << agent_->Log();
  EXPECT_TRUE(ListKeys().ok());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::chmod(agent_->socket().c_str(), 0600);
  ::chmod(dir.c_str(), 0700);
  ::chmod(parent.c_str(), 0700);
  EXPECT_TRUE(agent_->LogHasLine({"event=connection_refused", "max_connections_per_uid reached", "peer_uid=65534"}))
      << agent_->Log();
  // Rate-limited: a line a second at most, not one per refused connection.
  size_t lines = 0;
  for (size_t at = agent_->Log().find("event=connection_refused"); at != std::string::npos;
       at = agent_->Log().find("event=connection_refused", at + 1)) {
    ++lines;
  }
  EXPECT_LT(lines, 100u);
}

TEST_F(FloodsTest, IdleConnectionIsClosed) {
  StartAgent({"--connection-idle-seconds", "1"});
  int fd = ConnectRaw(agent_->socket());
  ASSERT_GE(fd, 0);
  // The agent sends its HTTP/2 settings, a GOAWAY once idle, then closes.
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
  }
  EXPECT_EQ(n, 0) << "the idle connection was not closed: " << std::strerror(errno);
  ::close(fd);
  EXPECT_TRUE(ListKeys().ok());
}

TEST_F(FloodsTest, OneProcessMayHaveSoManyCallsInFlight) {
  StartAgent({"--max-calls-per-client", "2"});
  OpenStream a = Stall(0);
  OpenStream b = Stall(0);
  // Once both streams are in the agent, this process's third call waits for
  // nothing: it is refused.
  grpc::Status third;
  EXPECT_TRUE(testing::WaitFor([&] { return (third = ListKeys(true)).error_code() == grpc::RESOURCE_EXHAUSTED; },
                               absl::Seconds(20)))
      << third.error_message();
  EXPECT_THAT(third.error_message(), HasSubstr("calls in flight, the most one client may have (max_calls_per_client)"));
  // Another process is not affected.
  CommandResult keys = Ctl({"keys"});
  EXPECT_EQ(keys.exit_code, 0) << keys.err;
  // The slots come back when the calls end.
  a.ctx->TryCancel();
  b.ctx->TryCancel();
  Finish(a);
  Finish(b);
  EXPECT_TRUE(testing::WaitFor([&] { return ListKeys(true).ok(); }, absl::Seconds(20)));
}

TEST_F(FloodsTest, StreamThatSendsNothingIsCancelled) {
  StartAgent({"--stream-idle-seconds", "1"});
  OpenStream stalled = Stall(64 << 10);
  // The client's own deadline is 60 s away; the agent ends the call first.
  grpc::Status status = Finish(stalled);
  EXPECT_EQ(status.error_code(), grpc::CANCELLED) << status.error_message();
  EXPECT_TRUE(agent_->LogHasLine({"event=stream_idle_cancelled"})) << agent_->Log();
  EXPECT_TRUE(ListKeys().ok());
}

TEST_F(FloodsTest, MessageBytesInFlightAreBounded) {
  StartAgent({"--max-bytes-in-flight", "1048576"});
  // 768 KiB held by a stream that has not ended...
  OpenStream holder = Stall(768 << 10);
  // ...so a second one of 512 KiB does not fit, once the first is read in.
  grpc::Status second;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        OpenStream s = Stall(512 << 10, /*end=*/true);
        second = Finish(s);
        return second.error_code() == grpc::RESOURCE_EXHAUSTED;
      },
      absl::Seconds(20)))
      << second.error_message();
  EXPECT_THAT(second.error_message(), HasSubstr("of messages in flight, its limit of 1 MiB (max_bytes_in_flight)"));
  // Once the first ends, its bytes are given back: the same request is
  // read to its end (and refused for what it is, not for its size).
  holder.stream->WritesDone();
  Finish(holder);
  OpenStream again = Stall(512 << 10, /*end=*/true);
  grpc::Status after = Finish(again);
  EXPECT_NE(after.error_code(), grpc::RESOURCE_EXHAUSTED) << after.error_message();
  EXPECT_EQ(after.error_code(), grpc::INVALID_ARGUMENT) << after.error_message();
}

}  // namespace
}  // namespace smime
