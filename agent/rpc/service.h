// The Agent gRPC service: each handler authorizes the caller, validates,
// resolves the key, calls the token or the engine and maps the result
// (STYLE.md §9). Key handlers: service.cc; S/MIME stream handlers:
// service_smime.cc.
#ifndef SMIME_AGENT_RPC_SERVICE_H_
#define SMIME_AGENT_RPC_SERVICE_H_

#include <atomic>
#include <string>

#include "agent/rpc/audit.h"
#include "agent/rpc/call_gate.h"
#include "agent/rpc/handler_decl.h"
#include "agent/engine/cert_import.h"
#include "agent/engine/contacts.h"
#include "agent/engine/key_resolver.h"
#include "agent/rpc/listener.h"
#include "agent/engine/smime_engine.h"
#include "common/limits.h"
#include "smime/agent/v1/agent.grpc.pb.h"
#include "tokens/token.h"

namespace smime::agent {

struct ServiceOptions {
  // Default wait for a token session when the caller set no deadline.
  absl::Duration default_deadline = absl::Seconds(30);
  // Largest message content to sign or encrypt. Signed or encrypted input
  // (verify, decrypt) may be MaxEncodedBytes() of it, so that whatever the
  // agent wrote it also reads back (common/limits.h).
  size_t max_message_bytes = kDefaultMaxMessageBytes;
  // Per-client calls, stream idle time and bytes in flight; null: none.
  CallLimits* limits = nullptr;
};

class AgentService final : public v1::Agent::Service {
 public:
  // `importer` stores the contacts verification learns; the Lifecycle
  // service shares it, so imports and contacts are one step at a time.
  AgentService(tokens::Token* token, CertificateImporter* importer, const PeerRegistry* peers,
               const AuditLog* audit, ServiceOptions options);

  SMIME_UNARY_HANDLER(ListKeys);
  SMIME_UNARY_HANDLER(GetCertificate);
  SMIME_UNARY_HANDLER(GetPublicKey);
  SMIME_UNARY_HANDLER(SignDigest);
  SMIME_UNARY_HANDLER(DecryptKey);
  SMIME_UNARY_HANDLER(GenerateKey);
  SMIME_STREAM_HANDLER(Sign);
  SMIME_STREAM_HANDLER(Verify);
  SMIME_STREAM_HANDLER(Encrypt);
  SMIME_STREAM_HANDLER(Decrypt);

 private:
  tokens::Token* token_;
  Contacts contacts_;
  SmimeEngine engine_;
  ServiceOptions options_;
  CallGate gate_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_SERVICE_H_
