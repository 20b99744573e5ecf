#include "tokens/objects.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>

#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/ossl.h"

namespace smime::tokens::internal {
namespace {

template <typename T, typename I2d>
std::string Der(const T* value, I2d i2d) {
  unsigned char* out = nullptr;
  int len = i2d(value, &out);
  if (len <= 0) {
    ClearSslErrors();
    return "";
  }
  std::string der(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return der;
}

}  // namespace

absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjectsMatching(Module& m, CK_SESSION_HANDLE s,
                                                                  std::vector<CK_ATTRIBUTE> tmpl) {
  RETURN_IF_ERROR(P11_CALL(m, C_FindObjectsInit, s, tmpl.data(), tmpl.size()));
  std::vector<CK_OBJECT_HANDLE> out;
  absl::Status st;
  for (;;) {
    CK_OBJECT_HANDLE batch[64];
    CK_ULONG n = 0;
    st = P11_CALL(m, C_FindObjects, s, batch, 64, &n);
    if (!st.ok() || n == 0) break;
    out.insert(out.end(), batch, batch + n);
  }
  absl::Status fin = P11_CALL(m, C_FindObjectsFinal, s);
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(fin);
  return out;
}

absl::StatusOr<std::vector<std::string>> CertificateValues(Module& m, CK_SESSION_HANDLE s) {
  CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
  CK_CERTIFICATE_TYPE type = CKC_X_509;
  ASSIGN_OR_RETURN(auto handles, FindObjectsMatching(m, s, {{CKA_CLASS, &cls, sizeof(cls)},
                                                            {CKA_CERTIFICATE_TYPE, &type, sizeof(type)}}));
  std::vector<std::string> out;
  for (CK_OBJECT_HANDLE h : handles) {
    CK_ATTRIBUTE a = {CKA_VALUE, nullptr, 0};
    RETURN_IF_ERROR(P11_CALL(m, C_GetAttributeValue, s, h, &a, 1));
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) continue;
    std::string value(a.ulValueLen, '\0');
    a.pValue = value.data();
    RETURN_IF_ERROR(P11_CALL(m, C_GetAttributeValue, s, h, &a, 1));
    value.resize(a.ulValueLen);
    out.push_back(std::move(value));
  }
  return out;
}

absl::StatusOr<CK_OBJECT_HANDLE> CreateCertificateObject(Module& m, CK_SESSION_HANDLE s,
                                                         const CertificateToStore& c) {
  std::string value = CertificateDer(c.cert.get());
  std::string subject = Der(X509_get_subject_name(c.cert.get()), i2d_X509_NAME);
  std::string issuer = Der(X509_get_issuer_name(c.cert.get()), i2d_X509_NAME);
  // PKCS#11: CKA_SERIAL_NUMBER is the DER encoding of the INTEGER.
  std::string serial = Der(X509_get0_serialNumber(c.cert.get()), i2d_ASN1_INTEGER);
  if (value.empty() || subject.empty() || issuer.empty() || serial.empty()) {
    return absl::InvalidArgumentError("the certificate cannot be encoded");
  }
  std::string id = c.id, label = c.label;
  CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
  CK_CERTIFICATE_TYPE type = CKC_X_509;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ULONG category = static_cast<CK_ULONG>(c.category);
  std::vector<CK_ATTRIBUTE> tmpl = {
      {CKA_CLASS, &cls, sizeof(cls)},
      {CKA_CERTIFICATE_TYPE, &type, sizeof(type)},
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &no, sizeof(no)},
      {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, label.data(), label.size()},
      {CKA_SUBJECT, subject.data(), subject.size()},
      {CKA_ISSUER, issuer.data(), issuer.size()},
      {CKA_SERIAL_NUMBER, serial.data(), serial.size()},
      {CKA_VALUE, value.data(), value.size()},
  };
  if (c.category != CertificateCategory::kUnspecified) {
    tmpl.push_back({CKA_CERTIFICATE_CATEGORY, &category, sizeof(category)});
  }
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  absl::Status st = P11_CALL(m, C_CreateObject, s, tmpl.data(), tmpl.size(), &h);
  if (!st.ok() && CkrOf(st) == CKR_ATTRIBUTE_TYPE_INVALID && c.category != CertificateCategory::kUnspecified) {
    tmpl.pop_back();  // a pre-2.40 token: store without the category
    st = P11_CALL(m, C_CreateObject, s, tmpl.data(), tmpl.size(), &h);
  }
  RETURN_IF_ERROR(st);
  return h;
}

}  // namespace smime::tokens::internal
