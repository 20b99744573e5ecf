// The Lifecycle gRPC service (proto/smime/agent/v1/lifecycle.proto):
// certification requests, certificate import and publication records. Each
// handler authorizes, validates, resolves, calls agent/csr, cert_import or
// publish, and maps the result (STYLE.md §9).
#ifndef SMIME_AGENT_LIFECYCLE_SERVICE_H_
#define SMIME_AGENT_LIFECYCLE_SERVICE_H_

#include <atomic>
#include <string>

#include "agent/audit.h"
#include "agent/cert_import.h"
#include "agent/listener.h"
#include "smime/agent/v1/lifecycle.grpc.pb.h"
#include "tokens/token.h"

namespace smime::agent {

class LifecycleService final : public v1::Lifecycle::Service {
 public:
  LifecycleService(tokens::Token* token, const PeerRegistry* peers, const AuditLog* audit,
                   absl::Duration default_deadline = absl::Seconds(30));

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
  // PERMISSION_DENIED unless the caller runs as the agent's uid or root
  // (the Agent service's rule).
  absl::StatusOr<PeerCred> Authorize(const grpc::ServerContext& ctx) const;
  absl::StatusOr<std::shared_ptr<const tokens::Key>> Resolve(const v1::KeySelector& sel) const;
  absl::Time Deadline(const grpc::ServerContext& ctx) const;
  // Runs `body` for an authorized caller and writes one audit line.
  template <typename Body>
  grpc::Status Audited(const grpc::ServerContext& ctx, const char* op, std::string key, Body body);

  tokens::Token* token_;
  CertificateImporter importer_;
  const PeerRegistry* peers_;
  const AuditLog* audit_;
  absl::Duration default_deadline_;
  uid_t own_uid_;
  std::string request_prefix_;
  std::atomic<uint64_t> request_counter_{0};
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_LIFECYCLE_SERVICE_H_
