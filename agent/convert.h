// Proto <-> domain mappings for the service handlers.
#ifndef SMIME_AGENT_CONVERT_H_
#define SMIME_AGENT_CONVERT_H_

#include "absl/status/statusor.h"
#include "agent/key_resolver.h"
#include "smime/agent/v1/agent.pb.h"
#include "tokens/token.h"

namespace smime::agent {

namespace v1 = ::smime::agent::v1;

absl::StatusOr<KeySelector> FromProto(const v1::KeySelector& selector);
absl::StatusOr<tokens::SignMechanism> FromProto(v1::SignatureAlgorithm algorithm);
absl::StatusOr<tokens::DecryptMechanism> FromProto(v1::DecryptPadding padding);
absl::StatusOr<tokens::KeySpec> FromProto(v1::KeyType type);

void ToProto(const tokens::Key& key, const std::string& token_label, v1::KeyInfo* out);

}  // namespace smime::agent

#endif  // SMIME_AGENT_CONVERT_H_
