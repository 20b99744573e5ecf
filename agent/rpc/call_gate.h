// What every gRPC handler does around its work, in one place for both
// services (Agent and Lifecycle): identify and authorize the caller
// (SO_PEERCRED, the agent's uid or root), fix the call's deadline, resolve a
// key selector, and write the one audit line of a private-key operation.
#ifndef SMIME_AGENT_RPC_CALL_GATE_H_
#define SMIME_AGENT_RPC_CALL_GATE_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/rpc/audit.h"
#include "agent/rpc/call_limits.h"
#include "agent/rpc/grpc_status.h"
#include "agent/rpc/listener.h"
#include "smime/agent/v1/agent.pb.h"
#include "tokens/token.h"

namespace smime::agent {

// The deadline of a call that arrives at `now`: the client's, but never
// later than `now + default_deadline`, which is also the deadline of a call
// whose client set none (`client_deadline` time_point::max(), as gRPC has
// it then).
absl::Time CallDeadline(std::chrono::system_clock::time_point client_deadline, absl::Time now,
                        absl::Duration default_deadline);

// A call the gate let in. Its deadline is computed once, when the call is
// admitted, and every step of the call (token session wait, key operation,
// contact write) is bound by that one value: read again at each step, a call
// without a client deadline would get a fresh default at each.
struct Call {
  PeerCred peer;
  absl::Time deadline;
  std::shared_ptr<CallTicket> ticket;  // its share of the agent; null without limits
};

class CallGate {
 public:
  // `request_tag` starts every request id this gate hands out, to tell the
  // services apart in the log. `clock` tells the time calls arrive at (a
  // test's own clock; absl::Now otherwise).
  CallGate(tokens::Token* token, const PeerRegistry* peers, const AuditLog* audit,
           absl::Duration default_deadline, absl::string_view request_tag = "",
           std::function<absl::Time()> clock = absl::Now);
  CallGate(const CallGate&) = delete;
  CallGate& operator=(const CallGate&) = delete;

  // Per-client limits for the calls this gate admits (null: none).
  void SetLimits(CallLimits* limits) { limits_ = limits; }
  // The call's ticket, taken before a stream's first read (Admit takes the
  // same one later): RESOURCE_EXHAUSTED when the client has too many calls
  // in flight; null without limits.
  absl::StatusOr<std::shared_ptr<CallTicket>> EnterStream(const grpc::ServerContext& ctx) const;

  // The caller of `ctx`, if it may call (see below), and the call's deadline.
  absl::StatusOr<Call> Admit(const grpc::ServerContext& ctx) const;
  // The same for a caller with credentials `peer` (nullopt: unknown) and a
  // client deadline `client_deadline`. PERMISSION_DENIED unless the caller
  // runs as the agent's uid or root.
  absl::StatusOr<Call> Admit(const std::optional<PeerCred>& peer,
                             std::chrono::system_clock::time_point client_deadline) const;
  // The one key `sel` names; looks at the token again (rate-limited) when it
  // names none, for keys another tool just added.
  absl::StatusOr<std::shared_ptr<const tokens::Key>> Resolve(const v1::KeySelector& sel) const;
  // For signing: an email picks the newest valid certificate's key
  // (rotation), a retired key is refused (ResolveSigningKey).
  absl::StatusOr<std::shared_ptr<const tokens::Key>> ResolveForSigning(const v1::KeySelector& sel) const;
  std::string NextRequestId();

  // Runs `body(const Call&)` (returning absl::Status) for an admitted
  // caller: a handler that touches no private key.
  template <typename Body>
  grpc::Status Serve(const grpc::ServerContext& ctx, Body body) const {
    absl::StatusOr<Call> call = Admit(ctx);
    if (!call.ok()) return ToGrpcStatus(call.status());
    return ToGrpcStatus(body(*call));
  }

  // Runs `body(const Call&, AuditRecord&)` for an admitted caller and writes
  // the operation's one audit line, whatever the outcome.
  template <typename Body>
  grpc::Status Audited(const grpc::ServerContext& ctx, const char* op, std::string key_description,
                       Body body) {
    const std::string rid = NextRequestId();
    // The caller as the socket says, refused or not: a refused caller's
    // audit line names the uid that was refused.
    const std::optional<PeerCred> cred = peers_->LookupPeer(ctx.peer());
    absl::StatusOr<Call> call = Admit(cred, ctx.deadline());
    AuditRecord audit(*audit_, op, rid, cred ? cred->uid : static_cast<uid_t>(-1), cred ? cred->pid : 0);
    audit.set_key(std::move(key_description));
    absl::Status status = call.ok() ? body(*call, audit) : call.status();
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
  std::function<absl::Time()> clock_;
  uid_t own_uid_;
  CallLimits* limits_ = nullptr;
  std::string request_prefix_;
  std::atomic<uint64_t> request_counter_{0};
};

// How a request's selector is named in the audit line before it resolves.
std::string SelectorForAudit(const v1::KeySelector& sel);

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_CALL_GATE_H_
