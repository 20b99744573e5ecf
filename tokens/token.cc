#include "tokens/token.h"

#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/objects.h"
#include "tokens/ossl.h"
#include "tokens/pkcs11_uri.h"

namespace smime::tokens {
namespace {

using internal::AttrMap;
using internal::ReadAttributes;

// The objects of one class (the search itself is internal::FindObjectsMatching).
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(Module& m, CK_SESSION_HANDLE s,
                                                          CK_OBJECT_CLASS cls) {
  return internal::FindObjectsMatching(m, s, {{CKA_CLASS, &cls, sizeof(cls)}});
}

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

// Curve NID from DER CKA_EC_PARAMS (a namedCurve OID); NID_undef otherwise.
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
  SslPtr<EVP_PKEY_CTX> unused;
  EC_GROUP* g = EC_GROUP_new_by_curve_name(nid);
  if (g == nullptr) {
    ClearSslErrors();
    return 0;
  }
  int bits = EC_GROUP_get_degree(g);
  EC_GROUP_free(g);
  return bits;
}

// CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 2.20+);
// some tokens return the bare point. Returns the bare point.
std::string UnwrapEcPoint(const std::string& value) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(value.data());
  ASN1_OCTET_STRING* os = d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(value.size()));
  if (os == nullptr || p != reinterpret_cast<const unsigned char*>(value.data()) + value.size()) {
    ASN1_OCTET_STRING_free(os);
    ClearSslErrors();
    return value;
  }
  std::string point(reinterpret_cast<const char*>(ASN1_STRING_get0_data(os)),
                    static_cast<size_t>(ASN1_STRING_length(os)));
  ASN1_OCTET_STRING_free(os);
  return point;
}

std::shared_ptr<EVP_PKEY> RsaPublicKey(const std::string& n, const std::string& e) {
  SslPtr<BIGNUM> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                                static_cast<int>(n.size()), nullptr));
  SslPtr<BIGNUM> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                                static_cast<int>(e.size()), nullptr));
  SslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), "n", bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), "e", bn_e.get())) {
    ClearSslErrors();
    return nullptr;
  }
  SslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld.get()));
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ClearSslErrors();
    return nullptr;
  }
  return std::shared_ptr<EVP_PKEY>(pkey, EVP_PKEY_free);
}

std::shared_ptr<EVP_PKEY> EcPublicKey(int nid, const std::string& point) {
  const char* group = OBJ_nid2sn(nid);
  SslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (group == nullptr || !bld ||
      !OSSL_PARAM_BLD_push_utf8_string(bld.get(), "group", group, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), "pub", point.data(), point.size())) {
    ClearSslErrors();
    return nullptr;
  }
  SslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld.get()));
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ClearSslErrors();
    return nullptr;
  }
  return std::shared_ptr<EVP_PKEY>(pkey, EVP_PKEY_free);
}

bool SamePublicKey(EVP_PKEY* a, EVP_PKEY* b) {
  if (a == nullptr || b == nullptr) return false;
  bool same = EVP_PKEY_eq(a, b) == 1;
  ClearSslErrors();
  return same;
}

// DER of a namedCurve OID, as CKA_EC_PARAMS wants it.
std::string CurveParamsDer(int nid) {
  const ASN1_OBJECT* oid = OBJ_nid2obj(nid);
  unsigned char* out = nullptr;
  int len = i2d_ASN1_OBJECT(oid, &out);
  if (len <= 0) return "";
  std::string der(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return der;
}

absl::Status DecryptFailed() { return absl::InvalidArgumentError("decryption failed"); }

// The SHA-256 DigestInfo prefix of RFC 8017 §9.2 note 1.
constexpr unsigned char kSha256DigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                               0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                               0x01, 0x05, 0x00, 0x04, 0x20};

}  // namespace

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

std::optional<std::string> HexDecode(absl::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = val(hex[i]), lo = val(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi << 4 | lo);
  }
  return out;
}

std::string Key::id_hex() const { return HexEncode(id_); }

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

Token::Token(std::shared_ptr<Module> module, CK_SLOT_ID slot, const CK_TOKEN_INFO& info,
             size_t max_sessions)
    : module_(std::move(module)), slot_(slot), info_(info),
      label_(TrimPadded(info.label, sizeof(info.label))),
      serial_(TrimPadded(info.serialNumber, sizeof(info.serialNumber))),
      pool_(std::make_unique<SessionPool>(module_, slot, max_sessions)),
      keys_(std::make_shared<KeyList>()) {}

Token::~Token() {
  pool_.reset();
  absl::MutexLock lock(&login_mu_);
  if (anchor_session_ != CK_INVALID_HANDLE) {
    (void)P11_CALL(*module_, C_CloseSession, anchor_session_);
  }
}

