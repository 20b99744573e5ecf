// The thin C++ client of smime-agent: a channel to the agent's socket and
// typed calls. Holds no key material and links nothing of PKCS#11.
#ifndef SMIME_CLIENT_CLIENT_H_
#define SMIME_CLIENT_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/agent_channel.h"
#include "smime/agent/v1/agent.grpc.pb.h"

namespace smime::client {

namespace v1 = ::smime::agent::v1;

// The socket smimectl and other clients use: `flag` if set, else
// $SMIME_AGENT_SOCK, else the agent's default path.
std::string ResolveSocketPath(const std::string& flag);

// A selector from what a person types: a pkcs11: URI, an email, a label or
// a hex CKA_ID (the agent decides which).
v1::KeySelector TextSelector(absl::string_view text);

class AgentClient {
 public:
  // Every call gets this deadline unless changed.
  static constexpr absl::Duration kDefaultTimeout = absl::Seconds(30);

  // Opens a channel to the agent on `socket_path`. Fails fast, before
  // anything is sent, when no socket is there (UNAVAILABLE, with what to
  // do) or when it is not safe to use (AgentChannel::Open).
  static absl::StatusOr<std::unique_ptr<AgentClient>> Connect(const std::string& socket_path,
                                                              absl::Duration timeout = kDefaultTimeout);

  // Waits until the agent's health service reports SERVING.
  absl::Status WaitReady(absl::Duration timeout);

  absl::StatusOr<std::vector<v1::KeyInfo>> ListKeys();
  absl::StatusOr<v1::GetCertificateResponse> GetCertificate(const v1::KeySelector& key);
  absl::StatusOr<v1::GetPublicKeyResponse> GetPublicKey(const v1::KeySelector& key);
  absl::StatusOr<std::string> SignDigest(const v1::KeySelector& key,
                                         v1::SignatureAlgorithm algorithm,
                                         absl::string_view digest);
  absl::StatusOr<std::string> DecryptKey(const v1::KeySelector& key, v1::DecryptPadding padding,
                                         absl::string_view ciphertext);
  absl::StatusOr<v1::KeyInfo> GenerateKey(v1::KeyType type, absl::string_view label);

  // S/MIME. Messages go in kStreamChunkBytes chunks over a streaming call,
  // sent while the response is read.
  absl::StatusOr<std::string> SignMessage(const v1::SignOptions& options, absl::string_view message);
  struct Verified {
    v1::VerifyResult result;
    std::string content;
  };
  // `detached_content` is the signed data when `message` is a bare
  // detached signature; empty otherwise.
  absl::StatusOr<Verified> VerifyMessage(const v1::VerifyOptions& options, absl::string_view message,
                                         absl::string_view detached_content = "");
  absl::StatusOr<std::string> EncryptMessage(const v1::EncryptOptions& options, absl::string_view message);
  struct Decrypted {
    v1::DecryptResult result;
    std::string content;
  };
  absl::StatusOr<Decrypted> DecryptMessage(absl::string_view message,
                                           const v1::DecryptOptions& options = {});

  const std::string& socket_path() const { return conn_.socket_path(); }

 private:
  explicit AgentClient(AgentChannel conn);

  AgentChannel conn_;
  std::unique_ptr<v1::Agent::Stub> stub_;
};

}  // namespace smime::client

#endif  // SMIME_CLIENT_CLIENT_H_
