// Proto <-> domain mappings for the service handlers.
#ifndef SMIME_AGENT_RPC_CONVERT_H_
#define SMIME_AGENT_RPC_CONVERT_H_

#include <google/protobuf/message.h>
#include <google/protobuf/repeated_field.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/engine/key_resolver.h"
#include "agent/engine/smime_engine.h"
#include "smime/agent/v1/agent.pb.h"
#include "tokens/token.h"

namespace smime::agent {

namespace v1 = ::smime::agent::v1;

absl::StatusOr<KeySelector> FromProto(const v1::KeySelector& selector);
absl::StatusOr<tokens::SignMechanism> FromProto(v1::SignatureAlgorithm algorithm);
absl::StatusOr<tokens::DecryptMechanism> FromProto(v1::DecryptPadding padding);
absl::StatusOr<tokens::KeySpec> FromProto(v1::KeyType type);

void ToProto(const tokens::Key& key, const std::string& token_label, v1::KeyInfo* out);

// S/MIME. Certificates (DER, PEM or PEM bundles) from repeated bytes; a bad
// one is INVALID_ARGUMENT, its message starting with `what`.
absl::StatusOr<std::vector<CertPtr>> ParseCertList(const google::protobuf::RepeatedPtrField<std::string>& items,
                                                   absl::string_view what);
absl::StatusOr<VerifyOptions> FromProto(const v1::VerifyOptions& options);
// The cipher and key transport; the recipients are the handler's to find.
EncryptOptions FromProto(const v1::EncryptOptions& options);
void ToProto(const VerifyResult& result, v1::VerifyResult* out);

// Replaces, in every `string` field of `msg` and its sub-messages, the
// bytes that are not well-formed UTF-8 with U+FFFD. Protobuf requires
// UTF-8 there and a peer drops a message that breaks the rule, so every
// response that carries text from outside (certificate names and emails,
// message headers, token labels) passes through this before it is sent.
void MakeUtf8Valid(google::protobuf::Message* msg);

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_CONVERT_H_
