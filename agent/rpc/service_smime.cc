// The Agent service's S/MIME stream handlers: Sign, Verify, Encrypt (and
// sign-then-encrypt) and Decrypt (and decrypt-then-verify). Each reads its
// options, validates, resolves the key, calls the engine and streams the
// result back (agent/rpc/request_stream.h).
#include <optional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "agent/rpc/convert.h"
#include "agent/rpc/request_stream.h"
#include "agent/rpc/service.h"
#include "common/status_macros.h"

namespace smime::agent {

grpc::Status AgentService::Sign(grpc::ServerContext* ctx,
                                grpc::ServerReaderWriter<v1::SignResponse, v1::SignRequest>* stream) {
  StreamedRequest request(ctx, stream, gate_.EnterStream(*ctx), options_.max_message_bytes, /*encoded=*/false);
  const v1::SignOptions& options = request.options();
  ResponseSink out(stream);
  return gate_.Audited(*ctx, "smime_sign", SelectorForAudit(options.key()),
                       [&](const Call& call, AuditRecord& audit) -> absl::Status {
    RETURN_IF_ERROR(request.read_status());
    audit.set_mechanism(options.pss() ? "cms-rsa-pss-sha256" : "cms-sha256");
    ASSIGN_OR_RETURN(auto key, gate_.ResolveForSigning(options.key()));
    audit.set_key(key->uri());
    RETURN_IF_ERROR(engine_.Sign(key, request.message(), out, {options.opaque(), options.pss()}, call.deadline));
    return out.Flush();
  });
}

grpc::Status AgentService::Verify(grpc::ServerContext* ctx,
                                  grpc::ServerReaderWriter<v1::VerifyResponse, v1::VerifyRequest>* stream) {
  return gate_.Serve(*ctx, [&](const Call& call) -> absl::Status {
    StreamedRequest request(ctx, stream, gate_.EnterStream(*ctx), options_.max_message_bytes, /*encoded=*/true);
    RETURN_IF_ERROR(request.read_status());
    ASSIGN_OR_RETURN(VerifyOptions vopts, FromProto(request.options()));
    decltype(request)::Part content(request.requests(), v1::VerifyRequest::kContent, options_.max_message_bytes,
                                    TooLarge(options_.max_message_bytes, false));
    ASSIGN_OR_RETURN(VerifyResult result, engine_.Verify(request.message(), &content, vopts));
    v1::VerifyResponse head;
    ToProto(result, head.mutable_result());
    contacts_.LearnFrom(result, vopts, call.deadline);
    return SendResult(stream, head, result.content);
  });
}

grpc::Status AgentService::Encrypt(grpc::ServerContext* ctx,
                                   grpc::ServerReaderWriter<v1::EncryptResponse, v1::EncryptRequest>* stream) {
  StreamedRequest request(ctx, stream, gate_.EnterStream(*ctx), options_.max_message_bytes, /*encoded=*/false);
  const v1::EncryptOptions& options = request.options();
  ResponseSink out(stream);
  // `audit`: set when the message is signed first, a private-key operation.
  auto encrypt = [&](const Call& call, AuditRecord* audit) -> absl::Status {
    RETURN_IF_ERROR(request.read_status());
    ASSIGN_OR_RETURN(std::vector<CertPtr> recipients, ParseCertList(options.recipients(), "recipient certificate"));
    for (const std::string& email : options.recipient_emails()) {
      ASSIGN_OR_RETURN(CertPtr cert, contacts_.CertificateFor(email, absl::Now()));
      recipients.push_back(std::move(cert));
    }
    EncryptOptions eopts = FromProto(options);
    if (audit == nullptr) {
      RETURN_IF_ERROR(engine_.Encrypt(request.message(), out, recipients, eopts));
    } else {  // sign first, then encrypt the signed message
      ASSIGN_OR_RETURN(auto key, gate_.ResolveForSigning(options.sign_with()));
      audit->set_key(key->uri());
      RETURN_IF_ERROR(engine_.SignAndEncrypt(key, request.message(), out, {options.sign_opaque(), false},
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
  StreamedRequest request(ctx, stream, gate_.EnterStream(*ctx), options_.max_message_bytes, /*encoded=*/true);
  const v1::DecryptOptions& options = request.options();
  std::optional<VerifyOptions> verify;
  absl::StatusOr<DecryptVerifyResult> result = absl::UnknownError("not run");
  absl::Time deadline;
  std::string described = options.has_key() ? SelectorForAudit(options.key()) : "-";
  grpc::Status status = gate_.Audited(*ctx, "smime_decrypt", described,
                                      [&](const Call& call, AuditRecord& audit) -> absl::Status {
    RETURN_IF_ERROR(request.read_status());
    audit.set_mechanism("cms");
    if (options.has_verify()) {
      ASSIGN_OR_RETURN(verify, FromProto(options.verify()));
    }
    std::shared_ptr<const tokens::Key> only;
    if (options.has_key()) {
      ASSIGN_OR_RETURN(only, gate_.Resolve(options.key()));
    }
    deadline = call.deadline;
    result = engine_.DecryptAndVerify(request.message(), call.deadline, only, verify);
    if (result.ok()) audit.set_key(result->decrypted.key_uri);
    return result.status();
  });
  if (!status.ok()) return status;
  // The audit line is the decryption's; the signed message inside must
  // still verify before anything goes out.
  RETURN_GRPC_IF_ERROR(result->verify_status);
  v1::DecryptResponse head;
  head.mutable_result()->set_key_uri(result->decrypted.key_uri);
  head.mutable_result()->set_is_signed(result->decrypted.is_signed);
  if (result->verified) {
    ToProto(*result->verified, head.mutable_result()->mutable_verified());
    contacts_.LearnFrom(*result->verified, *verify, deadline);
  }
  return ToGrpcStatus(SendResult(stream, head, result->decrypted.content));
}

}  // namespace smime::agent
