#include "agent/engine/smime_engine.h"

#include <openssl/pem.h>  // before cms.h, which declares PEM_read_bio_CMS with its macros
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/engine/cert_policy.h"
#include "agent/engine/mime.h"
#include "agent/engine/stream_bio.h"
#include "agent/engine/token_pkey.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/ossl.h"

namespace smime {
template <>
struct SslFree<CMS_ContentInfo> {
  void operator()(CMS_ContentInfo* p) const { CMS_ContentInfo_free(p); }
};
template <>
struct SslFree<X509_STORE> {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
template <>
struct SslFree<STACK_OF(X509)> {
  void operator()(STACK_OF(X509)* p) const { sk_X509_free(p); }  // borrowed entries
};
}  // namespace smime

namespace smime::agent {
namespace {

SslPtr<BIO> MemBio(absl::string_view data) {
  return SslPtr<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

// Outgoing mail: the certificate policy (agent/cert_policy.h) for the
// signer or a recipient, validity included.
absl::Status CheckValidNow(X509* cert, absl::string_view role) {
  return CheckCertificatePolicy(cert, role == "signer" ? CertUse::kSign : CertUse::kEncrypt, absl::Now()).status();
}

// The error to report when an OpenSSL call that used a token key failed:
// the token's own error if there was one, else OpenSSL's queue.
absl::Status KeyOpError(absl::StatusCode code, absl::string_view what) {
  absl::Status token = TakeLastTokenError();
  if (!token.ok()) {
    ClearSslErrors();
    return token;
  }
  return SslError(code, what);
}

struct ParsedCms {
  SslPtr<CMS_ContentInfo> cms;
  SslPtr<BIO> content;  // detached content from multipart/signed, if any
  std::string outer_headers;
};

// What signing may run ahead of encryption in SignAndEncrypt.
constexpr size_t kStreamPipeBytes = 256 * 1024;

// Outer header fields (for the From check) are looked for this far.
constexpr size_t kOuterHeaderBytes = 64 * 1024;

// Parses S/MIME, DER or PEM CMS as it is read from `input`. OpenSSL holds
// the whole structure (and multipart/signed content) in memory; the input
// itself is never collected.
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

// Writes `cms` as S/MIME to `out` with OpenSSL's streaming encoder, which
// reads the content from `content` as it goes. `what` names the operation
// in errors.
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

// The ciphers a correspondent may encrypt to us with, strongest first
// (RFC 8551 2.5.2). OpenSSL's default list also offers DES, 3DES and RC2
// down to 40 bits, which would invite weak replies; this one offers only
// what the agent itself encrypts with.
absl::Status AddSmimeCapabilities(CMS_SignerInfo* si) {
  STACK_OF(X509_ALGOR)* caps = sk_X509_ALGOR_new_null();
  bool ok = caps != nullptr;
  for (int nid : {NID_aes_256_gcm, NID_aes_256_cbc, NID_aes_128_gcm, NID_aes_128_cbc}) {
    ok = ok && PKCS7_simple_smimecap(caps, nid, -1) == 1;
  }
  ok = ok && CMS_add_smimecap(si, caps) == 1;
  sk_X509_ALGOR_pop_free(caps, X509_ALGOR_free);
  if (!ok) return SslError(absl::StatusCode::kInternal, "cannot add SMIMECapabilities");
  return absl::OkStatus();
}

// The issuing chain of `cert` among `pool` (nearest first), without `cert`.
std::vector<X509*> ChainFor(X509* cert, const std::vector<CertPtr>& pool) {
  std::vector<X509*> chain;
  X509* current = cert;
  for (int depth = 0; depth < 10; ++depth) {
    if (X509_check_issued(current, current) == X509_V_OK) break;  // self-signed
    X509* issuer = nullptr;
    for (const CertPtr& c : pool) {
      if (c.get() != current && X509_check_issued(c.get(), current) == X509_V_OK) {
        issuer = c.get();
        break;
      }
    }
    if (issuer == nullptr) break;
    chain.push_back(issuer);
    current = issuer;
  }
  ClearSslErrors();
  return chain;
}

std::string DescribeRecipientId(ASN1_OCTET_STRING* keyid, X509_NAME* issuer, ASN1_INTEGER* serial) {
  if (keyid != nullptr) {
    return absl::StrCat("subjectKeyIdentifier ",
                        tokens::HexEncode(absl::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(keyid)),
                                                            static_cast<size_t>(ASN1_STRING_length(keyid)))));
  }
  std::string out = "issuer \"";
  if (issuer != nullptr) {
    SslPtr<BIO> b(BIO_new(BIO_s_mem()));
    X509_NAME_print_ex(b.get(), issuer, 0, XN_FLAG_RFC2253);
    out += BioContents(b.get());
  }
  out += "\" serial ";
  if (serial != nullptr) {
    SslPtr<BIGNUM> bn(ASN1_INTEGER_to_BN(serial, nullptr));
    char* hex = bn ? BN_bn2hex(bn.get()) : nullptr;
    if (hex != nullptr) out += hex;
    OPENSSL_free(hex);
  }
  return out;
}

// The first certificate check that failed inside CMS_verify, caught by a
// verify callback: OpenSSL's error queue only keeps the reason's text, not
// which certificate it was about.
struct ChainFailure {
  int error = X509_V_OK;
  int depth = 0;
  std::string subject;
};
thread_local ChainFailure* chain_failure = nullptr;

int RecordChainFailure(int ok, X509_STORE_CTX* ctx) {
  if (ok == 0 && chain_failure != nullptr && chain_failure->error == X509_V_OK) {
    chain_failure->error = X509_STORE_CTX_get_error(ctx);
    chain_failure->depth = X509_STORE_CTX_get_error_depth(ctx);
    if (X509* cert = X509_STORE_CTX_get_current_cert(ctx)) chain_failure->subject = tokens::Summarize(cert).subject;
  }
  return ok;
}

// What to do about a chain error, where the user can do something.
absl::string_view ChainHint(int error) {
  switch (error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "; to check it as of when the message was signed, verify at the signing time (smimectl verify "
             "--at-signing-time)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      return "; give the CA that issued it as a trusted CA (smimectl verify --ca), and any intermediate CA "
             "certificates (--untrusted)";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return "; it is self-signed and not among the trusted CAs (smimectl verify --ca)";
    case X509_V_ERR_INVALID_PURPOSE:
      return "; the certificate is not for S/MIME signing (VerifyOptions.any_purpose accepts it anyway)";
    default:
      return "";
  }
}

// What CMS_verify left in the error queue, taken from it.
struct VerifyErrors {
  // The content's digest does not match (OpenSSL then also reports a
  // verification failure, for the messageDigest attribute).
  bool content = false;
  bool signature = false;       // the signature over the signed attributes does not match
  bool no_signer_cert = false;
  std::string detail;           // OpenSSL's errors, with their data
};

VerifyErrors TakeVerifyErrors() {
  VerifyErrors out;
  const char* data = nullptr;
  int data_flags = 0;
  while (unsigned long err = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &data_flags)) {
    if (ERR_GET_LIB(err) == ERR_LIB_CMS) {
      int reason = ERR_GET_REASON(err);
      out.content = out.content || reason == CMS_R_CONTENT_VERIFY_ERROR;
      out.signature = out.signature || reason == CMS_R_VERIFICATION_FAILURE;
      out.no_signer_cert = out.no_signer_cert || reason == CMS_R_SIGNER_CERTIFICATE_NOT_FOUND;
    }
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    bool has_data = (data_flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0';
    absl::StrAppend(&out.detail, out.detail.empty() ? "" : "; ", buf, has_data ? absl::StrCat(" (", data, ")") : "");
  }
  return out;
}

// Why CMS_verify failed, as a user can act on it: the certificate check's
// reason, or which part of the signature does not match. `how` says how
// detached content was digested, for a content mismatch.
absl::Status VerifyFailure(const ChainFailure& chain, const VerifyErrors& errors, absl::string_view how) {
  if (chain.error != X509_V_OK) {
    std::string whose = chain.depth == 0 ? "the signer's certificate"
                                         : absl::StrCat("CA certificate (depth ", chain.depth, ")");
    if (!chain.subject.empty()) absl::StrAppend(&whose, " \"", chain.subject, "\"");
    return absl::InvalidArgumentError(absl::StrCat("the signer's certificate chain does not verify: ",
                                                   X509_verify_cert_error_string(chain.error), ", at ", whose,
                                                   ChainHint(chain.error)));
  }
  if (errors.content) {
    return absl::InvalidArgumentError(
        absl::StrCat("the content does not match the signature", how, ": it was changed after signing"));
  }
  if (errors.signature) {
    return absl::InvalidArgumentError(
        "the signature does not match: the signed attributes were changed, or the signature was not made with "
        "the signer certificate's key");
  }
  if (errors.no_signer_cert) {
    return absl::InvalidArgumentError(
        "the signer's certificate is neither in the message nor among the given certificates (smimectl verify "
        "--untrusted FILE)");
  }
  return absl::InvalidArgumentError(absl::StrCat("signature verification failed: ", errors.detail));
}

bool IsSignedEntity(absl::string_view entity) {
  std::string type = absl::AsciiStrToLower(HeaderValue(entity, "Content-Type"));
  if (absl::StartsWith(type, "multipart/signed")) return true;
  bool pkcs7 = absl::StartsWith(type, "application/pkcs7-mime") || absl::StartsWith(type, "application/x-pkcs7-mime");
  return pkcs7 && absl::StrContains(type, "signed-data");
}

std::optional<absl::Time> SigningTime(CMS_SignerInfo* si) {
  int idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
  if (idx < 0) return std::nullopt;
  X509_ATTRIBUTE* attr = CMS_signed_get_attr(si, idx);
  ASN1_TYPE* value = X509_ATTRIBUTE_get0_type(attr, 0);
  if (value == nullptr || (value->type != V_ASN1_UTCTIME && value->type != V_ASN1_GENERALIZEDTIME)) {
    return std::nullopt;
  }
  struct tm tm = {};
  if (ASN1_TIME_to_tm(value->value.utctime, &tm) != 1) return std::nullopt;
  return absl::FromUnixSeconds(timegm(&tm));
}

// "Alice <alice@example.com>" -> "alice@example.com".
std::string AddrSpec(absl::string_view from) {
  size_t lt = from.rfind('<'), gt = from.rfind('>');
  if (lt != absl::string_view::npos && gt != absl::string_view::npos && gt > lt) from = from.substr(lt + 1, gt - lt - 1);
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(from));
}

}  // namespace

