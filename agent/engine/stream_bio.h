// OpenSSL BIOs over the engine's ByteSource and ByteSink, so OpenSSL's own
// streaming S/MIME code (SMIME_write_CMS with CMS_STREAM, SMIME_read_CMS,
// d2i_CMS_bio) reads the request and writes the response as it goes.
#ifndef SMIME_AGENT_ENGINE_STREAM_BIO_H_
#define SMIME_AGENT_ENGINE_STREAM_BIO_H_

#include <openssl/bio.h>

#include <string>

#include "absl/status/status.h"
#include "agent/engine/byte_stream.h"
#include "tokens/ossl.h"

namespace smime::agent {

// A read-only BIO (BIO_read and BIO_gets) over a ByteSource. A failed source
// reads as an error (-1), not as the end, so a parser stops; status() then
// says why.
class SourceBio {
 public:
  // Keeps a copy of the first `keep_head_bytes` bytes read (for header
  // fields the caller wants after OpenSSL consumed them).
  explicit SourceBio(ByteSource* source, size_t keep_head_bytes = 0);
  SourceBio(const SourceBio&) = delete;
  SourceBio& operator=(const SourceBio&) = delete;
  ~SourceBio();

  BIO* bio() const { return bio_; }
  // Skips ASCII whitespace; returns the next byte without taking it, or -1
  // at the end (or on failure).
  int PeekSkippingWhitespace();
  const std::string& head() const { return head_; }
  absl::Status status() const { return source_->status(); }

  // For the BIO method.
  int Read(char* out, int size);
  int Gets(char* out, int size);
  bool at_end() const { return end_; }

 private:
  // Makes sure unread bytes are in chunk_; false at the end or on failure.
  bool Fill();
  void Consumed(size_t n);

  ByteSource* source_;
  BIO* bio_;
  std::string chunk_;
  size_t pos_ = 0;
  bool end_ = false;
  size_t keep_head_bytes_;
  std::string head_;
};

// A write-only BIO handing everything written to `sink`; a refused write is
// an error (-1). BIO_flush succeeds and does nothing: the sink decides when
// to send.
SslPtr<BIO> NewSinkBio(ByteSink* sink);

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_STREAM_BIO_H_
