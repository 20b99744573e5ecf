// Publication records: RFC 8162's own example, case and escaping of the
// local part, and records for a certificate made here.
#include "agent/engine/publish.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"
#include "tokens/certificate.h"
#include "tokens/token.h"

namespace smime::agent {
namespace {

using ::smime::testing::Extensions;
using ::smime::testing::IsOk;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;
using ::smime::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Sha256Hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return tokens::HexEncode(std::string(reinterpret_cast<char*>(md), sizeof(md)));
}

Extensions PersonWith(const std::string& san) {
  return {{NID_subject_alt_name, san},
          {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
          {NID_ext_key_usage, "emailProtection"}};
}

// RFC 8162 §3's example: hugh@example.com.
TEST(Smimea, OwnerNameIsRfc8162Example) {
  EXPECT_EQ(SmimeaOwnerName("hugh", "example.com"),
            "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._smimecert.example.com.");
}

// 28 octets = 56 hex digits; the local part is hashed as written.
TEST(Smimea, OwnerNameTruncatesAndKeepsCase) {
  std::string lower = SmimeaOwnerName("hugh", "example.com");
  std::string upper = SmimeaOwnerName("Hugh", "example.com");
  EXPECT_EQ(lower.find('.'), 56u);
  EXPECT_NE(lower, upper);
  EXPECT_EQ(upper.substr(0, 56), Sha256Hex("Hugh").substr(0, 56));
}

TEST(Smimea, DnsLabelEscaping) {
  EXPECT_EQ(EscapeDnsLabel("alice"), "alice");
  EXPECT_EQ(EscapeDnsLabel("john.doe"), "john\\.doe");
  EXPECT_EQ(EscapeDnsLabel("a\"b;c"), "a\\\"b\\;c");
  EXPECT_EQ(EscapeDnsLabel("a b"), "a\\032b");
  EXPECT_EQ(EscapeDnsLabel("x$y@z"), "x\\$y\\@z");
}

TEST(Publication, RecordsForEachAddress) {
  auto cert = MakeCert(KeyKind::kRsa, PersonWith("email:John.Doe@Example.COM,email:jd@example.org"));
  auto set = DescribePublication(cert.get(), {}, absl::Now());
  ASSERT_THAT(set, IsOk());
  ASSERT_EQ(set->publications.size(), 2u);
  EXPECT_THAT(set->warnings, IsEmpty());
  const Publication& p = set->publications[0];
  EXPECT_EQ(p.email, "John.Doe@Example.COM");
  EXPECT_EQ(p.well_known_file, "John.Doe.pem");
  EXPECT_EQ(p.url, "https://example.com/.well-known/smime/John.Doe.pem");
  EXPECT_EQ(p.txt.name, "John\\.Doe._smime.example.com.");
  EXPECT_EQ(p.txt.zone_line(),
            "John\\.Doe._smime.example.com. IN TXT \"https://example.com/.well-known/smime/John.Doe.pem\"");
  std::string spki_sha256 = Sha256Hex(tokens::PublicKeyDer(X509_get0_pubkey(cert.get())));
  EXPECT_EQ(p.smimea.name, absl::StrCat(Sha256Hex("John.Doe").substr(0, 56), "._smimecert.example.com."));
  EXPECT_EQ(p.smimea.rdata, "3 1 1 " + spki_sha256);
  EXPECT_EQ(p.smimea_data, spki_sha256);
  EXPECT_EQ(set->publications[1].url, "https://example.org/.well-known/smime/jd.pem");
  EXPECT_THAT(set->certificate_pem, HasSubstr("-----BEGIN CERTIFICATE-----"));
}

TEST(Publication, FullCertificateAndUrlBase) {
  auto cert = MakeCert(KeyKind::kEc, {{NID_subject_alt_name, "email:bob@example.com"},
                                      {NID_key_usage, "digitalSignature,keyAgreement"}});
  auto set = DescribePublication(cert.get(), {"https://certs.example.net/smime", true}, absl::Now());
  ASSERT_THAT(set, IsOk());
  const Publication& p = set->publications[0];
  EXPECT_EQ(p.url, "https://certs.example.net/smime/bob.pem");
  EXPECT_EQ(p.smimea.rdata, "3 0 0 " + tokens::HexEncode(tokens::CertificateDer(cert.get())));
  EXPECT_EQ(p.smimea_selector, 0);
  EXPECT_EQ(p.smimea_matching_type, 0);
}

TEST(Publication, Refusals) {
  auto person = MakeCert(KeyKind::kRsa, PersonWith("email:a@example.com"));
  EXPECT_THAT(DescribePublication(person.get(), {"http://example.com/", false}, absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("https://")));
  auto ca = MakeCert(KeyKind::kRsa, {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_key_usage, "keyCertSign"}});
  EXPECT_THAT(DescribePublication(ca.get(), {}, absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is a CA certificate")));
  auto expired = MakeCert(KeyKind::kRsa, PersonWith("email:a@example.com"), -absl::Hours(48), -absl::Hours(24));
  EXPECT_THAT(DescribePublication(expired.get(), {}, absl::Now()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("(certificate policy: validity)")));
  auto no_email = MakeCert(KeyKind::kRsa, PersonWith("DNS:example.com"));
  EXPECT_THAT(DescribePublication(no_email.get(), {}, absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("(certificate policy: email-address)")));
}

}  // namespace
}  // namespace smime::agent
