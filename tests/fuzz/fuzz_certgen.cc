#include "tests/fuzz/fuzz_certgen.h"

#include <openssl/x509v3.h>

namespace smime::fuzz {
namespace {

void Name(X509* cert, const char* cn) {
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
}

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
}

X509* NewCert(long serial) {
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 365L * 24 * 3600);
  X509_set_pubkey(cert, FuzzKey());
  return cert;
}

}  // namespace

EVP_PKEY* FuzzKey() {
  static EVP_PKEY* key = EVP_EC_gen("P-256");
  return key;
}

std::shared_ptr<X509> FuzzCa() {
  static std::shared_ptr<X509> ca = [] {
    X509* cert = NewCert(1);
    Name(cert, "Fuzz CA");
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    AddExt(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    X509_sign(cert, FuzzKey(), EVP_sha256());
    return std::shared_ptr<X509>(cert, X509_free);
  }();
  return ca;
}

std::shared_ptr<X509> FuzzLeafWithEmail(absl::string_view email) {
  X509* cert = NewCert(2);
  Name(cert, "Fuzz Leaf");
  X509_set_issuer_name(cert, X509_get_subject_name(FuzzCa().get()));
  AddExt(cert, FuzzCa().get(), NID_key_usage, "critical,digitalSignature,keyAgreement");
  AddExt(cert, FuzzCa().get(), NID_ext_key_usage, "emailProtection");
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  ASN1_STRING_set(ia5, email.data(), static_cast<int>(email.size()));
  GENERAL_NAME_set0_value(gn, GEN_EMAIL, ia5);
  sk_GENERAL_NAME_push(names, gn);
  X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT);
  GENERAL_NAMES_free(names);
  if (X509_sign(cert, FuzzKey(), EVP_sha256()) <= 0) {
    X509_free(cert);
    return nullptr;
  }
  return std::shared_ptr<X509>(cert, X509_free);
}

}  // namespace smime::fuzz
