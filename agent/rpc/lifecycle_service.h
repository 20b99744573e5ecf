// The Lifecycle gRPC service (proto/smime/agent/v1/lifecycle.proto):
// certification requests, certificate import and publication records. Each
// handler authorizes, validates, resolves, calls agent/csr, cert_import or
// publish, and maps the result (STYLE.md §9).
#ifndef SMIME_AGENT_RPC_LIFECYCLE_SERVICE_H_
#define SMIME_AGENT_RPC_LIFECYCLE_SERVICE_H_

#include <string>

#include "agent/rpc/audit.h"
#include "agent/rpc/call_gate.h"
#include "agent/rpc/handler_decl.h"
#include "agent/engine/cert_import.h"
#include "agent/rpc/listener.h"
#include "smime/agent/v1/lifecycle.grpc.pb.h"
#include "tokens/token.h"

namespace smime::agent {

class LifecycleService final : public v1::Lifecycle::Service {
 public:
  LifecycleService(tokens::Token* token, CertificateImporter* importer, const PeerRegistry* peers,
                   const AuditLog* audit, absl::Duration default_deadline = absl::Seconds(30));

  // Per-client limits (ServiceOptions::limits); none until set.
  void SetLimits(CallLimits* limits) { gate_.SetLimits(limits); }

  SMIME_UNARY_HANDLER(CreateCsr);
  SMIME_UNARY_HANDLER(ImportCertificates);
  SMIME_UNARY_HANDLER(ImportPkcs12);
  SMIME_UNARY_HANDLER(RetireKey);
  SMIME_UNARY_HANDLER(DeleteKey);
  SMIME_UNARY_HANDLER(ListContacts);
  SMIME_UNARY_HANDLER(DescribePublication);

 private:
  tokens::Token* token_;
  CertificateImporter* importer_;
  CallGate gate_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_LIFECYCLE_SERVICE_H_
