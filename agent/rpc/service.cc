#include "agent/rpc/service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/rpc/convert.h"
#include "agent/rpc/grpc_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "tokens/certificate.h"

namespace smime::agent {

AgentService::AgentService(tokens::Token* token, CertificateImporter* importer, const PeerRegistry* peers,
                           const AuditLog* audit, ServiceOptions options)
    : token_(token), contacts_(token, importer), engine_(token), options_(options),
      gate_(token, peers, audit, options.default_deadline) {}

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

// The data or content bytes of one request message.
template <typename Req>
std::string* PartBytes(Req& req) {
  if constexpr (std::is_same_v<Req, v1::VerifyRequest>) {
    if (req.part_case() == v1::VerifyRequest::kContent) return req.mutable_content();
  }
  return req.mutable_data();
}

// One streamed request, read in order as the engine asks for it: the
// options message, then data chunks, then (Verify) content chunks. Each
// part after the options is a ByteSource with its own limit; a message out
// of order or over a limit ends the whole request with that status.
template <typename Resp, typename Req>
class RequestStream {
 public:
  class Part;

  RequestStream(const grpc::ServerContext* ctx, grpc::ServerReaderWriter<Resp, Req>* stream)
      : ctx_(ctx), stream_(stream) {}

  // Reads the first message, which must carry the options.
  absl::Status ReadOptions(Req* first) {
    if (!stream_->Read(first)) return absl::InvalidArgumentError("the request stream was empty");
    if (first->part_case() != Req::kOptions) return OutOfOrder();
    return absl::OkStatus();
  }

 private:
  static constexpr int kMaxParts = 4;

  static absl::Status OutOfOrder() {
    return absl::InvalidArgumentError("send the options first, then the data chunks (then any content chunks)");
  }
  bool Fail(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
    return false;
  }
  bool Count(int part_case, size_t bytes);
  bool NextOf(Part* part, std::string* chunk);

  const grpc::ServerContext* ctx_;
  grpc::ServerReaderWriter<Resp, Req>* stream_;
  Part* parts_[kMaxParts] = {};
  Req pending_;  // read but belonging to a later part
  bool has_pending_ = false;
  bool ended_ = false;
  absl::Status status_;
};

template <typename Resp, typename Req>
class RequestStream<Resp, Req>::Part final : public ByteSource {
 public:
  // `part_case`: Req::kData or Req::kContent. More than `max_bytes` in all
  // fails with `too_large`.
  Part(RequestStream* owner, int part_case, size_t max_bytes, absl::Status too_large)
      : owner_(owner), part_case_(part_case), max_bytes_(max_bytes), too_large_(std::move(too_large)) {
    owner_->parts_[part_case] = this;
  }
  bool Next(std::string* chunk) override { return owner_->NextOf(this, chunk); }
  absl::Status status() const override { return owner_->status_; }

 private:
  friend class RequestStream;
  RequestStream* owner_;
  int part_case_;
  size_t max_bytes_;
  absl::Status too_large_;
  size_t total_ = 0;
  bool started_ = false;
};

template <typename Resp, typename Req>
bool RequestStream<Resp, Req>::Count(int part_case, size_t bytes) {
  Part* part = parts_[part_case];
  part->total_ += bytes;
  return part->total_ <= part->max_bytes_ || Fail(part->too_large_);
}

template <typename Resp, typename Req>
bool RequestStream<Resp, Req>::NextOf(Part* part, std::string* chunk) {
  for (;;) {
    if (!status_.ok()) return false;
    if (!has_pending_) {
      if (ended_ || !stream_->Read(&pending_)) {
        ended_ = true;
        // A cancelled call also ends the reads: that is no end of message.
        if (ctx_->IsCancelled()) return Fail(absl::CancelledError("the caller cancelled the call"));
        return false;
      }
      has_pending_ = true;
    }
    int got = pending_.part_case();
    if (got > part->part_case_ && got < kMaxParts && parts_[got] != nullptr) return false;  // next part begins
    if (got == part->part_case_) {
      has_pending_ = false;
      part->started_ = true;
      std::string* bytes = PartBytes(pending_);
      if (!Count(got, bytes->size())) return false;
      chunk->swap(*bytes);
      return true;
    }
    // The rest of an earlier part its reader left unread (a parser stops at
    // the end of the CMS structure): skip it, within its limit.
    if (got < part->part_case_ && got != Req::kOptions && parts_[got] != nullptr && !part->started_) {
      has_pending_ = false;
      std::string* bytes = PartBytes(pending_);
      if (!Count(got, bytes->size())) return false;
      continue;
    }
    return Fail(OutOfOrder());
  }
}

// Hands the engine's output to the client in chunks of kStreamChunkBytes.
template <typename Resp, typename Req>
class ResponseSink final : public ByteSink {
 public:
  explicit ResponseSink(grpc::ServerReaderWriter<Resp, Req>* stream) : stream_(stream) {}

