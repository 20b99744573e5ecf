// Size limits the agent and its clients agree on, in one place so the agent's
// refusals and smimectl's own checks say the same thing.
#ifndef SMIME_COMMON_LIMITS_H_
#define SMIME_COMMON_LIMITS_H_

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"

namespace smime {

// Largest message content the agent signs or encrypts by default (the
// agent's --max-message-bytes).
inline constexpr size_t kDefaultMaxMessageBytes = size_t{64} << 20;

// Largest signed or encrypted input (Verify, Decrypt) for a content limit of
// `max_message_bytes`: base64 is 4/3 of its input and S/MIME writes 64 or 76
// characters and a line end per line (up to 4/3 * 66/64 = 1.375), text
// grows a little when canonicalised to CRLF, and headers, certificates and
// the CMS structure add some more. 3/2 plus 1 MiB covers all of that, so
// whatever the agent signed or encrypted it also reads back.
constexpr size_t MaxEncodedBytes(size_t max_message_bytes) {
  return max_message_bytes / 2 * 3 + (size_t{1} << 20);
}

// S/MIME data travels in gRPC messages of at most this many bytes of data,
// in both directions, so that one message never exceeds the agent's
// per-message limit (--max-request-bytes, at least kMinRequestBytes).
inline constexpr size_t kStreamChunkBytes = size_t{64} << 10;
inline constexpr size_t kMinRequestBytes = size_t{128} << 10;

// Largest certificate file (import-cert, publish) and PKCS#12 file
// (import-p12) accepted: smimectl refuses bigger files before sending them,
// the agent refuses bigger requests.
inline constexpr size_t kMaxCertificateFileBytes = size_t{1} << 20;
inline constexpr size_t kMaxPkcs12FileBytes = size_t{1} << 20;

// "64 MiB", "1.5 KiB", "100 bytes": a size as people read it in errors.
inline std::string HumanBytes(size_t n) {
  if (n >= (size_t{1} << 20) && n % (size_t{1} << 20) == 0) return absl::StrCat(n >> 20, " MiB");
  if (n >= (size_t{1} << 20)) return absl::StrCat(n / ((size_t{1} << 20) / 10) / 10.0, " MiB");
  if (n >= 1024 && n % 1024 == 0) return absl::StrCat(n >> 10, " KiB");
  return absl::StrCat(n, " bytes");
}

}  // namespace smime

#endif  // SMIME_COMMON_LIMITS_H_
