#include "tokens/pkcs11_uri.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tests/testing/status_matchers.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;

CK_TOKEN_INFO TokenInfo(const char* label, const char* serial) {
  CK_TOKEN_INFO info;
  std::memset(&info, ' ', sizeof(info));
  std::memcpy(info.label, label, std::strlen(label));
  std::memcpy(info.serialNumber, serial, std::strlen(serial));
  std::memcpy(info.manufacturerID, "SoftHSM project", 15);
  std::memcpy(info.model, "SoftHSM v2", 10);
  return info;
}

TEST(Pkcs11Uri, ParsesIdLabelAndTypeWithPercentEncoding) {
  auto uri = Pkcs11Uri::Parse("pkcs11:token=my%20token;id=%01%ab;object=alice%20key;type=private");
  ASSERT_THAT(uri.status(), IsOk());
  EXPECT_EQ(uri->id(), std::string("\x01\xab", 2));
  EXPECT_EQ(uri->object(), "alice key");
  EXPECT_EQ(uri->type(), CKO_PRIVATE_KEY);
  EXPECT_TRUE(uri->HasTokenAttributes());
  EXPECT_TRUE(uri->MatchesToken(TokenInfo("my token", "1234")));
  EXPECT_FALSE(uri->MatchesToken(TokenInfo("other", "1234")));
}

TEST(Pkcs11Uri, WithoutTokenAttributesMatchesAnyToken) {
  auto uri = Pkcs11Uri::Parse("pkcs11:object=alice");
  ASSERT_THAT(uri.status(), IsOk());
  EXPECT_FALSE(uri->HasTokenAttributes());
  EXPECT_TRUE(uri->MatchesToken(TokenInfo("anything", "1")));
  EXPECT_FALSE(uri->id().has_value());
}

TEST(Pkcs11Uri, SerialSelectsToken) {
  auto uri = Pkcs11Uri::Parse("pkcs11:serial=abc123");
  ASSERT_THAT(uri.status(), IsOk());
  EXPECT_TRUE(uri->MatchesToken(TokenInfo("t", "abc123")));
  EXPECT_FALSE(uri->MatchesToken(TokenInfo("t", "abc124")));
}

struct BadUri {
  const char* text;
  const char* why;
};
class Pkcs11UriBad : public ::testing::TestWithParam<BadUri> {};
TEST_P(Pkcs11UriBad, IsInvalidArgument) {
  EXPECT_THAT(Pkcs11Uri::Parse(GetParam().text),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().why)));
}
INSTANTIATE_TEST_SUITE_P(
    Malformed, Pkcs11UriBad,
    ::testing::Values(BadUri{"http://example.com", "pkcs11:"},
                      BadUri{"pkcs11:id=%zz", "malformed"},
                      BadUri{"pkcs11:object=a?pin-value=1234", "PIN"},
                      BadUri{"pkcs11:object=a?pin-source=file:/etc/pin", "PIN"}));

TEST(Pkcs11Uri, PinNeverEchoedInError) {
  auto uri = Pkcs11Uri::Parse("pkcs11:object=a?pin-value=s3cret");
  ASSERT_FALSE(uri.ok());
  EXPECT_EQ(std::string(uri.status().message()).find("s3cret"), std::string::npos);
}

TEST(Pkcs11Uri, FormatRoundTrips) {
  CK_TOKEN_INFO info = TokenInfo("tok en", "42");
  std::string text = FormatObjectUri(info, std::string("\x00\x01", 2), "a;b", CKO_PRIVATE_KEY);
  EXPECT_EQ(text.find('?'), std::string::npos);
  auto uri = Pkcs11Uri::Parse(text);
  ASSERT_THAT(uri.status(), IsOk()) << text;
  EXPECT_EQ(uri->id(), std::string("\x00\x01", 2));
  EXPECT_EQ(uri->object(), "a;b");
  EXPECT_EQ(uri->type(), CKO_PRIVATE_KEY);
  EXPECT_TRUE(uri->MatchesToken(info));
}

TEST(Pkcs11Uri, StripQuery) {
  EXPECT_EQ(std::string(StripUriQuery("pkcs11:object=a?pin-value=1")), "pkcs11:object=a");
  EXPECT_EQ(std::string(StripUriQuery("pkcs11:object=a")), "pkcs11:object=a");
}

}  // namespace
}  // namespace smime::tokens
