// The key inventory (tokens/inventory.h) and Token's door to it: Refresh,
// the published key list and the other certificates.
#include "tokens/inventory.h"

#include <openssl/obj_mac.h>
#include <openssl/objects.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/ckr_status.h"
#include "tokens/hex.h"
#include "tokens/key_values.h"
#include "tokens/objects.h"
#include "tokens/pkcs11_uri.h"
#include "tokens/token.h"
#include "tokens/with_session.h"

namespace smime::tokens {
namespace internal {
namespace {

// An empty CK_DATE (or all zero / blank) means "no end date".
std::string EndDate(const AttrMap& a) {
  std::string end = AttrStr(a, CKA_END_DATE);
  if (end.size() != 8 || end == std::string(8, '0') || end == std::string(8, ' ') || end == std::string(8, '\0')) {
    end.clear();
  }
  return end;
}

absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindClass(Module& m, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls) {
  return FindObjectsMatching(m, s, {{CKA_CLASS, &cls, sizeof(cls)}});
}

// Reads `types` of object `h`; nullopt (with a warning) when the object
// cannot be read at all, an error when the token or session is the problem.
absl::StatusOr<std::optional<AttrMap>> ReadOrSkip(Module& m, CK_SESSION_HANDLE s, const std::string& token,
                                                  CK_OBJECT_HANDLE h, const char* kind,
                                                  std::initializer_list<CK_ATTRIBUTE_TYPE> types) {
  absl::StatusOr<AttrMap> a = ReadAttributes(m, s, h, types);
  if (a.ok()) return std::optional<AttrMap>(*std::move(a));
  if (StopsObjectReads(a.status())) return a.status();
  SMIME_LOG(kWarning, "object_skipped").Kv("token", token).Kv("object", kind).Kv("handle", h)
      .Kv("reason", a.status().message());
  return std::optional<AttrMap>();
}

}  // namespace

absl::StatusOr<TokenObjects> ObjectReader::ReadAll() {
  ASSIGN_OR_RETURN(auto priv_handles, FindClass(m_, s_, CKO_PRIVATE_KEY));
  ASSIGN_OR_RETURN(auto pub_handles, FindClass(m_, s_, CKO_PUBLIC_KEY));
  ASSIGN_OR_RETURN(auto cert_handles, FindClass(m_, s_, CKO_CERTIFICATE));
  TokenObjects out;
  ASSIGN_OR_RETURN(out.public_keys, ReadPublicKeys(pub_handles));
  ASSIGN_OR_RETURN(out.certificates, ReadCertificates(cert_handles));
  ASSIGN_OR_RETURN(out.private_keys, ReadPrivateKeys(priv_handles));
  return out;
}

absl::StatusOr<std::vector<PublicKeyObject>> ObjectReader::ReadPublicKeys(
    const std::vector<CK_OBJECT_HANDLE>& handles) {
  std::vector<PublicKeyObject> out;
  for (CK_OBJECT_HANDLE h : handles) {
    ASSIGN_OR_RETURN(std::optional<AttrMap> read,
                     ReadOrSkip(m_, s_, token_label_, h, "public_key",
                                {CKA_ID, CKA_LABEL, CKA_KEY_TYPE, CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS,
                                 CKA_EC_POINT, CKA_END_DATE}));
    if (!read) continue;
    const AttrMap& a = *read;
    std::shared_ptr<EVP_PKEY> key;
    auto kt = AttrUlong(a, CKA_KEY_TYPE);
    if (kt == CKK_RSA && a.count(CKA_MODULUS) && a.count(CKA_PUBLIC_EXPONENT)) {
      key = RsaPublicKey(a.at(CKA_MODULUS), a.at(CKA_PUBLIC_EXPONENT));
    } else if (kt == CKK_EC && a.count(CKA_EC_PARAMS) && a.count(CKA_EC_POINT)) {
      key = EcPublicKey(CurveNid(a.at(CKA_EC_PARAMS)), UnwrapEcPoint(a.at(CKA_EC_POINT)));
    }
    if (key) out.push_back({h, AttrStr(a, CKA_ID), AttrStr(a, CKA_LABEL), key, EndDate(a)});
  }
  return out;
}

absl::StatusOr<std::vector<CertificateObject>> ObjectReader::ReadCertificates(
    const std::vector<CK_OBJECT_HANDLE>& handles) {
  std::vector<CertificateObject> out;
  for (CK_OBJECT_HANDLE h : handles) {
    ASSIGN_OR_RETURN(std::optional<AttrMap> read,
                     ReadOrSkip(m_, s_, token_label_, h, "certificate",
                                {CKA_ID, CKA_LABEL, CKA_CERTIFICATE_TYPE, CKA_VALUE}));
    if (!read) continue;
    const AttrMap& a = *read;
    if (AttrUlong(a, CKA_CERTIFICATE_TYPE) != CKC_X_509 || !a.count(CKA_VALUE)) continue;
    auto cert = ParseDerCertificate(a.at(CKA_VALUE));
    if (!cert.ok()) {
      SMIME_LOG(kWarning, "certificate_skipped").Kv("id", HexEncode(AttrStr(a, CKA_ID)))
          .Kv("reason", cert.status().message());
      continue;
    }
    out.push_back({h, AttrStr(a, CKA_ID), AttrStr(a, CKA_LABEL), *cert});
  }
  return out;
}

absl::StatusOr<std::vector<PrivateKeyObject>> ObjectReader::ReadPrivateKeys(
    const std::vector<CK_OBJECT_HANDLE>& handles) {
  std::vector<PrivateKeyObject> out;
  for (CK_OBJECT_HANDLE h : handles) {
    ASSIGN_OR_RETURN(std::optional<AttrMap> read,
                     ReadOrSkip(m_, s_, token_label_, h, "private_key",
                                {CKA_ID, CKA_LABEL, CKA_KEY_TYPE, CKA_SIGN, CKA_DECRYPT, CKA_DERIVE, CKA_MODULUS,
                                 CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS}));
    if (!read) continue;
    const AttrMap& a = *read;
    PrivateKeyObject p;
    p.handle = h;
    p.id = AttrStr(a, CKA_ID);
    p.label = AttrStr(a, CKA_LABEL);
    p.can_sign = AttrTrue(a, CKA_SIGN);
    p.can_decrypt = AttrTrue(a, CKA_DECRYPT);
    p.can_derive = AttrTrue(a, CKA_DERIVE);
    p.curve_nid = NID_undef;
    auto kt = AttrUlong(a, CKA_KEY_TYPE);
    if (kt == CKK_RSA) {
      p.algorithm = KeyAlgorithm::kRsa;
      if (a.count(CKA_MODULUS) && a.count(CKA_PUBLIC_EXPONENT)) {
        p.public_key = RsaPublicKey(a.at(CKA_MODULUS), a.at(CKA_PUBLIC_EXPONENT));
      }
    } else if (kt == CKK_EC) {
      p.algorithm = KeyAlgorithm::kEc;
      p.curve_nid = CurveNid(AttrStr(a, CKA_EC_PARAMS));
    }
    out.push_back(std::move(p));
  }
  return out;
}

// Makes Keys; the one place outside Token that writes their fields.
class KeyBuilder {
 public:
  static Inventory Build(const TokenObjects& objects, const CK_TOKEN_INFO& token, uint64_t login_epoch) {
    Inventory out{std::make_shared<KeyList>(), {}};
    std::vector<bool> cert_used(objects.certificates.size(), false);
    for (const PrivateKeyObject& p : objects.private_keys) {
      std::shared_ptr<Key> key = FromPrivateObject(p, login_epoch);
      PairPublicKey(*key, objects.public_keys);
      PairCertificates(*key, objects.certificates, cert_used);
      Name(*key, p.curve_nid, token);
      out.keys->push_back(std::move(key));
    }
    for (size_t i = 0; i < objects.certificates.size(); ++i) {
      if (!cert_used[i]) out.others.push_back(objects.certificates[i].cert);
    }
    std::sort(out.keys->begin(), out.keys->end(), [](const auto& x, const auto& y) {
      return std::tie(x->id_, x->label_) < std::tie(y->id_, y->label_);
    });
    return out;
  }

