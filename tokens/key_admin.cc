// Token's key administration (tokens/token.h): generate, import, store
// certificates, retire and reinstate, delete. Writes that create several
// objects are all or nothing (internal::ObjectCreationGuard).
#include <openssl/obj_mac.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/key_values.h"
#include "tokens/object_guard.h"
#include "tokens/objects.h"
#include "tokens/ossl.h"
#include "tokens/token.h"
#include "tokens/with_session.h"

namespace smime::tokens {
namespace {

using internal::ObjectCreationGuard;
using internal::ReadAttributes;

// Creates the certificates of `certs` whose DER is not in `present` (nor
// earlier in `certs`), each added to `guard`. Returns, per input, whether
// an object was created.
absl::StatusOr<std::vector<bool>> CreateMissingCertificates(Module& m, CK_SESSION_HANDLE s,
                                                            const std::vector<CertificateToStore>& certs,
                                                            std::vector<std::string> present,
                                                            ObjectCreationGuard& guard) {
  std::vector<bool> out;
  for (const CertificateToStore& c : certs) {
    std::string der = CertificateDer(c.cert.get());
    if (std::find(present.begin(), present.end(), der) != present.end()) {
      out.push_back(false);
      continue;
    }
    ASSIGN_OR_RETURN(CK_OBJECT_HANDLE h, internal::CreateCertificateObject(m, s, c));
    guard.Add(h);
    present.push_back(std::move(der));
    out.push_back(true);
  }
  return out;
}

absl::Status CheckLabel(absl::string_view label) {
  if (label.empty() || label.size() > 128) return absl::InvalidArgumentError("the key label must be 1 to 128 bytes");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Key>> Token::GenerateKey(KeySpec spec, absl::string_view label,
                                                              absl::Time deadline) {
  RETURN_IF_ERROR(CheckLabel(label));
  for (const auto& k : *Keys()) {
    if (k->label() == label) {
      return absl::AlreadyExistsError(absl::StrCat(
          "a key labelled \"", label, "\" already exists (id ", k->id_hex(), "); choose another label"));
    }
  }
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ULONG modulus_bits = 0;
  CK_BYTE exponent[] = {0x01, 0x00, 0x01};
  std::string ec_params;
  bool rsa = true;
  switch (spec) {
    case KeySpec::kRsa2048: modulus_bits = 2048; break;
    case KeySpec::kRsa3072: modulus_bits = 3072; break;
    case KeySpec::kRsa4096: modulus_bits = 4096; break;
    case KeySpec::kEcP256: rsa = false; ec_params = internal::CurveParamsDer(NID_X9_62_prime256v1); break;
    case KeySpec::kEcP384: rsa = false; ec_params = internal::CurveParamsDer(NID_secp384r1); break;
  }
  std::string label_copy(label);
  std::vector<CK_ATTRIBUTE> pub_tmpl = {
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &no, sizeof(no)},
      {CKA_VERIFY, &yes, sizeof(yes)},
      {CKA_LABEL, label_copy.data(), label_copy.size()},
  };
  std::vector<CK_ATTRIBUTE> priv_tmpl = {
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_SIGN, &yes, sizeof(yes)},
      {CKA_LABEL, label_copy.data(), label_copy.size()},
  };
  CK_MECHANISM mech;
  if (rsa) {
    mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    pub_tmpl.push_back({CKA_MODULUS_BITS, &modulus_bits, sizeof(modulus_bits)});
    pub_tmpl.push_back({CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)});
    pub_tmpl.push_back({CKA_ENCRYPT, &yes, sizeof(yes)});
    priv_tmpl.push_back({CKA_DECRYPT, &yes, sizeof(yes)});
  } else {
    mech = {CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    pub_tmpl.push_back({CKA_EC_PARAMS, ec_params.data(), ec_params.size()});
    priv_tmpl.push_back({CKA_DERIVE, &yes, sizeof(yes)});
  }
  auto id = WithSession(deadline, [&](Session& s) -> absl::StatusOr<std::string> {
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    RETURN_IF_ERROR(P11_CALL(*module_, C_GenerateKeyPair, s.handle(), &mech, pub_tmpl.data(),
                             pub_tmpl.size(), priv_tmpl.data(), priv_tmpl.size(), &pub, &priv));
    ObjectCreationGuard guard(*module_, s.handle());  // no orphan key without an id
    guard.Add(priv);
    guard.Add(pub);
    ASSIGN_OR_RETURN(internal::AttrMap attrs, ReadAttributes(*module_, s.handle(), pub, {rsa ? CKA_MODULUS : CKA_EC_POINT}));
    if (attrs.empty()) return absl::InternalError("token did not return the new public key");
    std::string value = attrs.begin()->second;
    std::string new_id = internal::KeyIdFromPublicValue(rsa ? value : internal::UnwrapEcPoint(value));
    CK_ATTRIBUTE set_id = {CKA_ID, new_id.data(), new_id.size()};
    RETURN_IF_ERROR(P11_CALL(*module_, C_SetAttributeValue, s.handle(), pub, &set_id, 1));
    RETURN_IF_ERROR(P11_CALL(*module_, C_SetAttributeValue, s.handle(), priv, &set_id, 1));
    guard.Release();
    return new_id;
  });
  if (!id.ok()) return id.status();
  RETURN_IF_ERROR(Refresh());
  for (const auto& k : *Keys()) {
    if (k->id() == *id) return k;
  }
  return absl::InternalError("generated key not found after refresh");
}

absl::StatusOr<std::vector<bool>> Token::StoreCertificates(const std::vector<CertificateToStore>& certs,
                                                           absl::Time deadline) {
  auto created = WithSession(deadline, [&](Session& s) -> absl::StatusOr<std::vector<bool>> {
    ASSIGN_OR_RETURN(std::vector<std::string> present, internal::CertificateValues(*module_, s.handle()));
    // Leave the token as it was: no half-imported bundle.
    ObjectCreationGuard guard(*module_, s.handle());
    ASSIGN_OR_RETURN(std::vector<bool> out,
                     CreateMissingCertificates(*module_, s.handle(), certs, std::move(present), guard));
    guard.Release();
    return out;
  });
  if (!created.ok()) return created.status();
  for (size_t i = 0; i < certs.size(); ++i) {
    if (!(*created)[i]) continue;
    SMIME_LOG(kInfo, "certificate_stored").Kv("token", label_).Kv("id", HexEncode(certs[i].id))
        .Kv("label", certs[i].label).Kv("category", static_cast<CK_ULONG>(certs[i].category));
  }
  if (std::find(created->begin(), created->end(), true) != created->end()) RETURN_IF_ERROR(Refresh());
  return created;
}

absl::StatusOr<Token::ImportedKey> Token::ImportKey(const EVP_PKEY* key, absl::string_view label,
                                                    const std::vector<CertificateToStore>& certs,
                                                    absl::Time deadline) {
  RETURN_IF_ERROR(CheckLabel(label));
  ASSIGN_OR_RETURN(std::string id, KeyIdForPublicKey(key));
  std::string label_copy(label);
  auto created = WithSession(deadline, [&](Session& s) -> absl::StatusOr<std::vector<bool>> {
    Module& m = *module_;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    ASSIGN_OR_RETURN(auto existing, internal::FindObjectsMatching(m, s.handle(), {{CKA_CLASS, &cls, sizeof(cls)},
                                                                                  {CKA_ID, id.data(), id.size()}}));
    if (!existing.empty()) {
      return absl::AlreadyExistsError(
          absl::StrCat("this private key is already on the token (id ", HexEncode(id), "); nothing was written"));
    }
    ASSIGN_OR_RETURN(std::vector<std::string> present, internal::CertificateValues(m, s.handle()));
    ASSIGN_OR_RETURN(auto pair, internal::CreateKeyPairObjects(m, s.handle(), key, id, label_copy));
    // Private key first: never leave a key without the rest.
    ObjectCreationGuard guard(m, s.handle());
    guard.Add(pair.first);
    guard.Add(pair.second);
    ASSIGN_OR_RETURN(std::vector<bool> out, CreateMissingCertificates(m, s.handle(), certs, std::move(present), guard));
    guard.Release();
    return out;
  });
  if (!created.ok()) return created.status();
  SMIME_LOG(kInfo, "key_imported").Kv("token", label_).Kv("id", HexEncode(id)).Kv("label", label_copy);
  RETURN_IF_ERROR(Refresh());
  for (const auto& k : *Keys()) {
    if (k->id() == id) return ImportedKey{k, *std::move(created)};
  }
  return absl::InternalError("imported key not found after refresh");
}

absl::Status Token::RetireKey(const Key& key, absl::Time now, absl::Time deadline) {
  return WriteRetireMark(key, absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone()), deadline);
}

