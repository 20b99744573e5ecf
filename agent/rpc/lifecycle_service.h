// The Lifecycle gRPC service (proto/smime/agent/v1/lifecycle.proto):
// certification requests, certificate import and publication records. Each
// handler authorizes, validates, resolves, calls agent/csr, cert_import or
// publish, and maps the result (STYLE.md §9).
#ifndef SMIME_AGENT_RPC_LIFECYCLE_SERVICE_H_
#define SMIME_AGENT_RPC_LIFECYCLE_SERVICE_H_

#include <string>

#include "agent/rpc/audit.h"
#include "agent/rpc/call_gate.h"
#include "agent/engine/cert_import.h"
#include "agent/rpc/listener.h"
#include "smime/agent/v1/lifecycle.grpc.pb.h"
#include "tokens/token.h"

namespace smime::agent {

class LifecycleService final : public v1::Lifecycle::Service {
 public:
  LifecycleService(tokens::Token* token, CertificateImporter* importer, const PeerRegistry* peers,
                   const AuditLog* audit, absl::Duration default_deadline = absl::Seconds(30));

  grpc::Status CreateCsr(grpc::ServerContext* ctx, const v1::CreateCsrRequest* req,
                         v1::CreateCsrResponse* resp) override;
  grpc::Status ImportCertificates(grpc::ServerContext* ctx, const v1::ImportCertificatesRequest* req,
                                  v1::ImportCertificatesResponse* resp) override;
  grpc::Status ImportPkcs12(grpc::ServerContext* ctx, const v1::ImportPkcs12Request* req,
                            v1::ImportPkcs12Response* resp) override;
  grpc::Status RetireKey(grpc::ServerContext* ctx, const v1::RetireKeyRequest* req,
                         v1::RetireKeyResponse* resp) override;
  grpc::Status DeleteKey(grpc::ServerContext* ctx, const v1::DeleteKeyRequest* req,
                         v1::DeleteKeyResponse* resp) override;
  grpc::Status ListContacts(grpc::ServerContext* ctx, const v1::ListContactsRequest* req,
                            v1::ListContactsResponse* resp) override;
  grpc::Status DescribePublication(grpc::ServerContext* ctx, const v1::DescribePublicationRequest* req,
                                   v1::DescribePublicationResponse* resp) override;

 private:
  tokens::Token* token_;
  CertificateImporter* importer_;
  CallGate gate_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_LIFECYCLE_SERVICE_H_
