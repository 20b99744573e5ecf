// RFC 7512 PKCS#11 URIs, parsed and formatted in this one place by wrapping
// p11-kit (STYLE.md §7).
#ifndef SMIME_TOKENS_PKCS11_URI_H_
#define SMIME_TOKENS_PKCS11_URI_H_

#include <p11-kit/pkcs11.h>

#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

typedef struct p11_kit_uri P11KitUri;

namespace smime::tokens {

class Pkcs11Uri {
 public:
  // Parses `text`. A URI carrying "pin-value" or "pin-source" is refused:
  // PINs never travel inside key names. Malformed URIs are INVALID_ARGUMENT.
  static absl::StatusOr<Pkcs11Uri> Parse(absl::string_view text);

  Pkcs11Uri(Pkcs11Uri&&) noexcept = default;
  Pkcs11Uri& operator=(Pkcs11Uri&&) noexcept = default;

  // True if every token attribute in the URI (token, manufacturer, serial,
  // model) matches `info`; a URI with none matches every token.
  bool MatchesToken(const CK_TOKEN_INFO& info) const;
  // True if the URI names any token attribute.
  bool HasTokenAttributes() const;

  // Object attributes named in the URI, if present.
  std::optional<std::string> id() const;      // CKA_ID, decoded bytes
  std::optional<std::string> object() const;  // CKA_LABEL
  std::optional<CK_OBJECT_CLASS> type() const;

 private:
  struct Free {
    void operator()(P11KitUri* uri) const;
  };
  explicit Pkcs11Uri(P11KitUri* uri) : uri_(uri) {}
  std::unique_ptr<P11KitUri, Free> uri_;
};

// The URI naming one object on a token: token label, manufacturer, model and
// serial from `token`, plus id, object label and type. Never a query part.
std::string FormatObjectUri(const CK_TOKEN_INFO& token, absl::string_view id,
                            absl::string_view label, CK_OBJECT_CLASS type);

// `uri` with any query part ("?pin-value=...") removed, for logs.
absl::string_view StripUriQuery(absl::string_view uri);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_PKCS11_URI_H_
