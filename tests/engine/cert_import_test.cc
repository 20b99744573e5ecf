// Certificate files: DER, PEM, bundles, and each kind of bad input refused
// with what was found.
#include "agent/engine/cert_import.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tokens/certificate.h"

namespace smime::agent {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::string Pem(X509* cert) {
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

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

struct BadCase {
  std::string name;
  std::function<std::string(const std::string& der, const std::string& pem)> make;
  std::string error;
};

class BadCertFileTest : public CertFileTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(BadCertFileTest, RefusedSayingWhat) {
  EXPECT_THAT(ParseCertificateFile(GetParam().make(der_, Pem(a_.get()))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().error)));
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, BadCertFileTest,
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

}  // namespace
}  // namespace smime::agent
