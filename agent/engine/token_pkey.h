// Token keys as OpenSSL EVP_PKEYs, so OpenSSL's CMS code can sign and
// decrypt with them while the private key stays on the token.
//
// Why not pkcs11-provider here: the agent's tokens layer already owns the
// module (one C_Initialize per process), and with pkcs11-provider 1.0
// OpenSSL's CMS key agreement (ECDH) fails for token keys. Instead each key
// becomes a "foreign" legacy RSA or EC key whose private operations call
// tokens::Token: OpenSSL 3.0 routes foreign keys through its legacy code,
// which pads and checks PSS and OAEP itself (any hash, MGF1 hash and label)
// and asks us only for the raw primitive.
#ifndef SMIME_AGENT_ENGINE_TOKEN_PKEY_H_
#define SMIME_AGENT_ENGINE_TOKEN_PKEY_H_

#include <openssl/evp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokens/token.h"

namespace smime::agent {

// An EVP_PKEY with the public half of `key` whose private operations go to
// `token`. `token` must outlive it. Operations use the deadline set by the
// calling thread's DeadlineScope (30 s from now without one).
absl::StatusOr<std::shared_ptr<EVP_PKEY>> TokenPkey(tokens::Token* token,
                                                    std::shared_ptr<const tokens::Key> key);

// Sets the deadline for token operations made by OpenSSL on this thread.
class DeadlineScope {
 public:
  explicit DeadlineScope(absl::Time deadline);
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;
  ~DeadlineScope();

 private:
  absl::Time previous_;
};

// The last token error seen by a TokenPkey operation on this thread (OpenSSL
// reports only "failed"); cleared by TakeLastTokenError.
absl::Status TakeLastTokenError();

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_TOKEN_PKEY_H_
