// Verification: Verify (SignedData, its certificate chain checked against
// the caller's trust anchors), with failures said as a user can act on them.
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/engine/cms_util.h"
#include "agent/engine/mime.h"
#include "agent/engine/smime_engine.h"
#include "agent/engine/stream_bio.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"

namespace smime::agent {
namespace {

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

// The header block that starts the signed content, when it starts with
// one (a MIME entity does; its first line is a header field); empty
// otherwise. Only the header is looked at, whatever the content's size.
absl::string_view InnerHeaders(absl::string_view content) {
  size_t end = std::min(content.find("\r\n\r\n"), content.find("\n\n"));
  if (end == absl::string_view::npos || end > EntitySource::kMaxHeaderBytes) return {};
  absl::string_view first_line = content.substr(0, content.find('\n'));
  size_t colon = first_line.find(':');
  if (colon == absl::string_view::npos || colon == 0 ||
      first_line.substr(0, colon).find_first_of(" \t") != absl::string_view::npos) {
    return {};
  }
  return content.substr(0, end);
}

}  // namespace

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
  BorrowedX509Stack extra(sk_X509_new_null());  // options.extra_certs keeps them
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
  BorrowedX509Stack signer_list(CMS_get0_signers(parsed.cms.get()));  // the CMS keeps them
  STACK_OF(X509)* signers = signer_list.get();
  for (int i = 0; i < sk_X509_num(signers); ++i) {
    tokens::CertificateSummary s = tokens::Summarize(sk_X509_value(signers, i));
    SignerInfo info{s.subject, s.emails, std::nullopt, nullptr};
    X509* signer_cert = sk_X509_value(signers, i);
    X509_up_ref(signer_cert);
    info.cert = std::shared_ptr<X509>(signer_cert, X509_free);
    if (i < sk_CMS_SignerInfo_num(infos)) info.signing_time = SigningTime(sk_CMS_SignerInfo_value(infos, i));
    result.signers.push_back(std::move(info));
  }
  // The From the reader sees (the outer header) and a From inside the
  // signed part (a wrapped message/rfc822, protected headers) must both be
  // a signer's; the first that is not is reported.
  std::vector<absl::string_view> header_blocks = {parsed.outer_headers};
  absl::string_view inner = InnerHeaders(result.content);
  header_blocks.push_back(inner);
  if (absl::StartsWithIgnoreCase(HeaderValue(inner, "Content-Type"), "message/rfc822")) {
    // The signed part wraps a whole message: its From is the one shown.
    size_t body = inner.size() + (absl::string_view(result.content).substr(inner.size(), 4) == "\r\n\r\n" ? 4 : 2);
    header_blocks.push_back(InnerHeaders(absl::string_view(result.content).substr(body)));
  }
  for (absl::string_view headers : header_blocks) {
    if (headers.empty()) continue;
    std::string from = HeaderValue(headers, "From");
    if (from.empty()) continue;
    std::string addr = AddrSpec(from);
    bool found = false;
    for (const SignerInfo& s : result.signers) {
      for (const std::string& e : s.emails) found = found || e == addr;
    }
    if (!found) {
      result.from_mismatch = addr;
      break;
    }
  }
  return result;
}

}  // namespace smime::agent