absl::StatusOr<std::vector<CertPtr>> ParseCertificates(absl::string_view data) {
  ClearSslErrors();
  std::vector<CertPtr> out;
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(data);
  if (!trimmed.empty() && static_cast<unsigned char>(trimmed[0]) == 0x30) {
    ASSIGN_OR_RETURN(CertPtr cert, tokens::ParseDerCertificate(trimmed));
    out.push_back(std::move(cert));
    return out;
  }
  auto bio = MemBio(trimmed);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.push_back(CertPtr(cert, X509_free));
  }
  unsigned long err = ERR_peek_last_error();
  if (!out.empty() && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) ClearSslErrors();
  if (out.empty()) return SslError(absl::StatusCode::kInvalidArgument, "no certificate found (expected DER or PEM)");
  ClearSslErrors();
  return out;
}

absl::Status SmimeEngine::Sign(std::shared_ptr<const tokens::Key> key, ByteSource& message, ByteSink& out,
                               const SignOptions& options, absl::Time deadline) const {
  X509* cert = key->certificate();
  if (cert == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key \"", key->label(), "\" has no certificate; S/MIME signing needs one (import it first)"));
  }
  RETURN_IF_ERROR(CheckValidNow(cert, "signer"));
  if (options.pss && key->algorithm() != tokens::KeyAlgorithm::kRsa) {
    return absl::InvalidArgumentError(absl::StrCat("RSA-PSS needs an RSA key; \"", key->label(), "\" is ",
                                                   key->short_name()));
  }
  EntitySource entity(&message);
  RETURN_IF_ERROR(entity.ReadHeader());
  ASSIGN_OR_RETURN(std::shared_ptr<EVP_PKEY> pkey, TokenPkey(token_, key));
  std::vector<CertPtr> pool = token_->OtherCertificates();
  SslPtr<STACK_OF(X509)> chain(sk_X509_new_null());
  for (X509* c : ChainFor(cert, pool)) sk_X509_push(chain.get(), c);

  ClearSslErrors();
  DeadlineScope scope(deadline);
  // CMS_BINARY: EntitySource already made the line ends CRLF, as S/MIME
  // signs text. CMS_STREAM: the content is digested (and for opaque
  // signatures encoded) while it is copied from input to output.
  const unsigned int flags = CMS_PARTIAL | CMS_BINARY | CMS_STREAM | (options.opaque ? 0 : CMS_DETACHED);
  SslPtr<CMS_ContentInfo> cms(CMS_sign_ex(nullptr, nullptr, chain.get(), nullptr, flags, nullptr, nullptr));
  if (!cms) return SslError(absl::StatusCode::kInternal, "cannot start SignedData");
  CMS_SignerInfo* si =
      CMS_add1_signer(cms.get(), cert, pkey.get(), EVP_sha256(),
                      flags | CMS_NOSMIMECAP | (options.pss ? CMS_KEY_PARAM : 0));
  if (si == nullptr) return KeyOpError(absl::StatusCode::kInternal, "cannot add signer");
  RETURN_IF_ERROR(AddSmimeCapabilities(si));
  if (options.pss) {
    EVP_PKEY_CTX* pctx = CMS_SignerInfo_get0_pkey_ctx(si);
    if (pctx == nullptr || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0) {
      return SslError(absl::StatusCode::kInternal, "cannot select RSA-PSS");
    }
  }
  if (!out.Write(entity.outer_headers())) return absl::CancelledError("the caller went away");
  if (options.opaque && options.pss) {
    // OpenSSL 3.0 cannot stream an opaque RSA-PSS SignedData: its encoder
    // fails with "illegal zero content" (`openssl cms -sign -stream
    // -nodetach -keyopt rsa_padding_mode:pss` too). This one combination
    // reads the message whole, within the message size limit.
    ASSIGN_OR_RETURN(const std::string content, ReadAll(entity));
    return WriteSmimeWhole(cms.get(), content, out, flags & ~CMS_STREAM, "signing failed");
  }
  return WriteSmimeStreaming(cms.get(), entity, out, flags, "signing failed");
}

