// Friendly key selectors (email, label, hex id, free text) and RFC 7512 URIs
// resolved against the token's key list.
#ifndef SMIME_AGENT_KEY_RESOLVER_H_
#define SMIME_AGENT_KEY_RESOLVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
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

}  // namespace smime::agent

#endif  // SMIME_AGENT_KEY_RESOLVER_H_
