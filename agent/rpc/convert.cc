#include "agent/rpc/convert.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "tokens/certificate.h"

namespace smime::agent {

absl::StatusOr<KeySelector> FromProto(const v1::KeySelector& selector) {
  using K = KeySelector::Kind;
  switch (selector.kind_case()) {
    case v1::KeySelector::kUri: return KeySelector{K::kUri, selector.uri()};
    case v1::KeySelector::kEmail: return KeySelector{K::kEmail, selector.email()};
    case v1::KeySelector::kLabel: return KeySelector{K::kLabel, selector.label()};
    case v1::KeySelector::kId: return KeySelector{K::kId, selector.id()};
    case v1::KeySelector::kText: return KeySelector{K::kText, selector.text()};
    case v1::KeySelector::KIND_NOT_SET: break;
  }
  return absl::InvalidArgumentError("the request names no key (KeySelector is empty)");
}

absl::StatusOr<tokens::SignMechanism> FromProto(v1::SignatureAlgorithm algorithm) {
  switch (algorithm) {
    case v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256: return tokens::SignMechanism::kRsaPkcs1Sha256;
    case v1::SIGNATURE_ALGORITHM_RSA_PSS_SHA256: return tokens::SignMechanism::kRsaPssSha256;
    case v1::SIGNATURE_ALGORITHM_ECDSA_SHA256: return tokens::SignMechanism::kEcdsaSha256;
    default: break;
  }
  return absl::InvalidArgumentError(
      "choose a signature algorithm: rsa-pkcs1-sha256, rsa-pss-sha256 or ecdsa-sha256");
}

absl::StatusOr<tokens::DecryptMechanism> FromProto(v1::DecryptPadding padding) {
  switch (padding) {
    case v1::DECRYPT_PADDING_RSA_PKCS1: return tokens::DecryptMechanism::kRsaPkcs1;
    case v1::DECRYPT_PADDING_RSA_OAEP_SHA1: return tokens::DecryptMechanism::kRsaOaepSha1;
    case v1::DECRYPT_PADDING_RSA_OAEP_SHA256: return tokens::DecryptMechanism::kRsaOaepSha256;
    default: break;
  }
  return absl::InvalidArgumentError("choose a padding: pkcs1, oaep-sha1 or oaep-sha256");
}

absl::StatusOr<tokens::KeySpec> FromProto(v1::KeyType type) {
  switch (type) {
    case v1::KEY_TYPE_RSA_2048: return tokens::KeySpec::kRsa2048;
    case v1::KEY_TYPE_RSA_3072: return tokens::KeySpec::kRsa3072;
    case v1::KEY_TYPE_RSA_4096: return tokens::KeySpec::kRsa4096;
    case v1::KEY_TYPE_EC_P256: return tokens::KeySpec::kEcP256;
    case v1::KEY_TYPE_EC_P384: return tokens::KeySpec::kEcP384;
    default: break;
  }
  return absl::InvalidArgumentError("choose a key type: rsa2048, rsa3072, rsa4096, p256 or p384");
}

void ToProto(const tokens::Key& key, const std::string& token_label, v1::KeyInfo* out) {
  out->set_id(key.id());
  out->set_label(key.label());
  out->set_token(token_label);
  out->set_algorithm(key.short_name());
  const std::string& n = key.short_name();
  v1::KeyType type = v1::KEY_TYPE_OTHER;
  if (n == "rsa2048") type = v1::KEY_TYPE_RSA_2048;
  else if (n == "rsa3072") type = v1::KEY_TYPE_RSA_3072;
  else if (n == "rsa4096") type = v1::KEY_TYPE_RSA_4096;
  else if (n == "p256") type = v1::KEY_TYPE_EC_P256;
  else if (n == "p384") type = v1::KEY_TYPE_EC_P384;
  out->set_type(type);
  out->set_uri(key.uri());
  out->set_has_certificate(key.certificate() != nullptr);
  if (key.certificate() != nullptr) {
    const tokens::CertificateSummary& c = key.cert_summary();
    for (const std::string& e : c.emails) out->add_emails(e);
    out->set_subject(c.subject);
    out->set_issuer(c.issuer);
    out->set_serial_hex(c.serial_hex);
    out->mutable_not_after()->set_seconds(c.not_after);
    out->mutable_not_before()->set_seconds(c.not_before);
  }
  MakeUtf8Valid(out);
}

absl::StatusOr<std::vector<CertPtr>> ParseCertList(const google::protobuf::RepeatedPtrField<std::string>& items,
                                                   absl::string_view what) {
  std::vector<CertPtr> out;
  for (const std::string& item : items) {
    auto certs = ParseCertificates(item);
    if (!certs.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", certs.status().message()));
    }
    out.insert(out.end(), certs->begin(), certs->end());
  }
  return out;
}

absl::StatusOr<VerifyOptions> FromProto(const v1::VerifyOptions& options) {
  VerifyOptions vopts;
  ASSIGN_OR_RETURN(vopts.trust_anchors, ParseCertList(options.trust_anchors(), "trusted CA certificate"));
  ASSIGN_OR_RETURN(vopts.extra_certs, ParseCertList(options.extra_certs(), "intermediate certificate"));
  if (options.has_at()) vopts.at = absl::FromUnixSeconds(options.at().seconds());
  vopts.at_signing_time = options.at_signing_time();
  vopts.signature_only = options.signature_only();
  vopts.any_purpose = options.any_purpose();
  vopts.binary = options.binary();
  return vopts;
}

EncryptOptions FromProto(const v1::EncryptOptions& options) {
  EncryptOptions eopts;
  eopts.oaep = options.oaep();
  switch (options.cipher()) {
    case v1::CONTENT_CIPHER_AES128_CBC: eopts.cipher = Cipher::kAes128Cbc; break;
    case v1::CONTENT_CIPHER_AES256_GCM: eopts.cipher = Cipher::kAes256Gcm; break;
    default: eopts.cipher = Cipher::kAes256Cbc; break;
  }
  return eopts;
}

void ToProto(const VerifyResult& result, v1::VerifyResult* out) {
  for (const SignerInfo& s : result.signers) {
    v1::Signer* signer = out->add_signers();
    signer->set_subject(s.subject);
    for (const std::string& e : s.emails) signer->add_emails(e);
    if (s.signing_time) signer->mutable_signing_time()->set_seconds(absl::ToUnixSeconds(*s.signing_time));
  }
  out->set_from_mismatch(result.from_mismatch);
  MakeUtf8Valid(out);
}

void MakeUtf8Valid(google::protobuf::Message* msg) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* r = msg->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(*msg, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(*msg, f); ++i) {
          std::string v = r->GetRepeatedString(*msg, f, i);
          if (!IsValidUtf8(v)) r->SetRepeatedString(msg, f, i, ToValidUtf8(v));
        }
      } else {
        std::string v = r->GetString(*msg, f);
        if (!IsValidUtf8(v)) r->SetString(msg, f, ToValidUtf8(v));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(*msg, f); ++i) MakeUtf8Valid(r->MutableRepeatedMessage(msg, f, i));
      } else {
        MakeUtf8Valid(r->MutableMessage(msg, f));
      }
    }
  }
}

}  // namespace smime::agent
