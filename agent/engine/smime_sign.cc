// Signing: Sign (SignedData, multipart/signed or opaque, with the token's
// key through agent/engine/token_pkey) and SignAndEncrypt (signed, then
// enveloped, in one pass).
#include <openssl/err.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/engine/cms_util.h"
#include "agent/engine/mime.h"
#include "agent/engine/smime_engine.h"
#include "agent/engine/stream_bio.h"
#include "agent/engine/token_pkey.h"
#include "common/status_macros.h"

namespace smime::agent {
namespace {

// What signing may run ahead of encryption in SignAndEncrypt.
constexpr size_t kStreamPipeBytes = 256 * 1024;

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

// The certificate `key` signs with; S/MIME signing needs one.
absl::StatusOr<X509*> SignerCertificate(const tokens::Key& key) {
  X509* cert = key.certificate();
  if (cert == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        tokens::Describe(key), " has no certificate; S/MIME signing needs one (import it first)"));
  }
  return cert;
}

}  // namespace

absl::Status SmimeEngine::Sign(std::shared_ptr<const tokens::Key> key, ByteSource& message, ByteSink& out,
                               const SignOptions& options, absl::Time deadline) const {
  ASSIGN_OR_RETURN(X509* cert, SignerCertificate(*key));
  RETURN_IF_ERROR(CheckValidNow(cert, "signer"));
  if (options.pss && key->algorithm() != tokens::KeyAlgorithm::kRsa) {
    return absl::InvalidArgumentError(absl::StrCat("RSA-PSS needs an RSA key; \"", key->label(), "\" is ",
                                                   key->short_name()));
  }
  EntitySource entity(&message);
  RETURN_IF_ERROR(entity.ReadHeader());
  ASSIGN_OR_RETURN(std::shared_ptr<EVP_PKEY> pkey, TokenPkey(token_, key));
  std::vector<CertPtr> pool = token_->OtherCertificates();
  BorrowedX509Stack chain(sk_X509_new_null());  // `pool` keeps them
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

absl::Status SmimeEngine::SignAndEncrypt(std::shared_ptr<const tokens::Key> key, ByteSource& message, ByteSink& out,
                                         const SignOptions& sign_options, std::vector<CertPtr> recipients,
                                         const EncryptOptions& encrypt_options, absl::Time deadline) const {
  ASSIGN_OR_RETURN(X509* cert, SignerCertificate(*key));
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

}  // namespace smime::agent
