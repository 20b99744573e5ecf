// tokens/certificate.h: the subjectAltName email reader and the
// certificate parser in its strict and lenient modes.
#include "tokens/certificate.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <functional>
#include <vector>

#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tokens/ossl.h"

namespace smime::tokens {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;
using ::smime::testing::Pem;
using ::smime::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

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

struct BadCase {
  std::string name;
  std::function<std::string(const std::string& der, const std::string& pem)> make;
  std::string error;
};

class StrictParseTest : public ParseTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(StrictParseTest, RefusesWhatIsNotACertificateSayingWhat) {
  EXPECT_THAT(ParseCertificates(GetParam().make(der_, Pem(a_.get())), CertificateParsing::kStrict),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().error)));
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, StrictParseTest,
    ::testing::ValuesIn(std::vector<BadCase>{
        {"Empty", [](auto&, auto&) { return std::string(" \n"); }, "the certificate file is empty"},
        {"Garbage", [](auto&, auto&) { return std::string("hello, world\n"); },
         "neither a DER certificate nor PEM"},
        {"TruncatedDer", [](auto& der, auto&) { return der.substr(0, der.size() / 2); }, "is truncated"},
        {"DerWithTrailingBytes", [](auto& der, auto&) { return der + "xyz"; }, "3 bytes after the certificate"},
        {"DerNotACertificate", [](auto&, auto&) { return std::string("\x30\x03\x02\x01\x05", 5); },
         "not an X.509 certificate"},
        {"PrivateKeyPem",
         [](auto&, auto& pem) {
           return pem + "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
         },
         "holds a private key"},
        {"RequestPem",
         [](auto&, auto&) {
           return std::string("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n");
         },
         "holds a certificate request"},
        {"WrongHeader",
         [](auto&, auto& pem) {
           std::string s = pem;
           s.replace(s.find("CERTIFICATE"), 11, "CERTIFICAT");
           s.replace(s.rfind("CERTIFICATE"), 11, "CERTIFICAT");
           return s;
         },
         "PEM block \"CERTIFICAT\""},
        {"TruncatedPem", [](auto&, auto& pem) { return pem.substr(0, pem.size() / 2); }, "malformed"},
        {"PemWithGarbageBase64",
         [](auto&, auto&) {
           return std::string("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
         },
         "malformed"},
    }),
    [](const auto& p) { return p.param.name; });


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
