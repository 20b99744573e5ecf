// The little MIME handling S/MIME needs around OpenSSL's CMS code: split a
// message into the header fields that stay outside (From, To, Subject...)
// and the MIME entity that is signed or encrypted (Content-* fields and the
// body), with CRLF line ends. Multipart parsing and the S/MIME wrappers
// themselves are OpenSSL's (SMIME_read_CMS / SMIME_write_CMS).
#ifndef SMIME_AGENT_MIME_H_
#define SMIME_AGENT_MIME_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace smime::agent {

struct SplitMessage {
  // Header fields that are not Content-* (and not MIME-Version), each with
  // its continuation lines, CRLF-terminated. Empty for a bare MIME entity.
  std::string outer_headers;
  // The entity: Content-* fields, a blank line, the body; CRLF line ends.
  std::string entity;
};

// `message` is an RFC 5322 message or a bare MIME entity, with LF or CRLF
// line ends. A message without Content-Type gets "text/plain" (RFC 2045's
// default, made explicit so the signed part says what it is).
// INVALID_ARGUMENT when there is no header/body separator or a header line
// is malformed.
absl::StatusOr<SplitMessage> SplitForSmime(absl::string_view message);

// Converts lone LF and lone CR to CRLF.
std::string ToCrlf(absl::string_view text);

// The value of header field `name` (case-insensitive) in a header block,
// unfolded; empty if absent.
std::string HeaderValue(absl::string_view headers, absl::string_view name);

}  // namespace smime::agent

#endif  // SMIME_AGENT_MIME_H_
