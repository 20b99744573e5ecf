// Key administration under concurrency and failure (issue 14 item 11), in
// process over SoftHSM behind the fault-injection module. Token's test hook
// puts each race in the order that used to go wrong, so every verdict is
// the same on every run: an older refresh cannot hide a newer key list; a
// write whose refresh fails still succeeds; two GenerateKey calls with one
// label cannot both win; a delete stopped part-way leaves a usable key, not
// a certificate without its key.
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tests/tokens/shim_token.h"
#include "tokens/token.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using TestPoint = Token::TestPoint;

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }

class KeyAdminTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env_ = new ShimToken("admin");
    ASSERT_NE(env_->token, nullptr);
    token_ = env_->token.get();
  }
  static void TearDownTestSuite() { delete env_; }
  void TearDown() override {
    token_->SetTestHook(nullptr);
    env_->SetControl("");
    EXPECT_THAT(token_->Refresh(), IsOk());
  }

  static std::vector<std::shared_ptr<const Key>> Named(const std::string& label) {
    std::vector<std::shared_ptr<const Key>> out;
    for (const auto& k : *token_->Keys()) {
      if (k->label() == label) out.push_back(k);
    }
    return out;
  }

  static ShimToken* env_;
  static Token* token_;
};
ShimToken* KeyAdminTest::env_ = nullptr;
Token* KeyAdminTest::token_ = nullptr;

// (a) A refresh that read the token before GenerateKey wrote publishes
// after GenerateKey's own refresh: it must not take the new key away.
TEST_F(KeyAdminTest, OlderRefreshDoesNotReplaceNewerKeyList) {
  absl::Notification old_read, go;
  std::atomic<int> reads{0};
  token_->SetTestHook([&](TestPoint point, CK_OBJECT_HANDLE) {
    if (point == TestPoint::kRefreshRead && reads++ == 0) {
      old_read.Notify();
      go.WaitForNotification();
    }
    return absl::OkStatus();
  });
  absl::Status old_refresh;
  std::thread slow([&] { old_refresh = token_->Refresh(); });
  old_read.WaitForNotification();
  auto key = token_->GenerateKey(KeySpec::kEcP256, "fresh", Soon());
  ASSERT_THAT(key.status(), IsOk());
  ASSERT_THAT(Named("fresh"), SizeIs(1));
  go.Notify();
  slow.join();
  EXPECT_THAT(old_refresh, IsOk());
  EXPECT_THAT(Named("fresh"), SizeIs(1));  // still there: the older list lost
}

// (b) The token goes away between a write and the refresh after it: the
// write happened and is reported so; the refresh failure is only logged.
TEST_F(KeyAdminTest, WriteThatSucceededIsReportedSoWhenTheRefreshAfterFails) {
  std::atomic<bool> pull{true};
  token_->SetTestHook([&](TestPoint point, CK_OBJECT_HANDLE) {
    if (point == TestPoint::kWritten && pull) env_->SetControl("removed\n");
    return absl::OkStatus();
  });
  auto back = [&] {
    env_->SetControl("");
    ASSERT_THAT(token_->Refresh(), IsOk());
  };

  auto key = token_->GenerateKey(KeySpec::kEcP256, "unseen", Soon());
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ((*key)->label(), "unseen");
  EXPECT_NE((*key)->public_key(), nullptr);
  EXPECT_EQ((*key)->short_name(), "p256");
  back();
  ASSERT_THAT(Named("unseen"), SizeIs(1));
  EXPECT_EQ(Named("unseen")[0]->id(), (*key)->id());

  std::shared_ptr<X509> cert = testing::MakeCertFor(Named("unseen")[0]->public_key(), "Unseen",
                                                     {{NID_subject_alt_name, "email:unseen@example.com"}},
                                                     absl::Now() - absl::Hours(1), absl::Now() + absl::Hours(24));
  auto stored = token_->StoreCertificates({{cert, (*key)->id(), "unseen", CertificateCategory::kTokenUser}}, Soon());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(*stored, std::vector<bool>{true});
  back();
  ASSERT_NE(Named("unseen")[0]->certificate(), nullptr);

  EXPECT_THAT(token_->RetireKey(*Named("unseen")[0], absl::Now(), Soon()), IsOk());
  back();
  EXPECT_FALSE(Named("unseen")[0]->end_date().empty());

  SslPtr<EVP_PKEY> software(testing::NewKey(testing::KeyKind::kEc));
  auto imported = token_->ImportKey(software.get(), "imported", {}, Soon());
  ASSERT_THAT(imported.status(), IsOk());
  EXPECT_EQ(imported->key->label(), "imported");
  back();
  EXPECT_THAT(Named("imported"), SizeIs(1));

  auto deleted = token_->DeleteKey(*Named("unseen")[0], Soon());
  ASSERT_THAT(deleted, IsOk());
  EXPECT_EQ(*deleted, 3u);
  back();
  EXPECT_THAT(Named("unseen"), SizeIs(0));
  EXPECT_TRUE(absl::StrContains(env_->Log(), "keys_refresh_failed"));
}