absl::Status Token::ReinstateKey(const Key& key, absl::Time deadline) { return WriteRetireMark(key, "", deadline); }

absl::Status Token::WriteRetireMark(const Key& key, const std::string& date, absl::Time deadline) {
  auto done = WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(std::shared_ptr<const Key> now, ReadKeyAgain(s, k));
    if (!now->ambiguity_.empty()) return CannotTellApart(*now, date.empty() ? "reinstated" : "retired");
    if (now->public_key_objects_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(key), " has no public key object on the token to carry the retire mark (CKA_END_DATE)"));
    }
    // An empty CK_DATE means "no end date" (PKCS#11 3.0 §4.4).
    CK_ATTRIBUTE end = {CKA_END_DATE, date.empty() ? nullptr : const_cast<char*>(date.data()), date.size()};
    for (CK_OBJECT_HANDLE h : now->public_key_objects_) {
      RETURN_IF_ERROR(P11_CALL(*module_, C_SetAttributeValue, s.handle(), h, &end, 1));
    }
    return true;
  });
  if (!done.ok()) return done.status();
  if (date.empty()) {
    SMIME_LOG(kInfo, "key_reinstated").Kv("token", label_).Kv("id", key.id_hex());
  } else {
    SMIME_LOG(kInfo, "key_retired").Kv("token", label_).Kv("id", key.id_hex()).Kv("end_date", date);
  }
  return Refresh();
}

