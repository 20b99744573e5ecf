// The key inventory (tokens/inventory.h) and Token's door to it: Refresh,
// the published key list and the other certificates.
#include "tokens/inventory.h"

#include <openssl/obj_mac.h>
#include <openssl/objects.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/ckr_status.h"
#include "tokens/hex.h"
#include "tokens/key_values.h"
#include "tokens/objects.h"
#include "tokens/ossl.h"
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

// Reads `types` of each of `handles` and keeps what `make(handle, attrs)`
// returns (a std::optional: nullopt drops the object); objects that cannot
// be read are skipped as ReadOrSkip says.
template <typename Make>
auto ReadEach(Module& m, CK_SESSION_HANDLE s, const std::string& token, const std::vector<CK_OBJECT_HANDLE>& handles,
              const char* kind, std::initializer_list<CK_ATTRIBUTE_TYPE> types, Make make)
    -> absl::StatusOr<std::vector<typename std::invoke_result_t<Make, CK_OBJECT_HANDLE, const AttrMap&>::value_type>> {
  std::vector<typename std::invoke_result_t<Make, CK_OBJECT_HANDLE, const AttrMap&>::value_type> out;
  for (CK_OBJECT_HANDLE h : handles) {
    ASSIGN_OR_RETURN(std::optional<AttrMap> read, ReadOrSkip(m, s, token, h, kind, types));
    if (!read) continue;
    if (auto made = make(h, *read)) out.push_back(*std::move(made));
  }
  return out;
}

// The public key that a key object's RSA or EC attributes give, if any.
std::shared_ptr<EVP_PKEY> PublicKeyOf(const AttrMap& a, std::optional<CK_ULONG> key_type, int curve_nid) {
  if (key_type == CKK_RSA && a.count(CKA_MODULUS) && a.count(CKA_PUBLIC_EXPONENT)) {
    return RsaPublicKey(a.at(CKA_MODULUS), a.at(CKA_PUBLIC_EXPONENT));
  }
  if (key_type == CKK_EC && a.count(CKA_EC_POINT)) return EcPublicKey(curve_nid, UnwrapEcPoint(a.at(CKA_EC_POINT)));
  return nullptr;
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
  return ReadEach(m_, s_, token_label_, handles, "public_key",
                  {CKA_ID, CKA_LABEL, CKA_KEY_TYPE, CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT,
                   CKA_END_DATE},
                  [](CK_OBJECT_HANDLE h, const AttrMap& a) -> std::optional<PublicKeyObject> {
                    auto kt = AttrUlong(a, CKA_KEY_TYPE);
                    if (kt == CKK_EC && !a.count(CKA_EC_PARAMS)) return std::nullopt;
                    std::shared_ptr<EVP_PKEY> key =
                        PublicKeyOf(a, kt, kt == CKK_EC ? CurveNid(a.at(CKA_EC_PARAMS)) : NID_undef);
                    if (!key) return std::nullopt;
                    return PublicKeyObject{h, AttrStr(a, CKA_ID), AttrStr(a, CKA_LABEL), key, EndDate(a)};
                  });
}

absl::StatusOr<std::vector<CertificateObject>> ObjectReader::ReadCertificates(
    const std::vector<CK_OBJECT_HANDLE>& handles) {
  return ReadEach(m_, s_, token_label_, handles, "certificate", {CKA_ID, CKA_LABEL, CKA_CERTIFICATE_TYPE, CKA_VALUE},
                  [](CK_OBJECT_HANDLE h, const AttrMap& a) -> std::optional<CertificateObject> {
                    if (AttrUlong(a, CKA_CERTIFICATE_TYPE) != CKC_X_509 || !a.count(CKA_VALUE)) return std::nullopt;
                    auto cert = ParseDerCertificate(a.at(CKA_VALUE));
                    if (!cert.ok()) {
                      SMIME_LOG(kWarning, "certificate_skipped").Kv("id", HexEncode(AttrStr(a, CKA_ID)))
                          .Kv("reason", cert.status().message());
                      return std::nullopt;
                    }
                    return CertificateObject{h, AttrStr(a, CKA_ID), AttrStr(a, CKA_LABEL), *cert};
                  });
}

