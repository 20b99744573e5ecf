#include "agent/engine/cms_util.h"

#include <openssl/err.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "agent/engine/cert_policy.h"
#include "agent/engine/mime.h"
#include "agent/engine/smime_engine.h"
#include "agent/engine/stream_bio.h"
#include "agent/engine/token_pkey.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"

namespace smime::agent {
namespace {

// Outer header fields (for the From check) are looked for this far.
constexpr size_t kOuterHeaderBytes = 64 * 1024;

// Passes output on until the input fails: from then on OpenSSL would go on
// to sign or encrypt a truncated message, and none of that may go out.
class GuardedSink final : public ByteSink {
 public:
  GuardedSink(ByteSink* out, const ByteSource* in) : out_(out), in_(in) {}
  bool Write(absl::string_view data) override {
    if (refused_ || !in_->status().ok()) return false;
    refused_ = !out_->Write(data);
    return !refused_;
  }
  bool refused() const { return refused_; }

 private:
  ByteSink* out_;
  const ByteSource* in_;
  bool refused_ = false;
};

// Makes every line end of the output CRLF, as mail transport expects:
// SMIME_write_CMS ends header lines with CRLF (CMS_CRLFEOL) but its base64
// BIO always ends lines with a bare LF, and has no flag for anything else.
// The content it copies into multipart/signed is already canonical, so
// only the base64 lines change.
class CrlfSink final : public ByteSink {
 public:
  explicit CrlfSink(ByteSink* out) : out_(out) {}
  bool Write(absl::string_view data) override {
    buffer_.clear();
    canonicalizer_.Append(data, &buffer_);
    return out_->Write(buffer_);
  }

 private:
  ByteSink* out_;
  CrlfCanonicalizer canonicalizer_;
  std::string buffer_;
};

}  // namespace

SslPtr<BIO> MemBio(absl::string_view data) {
  return SslPtr<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::Status CheckValidNow(X509* cert, absl::string_view role) {
  return CheckCertificatePolicy(cert, role == "signer" ? CertUse::kSign : CertUse::kEncrypt, absl::Now()).status();
}

absl::Status KeyOpError(absl::StatusCode code, absl::string_view what) {
  absl::Status token = TakeLastTokenError();
  if (!token.ok()) {
    ClearSslErrors();
    return token;
  }
  return SslError(code, what);
}

absl::StatusOr<ParsedCms> ParseCms(ByteSource& input) {
  ClearSslErrors();
  ParsedCms out;
  SourceBio source(&input, kOuterHeaderBytes);
  if (source.bio() == nullptr) return SslError(absl::StatusCode::kInternal, "cannot read the input");
  int first = source.PeekSkippingWhitespace();
  if (first < 0) {
    RETURN_IF_ERROR(source.status());
    return absl::InvalidArgumentError("the input is empty");
  }
  if (first == '-') {
    // "CMS" and "PKCS7" as OpenSSL writes them, and gpgsm's --armor labels.
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long len = 0;
    if (PEM_read_bio(source.bio(), &name, &header, &der, &len) == 1) {
      static constexpr absl::string_view kLabels[] = {"CMS", "PKCS7", "PKCS #7 SIGNED DATA",
                                                      "ENCRYPTED MESSAGE", "SIGNED MESSAGE"};
      bool known = false;
      for (absl::string_view l : kLabels) known = known || l == name;
      const unsigned char* p = der;
      if (known) out.cms.reset(d2i_CMS_ContentInfo(nullptr, &p, len));
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
  } else if (first == 0x30) {
    out.cms.reset(d2i_CMS_bio(source.bio(), nullptr));
  } else {
    BIO* content = nullptr;
    out.cms.reset(SMIME_read_CMS(source.bio(), &content));
    out.content.reset(content);
    std::string head = ToCrlf(source.head());
    size_t end = head.find("\r\n\r\n");
    if (end != std::string::npos) out.outer_headers = head.substr(0, end + 2);
  }
  if (!source.status().ok()) {  // too large, cancelled: not the message's fault
    ClearSslErrors();
    return source.status();
  }
  if (!out.cms) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "the input is not an S/MIME message, DER CMS or PEM CMS");
  }
  return out;
}

absl::StatusOr<std::string> ReadAll(ByteSource& source) {
  std::string out, chunk;
  while (source.Next(&chunk)) out += chunk;
  RETURN_IF_ERROR(source.status());
  return out;
}

absl::Status WriteSmimeStreaming(CMS_ContentInfo* cms, ByteSource& content, ByteSink& out, unsigned int flags,
                                 absl::string_view what) {
  CrlfSink crlf(&out);
  GuardedSink guarded(&crlf, &content);
  SourceBio in(&content);
  SslPtr<BIO> out_bio = NewSinkBio(&guarded);
  if (in.bio() == nullptr || !out_bio) return SslError(absl::StatusCode::kInternal, "cannot stream");
  int written = SMIME_write_CMS(out_bio.get(), cms, in.bio(), static_cast<int>(flags | CMS_STREAM | CMS_CRLFEOL));
  if (!content.status().ok()) {
    ClearSslErrors();
    TakeLastTokenError().IgnoreError();
    return content.status();
  }
  if (guarded.refused()) {
    ClearSslErrors();
    return absl::CancelledError("the output could not be delivered (the caller went away)");
  }
  // Streaming hides some failures from the return value (the opaque and
  // enveloped writers ignore the final flush that signs or pads): the
  // error queue and the token say what happened.
  if (written != 1 || ERR_peek_error() != 0) return KeyOpError(absl::StatusCode::kInternal, what);
  absl::Status token = TakeLastTokenError();
  if (!token.ok()) return token;
  return absl::OkStatus();
}

// Finishes `cms` over all of `content` at once, then writes it as S/MIME
// to `out`; for what OpenSSL cannot stream.
absl::Status WriteSmimeWhole(CMS_ContentInfo* cms, absl::string_view content, ByteSink& out, unsigned int flags,
                             absl::string_view what) {
  SslPtr<BIO> in = MemBio(content);
  if (!in || CMS_final(cms, in.get(), nullptr, flags) != 1) return KeyOpError(absl::StatusCode::kInternal, what);
  absl::Status token = TakeLastTokenError();
  if (!token.ok()) return token;
  CrlfSink crlf(&out);
  SslPtr<BIO> out_bio = NewSinkBio(&crlf);
  if (!out_bio || SMIME_write_CMS(out_bio.get(), cms, nullptr, static_cast<int>(flags | CMS_CRLFEOL)) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot write S/MIME");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CertPtr>> ParseCertificates(absl::string_view data) {
  return tokens::ParseCertificates(data, tokens::CertificateParsing::kLenient);
}

}  // namespace smime::agent