absl::StatusOr<std::unique_ptr<Token>> Token::Open(std::shared_ptr<Module> module,
                                                   const TokenOptions& options) {
  std::optional<Pkcs11Uri> uri;
  if (absl::StartsWithIgnoreCase(options.token, "pkcs11:")) {
    ASSIGN_OR_RETURN(Pkcs11Uri parsed, Pkcs11Uri::Parse(options.token));
    uri.emplace(std::move(parsed));
  }
  CK_ULONG count = 0;
  RETURN_IF_ERROR(P11_CALL(*module, C_GetSlotList, CK_TRUE, nullptr, &count));
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) RETURN_IF_ERROR(P11_CALL(*module, C_GetSlotList, CK_TRUE, slots.data(), &count));
  slots.resize(count);

  struct Candidate {
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;
  };
  std::vector<Candidate> matches;
  std::vector<std::string> seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (!P11_CALL(*module, C_GetTokenInfo, slot, &info).ok()) continue;
    if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
    std::string label = TrimPadded(info.label, sizeof(info.label));
    std::string serial = TrimPadded(info.serialNumber, sizeof(info.serialNumber));
    seen.push_back(absl::StrCat("\"", label, "\" (serial ", serial, ")"));
    bool match;
    if (uri) {
      match = uri->MatchesToken(info);
    } else if (options.token.empty()) {
      match = true;
    } else {
      match = label == options.token || serial == options.token;
    }
    if (match) matches.push_back({slot, info});
  }
  std::string available =
      seen.empty() ? "the module has no initialised token" : absl::StrCat("available: ", absl::StrJoin(seen, ", "));
  if (matches.empty()) {
    if (options.token.empty()) {
      return absl::NotFoundError(absl::StrCat("no token found in ", module->path(), "; ", available));
    }
    return absl::NotFoundError(
        absl::StrCat("no token matches \"", StripUriQuery(options.token), "\"; ", available));
  }
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "several tokens match \"", StripUriQuery(options.token),
        "\"; choose one with --token LABEL, a serial number or a pkcs11: URI; ", available));
  }
  const Candidate& c = matches.front();
  size_t max_sessions = std::max<size_t>(1, options.max_sessions);
  // ulMaxSessionCount: 0 = unknown (CK_UNAVAILABLE_INFORMATION also possible);
  // CK_EFFECTIVELY_INFINITE = 0 too. Keep one for the anchor session.
  CK_ULONG token_max = c.info.ulMaxSessionCount;
  if (token_max != CK_UNAVAILABLE_INFORMATION && token_max > 1 && token_max - 1 < max_sessions) {
    max_sessions = token_max - 1;
  }
  std::unique_ptr<Token> token(new Token(module, c.slot, c.info, max_sessions));
  {
    absl::MutexLock lock(&token->login_mu_);
    RETURN_IF_ERROR(token->OpenAnchorLocked());
  }
  SMIME_LOG(kInfo, "token_opened")
      .Kv("token", token->label_)
      .Kv("serial", token->serial_)
      .Kv("max_sessions", max_sessions);
  return token;
}

absl::Status Token::OpenAnchorLocked() {
  CK_TOKEN_INFO now;
  RETURN_IF_ERROR(P11_CALL(*module_, C_GetTokenInfo, slot_, &now));
  std::string label = TrimPadded(now.label, sizeof(now.label));
  std::string serial = TrimPadded(now.serialNumber, sizeof(now.serialNumber));
  if (label != label_ || serial != serial_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the slot of token \"", label_, "\" (serial ", serial_, ") now holds token \"", label, "\" (serial ",
        serial, "); insert \"", label_, "\" and retry"));
  }
  ASSIGN_OR_RETURN(anchor_session_, internal::OpenSession(*module_, slot_));
  return absl::OkStatus();
}

absl::StatusOr<bool> Token::LoginLocked() {
  CK_TOKEN_INFO info;
  RETURN_IF_ERROR(P11_CALL(*module_, C_GetTokenInfo, slot_, &info));
  if (!(info.flags & CKF_LOGIN_REQUIRED)) {
    SMIME_LOG(kInfo, "login_skipped").Kv("token", label_).Kv("reason", "token needs no login");
    return false;
  }
  if (pin_refused_ || pin_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token \"", label_, "\" logged the agent out and it holds no usable PIN; restart the agent"));
  }
  if (info.flags & CKF_USER_PIN_LOCKED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the user PIN of token \"", label_, "\" is locked; unblock it with the SO PIN first"));
  }
  if ((info.flags & CKF_USER_PIN_FINAL_TRY) && !allow_final_try_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token \"", label_, "\" says the next wrong PIN locks it; the agent will not risk it. "
        "Check the PIN, then start with --allow-final-pin-try"));
  }
  if (info.flags & CKF_USER_PIN_TO_BE_CHANGED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token \"", label_, "\" requires a new user PIN before use; change it with the token's tool"));
  }
  absl::Status st = P11_CALL(*module_, C_Login, anchor_session_, CKU_USER, pin_.data(), pin_.size());
  if (CkrOf(st) == CKR_USER_ALREADY_LOGGED_IN) {
    user_logged_in_ = true;
    return false;
  }
  if (!st.ok()) {
    if (CkrOf(st) == CKR_PIN_INCORRECT || CkrOf(st) == CKR_PIN_LOCKED) {
      pin_refused_ = true;  // never resend a refused PIN: tokens lock
      pin_.Wipe();
    }
    SMIME_LOG(kError, "login").Kv("token", label_).Kv("result", pin_refused_ ? "refused" : "failed")
        .Kv("reason", st.message());
    absl::Status out(st.code(), absl::StrCat("login to token \"", label_, "\" failed: ", st.message()));
    st.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
    return out;
  }
  ++login_epoch_;
  user_logged_in_ = true;
  SMIME_LOG(kInfo, "login").Kv("token", label_).Kv("result", "OK");
  return true;
}