absl::StatusOr<VerifyResult> SmimeEngine::Verify(ByteSource& input, ByteSource* detached_content,
                                                 const VerifyOptions& options) const {
  if (options.trust_anchors.empty() && !options.signature_only) {
    return absl::InvalidArgumentError("verification needs at least one trusted CA certificate");
  }
  ASSIGN_OR_RETURN(ParsedCms parsed, ParseCms(input));
  if (OBJ_obj2nid(CMS_get0_type(parsed.cms.get())) != NID_pkcs7_signed) {
    return absl::InvalidArgumentError("the input is not a signed message (not CMS SignedData)");
  }
  std::string detached;
  if (detached_content != nullptr) {
    ASSIGN_OR_RETURN(detached, ReadAll(*detached_content));
  }
  SslPtr<BIO> content;
  size_t content_size = 0;  // to size the output once
  ASN1_OCTET_STRING** econtent = CMS_get0_content(parsed.cms.get());
  if (!detached.empty()) {
    content = MemBio(detached);
    content_size = detached.size();
  } else if (parsed.content) {
    content_size = BIO_ctrl_pending(parsed.content.get());
    content = std::move(parsed.content);
  } else if (econtent == nullptr || *econtent == nullptr) {
    return absl::InvalidArgumentError("the signature is detached; give the signed content too");
  } else {
    content_size = static_cast<size_t>(ASN1_STRING_length(*econtent));
  }
  SslPtr<X509_STORE> store(X509_STORE_new());
  for (const CertPtr& c : options.trust_anchors) X509_STORE_add_cert(store.get(), c.get());
  X509_STORE_set_verify_cb(store.get(), RecordChainFailure);
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(parsed.cms.get());
  std::optional<absl::Time> at = options.at;
  if (options.at_signing_time) {
    if (sk_CMS_SignerInfo_num(infos) > 0) at = SigningTime(sk_CMS_SignerInfo_value(infos, 0));
    if (!at) return absl::InvalidArgumentError("the signature carries no signingTime attribute");
  }
  if (at) X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store.get()), absl::ToTimeT(*at));
  if (options.any_purpose) X509_STORE_set_purpose(store.get(), X509_PURPOSE_ANY);
  SslPtr<STACK_OF(X509)> extra(sk_X509_new_null());
  for (const CertPtr& c : options.extra_certs) sk_X509_push(extra.get(), c.get());
  StringSink verified;
  ChainFailure chain;
  auto run = [&](BIO* content_bio, unsigned int flags) {
    verified.str().clear();
    verified.str().reserve(content_size + content_size / 32);
    SslPtr<BIO> out = NewSinkBio(&verified);
    chain = ChainFailure();
    chain_failure = &chain;
    int ok = CMS_verify(parsed.cms.get(), extra.get(), store.get(), content_bio, out.get(), flags);
    chain_failure = nullptr;
    return ok == 1;
  };
  ClearSslErrors();
  // Flags as `openssl cms -verify` uses them, so content comes out byte for
  // byte as there.
  unsigned int flags = (options.signature_only ? CMS_NO_SIGNER_CERT_VERIFY : 0) | (options.binary ? CMS_BINARY : 0);
  if (!run(content.get(), flags)) {
    VerifyErrors errors = TakeVerifyErrors();
    // Text mode digests detached content with CRLF line ends, as S/MIME
    // signs text; gpgsm and `openssl cms -sign -binary` sign a file's bytes
    // as they are, LF and all. When the digest of separately given content
    // does not match, check it byte for byte too: either way the signature
    // covers exactly the bytes given. Only for a digest mismatch; a chain or
    // signature failure stays one.
    bool retry = errors.content && chain.error == X509_V_OK && !options.binary && !detached.empty();
    absl::string_view how = options.binary && !detached.empty() ? " (checked byte for byte, as asked)" : "";
    bool ok = false;
    if (retry) {
      content = MemBio(detached);
      ok = run(content.get(), flags | CMS_BINARY);
      if (!ok) {
        errors = TakeVerifyErrors();
        how = " (checked as text with CRLF line ends and byte for byte)";
      }
    }
    if (!ok) return VerifyFailure(chain, errors, how);
  }
  VerifyResult result;
  result.content = std::move(verified.str());
  STACK_OF(X509)* signers = CMS_get0_signers(parsed.cms.get());
  for (int i = 0; i < sk_X509_num(signers); ++i) {
    tokens::CertificateSummary s = tokens::Summarize(sk_X509_value(signers, i));
    SignerInfo info{s.subject, s.emails, std::nullopt, nullptr};
    X509* signer_cert = sk_X509_value(signers, i);
    X509_up_ref(signer_cert);
    info.cert = std::shared_ptr<X509>(signer_cert, X509_free);
    if (i < sk_CMS_SignerInfo_num(infos)) info.signing_time = SigningTime(sk_CMS_SignerInfo_value(infos, i));
    result.signers.push_back(std::move(info));
  }
  sk_X509_free(signers);
  std::string from = HeaderValue(parsed.outer_headers, "From");
  if (!from.empty()) {
    std::string addr = AddrSpec(from);
    bool found = false;
    for (const SignerInfo& s : result.signers) {
      for (const std::string& e : s.emails) found = found || e == addr;
    }
    if (!found) result.from_mismatch = addr;
  }
  return result;
}