// (c) B asks for the label A has just found free: B must wait for A, then
// find the label taken.
TEST_F(KeyAdminTest, TwoGenerateKeyWithOneLabelCannotBothSucceed) {
  struct Race {
    absl::Mutex mu;
    bool b_waits = false;    // B waits for key administration in progress
    bool b_checked = false;  // B found the label free
    bool a_done = false;
    std::thread::id b_id;
    std::thread b;
    static bool BWaitsOrChecked(Race* r) { return r->b_waits || r->b_checked; }
  } race;
  absl::StatusOr<std::shared_ptr<const Key>> b_result;
  token_->SetTestHook([&](TestPoint point, CK_OBJECT_HANDLE) {
    absl::MutexLock lock(&race.mu);
    bool in_b = std::this_thread::get_id() == race.b_id;
    if (point == TestPoint::kLabelChecked && !in_b && !race.b.joinable()) {
      // A found the label free. Start B, and let A go on only once B waits
      // for A (or, were nothing to stop it, has found the label free too).
      race.b = std::thread([&] {
        {
          absl::MutexLock b_lock(&race.mu);
          race.b_id = std::this_thread::get_id();
        }
        b_result = token_->GenerateKey(KeySpec::kEcP256, "one-label", Soon());
      });
      race.mu.Await(absl::Condition(&Race::BWaitsOrChecked, &race));
    } else if (point == TestPoint::kAdminWait && in_b) {
      race.b_waits = true;
    } else if (point == TestPoint::kLabelChecked && in_b) {
      race.b_checked = true;
      race.mu.Await(absl::Condition(&race.a_done));
    }
    return absl::OkStatus();
  });
  auto a_result = token_->GenerateKey(KeySpec::kEcP256, "one-label", Soon());
  {
    absl::MutexLock lock(&race.mu);
    race.a_done = true;
  }
  ASSERT_TRUE(race.b.joinable());
  race.b.join();
  EXPECT_THAT(a_result.status(), IsOk());
  EXPECT_THAT(b_result, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("one-label")));
  EXPECT_THAT(Named("one-label"), SizeIs(1));
}

// (d) The token refuses the last destroy of a delete: what is left must be
// the private key (still usable), not a certificate whose key is gone.
TEST_F(KeyAdminTest, DeleteStoppedPartWayLeavesAUsableKeyNotAnOrphanCertificate) {
  auto key = token_->GenerateKey(KeySpec::kEcP256, "doomed", Soon());
  ASSERT_THAT(key.status(), IsOk());
  std::shared_ptr<X509> cert = testing::MakeCertFor((*key)->public_key(), "Doomed", {},
                                                     absl::Now() - absl::Hours(1), absl::Now() + absl::Hours(24));
  ASSERT_THAT(token_->StoreCertificates({{cert, (*key)->id(), "doomed", CertificateCategory::kTokenUser}}, Soon()),
              IsOk());
  ASSERT_THAT(Named("doomed"), SizeIs(1));
  ASSERT_NE(Named("doomed")[0]->certificate(), nullptr);
  std::atomic<int> destroys{0};
  token_->SetTestHook([&](TestPoint point, CK_OBJECT_HANDLE) {
    if (point == TestPoint::kDestroyObject && ++destroys == 3) return CkrStatus("C_DestroyObject", CKR_FUNCTION_FAILED);
    return absl::OkStatus();
  });
  EXPECT_FALSE(token_->DeleteKey(*Named("doomed")[0], Soon()).ok());
  EXPECT_EQ(destroys.load(), 3);
  ASSERT_THAT(token_->Refresh(), IsOk());
  ASSERT_THAT(Named("doomed"), SizeIs(1));  // the key is still there...
  EXPECT_TRUE(token_->OtherCertificates().empty());  // ...and no certificate lost its key
  EXPECT_THAT(token_->Sign(*Named("doomed")[0], SignMechanism::kEcdsaSha256, std::string(32, 'd'), Soon()).status(),
              IsOk());
  token_->SetTestHook(nullptr);
  auto rest = token_->DeleteKey(*Named("doomed")[0], Soon());
  ASSERT_THAT(rest, IsOk());
  EXPECT_EQ(*rest, 1u);
  EXPECT_THAT(Named("doomed"), SizeIs(0));
}

}  // namespace
}  // namespace smime::tokens
