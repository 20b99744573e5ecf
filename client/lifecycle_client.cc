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
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::CreateCsrRequest req;
  *req.mutable_key() = key;
  req.set_subject(std::string(subject));
  for (const std::string& e : emails) req.add_emails(e);
  v1::CreateCsrResponse resp;
  if (absl::Status st = conn_.Convert(stub_->CreateCsr(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::ImportCertificatesResponse> LifecycleClient::ImportCertificates(absl::string_view certificates) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::ImportCertificatesRequest req;
  req.set_certificates(std::string(certificates));
  v1::ImportCertificatesResponse resp;
  if (absl::Status st = conn_.Convert(stub_->ImportCertificates(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::ImportPkcs12Response> LifecycleClient::ImportPkcs12(absl::string_view pkcs12,
                                                                        absl::string_view password) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::ImportPkcs12Request req;
  req.set_pkcs12(std::string(pkcs12));
  req.set_password(std::string(password));
  v1::ImportPkcs12Response resp;
  absl::Status st = conn_.Convert(stub_->ImportPkcs12(&ctx, req, &resp));
  // The request's copy of the password: wiped before it is freed.
  OPENSSL_cleanse(req.mutable_password()->data(), req.password().size());
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::RetireKeyResponse> LifecycleClient::RetireKey(const v1::KeySelector& key, bool reinstate) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::RetireKeyRequest req;
  *req.mutable_key() = key;
  req.set_reinstate(reinstate);
  v1::RetireKeyResponse resp;
  if (absl::Status st = conn_.Convert(stub_->RetireKey(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::DeleteKeyResponse> LifecycleClient::DeleteKey(const v1::KeySelector& key, bool confirm) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::DeleteKeyRequest req;
  *req.mutable_key() = key;
  req.set_confirm(confirm);
  v1::DeleteKeyResponse resp;
  if (absl::Status st = conn_.Convert(stub_->DeleteKey(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::ListContactsResponse> LifecycleClient::ListContacts() {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::ListContactsResponse resp;
  if (absl::Status st = conn_.Convert(stub_->ListContacts(&ctx, v1::ListContactsRequest(), &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::DescribePublicationResponse> LifecycleClient::DescribePublication(
    const v1::DescribePublicationRequest& req) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::DescribePublicationResponse resp;
  if (absl::Status st = conn_.Convert(stub_->DescribePublication(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

}  // namespace smime::client
