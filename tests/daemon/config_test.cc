#include "agent/daemon/config.h"

#include <gtest/gtest.h>

#include "agent/rpc/grpc_status.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime::agent {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::smime::testing::TempDir;
using ::smime::testing::WriteFile;
using ::testing::HasSubstr;

TEST(Config, ReadsAllKeys) {
  TempDir dir;
  WriteFile(dir.File("c.toml"),
            "module = \"/usr/lib/softhsm/libsofthsm2.so\"\n"
            "token = \"alice\"\n"
            "pin_file = \"/run/pin\"\n"
            "socket = \"/run/agent.sock\"\n"
            "log_level = \"debug\"\n"
            "max_sessions = 4\n"
            "max_message_bytes = 1048576\n"
            "allow_final_pin_try = true\n");
  auto c = LoadConfigFile(dir.File("c.toml"));
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->module, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(c->token, "alice");
  EXPECT_EQ(c->pin_file, "/run/pin");
  EXPECT_EQ(c->socket, "/run/agent.sock");
  EXPECT_EQ(c->max_sessions, 4);
  EXPECT_EQ(c->max_message_bytes, 1 << 20);
  EXPECT_TRUE(c->allow_final_pin_try);
  EXPECT_THAT(Validate(*c), IsOk());
}

struct BadConfig {
  const char* text;
  const char* message;
};
class ConfigBadTest : public ::testing::TestWithParam<BadConfig> {};
TEST_P(ConfigBadTest, IsRefusedWithReason) {
  TempDir dir;
  WriteFile(dir.File("c.toml"), GetParam().text);
  auto c = LoadConfigFile(dir.File("c.toml"));
  absl::Status st = c.ok() ? Validate(*c) : c.status();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().message)));
}
INSTANTIATE_TEST_SUITE_P(
    Cases, ConfigBadTest,
    ::testing::Values(BadConfig{"modul = \"x\"\n", "unknown key \"modul\""},
                      BadConfig{"max_sessions = \"four\"\n", "wrong type (it must be an integer)"},
                      // Found by fuzz_config: a float where an integer goes was
                      // converted with undefined behaviour, or truncated.
                      BadConfig{"max_request_bytes = 0.1E042\n", "must be an integer"},
                      BadConfig{"max_sessions = 4.7\n", "must be an integer"},
                      BadConfig{"allow_final_pin_try = 1\n", "must be true or false"},
                      BadConfig{"socket = 5\n", "must be a string"},
                      BadConfig{"pin = \"1234\"\n", "unknown key \"pin\""},
                      BadConfig{"module = [\n", "c.toml:"},
                      BadConfig{"module = \"/m.so\"\n", "needs a PIN"},
                      BadConfig{"pin_file = \"a\"\npin_env = \"B\"\n", "not both"},
                      BadConfig{"max_sessions = 0\n", "max_sessions"},
                      BadConfig{"max_request_bytes = 65536\n", "max_request_bytes must be between 128 KiB"},
                      BadConfig{"max_message_bytes = 0\n", "max_message_bytes"},
                      BadConfig{"log_level = \"loud\"\n", "unknown log level"}));

TEST(Config, MissingFile) {
  EXPECT_THAT(LoadConfigFile("/nonexistent/agent.toml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/nonexistent/agent.toml")));
}

TEST(GrpcStatus, InternalDetailStaysInLog) {
  grpc::Status g = ToGrpcStatus(absl::InternalError("C_Sign: CKR_GENERAL_ERROR at 0xdeadbeef"), "ab-1");
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(g.error_message().find("deadbeef"), std::string::npos);
  EXPECT_NE(g.error_message().find("ab-1"), std::string::npos);
  grpc::Status nf = ToGrpcStatus(absl::NotFoundError("no key matches \"x\""));
  EXPECT_EQ(nf.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(nf.error_message(), "no key matches \"x\"");
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("gone")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcStatus(absl::PermissionDeniedError("no")).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ToGrpcStatus(absl::FailedPreconditionError("locked")).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace smime::agent