  bool Write(absl::string_view data) override {
    while (!data.empty() && !failed_) {
      size_t n = std::min(data.size(), kStreamChunkBytes - buffer_.size());
      buffer_.append(data.data(), n);
      data.remove_prefix(n);
      if (buffer_.size() == kStreamChunkBytes) Send();
    }
    return !failed_;
  }
  // Sends what is left; a Cancelled status when the client went away.
  absl::Status Flush() {
    if (!buffer_.empty()) Send();
    return failed_ ? absl::CancelledError("the caller went away") : absl::OkStatus();
  }

 private:
  void Send() {
    Resp resp;
    resp.set_data(std::move(buffer_));
    buffer_.clear();
    failed_ = !stream_->Write(resp);
  }

  grpc::ServerReaderWriter<Resp, Req>* stream_;
  std::string buffer_;
  bool failed_ = false;
};

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

// The engine's verify options from the request's.
absl::StatusOr<agent::VerifyOptions> VerifyOptionsFromProto(const v1::VerifyOptions& options) {
  agent::VerifyOptions vopts;
  ASSIGN_OR_RETURN(vopts.trust_anchors, ParseCertList(options.trust_anchors(), "trusted CA certificate"));
  ASSIGN_OR_RETURN(vopts.extra_certs, ParseCertList(options.extra_certs(), "intermediate certificate"));
  if (options.has_at()) vopts.at = absl::FromUnixSeconds(options.at().seconds());
  vopts.at_signing_time = options.at_signing_time();
  vopts.signature_only = options.signature_only();
  vopts.any_purpose = options.any_purpose();
  vopts.binary = options.binary();
  return vopts;
}

void ToProto(const VerifyResult& result, v1::VerifyResult* out) {
  for (const SignerInfo& s : result.signers) {
    v1::Signer* signer = out->add_signers();
    signer->set_subject(s.subject);
    for (const std::string& e : s.emails) signer->add_emails(e);
    if (s.signing_time) signer->mutable_signing_time()->set_seconds(absl::ToUnixSeconds(*s.signing_time));
  }
  out->set_from_mismatch(result.from_mismatch);
  MakeUtf8Valid(out);
}

}  // namespace

grpc::Status AgentService::ListKeys(grpc::ServerContext* ctx, const v1::ListKeysRequest*,
                                    v1::ListKeysResponse* resp) {
  return gate_.Serve(*ctx, [&](const Call&) -> absl::Status {
    auto keys = token_->Keys();
    absl::Time now = absl::Now();
    for (const auto& key : *keys) {
      v1::KeyInfo* out = resp->add_keys();
      ToProto(*key, token_->label(), out);
      out->set_status(KeyStatusName(StatusOf(*key, *keys, now)));
    }
    return absl::OkStatus();
  });
}

grpc::Status AgentService::GetCertificate(grpc::ServerContext* ctx,
                                          const v1::GetCertificateRequest* req,
                                          v1::GetCertificateResponse* resp) {
  return gate_.Serve(*ctx, [&](const Call&) -> absl::Status {
    ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
    if (key->certificate() == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "key \"", key->label(), "\" (id ", key->id_hex(), ") has no certificate on the token"));
    }
    resp->set_certificate_der(tokens::CertificateDer(key->certificate()));
    ToProto(*key, token_->label(), resp->mutable_key());
    return absl::OkStatus();
  });
}

grpc::Status AgentService::GetPublicKey(grpc::ServerContext* ctx, const v1::GetPublicKeyRequest* req,
                                        v1::GetPublicKeyResponse* resp) {
  return gate_.Serve(*ctx, [&](const Call&) -> absl::Status {
    ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
    if (key->public_key() == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the token holds no public key or certificate for key \"", key->label(), "\""));
    }
    resp->set_spki_der(tokens::PublicKeyDer(key->public_key()));
    ToProto(*key, token_->label(), resp->mutable_key());
    return absl::OkStatus();
  });
}

