// Token's key operations (tokens/token.h): sign a digest, RSA-decrypt, the
// private-key primitives OpenSSL's CMS code needs, and ECDH.
#include <openssl/rsa.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/decrypt_failure.h"
#include "tokens/objects.h"
#include "tokens/ossl.h"
#include "tokens/token.h"
#include "tokens/with_session.h"

namespace smime::tokens {
namespace {

using internal::ReadAttributes;

// The SHA-256 DigestInfo prefix of RFC 8017 §9.2 note 1.
constexpr unsigned char kSha256DigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                               0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                               0x01, 0x05, 0x00, 0x04, 0x20};

}  // namespace

const char* SignMechanismName(SignMechanism m) {
  switch (m) {
    case SignMechanism::kRsaPkcs1Sha256: return "rsa-pkcs1-sha256";
    case SignMechanism::kRsaPssSha256: return "rsa-pss-sha256";
    case SignMechanism::kEcdsaSha256: return "ecdsa-sha256";
  }
  return "unknown";
}

const char* DecryptMechanismName(DecryptMechanism m) {
  switch (m) {
    case DecryptMechanism::kRsaPkcs1: return "rsa-pkcs1";
    case DecryptMechanism::kRsaOaepSha1: return "rsa-oaep-sha1";
    case DecryptMechanism::kRsaOaepSha256: return "rsa-oaep-sha256";
  }
  return "unknown";
}

absl::StatusOr<std::string> Token::Sign(const Key& key, SignMechanism mechanism,
                                        absl::string_view digest, absl::Time deadline) {
  if (digest.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("the digest must be 32 bytes (SHA-256); got ", digest.size()));
  }
  bool rsa_mech = mechanism != SignMechanism::kEcdsaSha256;
  if (rsa_mech != (key.algorithm() == KeyAlgorithm::kRsa) || key.algorithm() == KeyAlgorithm::kOther) {
    return absl::InvalidArgumentError(absl::StrCat(
        SignMechanismName(mechanism), " does not work with ", Describe(key), ", ", key.short_name(), "; use ",
        key.algorithm() == KeyAlgorithm::kEc ? "ecdsa-sha256" : "rsa-pkcs1-sha256 or rsa-pss-sha256"));
  }
  if (!key.can_sign()) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(key), " is not allowed to sign (CKA_SIGN is false)"));
  }
  CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
  CK_MECHANISM mech = {CKM_RSA_PKCS, nullptr, 0};
  std::string input;
  size_t out_len = 0;
  switch (mechanism) {
    case SignMechanism::kRsaPkcs1Sha256:
      input.assign(reinterpret_cast<const char*>(kSha256DigestInfo), sizeof(kSha256DigestInfo));
      input.append(digest.data(), digest.size());
      out_len = static_cast<size_t>((key.bits() + 7) / 8);
      break;
    case SignMechanism::kRsaPssSha256:
      mech = {CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
      input.assign(digest.data(), digest.size());
      out_len = static_cast<size_t>((key.bits() + 7) / 8);
      break;
    case SignMechanism::kEcdsaSha256:
      mech = {CKM_ECDSA, nullptr, 0};
      input.assign(digest.data(), digest.size());
      out_len = 2 * static_cast<size_t>((key.bits() + 7) / 8);
      break;
  }
  if (out_len == 0) out_len = 1024;  // size unknown: large enough for RSA-8192
  auto raw = WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<std::string> {
    RETURN_IF_ERROR(P11_CALL(*module_, C_SignInit, s.handle(), &mech, k.handle_));
    std::string sig(out_len, '\0');
    CK_ULONG len = sig.size();
    RETURN_IF_ERROR(P11_CALL(*module_, C_Sign, s.handle(),
                             reinterpret_cast<CK_BYTE*>(input.data()), input.size(),
                             reinterpret_cast<CK_BYTE*>(sig.data()), &len));
    sig.resize(len);
    return sig;
  });
  if (!raw.ok() || mechanism != SignMechanism::kEcdsaSha256) return raw;
  // PKCS#11 ECDSA gives r || s; X.509 and CMS want DER ECDSA-Sig-Value.
  return EcdsaRawToDer(*raw);
}

