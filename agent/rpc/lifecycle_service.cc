#include "agent/rpc/lifecycle_service.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/engine/cert_policy.h"
#include "agent/rpc/convert.h"
#include "agent/engine/csr.h"
#include "agent/rpc/grpc_status.h"
#include "agent/engine/key_resolver.h"
#include "agent/engine/publish.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"

namespace smime::agent {
namespace {

std::string Sha256Hex(absl::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return tokens::HexEncode(absl::string_view(reinterpret_cast<char*>(md), sizeof(md)));
}

v1::CertificateRole ToProto(ImportedCertificate::Role role) {
  switch (role) {
    case ImportedCertificate::Role::kKey: return v1::CERTIFICATE_ROLE_KEY;
    case ImportedCertificate::Role::kChain: return v1::CERTIFICATE_ROLE_CHAIN;
    case ImportedCertificate::Role::kCorrespondent: return v1::CERTIFICATE_ROLE_CORRESPONDENT;
  }
  return v1::CERTIFICATE_ROLE_UNSPECIFIED;
}

void ToProto(const ImportedCertificate& c, const std::string& token_label, v1::ImportedCertificate* out) {
  tokens::CertificateSummary s = tokens::Summarize(c.cert.get());
  out->set_role(ToProto(c.role));
  out->set_created(c.created);
  out->set_subject(s.subject);
  for (const std::string& e : s.emails) out->add_emails(e);
  out->mutable_not_before()->set_seconds(s.not_before);
  out->mutable_not_after()->set_seconds(s.not_after);
  out->set_id(c.id);
  out->set_label(c.label);
  if (c.key) agent::ToProto(*c.key, token_label, out->mutable_key());
  for (const std::string& w : c.warnings) out->add_warnings(w);
  out->set_sha256_fingerprint(Sha256Hex(tokens::CertificateDer(c.cert.get())));
  MakeUtf8Valid(out);
}

void ToProto(const DnsRecord& r, v1::DnsRecord* out) {
  if (r.name.empty()) return;
  out->set_name(r.name);
  out->set_type(r.type);
  out->set_rdata(r.rdata);
  out->set_zone_line(r.zone_line());
}

}  // namespace

LifecycleService::LifecycleService(tokens::Token* token, CertificateImporter* importer, const PeerRegistry* peers,
                                   const AuditLog* audit, absl::Duration default_deadline)
    : token_(token), importer_(importer), gate_(token, peers, audit, default_deadline, "lc") {}

grpc::Status LifecycleService::CreateCsr(grpc::ServerContext* ctx, const v1::CreateCsrRequest* req,
                                         v1::CreateCsrResponse* resp) {
  return gate_.Audited(*ctx, "csr", SelectorForAudit(req->key()),
                       [&](const Call& call, AuditRecord& audit) -> absl::Status {
    ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
    audit.set_key(key->uri());
    audit.set_mechanism(key->algorithm() == tokens::KeyAlgorithm::kEc ? "ecdsa-sha256" : "rsa-pkcs1-sha256");
    CsrSpec spec{req->subject(), {req->emails().begin(), req->emails().end()}};
    ASSIGN_OR_RETURN(*resp->mutable_csr_der(), MakeCsr(token_, key, spec, call.deadline));
    agent::ToProto(*key, token_->label(), resp->mutable_key());
    return absl::OkStatus();
  });
}

grpc::Status LifecycleService::ImportCertificates(grpc::ServerContext* ctx,
                                                  const v1::ImportCertificatesRequest* req,
                                                  v1::ImportCertificatesResponse* resp) {
  // Not a private-key operation, but it changes what the token signs with
  // and which chain it sends: audited all the same.
  return gate_.Audited(*ctx, "import_certificates", "-", [&](const Call& call, AuditRecord& audit) -> absl::Status {
    audit.set_mechanism("x509");
    ASSIGN_OR_RETURN(std::vector<ImportedCertificate> imported,
                     importer_->Import(req->certificates(), absl::Now(), call.deadline));
    for (const ImportedCertificate& c : imported) {
      ToProto(c, token_->label(), resp->add_certificates());
      if (c.key) audit.set_key(c.key->uri());
    }
    return absl::OkStatus();
  });
}

grpc::Status LifecycleService::ImportPkcs12(grpc::ServerContext* ctx, const v1::ImportPkcs12Request* req,
                                            v1::ImportPkcs12Response* resp) {
  // Private key bytes pass through here on their way to the token.
  return gate_.Audited(*ctx, "import_p12", "-", [&](const Call& call, AuditRecord& audit) -> absl::Status {
    audit.set_mechanism("pkcs12");
    tokens::SecretBuffer password(req->password().data(), req->password().size());
    // The request's copy is wiped at once (gRPC owns the message, which is
    // not const; only our pointer to it is). SecretBuffer wipes its own.
    std::string* sent = const_cast<v1::ImportPkcs12Request*>(req)->mutable_password();
    OPENSSL_cleanse(sent->data(), sent->size());
    sent->clear();
    ASSIGN_OR_RETURN(ImportedPkcs12 imported,
                     importer_->ImportPkcs12(req->pkcs12(), password, absl::Now(), call.deadline));
    password.Wipe();
    audit.set_key(imported.key->uri());
    agent::ToProto(*imported.key, token_->label(), resp->mutable_key());
    for (const ImportedCertificate& c : imported.certificates) {
      ToProto(c, token_->label(), resp->add_certificates());
    }
    return absl::OkStatus();
  });
}

grpc::Status LifecycleService::RetireKey(grpc::ServerContext* ctx, const v1::RetireKeyRequest* req,
                                         v1::RetireKeyResponse* resp) {
  const char* operation = req->reinstate() ? "reinstate" : "retire";
  return gate_.Audited(*ctx, operation, SelectorForAudit(req->key()),
                       [&](const Call& call, AuditRecord& audit) -> absl::Status {
    audit.set_mechanism("cka-end-date");
    ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
    audit.set_key(key->uri());
    absl::Time now = absl::Now();
    if (req->reinstate()) {
      if (key->end_date().empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat(tokens::Describe(*key), " is not retired"));
      }
      RETURN_IF_ERROR(token_->ReinstateKey(*key, call.deadline));
    } else {
      RETURN_IF_ERROR(token_->RetireKey(*key, now, call.deadline));
    }
    auto keys = token_->Keys();
    for (const auto& k : *keys) {
      if (k->id() != key->id() || k->label() != key->label()) continue;
      agent::ToProto(*k, token_->label(), resp->mutable_key());
      resp->mutable_key()->set_status(KeyStatusName(StatusOf(*k, *keys, now)));
    }
    return absl::OkStatus();
  });
}