absl::StatusOr<std::vector<PrivateKeyObject>> ObjectReader::ReadPrivateKeys(
    const std::vector<CK_OBJECT_HANDLE>& handles) {
  return ReadEach(
      m_, s_, token_label_, handles, "private_key",
      {CKA_ID, CKA_LABEL, CKA_KEY_TYPE, CKA_SIGN, CKA_DECRYPT, CKA_DERIVE, CKA_MODULUS, CKA_PUBLIC_EXPONENT,
       CKA_EC_PARAMS, CKA_EC_POINT, CKA_PUBLIC_KEY_INFO},
      [](CK_OBJECT_HANDLE h, const AttrMap& a) -> std::optional<PrivateKeyObject> {
        PrivateKeyObject p;
        p.handle = h;
        p.id = AttrStr(a, CKA_ID);
        p.label = AttrStr(a, CKA_LABEL);
        p.can_sign = AttrTrue(a, CKA_SIGN);
        p.can_decrypt = AttrTrue(a, CKA_DECRYPT);
        p.can_derive = AttrTrue(a, CKA_DERIVE);
        p.curve_nid = NID_undef;
        auto kt = AttrUlong(a, CKA_KEY_TYPE);
        if (kt == CKK_RSA) p.algorithm = KeyAlgorithm::kRsa;
        if (kt == CKK_EC) {
          p.algorithm = KeyAlgorithm::kEc;
          p.curve_nid = CurveNid(AttrStr(a, CKA_EC_PARAMS));
        }
        p.public_key = PublicKeyOf(a, kt, p.curve_nid);
        if (!p.public_key && !AttrStr(a, CKA_PUBLIC_KEY_INFO).empty()) {
          p.public_key = PublicKeyFromDer(a.at(CKA_PUBLIC_KEY_INFO));
        }
        return p;
      });
}

// Makes Keys; the one place outside Token that writes their fields.
class KeyBuilder {
 public:
  static Inventory Build(const TokenObjects& objects, const CK_TOKEN_INFO& token, uint64_t login_epoch) {
    std::vector<std::shared_ptr<Key>> keys;
    std::vector<int> curves;
    for (const PrivateKeyObject& p : objects.private_keys) {
      keys.push_back(FromPrivateObject(p, login_epoch));
      curves.push_back(p.curve_nid);
    }
    std::vector<bool> cert_used(objects.certificates.size(), false);
    PairPublicKeysById(keys, curves, objects, cert_used);
    for (size_t i = 0; i < keys.size(); ++i) {
      PairPublicKeyObjects(*keys[i], keys, objects.public_keys);
      PairCertificates(*keys[i], keys, objects.certificates, cert_used);
      Name(*keys[i], curves[i], token);
    }
    Inventory out{std::make_shared<KeyList>(keys.begin(), keys.end()), {}};
    for (size_t i = 0; i < objects.certificates.size(); ++i) {
      if (!cert_used[i]) out.others.push_back(objects.certificates[i].cert);
    }
    std::sort(out.keys->begin(), out.keys->end(), [](const auto& x, const auto& y) {
      return std::tie(x->id_, x->label_, x->handle_) < std::tie(y->id_, y->label_, y->handle_);
    });
    return out;
  }

 private:
  // A public key object or certificate that may be a key's, by CKA_ID.
  struct Candidate {
    std::shared_ptr<EVP_PKEY> key;
    std::string label;
    std::optional<size_t> cert;  // index into TokenObjects::certificates
  };

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

  // `pkey` is of the key's type (and curve, when the private object names
  // one).
  static bool Fits(const Key& key, int curve_nid, const EVP_PKEY* pkey) {
    if (pkey == nullptr) return false;
    switch (key.algorithm_) {
      case KeyAlgorithm::kRsa: return EVP_PKEY_is_a(pkey, "RSA");
      case KeyAlgorithm::kEc:
        return EVP_PKEY_is_a(pkey, "EC") && (curve_nid == NID_undef || EcCurveNid(pkey) == curve_nid);
      case KeyAlgorithm::kOther: return false;
    }
    return false;
  }

