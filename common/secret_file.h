// Files that hold a secret (a token PIN, a PKCS#12 password): one set of
// rules for the agent and smimectl alike.
#ifndef SMIME_COMMON_SECRET_FILE_H_
#define SMIME_COMMON_SECRET_FILE_H_

#include <cstddef>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace smime {

// The largest secret file read, in bytes.
inline constexpr size_t kMaxSecretFileBytes = 4096;

// Reads the secret in `path`: a regular file (not a symlink) that neither
// group nor others can read or write (chmod 600), owned by this user or
// root, at most kMaxSecretFileBytes. One trailing newline (LF or CRLF) is
// dropped; an empty secret is refused. `take` receives the bytes, which are
// wiped from this function's buffer when it returns; the caller keeps them
// only in memory it wipes. `what` names the file in messages, e.g. "PIN
// file"; `holds` what it holds, e.g. "a PIN".
absl::Status ReadSecretFile(const std::string& path, absl::string_view what, absl::string_view holds,
                            absl::FunctionRef<void(const char* data, size_t size)> take);

// Overwrites `size` bytes at `data` in a way the compiler cannot drop.
void WipeBytes(void* data, size_t size);

}  // namespace smime

#endif  // SMIME_COMMON_SECRET_FILE_H_
