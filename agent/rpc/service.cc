// The Agent service's constructor and its key handlers (list, certificate,
// public key, raw sign and decrypt, generate); the S/MIME stream handlers
// are in service_smime.cc.
#include "agent/rpc/service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/rpc/convert.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"

namespace smime::agent {

AgentService::AgentService(tokens::Token* token, CertificateImporter* importer, const PeerRegistry* peers,
                           const AuditLog* audit, ServiceOptions options)
    : token_(token), contacts_(token, importer), engine_(token), options_(options),
      gate_(token, peers, audit, options.default_deadline) {
  gate_.SetLimits(options.limits);
}

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
          tokens::Describe(*key), " has no certificate on the token"));
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
          "the token holds no public key or certificate for ", tokens::Describe(*key)));
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

}  // namespace smime::agent
