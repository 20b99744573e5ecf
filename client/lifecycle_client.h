// Typed calls of the Lifecycle service (proto/smime/agent/v1/lifecycle.proto):
// certification requests, certificate import, publication records. Like
// AgentClient, it moves bytes and holds no key material.
#ifndef SMIME_CLIENT_LIFECYCLE_CLIENT_H_
#define SMIME_CLIENT_LIFECYCLE_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/agent_channel.h"
#include "smime/agent/v1/lifecycle.grpc.pb.h"

namespace smime::client {

namespace v1 = ::smime::agent::v1;

class LifecycleClient {
 public:
  static constexpr absl::Duration kDefaultTimeout = absl::Seconds(30);

  // Opens a channel to the agent on `socket_path`, with the checks of
  // AgentChannel::Open. Every call gets `timeout`.
  static absl::StatusOr<std::unique_ptr<LifecycleClient>> Connect(const std::string& socket_path,
                                                                  absl::Duration timeout = kDefaultTimeout);

  // A PKCS#10 request (DER) signed by `key` on the token.
  absl::StatusOr<v1::CreateCsrResponse> CreateCsr(const v1::KeySelector& key, absl::string_view subject,
                                                  const std::vector<std::string>& emails);
  // Stores the certificates of a DER/PEM file on the token.
  absl::StatusOr<v1::ImportCertificatesResponse> ImportCertificates(absl::string_view certificates);
  // Writes a PKCS#12 file's key and certificates onto the token.
  absl::StatusOr<v1::ImportPkcs12Response> ImportPkcs12(absl::string_view pkcs12, absl::string_view password);
  // `reinstate` undoes an earlier retirement.
  absl::StatusOr<v1::RetireKeyResponse> RetireKey(const v1::KeySelector& key, bool reinstate = false);
  absl::StatusOr<v1::DeleteKeyResponse> DeleteKey(const v1::KeySelector& key, bool confirm);
  absl::StatusOr<v1::ListContactsResponse> ListContacts();
  absl::StatusOr<v1::DescribePublicationResponse> DescribePublication(const v1::DescribePublicationRequest& req);

 private:
  explicit LifecycleClient(AgentChannel conn);

  AgentChannel conn_;
  std::unique_ptr<v1::Lifecycle::Stub> stub_;
};

}  // namespace smime::client

#endif  // SMIME_CLIENT_LIFECYCLE_CLIENT_H_
