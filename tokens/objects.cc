#include "tokens/objects.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/sha.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/ckr_status.h"
#include "tokens/certificate.h"
#include "tokens/key_values.h"
#include "tokens/object_guard.h"
#include "tokens/ossl.h"

namespace smime::tokens::internal {
namespace {

// One C_GetAttributeValue round (lengths, then values) for `types`; absent
// or sensitive attributes are missing from the map.
absl::StatusOr<AttrMap> ReadAttributeBatch(Module& m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                                           const std::vector<CK_ATTRIBUTE_TYPE>& types) {
  std::vector<CK_ATTRIBUTE> attrs;
  for (CK_ATTRIBUTE_TYPE t : types) attrs.push_back({t, nullptr, 0});
  absl::Status st = P11_CALL(m, C_GetAttributeValue, s, obj, attrs.data(), attrs.size());
  auto rv = CkrOf(st);
  if (!st.ok() && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) return st;
  std::vector<CK_ATTRIBUTE> wanted;
  std::vector<std::string> buffers;
  buffers.reserve(attrs.size());
  for (const CK_ATTRIBUTE& a : attrs) {
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) continue;
    buffers.emplace_back(a.ulValueLen, '\0');
    wanted.push_back({a.type, buffers.back().data(), a.ulValueLen});
  }
  AttrMap out;
  if (wanted.empty()) return out;
  RETURN_IF_ERROR(P11_CALL(m, C_GetAttributeValue, s, obj, wanted.data(), wanted.size()));
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (wanted[i].ulValueLen == CK_UNAVAILABLE_INFORMATION) continue;
    buffers[i].resize(wanted[i].ulValueLen);
    out[wanted[i].type] = std::move(buffers[i]);
  }
  return out;
}

}  // namespace

bool AttrTrue(const AttrMap& a, CK_ATTRIBUTE_TYPE t) {
  auto it = a.find(t);
  return it != a.end() && it->second.size() == sizeof(CK_BBOOL) && it->second[0] != 0;
}

std::optional<CK_ULONG> AttrUlong(const AttrMap& a, CK_ATTRIBUTE_TYPE t) {
  auto it = a.find(t);
  if (it == a.end() || it->second.size() != sizeof(CK_ULONG)) return std::nullopt;
  CK_ULONG v;
  std::memcpy(&v, it->second.data(), sizeof(v));
  return v;
}

std::string AttrStr(const AttrMap& a, CK_ATTRIBUTE_TYPE t) {
  auto it = a.find(t);
  return it == a.end() ? std::string() : it->second;
}

absl::StatusOr<AttrMap> ReadAttributes(Module& m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                                       std::initializer_list<CK_ATTRIBUTE_TYPE> types) {
  absl::StatusOr<AttrMap> batch = ReadAttributeBatch(m, s, obj, types);
  if (batch.ok() || types.size() == 1 || StopsObjectReads(batch.status())) return batch;
  CK_RV rv = *CkrOf(batch.status());
  if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_OBJECT_HANDLE_INVALID) return batch;
  AttrMap out;
  std::vector<std::string> unreadable;
  for (CK_ATTRIBUTE_TYPE t : types) {
    absl::StatusOr<AttrMap> one = ReadAttributeBatch(m, s, obj, {t});
    if (!one.ok() && StopsObjectReads(one.status())) return one.status();
    if (one.ok()) {
      out.merge(*one);
    } else {
      unreadable.push_back(absl::StrCat("0x", absl::Hex(t)));
    }
  }
  if (unreadable.size() == types.size()) return batch;
  SMIME_LOG(kWarning, "attributes_unreadable").Kv("handle", obj).Kv("attributes", absl::StrJoin(unreadable, ","))
      .Kv("rv", CkrName(rv));
  return out;
}


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
    absl::StatusOr<AttrMap> a = ReadAttributes(m, s, h, {CKA_VALUE});
    if (!a.ok()) {
      // One certificate the token will not read is left out of the
      // comparison; the token being gone stops it.
      if (StopsObjectReads(a.status())) return a.status();
      SMIME_LOG(kWarning, "object_skipped").Kv("object", "certificate").Kv("handle", h)
          .Kv("reason", a.status().message());
      continue;
    }
    auto value = a->find(CKA_VALUE);
    if (value != a->end()) out.push_back(std::move(value->second));
  }
  return out;
}