absl::StatusOr<size_t> Token::DeleteKey(const Key& key, absl::Time deadline) {
  auto destroyed = WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<size_t> {
    ASSIGN_OR_RETURN(std::shared_ptr<const Key> now, ReadKeyAgain(s, k));
    if (!now->ambiguity_.empty()) return CannotTellApart(*now, "deleted");
    // The private key first: once it is gone the key is gone, whatever
    // happens to the rest.
    RETURN_IF_ERROR(P11_CALL(*module_, C_DestroyObject, s.handle(), now->handle_));
    size_t n = 1;
    for (const auto* objects : {&now->public_key_objects_, &now->certificate_objects_}) {
      for (CK_OBJECT_HANDLE h : *objects) {
        if (P11_CALL(*module_, C_DestroyObject, s.handle(), h).ok()) ++n;
      }
    }
    return n;
  });
  if (!destroyed.ok()) return destroyed.status();
  SMIME_LOG(kInfo, "key_deleted").Kv("token", label_).Kv("id", key.id_hex()).Kv("objects", *destroyed);
  RETURN_IF_ERROR(Refresh());
  return *destroyed;
}

absl::Status Token::CannotTellApart(const Key& key, absl::string_view nothing_was) {
  return absl::FailedPreconditionError(absl::StrCat(
      Describe(key), " cannot be told apart from another key on the token: ", key.ambiguity_, ". Nothing was ",
      nothing_was, "; give each key its own CKA_ID with the token's tool first"));
}

}  // namespace smime::tokens
