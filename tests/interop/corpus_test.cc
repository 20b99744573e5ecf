// The shared interop corpus through the agent. Every ORACLE.tsv row that is
// an `openssl cms -verify` / `-decrypt` pipeline is replayed as agent calls
// (Verify / Decrypt over the real socket) with the corpus keys on a SoftHSM
// token, and must end as OpenSSL ended: opened or verified with the same
// content hash, or refused. Rows that are no S/MIME operation (PKCS#12 and
// key parsing, password recipients, content extraction without checking)
// are counted and named, never dropped silently.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "tests/testing/agent_fixture.h"
#include "tests/testing/ossl_verify.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::ReadFile;
namespace v1 = ::smime::agent::v1;

const std::string& DataDir() {
  static const std::string dir = testing::SourceDir() + "/tests/interop/data";
  return dir;
}

struct Row {
  std::string id, kind, command, expected;
};

std::vector<Row> LoadOracle() {
  std::vector<Row> rows;
  std::ifstream in(DataDir() + "/ORACLE.tsv");
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() == 4) rows.push_back({f[0], f[1], f[2], std::string(absl::StripAsciiWhitespace(f[3]))});
  }
  return rows;
}

// One step of a replayed pipeline.
struct Stage {
  enum Kind { kBase64, kVerify, kDecrypt } kind;
  std::string in;  // input file; empty: the previous stage's output
  v1::VerifyOptions verify;
  std::string content_file;
  std::string key_label;  // decrypt: the -inkey file, the key's label on the token
};

struct Plan {
  std::vector<Stage> stages;
  std::string untranslatable;  // why the row is no agent operation
};

// Replaces "<(...)" with "PROCSUB(...)" tokens free of spaces and pipes.
std::string FoldProcessSubstitutions(const std::string& cmd) {
  std::string out;
  for (size_t i = 0; i < cmd.size(); ++i) {
    if (cmd.compare(i, 2, "<(") == 0) {
      int depth = 0;
      size_t j = i + 1;
      for (; j < cmd.size(); ++j) {
        if (cmd[j] == '(') ++depth;
        if (cmd[j] == ')' && --depth == 0) break;
      }
      std::string inner = cmd.substr(i + 2, j - i - 2);
      // Keep the file it reads: "-in FILE".
      std::vector<std::string> words = absl::StrSplit(inner, ' ', absl::SkipEmpty());
      std::string file;
      for (size_t k = 0; k + 1 < words.size(); ++k) {
        if (words[k] == "-in") file = words[k + 1];
      }
      out += "PROCSUB:" + file;
      i = j;
    } else {
      out += cmd[i];
    }
  }
  return out;
}

Plan Translate(const Row& row) {
  Plan plan;
  std::string cmd = FoldProcessSubstitutions(row.command);
  for (absl::string_view part : absl::StrSplit(cmd, " | ")) {
    std::vector<std::string> w = absl::StrSplit(part, ' ', absl::SkipEmpty());
    if (w.size() >= 3 && w[0] == "openssl" && w[1] == "base64" && w[2] == "-d") {
      Stage s{Stage::kBase64, "", {}, "", ""};
      for (size_t i = 3; i + 1 < w.size(); ++i) {
        if (w[i] == "-in") s.in = w[i + 1];
      }
      plan.stages.push_back(s);
      continue;
    }
    if (w.size() < 3 || w[0] != "openssl" || w[1] != "cms" || (w[2] != "-verify" && w[2] != "-decrypt")) {
      plan.untranslatable = w.size() >= 2 && w[0] == "openssl"
                                ? absl::StrCat("openssl ", w[1], " ", w.size() > 2 ? w[2] : "", " is no S/MIME operation")
                                : absl::StrCat("needs '", w.empty() ? "" : w[0], "' to unwrap the input");
      return plan;
    }
    Stage s{w[2] == "-verify" ? Stage::kVerify : Stage::kDecrypt, "", {}, "", ""};
    for (size_t i = 3; i < w.size(); ++i) {
      const std::string& o = w[i];
      auto arg = [&]() -> std::string { return i + 1 < w.size() ? w[++i] : ""; };
      if (o == "-in") s.in = arg();
      else if (o == "-out" || o == "-inform" || o == "-keyform" || o == "-passin" || o == "-recip") arg();
      else if (o == "-binary") s.verify.set_binary(true);
      else if (o == "-debug_decrypt") {}
      else if (o == "-provider") arg();  // the agent always has the legacy provider
      else if (o == "-CAfile" || o == "-CAstore") s.verify.add_trust_anchors(ReadFile(DataDir() + "/" + arg()));
      else if (o == "-certfile") s.verify.add_extra_certs(ReadFile(DataDir() + "/" + arg()));
      else if (o == "-attime") {
        int64_t t = 0;
        (void)absl::SimpleAtoi(arg(), &t);
        s.verify.mutable_at()->set_seconds(t);
      } else if (o == "-noverify") s.verify.set_signature_only(true);
      else if (o == "-purpose") s.verify.set_any_purpose(arg() == "any");
      else if (o == "-content") s.content_file = arg();
      else if (o == "-inkey") {
        std::string k = arg();
        s.key_label = absl::StartsWith(k, "PROCSUB:") ? k.substr(8) : k;
      } else if (o == "-nosigs") {
        plan.untranslatable = "extracts content without checking signatures (-nosigs)";
        return plan;
      } else {
        plan.untranslatable = absl::StrCat("option ", o, " has no agent equivalent");
        return plan;
      }
    }
    if (s.kind == Stage::kDecrypt && s.key_label.empty()) {
      plan.untranslatable = "decrypts without a private key (secret or password recipient)";
      return plan;
    }
    plan.stages.push_back(std::move(s));
  }
  return plan;
}

