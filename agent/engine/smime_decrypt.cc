// Decryption: Decrypt (EnvelopedData or AuthEnvelopedData, with the token
// key a RecipientInfo names) and DecryptAndVerify (then the signed message
// inside, in one call).
#include <openssl/err.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/engine/cms_util.h"
#include "agent/engine/mime.h"
#include "agent/engine/smime_engine.h"
#include "agent/engine/stream_bio.h"
#include "agent/engine/token_pkey.h"
#include "common/status_macros.h"
#include "tokens/decrypt_failure.h"
#include "tokens/certificate.h"

namespace smime::agent {
namespace {

// The recipients a message names, the first few of them: a message for
// hundreds of recipients must not make an error that outgrows what gRPC
// lets a status message carry.
constexpr size_t kRecipientsNamed = 5;
std::string FirstFew(const std::vector<std::string>& recipients) {
  if (recipients.size() <= kRecipientsNamed) return absl::StrJoin(recipients, "; ");
  std::vector<std::string> some(recipients.begin(), recipients.begin() + kRecipientsNamed);
  return absl::StrCat(absl::StrJoin(some, "; "), "; and ", recipients.size() - kRecipientsNamed, " more");
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

}  // namespace

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
        only_key ? absl::StrCat(tokens::Describe(*only_key), " cannot open this message")
                 : std::string("no key on the token can open this message"),
        "; it was encrypted for: ", FirstFew(wanted)));
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
    return token.ok() ? tokens::DecryptionFailed() : tokens::AsDecryptFailure(token);
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