absl::StatusOr<std::string> Token::DecryptOnce(Session& s, const Key& key, CK_MECHANISM* mech,
                                               absl::string_view ciphertext) {
  RETURN_IF_ERROR(P11_CALL(*module_, C_DecryptInit, s.handle(), mech, key.handle_));
  std::string out(ciphertext.size(), '\0');
  CK_ULONG len = out.size();
  std::string ct(ciphertext);
  absl::Status st = P11_CALL(*module_, C_Decrypt, s.handle(), reinterpret_cast<CK_BYTE*>(ct.data()),
                             ct.size(), reinterpret_cast<CK_BYTE*>(out.data()), &len);
  if (!st.ok()) {
    OPENSSL_cleanse(out.data(), out.size());
    // Failures that depend on the ciphertext all read the same.
    return AsDecryptFailure(st);
  }
  out.resize(len);
  return out;
}

absl::StatusOr<std::string> Token::DecryptOaepRaw(Session& s, const Key& key, const EVP_MD* md,
                                                  absl::string_view ciphertext) {
  CK_MECHANISM raw = {CKM_RSA_X_509, nullptr, 0};
  ASSIGN_OR_RETURN(std::string em, DecryptOnce(s, key, &raw, ciphertext));
  size_t k = ciphertext.size();
  if (em.size() > k) {
    OPENSSL_cleanse(em.data(), em.size());
    return DecryptionFailed();
  }
  // Some tokens strip leading zero bytes of the raw result.
  std::string padded(k - em.size(), '\0');
  padded += em;
  OPENSSL_cleanse(em.data(), em.size());
  std::string out(k, '\0');
  // OpenSSL's constant-time OAEP decoding (RFC 8017 §7.1.2 step 3).
  int n = RSA_padding_check_PKCS1_OAEP_mgf1(
      reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(k),
      reinterpret_cast<const unsigned char*>(padded.data()), static_cast<int>(k),
      static_cast<int>(k), nullptr, 0, md, md);
  OPENSSL_cleanse(padded.data(), padded.size());
  ClearSslErrors();
  if (n < 0) {
    OPENSSL_cleanse(out.data(), out.size());
    return DecryptionFailed();
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

absl::StatusOr<std::string> Token::Decrypt(const Key& key, DecryptMechanism mechanism,
                                           absl::string_view ciphertext, absl::Time deadline) {
  if (key.algorithm() != KeyAlgorithm::kRsa) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(key), " is ", key.short_name(), "; RSA decryption needs an RSA key"));
  }
  if (!key.can_decrypt()) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(key), " is not allowed to decrypt (CKA_DECRYPT is false)"));
  }
  size_t modulus_bytes = static_cast<size_t>((key.bits() + 7) / 8);
  if (modulus_bytes != 0 && ciphertext.size() != modulus_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ciphertext must be ", modulus_bytes, " bytes for ", Describe(key), "; got ", ciphertext.size()));
  }
  const bool sha256 = mechanism == DecryptMechanism::kRsaOaepSha256;
  std::atomic<bool>& use_raw = sha256 ? oaep_sha256_raw_ : oaep_sha1_raw_;
  const EVP_MD* md = sha256 ? EVP_sha256() : EVP_sha1();
  return WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<std::string> {
    if (mechanism == DecryptMechanism::kRsaPkcs1) {
      CK_MECHANISM mech = {CKM_RSA_PKCS, nullptr, 0};
      return DecryptOnce(s, k, &mech, ciphertext);
    }
    if (!use_raw.load()) {
      CK_RSA_PKCS_OAEP_PARAMS oaep = {sha256 ? CKM_SHA256 : CKM_SHA_1,
                                      sha256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1,
                                      CKZ_DATA_SPECIFIED, nullptr, 0};
      CK_MECHANISM mech = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
      auto out = DecryptOnce(s, k, &mech, ciphertext);
      auto rv = CkrOf(out.status());
      bool unsupported = rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID ||
                         rv == CKR_ARGUMENTS_BAD || rv == CKR_FUNCTION_NOT_SUPPORTED;
      if (!unsupported) return out;
      // These come from C_DecryptInit, before any ciphertext is looked at.
      use_raw = true;
      SMIME_LOG(kInfo, "oaep_fallback").Kv("token", label_).Kv("mechanism", DecryptMechanismName(mechanism))
          .Kv("reason", "token refused OAEP parameters; decoding OAEP from raw RSA");
    }
    return DecryptOaepRaw(s, k, md, ciphertext);
  });
}

