// Encryption: Encrypt (EnvelopedData or AuthEnvelopedData to the
// recipients' certificates, streamed).
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "absl/strings/str_cat.h"
#include "agent/engine/cms_util.h"
#include "agent/engine/mime.h"
#include "agent/engine/smime_engine.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"

namespace smime::agent {

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

}  // namespace smime::agent
