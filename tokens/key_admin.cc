// Token's key administration (tokens/token.h): generate, import, store
// certificates, retire and reinstate, delete. One at a time per Token
// (AdminLock); writes that create several objects are all or nothing
// (internal::ObjectCreationGuard).
#include <openssl/obj_mac.h>

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/inventory.h"
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

// Labels are printed by every tool that lists the token (smimectl,
// pkcs11-tool, p11tool): one with a control character could rewrite what
// they show (a CR, an escape sequence), so none is written.
absl::Status CheckNoControlCharacter(absl::string_view label, absl::string_view what) {
  for (size_t i = 0; i < label.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(label[i]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s holds a control character (0x%02x at byte %d); labels on the token may not", what, c, i + 1));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLabel(absl::string_view label) {
  if (label.empty() || label.size() > 128) return absl::InvalidArgumentError("the key label must be 1 to 128 bytes");
  return CheckNoControlCharacter(label, "the key label");
}

// What GenerateKey and ImportKey wrote, for Token::WrittenKey.
struct Written {
  CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
  uint64_t epoch = 0;
  internal::TokenObjects objects;
  std::vector<bool> created;  // ImportKey: per certificate
};

// `status` with `message` in front, its payloads (the CK_RV) kept.
absl::Status Prefixed(const absl::Status& status, absl::string_view message) {
  absl::Status out(status.code(), absl::StrCat(message, status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace

class Token::AdminLock {
 public:
  explicit AdminLock(Token& token) : mu_(token.admin_mu_) {
    if (!mu_.TryLock()) {
      (void)token.Hook(TestPoint::kAdminWait);
      mu_.Lock();
    }
  }
  AdminLock(const AdminLock&) = delete;
  AdminLock& operator=(const AdminLock&) = delete;
  ~AdminLock() { mu_.Unlock(); }

 private:
  absl::Mutex& mu_;
};

absl::Status Token::RefreshAfterWrite(absl::string_view write) {
  (void)Hook(TestPoint::kWritten);
  absl::Status st = Refresh();
  if (!st.ok()) {
    SMIME_LOG(kWarning, "keys_refresh_failed").Kv("token", label_).Kv("after", write)
        .Kv("result", "the write stands; the key list catches up at the next refresh").Kv("reason", st.message());
  }
  return st;
}

std::shared_ptr<const Key> Token::WrittenKey(CK_OBJECT_HANDLE handle, uint64_t epoch, bool refreshed,
                                             const internal::TokenObjects& as_written) {
  if (refreshed) {
    for (const auto& k : *Keys()) {
      if (k->handle_ == handle && k->login_epoch_ == epoch) return k;
    }
  }
  return internal::BuildInventory(as_written, info_, epoch).keys->front();
}

absl::Status Token::DestroyObject(Session& s, CK_OBJECT_HANDLE object) {
  RETURN_IF_ERROR(Hook(TestPoint::kDestroyObject, object));
  return P11_CALL(*module_, C_DestroyObject, s.handle(), object);
}

absl::StatusOr<std::shared_ptr<const Key>> Token::GenerateKey(KeySpec spec, absl::string_view label,
                                                              absl::Time deadline) {
  RETURN_IF_ERROR(CheckLabel(label));
  AdminLock admin(*this);
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ULONG modulus_bits = 0;
  CK_BYTE exponent[] = {0x01, 0x00, 0x01};
  int curve = NID_undef;
  switch (spec) {
    case KeySpec::kRsa2048: modulus_bits = 2048; break;
    case KeySpec::kRsa3072: modulus_bits = 3072; break;
    case KeySpec::kRsa4096: modulus_bits = 4096; break;
    case KeySpec::kEcP256: curve = NID_X9_62_prime256v1; break;
    case KeySpec::kEcP384: curve = NID_secp384r1; break;
  }
  const bool rsa = curve == NID_undef;
  std::string ec_params = rsa ? "" : internal::CurveParamsDer(curve);
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
  auto written = WithSession(deadline, [&](Session& s) -> absl::StatusOr<Written> {
    Module& m = *module_;
    // On the token, not in the key list: the list may lag behind (another
    // tool, or a refresh after our last write that failed).
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    ASSIGN_OR_RETURN(auto same_label, internal::FindObjectsMatching(m, s.handle(), {{CKA_CLASS, &cls, sizeof(cls)},
                                                                                    {CKA_LABEL, label_copy.data(),
                                                                                     label_copy.size()}}));
    if (!same_label.empty()) {
      auto id = ReadAttributes(m, s.handle(), same_label.front(), {CKA_ID});
      return absl::AlreadyExistsError(absl::StrCat("a key labelled \"", label, "\" already exists (id ",
                                                   id.ok() ? HexEncode(internal::AttrStr(*id, CKA_ID)) : "unknown",
                                                   "); choose another label"));
    }
    RETURN_IF_ERROR(Hook(TestPoint::kLabelChecked));
    Written out;
    out.epoch = login_epoch_.load();
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    RETURN_IF_ERROR(P11_CALL(m, C_GenerateKeyPair, s.handle(), &mech, pub_tmpl.data(), pub_tmpl.size(),
                             priv_tmpl.data(), priv_tmpl.size(), &pub, &priv));
    ObjectCreationGuard guard(m, s.handle());  // no orphan key without an id
    guard.Add(priv);
    guard.Add(pub);
    ASSIGN_OR_RETURN(internal::AttrMap attrs, ReadAttributes(m, s.handle(), pub, {rsa ? CKA_MODULUS : CKA_EC_POINT}));
    if (attrs.empty()) return absl::InternalError("token did not return the new public key");
    std::string value = rsa ? attrs.begin()->second : internal::UnwrapEcPoint(attrs.begin()->second);
    std::string id = internal::KeyIdFromPublicValue(value);
    CK_ATTRIBUTE set_id = {CKA_ID, id.data(), id.size()};
    RETURN_IF_ERROR(P11_CALL(m, C_SetAttributeValue, s.handle(), pub, &set_id, 1));
    RETURN_IF_ERROR(P11_CALL(m, C_SetAttributeValue, s.handle(), priv, &set_id, 1));
    guard.Release();
    std::shared_ptr<EVP_PKEY> public_key =
        rsa ? internal::RsaPublicKey(value, absl::string_view(reinterpret_cast<char*>(exponent), sizeof(exponent)))
            : internal::EcPublicKey(curve, value);
    out.private_key = priv;
    out.objects.private_keys.push_back({priv, id, label_copy, rsa ? KeyAlgorithm::kRsa : KeyAlgorithm::kEc, curve,
                                        /*can_sign=*/true, /*can_decrypt=*/rsa, /*can_derive=*/!rsa, public_key});
    out.objects.public_keys.push_back({pub, id, label_copy, public_key, ""});
    return out;
  });
  if (!written.ok()) return written.status();
  SMIME_LOG(kInfo, "key_generated").Kv("token", label_).Kv("id", HexEncode(written->objects.private_keys[0].id))
      .Kv("label", label_copy);
  bool refreshed = RefreshAfterWrite("generate").ok();
  return WrittenKey(written->private_key, written->epoch, refreshed, written->objects);
}

absl::StatusOr<std::vector<bool>> Token::StoreCertificates(const std::vector<CertificateToStore>& certs,
                                                           absl::Time deadline) {
  for (const CertificateToStore& c : certs) {
    RETURN_IF_ERROR(CheckNoControlCharacter(c.label, absl::StrCat("the certificate label \"", absl::CHexEscape(c.label), "\"")));
  }
  AdminLock admin(*this);
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
  if (std::find(created->begin(), created->end(), true) != created->end()) {
    (void)RefreshAfterWrite("store certificates");
  }
  return created;
}

absl::StatusOr<Token::ImportedKey> Token::ImportKey(const EVP_PKEY* key, absl::string_view label,
                                                    const std::vector<CertificateToStore>& certs,
                                                    absl::Time deadline) {
  RETURN_IF_ERROR(CheckLabel(label));
  ASSIGN_OR_RETURN(std::string id, KeyIdForPublicKey(key));
  std::shared_ptr<EVP_PKEY> public_key = internal::PublicCopy(key);
  if (!public_key) return absl::InvalidArgumentError("the key's public part cannot be encoded");
  const bool rsa = EVP_PKEY_is_a(key, "RSA");
  std::string label_copy(label);
  AdminLock admin(*this);
  auto written = WithSession(deadline, [&](Session& s) -> absl::StatusOr<Written> {
    Module& m = *module_;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    ASSIGN_OR_RETURN(auto existing, internal::FindObjectsMatching(m, s.handle(), {{CKA_CLASS, &cls, sizeof(cls)},
                                                                                  {CKA_ID, id.data(), id.size()}}));
    if (!existing.empty()) {
      return absl::AlreadyExistsError(
          absl::StrCat("this private key is already on the token (id ", HexEncode(id), "); nothing was written"));
    }
    ASSIGN_OR_RETURN(std::vector<std::string> present, internal::CertificateValues(m, s.handle()));
    Written out;
    out.epoch = login_epoch_.load();
    ASSIGN_OR_RETURN(auto pair, internal::CreateKeyPairObjects(m, s.handle(), key, id, label_copy));
    ObjectCreationGuard guard(m, s.handle());
    guard.Add(pair.first);
    guard.Add(pair.second);
    ASSIGN_OR_RETURN(out.created, CreateMissingCertificates(m, s.handle(), certs, std::move(present), guard));
    std::vector<CK_OBJECT_HANDLE> made = guard.Release();
    out.private_key = pair.first;
    out.objects.private_keys.push_back({pair.first, id, label_copy, rsa ? KeyAlgorithm::kRsa : KeyAlgorithm::kEc,
                                        rsa ? NID_undef : internal::EcCurveNid(key), /*can_sign=*/true,
                                        /*can_decrypt=*/rsa, /*can_derive=*/!rsa, public_key});
    out.objects.public_keys.push_back({pair.second, id, label_copy, public_key, ""});
    for (size_t i = 0, next = 2; i < certs.size(); ++i) {
      if (out.created[i]) out.objects.certificates.push_back({made[next++], certs[i].id, certs[i].label, certs[i].cert});
    }
    return out;
  });
  if (!written.ok()) return written.status();
  SMIME_LOG(kInfo, "key_imported").Kv("token", label_).Kv("id", HexEncode(id)).Kv("label", label_copy);
  bool refreshed = RefreshAfterWrite("import").ok();
  return ImportedKey{WrittenKey(written->private_key, written->epoch, refreshed, written->objects),
                     std::move(written->created)};
}

absl::Status Token::RetireKey(const Key& key, absl::Time now, absl::Time deadline) {
  return WriteRetireMark(key, absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone()), deadline);
}

absl::Status Token::ReinstateKey(const Key& key, absl::Time deadline) { return WriteRetireMark(key, "", deadline); }

absl::Status Token::WriteRetireMark(const Key& key, const std::string& date, absl::Time deadline) {
  AdminLock admin(*this);
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
  (void)RefreshAfterWrite(date.empty() ? "reinstate" : "retire");
  return absl::OkStatus();
}

absl::StatusOr<size_t> Token::DeleteKey(const Key& key, absl::Time deadline) {
  AdminLock admin(*this);
  size_t destroyed = 0;  // across a retry on a new session too
  auto done = WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(std::shared_ptr<const Key> now, ReadKeyAgain(s, k));
    if (!now->ambiguity_.empty()) return CannotTellApart(*now, "deleted");
    // Certificates and public keys first, the private key last: stopped
    // part-way, the key is still there and works, rather than leaving a
    // certificate for a key that is gone.
    for (const auto* objects : {&now->certificate_objects_, &now->public_key_objects_}) {
      for (CK_OBJECT_HANDLE h : *objects) {
        if (absl::Status st = DestroyObject(s, h); !st.ok()) {
          return Prefixed(st, absl::StrCat("could not delete all objects of ", Describe(key),
                                           "; its private key was kept, so the key still works; delete it again: "));
        }
        ++destroyed;
      }
    }
    RETURN_IF_ERROR(DestroyObject(s, now->handle_));
    ++destroyed;
    return true;
  });
  if (!done.ok()) return done.status();
  SMIME_LOG(kInfo, "key_deleted").Kv("token", label_).Kv("id", key.id_hex()).Kv("objects", destroyed);
  (void)RefreshAfterWrite("delete");
  return destroyed;
}

absl::Status Token::CannotTellApart(const Key& key, absl::string_view nothing_was) {
  return absl::FailedPreconditionError(absl::StrCat(
      Describe(key), " cannot be told apart from another key on the token: ", key.ambiguity_, ". Nothing was ",
      nothing_was, "; give each key its own CKA_ID with the token's tool first"));
}

}  // namespace smime::tokens