absl::StatusOr<std::string> Token::PrivateOp(const Key& key, Primitive primitive,
                                             absl::string_view input, absl::Time deadline) {
  const bool ec = primitive == Primitive::kEcdsa;
  if (ec != (key.algorithm() == KeyAlgorithm::kEc) || key.algorithm() == KeyAlgorithm::kOther) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(key), ", ", key.short_name(),
                                                   ", cannot do this operation"));
  }
  const bool sign = primitive == Primitive::kRsaPkcs1Sign || primitive == Primitive::kRsaRawSign || ec;
  if (sign ? !key.can_sign() : !key.can_decrypt()) {
    return absl::FailedPreconditionError(absl::StrCat(Describe(key), " is not allowed to ",
                                                      sign ? "sign" : "decrypt"));
  }
  CK_MECHANISM_TYPE type = CKM_RSA_PKCS;
  if (primitive == Primitive::kRsaRawSign || primitive == Primitive::kRsaRawDecrypt) type = CKM_RSA_X_509;
  if (ec) type = CKM_ECDSA;
  size_t unit = static_cast<size_t>((key.bits() + 7) / 8);
  size_t out_len = ec ? 2 * unit : unit;
  if (out_len == 0) out_len = 1024;
  std::string in(input.data(), input.size());
  auto result = WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<std::string> {
    CK_MECHANISM mech = {type, nullptr, 0};
    std::string out(out_len, '\0');
    CK_ULONG len = out.size();
    if (sign) {
      RETURN_IF_ERROR(P11_CALL(*module_, C_SignInit, s.handle(), &mech, k.handle_));
      RETURN_IF_ERROR(P11_CALL(*module_, C_Sign, s.handle(), reinterpret_cast<CK_BYTE*>(in.data()),
                               in.size(), reinterpret_cast<CK_BYTE*>(out.data()), &len));
      out.resize(len);
      return out;
    }
    return DecryptOnce(s, k, &mech, in);
  });
  OPENSSL_cleanse(in.data(), in.size());
  return result;
}

absl::StatusOr<std::string> Token::EcdhDerive(const Key& key, absl::string_view peer_point,
                                              absl::Time deadline) {
  if (key.algorithm() != KeyAlgorithm::kEc) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(key), " is not an EC key"));
  }
  if (!key.can_derive()) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(key), " is not allowed to derive (CKA_DERIVE is false)"));
  }
  std::string point(peer_point.data(), peer_point.size());
  CK_ECDH1_DERIVE_PARAMS params = {CKD_NULL, 0, nullptr, point.size(),
                                   reinterpret_cast<CK_BYTE*>(point.data())};
  CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &params, sizeof(params)};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
  CK_ULONG value_len = static_cast<CK_ULONG>((key.bits() + 7) / 8);
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  // A session object that lives just long enough to be read: the shared
  // secret is an input to the CMS KDF, not a key the token keeps.
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof(cls)},         {CKA_KEY_TYPE, &kt, sizeof(kt)},
      {CKA_TOKEN, &no, sizeof(no)},           {CKA_SENSITIVE, &no, sizeof(no)},
      {CKA_EXTRACTABLE, &yes, sizeof(yes)},   {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
  };
  return WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<std::string> {
    CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;
    RETURN_IF_ERROR(P11_CALL(*module_, C_DeriveKey, s.handle(), &mech, k.handle_, tmpl,
                             sizeof(tmpl) / sizeof(tmpl[0]), &secret));
    auto value = ReadAttributes(*module_, s.handle(), secret, {CKA_VALUE});
    (void)P11_CALL(*module_, C_DestroyObject, s.handle(), secret);
    if (!value.ok()) return value.status();
    if (value->empty()) return absl::InternalError("token did not reveal the ECDH result");
    return std::move(value->begin()->second);
  });
}

}  // namespace smime::tokens
