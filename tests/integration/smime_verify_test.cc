// S/MIME verification options through smimectl: --at and --at-signing-time
// (with a signingTime only OpenSSL's CMS library can set), the From address
// check, and the reason a chain does not verify, each compared with what
// `openssl cms -verify` says.
#include <gtest/gtest.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/integration/smime_fixture.h"

namespace smime::integration {
namespace {

// ---------------------------------------------------------------------------
// Verify options.

// `openssl x509 -<field>` of a certificate as Unix seconds.
int64_t CertTime(const std::string& cert, const std::string& field) {
  CommandResult r = RunCommand({"openssl", "x509", "-in", cert, "-noout", "-" + field, "-dateopt", "iso_8601"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string value(absl::StripAsciiWhitespace(r.out.substr(r.out.find('=') + 1)));
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime("%Y-%m-%d %H:%M:%SZ", value, &t, &err)) << value << ": " << err;
  return absl::ToUnixSeconds(t);
}

std::string Rfc3339(int64_t s) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(s), absl::UTCTimeZone());
}

TEST_F(SmimeTest, VerifyAtBeforeCertificateValidityFailsAndNowPasses) {
  TempDir tmp;
  std::string signed_file = AgentSigned(tmp, Message());
  int64_t not_before = CertTime(Cert("alice"), "startdate");
  struct At {
    std::string at;
    bool ok;
  };
  for (const At& a : std::vector<At>{{std::to_string(not_before - 86400), false},
                                     {Rfc3339(not_before - 1), false},
                                     {Rfc3339(not_before + 60), true},
                                     {std::to_string(absl::ToUnixSeconds(absl::Now())), true}}) {
    SCOPED_TRACE(a.at);
    std::string out = tmp.File("out-" + a.at);
    CommandResult r = Ctl({"verify", "--ca", TestCa(), "--at", a.at, "--in", signed_file, "--out", out});
    if (a.ok) {
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(ReadFile(out), kEntity);
    } else {
      ExpectCleanFailure(r, 2, "the signer's certificate chain does not verify: certificate is not yet valid", out);
    }
  }
  // openssl, asked the same, agrees.
  EXPECT_NE(Openssl({"cms", "-verify", "-CAfile", TestCa(), "-attime", std::to_string(not_before - 86400), "-in",
                     signed_file, "-out", tmp.File("o1")})
                .exit_code,
            0);
  EXPECT_EQ(Openssl({"cms", "-verify", "-CAfile", TestCa(), "-attime", std::to_string(not_before + 60), "-in",
                     signed_file, "-out", tmp.File("o2")})
                .exit_code,
            0);
}

TEST_F(SmimeTest, VerifyAtSigningTimeUsesTheAgentsSigningTime) {
  TempDir tmp;
  int64_t before = absl::ToUnixSeconds(absl::Now());
  std::string signed_file = AgentSigned(tmp, Message());
  int64_t after = absl::ToUnixSeconds(absl::Now());
  CommandResult r = Ctl({"verify", "--ca", TestCa(), "--at-signing-time", "--in", signed_file, "--out", tmp.File("o")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(tmp.File("o")), kEntity);
  size_t at = r.err.find(", signed ");
  ASSERT_NE(at, std::string::npos) << r.err;
  absl::Time t;
  std::string err;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%SZ", r.err.substr(at + 9, 20), &t, &err)) << r.err;
  EXPECT_GE(absl::ToUnixSeconds(t), before - 1);
  EXPECT_LE(absl::ToUnixSeconds(t), after + 1);
}

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
template <typename T, void (*F)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, F>>;

// A multipart/signed message made with OpenSSL's CMS library, with the
// signingTime attribute set to `when` (no command line sets it).
std::string OpensslSignAt(const std::string& cert_file, const std::string& key_file, const std::string& entity,
                          absl::Time when) {
  Owned<BIO, BIO_free_all> cb(BIO_new_file(cert_file.c_str(), "r"));
  Owned<X509, X509_free> cert(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  Owned<BIO, BIO_free_all> kb(BIO_new_file(key_file.c_str(), "r"));
  Owned<EVP_PKEY, EVP_PKEY_free> key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  if (!cert || !key) {
    ADD_FAILURE() << "cannot read " << cert_file << " / " << key_file;
    return "";
  }
  const unsigned int flags = CMS_DETACHED | CMS_PARTIAL | CMS_BINARY;
  Owned<CMS_ContentInfo, CMS_ContentInfo_free> cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, flags));
  CMS_SignerInfo* si = CMS_add1_signer(cms.get(), cert.get(), key.get(), EVP_sha256(), flags);
  Owned<ASN1_TIME, ASN1_TIME_free> t(ASN1_TIME_set(nullptr, absl::ToTimeT(when)));
  if (si == nullptr || !t ||
      CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, ASN1_STRING_type(t.get()), t.get(), -1) != 1) {
    ADD_FAILURE() << "cannot add the signer with a signingTime: " << ERR_error_string(ERR_get_error(), nullptr);
    return "";
  }
  Owned<BIO, BIO_free_all> in(BIO_new_mem_buf(entity.data(), static_cast<int>(entity.size())));
  if (CMS_final(cms.get(), in.get(), nullptr, flags) != 1) {
    ADD_FAILURE() << "CMS_final: " << ERR_error_string(ERR_get_error(), nullptr);
    return "";
  }
  Owned<BIO, BIO_free_all> again(BIO_new_mem_buf(entity.data(), static_cast<int>(entity.size())));
  Owned<BIO, BIO_free_all> out(BIO_new(BIO_s_mem()));
  // CMS_REUSE_DIGEST: write the signature made above instead of signing the
  // detached data a second time.
  if (SMIME_write_CMS(out.get(), cms.get(), again.get(), flags | CMS_REUSE_DIGEST) != 1) {
    ADD_FAILURE() << "SMIME_write_CMS: " << ERR_error_string(ERR_get_error(), nullptr);
    return "";
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// Old mail: henry's certificate expired at the end of 2020; a message he
// signed in June 2020 verifies as of its signingTime, not as of now.
TEST_F(SmimeTest, VerifyAtSigningTimeAcceptsOldMailFromAnExpiredCertificate) {
  TempDir tmp;
  const absl::Time june = absl::FromCivil(absl::CivilSecond(2020, 6, 1, 12, 0, 0), absl::UTCTimeZone());
  std::string msg = OpensslSignAt(Cert("henry"), KeyFile("henry"), kEntity, june);
  ASSERT_FALSE(msg.empty());
  WriteFile(tmp.File("old.eml"), msg);
  EXPECT_THAT(CmsPrint(tmp.File("old.eml")), HasSubstr("UTCTIME:Jun  1 12:00:00 2020 GMT"));

  CommandResult now = Ctl({"verify", "--ca", PeerCa(), "--in", tmp.File("old.eml"), "--out", tmp.File("now")});
  ExpectCleanFailure(now, 2, "the signer's certificate chain does not verify: certificate has expired", tmp.File("now"));

  CommandResult then = Ctl({"verify", "--ca", PeerCa(), "--at-signing-time", "--in", tmp.File("old.eml"), "--out",
                            tmp.File("then")});
  ASSERT_EQ(then.exit_code, 0) << then.err;
  EXPECT_EQ(ReadFile(tmp.File("then")), kEntity);
  EXPECT_EQ(then.err,
            "smimectl: good signature from emailAddress=henry@example.org,CN=Henry <henry@example.org>, signed "
            "2020-06-01T12:00:00Z\n");

  CommandResult at = Ctl({"verify", "--ca", PeerCa(), "--at", "2020-06-01T12:00:00Z", "--in", tmp.File("old.eml"),
                          "--out", tmp.File("at")});
  EXPECT_EQ(at.exit_code, 0) << at.err;
  // A signingTime outside the certificate's life does not help: tamper
  // nothing, but ask for a time after expiry.
  CommandResult late = Ctl({"verify", "--ca", PeerCa(), "--at", "2021-06-01T00:00:00Z", "--in", tmp.File("old.eml"),
                            "--out", tmp.File("late")});
  ExpectCleanFailure(late, 2, "the signer's certificate chain does not verify: certificate has expired", tmp.File("late"));
  // openssl agrees on both instants.
  EXPECT_EQ(Openssl({"cms", "-verify", "-CAfile", PeerCa(), "-attime", std::to_string(absl::ToUnixSeconds(june)),
                     "-in", tmp.File("old.eml"), "-out", tmp.File("o1")})
                .exit_code,
            0);
  EXPECT_NE(Openssl({"cms", "-verify", "-CAfile", PeerCa(), "-in", tmp.File("old.eml"), "-out", tmp.File("o2")})
                .exit_code,
            0);
}

TEST_F(SmimeTest, VerifyAtSigningTimeWithoutTheAttributeIsClear) {
  TempDir tmp;
  WriteFile(tmp.File("entity"), kEntity);
  CommandResult s = Openssl({"cms", "-sign", "-noattr", "-signer", Cert("frank"), "-inkey", KeyFile("frank"), "-in",
                             tmp.File("entity"), "-out", tmp.File("noattr.eml")});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  CommandResult r = Ctl({"verify", "--ca", PeerCa(), "--at-signing-time", "--in", tmp.File("noattr.eml"), "--out",
                         tmp.File("out")});
  ExpectCleanFailure(r, 2, "smimectl: the signature carries no signingTime attribute\n", tmp.File("out"));
  // Without the option the same message verifies (and names no time).
  CommandResult ok = Ctl({"verify", "--ca", PeerCa(), "--in", tmp.File("noattr.eml"), "--out", tmp.File("ok")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.err, "smimectl: good signature from emailAddress=frank@example.org,CN=Frank <frank@example.org>\n");
}

struct FromCase {
  std::string name;
  std::string from_field;  // the From line, or empty for none
  std::string warning;     // the address warned about, or empty
};
void PrintTo(const FromCase& c, std::ostream* os) { *os << c.name; }

class FromAddressTest : public SmimeTest, public ::testing::WithParamInterface<FromCase> {};

TEST_P(FromAddressTest, WarnsWhenTheSignerDoesNotOwnTheFromAddress) {
  const FromCase& c = GetParam();
  TempDir tmp;
  std::string msg = absl::StrCat(c.from_field, "Subject: from check\r\nMIME-Version: 1.0\r\n", kEntity);
  std::string signed_file = AgentSigned(tmp, msg);
  CommandResult r = Ctl({"verify", "--ca", TestCa(), "--in", signed_file, "--out", tmp.File("out")});
  ASSERT_EQ(r.exit_code, 0) << r.err;  // the signature holds either way
  EXPECT_EQ(ReadFile(tmp.File("out")), kEntity);
  EXPECT_THAT(r.err, StartsWith("smimectl: good signature from emailAddress=alice@example.com,CN=Alice"));
  const std::string warning = "smimectl: warning: the signer's certificate does not name the From address ";
  if (c.warning.empty()) {
    EXPECT_THAT(r.err, Not(HasSubstr("warning")));
  } else {
    EXPECT_THAT(r.err, HasSubstr(warning + c.warning + "\n"));
  }
  EXPECT_THAT(r.out, Not(HasSubstr("warning")));
}

INSTANTIATE_TEST_SUITE_P(
    Froms, FromAddressTest,
    ::testing::Values(FromCase{"Mismatch", "From: Mallory <mallory@example.com>\r\n", "mallory@example.com"},
                      FromCase{"BareMismatch", "From: bob@example.com\r\n", "bob@example.com"},
                      FromCase{"MatchIgnoresCaseAndName", "From: \"Alice A.\" <ALICE@Example.COM>\r\n", ""},
                      FromCase{"NoFrom", "", ""}),
    [](const auto& p) { return p.param.name; });

// A From inside the signed part is the one many mail clients show (the
// protected-headers style, or a whole message/rfc822 signed): it must be a
// signer's too, whatever the outer header says.
struct InnerFromCase {
  std::string name;
  std::string outer;   // header fields before the signed entity (agent-signed), or "" (openssl-signed entity)
  std::string entity;  // the signed entity
  std::string warning;  // expected address in the warning; empty for none
};
void PrintTo(const InnerFromCase& c, std::ostream* os) { *os << c.name; }

class InnerFromTest : public SmimeTest, public ::testing::WithParamInterface<InnerFromCase> {};

TEST_P(InnerFromTest, TheSignedPartsFromIsCheckedToo) {
  const InnerFromCase& c = GetParam();
  TempDir tmp;
  std::string signed_file;
  if (c.outer.empty()) {
    // openssl signs the entity as given, its own From field included.
    WriteFile(tmp.File("entity"), c.entity);
    CommandResult s = OpensslWithToken({"cms", "-sign", "-binary", "-in", tmp.File("entity"), "-signer", Cert("alice"),
                                        "-inkey", TokenKeyUri("alice"), "-out", tmp.File("signed.eml")});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    signed_file = tmp.File("signed.eml");
  } else {
    signed_file = AgentSigned(tmp, c.outer + c.entity);
  }
  CommandResult r = Ctl({"verify", "--ca", TestCa(), "--in", signed_file, "--out", tmp.File("out")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string warning = "smimectl: warning: the signer's certificate does not name the From address ";
  if (c.warning.empty()) {
    EXPECT_THAT(r.err, Not(HasSubstr("warning"))) << r.err;
  } else {
    EXPECT_THAT(r.err, HasSubstr(warning + c.warning + "\n"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Froms, InnerFromTest,
    ::testing::Values(
        InnerFromCase{"ProtectedHeaderMismatch", "",
                      "From: CEO <ceo@example.com>\r\nContent-Type: text/plain\r\n\r\nwire the money\r\n",
                      "ceo@example.com"},
        InnerFromCase{"ProtectedHeaderMatch", "",
                      "From: Alice <alice@example.com>\r\nContent-Type: text/plain\r\n\r\nhello\r\n", ""},
        InnerFromCase{"WrappedMessageMismatch", "From: alice@example.com\r\nSubject: fwd\r\n",
                      "Content-Type: message/rfc822\r\n\r\nFrom: CEO <ceo@example.com>\r\nSubject: pay\r\n\r\n"
                      "wire the money\r\n",
                      "ceo@example.com"},
        InnerFromCase{"BodyLineIsNoHeader", "",
                      "Content-Type: text/plain\r\n\r\nFrom: ceo@example.com (quoted in the body)\r\n", ""}),
    [](const auto& p) { return p.param.name; });

// ---------------------------------------------------------------------------
// Regressions: each of these was a bug once (found by these tests).

// A chain failure names its reason (unknown issuer, not yet valid,
// expired) as `openssl cms -verify` does, so a user can tell a wrong --ca
// from an expired certificate.
struct VerifyReasonCase {
  std::string name;
  std::string reason;  // X509_verify_cert_error_string
};
void PrintTo(const VerifyReasonCase& c, std::ostream* os) { *os << c.name; }

class VerifyFailureReasonTest : public SmimeTest, public ::testing::WithParamInterface<VerifyReasonCase> {};

TEST_P(VerifyFailureReasonTest, SmimectlNamesTheCertificateProblem) {
  const VerifyReasonCase& c = GetParam();
  TempDir tmp;
  std::string file, ca = TestCa();
  std::vector<std::string> at;
  if (c.name == "UnknownIssuer") {
    file = AgentSigned(tmp, Message());
    ca = PeerCa();
  } else if (c.name == "NotYetValid") {
    file = AgentSigned(tmp, Message());
    at = {"-attime", std::to_string(CertTime(Cert("alice"), "startdate") - 86400)};
  } else {
    WriteFile(tmp.File("old.eml"), OpensslSignAt(Cert("henry"), KeyFile("henry"), kEntity,
                                                 absl::FromCivil(absl::CivilSecond(2020, 6, 1), absl::UTCTimeZone())));
    file = tmp.File("old.eml");
    ca = PeerCa();
  }
  std::vector<std::string> o = {"cms", "-verify", "-CAfile", ca, "-in", file, "-out", tmp.File("o")};
  o.insert(o.end(), at.begin(), at.end());
  CommandResult ossl = Openssl(o);
  ASSERT_NE(ossl.exit_code, 0);
  ASSERT_THAT(ossl.err, HasSubstr("Verify error: " + c.reason));  // what openssl says
  std::vector<std::string> args = {"verify", "--ca", ca, "--in", file, "--out", tmp.File("out")};
  if (!at.empty()) args.insert(args.end(), {"--at", at[1]});
  CommandResult r = Ctl(args);
  ExpectCleanFailure(r, 2, "the signer's certificate chain does not verify: " + c.reason, tmp.File("out"));
}

INSTANTIATE_TEST_SUITE_P(Reasons, VerifyFailureReasonTest,
                         ::testing::Values(VerifyReasonCase{"UnknownIssuer", "unable to get local issuer certificate"},
                                           VerifyReasonCase{"NotYetValid", "certificate is not yet valid"},
                                           VerifyReasonCase{"Expired", "certificate has expired"}),
                         [](const auto& p) { return p.param.name; });

}  // namespace
}  // namespace smime::integration
