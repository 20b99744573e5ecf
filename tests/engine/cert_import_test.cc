// Certificate files as import-cert reads them: DER, PEM, bundles, within
// the import's limits.
#include "agent/engine/cert_import.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include "absl/strings/str_cat.h"
#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tokens/certificate.h"

namespace smime::agent {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;
using ::smime::testing::Pem;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class CertFileTest : public ::testing::Test {
 protected:
  std::shared_ptr<X509> a_ = MakeCert(KeyKind::kRsa, {{NID_subject_alt_name, "email:a@example.com"}});
  std::shared_ptr<X509> b_ = MakeCert(KeyKind::kEc, {{NID_basic_constraints, "CA:TRUE"}});
  std::string der_ = tokens::CertificateDer(a_.get());
};

TEST_F(CertFileTest, DerPemAndBundle) {
  EXPECT_THAT(ParseCertificateFile(der_), IsOk());
  auto one = ParseCertificateFile(Pem(a_.get()));
  ASSERT_THAT(one, IsOk());
  EXPECT_EQ(tokens::CertificateDer(one->front().get()), der_);
  // As `openssl x509 -text` writes it: text around the blocks is fine.
  auto two = ParseCertificateFile("subject=CN = Policy Test\n" + Pem(a_.get()) + "\nissuer: x\n" + Pem(b_.get()));
  ASSERT_THAT(two, IsOk());
  EXPECT_THAT(*two, SizeIs(2));
}

// ParseCertificateFile is tokens::ParseCertificates in strict mode
// (tests/tokens/certificate_test.cc has each kind of bad input) with the
// import's limits on top.
TEST_F(CertFileTest, LimitsOfAnImportedFile) {
  std::string bundle;
  for (size_t i = 0; i <= kMaxCertificatesPerFile; ++i) bundle += Pem(a_.get());
  EXPECT_THAT(ParseCertificateFile(bundle),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("more than ", kMaxCertificatesPerFile, " certificates"))));
  EXPECT_THAT(ParseCertificateFile(std::string(kMaxCertificateFileBytes + 1, '\n')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("larger than")));
  EXPECT_THAT(ParseCertificateFile(" \n"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
}

}  // namespace
}  // namespace smime::agent
