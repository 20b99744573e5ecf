// Friendly key selectors (email, label, hex id, free text) and RFC 7512 URIs
// resolved against the token's key list.
#ifndef SMIME_AGENT_ENGINE_KEY_RESOLVER_H_
#define SMIME_AGENT_ENGINE_KEY_RESOLVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokens/token.h"

namespace smime::agent {

struct KeySelector {
  enum class Kind { kUri, kEmail, kLabel, kId, kText };
  Kind kind = Kind::kText;
  // kId: raw CKA_ID bytes; otherwise text as given.
  std::string value;
};

// How a selector is shown in messages and logs: URIs lose any query part,
// ids are hex.
std::string DescribeSelector(const KeySelector& selector);

// The one key `selector` names among `keys` on the token described by
// `token_info`. NOT_FOUND when none matches; INVALID_ARGUMENT, naming the
// candidates, when several do or the selector is malformed.
absl::StatusOr<std::shared_ptr<const tokens::Key>> ResolveKey(const tokens::KeyList& keys,
                                                              const CK_TOKEN_INFO& token_info,
                                                              const KeySelector& selector);

// The key `selector` names for signing at `now` (key rotation). An email
// that several keys' certificates carry picks, among the keys not retired
// (tokens::Key::RetiredAt) whose certificate is valid at `now`, the one
// whose certificate has the newest notBefore; with none such it behaves as
// ResolveKey over the keys not retired (so the policy can say "expired").
// FAILED_PRECONDITION when the key (or every key for the email) is retired.
absl::StatusOr<std::shared_ptr<const tokens::Key>> ResolveSigningKey(const tokens::KeyList& keys,
                                                                     const CK_TOKEN_INFO& token_info,
                                                                     const KeySelector& selector, absl::Time now);

// Where a key stands in its rotation, as `smimectl keys` shows it.
enum class KeyStatus { kCurrent, kExpired, kSuperseded, kNotYetValid, kRetired, kNoCertificate };
// "current", "expired", "superseded", "not-yet-valid", "retired", "no-certificate".
const char* KeyStatusName(KeyStatus status);
// kSuperseded: valid, but another key not retired with a certificate for
// one of the same emails is valid too and newer (notBefore): signing by
// email picks that one.
KeyStatus StatusOf(const tokens::Key& key, const tokens::KeyList& keys, absl::Time now);

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_KEY_RESOLVER_H_