absl::Status SmimeEngine::Encrypt(ByteSource& message, ByteSink& out, const std::vector<CertPtr>& recipients,
                                  const EncryptOptions& options) const {
  if (recipients.empty()) return absl::InvalidArgumentError("encryption needs at least one recipient certificate");
  for (const CertPtr& r : recipients) RETURN_IF_ERROR(CheckValidNow(r.get(), "recipient"));
  EntitySource entity(&message);
  RETURN_IF_ERROR(entity.ReadHeader());
  const EVP_CIPHER* cipher = options.cipher == Cipher::kAes128Cbc   ? EVP_aes_128_cbc()
                             : options.cipher == Cipher::kAes256Gcm ? EVP_aes_256_gcm()
                                                                    : EVP_aes_256_cbc();
  ClearSslErrors();
  // CMS_STREAM: the content is encrypted and encoded while it is copied
  // from input to output.
  const unsigned int flags = CMS_PARTIAL | CMS_BINARY | CMS_STREAM;
  SslPtr<CMS_ContentInfo> cms(CMS_encrypt_ex(nullptr, nullptr, cipher, flags, nullptr, nullptr));
  if (!cms) return SslError(absl::StatusCode::kInternal, "cannot start EnvelopedData");
  for (const CertPtr& r : recipients) {
    bool rsa = EVP_PKEY_get_base_id(X509_get0_pubkey(r.get())) == EVP_PKEY_RSA;
    bool oaep = options.oaep && rsa;
    CMS_RecipientInfo* ri = CMS_add1_recipient_cert(cms.get(), r.get(), flags | (oaep ? CMS_KEY_PARAM : 0));
    if (ri == nullptr) {
      return SslError(absl::StatusCode::kInvalidArgument,
                      absl::StrCat("cannot encrypt to \"", tokens::Summarize(r.get()).subject, "\""));
    }
    if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_AGREE) {
      // OpenSSL's default KDF for ECDH is dhSinglePass-stdDH-sha1kdf; S/MIME
      // 4.0 (RFC 8551 section 2.7.1.2, RFC 5753) wants SHA-256. The
      // ephemeral key's context exists from CMS_add1_recipient_cert on, and
      // OpenSSL's ECDH code reads the digest from it when it wraps the key
      // (crypto/cms/cms_ec.c), as `openssl cms -keyopt ecdh_kdf_md:sha256`.
      EVP_PKEY_CTX* pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
      if (pctx == nullptr || EVP_PKEY_CTX_set_ecdh_kdf_md(pctx, EVP_sha256()) <= 0) {
        return SslError(absl::StatusCode::kInternal, "cannot select the SHA-256 KDF for ECDH");
      }
    }
    if (oaep) {
      EVP_PKEY_CTX* pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
      if (pctx == nullptr || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
          EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
          EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0) {
        return SslError(absl::StatusCode::kInternal, "cannot select RSA-OAEP");
      }
    }
  }
  if (!out.Write(entity.outer_headers())) return absl::CancelledError("the caller went away");
  return WriteSmimeStreaming(cms.get(), entity, out, flags, "encryption failed");
}

