#include "tokens/pin.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::smime::testing::TempDir;
using ::smime::testing::WriteFile;
using ::testing::HasSubstr;

std::string AsString(const SecretBuffer& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

TEST(PinFile, ReadsPrivateFileAndDropsNewline) {
  TempDir dir;
  WriteFile(dir.File("pin"), "1234\n", 0600);
  auto pin = ReadPinFile(dir.File("pin"));
  ASSERT_THAT(pin.status(), IsOk());
  EXPECT_EQ(AsString(*pin), "1234");
  WriteFile(dir.File("pin2"), "ab cd\r\n", 0600);
  EXPECT_EQ(AsString(*ReadPinFile(dir.File("pin2"))), "ab cd");
}

TEST(PinFile, RefusesWorldOrGroupReadable) {
  TempDir dir;
  for (int mode : {0644, 0640, 0604, 0660}) {
    WriteFile(dir.File("pin"), "1234", mode);
    EXPECT_THAT(ReadPinFile(dir.File("pin")),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chmod 600")))
        << std::oct << mode;
  }
}

TEST(PinFile, MissingEmptyAndDirectory) {
  TempDir dir;
  EXPECT_THAT(ReadPinFile(dir.File("none")), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cannot open")));
  WriteFile(dir.File("empty"), "\n", 0600);
  EXPECT_THAT(ReadPinFile(dir.File("empty")), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ReadPinFile(dir.path()), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
}

TEST(PinEnv, TakesAndRemovesVariable) {
  ::setenv("SMIME_TEST_PIN", "9876", 1);
  auto pin = TakePinFromEnv("SMIME_TEST_PIN");
  ASSERT_THAT(pin.status(), IsOk());
  EXPECT_EQ(AsString(*pin), "9876");
  EXPECT_EQ(std::getenv("SMIME_TEST_PIN"), nullptr);
  EXPECT_THAT(TakePinFromEnv("SMIME_TEST_PIN"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not set")));
}

TEST(PinFile, WriteIsPrivateAndExclusive) {
  TempDir dir;
  auto pin = RandomPin(32);
  ASSERT_THAT(pin.status(), IsOk());
  EXPECT_EQ(pin->size(), 32u);
  ASSERT_THAT(WritePinFile(dir.File("p"), *pin), IsOk());
  struct stat st;
  ASSERT_EQ(::stat(dir.File("p").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(AsString(*ReadPinFile(dir.File("p"))), AsString(*pin));
  EXPECT_FALSE(WritePinFile(dir.File("p"), *pin).ok());  // never overwrites
}

TEST(SecretBuffer, WipeEmpties) {
  SecretBuffer b("abc", 3);
  b.Wipe();
  EXPECT_TRUE(b.empty());
  SecretBuffer c("xyz", 3);
  SecretBuffer d = std::move(c);
  EXPECT_TRUE(c.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(AsString(d), "xyz");
}

}  // namespace
}  // namespace smime::tokens

namespace smime::tokens {
namespace {

TEST(SecretBufferTest, LivesInTheSecureHeapOnceThereIsOne) {
  bool locked = false;
  ASSERT_THAT(InitSecureHeap(size_t{64} << 10, &locked), IsOk());
  SecretBuffer pin("123456", 6);
  EXPECT_EQ(CRYPTO_secure_allocated(pin.data()), 1);
  SecretBuffer moved = std::move(pin);
  EXPECT_EQ(CRYPTO_secure_allocated(moved.data()), 1);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(moved.data()), moved.size()), "123456");
  EXPECT_TRUE(pin.empty());  // NOLINT(bugprone-use-after-move): a moved-from buffer is empty
}

}  // namespace
}  // namespace smime::tokens
