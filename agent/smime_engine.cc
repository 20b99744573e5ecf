#include "agent/smime_engine.h"

#include <openssl/pem.h>  // before cms.h, which declares PEM_read_bio_CMS with its macros
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/cert_policy.h"
#include "agent/mime.h"
#include "agent/token_pkey.h"
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

struct ParsedCms {
  SslPtr<CMS_ContentInfo> cms;
  SslPtr<BIO> content;  // detached content from multipart/signed, if any
  std::string outer_headers;
};

absl::StatusOr<ParsedCms> ParseCms(absl::string_view input) {
  ClearSslErrors();
  ParsedCms out;
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(input);
  if (trimmed.empty()) return absl::InvalidArgumentError("the input is empty");
  auto bio = MemBio(trimmed);
  if (absl::StartsWith(trimmed, "-----BEGIN")) {
    // "CMS" and "PKCS7" as OpenSSL writes them, and gpgsm's --armor labels.
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &der, &len) == 1) {
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
  } else if (static_cast<unsigned char>(trimmed[0]) == 0x30) {
    out.cms.reset(d2i_CMS_bio(bio.get(), nullptr));
  } else {
    BIO* content = nullptr;
    out.cms.reset(SMIME_read_CMS(bio.get(), &content));
    out.content.reset(content);
    size_t end = ToCrlf(trimmed.substr(0, 64 * 1024)).find("\r\n\r\n");
    if (end != std::string::npos) out.outer_headers = ToCrlf(trimmed.substr(0, 64 * 1024)).substr(0, end + 2);
  }
  if (!out.cms) {
    return SslError(absl::StatusCode::kInvalidArgument,
                    "the input is not an S/MIME message, DER CMS or PEM CMS");
  }
  return out;
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

absl::StatusOr<std::string> SmimeEngine::Sign(std::shared_ptr<const tokens::Key> key, absl::string_view message,
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
  ASSIGN_OR_RETURN(SplitMessage split, SplitForSmime(message));
  ASSIGN_OR_RETURN(std::shared_ptr<EVP_PKEY> pkey, TokenPkey(token_, key));
  std::vector<CertPtr> pool = token_->OtherCertificates();
  SslPtr<STACK_OF(X509)> chain(sk_X509_new_null());
  for (X509* c : ChainFor(cert, pool)) sk_X509_push(chain.get(), c);

  ClearSslErrors();
  DeadlineScope scope(deadline);
  const unsigned int flags = CMS_PARTIAL | CMS_BINARY | (options.opaque ? 0 : CMS_DETACHED);
  SslPtr<CMS_ContentInfo> cms(CMS_sign_ex(nullptr, nullptr, chain.get(), nullptr, flags, nullptr, nullptr));
  if (!cms) return SslError(absl::StatusCode::kInternal, "cannot start SignedData");
  CMS_SignerInfo* si =
      CMS_add1_signer(cms.get(), cert, pkey.get(), EVP_sha256(), flags | (options.pss ? CMS_KEY_PARAM : 0));
  if (si == nullptr) return KeyOpError(absl::StatusCode::kInternal, "cannot add signer");
  if (options.pss) {
    EVP_PKEY_CTX* pctx = CMS_SignerInfo_get0_pkey_ctx(si);
    if (pctx == nullptr || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0) {
      return SslError(absl::StatusCode::kInternal, "cannot select RSA-PSS");
    }
  }
  auto data = MemBio(split.entity);
  if (CMS_final(cms.get(), data.get(), nullptr, flags) != 1) {
    return KeyOpError(absl::StatusCode::kInternal, "signing failed");
  }
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  auto data_again = MemBio(split.entity);
  // CMS_REUSE_DIGEST: copy the signed part out as it is; without it
  // SMIME_write_CMS would digest and sign the data a second time.
  if (SMIME_write_CMS(out.get(), cms.get(), data_again.get(), flags | CMS_CRLFEOL | CMS_REUSE_DIGEST) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot write S/MIME");
  }
  return absl::StrCat(split.outer_headers, BioContents(out.get()));
}