absl::Status SmimeEngine::SignAndEncrypt(std::shared_ptr<const tokens::Key> key, ByteSource& message, ByteSink& out,
                                         const SignOptions& sign_options, std::vector<CertPtr> recipients,
                                         const EncryptOptions& encrypt_options, absl::Time deadline) const {
  X509* cert = key->certificate();
  if (cert == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key \"", key->label(), "\" has no certificate; S/MIME signing needs one (import it first)"));
  }
  // The sender reads what it sent: add its certificate unless it is among
  // the recipients already (one RecipientInfo per certificate).
  bool listed = std::any_of(recipients.begin(), recipients.end(),
                            [&](const CertPtr& r) { return X509_cmp(r.get(), cert) == 0; });
  if (!listed) recipients.push_back(CertPtr(X509_dup(cert), X509_free));
  for (const CertPtr& r : recipients) RETURN_IF_ERROR(CheckValidNow(r.get(), "recipient"));
  // OpenSSL's streaming writers each pull their input, so one thread cannot
  // drive both: signing runs on its own thread and writes into a bounded
  // pipe that encryption reads from.
  BlockingPipe signed_message(kStreamPipeBytes);
  absl::Status sign_status;
  std::thread signer([&] {
    sign_status = Sign(key, message, signed_message, sign_options, deadline);
    signed_message.CloseWrite(sign_status.ok() ? absl::OkStatus() : absl::AbortedError("signing failed"));
  });
  absl::Status encrypt_status = Encrypt(signed_message, out, recipients, encrypt_options);
  signed_message.CloseRead();  // a signer still writing stops
  signer.join();
  // Which failure came first: a failed signer ends the pipe with an error,
  // an encryption that stopped early fails the signer's writes.
  if (!signed_message.status().ok()) return sign_status;
  RETURN_IF_ERROR(encrypt_status);
  return sign_status;
}

