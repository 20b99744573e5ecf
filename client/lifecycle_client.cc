#include "client/lifecycle_client.h"

#include <openssl/crypto.h>

#include "common/status_macros.h"

namespace smime::client {

absl::StatusOr<std::unique_ptr<LifecycleClient>> LifecycleClient::Connect(const std::string& socket_path,
                                                                          absl::Duration timeout) {
  ASSIGN_OR_RETURN(AgentChannel conn, AgentChannel::Open(socket_path, timeout));
  return std::unique_ptr<LifecycleClient>(new LifecycleClient(std::move(conn)));
}

LifecycleClient::LifecycleClient(AgentChannel conn)
    : conn_(std::move(conn)), stub_(v1::Lifecycle::NewStub(conn_.channel())) {}

absl::StatusOr<v1::CreateCsrResponse> LifecycleClient::CreateCsr(const v1::KeySelector& key,
                                                                 absl::string_view subject,
                                                                 const std::vector<std::string>& emails) {
  v1::CreateCsrRequest req;
  *req.mutable_key() = key;
  req.set_subject(std::string(subject));
  for (const std::string& e : emails) req.add_emails(e);
  return conn_.Unary(*stub_, &v1::Lifecycle::Stub::CreateCsr, req);
}

absl::StatusOr<v1::ImportCertificatesResponse> LifecycleClient::ImportCertificates(absl::string_view certificates) {
  v1::ImportCertificatesRequest req;
  req.set_certificates(std::string(certificates));
  return conn_.Unary(*stub_, &v1::Lifecycle::Stub::ImportCertificates, req);
}

absl::StatusOr<v1::ImportPkcs12Response> LifecycleClient::ImportPkcs12(absl::string_view pkcs12,
                                                                        absl::string_view password) {
  v1::ImportPkcs12Request req;
  req.set_pkcs12(std::string(pkcs12));
  req.set_password(std::string(password));
  auto resp = conn_.Unary(*stub_, &v1::Lifecycle::Stub::ImportPkcs12, req);
  // The request's copy of the password: wiped before it is freed.
  OPENSSL_cleanse(req.mutable_password()->data(), req.password().size());
  return resp;
}

absl::StatusOr<v1::RetireKeyResponse> LifecycleClient::RetireKey(const v1::KeySelector& key, bool reinstate) {
  v1::RetireKeyRequest req;
  *req.mutable_key() = key;
  req.set_reinstate(reinstate);
  return conn_.Unary(*stub_, &v1::Lifecycle::Stub::RetireKey, req);
}

absl::StatusOr<v1::DeleteKeyResponse> LifecycleClient::DeleteKey(const v1::KeySelector& key, bool confirm) {
  v1::DeleteKeyRequest req;
  *req.mutable_key() = key;
  req.set_confirm(confirm);
  return conn_.Unary(*stub_, &v1::Lifecycle::Stub::DeleteKey, req);
}

absl::StatusOr<v1::ListContactsResponse> LifecycleClient::ListContacts() {
  return conn_.Unary(*stub_, &v1::Lifecycle::Stub::ListContacts, v1::ListContactsRequest());
}

absl::StatusOr<v1::DescribePublicationResponse> LifecycleClient::DescribePublication(
    const v1::DescribePublicationRequest& req) {
  return conn_.Unary(*stub_, &v1::Lifecycle::Stub::DescribePublication, req);
}

}  // namespace smime::client
