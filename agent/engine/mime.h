// The little MIME handling S/MIME needs around OpenSSL's CMS code: split a
// message into the header fields that stay outside (From, To, Subject...)
// and the MIME entity that is signed or encrypted (Content-* fields and the
// body), with CRLF line ends. Multipart parsing and the S/MIME wrappers
// themselves are OpenSSL's (SMIME_read_CMS / SMIME_write_CMS).
#ifndef SMIME_AGENT_ENGINE_MIME_H_
#define SMIME_AGENT_ENGINE_MIME_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/engine/byte_stream.h"

namespace smime::agent {

// Converts lone LF and lone CR to CRLF in text that arrives in pieces: a CR
// ending one piece and an LF starting the next are one line end, not two.
class CrlfCanonicalizer {
 public:
  // Appends the canonical form of `in` to `out`.
  void Append(absl::string_view in, std::string* out);

 private:
  bool last_was_cr_ = false;
};

// Converts lone LF and lone CR to CRLF.
std::string ToCrlf(absl::string_view text);

// A header block split for S/MIME.
struct HeaderSplit {
  // Header fields that are not Content-* (and not MIME-Version), each with
  // its continuation lines, CRLF-terminated. Empty for a bare MIME entity.
  std::string outer_headers;
  // The Content-* fields, CRLF-terminated; "Content-Type: text/plain" when
  // the message has none (RFC 2045's default, made explicit so the signed
  // part says what it is).
  std::string content_fields;
};

// `header_block` is the header up to, not including, the blank line, with
// CRLF line ends. INVALID_ARGUMENT for a malformed header line.
absl::StatusOr<HeaderSplit> SplitHeaderBlock(absl::string_view header_block);

// The MIME entity to sign or encrypt, read from an RFC 5322 message or a
// bare MIME entity (LF or CRLF line ends) that arrives in pieces: line ends
// become CRLF as they pass, the header is split off first, and the entity
// (Content-* fields, a blank line, the body) is served as a ByteSource.
// Memory: the header plus one piece.
class EntitySource final : public ByteSource {
 public:
  static constexpr size_t kMaxHeaderBytes = size_t{1} << 20;

  explicit EntitySource(ByteSource* message) : message_(message) {}

  // Reads up to the blank line that ends the header. INVALID_ARGUMENT when
  // there is none (or none within kMaxHeaderBytes) or a header line is
  // malformed; the message's own failure if it ended early.
  absl::Status ReadHeader();
  // Valid after ReadHeader.
  const std::string& outer_headers() const { return outer_headers_; }

  bool Next(std::string* chunk) override;
  absl::Status status() const override { return message_->status(); }

 private:
  ByteSource* message_;
  CrlfCanonicalizer canonicalizer_;
  std::string outer_headers_;
  std::string pending_;  // entity bytes read with the header, served first
  std::string raw_;
};

// The value of header field `name` (case-insensitive) in a header block,
// unfolded; empty if absent.
std::string HeaderValue(absl::string_view headers, absl::string_view name);

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_MIME_H_
