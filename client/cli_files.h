// Files and text formats for smimectl's verbs (smimectl.cc and
// smimectl_lifecycle.cc): bounded reads, all-or-nothing writes, PEM and
// RFC 3339 output.
#ifndef SMIME_CLIENT_CLI_FILES_H_
#define SMIME_CLIENT_CLI_FILES_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace smime::client {

// Reads `path` whole. NOT_FOUND when it cannot be read; INVALID_ARGUMENT
// past `max_bytes`, with `what_limit` (may be empty) saying what that
// limit is.
absl::StatusOr<std::string> ReadFileLimited(const std::string& path, size_t max_bytes,
                                            absl::string_view what_limit = "");

// Writes `data` to `path` ("-" or empty: stdout) through a temporary file
// renamed into place, so a failed verb never leaves a partial file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& data, mode_t mode = 0644);

// `der` as PEM with the label `type` (e.g. "CERTIFICATE").
std::string Pem(absl::string_view type, absl::string_view der);

// "2026-12-01T03:48:30Z".
std::string Rfc3339(int64_t unix_seconds);

}  // namespace smime::client

#endif  // SMIME_CLIENT_CLI_FILES_H_
