// The embedded default: a SoftHSM token store under the user's data
// directory, for trying the agent out and for tests. Its keys are protected
// by file permissions only (the store and its PIN file are 0700/0600).
#ifndef SMIME_AGENT_DAEMON_EMBEDDED_STORE_H_
#define SMIME_AGENT_DAEMON_EMBEDDED_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tokens/module.h"
#include "tokens/pin.h"

namespace smime::agent {

inline constexpr const char* kEmbeddedTokenLabel = "smime-agent";

struct EmbeddedStore {
  std::shared_ptr<tokens::Module> module;
  std::string token_label;
  tokens::SecretBuffer pin;
};

// Opens (creating on first use) the store in `data_dir`: the directory
// (0700), a softhsm2.conf, the token, and random user/SO PINs in 0600 files.
// Points SOFTHSM2_CONF at the store's config before loading `softhsm_module`.
absl::StatusOr<EmbeddedStore> OpenEmbeddedStore(const std::string& data_dir,
                                                const std::string& softhsm_module);

}  // namespace smime::agent

#endif  // SMIME_AGENT_DAEMON_EMBEDDED_STORE_H_