grpc::Status LifecycleService::DeleteKey(grpc::ServerContext* ctx, const v1::DeleteKeyRequest* req,
                                         v1::DeleteKeyResponse* resp) {
  return gate_.Audited(*ctx, "delete_key", SelectorForAudit(req->key()),
                       [&](const Call& call, AuditRecord& audit) -> absl::Status {
    audit.set_mechanism("destroy");
    ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
    audit.set_key(key->uri());
    if (!req->confirm()) {
      return absl::InvalidArgumentError(absl::StrCat("deleting ", tokens::Describe(*key),
                                                     " cannot be undone and mail encrypted to it will no longer "
                                                     "open; confirm with --yes (or retire it instead)"));
    }
    agent::ToProto(*key, token_->label(), resp->mutable_key());
    ASSIGN_OR_RETURN(size_t n, token_->DeleteKey(*key, call.deadline));
    resp->set_objects_destroyed(static_cast<uint32_t>(n));
    return absl::OkStatus();
  });
}

grpc::Status LifecycleService::ListContacts(grpc::ServerContext* ctx, const v1::ListContactsRequest*,
                                            v1::ListContactsResponse* resp) {
  return gate_.Serve(*ctx, [&](const Call&) -> absl::Status {
    for (const auto& cert : token_->OtherCertificates()) {
      tokens::CertificateSummary s = tokens::Summarize(cert.get());
      if (s.is_ca) continue;
      v1::Contact* c = resp->add_contacts();
      for (const std::string& e : s.emails) c->add_emails(e);
      c->set_subject(s.subject);
      c->set_issuer(s.issuer);
      c->mutable_not_before()->set_seconds(s.not_before);
      c->mutable_not_after()->set_seconds(s.not_after);
      c->set_sha256_fingerprint(Sha256Hex(tokens::CertificateDer(cert.get())));
    }
    MakeUtf8Valid(resp);
    return absl::OkStatus();
  });
}

grpc::Status LifecycleService::DescribePublication(grpc::ServerContext* ctx,
                                                   const v1::DescribePublicationRequest* req,
                                                   v1::DescribePublicationResponse* resp) {
  return gate_.Serve(*ctx, [&](const Call&) -> absl::Status {
    std::shared_ptr<X509> cert;
    if (req->has_key()) {
      ASSIGN_OR_RETURN(auto key, gate_.Resolve(req->key()));
      if (key->certificate() == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat(tokens::Describe(*key), " has no certificate on the token; import one first"));
      }
      cert = key->certificates().front();
    } else if (req->source_case() == v1::DescribePublicationRequest::kCertificate) {
      ASSIGN_OR_RETURN(std::vector<std::shared_ptr<X509>> certs, ParseCertificateFile(req->certificate()));
      // A bundle: the person's certificate, not its chain.
      cert = certs.front();
      for (const auto& c : certs) {
        if (!tokens::Summarize(c.get()).is_ca) {
          cert = c;
          break;
        }
      }
    } else {
      return absl::InvalidArgumentError("give the certificate or the key whose certificate to publish");
    }
    ASSIGN_OR_RETURN(PublicationSet set,
                     agent::DescribePublication(cert.get(), {req->url_base(), req->full()}, absl::Now()));
    for (const Publication& p : set.publications) {
      v1::Publication* out = resp->add_publications();
      out->set_email(p.email);
      out->set_well_known_file(p.well_known_file);
      out->set_url(p.url);
      ToProto(p.txt, out->mutable_txt());
      ToProto(p.smimea, out->mutable_smimea());
      out->set_smimea_usage(static_cast<uint32_t>(p.smimea_usage));
      out->set_smimea_selector(static_cast<uint32_t>(p.smimea_selector));
      out->set_smimea_matching_type(static_cast<uint32_t>(p.smimea_matching_type));
      out->set_smimea_data(p.smimea_data);
    }
    resp->set_certificate_pem(set.certificate_pem);
    resp->set_subject(set.subject);
    for (const std::string& w : set.warnings) resp->add_warnings(w);
    MakeUtf8Valid(resp);
    return absl::OkStatus();
  });
}

}  // namespace smime::agent
