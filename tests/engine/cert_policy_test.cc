// The certificate policy, rule by rule, both ways: certificates made here
// with OpenSSL's APIs, each checked for each use.
#include "agent/engine/cert_policy.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tokens/ossl.h"

namespace smime::agent {
namespace {

using ::smime::testing::Extensions;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;

using ::smime::testing::IsOk;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const Extensions kRsaGood = {
    {NID_basic_constraints, "CA:FALSE"},
    {NID_subject_alt_name, "email:alice@example.com"},
    {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
    {NID_ext_key_usage, "emailProtection"},
};
const Extensions kEcGood = {
    {NID_subject_alt_name, "email:bob@example.com"},
    {NID_key_usage, "critical,digitalSignature,keyAgreement"},
    {NID_ext_key_usage, "emailProtection"},
};
const Extensions kCa = {
    {NID_basic_constraints, "critical,CA:TRUE"},
    {NID_key_usage, "critical,keyCertSign,cRLSign"},
};

Extensions Without(Extensions exts, int nid) {
  std::erase_if(exts, [nid](const auto& e) { return e.first == nid; });
  return exts;
}
Extensions With(Extensions exts, int nid, std::string value) {
  exts = Without(std::move(exts), nid);
  exts.emplace_back(nid, std::move(value));
  return exts;
}

constexpr absl::StatusCode kOk = absl::StatusCode::kOk;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kPrecondition = absl::StatusCode::kFailedPrecondition;

struct TestCase {
  std::string name;
  KeyKind key;
  Extensions exts;
  CertUse use;
  absl::StatusCode code;
  // In the refusal (or, when accepted, in the one warning; empty: none).
  std::string text;
  absl::Duration from = -absl::Hours(24);
  absl::Duration until = absl::Hours(24 * 365);
};

class CertPolicyTest : public ::testing::TestWithParam<TestCase> {};

TEST_P(CertPolicyTest, Decides) {
  const TestCase& c = GetParam();
  auto cert = MakeCert(c.key, c.exts, c.from, c.until);
  auto verdict = CheckCertificatePolicy(cert.get(), c.use, absl::Now());
  if (c.code != kOk) {
    EXPECT_THAT(verdict, StatusIs(c.code, HasSubstr(c.text)));
    EXPECT_THAT(verdict, StatusIs(c.code, HasSubstr("\"CN=Policy Test\"")));
    return;
  }
  ASSERT_THAT(verdict, IsOk());
  if (c.text.empty()) {
    EXPECT_THAT(verdict->warnings, IsEmpty());
  } else {
    ASSERT_EQ(verdict->warnings.size(), 1u);
    EXPECT_THAT(verdict->warnings[0], HasSubstr(c.text));
  }
}

const absl::Duration kDay = absl::Hours(24);

INSTANTIATE_TEST_SUITE_P(
    Rules, CertPolicyTest,
    ::testing::ValuesIn(std::vector<TestCase>{
        // Conforming certificates pass for every use.
        {"RsaImport", KeyKind::kRsa, kRsaGood, CertUse::kImport, kOk, ""},
        {"RsaSign", KeyKind::kRsa, kRsaGood, CertUse::kSign, kOk, ""},
        {"RsaEncrypt", KeyKind::kRsa, kRsaGood, CertUse::kEncrypt, kOk, ""},
        {"RsaPublish", KeyKind::kRsa, kRsaGood, CertUse::kPublish, kOk, ""},
        {"EcSign", KeyKind::kEc, kEcGood, CertUse::kSign, kOk, ""},
        {"EcEncrypt", KeyKind::kEc, kEcGood, CertUse::kEncrypt, kOk, ""},
        // email-address
        {"NoSanImport", KeyKind::kRsa, Without(kRsaGood, NID_subject_alt_name), CertUse::kImport, kInvalid,
         "has no email address in subjectAltName (certificate policy: email-address)"},
        {"NoSanSign", KeyKind::kRsa, Without(kRsaGood, NID_subject_alt_name), CertUse::kSign, kPrecondition,
         "signer certificate \"CN=Policy Test\" has no email address in subjectAltName"},
        {"NoSanEncrypt", KeyKind::kRsa, Without(kRsaGood, NID_subject_alt_name), CertUse::kEncrypt, kInvalid,
         "recipient certificate \"CN=Policy Test\" has no email address"},
        {"SanDnsOnly", KeyKind::kRsa, With(kRsaGood, NID_subject_alt_name, "DNS:mail.example.com"),
         CertUse::kImport, kInvalid, "(certificate policy: email-address)"},
        {"SanEmailAmongOthers", KeyKind::kRsa,
         With(kRsaGood, NID_subject_alt_name, "DNS:mail.example.com,email:a@example.com"), CertUse::kImport, kOk,
         ""},
        // key-algorithm
        {"Ed25519Refused", KeyKind::kEd25519, kRsaGood, CertUse::kImport, kInvalid,
         "has a key of type ED25519; S/MIME here needs an RSA or EC key (certificate policy: key-algorithm)"},
        // key-usage
        {"NoKeyUsage", KeyKind::kRsa, Without(kRsaGood, NID_key_usage), CertUse::kImport, kInvalid,
         "has no keyUsage extension"},
        {"KeyUsageCertSignOnly", KeyKind::kRsa, With(kRsaGood, NID_key_usage, "keyCertSign"), CertUse::kImport,
         kInvalid, "keyUsage has neither digitalSignature nor keyEncipherment (certificate policy: key-usage)"},
        {"EncipherOnlyImport", KeyKind::kRsa, With(kRsaGood, NID_key_usage, "keyEncipherment"), CertUse::kImport,
         kOk, ""},
        {"EncipherOnlyEncrypt", KeyKind::kRsa, With(kRsaGood, NID_key_usage, "keyEncipherment"),
         CertUse::kEncrypt, kOk, ""},
        {"EncipherOnlySign", KeyKind::kRsa, With(kRsaGood, NID_key_usage, "keyEncipherment"), CertUse::kSign,
         kPrecondition, "keyUsage lacks digitalSignature, which signing needs (certificate policy: key-usage)"},
        {"SignOnlyRsaEncrypt", KeyKind::kRsa, With(kRsaGood, NID_key_usage, "digitalSignature"),
         CertUse::kEncrypt, kInvalid, "keyUsage lacks keyEncipherment, which encrypting to an RSA key needs"},
        {"SignOnlyRsaSign", KeyKind::kRsa, With(kRsaGood, NID_key_usage, "digitalSignature"), CertUse::kSign, kOk,
         ""},
        {"EcWithoutKeyAgreementEncrypt", KeyKind::kEc,
         With(kEcGood, NID_key_usage, "digitalSignature,keyEncipherment"), CertUse::kEncrypt, kInvalid,
         "keyUsage lacks keyAgreement, which encrypting to an EC key needs"},
        {"EcKeyAgreementOnlyImport", KeyKind::kEc, With(kEcGood, NID_key_usage, "keyAgreement"), CertUse::kImport,
         kOk, ""},
        {"RsaKeyAgreementOnlyImport", KeyKind::kRsa, With(kRsaGood, NID_key_usage, "keyAgreement"),
         CertUse::kImport, kInvalid, "keyUsage has neither digitalSignature nor keyEncipherment"},
        // extended-key-usage
        {"EkuServerAuthOnly", KeyKind::kRsa, With(kRsaGood, NID_ext_key_usage, "serverAuth"), CertUse::kImport,
         kInvalid, "extendedKeyUsage lacks emailProtection (certificate policy: extended-key-usage)"},
        {"EkuServerAuthSign", KeyKind::kRsa, With(kRsaGood, NID_ext_key_usage, "serverAuth,clientAuth"),
         CertUse::kSign, kPrecondition, "extendedKeyUsage lacks emailProtection"},
        {"EkuAbsent", KeyKind::kRsa, Without(kRsaGood, NID_ext_key_usage), CertUse::kImport, kOk, ""},
        {"EkuWithEmailProtection", KeyKind::kRsa,
         With(kRsaGood, NID_ext_key_usage, "serverAuth,emailProtection"), CertUse::kEncrypt, kOk, ""},
        // validity: refused for outgoing mail, a warning on import.
        {"ExpiredImportWarns", KeyKind::kRsa, kRsaGood, CertUse::kImport, kOk,
         "kept for verifying and decrypting old mail", -10 * kDay, -kDay},
        {"ExpiredSign", KeyKind::kRsa, kRsaGood, CertUse::kSign, kPrecondition,
         "(certificate policy: validity)", -10 * kDay, -kDay},
        {"ExpiredEncrypt", KeyKind::kRsa, kRsaGood, CertUse::kEncrypt, kPrecondition,
         "recipient certificate \"CN=Policy Test\" expired on ", -10 * kDay, -kDay},
        {"ExpiredPublish", KeyKind::kRsa, kRsaGood, CertUse::kPublish, kPrecondition, "expired on ", -10 * kDay,
         -kDay},
        {"NotYetValidImportWarns", KeyKind::kRsa, kRsaGood, CertUse::kImport, kOk, "is not valid before ", kDay,
         10 * kDay},
        {"NotYetValidSign", KeyKind::kRsa, kRsaGood, CertUse::kSign, kPrecondition, "is not valid before ", kDay,
         10 * kDay},
        {"NotYetValidEncrypt", KeyKind::kRsa, kRsaGood, CertUse::kEncrypt, kPrecondition,
         "is not valid before ", kDay, 10 * kDay},
        {"NotYetValidPublishWarns", KeyKind::kRsa, kRsaGood, CertUse::kPublish, kOk,
         "correspondents cannot encrypt to it until then", kDay, 10 * kDay},
        // CA certificates skip the end-entity rules, not validity.
        {"CaImport", KeyKind::kRsa, kCa, CertUse::kImport, kOk, ""},
        {"CaWithoutSanOrEku", KeyKind::kEc, kCa, CertUse::kImport, kOk, ""},
        {"ExpiredCaImportWarns", KeyKind::kRsa, kCa, CertUse::kImport, kOk, "expired on ", -10 * kDay, -kDay},
        {"CaFalseIsEndEntity", KeyKind::kRsa, {{NID_basic_constraints, "CA:FALSE"}}, CertUse::kImport, kInvalid,
         "(certificate policy: email-address)"},
    }),
    [](const auto& p) { return p.param.name; });

// The validity message names the instant, as `openssl x509 -enddate` does.
TEST(CertPolicy, ValiditySaysSinceWhen) {
  auto cert = MakeCert(KeyKind::kRsa, kRsaGood, -10 * kDay, -kDay);
  absl::Time end = absl::Now() - kDay;
  auto verdict = CheckCertificatePolicy(cert.get(), CertUse::kSign, absl::Now());
  EXPECT_THAT(verdict, StatusIs(kPrecondition, HasSubstr(absl::FormatTime("expired on %Y-%m-%dT", end,
                                                                          absl::UTCTimeZone()))));
  // The same certificate was fine while valid.
  EXPECT_THAT(CheckCertificatePolicy(cert.get(), CertUse::kSign, absl::Now() - 5 * kDay), IsOk());
}

// An extension OpenSSL cannot decode is its own refusal, not "no keyUsage".
TEST(CertPolicy, UndecodableExtensionRefused) {
  auto cert = MakeCert(KeyKind::kRsa, Without(kRsaGood, NID_key_usage));
  ASN1_OCTET_STRING* junk = ASN1_OCTET_STRING_new();
  const unsigned char bad[] = {0x05, 0x00};  // NULL, not a BIT STRING
  ASN1_OCTET_STRING_set(junk, bad, sizeof(bad));
  X509_EXTENSION* ext = X509_EXTENSION_create_by_NID(nullptr, NID_key_usage, 1, junk);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert.get(), ext, -1);
  X509_EXTENSION_free(ext);
  ASN1_OCTET_STRING_free(junk);
  EXPECT_THAT(CheckCertificatePolicy(cert.get(), CertUse::kImport, absl::Now()),
              StatusIs(kInvalid, HasSubstr("(certificate policy: well-formed)")));
}

}  // namespace
}  // namespace smime::agent
