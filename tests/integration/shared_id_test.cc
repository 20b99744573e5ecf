// Keys that share a CKA_ID (issue 14 item 2) through the real agent and
// smimectl, on the token of tests/tokens/shared_id_token.h (key pairs made
// by other tools, two per CKA_ID): each key lists its own certificate,
// retiring one leaves the other signing, deleting one leaves the other's
// public key and certificate on the token.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"
#include "tests/tokens/shared_id_token.h"

namespace smime {
namespace {

using ::smime::testing::CommandResult;
using ::smime::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class SharedIdAgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    made_ = new testing::SharedIdToken("shared-agent");
    auto agent = testing::AgentProcess::Start({"--module", testing::kSoftHsmModule, "--token", "shared-agent",
                                               "--pin-file", made_->token().pin_file},
                                              made_->token().conf);
    ASSERT_THAT(agent.status(), IsOk());
    agent_ = agent->release();
  }
  static void TearDownTestSuite() {
    delete agent_;
    delete made_;
  }
  void SetUp() override { ASSERT_TRUE(agent_ != nullptr && agent_->Running()); }

  static CommandResult Ctl(std::vector<std::string> args) { return agent_->Smimectl(std::move(args)); }
  static nlohmann::json KeyJson(const std::string& label) {
    CommandResult r = Ctl({"keys", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const auto& k : nlohmann::json::parse(r.out)) {
      if (k["label"] == label) return k;
    }
    return {};
  }
  // The objects under CKA_ID `id` as pkcs11-tool lists them: "KIND LABEL",
  // sorted.
  static std::vector<std::string> ObjectsUnder(const std::string& id) {
    CommandResult r = testing::RunCommand({"pkcs11-tool", "--module", testing::kSoftHsmModule, "--token-label",
                                           "shared-agent", "--login", "--pin", made_->pin(), "--list-objects"},
                                          testing::WithEnv({{"SOFTHSM2_CONF", made_->token().conf}}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // One block per object: "<Kind> Object; ..." then indented "label:" and
    // "ID:" lines.
    std::vector<std::string> out;
    std::string kind, label;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (size_t at = line.find(" Object;"); at != absl::string_view::npos && line[0] != ' ') {
        kind = std::string(line.substr(0, at));
        label.clear();
      } else if (absl::ConsumePrefix(&line, "  label:")) {
        label = std::string(absl::StripAsciiWhitespace(line));
      } else if (absl::ConsumePrefix(&line, "  ID:") && absl::StripAsciiWhitespace(line) == id) {
        out.push_back(kind + " " + label);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  static testing::SharedIdToken* made_;
  static testing::AgentProcess* agent_;
};
testing::SharedIdToken* SharedIdAgentTest::made_ = nullptr;
testing::AgentProcess* SharedIdAgentTest::agent_ = nullptr;

TEST_F(SharedIdAgentTest, EachKeyListsItsOwnCertificate) {
  for (const char* name : {"r1", "r2", "e1", "e2"}) {
    nlohmann::json k = KeyJson(name);
    ASSERT_FALSE(k.is_null()) << name;
    EXPECT_EQ(k["emails"], nlohmann::json::array({std::string(name) + "@example.com"})) << name;
  }
}

TEST_F(SharedIdAgentTest, RetireAndDeleteOneLeaveTheOther) {
  for (auto [gone, kept, id] : {std::tuple{"r1", "r2", "0a"}, std::tuple{"e2", "e1", "0b"}}) {
    CommandResult retire = Ctl({"retire", "--key", gone});
    ASSERT_EQ(retire.exit_code, 0) << retire.err;
    EXPECT_EQ(KeyJson(gone)["status"], "retired");
    EXPECT_NE(KeyJson(kept)["status"], "retired") << kept;

    CommandResult del = Ctl({"delete", "--key", gone, "--yes"});
    ASSERT_EQ(del.exit_code, 0) << del.err;
    EXPECT_THAT(del.out, HasSubstr("3 token objects destroyed"));
    EXPECT_TRUE(KeyJson(gone).is_null());
    EXPECT_THAT(ObjectsUnder(id), ElementsAre(std::string("Certificate ") + kept,
                                              std::string("Private Key ") + kept,
                                              std::string("Public Key ") + kept));
    EXPECT_NE(KeyJson(kept)["status"], "retired") << kept;
    EXPECT_EQ(KeyJson(kept)["emails"], nlohmann::json::array({std::string(kept) + "@example.com"}));
  }
}

}  // namespace
}  // namespace smime
