#include "agent/rpc/call_gate.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/rpc/convert.h"
#include "agent/engine/key_resolver.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace smime::agent {

CallGate::CallGate(tokens::Token* token, const PeerRegistry* peers, const AuditLog* audit,
                   absl::Duration default_deadline, absl::string_view request_tag,
                   std::function<absl::Time()> clock)
    : token_(token), peers_(peers), audit_(audit), default_deadline_(default_deadline), clock_(std::move(clock)),
      own_uid_(::geteuid()) {
  unsigned char r[3];
  if (RAND_bytes(r, sizeof(r)) != 1) r[0] = r[1] = r[2] = 0;
  request_prefix_ = absl::StrCat(
      request_tag, tokens::HexEncode(absl::string_view(reinterpret_cast<char*>(r), sizeof(r))));
}

std::string CallGate::NextRequestId() {
  return absl::StrCat(request_prefix_, "-", ++request_counter_);
}

absl::Time CallDeadline(std::chrono::system_clock::time_point client_deadline, absl::Time now,
                        absl::Duration default_deadline) {
  absl::Time fallback = now + default_deadline;
  if (client_deadline == std::chrono::system_clock::time_point::max()) return fallback;
  absl::Time t = absl::FromChrono(client_deadline);
  return t < fallback ? t : fallback;
}

absl::StatusOr<Call> CallGate::Admit(const grpc::ServerContext& ctx) const {
  return Admit(peers_->LookupPeer(ctx.peer()), ctx.deadline());
}

absl::StatusOr<Call> CallGate::Admit(const std::optional<PeerCred>& cred,
                                     std::chrono::system_clock::time_point client_deadline) const {
  if (!cred) {
    return absl::PermissionDeniedError("the agent cannot identify the caller's uid");
  }
  if (cred->uid != own_uid_ && cred->uid != 0) {
    SMIME_LOG(kWarning, "peer_refused").Kv("peer_uid", cred->uid).Kv("peer_pid", cred->pid);
    return absl::PermissionDeniedError(absl::StrCat(
        "uid ", cred->uid, " may not use this agent; it serves uid ", own_uid_, " only"));
  }
  Call call{*cred, CallDeadline(client_deadline, clock_(), default_deadline_), nullptr};
  if (limits_ != nullptr) {
    ASSIGN_OR_RETURN(call.ticket, limits_->Enter(cred->pid));
  }
  return call;
}

absl::StatusOr<std::shared_ptr<CallTicket>> CallGate::EnterStream(const grpc::ServerContext& ctx) const {
  if (limits_ == nullptr) return std::shared_ptr<CallTicket>();
  std::optional<PeerCred> cred = peers_->LookupPeer(ctx.peer());
  return limits_->Enter(cred ? cred->pid : 0);
}

template <typename ResolveFn>
absl::StatusOr<std::shared_ptr<const tokens::Key>> CallGate::ResolveWithRefresh(
    const v1::KeySelector& sel, ResolveFn resolve) const {
  ASSIGN_OR_RETURN(KeySelector selector, FromProto(sel));
  auto key = resolve(selector);
  // A key another tool just added, or a token just reinserted: look again.
  if (absl::IsNotFound(key.status()) && token_->RefreshIfOlderThan(absl::Seconds(1))) {
    key = resolve(selector);
  }
  return key;
}

absl::StatusOr<std::shared_ptr<const tokens::Key>> CallGate::Resolve(
    const v1::KeySelector& sel) const {
  return ResolveWithRefresh(sel, [this](const KeySelector& selector) {
    return ResolveKey(*token_->Keys(), token_->info(), selector);
  });
}

absl::StatusOr<std::shared_ptr<const tokens::Key>> CallGate::ResolveForSigning(
    const v1::KeySelector& sel) const {
  return ResolveWithRefresh(sel, [this](const KeySelector& selector) {
    return ResolveSigningKey(*token_->Keys(), token_->info(), selector, absl::Now());
  });
}

std::string SelectorForAudit(const v1::KeySelector& sel) {
  auto s = FromProto(sel);
  return s.ok() ? DescribeSelector(*s) : "-";
}

}  // namespace smime::agent