absl::StatusOr<VerifyResult> SmimeEngine::Verify(absl::string_view input, absl::string_view detached_content,
                                                 const VerifyOptions& options) const {
  if (options.trust_anchors.empty() && !options.signature_only) {
    return absl::InvalidArgumentError("verification needs at least one trusted CA certificate");
  }
  ASSIGN_OR_RETURN(ParsedCms parsed, ParseCms(input));
  if (OBJ_obj2nid(CMS_get0_type(parsed.cms.get())) != NID_pkcs7_signed) {
    return absl::InvalidArgumentError("the input is not a signed message (not CMS SignedData)");
  }
  SslPtr<BIO> content;
  if (!detached_content.empty()) {
    content = MemBio(detached_content);
  } else if (parsed.content) {
    content = std::move(parsed.content);
  } else if (CMS_get0_content(parsed.cms.get()) == nullptr || *CMS_get0_content(parsed.cms.get()) == nullptr) {
    return absl::InvalidArgumentError("the signature is detached; give the signed content too");
  }
  SslPtr<X509_STORE> store(X509_STORE_new());
  for (const CertPtr& c : options.trust_anchors) X509_STORE_add_cert(store.get(), c.get());
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
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  ClearSslErrors();
  // Flags as `openssl cms -verify` uses them, so content comes out byte for
  // byte as there.
  unsigned int flags = (options.signature_only ? CMS_NO_SIGNER_CERT_VERIFY : 0) | (options.binary ? CMS_BINARY : 0);
  if (CMS_verify(parsed.cms.get(), extra.get(), store.get(), content.get(), out.get(), flags) != 1) {
    return SslError(absl::StatusCode::kInvalidArgument, "signature verification failed");
  }
  VerifyResult result;
  result.content = BioContents(out.get());
  STACK_OF(X509)* signers = CMS_get0_signers(parsed.cms.get());
  for (int i = 0; i < sk_X509_num(signers); ++i) {
    tokens::CertificateSummary s = tokens::Summarize(sk_X509_value(signers, i));
    SignerInfo info{s.subject, s.emails, std::nullopt};
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

absl::StatusOr<std::string> SmimeEngine::Encrypt(absl::string_view message, const std::vector<CertPtr>& recipients,
                                                 const EncryptOptions& options) const {
  if (recipients.empty()) return absl::InvalidArgumentError("encryption needs at least one recipient certificate");
  for (const CertPtr& r : recipients) RETURN_IF_ERROR(CheckValidNow(r.get(), "recipient"));
  ASSIGN_OR_RETURN(SplitMessage split, SplitForSmime(message));
  const EVP_CIPHER* cipher = options.cipher == Cipher::kAes128Cbc   ? EVP_aes_128_cbc()
                             : options.cipher == Cipher::kAes256Gcm ? EVP_aes_256_gcm()
                                                                    : EVP_aes_256_cbc();
  ClearSslErrors();
  const unsigned int flags = CMS_PARTIAL | CMS_BINARY;
  auto data = MemBio(split.entity);
  SslPtr<CMS_ContentInfo> cms(CMS_encrypt_ex(nullptr, data.get(), cipher, flags, nullptr, nullptr));
  if (!cms) return SslError(absl::StatusCode::kInternal, "cannot start EnvelopedData");
  for (const CertPtr& r : recipients) {
    bool rsa = EVP_PKEY_get_base_id(X509_get0_pubkey(r.get())) == EVP_PKEY_RSA;
    bool oaep = options.oaep && rsa;
    CMS_RecipientInfo* ri = CMS_add1_recipient_cert(cms.get(), r.get(), flags | (oaep ? CMS_KEY_PARAM : 0));
    if (ri == nullptr) {
      return SslError(absl::StatusCode::kInvalidArgument,
                      absl::StrCat("cannot encrypt to \"", tokens::Summarize(r.get()).subject, "\""));
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
  auto data_again = MemBio(split.entity);
  if (CMS_final(cms.get(), data_again.get(), nullptr, flags) != 1) {
    return SslError(absl::StatusCode::kInternal, "encryption failed");
  }
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  if (SMIME_write_CMS(out.get(), cms.get(), nullptr, flags | CMS_CRLFEOL) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot write S/MIME");
  }
  return absl::StrCat(split.outer_headers, BioContents(out.get()));
}

absl::StatusOr<DecryptResult> SmimeEngine::Decrypt(absl::string_view input, absl::Time deadline,
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
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  if (CMS_decrypt(parsed.cms.get(), pkey.get(), chosen_cert, nullptr, out.get(), 0) != 1) {
    absl::Status token = TakeLastTokenError();
    ClearSslErrors();
    // The token being gone or locked is not about the ciphertext and says
    // so; everything else reads the same (no padding or MAC oracle).
    if (absl::IsUnavailable(token) || absl::IsFailedPrecondition(token) || absl::IsNotFound(token)) return token;
    return absl::InvalidArgumentError("decryption failed");
  }
  DecryptResult result;
  result.content = BioContents(out.get());
  result.key_uri = chosen->uri();
  result.is_signed = IsSignedEntity(result.content);
  return result;
}

}  // namespace smime::agent