absl::StatusOr<DecryptResult> SmimeEngine::Decrypt(ByteSource& input, absl::Time deadline,
                                                   std::shared_ptr<const tokens::Key> only_key) const {
  ASSIGN_OR_RETURN(ParsedCms parsed, ParseCms(input));
  int type = OBJ_obj2nid(CMS_get0_type(parsed.cms.get()));
  if (type != NID_pkcs7_enveloped && type != NID_id_smime_ct_authEnvelopedData) {
    return absl::InvalidArgumentError("the input is not an encrypted message (not CMS EnvelopedData)");
  }
  STACK_OF(CMS_RecipientInfo)* ris = CMS_get0_RecipientInfos(parsed.cms.get());
  // Find a token key whose certificate a RecipientInfo names.
  std::shared_ptr<const tokens::Key> chosen;
  std::vector<std::string> wanted;
  auto keys = token_->Keys();
  if (only_key) keys = std::make_shared<const tokens::KeyList>(tokens::KeyList{only_key});
  X509* chosen_cert = nullptr;
  auto pick = [&](const std::shared_ptr<const tokens::Key>& k, tokens::KeyAlgorithm alg, auto matches) {
    if (chosen || k->algorithm() != alg) return;
    for (const auto& c : k->certificates()) {
      if (matches(c.get())) {
        chosen = k;
        chosen_cert = c.get();
        return;
      }
    }
  };
  for (int i = 0; i < sk_CMS_RecipientInfo_num(ris); ++i) {
    CMS_RecipientInfo* ri = sk_CMS_RecipientInfo_value(ris, i);
    int ri_type = CMS_RecipientInfo_type(ri);
    if (ri_type == CMS_RECIPINFO_TRANS) {
      ASN1_OCTET_STRING* keyid = nullptr;
      X509_NAME* issuer = nullptr;
      ASN1_INTEGER* serial = nullptr;
      CMS_RecipientInfo_ktri_get0_signer_id(ri, &keyid, &issuer, &serial);
      wanted.push_back(DescribeRecipientId(keyid, issuer, serial));
      for (const auto& k : *keys) {
        pick(k, tokens::KeyAlgorithm::kRsa, [&](X509* c) { return CMS_RecipientInfo_ktri_cert_cmp(ri, c) == 0; });
      }
    } else if (ri_type == CMS_RECIPINFO_AGREE) {
      STACK_OF(CMS_RecipientEncryptedKey)* reks = CMS_RecipientInfo_kari_get0_reks(ri);
      for (int j = 0; j < sk_CMS_RecipientEncryptedKey_num(reks); ++j) {
        CMS_RecipientEncryptedKey* rek = sk_CMS_RecipientEncryptedKey_value(reks, j);
        ASN1_OCTET_STRING* keyid = nullptr;
        X509_NAME* issuer = nullptr;
        ASN1_INTEGER* serial = nullptr;
        CMS_RecipientEncryptedKey_get0_id(rek, &keyid, nullptr, nullptr, &issuer, &serial);
        wanted.push_back(DescribeRecipientId(keyid, issuer, serial));
        for (const auto& k : *keys) {
          pick(k, tokens::KeyAlgorithm::kEc, [&](X509* c) { return CMS_RecipientEncryptedKey_cert_cmp(rek, c) == 0; });
        }
      }
    } else {
      wanted.push_back("a password or pre-shared key recipient (not supported)");
    }
  }
  ClearSslErrors();
  if (!chosen) {
    return absl::NotFoundError(absl::StrCat(
        only_key ? absl::StrCat("key \"", only_key->label(), "\" cannot open this message")
                 : std::string("no key on the token can open this message"),
        "; it was encrypted for: ", absl::StrJoin(wanted, "; ")));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<EVP_PKEY> pkey, TokenPkey(token_, chosen));
  DeadlineScope scope(deadline);
  StringSink plain;
  ASN1_OCTET_STRING** encrypted = CMS_get0_content(parsed.cms.get());
  if (encrypted != nullptr && *encrypted != nullptr) {
    plain.str().reserve(static_cast<size_t>(ASN1_STRING_length(*encrypted)));
  }
  SslPtr<BIO> out = NewSinkBio(&plain);
  if (CMS_decrypt(parsed.cms.get(), pkey.get(), chosen_cert, nullptr, out.get(), 0) != 1) {
    absl::Status token = TakeLastTokenError();
    ClearSslErrors();
    // The token being gone or locked is not about the ciphertext and says
    // so; everything else reads the same (no padding or MAC oracle).
    if (absl::IsUnavailable(token) || absl::IsFailedPrecondition(token) || absl::IsNotFound(token)) return token;
    return absl::InvalidArgumentError("decryption failed");
  }
  parsed.cms.reset();  // the ciphertext; no longer needed
  DecryptResult result;
  result.content = std::move(plain.str());
  result.key_uri = chosen->uri();
  result.is_signed = IsSignedEntity(result.content);
  return result;
}

absl::StatusOr<DecryptVerifyResult> SmimeEngine::DecryptAndVerify(ByteSource& input, absl::Time deadline,
                                                                   std::shared_ptr<const tokens::Key> only_key,
                                                                   const std::optional<VerifyOptions>& verify) const {
  ASSIGN_OR_RETURN(DecryptResult decrypted, Decrypt(input, deadline, std::move(only_key)));
  DecryptVerifyResult result{std::move(decrypted), absl::OkStatus(), std::nullopt};
  if (!verify) return result;
  if (!result.decrypted.is_signed) {
    result.verify_status = absl::FailedPreconditionError("the decrypted message is not signed");
    return result;
  }
  StringSource inner(result.decrypted.content);
  absl::StatusOr<VerifyResult> verified = Verify(inner, nullptr, *verify);
  if (!verified.ok()) {
    result.verify_status = absl::Status(verified.status().code(),
                                        absl::StrCat("decrypted, but the signed message inside does not verify: ",
                                                     verified.status().message()));
    return result;
  }
  result.decrypted.content = std::move(verified->content);
  result.verified = std::move(*verified);
  return result;
}

}  // namespace smime::agent