 private:
  // Build keys: what the private object says of itself.
  static std::shared_ptr<Key> FromPrivateObject(const PrivateKeyObject& p, uint64_t login_epoch) {
    auto key = std::shared_ptr<Key>(new Key());
    key->handle_ = p.handle;
    key->login_epoch_ = login_epoch;
    key->id_ = p.id;
    key->label_ = p.label;
    key->algorithm_ = p.algorithm;
    key->can_sign_ = p.can_sign;
    key->can_decrypt_ = p.can_decrypt;
    key->can_derive_ = p.can_derive;
    key->public_key_ = p.public_key;
    if (p.algorithm == KeyAlgorithm::kEc) key->bits_ = CurveBits(p.curve_nid);
    return key;
  }

  // Pair public keys: from the private object (RSA), else the public key
  // object with the same CKA_ID; the retire mark from that object.
  static void PairPublicKey(Key& key, const std::vector<PublicKeyObject>& pubs) {
    if (!key.public_key_ && !key.id_.empty()) {
      for (const PublicKeyObject& p : pubs) {
        if (p.id == key.id_) key.public_key_ = p.key;
      }
    }
    for (const PublicKeyObject& p : pubs) {
      if (!key.id_.empty() && p.id == key.id_ && !p.end_date.empty()) key.end_date_ = p.end_date;
    }
  }

