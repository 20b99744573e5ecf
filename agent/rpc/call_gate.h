// What every gRPC handler does around its work, in one place for both
// services (Agent and Lifecycle): identify and authorize the caller
// (SO_PEERCRED, the agent's uid or root), bound the call by its deadline,
// resolve a key selector, and write the one audit line of a private-key
// operation.
#ifndef SMIME_AGENT_RPC_CALL_GATE_H_
#define SMIME_AGENT_RPC_CALL_GATE_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/rpc/audit.h"
#include "agent/rpc/grpc_status.h"
#include "agent/rpc/listener.h"
#include "smime/agent/v1/agent.pb.h"
#include "tokens/token.h"

namespace smime::agent {

class CallGate {
 public:
  // `request_tag` starts every request id this gate hands out, to tell the
  // services apart in the log.
  CallGate(tokens::Token* token, const PeerRegistry* peers, const AuditLog* audit,
           absl::Duration default_deadline, absl::string_view request_tag = "");
  CallGate(const CallGate&) = delete;
  CallGate& operator=(const CallGate&) = delete;

  // The caller's credentials; PERMISSION_DENIED unless it runs as the
  // agent's uid or root.
  absl::StatusOr<PeerCred> Authorize(const grpc::ServerContext& ctx) const;
  // The call's deadline, or the default when the caller set none (and never
  // later than the default).
  absl::Time Deadline(const grpc::ServerContext& ctx) const;
  // The one key `sel` names; looks at the token again (rate-limited) when it
  // names none, for keys another tool just added.
  absl::StatusOr<std::shared_ptr<const tokens::Key>> Resolve(const v1::KeySelector& sel) const;
  // For signing: an email picks the newest valid certificate's key
  // (rotation), a retired key is refused (ResolveSigningKey).
  absl::StatusOr<std::shared_ptr<const tokens::Key>> ResolveForSigning(const v1::KeySelector& sel) const;
  std::string NextRequestId();

  // Runs `body` for an authorized caller and writes the operation's one
  // audit line, whatever the outcome.
  template <typename Body>
  grpc::Status Audited(const grpc::ServerContext& ctx, const char* op, std::string key_description,
                       Body body) {
    const std::string rid = NextRequestId();
    auto peer = Authorize(ctx);
    AuditRecord audit(*audit_, op, rid, peer.ok() ? peer->uid : static_cast<uid_t>(-1),
                      peer.ok() ? peer->pid : 0);
    audit.set_key(std::move(key_description));
    absl::Status status = peer.ok() ? body(audit) : peer.status();
    return ToGrpcStatus(audit.Result(status), rid);
  }

 private:
  // Runs `resolve` over the token's keys, and once more after a
  // (rate-limited) refresh when it finds nothing.
  template <typename ResolveFn>
  absl::StatusOr<std::shared_ptr<const tokens::Key>> ResolveWithRefresh(const v1::KeySelector& sel,
                                                                        ResolveFn resolve) const;

  tokens::Token* token_;
  const PeerRegistry* peers_;
  const AuditLog* audit_;
  absl::Duration default_deadline_;
  uid_t own_uid_;
  std::string request_prefix_;
  std::atomic<uint64_t> request_counter_{0};
};

// How a request's selector is named in the audit line before it resolves.
std::string SelectorForAudit(const v1::KeySelector& sel);

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_CALL_GATE_H_
