#include "client/lifecycle_client.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/paths.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace smime::client {

absl::StatusOr<std::unique_ptr<LifecycleClient>> LifecycleClient::Connect(const std::string& socket_path,
                                                                          absl::Duration timeout) {
  struct stat st;
  if (::stat(socket_path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(absl::StrCat("no agent socket at ", socket_path,
                                               "; start smime-agent or pass --socket / set ", kSocketEnv));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("unix:", socket_path), grpc::InsecureChannelCredentials(),
                                           args);
  return std::unique_ptr<LifecycleClient>(new LifecycleClient(socket_path, std::move(channel), timeout));
}

LifecycleClient::LifecycleClient(std::string socket_path, std::shared_ptr<grpc::Channel> channel,
                                 absl::Duration timeout)
    : socket_path_(std::move(socket_path)), channel_(std::move(channel)),
      stub_(v1::Lifecycle::NewStub(channel_)), timeout_(timeout) {}

void LifecycleClient::Prepare(grpc::ClientContext* ctx) const {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout_));
}

absl::Status LifecycleClient::Convert(const grpc::Status& status) const {
  if (status.ok()) return absl::OkStatus();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        absl::StrCat("the agent at ", socket_path_, " is not answering (", status.error_message(), ")"));
  }
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return absl::UnimplementedError(absl::StrCat("the agent at ", socket_path_,
                                                 " does not offer this (an older smime-agent?): ",
                                                 status.error_message()));
  }
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(status.error_code())), status.error_message());
}

absl::StatusOr<v1::CreateCsrResponse> LifecycleClient::CreateCsr(const v1::KeySelector& key,
                                                                 absl::string_view subject,
                                                                 const std::vector<std::string>& emails) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::CreateCsrRequest req;
  *req.mutable_key() = key;
  req.set_subject(std::string(subject));
  for (const std::string& e : emails) req.add_emails(e);
  v1::CreateCsrResponse resp;
  if (absl::Status st = Convert(stub_->CreateCsr(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::ImportCertificatesResponse> LifecycleClient::ImportCertificates(absl::string_view certificates) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::ImportCertificatesRequest req;
  req.set_certificates(std::string(certificates));
  v1::ImportCertificatesResponse resp;
  if (absl::Status st = Convert(stub_->ImportCertificates(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::ImportPkcs12Response> LifecycleClient::ImportPkcs12(absl::string_view pkcs12,
                                                                        absl::string_view password) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::ImportPkcs12Request req;
  req.set_pkcs12(std::string(pkcs12));
  req.set_password(std::string(password));
  v1::ImportPkcs12Response resp;
  absl::Status st = Convert(stub_->ImportPkcs12(&ctx, req, &resp));
  // The request's copy of the password: wiped before it is freed.
  OPENSSL_cleanse(req.mutable_password()->data(), req.password().size());
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::RetireKeyResponse> LifecycleClient::RetireKey(const v1::KeySelector& key, bool reinstate) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::RetireKeyRequest req;
  *req.mutable_key() = key;
  req.set_reinstate(reinstate);
  v1::RetireKeyResponse resp;
  if (absl::Status st = Convert(stub_->RetireKey(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::DeleteKeyResponse> LifecycleClient::DeleteKey(const v1::KeySelector& key, bool confirm) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::DeleteKeyRequest req;
  *req.mutable_key() = key;
  req.set_confirm(confirm);
  v1::DeleteKeyResponse resp;
  if (absl::Status st = Convert(stub_->DeleteKey(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::ListContactsResponse> LifecycleClient::ListContacts() {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::ListContactsResponse resp;
  if (absl::Status st = Convert(stub_->ListContacts(&ctx, v1::ListContactsRequest(), &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::DescribePublicationResponse> LifecycleClient::DescribePublication(
    const v1::DescribePublicationRequest& req) {
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::DescribePublicationResponse resp;
  if (absl::Status st = Convert(stub_->DescribePublication(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

}  // namespace smime::client