// Rows where the agent does better than plain OpenSSL 3.0, on purpose.
const std::map<std::string, std::string>& ExpectedDifferences() {
  static const auto* m = new std::map<std::string, std::string>{
      {"rfc4134-5.2-rc2-default",
       "RC2 needs OpenSSL's legacy provider, which the agent always loads so old mail opens"},
      {"tb-env-wrongpass",
       "the key already sits on the token: a wrong PKCS#12 password cannot stop its use"},
      {"gnupg-plain-1-wrongpass",
       "the key already sits on the token: a wrong key-file passphrase cannot stop its use"},
  };
  return *m;
}

class CorpusTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    testing::TestToken token = testing::MakeToken("corpus", false);
    // The script runs openssl and pkcs11-tool some hundred times: on a busy
    // machine that takes minutes, so the bound is generous (it only keeps a
    // hung tool from hanging the suite; ctest's own limit is 600 s).
    testing::RunOptions slow;
    slow.timeout = absl::Seconds(480);
    testing::CommandResult r = testing::RunCommand(
        {testing::SourceDir() + "/tests/interop/import-corpus-keys.sh", DataDir(), token.dir->path(), "corpus"},
        slow);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::cout << "corpus keys on the token:\n" << ReadFile(token.Path("corpus-keys.tsv"));
    const std::string audit_log = token.Path("audit.log");
    auto made = testing::TokenAgent::StartOn(std::move(token), testing::AgentOptions::Args({"--audit-log", audit_log}));
    ASSERT_THAT(made.status(), IsOk());
    shared_ = *std::move(made);
    client_ = client::AgentClient::Connect(shared_->agent().socket())->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    client_ = nullptr;
    shared_.reset();
  }

  // Runs the plan; returns the final output, or the failing call's status.
  absl::StatusOr<std::string> Execute(const Plan& plan) {
    std::string data;
    for (const Stage& s : plan.stages) {
      std::string input = s.in.empty() ? data : ReadFile(DataDir() + "/" + s.in);
      if (s.kind == Stage::kBase64) {
        // As `openssl base64 -d` reads armor: the base64 lines only.
        std::string b64;
        for (absl::string_view line : absl::StrSplit(input, '\n')) {
          if (!absl::StartsWith(line, "-----")) b64 += std::string(absl::StripAsciiWhitespace(line));
        }
        std::string decoded;
        if (!absl::Base64Unescape(b64, &decoded)) return absl::InvalidArgumentError("bad base64");
        data = decoded;
      } else if (s.kind == Stage::kVerify) {
        std::string content = s.content_file.empty() ? "" : ReadFile(DataDir() + "/" + s.content_file);
        auto v = client_->VerifyMessage(s.verify, input, content);
        if (!v.ok()) return v.status();
        data = v->content;
      } else {
        v1::DecryptOptions o;
        o.mutable_key()->set_label(s.key_label);
        auto d = client_->DecryptMessage(input, o);
        if (!d.ok()) return d.status();
        data = d->content;
      }
    }
    return data;
  }

  static inline std::unique_ptr<testing::TokenAgent> shared_;
  static inline client::AgentClient* client_ = nullptr;
};

TEST_P(CorpusTest, AgentAgreesWithOpenssl) {
  const std::string source = GetParam();
  int opened = 0, verified = 0, refused = 0, differences = 0;
  std::map<std::string, int> untranslatable;
  for (const Row& row : LoadOracle()) {
    std::string src = row.id.substr(0, row.id.find('-'));
    if (src != source) continue;
    Plan plan = Translate(row);
    if (!plan.untranslatable.empty()) {
      ++untranslatable[plan.untranslatable];
      continue;
    }
    auto got = Execute(plan);
    bool want_ok = absl::StartsWith(row.expected, "ok");
    auto diff = ExpectedDifferences().find(row.id);
    if (diff != ExpectedDifferences().end()) {
      // Listed differences must really differ, or the list is stale.
      EXPECT_NE(got.ok(), want_ok) << row.id << ": listed as a difference but agrees with OpenSSL";
      ++differences;
      continue;
    }
    if (!want_ok) {
      EXPECT_FALSE(got.ok()) << row.id << " (" << row.kind << "): OpenSSL refuses it, the agent accepted it";
      if (!got.ok()) ++refused;
      continue;
    }
    ASSERT_TRUE(got.ok()) << row.id << " (" << row.kind << "): " << got.status() << "\n  " << row.command;
    size_t at = row.expected.find("sha256=");
    if (at != std::string::npos) {
      EXPECT_EQ(absl::BytesToHexString(testing::Sha256(*got)), row.expected.substr(at + 7))
          << row.id << ": content differs from OpenSSL's";
    }
    bool decrypts = false;
    for (const Stage& s : plan.stages) decrypts = decrypts || s.kind == Stage::kDecrypt;
    ++(decrypts ? opened : verified);
  }
  std::cout << "interop " << source << ": " << opened << " messages opened, " << verified
            << " signatures verified, " << refused << " rejected as OpenSSL rejects them, " << differences
            << " where the agent does better";
  for (const auto& [why, n] : untranslatable) std::cout << "; " << n << " not agent operations: " << why;
  std::cout << "\n";
  int rows = opened + verified + refused + differences;
  for (const auto& [why, n] : untranslatable) rows += n;
  EXPECT_GT(rows, 0) << "no row of " << source << " in ORACLE.tsv";
}

INSTANTIATE_TEST_SUITE_P(Sources, CorpusTest,
                         ::testing::Values("rfc4134", "tb", "nss", "ossl", "gnupg", "gnutls", "bc", "mimekit",
                                           "asn1crypto", "pyca", "ph", "rfc9216"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace smime
