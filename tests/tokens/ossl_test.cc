// tokens/ossl.h and tokens/ossl_types.h: the deleters, the two kinds of
// certificate stack, ECDSA r||s to DER, DER to string.
#include "tokens/ossl_types.h"

#include <gtest/gtest.h>

#include "tests/engine/test_certs.h"
#include "tests/testing/status_matchers.h"

namespace smime {
namespace {

using ::smime::testing::IsOk;
using ::smime::testing::KeyKind;
using ::smime::testing::MakeCert;
using ::smime::testing::StatusIs;

TEST(SslPtr, EveryDeleterFrees) {
  // Compiles and frees (the suite runs under the leak checker when built so).
  SslPtr<CMS_ContentInfo> cms(CMS_ContentInfo_new());
  SslPtr<X509_STORE> store(X509_STORE_new());
  SslPtr<X509_REQ> req(X509_REQ_new());
  SslPtr<ASN1_BIT_STRING> bits(ASN1_BIT_STRING_new());
  SslPtr<ASN1_OCTET_STRING> octets(ASN1_OCTET_STRING_new());  // the same ASN1_STRING type
  SslPtr<EXTENDED_KEY_USAGE> eku(sk_ASN1_OBJECT_new_null());
  SslPtr<STACK_OF(X509_EXTENSION)> exts(sk_X509_EXTENSION_new_null());
  ASSERT_TRUE(cms && store && req && bits && octets && eku && exts);
  sk_X509_EXTENSION_push(exts.get(), X509_EXTENSION_new());  // freed with the stack
  SslPtr<OSSL_STORE_CTX> none(nullptr);
  EXPECT_FALSE(none);
}

TEST(X509Stacks, OwningFreesCertificatesBorrowedLeavesThem) {
  std::shared_ptr<X509> cert = MakeCert(KeyKind::kEc, {});
  {
    BorrowedX509Stack borrowed(sk_X509_new_null());
    ASSERT_TRUE(borrowed);
    sk_X509_push(borrowed.get(), cert.get());  // no reference taken
  }
  {
    X509StackPtr owning(sk_X509_new_null());
    ASSERT_TRUE(owning);
    ASSERT_EQ(X509_up_ref(cert.get()), 1);  // the stack's own reference
    sk_X509_push(owning.get(), cert.get());
  }
  // Both stacks gave back exactly what they held: the certificate is alive
  // and still encodes.
  EXPECT_FALSE(DerString(cert.get(), i2d_X509).empty());
}

TEST(EcdsaRaw, RoundTripsThroughDer) {
  std::string r(32, '\x01'), s(32, '\x7f');
  auto der = EcdsaRawToDer(r + s);
  ASSERT_THAT(der, IsOk());
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der->data());
  SslPtr<ECDSA_SIG> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der->size())));
  ASSERT_TRUE(sig);
  std::string back_r(32, '\0'), back_s(32, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(back_r.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(back_s.data()), 32);
  EXPECT_EQ(back_r, r);
  EXPECT_EQ(back_s, s);
  EXPECT_TRUE(EcdsaSigFromRaw(r + s));
}

TEST(EcdsaRaw, MalformedIsRefused) {
  EXPECT_FALSE(EcdsaSigFromRaw(""));
  EXPECT_FALSE(EcdsaSigFromRaw("abc"));
  EXPECT_THAT(EcdsaRawToDer("abc"), StatusIs(absl::StatusCode::kInternal, ::testing::HasSubstr("malformed")));
  EXPECT_THAT(EcdsaRawToDer(""), StatusIs(absl::StatusCode::kInternal, ::testing::_));
}

TEST(DerString, EncodesAndSaysNothingForNothing) {
  SslPtr<ASN1_OBJECT> oid(OBJ_txt2obj("1.2.840.10045.3.1.7", 1));  // P-256
  EXPECT_EQ(DerString(oid.get(), i2d_ASN1_OBJECT), std::string("\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07", 10));
  EXPECT_EQ(DerString(static_cast<const X509*>(nullptr), i2d_X509), "");
}

}  // namespace
}  // namespace smime