absl::Status Token::Login(SecretBuffer pin, bool allow_final_try) {
  {
    absl::MutexLock lock(&login_mu_);
    pin_ = std::move(pin);
    pin_refused_ = false;
    allow_final_try_ = allow_final_try;
    absl::StatusOr<bool> logged_in = LoginLocked();
    if (!logged_in.ok()) {
      pin_.Wipe();
      return logged_in.status();
    }
  }
  // Outside login_mu_: Refresh may need to log in again.
  return Refresh();
}

void Token::Logout() {
  absl::MutexLock lock(&login_mu_);
  if (anchor_session_ != CK_INVALID_HANDLE) {
    (void)P11_CALL(*module_, C_Logout, anchor_session_);
  }
  pin_.Wipe();
  user_logged_in_ = false;
}

absl::Status Token::Relogin(bool only_if_gone) {
  absl::MutexLock lock(&login_mu_);
  if (only_if_gone && !reconnect_needed_) return absl::OkStatus();  // another caller reconnected
  if (reconnect_needed_ && anchor_session_ == CK_INVALID_HANDLE) RETURN_IF_ERROR(OpenAnchorLocked());
  absl::StatusOr<bool> logged_in = LoginLocked();
  std::optional<CK_RV> rv = CkrOf(logged_in.status());
  if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
    // The anchor session died with the token (pulled and put back while the
    // agent was idle). The token did not look at the PIN; log in on a live
    // session. The dead handle is not closed: the module may have reused it.
    // The pool's sessions from before died with it.
    anchor_session_ = CK_INVALID_HANDLE;
    pool_->InvalidateIfCurrent(pool_->generation());
    RETURN_IF_ERROR(OpenAnchorLocked());
    logged_in = LoginLocked();
  }
  if (!logged_in.ok()) return logged_in.status();
  if (reconnect_needed_) {
    // Handles from before may name other objects now, login or not.
    if (!*logged_in) ++login_epoch_;
    SMIME_LOG(kInfo, "token_reconnected").Kv("token", label_);
  }
  reconnect_needed_ = false;
  return absl::OkStatus();
}

void Token::NoteTokenGone(uint64_t generation) {
  absl::MutexLock lock(&login_mu_);
  if (!pool_->InvalidateIfCurrent(generation)) return;  // someone saw it first
  // Closed like the pool's idle sessions: dead now, or alive after a
  // spurious error; the reconnection opens a new one either way.
  if (anchor_session_ != CK_INVALID_HANDLE) (void)P11_CALL(*module_, C_CloseSession, anchor_session_);
  anchor_session_ = CK_INVALID_HANDLE;
  reconnect_needed_ = true;
  SMIME_LOG(kWarning, "token_gone").Kv("token", label_).Kv("next", "the next operation reconnects");
}

