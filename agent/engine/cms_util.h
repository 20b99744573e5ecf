// What the engine's sign, verify, encrypt and decrypt code shares (the
// smime_*.cc files): memory BIOs,
// the CMS parser of incoming messages and the S/MIME writers of outgoing
// ones. Internal to agent/engine; the engine's public header is
// smime_engine.h.
#ifndef SMIME_AGENT_ENGINE_CMS_UTIL_H_
#define SMIME_AGENT_ENGINE_CMS_UTIL_H_

#include <openssl/pem.h>  // before cms.h, which declares PEM_read_bio_CMS with its macros
#include <openssl/cms.h>
#include <openssl/x509.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/engine/byte_stream.h"
#include "tokens/ossl_types.h"

namespace smime::agent {

SslPtr<BIO> MemBio(absl::string_view data);
// All of a memory BIO's bytes.
std::string BioContents(BIO* bio);

// Outgoing mail: the certificate policy (agent/cert_policy.h) for the
// signer or a recipient, validity included.
absl::Status CheckValidNow(X509* cert, absl::string_view role);

// The error to report when an OpenSSL call that used a token key failed:
// the token's own error if there was one, else OpenSSL's queue.
absl::Status KeyOpError(absl::StatusCode code, absl::string_view what);

// An incoming S/MIME message as OpenSSL parsed it.
struct ParsedCms {
  SslPtr<CMS_ContentInfo> cms;
  SslPtr<BIO> content;  // detached content from multipart/signed, if any
  std::string outer_headers;
};

// Parses S/MIME, DER or PEM CMS as it is read from `input`. OpenSSL holds
// the whole structure (and multipart/signed content) in memory; the input
// itself is never collected.
absl::StatusOr<ParsedCms> ParseCms(ByteSource& input);

// All of `source`, or its failure.
absl::StatusOr<std::string> ReadAll(ByteSource& source);

// Writes `cms` as S/MIME to `out` with OpenSSL's streaming encoder, which
// reads the content from `content` as it goes. `what` names the operation
// in errors.
absl::Status WriteSmimeStreaming(CMS_ContentInfo* cms, ByteSource& content, ByteSink& out, unsigned int flags,
                                 absl::string_view what);

// Finishes `cms` over all of `content` at once, then writes it as S/MIME
// to `out`; for what OpenSSL cannot stream.
absl::Status WriteSmimeWhole(CMS_ContentInfo* cms, absl::string_view content, ByteSink& out, unsigned int flags,
                             absl::string_view what);

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_CMS_UTIL_H_