grpc::Status AgentService::SignDigest(grpc::ServerContext* ctx, const v1::SignDigestRequest* req,
                                      v1::SignDigestResponse* resp) {
  return gate_.Audited(*ctx, "sign", SelectorForAudit(req->key()),
                      [&](const Call& call, AuditRecord& audit) -> absl::Status {
    ASSIGN_OR_RETURN(tokens::SignMechanism mech, FromProto(req->algorithm()));
    audit.set_mechanism(tokens::SignMechanismName(mech));
    ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
    audit.set_key(key->uri());
    ASSIGN_OR_RETURN(std::string sig, token_->Sign(*key, mech, req->digest(), call.deadline));
    resp->set_signature(std::move(sig));
    resp->set_key_uri(key->uri());
    return absl::OkStatus();
  });
}

grpc::Status AgentService::DecryptKey(grpc::ServerContext* ctx, const v1::DecryptKeyRequest* req,
                                      v1::DecryptKeyResponse* resp) {
  return gate_.Audited(*ctx, "decrypt", SelectorForAudit(req->key()),
                      [&](const Call& call, AuditRecord& audit) -> absl::Status {
    ASSIGN_OR_RETURN(tokens::DecryptMechanism mech, FromProto(req->padding()));
    audit.set_mechanism(tokens::DecryptMechanismName(mech));
    ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
    audit.set_key(key->uri());
    ASSIGN_OR_RETURN(std::string plain,
                     token_->Decrypt(*key, mech, req->ciphertext(), call.deadline));
    resp->set_plaintext(std::move(plain));
    resp->set_key_uri(key->uri());
    return absl::OkStatus();
  });
}

grpc::Status AgentService::GenerateKey(grpc::ServerContext* ctx, const v1::GenerateKeyRequest* req,
                                       v1::GenerateKeyResponse* resp) {
  return gate_.Audited(*ctx, "generate", absl::StrCat("label=", req->label()),
                      [&](const Call& call, AuditRecord& audit) -> absl::Status {
    ASSIGN_OR_RETURN(tokens::KeySpec spec, FromProto(req->type()));
    audit.set_mechanism(v1::KeyType_Name(req->type()));
    ASSIGN_OR_RETURN(auto key, token_->GenerateKey(spec, req->label(), call.deadline));
    audit.set_key(key->uri());
    ToProto(*key, token_->label(), resp->mutable_key());
    return absl::OkStatus();
  });
}

grpc::Status AgentService::Sign(grpc::ServerContext* ctx,
                                grpc::ServerReaderWriter<v1::SignResponse, v1::SignRequest>* stream) {
  RequestStream requests(ctx, stream);
  v1::SignRequest first;
  absl::Status read = requests.ReadOptions(&first);
  const v1::SignOptions& options = first.options();
  decltype(requests)::Part message(&requests, v1::SignRequest::kData, options_.max_message_bytes,
                                   TooLarge(options_.max_message_bytes, false));
  ResponseSink out(stream);
  return gate_.Audited(*ctx, "smime_sign", SelectorForAudit(options.key()), [&](const Call& call, AuditRecord& audit) -> absl::Status {
    RETURN_IF_ERROR(read);
    audit.set_mechanism(options.pss() ? "cms-rsa-pss-sha256" : "cms-sha256");
    ASSIGN_OR_RETURN(auto key, gate_.ResolveForSigning(options.key()));
    audit.set_key(key->uri());
    RETURN_IF_ERROR(engine_.Sign(key, message, out, {options.opaque(), options.pss()}, call.deadline));
    return out.Flush();
  });
}

grpc::Status AgentService::Verify(grpc::ServerContext* ctx,
                                  grpc::ServerReaderWriter<v1::VerifyResponse, v1::VerifyRequest>* stream) {
  return gate_.Serve(*ctx, [&](const Call& call) -> absl::Status {
    RequestStream requests(ctx, stream);
    v1::VerifyRequest first;
    RETURN_IF_ERROR(requests.ReadOptions(&first));
    const v1::VerifyOptions& options = first.options();
    ASSIGN_OR_RETURN(agent::VerifyOptions vopts, VerifyOptionsFromProto(options));
    decltype(requests)::Part message(&requests, v1::VerifyRequest::kData,
                                     MaxEncodedBytes(options_.max_message_bytes),
                                     TooLarge(options_.max_message_bytes, true));
    decltype(requests)::Part content(&requests, v1::VerifyRequest::kContent, options_.max_message_bytes,
                                     TooLarge(options_.max_message_bytes, false));
    ASSIGN_OR_RETURN(VerifyResult result, engine_.Verify(message, &content, vopts));
    v1::VerifyResponse head;
    ToProto(result, head.mutable_result());
    contacts_.LearnFrom(result, vopts, call.deadline);
    stream->Write(head);
    ResponseSink out(stream);
    out.Write(result.content);
    return out.Flush();
  });
}