  // How many different public keys `cands` hold.
  static size_t Distinct(const std::vector<const Candidate*>& cands) {
    std::vector<const EVP_PKEY*> seen;
    for (const Candidate* c : cands) {
      bool known = std::any_of(seen.begin(), seen.end(), [&](const EVP_PKEY* k) { return SamePublicKey(k, c->key.get()); });
      if (!known) seen.push_back(c->key.get());
    }
    return seen.size();
  }

  // Pair public keys, for private keys that show none: the public key
  // objects and certificates under the key's CKA_ID are candidates, less
  // those whose value another private key shows. One value among them is
  // the key's, if no other such private key shares the CKA_ID; else the
  // one value among those with the key's CKA_LABEL, if no other key gets
  // that one too. Otherwise the key has no public key and records why.
  static void PairPublicKeysById(std::vector<std::shared_ptr<Key>>& keys, const std::vector<int>& curves,
                                 const TokenObjects& objects, std::vector<bool>& cert_used) {
    auto shown = [&](const EVP_PKEY* pkey) {
      return std::any_of(keys.begin(), keys.end(),
                         [&](const auto& k) { return k->public_key_ && SamePublicKey(k->public_key_.get(), pkey); });
    };
    std::vector<std::vector<Candidate>> cands(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      const Key& k = *keys[i];
      if (k.public_key_ || k.id_.empty()) continue;
      for (const PublicKeyObject& p : objects.public_keys) {
        if (p.id == k.id_ && Fits(k, curves[i], p.key.get()) && !shown(p.key.get())) {
          cands[i].push_back({p.key, p.label, std::nullopt});
        }
      }
      for (size_t c = 0; c < objects.certificates.size(); ++c) {
        const CertificateObject& cert = objects.certificates[c];
        EVP_PKEY* pk = X509_get0_pubkey(cert.cert.get());
        if (cert.id != k.id_ || !Fits(k, curves[i], pk) || shown(pk)) continue;
        EVP_PKEY_up_ref(pk);
        cands[i].push_back({std::shared_ptr<EVP_PKEY>(pk, EVP_PKEY_free), cert.label, c});
      }
    }
    ClearSslErrors();
    std::vector<const Candidate*> chosen(keys.size(), nullptr);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (cands[i].empty()) continue;
      const Key& k = *keys[i];
      size_t sharing = 0;  // private keys without a public key under this CKA_ID
      for (size_t j = 0; j < keys.size(); ++j) {
        if (!keys[j]->public_key_ && keys[j]->id_ == k.id_ && keys[j]->algorithm_ == k.algorithm_) ++sharing;
      }
      std::vector<const Candidate*> all, labelled;
      for (const Candidate& c : cands[i]) {
        all.push_back(&c);
        if (c.label == k.label_) labelled.push_back(&c);
      }
      if (sharing == 1 && Distinct(all) == 1) {
        chosen[i] = all.front();
      } else if (Distinct(labelled) == 1) {
        chosen[i] = labelled.front();
      }
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      if (cands[i].empty()) continue;
      bool taken_twice = false;
      for (size_t j = 0; j < keys.size() && chosen[i] != nullptr; ++j) {
        taken_twice |= j != i && chosen[j] != nullptr && SamePublicKey(chosen[i]->key.get(), chosen[j]->key.get());
      }
      Key& k = *keys[i];
      if (chosen[i] != nullptr && !taken_twice) {
        k.public_key_ = chosen[i]->key;
        continue;
      }
      k.ambiguity_ = absl::StrCat("the private key object shows no public key, and the public keys and certificates "
                                  "under its CKA_ID ", k.id_hex(), " do not say which is its own");
      // Not someone else's certificates either.
      for (const Candidate& c : cands[i]) {
        if (c.cert) cert_used[*c.cert] = true;
      }
    }
  }

  // An object with `key`'s public value is the key's own, unless several
  // private keys have that value (the same key stored twice): then only
  // those under its CKA_ID are.
  static bool Owns(const Key& key, const std::vector<std::shared_ptr<Key>>& keys, const std::string& object_id) {
    size_t holders = std::count_if(keys.begin(), keys.end(), [&](const auto& k) {
      return SamePublicKey(k->public_key_.get(), key.public_key_.get());
    });
    return holders <= 1 || object_id == key.id_;
  }

  // The key's public key objects (the retire mark is on them).
  static void PairPublicKeyObjects(Key& key, const std::vector<std::shared_ptr<Key>>& keys,
                                   const std::vector<PublicKeyObject>& pubs) {
    if (!key.public_key_) return;
    for (const PublicKeyObject& p : pubs) {
      if (!SamePublicKey(p.key.get(), key.public_key_.get()) || !Owns(key, keys, p.id)) continue;
      key.public_key_objects_.push_back(p.handle);
      if (!p.end_date.empty()) key.end_date_ = p.end_date;
    }
  }

  // Pair certificates: those for the key's public key, whatever their
  // CKA_ID. With several (a renewed certificate for the same key), the one
  // valid longest first.
  static void PairCertificates(Key& key, const std::vector<std::shared_ptr<Key>>& keys,
                               const std::vector<CertificateObject>& certs, std::vector<bool>& used) {
    if (!key.public_key_) return;
    const CertificateObject* best = nullptr;
    std::vector<const CertificateObject*> mine;
    for (size_t i = 0; i < certs.size(); ++i) {
      const CertificateObject& c = certs[i];
      if (!SamePublicKey(X509_get0_pubkey(c.cert.get()), key.public_key_.get())) continue;
      used[i] = true;
      mine.push_back(&c);
      if (Owns(key, keys, c.id)) key.certificate_objects_.push_back(c.handle);
      if (best == nullptr ||
          ASN1_TIME_compare(X509_get0_notAfter(c.cert.get()), X509_get0_notAfter(best->cert.get())) > 0) {
        best = &c;
      }
    }
    if (best == nullptr) return;
    key.certificates_.push_back(best->cert);
    for (const CertificateObject* c : mine) {
      if (c != best) key.certificates_.push_back(c->cert);
    }
    key.certificate_ = best->cert;
    key.cert_summary_ = Summarize(best->cert.get());
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
    uint64_t number = 0;  // refresh_count_ when it began reading
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
    const uint64_t number = ++refresh_count_;
    ASSIGN_OR_RETURN(internal::TokenObjects objects, internal::ObjectReader(*module_, s.handle(), label_).ReadAll());
    return Found{internal::BuildInventory(objects, info_, epoch), epoch, number};
  });
  if (!found.ok()) return found.status();
  (void)Hook(TestPoint::kRefreshRead);
  {
    absl::MutexLock lock(&keys_mu_);
    // A slower refresh that began before the one shown (or before a
    // re-login) loses: it may not see what was written since.
    if (std::tie(found->epoch, found->number) > std::tie(keys_epoch_, keys_refresh_)) {
      keys_ = std::move(found->inventory.keys);
      other_certs_ = std::move(found->inventory.others);
      keys_epoch_ = found->epoch;
      keys_refresh_ = found->number;
    }
    last_refresh_ = absl::Now();
  }
  SMIME_LOG(kInfo, "keys_loaded").Kv("token", label_).Kv("keys", Keys()->size());
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Key>> Token::ReadKeyAgain(Session& s, const Key& key) {
  ASSIGN_OR_RETURN(internal::TokenObjects objects, internal::ObjectReader(*module_, s.handle(), label_).ReadAll());
  internal::Inventory now = internal::BuildInventory(objects, info_, key.login_epoch_);
  for (const auto& k : *now.keys) {
    if (k->handle_ == key.handle_ && k->id_ == key.id_ && k->label_ == key.label_) return k;
  }
  return CkrStatus("key lookup", CKR_KEY_HANDLE_INVALID);
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
