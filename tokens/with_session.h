// Token::WithSession and Token::WithKeySession, the two ways every token
// call of Token runs (tokens/token.h says what they do). Member templates,
// so the files implementing Token include their definitions from here.
// Internal to tokens/.
#ifndef SMIME_TOKENS_WITH_SESSION_H_
#define SMIME_TOKENS_WITH_SESSION_H_

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "tokens/ckr_status.h"
#include "tokens/key_values.h"
#include "tokens/token.h"

namespace smime::tokens {

template <typename Op>
auto Token::WithSession(absl::Time deadline, Op op) -> decltype(op(std::declval<Session&>())) {
  for (int attempt = 0;; ++attempt) {
    if (reconnect_needed_.load() || module_->generation() != module_generation_.load()) {
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
  // The same key, newly read: same CKA_ID and label and, when known, the
  // same public key (two keys may share CKA_ID and label).
  std::shared_ptr<const KeyList> keys = Keys();
  std::vector<const Key*> same;
  for (const auto& fresh : *keys) {
    if (fresh->id() != key.id() || fresh->label() != key.label()) continue;
    if (key.public_key() != nullptr && !internal::SamePublicKey(fresh->public_key(), key.public_key())) continue;
    same.push_back(fresh.get());
  }
  if (same.size() == 1) return run(*same.front());
  if (same.size() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(key), " was read again and several keys now have its CKA_ID, label and public key; select it again"));
  }
  return absl::NotFoundError(
      absl::StrCat(Describe(key), " is no longer on the token; was the token removed?"));
}

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_WITH_SESSION_H_
