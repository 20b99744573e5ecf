// Token: opening, login, reconnection after the token was gone, and the
// initialisation of a fresh token (tokens/token.h). The key inventory,
// key operations and key administration live in inventory.cc, key_ops.cc
// and key_admin.cc.
#include "tokens/token.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/pkcs11_uri.h"

namespace smime::tokens {
Token::Token(std::shared_ptr<Module> module, CK_SLOT_ID slot, const CK_TOKEN_INFO& info,
             size_t max_sessions)
    : module_(std::move(module)), module_generation_(module_->generation()), slot_(slot), info_(info),
      label_(TrimPadded(info.label, sizeof(info.label))),
      serial_(TrimPadded(info.serialNumber, sizeof(info.serialNumber))),
      pool_(std::make_unique<SessionPool>(module_, slot, max_sessions)),
      keys_(std::make_shared<KeyList>()) {}

Token::~Token() {
  pool_.reset();
  absl::MutexLock lock(&login_mu_);
  if (anchor_session_ != CK_INVALID_HANDLE && module_->generation() == module_generation_.load()) {
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

namespace {
// What a module says when its link to the token broke in a way only a new
// C_Initialize mends.
bool ModuleNeedsRestart(const absl::Status& st) {
  std::optional<CK_RV> rv = CkrOf(st);
  return rv == CKR_DEVICE_ERROR || rv == CKR_CRYPTOKI_NOT_INITIALIZED || rv == CKR_SLOT_ID_INVALID;
}
}  // namespace

absl::Status Token::ReconnectLocked() {
  if (module_->generation() == module_generation_.load()) {
    absl::Status st = OpenAnchorLocked();
    if (st.ok() || !ModuleNeedsRestart(st) || !RestartModuleLocked()) return st;
  }
  absl::Status st = FindSlotLocked();
  // Started again, but cut off since, or without the token (a client module
  // that connects lazily lists no slot while its server is away): once
  // more, if a second has passed.
  const bool not_listed = absl::IsUnavailable(st) && !CkrOf(st).has_value();
  if (st.ok() || !(ModuleNeedsRestart(st) || not_listed) || !RestartModuleLocked()) {
    return st;
  }
  return FindSlotLocked();
}

bool Token::RestartModuleLocked() {
  if (!module_->owns_initialization()) return false;
  absl::Status restarted = module_->Reinitialize(module_->generation(), absl::Seconds(2));
  if (!restarted.ok()) {
    SMIME_LOG(kWarning, "token_reconnect").Kv("token", label_).Kv("result", restarted.message());
  }
  return restarted.ok();
}

absl::Status Token::FindSlotLocked() {
  CK_ULONG count = 0;
  RETURN_IF_ERROR(P11_CALL(*module_, C_GetSlotList, CK_TRUE, nullptr, &count));
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) RETURN_IF_ERROR(P11_CALL(*module_, C_GetSlotList, CK_TRUE, slots.data(), &count));
  slots.resize(count);
  std::optional<CK_SLOT_ID> found;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (!P11_CALL(*module_, C_GetTokenInfo, slot, &info).ok()) continue;
    if (TrimPadded(info.label, sizeof(info.label)) == label_ &&
        TrimPadded(info.serialNumber, sizeof(info.serialNumber)) == serial_) {
      found = slot;
      break;
    }
  }
  if (!found) {
    return absl::UnavailableError(absl::StrCat(
        "token \"", label_, "\" cannot be reached: its module, started again, does not list it (a network HSM "
        "out of reach, or the token removed); retry when it is back"));
  }
  slot_ = *found;
  module_generation_.store(module_->generation());
  pool_->Restart(slot_);
  SMIME_LOG(kInfo, "token_slot_found").Kv("token", label_).Kv("slot", slot_);
  return OpenAnchorLocked();
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
  if (module_->generation() != module_generation_.load()) {
    // Another token of the module started it again: nothing from before
    // lives, and no old handle may be closed (it may name a new session).
    anchor_session_ = CK_INVALID_HANDLE;
    reconnect_needed_ = true;
  }
  if (only_if_gone && !reconnect_needed_) return absl::OkStatus();  // another caller reconnected
  if (reconnect_needed_ && anchor_session_ == CK_INVALID_HANDLE) RETURN_IF_ERROR(ReconnectLocked());
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
  if (anchor_session_ != CK_INVALID_HANDLE && module_->generation() == module_generation_.load()) {
    (void)P11_CALL(*module_, C_CloseSession, anchor_session_);
  }
  anchor_session_ = CK_INVALID_HANDLE;
  reconnect_needed_ = true;
  SMIME_LOG(kWarning, "token_gone").Kv("token", label_).Kv("next", "the next operation reconnects");
}

absl::Status Token::GoneStatus(const absl::Status& st) const { return TokenGoneStatus(label_, st); }

void Token::SetTestHook(TestHook hook) {
  absl::MutexLock lock(&hook_mu_);
  hook_ = std::move(hook);
}

absl::Status Token::Hook(TestPoint point, CK_OBJECT_HANDLE object) const {
  TestHook hook;
  {
    absl::MutexLock lock(&hook_mu_);
    hook = hook_;
  }
  return hook ? hook(point, object) : absl::OkStatus();
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

}  // namespace smime::tokens