absl::Status Token::GoneStatus(const absl::Status& st) const {
  std::optional<CK_RV> rv = CkrOf(st);
  if (rv != CKR_DEVICE_REMOVED && rv != CKR_TOKEN_NOT_PRESENT && rv != CKR_SLOT_ID_INVALID &&
      rv != CKR_SESSION_HANDLE_INVALID && rv != CKR_SESSION_CLOSED) {
    return st;
  }
  absl::Status out = absl::UnavailableError(
      absl::StrCat("token \"", label_, "\" was removed; insert it and retry (", CkrName(*rv), ")"));
  st.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

template <typename Op>
auto Token::WithSession(absl::Time deadline, Op op) -> decltype(op(std::declval<Session&>())) {
  for (int attempt = 0;; ++attempt) {
    if (reconnect_needed_.load()) {
      if (absl::Status st = Relogin(/*only_if_gone=*/true); !st.ok()) return GoneStatus(st);
    }
    uint64_t generation = pool_->generation();
    auto session = pool_->Acquire(deadline);
    if (!session.ok()) {
      std::optional<CK_RV> rv = CkrOf(session.status());
      if (!rv || !IsTokenGone(*rv)) return session.status();
      NoteTokenGone(generation);
      return GoneStatus(session.status());
    }
    auto result = op(*session);
    if (result.ok()) return result;
    session->MarkBroken();  // an operation may have been left active
    std::optional<CK_RV> rv = CkrOf(result.status());
    if (rv == CKR_USER_NOT_LOGGED_IN && attempt == 0) {
      if (absl::Status st = Relogin(/*only_if_gone=*/false); !st.ok()) return GoneStatus(st);
      continue;
    }
    if (rv && IsTokenGone(*rv)) {
      NoteTokenGone(session->generation());
      // A session found dead (the token was pulled and put back between
      // calls) ran nothing: reconnect and try once more.
      if (attempt == 0 && (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED)) continue;
      return GoneStatus(result.status());
    }
    return result;
  }
}

template <typename Op>
auto Token::WithKeySession(const Key& key, absl::Time deadline, Op op)
    -> decltype(op(std::declval<Session&>(), key)) {
  auto run = [&](const Key& k) {
    return WithSession(deadline, [&](Session& s) -> decltype(op(s, k)) {
      if (k.login_epoch_ != login_epoch_.load()) {
        // Read before the last login: may name another object now.
        return CkrStatus("key handle check", CKR_KEY_HANDLE_INVALID);
      }
      return op(s, k);
    });
  };
  auto result = run(key);
  std::optional<CK_RV> rv = CkrOf(result.status());
  if (result.ok() || (rv != CKR_KEY_HANDLE_INVALID && rv != CKR_OBJECT_HANDLE_INVALID)) return result;
  SMIME_LOG(kInfo, "key_handle_stale").Kv("token", label_).Kv("id", key.id_hex());
  bool list_is_newer;
  {
    absl::MutexLock lock(&keys_mu_);
    list_is_newer = keys_epoch_ == login_epoch_.load() && keys_epoch_ != key.login_epoch_;
  }
  if (!list_is_newer) {
    absl::Status st = Refresh();
    if (absl::IsUnavailable(st)) return st;  // the token is gone: say so
    if (!st.ok()) return result;
  }
  for (const auto& fresh : *Keys()) {
    if (fresh->id() == key.id() && fresh->label() == key.label()) return run(*fresh);
  }
  return absl::NotFoundError(absl::StrCat("key \"", key.label(), "\" (id ", key.id_hex(),
                                          ") is no longer on the token; was the token removed?"));
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

absl::Status Token::Refresh() {
  struct Found {
    std::shared_ptr<KeyList> keys;
    std::vector<std::shared_ptr<X509>> others;
    uint64_t epoch = 0;
  };
  auto found = WithSession(absl::Now() + absl::Seconds(30), [&](Session& s) -> absl::StatusOr<Found> {
    Module& m = *module_;
    const uint64_t epoch = login_epoch_.load();
    if (user_logged_in_) {
      // A session the token logged out (it was pulled and put back) sees no
      // private keys: that is not an empty key list.
      CK_SESSION_INFO info;
      RETURN_IF_ERROR(P11_CALL(m, C_GetSessionInfo, s.handle(), &info));
      if (info.state != CKS_RO_USER_FUNCTIONS && info.state != CKS_RW_USER_FUNCTIONS) {
        return CkrStatus("C_GetSessionInfo", CKR_USER_NOT_LOGGED_IN);
      }
    }
    // An object that cannot be read at all is left out, not the whole list.
    auto read = [&](CK_OBJECT_HANDLE h, const char* kind,
                    std::initializer_list<CK_ATTRIBUTE_TYPE> types) -> absl::StatusOr<std::optional<AttrMap>> {
      absl::StatusOr<AttrMap> a = ReadAttributes(m, s.handle(), h, types);
      if (a.ok()) return std::optional<AttrMap>(*std::move(a));
      if (StopsObjectReads(a.status())) return a.status();
      SMIME_LOG(kWarning, "object_skipped").Kv("token", label_).Kv("object", kind).Kv("handle", h)
          .Kv("reason", a.status().message());
      return std::optional<AttrMap>();
    };
    ASSIGN_OR_RETURN(auto priv_handles, FindObjects(m, s.handle(), CKO_PRIVATE_KEY));
    ASSIGN_OR_RETURN(auto pub_handles, FindObjects(m, s.handle(), CKO_PUBLIC_KEY));
    ASSIGN_OR_RETURN(auto cert_handles, FindObjects(m, s.handle(), CKO_CERTIFICATE));

    struct PubObj {
      std::string id;
      std::shared_ptr<EVP_PKEY> key;
      std::string end_date;  // the retire mark (Key::end_date)
    };
    std::vector<PubObj> pubs;
    for (CK_OBJECT_HANDLE h : pub_handles) {
      ASSIGN_OR_RETURN(std::optional<AttrMap> read_a,
                       read(h, "public_key",
                            {CKA_ID, CKA_KEY_TYPE, CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT,
                             CKA_END_DATE}));
      if (!read_a) continue;
      AttrMap& a = *read_a;
      std::shared_ptr<EVP_PKEY> key;
      auto kt = AttrUlong(a, CKA_KEY_TYPE);
      if (kt == CKK_RSA && a.count(CKA_MODULUS) && a.count(CKA_PUBLIC_EXPONENT)) {
        key = RsaPublicKey(a[CKA_MODULUS], a[CKA_PUBLIC_EXPONENT]);
      } else if (kt == CKK_EC && a.count(CKA_EC_PARAMS) && a.count(CKA_EC_POINT)) {
        key = EcPublicKey(CurveNid(a[CKA_EC_PARAMS]), UnwrapEcPoint(a[CKA_EC_POINT]));
      }
      // An empty CK_DATE (or all zero / blank) means "no end date".
      std::string end = AttrStr(a, CKA_END_DATE);
      if (end.size() != 8 || end == std::string(8, '0') || end == std::string(8, ' ') ||
          end == std::string(8, '\0')) {
        end.clear();
      }
      if (key) pubs.push_back({AttrStr(a, CKA_ID), key, end});
    }

    struct CertObj {
      std::string id;
      std::shared_ptr<X509> cert;
      bool used = false;
    };
    std::vector<CertObj> certs;
    for (CK_OBJECT_HANDLE h : cert_handles) {
      ASSIGN_OR_RETURN(std::optional<AttrMap> read_a,
                       read(h, "certificate", {CKA_ID, CKA_CERTIFICATE_TYPE, CKA_VALUE}));
      if (!read_a) continue;
      AttrMap& a = *read_a;
      if (AttrUlong(a, CKA_CERTIFICATE_TYPE) != CKC_X_509 || !a.count(CKA_VALUE)) continue;
      auto cert = ParseDerCertificate(a[CKA_VALUE]);
      if (!cert.ok()) {
        SMIME_LOG(kWarning, "certificate_skipped").Kv("id", HexEncode(AttrStr(a, CKA_ID)))
            .Kv("reason", cert.status().message());
        continue;
      }
      certs.push_back({AttrStr(a, CKA_ID), *cert});
    }

    Found result{std::make_shared<KeyList>(), {}, epoch};
    for (CK_OBJECT_HANDLE h : priv_handles) {
      ASSIGN_OR_RETURN(std::optional<AttrMap> read_a,
                       read(h, "private_key",
                            {CKA_ID, CKA_LABEL, CKA_KEY_TYPE, CKA_SIGN, CKA_DECRYPT, CKA_DERIVE, CKA_MODULUS,
                             CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS}));
      if (!read_a) continue;
      AttrMap& a = *read_a;
      auto key = std::shared_ptr<Key>(new Key());
      key->handle_ = h;
      key->login_epoch_ = epoch;
      key->id_ = AttrStr(a, CKA_ID);
      key->label_ = AttrStr(a, CKA_LABEL);
      key->can_sign_ = AttrTrue(a, CKA_SIGN);
      key->can_decrypt_ = AttrTrue(a, CKA_DECRYPT);
      key->can_derive_ = AttrTrue(a, CKA_DERIVE);
      auto kt = AttrUlong(a, CKA_KEY_TYPE);
      int curve_nid = NID_undef;
      if (kt == CKK_RSA) {
        key->algorithm_ = KeyAlgorithm::kRsa;
        if (a.count(CKA_MODULUS) && a.count(CKA_PUBLIC_EXPONENT)) {
          key->public_key_ = RsaPublicKey(a[CKA_MODULUS], a[CKA_PUBLIC_EXPONENT]);
        }
      } else if (kt == CKK_EC) {
        key->algorithm_ = KeyAlgorithm::kEc;
        curve_nid = CurveNid(AttrStr(a, CKA_EC_PARAMS));
        key->bits_ = CurveBits(curve_nid);
      }
      // Public key: from the private object (RSA), else the public key
      // object with the same CKA_ID.
      if (!key->public_key_ && !key->id_.empty()) {
        for (const PubObj& p : pubs) {
          if (p.id == key->id_) key->public_key_ = p.key;
        }
      }
      for (const PubObj& p : pubs) {
        if (!key->id_.empty() && p.id == key->id_ && !p.end_date.empty()) key->end_date_ = p.end_date;
      }
      // Certificate: same CKA_ID, else same public key. With several (a
      // renewed certificate for the same key), the one valid longest.
      CertObj* best = nullptr;
      for (CertObj& c : certs) {
        bool pairs = (!key->id_.empty() && c.id == key->id_) ||
                     SamePublicKey(X509_get0_pubkey(c.cert.get()), key->public_key_.get());
        if (!pairs) continue;
        if (key->public_key_ && !SamePublicKey(X509_get0_pubkey(c.cert.get()), key->public_key_.get())) {
          continue;  // same CKA_ID but another key: not this key's certificate
        }
        if (best == nullptr ||
            ASN1_TIME_compare(X509_get0_notAfter(c.cert.get()), X509_get0_notAfter(best->cert.get())) > 0) {
          best = &c;
        }
      }
      if (best != nullptr) key->certificates_.push_back(best->cert);
      for (CertObj& c : certs) {
        bool mine = SamePublicKey(X509_get0_pubkey(c.cert.get()), key->public_key_.get());
        if (mine || (best != nullptr && &c == best)) c.used = true;
        if (mine && &c != best) key->certificates_.push_back(c.cert);
      }
      if (best != nullptr) {
        key->certificate_ = best->cert;
        key->cert_summary_ = Summarize(best->cert.get());
        if (!key->public_key_) {
          EVP_PKEY* pk = X509_get0_pubkey(best->cert.get());
          if (pk != nullptr) {
            EVP_PKEY_up_ref(pk);
            key->public_key_ = std::shared_ptr<EVP_PKEY>(pk, EVP_PKEY_free);
          }
        }
      }
      if (key->algorithm_ == KeyAlgorithm::kRsa && key->public_key_) {
        key->bits_ = EVP_PKEY_get_bits(key->public_key_.get());
      }
      if (key->algorithm_ == KeyAlgorithm::kEc && curve_nid == NID_undef && key->public_key_) {
        key->bits_ = EVP_PKEY_get_bits(key->public_key_.get());
      }
      switch (key->algorithm_) {
        case KeyAlgorithm::kRsa: key->short_name_ = absl::StrCat("rsa", key->bits_); break;
        case KeyAlgorithm::kEc:
          if (curve_nid == NID_X9_62_prime256v1) key->short_name_ = "p256";
          else if (curve_nid == NID_secp384r1) key->short_name_ = "p384";
          else if (curve_nid == NID_secp521r1) key->short_name_ = "p521";
          else key->short_name_ = absl::StrCat("ec-", curve_nid != NID_undef ? OBJ_nid2sn(curve_nid) : "unknown");
          break;
        case KeyAlgorithm::kOther: key->short_name_ = "other"; break;
      }
      key->uri_ = FormatObjectUri(info_, key->id_, key->label_, CKO_PRIVATE_KEY);
      result.keys->push_back(std::move(key));
    }
    for (CertObj& c : certs) {
      if (!c.used) result.others.push_back(c.cert);
    }
    std::sort(result.keys->begin(), result.keys->end(), [](const auto& x, const auto& y) {
      return std::tie(x->id_, x->label_) < std::tie(y->id_, y->label_);
    });
    return result;
  });
  if (!found.ok()) return found.status();
  {
    absl::MutexLock lock(&keys_mu_);
    if (found->epoch >= keys_epoch_) {  // a slower refresh from before a re-login loses
      keys_ = std::move(found->keys);
      other_certs_ = std::move(found->others);
      keys_epoch_ = found->epoch;
    }
    last_refresh_ = absl::Now();
  }
  SMIME_LOG(kInfo, "keys_loaded").Kv("token", label_).Kv("keys", Keys()->size());
  return absl::OkStatus();
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
        SignMechanismName(mechanism), " does not work with key \"", key.label(), "\" (",
        key.short_name(), "); use ",
        key.algorithm() == KeyAlgorithm::kEc ? "ecdsa-sha256" : "rsa-pkcs1-sha256 or rsa-pss-sha256"));
  }
  if (!key.can_sign()) {
    return absl::FailedPreconditionError(
        absl::StrCat("key \"", key.label(), "\" is not allowed to sign (CKA_SIGN is false)"));
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
  if (raw->empty() || raw->size() % 2 != 0) {
    return absl::InternalError("token returned a malformed ECDSA signature");
  }
  size_t half = raw->size() / 2;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(raw->data());
  SslPtr<ECDSA_SIG> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(p, static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(p + half, static_cast<int>(half), nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return SslError(absl::StatusCode::kInternal, "cannot encode ECDSA signature");
  }
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(sig.get(), &der);
  if (der_len <= 0) return SslError(absl::StatusCode::kInternal, "cannot encode ECDSA signature");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(der_len));
  OPENSSL_free(der);
  return out;
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
    auto rv = CkrOf(st);
    // Failures that depend on the ciphertext all read the same.
    if (rv && (IsTokenGone(*rv) || *rv == CKR_USER_NOT_LOGGED_IN)) return st;
    return DecryptFailed();
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
    return DecryptFailed();
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
    return DecryptFailed();
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

absl::StatusOr<std::string> Token::Decrypt(const Key& key, DecryptMechanism mechanism,
                                           absl::string_view ciphertext, absl::Time deadline) {
  if (key.algorithm() != KeyAlgorithm::kRsa) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key \"", key.label(), "\" is ", key.short_name(), "; RSA decryption needs an RSA key"));
  }
  if (!key.can_decrypt()) {
    return absl::FailedPreconditionError(
        absl::StrCat("key \"", key.label(), "\" is not allowed to decrypt (CKA_DECRYPT is false)"));
  }
  size_t modulus_bytes = static_cast<size_t>((key.bits() + 7) / 8);
  if (modulus_bytes != 0 && ciphertext.size() != modulus_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ciphertext must be ", modulus_bytes, " bytes for key \"", key.label(), "\"; got ", ciphertext.size()));
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
    return absl::InvalidArgumentError(absl::StrCat("key \"", key.label(), "\" (", key.short_name(),
                                                   ") cannot do this operation"));
  }
  const bool sign = primitive == Primitive::kRsaPkcs1Sign || primitive == Primitive::kRsaRawSign || ec;
  if (sign ? !key.can_sign() : !key.can_decrypt()) {
    return absl::FailedPreconditionError(absl::StrCat("key \"", key.label(), "\" is not allowed to ",
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
    return absl::InvalidArgumentError(absl::StrCat("key \"", key.label(), "\" is not an EC key"));
  }
  if (!key.can_derive()) {
    return absl::FailedPreconditionError(
        absl::StrCat("key \"", key.label(), "\" is not allowed to derive (CKA_DERIVE is false)"));
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

absl::StatusOr<std::shared_ptr<const Key>> Token::GenerateKey(KeySpec spec, absl::string_view label,
                                                              absl::Time deadline) {
  if (label.empty() || label.size() > 128) {
    return absl::InvalidArgumentError("the key label must be 1 to 128 bytes");
  }
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
    case KeySpec::kEcP256: rsa = false; ec_params = CurveParamsDer(NID_X9_62_prime256v1); break;
    case KeySpec::kEcP384: rsa = false; ec_params = CurveParamsDer(NID_secp384r1); break;
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
    auto cleanup = [&] {
      (void)P11_CALL(*module_, C_DestroyObject, s.handle(), priv);
      (void)P11_CALL(*module_, C_DestroyObject, s.handle(), pub);
    };
    auto attrs = ReadAttributes(*module_, s.handle(), pub, {rsa ? CKA_MODULUS : CKA_EC_POINT});
    if (!attrs.ok() || attrs->empty()) {
      cleanup();
      return attrs.ok() ? absl::InternalError("token did not return the new public key") : attrs.status();
    }
    std::string value = attrs->begin()->second;
    std::string new_id = internal::KeyIdFromPublicValue(rsa ? value : UnwrapEcPoint(value));
    CK_ATTRIBUTE set_id = {CKA_ID, new_id.data(), new_id.size()};
    absl::Status st = P11_CALL(*module_, C_SetAttributeValue, s.handle(), pub, &set_id, 1);
    if (st.ok()) st = P11_CALL(*module_, C_SetAttributeValue, s.handle(), priv, &set_id, 1);
    if (!st.ok()) {
      cleanup();  // no orphan key without an id
      return st;
    }
    return new_id;
  });
  if (!id.ok()) return id.status();
  RETURN_IF_ERROR(Refresh());
  for (const auto& k : *Keys()) {
    if (k->id() == *id) return k;
  }
  return absl::InternalError("generated key not found after refresh");
}

absl::Status InitializeToken(Module& module, absl::string_view label, const SecretBuffer& so_pin,
                             const SecretBuffer& user_pin) {
  CK_ULONG count = 0;
  RETURN_IF_ERROR(P11_CALL(module, C_GetSlotList, CK_TRUE, nullptr, &count));
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) RETURN_IF_ERROR(P11_CALL(module, C_GetSlotList, CK_TRUE, slots.data(), &count));
  slots.resize(count);
  std::optional<CK_SLOT_ID> free_slot;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (P11_CALL(module, C_GetTokenInfo, slot, &info).ok() && !(info.flags & CKF_TOKEN_INITIALIZED)) {
      free_slot = slot;
      break;
    }
  }
  if (!free_slot) return absl::FailedPreconditionError("the module offers no uninitialised slot");
  unsigned char padded[32];
  std::memset(padded, ' ', sizeof(padded));
  std::memcpy(padded, label.data(), std::min(label.size(), sizeof(padded)));
  RETURN_IF_ERROR(P11_CALL(module, C_InitToken, *free_slot,
                           const_cast<unsigned char*>(so_pin.data()), so_pin.size(), padded));
  // Find the slot again: SoftHSM moves a fresh token to a new slot id.
  RETURN_IF_ERROR(P11_CALL(module, C_GetSlotList, CK_TRUE, nullptr, &count));
  slots.resize(count);
  if (count > 0) RETURN_IF_ERROR(P11_CALL(module, C_GetSlotList, CK_TRUE, slots.data(), &count));
  slots.resize(count);
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (!P11_CALL(module, C_GetTokenInfo, slot, &info).ok()) continue;
    if (TrimPadded(info.label, sizeof(info.label)) != label || (info.flags & CKF_USER_PIN_INITIALIZED)) continue;
    CK_SESSION_HANDLE s;
    RETURN_IF_ERROR(P11_CALL(module, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                             nullptr, &s));
    absl::Status st = P11_CALL(module, C_Login, s, CKU_SO, const_cast<unsigned char*>(so_pin.data()), so_pin.size());
    if (st.ok()) {
      st = P11_CALL(module, C_InitPIN, s, const_cast<unsigned char*>(user_pin.data()), user_pin.size());
      (void)P11_CALL(module, C_Logout, s);
    }
    (void)P11_CALL(module, C_CloseSession, s);
    return st;
  }
  return absl::InternalError("the freshly initialised token did not appear in the slot list");
}

