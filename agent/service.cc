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
    : token_(token), engine_(token), peers_(peers), audit_(audit), options_(options), own_uid_(::geteuid()) {
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

// What a request over the limit hears: which limit, and where it is set.
absl::Status TooLarge(size_t max_message_bytes, bool encoded) {
  if (encoded) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the signed or encrypted input is larger than the agent's limit of ",
        HumanBytes(MaxEncodedBytes(max_message_bytes)), " (for messages of up to ",
        HumanBytes(max_message_bytes), "; the agent's --max-message-bytes)"));
  }
  return absl::ResourceExhaustedError(absl::StrCat("the message is larger than the agent's limit of ",
                                                   HumanBytes(max_message_bytes),
                                                   " (the agent's --max-message-bytes)"));
}

// Collects a request stream: the options from the first message, then the
// data chunks (and, for Verify, detached-content chunks), refusing more than
// `max_bytes` in all (`too_large`). `take` files one request and returns
// false for a message out of order.
template <typename Req, typename Stream, typename Take>
absl::Status ReadRequests(Stream* stream, size_t max_bytes, absl::Status too_large, Take take) {
  Req req;
  bool first = true;
  size_t total = 0;
  while (stream->Read(&req)) {
    absl::Status st = take(req, first, &total);
    if (!st.ok()) return st;
    if (total > max_bytes) return too_large;
    first = false;
  }
  if (first) return absl::InvalidArgumentError("the request stream was empty");
  return absl::OkStatus();
}

// Appends one chunk, or refuses options after the first message.
template <typename Req>
absl::Status TakeChunk(const Req& req, bool first, size_t* total, std::string* data) {
  if (first != (req.part_case() == Req::kOptions)) {
    return absl::InvalidArgumentError("send the options first, then the data chunks");
  }
  if (req.part_case() == Req::kData) {
    data->append(req.data());
    *total += req.data().size();
  }
  return absl::OkStatus();
}

constexpr size_t kChunkBytes = kStreamChunkBytes;

// Writes `data` as response chunks.
template <typename Resp, typename Stream>
void WriteChunks(Stream* stream, const std::string& data) {
  for (size_t off = 0; off < data.size(); off += kChunkBytes) {
    Resp resp;
    resp.set_data(data.substr(off, kChunkBytes));
    if (!stream->Write(resp)) return;  // client went away
  }
}

absl::StatusOr<std::vector<CertPtr>> ParseCertList(const google::protobuf::RepeatedPtrField<std::string>& items,
                                                   absl::string_view what) {
  std::vector<CertPtr> out;
  for (const std::string& item : items) {
    auto certs = ParseCertificates(item);
    if (!certs.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", certs.status().message()));
    }
    out.insert(out.end(), certs->begin(), certs->end());
  }
  return out;
}

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

grpc::Status AgentService::Sign(grpc::ServerContext* ctx,
                                grpc::ServerReaderWriter<v1::SignResponse, v1::SignRequest>* stream) {
  v1::SignOptions options;
  std::string message;
  absl::Status read = ReadRequests<v1::SignRequest>(
      stream, options_.max_message_bytes, TooLarge(options_.max_message_bytes, false),
      [&](const v1::SignRequest& r, bool first, size_t* total) {
        if (first && r.has_options()) options = r.options();
        return TakeChunk(r, first, total, &message);
      });
  std::string signed_message;
  grpc::Status status = AuditedKeyOp(*ctx, "smime_sign", SelectorForAudit(options.key()),
                                     [&](AuditRecord& audit) -> absl::Status {
    RETURN_IF_ERROR(read);
    audit.set_mechanism(options.pss() ? "cms-rsa-pss-sha256" : "cms-sha256");
    ASSIGN_OR_RETURN(auto key, Resolve(options.key()));
    audit.set_key(key->uri());
    ASSIGN_OR_RETURN(signed_message, engine_.Sign(key, message, {options.opaque(), options.pss()}, Deadline(*ctx)));
    return absl::OkStatus();
  });
  if (status.ok()) WriteChunks<v1::SignResponse>(stream, signed_message);
  return status;
}

grpc::Status AgentService::Verify(grpc::ServerContext* ctx,
                                  grpc::ServerReaderWriter<v1::VerifyResponse, v1::VerifyRequest>* stream) {
  RETURN_GRPC_IF_ERROR(Authorize(*ctx).status());
  v1::VerifyOptions options;
  std::string message, content;
  RETURN_GRPC_IF_ERROR(ReadRequests<v1::VerifyRequest>(
      stream, MaxEncodedBytes(options_.max_message_bytes), TooLarge(options_.max_message_bytes, true),
      [&](const v1::VerifyRequest& r, bool first, size_t* total) {
        if (first && r.has_options()) options = r.options();
        if (!first && r.part_case() == v1::VerifyRequest::kContent) {
          content.append(r.content());
          *total += r.content().size();
          return absl::OkStatus();
        }
        return TakeChunk(r, first, total, &message);
      }));
  auto anchors = ParseCertList(options.trust_anchors(), "trusted CA certificate");
  if (!anchors.ok()) return ToGrpcStatus(anchors.status());
  agent::VerifyOptions vopts;
  vopts.trust_anchors = std::move(*anchors);
  if (options.has_at()) vopts.at = absl::FromUnixSeconds(options.at().seconds());
  vopts.at_signing_time = options.at_signing_time();
  vopts.signature_only = options.signature_only();
  vopts.any_purpose = options.any_purpose();
  vopts.binary = options.binary();
  auto extra = ParseCertList(options.extra_certs(), "intermediate certificate");
  if (!extra.ok()) return ToGrpcStatus(extra.status());
  vopts.extra_certs = std::move(*extra);
  auto result = engine_.Verify(message, content, vopts);
  if (!result.ok()) return ToGrpcStatus(result.status());
  v1::VerifyResponse head;
  for (const SignerInfo& s : result->signers) {
    v1::Signer* signer = head.mutable_result()->add_signers();
    signer->set_subject(s.subject);
    for (const std::string& e : s.emails) signer->add_emails(e);
    if (s.signing_time) signer->mutable_signing_time()->set_seconds(absl::ToUnixSeconds(*s.signing_time));
  }
  head.mutable_result()->set_from_mismatch(result->from_mismatch);
  stream->Write(head);
  WriteChunks<v1::VerifyResponse>(stream, result->content);
  return grpc::Status::OK;
}

