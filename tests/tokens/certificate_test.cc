// tokens/certificate.h: the subjectAltName email reader and the
// certificate parser in its strict and lenient modes.
#include "tokens/certificate.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tokens/ossl.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;
using ::smime::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::string Pem(X509* cert) {
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

TEST(SubjectAltNameEmails, AsWrittenInOrderOnce) {
  auto cert = MakeCert(KeyKind::kRsa, {{NID_subject_alt_name,
                                        "email:Alice.Smith@Example.com,DNS:example.com,email:bob@example.org,"
                                        "email:Alice.Smith@Example.com,email:alice.smith@example.com"}});
  EXPECT_THAT(SubjectAltNameEmails(cert.get()),
              ElementsAre("Alice.Smith@Example.com", "bob@example.org", "alice.smith@example.com"));
  // The summary lower-cases and folds what differs only in case.
  EXPECT_THAT(Summarize(cert.get()).emails, ElementsAre("alice.smith@example.com", "bob@example.org"));
  EXPECT_THAT(SubjectAltNameEmails(MakeCert(KeyKind::kEc, {}).get()), IsEmpty());
  EXPECT_THAT(SubjectAltNameEmails(nullptr), IsEmpty());
}

class ParseTest : public ::testing::Test {
 protected:
  std::shared_ptr<X509> a_ = MakeCert(KeyKind::kRsa, {{NID_subject_alt_name, "email:a@example.com"}});
  std::shared_ptr<X509> b_ = MakeCert(KeyKind::kEc, {{NID_basic_constraints, "CA:TRUE"}});
  std::string der_ = CertificateDer(a_.get());
  std::string key_pem_ = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
};

TEST_F(ParseTest, BothModesReadDerPemAndBundles) {
  for (CertificateParsing mode : {CertificateParsing::kStrict, CertificateParsing::kLenient}) {
    auto der = ParseCertificates(der_, mode);
    ASSERT_THAT(der, IsOk());
    EXPECT_EQ(CertificateDer(der->front().get()), der_);
    auto two = ParseCertificates("subject=CN = x\n" + Pem(a_.get()) + "\nissuer: x\n" + Pem(b_.get()), mode);
    ASSERT_THAT(two, IsOk());
    EXPECT_THAT(*two, SizeIs(2));
    EXPECT_THAT(ParseCertificates(Pem(a_.get()) + Pem(b_.get()), mode, /*max_certificates=*/1),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than 1 certificates")));
  }
}

TEST_F(ParseTest, StrictRefusesWhatIsNotACertificateSayingWhat) {
  auto strict = [](absl::string_view data) { return ParseCertificates(data, CertificateParsing::kStrict); };
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(strict(" \n"), StatusIs(bad, HasSubstr("the certificate file is empty")));
  EXPECT_THAT(strict("hello\n"), StatusIs(bad, HasSubstr("neither a DER certificate nor PEM")));
  EXPECT_THAT(strict(der_.substr(0, der_.size() / 2)), StatusIs(bad, HasSubstr("is truncated")));
  EXPECT_THAT(strict(der_ + "xyz"), StatusIs(bad, HasSubstr("3 bytes after the certificate")));
  EXPECT_THAT(strict(std::string("\x30\x03\x02\x01\x05", 5)), StatusIs(bad, HasSubstr("not an X.509 certificate")));
  EXPECT_THAT(strict(Pem(a_.get()) + key_pem_), StatusIs(bad, HasSubstr("holds a private key")));
  EXPECT_THAT(strict("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"),
              StatusIs(bad, HasSubstr("holds a certificate request")));
  std::string pem = Pem(a_.get());
  EXPECT_THAT(strict(pem.substr(0, pem.size() / 2)), StatusIs(bad, HasSubstr("malformed")));
}

TEST_F(ParseTest, LenientSkipsOtherBlocksAndLeadingSpace) {
  auto lenient = [](absl::string_view data) { return ParseCertificates(data, CertificateParsing::kLenient); };
  auto mixed = lenient(key_pem_ + Pem(a_.get()));
  ASSERT_THAT(mixed, IsOk());
  EXPECT_THAT(*mixed, SizeIs(1));
  EXPECT_THAT(lenient("\n " + der_), IsOk());
  EXPECT_THAT(lenient(key_pem_), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no certificate found")));
  EXPECT_THAT(lenient(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no certificate found")));
}

}  // namespace
}  // namespace smime::tokens