grpc::Status AgentService::Encrypt(grpc::ServerContext* ctx,
                                   grpc::ServerReaderWriter<v1::EncryptResponse, v1::EncryptRequest>* stream) {
  RequestStream requests(ctx, stream);
  v1::EncryptRequest first;
  absl::Status read = requests.ReadOptions(&first);
  const v1::EncryptOptions& options = first.options();
  decltype(requests)::Part message(&requests, v1::EncryptRequest::kData, options_.max_message_bytes,
                                   TooLarge(options_.max_message_bytes, false));
  ResponseSink out(stream);
  auto encrypt = [&](const Call& call, AuditRecord* audit) -> absl::Status {
    RETURN_IF_ERROR(read);
    ASSIGN_OR_RETURN(std::vector<CertPtr> recipients, ParseCertList(options.recipients(), "recipient certificate"));
    for (const std::string& email : options.recipient_emails()) {
      ASSIGN_OR_RETURN(CertPtr cert, contacts_.CertificateFor(email, absl::Now()));
      recipients.push_back(std::move(cert));
    }
    agent::EncryptOptions eopts;
    eopts.oaep = options.oaep();
    switch (options.cipher()) {
      case v1::CONTENT_CIPHER_AES128_CBC: eopts.cipher = Cipher::kAes128Cbc; break;
      case v1::CONTENT_CIPHER_AES256_GCM: eopts.cipher = Cipher::kAes256Gcm; break;
      default: eopts.cipher = Cipher::kAes256Cbc; break;
    }
    if (audit == nullptr) {
      RETURN_IF_ERROR(engine_.Encrypt(message, out, recipients, eopts));
    } else {  // sign first, then encrypt the signed message
      ASSIGN_OR_RETURN(auto key, gate_.ResolveForSigning(options.sign_with()));
      audit->set_key(key->uri());
      RETURN_IF_ERROR(engine_.SignAndEncrypt(key, message, out, {options.sign_opaque(), false},
                                             std::move(recipients), eopts, call.deadline));
    }
    return out.Flush();
  };
  if (options.has_sign_with()) {
    return gate_.Audited(*ctx, "smime_sign_encrypt", SelectorForAudit(options.sign_with()),
                        [&](const Call& call, AuditRecord& audit) -> absl::Status {
      audit.set_mechanism("cms-sha256");
      return encrypt(call, &audit);
    });
  }
  return gate_.Serve(*ctx, [&](const Call& call) { return encrypt(call, nullptr); });
}

grpc::Status AgentService::Decrypt(grpc::ServerContext* ctx,
                                   grpc::ServerReaderWriter<v1::DecryptResponse, v1::DecryptRequest>* stream) {
  RequestStream requests(ctx, stream);
  v1::DecryptRequest first;
  absl::Status read = requests.ReadOptions(&first);
  const v1::DecryptOptions& options = first.options();
  decltype(requests)::Part message(&requests, v1::DecryptRequest::kData, MaxEncodedBytes(options_.max_message_bytes),
                                   TooLarge(options_.max_message_bytes, true));
  absl::StatusOr<DecryptVerifyResult> result = absl::UnknownError("not run");
  std::optional<agent::VerifyOptions> verify;
  absl::Time deadline;
  std::string described = options.has_key() ? SelectorForAudit(options.key()) : "-";
  grpc::Status status = gate_.Audited(*ctx, "smime_decrypt", described, [&](const Call& call, AuditRecord& audit) -> absl::Status {
    RETURN_IF_ERROR(read);
    audit.set_mechanism("cms");
    if (options.has_verify()) {
      ASSIGN_OR_RETURN(verify, VerifyOptionsFromProto(options.verify()));
    }
    std::shared_ptr<const tokens::Key> only;
    if (options.has_key()) {
      ASSIGN_OR_RETURN(only, gate_.Resolve(options.key()));
    }
    deadline = call.deadline;
    result = engine_.DecryptAndVerify(message, call.deadline, only, verify);
    if (result.ok()) audit.set_key(result->decrypted.key_uri);
    return result.status();
  });
  if (!status.ok()) return status;
  RETURN_GRPC_IF_ERROR(result->verify_status);
  DecryptResult& decrypted = result->decrypted;
  v1::DecryptResponse head;
  head.mutable_result()->set_key_uri(decrypted.key_uri);
  head.mutable_result()->set_is_signed(decrypted.is_signed);
  if (result->verified) {
    ToProto(*result->verified, head.mutable_result()->mutable_verified());
    contacts_.LearnFrom(*result->verified, *verify, deadline);
  }
  stream->Write(head);
  ResponseSink out(stream);
  out.Write(decrypted.content);
  return ToGrpcStatus(out.Flush());
}

}  // namespace smime::agent