grpc::Status AgentService::Encrypt(grpc::ServerContext* ctx,
                                   grpc::ServerReaderWriter<v1::EncryptResponse, v1::EncryptRequest>* stream) {
  v1::EncryptOptions options;
  std::string message;
  absl::Status read = ReadRequests<v1::EncryptRequest>(
      stream, options_.max_message_bytes, TooLarge(options_.max_message_bytes, false),
      [&](const v1::EncryptRequest& r, bool first, size_t* total) {
        if (first && r.has_options()) options = r.options();
        return TakeChunk(r, first, total, &message);
      });
  auto encrypt = [&](AuditRecord* audit) -> absl::StatusOr<std::string> {
    RETURN_IF_ERROR(read);
    ASSIGN_OR_RETURN(std::vector<CertPtr> recipients, ParseCertList(options.recipients(), "recipient certificate"));
    agent::EncryptOptions eopts;
    eopts.oaep = options.oaep();
    switch (options.cipher()) {
      case v1::CONTENT_CIPHER_AES128_CBC: eopts.cipher = Cipher::kAes128Cbc; break;
      case v1::CONTENT_CIPHER_AES256_GCM: eopts.cipher = Cipher::kAes256Gcm; break;
      default: eopts.cipher = Cipher::kAes256Cbc; break;
    }
    std::string plain = std::move(message);
    if (audit != nullptr) {  // sign first, then encrypt the signed message
      ASSIGN_OR_RETURN(auto key, Resolve(options.sign_with()));
      audit->set_key(key->uri());
      ASSIGN_OR_RETURN(plain, engine_.Sign(key, plain, {options.sign_opaque(), false}, Deadline(*ctx)));
      // The sender can read what it sent.
      recipients.push_back(CertPtr(X509_dup(key->certificate()), X509_free));
    }
    return engine_.Encrypt(plain, recipients, eopts);
  };
  absl::StatusOr<std::string> out = absl::UnknownError("not run");
  grpc::Status status;
  if (options.has_sign_with()) {
    status = AuditedKeyOp(*ctx, "smime_sign_encrypt", SelectorForAudit(options.sign_with()),
                          [&](AuditRecord& audit) -> absl::Status {
      audit.set_mechanism("cms-sha256");
      out = encrypt(&audit);
      return out.status();
    });
  } else {
    RETURN_GRPC_IF_ERROR(Authorize(*ctx).status());
    out = encrypt(nullptr);
    status = ToGrpcStatus(out.status());
  }
  if (status.ok()) WriteChunks<v1::EncryptResponse>(stream, *out);
  return status;
}

grpc::Status AgentService::Decrypt(grpc::ServerContext* ctx,
                                   grpc::ServerReaderWriter<v1::DecryptResponse, v1::DecryptRequest>* stream) {
  std::string message;
  v1::DecryptOptions options;
  absl::Status read = ReadRequests<v1::DecryptRequest>(
      stream, MaxEncodedBytes(options_.max_message_bytes), TooLarge(options_.max_message_bytes, true),
      [&](const v1::DecryptRequest& r, bool first, size_t* total) {
        if (first && r.has_options()) options = r.options();
        return TakeChunk(r, first, total, &message);
      });
  absl::StatusOr<DecryptResult> result = absl::UnknownError("not run");
  std::string described = options.has_key() ? SelectorForAudit(options.key()) : "-";
  grpc::Status status = AuditedKeyOp(*ctx, "smime_decrypt", described, [&](AuditRecord& audit) -> absl::Status {
    RETURN_IF_ERROR(read);
    audit.set_mechanism("cms");
    std::shared_ptr<const tokens::Key> only;
    if (options.has_key()) {
      ASSIGN_OR_RETURN(only, Resolve(options.key()));
    }
    result = engine_.Decrypt(message, Deadline(*ctx), only);
    if (result.ok()) audit.set_key(result->key_uri);
    return result.status();
  });
  if (!status.ok()) return status;
  v1::DecryptResponse head;
  head.mutable_result()->set_key_uri(result->key_uri);
  head.mutable_result()->set_is_signed(result->is_signed);
  stream->Write(head);
  WriteChunks<v1::DecryptResponse>(stream, result->content);
  return grpc::Status::OK;
}

}  // namespace smime::agent