absl::StatusOr<CK_OBJECT_HANDLE> CreateCertificateObject(Module& m, CK_SESSION_HANDLE s,
                                                         const CertificateToStore& c) {
  std::string value = CertificateDer(c.cert.get());
  std::string subject = DerString(X509_get_subject_name(c.cert.get()), i2d_X509_NAME);
  std::string issuer = DerString(X509_get_issuer_name(c.cert.get()), i2d_X509_NAME);
  // PKCS#11: CKA_SERIAL_NUMBER is the DER encoding of the INTEGER.
  std::string serial = DerString(X509_get0_serialNumber(c.cert.get()), i2d_ASN1_INTEGER);
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

namespace smime::tokens {

using internal::BnParam;
using internal::EcCurveNid;
using internal::EcPointUncompressed;

absl::StatusOr<std::string> KeyIdForPublicKey(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) {
    std::string n = BnParam(key, OSSL_PKEY_PARAM_RSA_N);
    if (n.empty()) return absl::InvalidArgumentError("the RSA key has no modulus");
    return internal::KeyIdFromPublicValue(n);
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    std::string point = EcPointUncompressed(key, EcCurveNid(key));
    if (point.empty()) return absl::InvalidArgumentError("the EC key's curve or point is not supported");
    return internal::KeyIdFromPublicValue(point);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the key is ", EVP_PKEY_get0_type_name(key), "; only RSA and EC keys are supported"));
}

namespace internal {

std::string KeyIdFromPublicValue(absl::string_view modulus_or_point) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(modulus_or_point.data()), modulus_or_point.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

absl::StatusOr<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> CreateKeyPairObjects(Module& m, CK_SESSION_HANDLE s,
                                                                                   const EVP_PKEY* key,
                                                                                   const std::string& id_in,
                                                                                   const std::string& label_in) {
  std::string id = id_in, label = label_in;
  CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY, pub_cls = CKO_PUBLIC_KEY;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_KEY_TYPE kt;
  // Every value that holds private key material; wiped on every path.
  std::vector<std::string> secrets;
  struct Wipe {
    std::vector<std::string>* v;
    ~Wipe() {
      for (std::string& x : *v) OPENSSL_cleanse(x.data(), x.size());
    }
  } wipe{&secrets};
  secrets.reserve(8);
  std::string n, e, ec_params, ec_point;
  std::vector<CK_ATTRIBUTE> priv = {
      {CKA_CLASS, &priv_cls, sizeof(priv_cls)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_TOKEN, &yes, sizeof(yes)},               {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},           {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_SIGN, &yes, sizeof(yes)},                {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, label.data(), label.size()},
  };
  std::vector<CK_ATTRIBUTE> pub = {
      {CKA_CLASS, &pub_cls, sizeof(pub_cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_TOKEN, &yes, sizeof(yes)},         {CKA_PRIVATE, &no, sizeof(no)},
      {CKA_VERIFY, &yes, sizeof(yes)},        {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, label.data(), label.size()},
  };
  if (EVP_PKEY_is_a(key, "RSA")) {
    kt = CKK_RSA;
    n = BnParam(key, OSSL_PKEY_PARAM_RSA_N);
    e = BnParam(key, OSSL_PKEY_PARAM_RSA_E);
    const std::pair<CK_ATTRIBUTE_TYPE, const char*> parts[] = {
        {CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D},      {CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1},
        {CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2},         {CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1},
        {CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2},    {CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
    };
    for (const auto& [type, name] : parts) {
      secrets.push_back(BnParam(key, name));
      if (secrets.back().empty()) {
        if (type == CKA_PRIVATE_EXPONENT) return absl::InvalidArgumentError("the RSA key has no private exponent");
        secrets.pop_back();  // a key without CRT values: the token does without
        continue;
      }
      priv.push_back({type, secrets.back().data(), secrets.back().size()});
    }
    if (n.empty() || e.empty()) return absl::InvalidArgumentError("the RSA key has no modulus or exponent");
    priv.push_back({CKA_MODULUS, n.data(), n.size()});
    priv.push_back({CKA_PUBLIC_EXPONENT, e.data(), e.size()});
    priv.push_back({CKA_DECRYPT, &yes, sizeof(yes)});
    pub.push_back({CKA_MODULUS, n.data(), n.size()});
    pub.push_back({CKA_PUBLIC_EXPONENT, e.data(), e.size()});
    pub.push_back({CKA_ENCRYPT, &yes, sizeof(yes)});
  } else if (EVP_PKEY_is_a(key, "EC")) {
    kt = CKK_EC;
    int nid = EcCurveNid(key);
    std::string point = EcPointUncompressed(key, nid);
    if (point.empty()) return absl::InvalidArgumentError("the EC key's curve or point is not supported");
    ec_params = CurveParamsDer(nid);
    ec_point = WrapEcPoint(point);
    secrets.push_back(BnParam(key, OSSL_PKEY_PARAM_PRIV_KEY));
    if (secrets.back().empty() || ec_params.empty() || ec_point.empty()) {
      return absl::InvalidArgumentError("the EC key has no private value or a curve without a name");
    }
    priv.push_back({CKA_EC_PARAMS, ec_params.data(), ec_params.size()});
    priv.push_back({CKA_VALUE, secrets.back().data(), secrets.back().size()});
    priv.push_back({CKA_DERIVE, &yes, sizeof(yes)});
    pub.push_back({CKA_EC_PARAMS, ec_params.data(), ec_params.size()});
    pub.push_back({CKA_EC_POINT, ec_point.data(), ec_point.size()});
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("the key is ", EVP_PKEY_get0_type_name(key), "; only RSA and EC keys are supported"));
  }
  CK_OBJECT_HANDLE priv_h = CK_INVALID_HANDLE, pub_h = CK_INVALID_HANDLE;
  ObjectCreationGuard guard(m, s);  // no orphan private key
  RETURN_IF_ERROR(P11_CALL(m, C_CreateObject, s, priv.data(), priv.size(), &priv_h));
  guard.Add(priv_h);
  RETURN_IF_ERROR(P11_CALL(m, C_CreateObject, s, pub.data(), pub.size(), &pub_h));
  guard.Release();
  return std::make_pair(priv_h, pub_h);
}

}  // namespace internal
}  // namespace smime::tokens