absl::StatusOr<std::vector<bool>> Token::StoreCertificates(const std::vector<CertificateToStore>& certs,
                                                           absl::Time deadline) {
  auto created = WithSession(deadline, [&](Session& s) -> absl::StatusOr<std::vector<bool>> {
    ASSIGN_OR_RETURN(std::vector<std::string> present, internal::CertificateValues(*module_, s.handle()));
    std::vector<bool> out;
    std::vector<CK_OBJECT_HANDLE> made;
    for (const CertificateToStore& c : certs) {
      std::string der = CertificateDer(c.cert.get());
      if (std::find(present.begin(), present.end(), der) != present.end()) {
        out.push_back(false);
        continue;
      }
      auto h = internal::CreateCertificateObject(*module_, s.handle(), c);
      if (!h.ok()) {
        // Leave the token as it was: no half-imported bundle.
        for (CK_OBJECT_HANDLE m : made) (void)P11_CALL(*module_, C_DestroyObject, s.handle(), m);
        return h.status();
      }
      made.push_back(*h);
      present.push_back(std::move(der));
      out.push_back(true);
    }
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

}  // namespace smime::tokens

namespace smime::tokens {

absl::StatusOr<Token::ImportedKey> Token::ImportKey(const EVP_PKEY* key, absl::string_view label,
                                                    const std::vector<CertificateToStore>& certs,
                                                    absl::Time deadline) {
  if (label.empty() || label.size() > 128) return absl::InvalidArgumentError("the key label must be 1 to 128 bytes");
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
    std::vector<CK_OBJECT_HANDLE> made = {pair.first, pair.second};
    std::vector<bool> out;
    for (const CertificateToStore& c : certs) {
      std::string der = CertificateDer(c.cert.get());
      if (std::find(present.begin(), present.end(), der) != present.end()) {
        out.push_back(false);
        continue;
      }
      auto h = internal::CreateCertificateObject(m, s.handle(), c);
      if (!h.ok()) {
        // Private key first: never leave a key without the rest.
        for (CK_OBJECT_HANDLE o : made) (void)P11_CALL(m, C_DestroyObject, s.handle(), o);
        return h.status();
      }
      made.push_back(*h);
      present.push_back(std::move(der));
      out.push_back(true);
    }
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

}  // namespace smime::tokens

namespace smime::tokens {

bool Key::RetiredAt(absl::Time now) const {
  if (end_date_.empty()) return false;
  return end_date_ <= absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone());
}

absl::Status Token::RetireKey(const Key& key, absl::Time now, absl::Time deadline) {
  return WriteRetireMark(key, absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone()), deadline);
}

absl::Status Token::ReinstateKey(const Key& key, absl::Time deadline) { return WriteRetireMark(key, "", deadline); }

absl::Status Token::WriteRetireMark(const Key& key, const std::string& date, absl::Time deadline) {
  std::string id = key.id();
  auto done = WithSession(deadline, [&](Session& s) -> absl::StatusOr<bool> {
    Module& m = *module_;
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    std::vector<CK_OBJECT_HANDLE> pubs;
    if (!id.empty()) {
      ASSIGN_OR_RETURN(pubs, internal::FindObjectsMatching(m, s.handle(), {{CKA_CLASS, &cls, sizeof(cls)},
                                                                           {CKA_ID, id.data(), id.size()}}));
    }
    if (pubs.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("key \"", key.label(),
                                                        "\" has no public key object on the token to carry the "
                                                        "retire mark (CKA_END_DATE)"));
    }
    // An empty CK_DATE means "no end date" (PKCS#11 3.0 §4.4).
    CK_ATTRIBUTE end = {CKA_END_DATE, date.empty() ? nullptr : const_cast<char*>(date.data()), date.size()};
    for (CK_OBJECT_HANDLE h : pubs) RETURN_IF_ERROR(P11_CALL(m, C_SetAttributeValue, s.handle(), h, &end, 1));
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
  std::string id = key.id();
  auto destroyed = WithKeySession(key, deadline, [&](Session& s, const Key& k) -> absl::StatusOr<size_t> {
    Module& m = *module_;
    std::vector<CK_OBJECT_HANDLE> doomed;
    if (!id.empty()) {
      CK_OBJECT_CLASS pub = CKO_PUBLIC_KEY, cert = CKO_CERTIFICATE;
      for (CK_OBJECT_CLASS* cls : {&pub, &cert}) {
        ASSIGN_OR_RETURN(auto found, internal::FindObjectsMatching(m, s.handle(), {{CKA_CLASS, cls, sizeof(*cls)},
                                                                                    {CKA_ID, id.data(), id.size()}}));
        doomed.insert(doomed.end(), found.begin(), found.end());
      }
    }
    // Certificates of this key stored under another CKA_ID.
    CK_OBJECT_CLASS cert_cls = CKO_CERTIFICATE;
    ASSIGN_OR_RETURN(auto certs, internal::FindObjectsMatching(m, s.handle(), {{CKA_CLASS, &cert_cls, sizeof(cert_cls)}}));
    for (CK_OBJECT_HANDLE h : certs) {
      if (std::find(doomed.begin(), doomed.end(), h) != doomed.end()) continue;
      auto a = ReadAttributes(m, s.handle(), h, {CKA_VALUE});
      if (!a.ok() || !a->count(CKA_VALUE)) continue;
      auto c = ParseDerCertificate((*a)[CKA_VALUE]);
      if (c.ok() && SamePublicKey(X509_get0_pubkey(c->get()), k.public_key())) doomed.push_back(h);
    }
    // The private key first: once it is gone the key is gone, whatever
    // happens to the rest.
    RETURN_IF_ERROR(P11_CALL(m, C_DestroyObject, s.handle(), k.handle_));
    size_t n = 1;
    for (CK_OBJECT_HANDLE h : doomed) {
      if (P11_CALL(m, C_DestroyObject, s.handle(), h).ok()) ++n;
    }
    return n;
  });
  if (!destroyed.ok()) return destroyed.status();
  SMIME_LOG(kInfo, "key_deleted").Kv("token", label_).Kv("id", key.id_hex()).Kv("objects", *destroyed);
  RETURN_IF_ERROR(Refresh());
  return *destroyed;
}

}  // namespace smime::tokens
