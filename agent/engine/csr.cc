#include "agent/engine/csr.h"

#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "agent/engine/token_pkey.h"
#include "common/status_macros.h"
#include "tokens/ossl_types.h"

namespace smime::agent {
namespace {

constexpr absl::string_view kSubjectExample = "/CN=Alice Example/O=Example Ltd";

// The requested extensions: what an S/MIME certificate for this key needs
// (RFC 8550 §4.4: keyUsage per key type; emailProtection; the addresses in
// subjectAltName).
absl::StatusOr<SslPtr<STACK_OF(X509_EXTENSION)>> RequestedExtensions(const std::vector<std::string>& emails,
                                                                     tokens::KeyAlgorithm algorithm) {
  SslPtr<STACK_OF(X509_EXTENSION)> exts(sk_X509_EXTENSION_new_null());
  SslPtr<GENERAL_NAMES> sans(GENERAL_NAMES_new());
  if (!exts || !sans) return absl::ResourceExhaustedError("out of memory");
  for (const std::string& e : emails) {
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (ia5 == nullptr || gn == nullptr || ASN1_STRING_set(ia5, e.data(), static_cast<int>(e.size())) != 1) {
      ASN1_IA5STRING_free(ia5);
      GENERAL_NAME_free(gn);
      return SslError(absl::StatusCode::kInternal, "cannot encode an email address");
    }
    GENERAL_NAME_set0_value(gn, GEN_EMAIL, ia5);
    sk_GENERAL_NAME_push(sans.get(), gn);
  }
  SslPtr<ASN1_BIT_STRING> ku(ASN1_BIT_STRING_new());
  // Bits of RFC 5280 §4.2.1.3: digitalSignature (0), keyEncipherment (2),
  // keyAgreement (4). EC keys encrypt by key agreement (RFC 8551 §2.4).
  const int second = algorithm == tokens::KeyAlgorithm::kEc ? 4 : 2;
  SslPtr<EXTENDED_KEY_USAGE> eku(sk_ASN1_OBJECT_new_null());
  if (!ku || !eku || ASN1_BIT_STRING_set_bit(ku.get(), 0, 1) != 1 ||
      ASN1_BIT_STRING_set_bit(ku.get(), second, 1) != 1 ||
      sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_email_protect)) <= 0) {
    return SslError(absl::StatusCode::kInternal, "cannot encode key usages");
  }
  STACK_OF(X509_EXTENSION)* raw = exts.get();
  if (X509V3_add1_i2d(&raw, NID_subject_alt_name, sans.get(), 0, X509V3_ADD_APPEND) != 1 ||
      X509V3_add1_i2d(&raw, NID_key_usage, ku.get(), 1, X509V3_ADD_APPEND) != 1 ||
      X509V3_add1_i2d(&raw, NID_ext_key_usage, eku.get(), 0, X509V3_ADD_APPEND) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot encode the requested extensions");
  }
  return exts;
}

}  // namespace

absl::StatusOr<std::shared_ptr<X509_NAME>> ParseSubject(absl::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the subject is empty; give it as ", kSubjectExample));
  }
  if (text[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("the subject must start with '/', as in ", kSubjectExample, "; got \"", text, "\""));
  }
  std::shared_ptr<X509_NAME> name(X509_NAME_new(), X509_NAME_free);
  if (!name) return absl::ResourceExhaustedError("out of memory");
  size_t i = 1;
  int set = 0;  // 0: a new RDN; -1: joins the previous one ('+')
  while (i < text.size()) {
    size_t eq = text.find('=', i);
    size_t stop = text.find_first_of("/+", i);
    if (eq == absl::string_view::npos || (stop != absl::string_view::npos && stop < eq)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "subject attribute \"", text.substr(i, stop == absl::string_view::npos ? stop : stop - i),
          "\" has no '='; write TYPE=VALUE, as in ", kSubjectExample));
    }
    std::string type(text.substr(i, eq - i));
    int nid = OBJ_txt2nid(type.c_str());
    ClearSslErrors();
    if (nid == NID_undef) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown attribute type \"", type, "\" in the subject (use CN, O, OU, C, L, ST, ...)"));
    }
    std::string value;
    i = eq + 1;
    char sep = '\0';
    for (; i < text.size(); ++i) {
      char c = text[i];
      if (c == '\\') {
        if (++i == text.size()) return absl::InvalidArgumentError("the subject ends with a lone '\\'");
        value += text[i];
      } else if (c == '/' || c == '+') {
        sep = c;
        ++i;
        break;
      } else {
        value += c;
      }
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("subject attribute ", type, " has an empty value"));
    }
    if (X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, set) != 1) {
      return SslError(absl::StatusCode::kInvalidArgument,
                      absl::StrCat("subject attribute ", type, "=\"", value, "\" is not allowed"));
    }
    set = sep == '+' ? -1 : 0;
    if (sep != '\0' && i == text.size()) {
      return absl::InvalidArgumentError(absl::StrCat("the subject ends with '", std::string(1, sep), "'"));
    }
  }
  if (X509_NAME_entry_count(name.get()) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("the subject names no attribute; give it as ", kSubjectExample));
  }
  return name;
}

absl::Status ValidateEmail(absl::string_view email) {
  size_t at = email.find('@');
  bool ok = at != absl::string_view::npos && at > 0 && at + 1 < email.size() &&
            email.find('@', at + 1) == absl::string_view::npos && email.size() <= 254;
  for (char c : email) ok = ok && c > 0x20 && c < 0x7f;
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", email, "\" is not an email address this request can carry (ASCII local@domain, no spaces)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MakeCsr(tokens::Token* token, std::shared_ptr<const tokens::Key> key,
                                    const CsrSpec& spec, absl::Time deadline) {
  if (spec.emails.empty()) {
    return absl::InvalidArgumentError("give at least one email address for the request's subjectAltName");
  }
  for (const std::string& e : spec.emails) RETURN_IF_ERROR(ValidateEmail(e));
  ASSIGN_OR_RETURN(std::shared_ptr<X509_NAME> subject, ParseSubject(spec.subject));
  if (key->algorithm() == tokens::KeyAlgorithm::kOther) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokens::Describe(*key), " is neither RSA nor EC; S/MIME certificates need one of those"));
  }
  if (!key->can_sign()) {
    return absl::FailedPreconditionError(absl::StrCat(
        tokens::Describe(*key), " is not allowed to sign (CKA_SIGN is false), so it cannot sign a request"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<EVP_PKEY> pkey, TokenPkey(token, key));
  ASSIGN_OR_RETURN(auto exts, RequestedExtensions(spec.emails, key->algorithm()));

  ClearSslErrors();
  SslPtr<X509_REQ> req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_subject_name(req.get(), subject.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key->public_key()) != 1 || X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot build the request");
  }
  {
    DeadlineScope scope(deadline);
    (void)TakeLastTokenError();
    if (X509_REQ_sign(req.get(), pkey.get(), EVP_sha256()) <= 0) {
      absl::Status token_error = TakeLastTokenError();
      if (!token_error.ok()) {
        ClearSslErrors();
        return token_error;
      }
      return SslError(absl::StatusCode::kInternal, "signing the request failed");
    }
  }
  // A token that returns a wrong signature must not hand out a request a
  // CA would reject later, far from the cause.
  if (X509_REQ_verify(req.get(), key->public_key()) != 1) {
    return SslError(absl::StatusCode::kInternal, "the token's signature over the request does not verify");
  }
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req.get(), &der);
  if (len <= 0) return SslError(absl::StatusCode::kInternal, "cannot encode the request");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace smime::agent
