// Subject parsing in openssl's "/CN=.../O=..." form and email checks for
// certification requests (the token-signed request itself is tested end to
// end in tests/integration/lifecycle_test.cc).
#include "agent/engine/csr.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"
#include "tokens/ossl.h"

namespace smime::agent {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;

std::string Rfc2253(X509_NAME* name) {
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

struct SubjectCase {
  std::string name;
  std::string input;
  std::string rfc2253;  // empty: refused, with `error` in the message
  std::string error;
};

class SubjectTest : public ::testing::TestWithParam<SubjectCase> {};

TEST_P(SubjectTest, Parses) {
  const SubjectCase& c = GetParam();
  auto name = ParseSubject(c.input);
  if (c.rfc2253.empty()) {
    EXPECT_THAT(name, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.error)));
    return;
  }
  ASSERT_THAT(name, IsOk());
  EXPECT_EQ(Rfc2253(name->get()), c.rfc2253);
}

INSTANTIATE_TEST_SUITE_P(
    Subjects, SubjectTest,
    ::testing::ValuesIn(std::vector<SubjectCase>{
        {"CnAndO", "/CN=Alice Example/O=Example Ltd", "O=Example Ltd,CN=Alice Example", ""},
        {"Country", "/C=DE/O=Beispiel GmbH/CN=Jörg", "CN=Jörg,O=Beispiel GmbH,C=DE", ""},
        {"EscapedSlash", "/CN=A\\/B", "CN=A/B", ""},
        {"MultiValuedRdn", "/O=Org/CN=Alice+UID=alice", "UID=alice+CN=Alice,O=Org", ""},
        {"LongNameAndOid", "/commonName=X/2.5.4.10=Org", "O=Org,CN=X", ""},
        {"Empty", "", "", "the subject is empty"},
        {"NoLeadingSlash", "CN=Alice", "", "must start with '/'"},
        {"NoEquals", "/CN", "", "has no '='"},
        {"UnknownType", "/XX=1", "", "unknown attribute type \"XX\""},
        {"EmptyValue", "/CN=", "", "CN has an empty value"},
        {"CountryTooLong", "/C=DEU", "", "C=\"DEU\" is not allowed"},
        {"TrailingBackslash", "/CN=a\\", "", "lone '\\'"},
        {"TrailingSlash", "/CN=a/", "", "ends with '/'"},
    }),
    [](const auto& p) { return p.param.name; });

TEST(Email, Validation) {
  EXPECT_THAT(ValidateEmail("alice@example.com"), IsOk());
  EXPECT_THAT(ValidateEmail("John.Doe+tag@sub.example.org"), IsOk());
  for (const char* bad : {"", "alice", "@example.com", "alice@", "a@b@c", "al ice@example.com", "jörg@example.de"}) {
    EXPECT_THAT(ValidateEmail(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an email address")))
        << bad;
  }
}

}  // namespace
}  // namespace smime::agent
