#include "agent/service.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/convert.h"
#include "agent/grpc_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"

namespace smime::agent {

AgentService::AgentService(tokens::Token* token, const PeerRegistry* peers, const AuditLog* audit,
                           ServiceOptions options)
    : token_(token), peers_(peers), audit_(audit), options_(options), own_uid_(::geteuid()) {
  unsigned char r[3];
  if (RAND_bytes(r, sizeof(r)) != 1) r[0] = r[1] = r[2] = 0;
  request_prefix_ = tokens::HexEncode(absl::string_view(reinterpret_cast<char*>(r), sizeof(r)));
}

std::string AgentService::NextRequestId() {
  return absl::StrCat(request_prefix_, "-", ++request_counter_);
}

absl::StatusOr<PeerCred> AgentService::Authorize(const grpc::ServerContext& ctx) const {
  std::optional<PeerCred> cred = peers_->LookupPeer(ctx.peer());
  if (!cred) {
    return absl::PermissionDeniedError("the agent cannot identify the caller's uid");
  }
  if (cred->uid != own_uid_ && cred->uid != 0) {
    SMIME_LOG(kWarning, "peer_refused").Kv("peer_uid", cred->uid).Kv("peer_pid", cred->pid);
    return absl::PermissionDeniedError(absl::StrCat(
        "uid ", cred->uid, " may not use this agent; it serves uid ", own_uid_, " only"));
  }
  return *cred;
}

absl::Time AgentService::Deadline(const grpc::ServerContext& ctx) const {
  absl::Time fallback = absl::Now() + options_.default_deadline;
  auto d = ctx.deadline();
  if (d == std::chrono::system_clock::time_point::max()) return fallback;
  absl::Time t = absl::FromChrono(d);
  return t < fallback ? t : fallback;
}

absl::StatusOr<std::shared_ptr<const tokens::Key>> AgentService::Resolve(
    const v1::KeySelector& sel) const {
  ASSIGN_OR_RETURN(KeySelector selector, FromProto(sel));
  auto key = ResolveKey(*token_->Keys(), token_->info(), selector);
  // A key another tool just added, or a token just reinserted: look again.
  if (absl::IsNotFound(key.status()) && token_->RefreshIfOlderThan(absl::Seconds(1))) {
    key = ResolveKey(*token_->Keys(), token_->info(), selector);
  }
  return key;
}

namespace {
// How a request's selector is named in the audit line before it resolves.
std::string SelectorForAudit(const v1::KeySelector& sel) {
  auto s = FromProto(sel);
  return s.ok() ? DescribeSelector(*s) : "-";
}
}  // namespace

grpc::Status AgentService::ListKeys(grpc::ServerContext* ctx, const v1::ListKeysRequest*,
                                    v1::ListKeysResponse* resp) {
  auto peer = Authorize(*ctx);
  if (!peer.ok()) return ToGrpcStatus(peer.status());
  for (const auto& key : *token_->Keys()) ToProto(*key, token_->label(), resp->add_keys());
  return grpc::Status::OK;
}

grpc::Status AgentService::GetCertificate(grpc::ServerContext* ctx,
                                          const v1::GetCertificateRequest* req,
                                          v1::GetCertificateResponse* resp) {
  RETURN_GRPC_IF_ERROR(Authorize(*ctx).status());
  auto key = Resolve(req->key());
  if (!key.ok()) return ToGrpcStatus(key.status());
  if ((*key)->certificate() == nullptr) {
    return ToGrpcStatus(absl::NotFoundError(absl::StrCat(
        "key \"", (*key)->label(), "\" (id ", (*key)->id_hex(), ") has no certificate on the token")));
  }
  resp->set_certificate_der(tokens::CertificateDer((*key)->certificate()));
  ToProto(**key, token_->label(), resp->mutable_key());
  return grpc::Status::OK;
}

grpc::Status AgentService::GetPublicKey(grpc::ServerContext* ctx, const v1::GetPublicKeyRequest* req,
                                        v1::GetPublicKeyResponse* resp) {
  RETURN_GRPC_IF_ERROR(Authorize(*ctx).status());
  auto key = Resolve(req->key());
  if (!key.ok()) return ToGrpcStatus(key.status());
  if ((*key)->public_key() == nullptr) {
    return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
        "the token holds no public key or certificate for key \"", (*key)->label(), "\"")));
  }
  resp->set_spki_der(tokens::PublicKeyDer((*key)->public_key()));
  ToProto(**key, token_->label(), resp->mutable_key());
  return grpc::Status::OK;
}

template <typename Body>
grpc::Status AgentService::AuditedKeyOp(const grpc::ServerContext& ctx, const char* op,
                                        std::string key_description, Body body) {
  const std::string rid = NextRequestId();
  auto peer = Authorize(ctx);
  AuditRecord audit(*audit_, op, rid, peer.ok() ? peer->uid : static_cast<uid_t>(-1),
                    peer.ok() ? peer->pid : 0);
  audit.set_key(std::move(key_description));
  absl::Status status = peer.ok() ? body(audit) : peer.status();
  return ToGrpcStatus(audit.Result(status), rid);
}

grpc::Status AgentService::SignDigest(grpc::ServerContext* ctx, const v1::SignDigestRequest* req,
                                      v1::SignDigestResponse* resp) {
  return AuditedKeyOp(*ctx, "sign", SelectorForAudit(req->key()),
                      [&](AuditRecord& audit) -> absl::Status {
    ASSIGN_OR_RETURN(tokens::SignMechanism mech, FromProto(req->algorithm()));
    audit.set_mechanism(tokens::SignMechanismName(mech));
    ASSIGN_OR_RETURN(auto key, Resolve(req->key()));
    audit.set_key(key->uri());
    ASSIGN_OR_RETURN(std::string sig, token_->Sign(*key, mech, req->digest(), Deadline(*ctx)));
    resp->set_signature(std::move(sig));
    resp->set_key_uri(key->uri());
    return absl::OkStatus();
  });
}

grpc::Status AgentService::DecryptKey(grpc::ServerContext* ctx, const v1::DecryptKeyRequest* req,
                                      v1::DecryptKeyResponse* resp) {
  return AuditedKeyOp(*ctx, "decrypt", SelectorForAudit(req->key()),
                      [&](AuditRecord& audit) -> absl::Status {
    ASSIGN_OR_RETURN(tokens::DecryptMechanism mech, FromProto(req->padding()));
    audit.set_mechanism(tokens::DecryptMechanismName(mech));
    ASSIGN_OR_RETURN(auto key, Resolve(req->key()));
    audit.set_key(key->uri());
    ASSIGN_OR_RETURN(std::string plain,
                     token_->Decrypt(*key, mech, req->ciphertext(), Deadline(*ctx)));
    resp->set_plaintext(std::move(plain));
    resp->set_key_uri(key->uri());
    return absl::OkStatus();
  });
}

grpc::Status AgentService::GenerateKey(grpc::ServerContext* ctx, const v1::GenerateKeyRequest* req,
                                       v1::GenerateKeyResponse* resp) {
  return AuditedKeyOp(*ctx, "generate", absl::StrCat("label=", req->label()),
                      [&](AuditRecord& audit) -> absl::Status {
    ASSIGN_OR_RETURN(tokens::KeySpec spec, FromProto(req->type()));
    audit.set_mechanism(v1::KeyType_Name(req->type()));
    ASSIGN_OR_RETURN(auto key, token_->GenerateKey(spec, req->label(), Deadline(*ctx)));
    audit.set_key(key->uri());
    ToProto(*key, token_->label(), resp->mutable_key());
    return absl::OkStatus();
  });
}

}  // namespace smime::agent
