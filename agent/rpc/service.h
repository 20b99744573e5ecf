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
};

class AgentService final : public v1::Agent::Service {
 public:
  // `importer` stores the contacts verification learns; the Lifecycle
  // service shares it, so imports and contacts are one step at a time.
  AgentService(tokens::Token* token, CertificateImporter* importer, const PeerRegistry* peers,
               const AuditLog* audit, ServiceOptions options);

  grpc::Status ListKeys(grpc::ServerContext* ctx, const v1::ListKeysRequest* req,
                        v1::ListKeysResponse* resp) override;
  grpc::Status GetCertificate(grpc::ServerContext* ctx, const v1::GetCertificateRequest* req,
                              v1::GetCertificateResponse* resp) override;
  grpc::Status GetPublicKey(grpc::ServerContext* ctx, const v1::GetPublicKeyRequest* req,
                            v1::GetPublicKeyResponse* resp) override;
  grpc::Status SignDigest(grpc::ServerContext* ctx, const v1::SignDigestRequest* req,
                          v1::SignDigestResponse* resp) override;
  grpc::Status DecryptKey(grpc::ServerContext* ctx, const v1::DecryptKeyRequest* req,
                          v1::DecryptKeyResponse* resp) override;
  grpc::Status GenerateKey(grpc::ServerContext* ctx, const v1::GenerateKeyRequest* req,
                           v1::GenerateKeyResponse* resp) override;
  grpc::Status Sign(grpc::ServerContext* ctx,
                    grpc::ServerReaderWriter<v1::SignResponse, v1::SignRequest>* stream) override;
  grpc::Status Verify(grpc::ServerContext* ctx,
                      grpc::ServerReaderWriter<v1::VerifyResponse, v1::VerifyRequest>* stream) override;
  grpc::Status Encrypt(grpc::ServerContext* ctx,
                       grpc::ServerReaderWriter<v1::EncryptResponse, v1::EncryptRequest>* stream) override;
  grpc::Status Decrypt(grpc::ServerContext* ctx,
                       grpc::ServerReaderWriter<v1::DecryptResponse, v1::DecryptRequest>* stream) override;

 private:
  tokens::Token* token_;
  Contacts contacts_;
  SmimeEngine engine_;
  ServiceOptions options_;
  CallGate gate_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_SERVICE_H_
