#include "tokens/pkcs11_uri.h"

#include <p11-kit/uri.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace smime::tokens {

void Pkcs11Uri::Free::operator()(P11KitUri* uri) const { p11_kit_uri_free(uri); }

absl::StatusOr<Pkcs11Uri> Pkcs11Uri::Parse(absl::string_view text) {
  if (!absl::StartsWithIgnoreCase(text, "pkcs11:")) {
    return absl::InvalidArgumentError("a PKCS#11 URI starts with \"pkcs11:\"");
  }
  std::string copy(text);
  P11KitUri* raw = p11_kit_uri_new();
  if (raw == nullptr) return absl::ResourceExhaustedError("out of memory parsing URI");
  Pkcs11Uri uri(raw);
  int rc = p11_kit_uri_parse(copy.c_str(), P11_KIT_URI_FOR_ANY, raw);
  if (rc != P11_KIT_URI_OK) {
    // The message names the problem, never the URI (it could hold a PIN).
    return absl::InvalidArgumentError(
        absl::StrCat("malformed PKCS#11 URI: ", p11_kit_uri_message(rc)));
  }
  if (p11_kit_uri_get_pin_value(raw) != nullptr || p11_kit_uri_get_pin_source(raw) != nullptr) {
    return absl::InvalidArgumentError(
        "PKCS#11 URI carries a PIN (pin-value/pin-source); the agent takes PINs only from its "
        "own configuration");
  }
  return uri;
}

bool Pkcs11Uri::MatchesToken(const CK_TOKEN_INFO& info) const {
  return p11_kit_uri_match_token_info(uri_.get(), const_cast<CK_TOKEN_INFO*>(&info)) == 1;
}

bool Pkcs11Uri::HasTokenAttributes() const {
  // An all-blank CK_TOKEN_INFO matches only a URI without token attributes
  // (blank fields are wildcards in p11-kit).
  CK_TOKEN_INFO* info = p11_kit_uri_get_token_info(uri_.get());
  if (info == nullptr) return false;
  auto blank = [](const unsigned char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (p[i] != ' ' && p[i] != 0) return false;
    }
    return true;
  };
  return !(blank(info->label, sizeof(info->label)) &&
           blank(info->manufacturerID, sizeof(info->manufacturerID)) &&
           blank(info->model, sizeof(info->model)) &&
           blank(info->serialNumber, sizeof(info->serialNumber)));
}

namespace {
std::optional<std::string> StringAttr(P11KitUri* uri, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE* attr = p11_kit_uri_get_attribute(uri, type);
  if (attr == nullptr || attr->pValue == nullptr) return std::nullopt;
  return std::string(static_cast<const char*>(attr->pValue), attr->ulValueLen);
}
}  // namespace

std::optional<std::string> Pkcs11Uri::id() const { return StringAttr(uri_.get(), CKA_ID); }
std::optional<std::string> Pkcs11Uri::object() const { return StringAttr(uri_.get(), CKA_LABEL); }

std::optional<CK_OBJECT_CLASS> Pkcs11Uri::type() const {
  CK_ATTRIBUTE* attr = p11_kit_uri_get_attribute(uri_.get(), CKA_CLASS);
  if (attr == nullptr || attr->pValue == nullptr || attr->ulValueLen != sizeof(CK_OBJECT_CLASS)) {
    return std::nullopt;
  }
  CK_OBJECT_CLASS cls;
  std::memcpy(&cls, attr->pValue, sizeof(cls));
  return cls;
}

std::string FormatObjectUri(const CK_TOKEN_INFO& token, absl::string_view id,
                            absl::string_view label, CK_OBJECT_CLASS type) {
  P11KitUri* uri = p11_kit_uri_new();
  if (uri == nullptr) return "pkcs11:";
  CK_TOKEN_INFO* info = p11_kit_uri_get_token_info(uri);
  std::memcpy(info->label, token.label, sizeof(token.label));
  std::memcpy(info->manufacturerID, token.manufacturerID, sizeof(token.manufacturerID));
  std::memcpy(info->model, token.model, sizeof(token.model));
  std::memcpy(info->serialNumber, token.serialNumber, sizeof(token.serialNumber));
  std::string id_copy(id), label_copy(label);
  CK_ATTRIBUTE attrs[] = {
      {CKA_ID, id_copy.data(), id_copy.size()},
      {CKA_LABEL, label_copy.data(), label_copy.size()},
      {CKA_CLASS, &type, sizeof(type)},
  };
  // An empty label is left out rather than written as "object=".
  size_t first = 0;
  p11_kit_uri_set_attribute(uri, &attrs[first]);
  if (!label.empty()) p11_kit_uri_set_attribute(uri, &attrs[1]);
  p11_kit_uri_set_attribute(uri, &attrs[2]);
  char* out = nullptr;
  std::string result = "pkcs11:";
  if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &out) == P11_KIT_URI_OK && out) {
    result = out;
  }
  free(out);
  p11_kit_uri_free(uri);
  return result;
}

absl::string_view StripUriQuery(absl::string_view uri) {
  size_t q = uri.find('?');
  return q == absl::string_view::npos ? uri : uri.substr(0, q);
}

}  // namespace smime::tokens
