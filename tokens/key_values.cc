#include "tokens/key_values.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>

#include "tokens/ossl_types.h"

namespace smime::tokens::internal {
namespace {

// An EVP_PKEY of `type` ("RSA", "EC") from the parameters in `bld`.
std::shared_ptr<EVP_PKEY> PublicKeyFromParams(const char* type, OSSL_PARAM_BLD* bld) {
  SslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld));
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ClearSslErrors();
    return nullptr;
  }
  return std::shared_ptr<EVP_PKEY>(pkey, EVP_PKEY_free);
}

}  // namespace

int CurveNid(absl::string_view ec_params) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(ec_params.data());
  SslPtr<ASN1_OBJECT> oid(d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(ec_params.size())));
  if (!oid) {
    ClearSslErrors();
    return NID_undef;
  }
  return OBJ_obj2nid(oid.get());
}

int CurveBits(int nid) {
  SslPtr<EC_GROUP> group(EC_GROUP_new_by_curve_name(nid));
  if (!group) {
    ClearSslErrors();
    return 0;
  }
  return EC_GROUP_get_degree(group.get());
}

std::string CurveParamsDer(int nid) { return DerString(OBJ_nid2obj(nid), i2d_ASN1_OBJECT); }

std::string UnwrapEcPoint(absl::string_view value) {
  const unsigned char* start = reinterpret_cast<const unsigned char*>(value.data());
  const unsigned char* p = start;
  SslPtr<ASN1_OCTET_STRING> os(d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(value.size())));
  if (!os || p != start + value.size()) {
    ClearSslErrors();
    return std::string(value);
  }
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(os.get())),
                     static_cast<size_t>(ASN1_STRING_length(os.get())));
}

std::string WrapEcPoint(absl::string_view point) {
  SslPtr<ASN1_OCTET_STRING> os(ASN1_OCTET_STRING_new());
  if (!os || ASN1_OCTET_STRING_set(os.get(), reinterpret_cast<const unsigned char*>(point.data()),
                                   static_cast<int>(point.size())) != 1) {
    ClearSslErrors();
    return "";
  }
  return DerString(os.get(), i2d_ASN1_OCTET_STRING);
}

std::shared_ptr<EVP_PKEY> RsaPublicKey(absl::string_view n, absl::string_view e) {
  SslPtr<BIGNUM> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr));
  SslPtr<BIGNUM> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr));
  SslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), "n", bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), "e", bn_e.get())) {
    ClearSslErrors();
    return nullptr;
  }
  return PublicKeyFromParams("RSA", bld.get());
}

std::shared_ptr<EVP_PKEY> EcPublicKey(int nid, absl::string_view point) {
  const char* group = OBJ_nid2sn(nid);
  SslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (group == nullptr || !bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), "group", group, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), "pub", point.data(), point.size())) {
    ClearSslErrors();
    return nullptr;
  }
  return PublicKeyFromParams("EC", bld.get());
}

std::shared_ptr<EVP_PKEY> PublicKeyFromDer(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (key == nullptr) {
    ClearSslErrors();
    return nullptr;
  }
  return std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
}

std::shared_ptr<EVP_PKEY> PublicCopy(const EVP_PKEY* key) {
  std::string der = DerString(key, i2d_PUBKEY);
  return der.empty() ? nullptr : PublicKeyFromDer(der);
}

bool SamePublicKey(const EVP_PKEY* a, const EVP_PKEY* b) {
  if (a == nullptr || b == nullptr) return false;
  bool same = EVP_PKEY_eq(a, b) == 1;
  ClearSslErrors();
  return same;
}

std::string BnParam(const EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1 || bn == nullptr) {
    ClearSslErrors();
    return "";
  }
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_clear_free(bn);
  return out;
}

int EcCurveNid(const EVP_PKEY* key) {
  char name[80];
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &len) != 1) {
    ClearSslErrors();
    return NID_undef;
  }
  int nid = OBJ_sn2nid(name);
  if (nid == NID_undef) nid = OBJ_txt2nid(name);
  if (nid == NID_undef) nid = EC_curve_nist2nid(name);
  return nid;
}

std::string EcPointUncompressed(const EVP_PKEY* key, int nid) {
  unsigned char buf[256];
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof(buf), &len) != 1) {
    ClearSslErrors();
    return "";
  }
  SslPtr<EC_GROUP> group(EC_GROUP_new_by_curve_name(nid));
  if (!group) {
    ClearSslErrors();
    return "";
  }
  SslPtr<EC_POINT> point(EC_POINT_new(group.get()));
  if (!point || EC_POINT_oct2point(group.get(), point.get(), buf, len, nullptr) != 1) {
    ClearSslErrors();
    return "";
  }
  size_t n = EC_POINT_point2oct(group.get(), point.get(), POINT_CONVERSION_UNCOMPRESSED, buf, sizeof(buf), nullptr);
  if (n == 0) {
    ClearSslErrors();
    return "";
  }
  return std::string(reinterpret_cast<char*>(buf), n);
}

}  // namespace smime::tokens::internal