  // Pair certificates: same CKA_ID, else same public key. With several (a
  // renewed certificate for the same key), the one valid longest first.
  static void PairCertificates(Key& key, const std::vector<CertificateObject>& certs, std::vector<bool>& used) {
    const CertificateObject* best = nullptr;
    for (const CertificateObject& c : certs) {
      bool pairs = (!key.id_.empty() && c.id == key.id_) ||
                   SamePublicKey(X509_get0_pubkey(c.cert.get()), key.public_key_.get());
      if (!pairs) continue;
      if (key.public_key_ && !SamePublicKey(X509_get0_pubkey(c.cert.get()), key.public_key_.get())) {
        continue;  // same CKA_ID but another key: not this key's certificate
      }
      if (best == nullptr ||
          ASN1_TIME_compare(X509_get0_notAfter(c.cert.get()), X509_get0_notAfter(best->cert.get())) > 0) {
        best = &c;
      }
    }
    if (best != nullptr) key.certificates_.push_back(best->cert);
    for (size_t i = 0; i < certs.size(); ++i) {
      const CertificateObject& c = certs[i];
      bool mine = SamePublicKey(X509_get0_pubkey(c.cert.get()), key.public_key_.get());
      if (mine || &c == best) used[i] = true;
      if (mine && &c != best) key.certificates_.push_back(c.cert);
    }
    if (best == nullptr) return;
    key.certificate_ = best->cert;
    key.cert_summary_ = Summarize(best->cert.get());
    if (!key.public_key_) {
      EVP_PKEY* pk = X509_get0_pubkey(best->cert.get());
      if (pk != nullptr) {
        EVP_PKEY_up_ref(pk);
        key.public_key_ = std::shared_ptr<EVP_PKEY>(pk, EVP_PKEY_free);
      }
    }
  }

  // Size, short name and URI, once the public key is known.
  static void Name(Key& key, int curve_nid, const CK_TOKEN_INFO& token) {
    if (key.algorithm_ == KeyAlgorithm::kRsa && key.public_key_) key.bits_ = EVP_PKEY_get_bits(key.public_key_.get());
    if (key.algorithm_ == KeyAlgorithm::kEc && curve_nid == NID_undef && key.public_key_) {
      key.bits_ = EVP_PKEY_get_bits(key.public_key_.get());
    }
    switch (key.algorithm_) {
      case KeyAlgorithm::kRsa: key.short_name_ = absl::StrCat("rsa", key.bits_); break;
      case KeyAlgorithm::kEc:
        if (curve_nid == NID_X9_62_prime256v1) key.short_name_ = "p256";
        else if (curve_nid == NID_secp384r1) key.short_name_ = "p384";
        else if (curve_nid == NID_secp521r1) key.short_name_ = "p521";
        else key.short_name_ = absl::StrCat("ec-", curve_nid != NID_undef ? OBJ_nid2sn(curve_nid) : "unknown");
        break;
      case KeyAlgorithm::kOther: key.short_name_ = "other"; break;
    }
    key.uri_ = FormatObjectUri(token, key.id_, key.label_, CKO_PRIVATE_KEY);
  }
};

Inventory BuildInventory(const TokenObjects& objects, const CK_TOKEN_INFO& token, uint64_t login_epoch) {
  return KeyBuilder::Build(objects, token, login_epoch);
}

}  // namespace internal

absl::Status Token::Refresh() {
  struct Found {
    internal::Inventory inventory;
    uint64_t epoch = 0;
  };
  auto found = WithSession(absl::Now() + absl::Seconds(30), [&](Session& s) -> absl::StatusOr<Found> {
    const uint64_t epoch = login_epoch_.load();
    if (user_logged_in_) {
      // A session the token logged out (it was pulled and put back) sees no
      // private keys: that is not an empty key list.
      CK_SESSION_INFO info;
      RETURN_IF_ERROR(P11_CALL(*module_, C_GetSessionInfo, s.handle(), &info));
      if (info.state != CKS_RO_USER_FUNCTIONS && info.state != CKS_RW_USER_FUNCTIONS) {
        return CkrStatus("C_GetSessionInfo", CKR_USER_NOT_LOGGED_IN);
      }
    }
    ASSIGN_OR_RETURN(internal::TokenObjects objects, internal::ObjectReader(*module_, s.handle(), label_).ReadAll());
    return Found{internal::BuildInventory(objects, info_, epoch), epoch};
  });
  if (!found.ok()) return found.status();
  {
    absl::MutexLock lock(&keys_mu_);
    if (found->epoch >= keys_epoch_) {  // a slower refresh from before a re-login loses
      keys_ = std::move(found->inventory.keys);
      other_certs_ = std::move(found->inventory.others);
      keys_epoch_ = found->epoch;
    }
    last_refresh_ = absl::Now();
  }
  SMIME_LOG(kInfo, "keys_loaded").Kv("token", label_).Kv("keys", Keys()->size());
  return absl::OkStatus();
}

bool Token::RefreshIfOlderThan(absl::Duration age) {
  {
    absl::MutexLock lock(&keys_mu_);
    if (absl::Now() - last_refresh_ < age) return false;
    last_refresh_ = absl::Now();  // one caller refreshes; the others don't pile on
  }
  return Refresh().ok();
}

std::shared_ptr<const KeyList> Token::Keys() const {
  absl::MutexLock lock(&keys_mu_);
  return keys_;
}

std::vector<std::shared_ptr<X509>> Token::OtherCertificates() const {
  absl::MutexLock lock(&keys_mu_);
  return other_certs_;
}

}  // namespace smime::tokens
