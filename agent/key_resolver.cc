#include "agent/key_resolver.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "tokens/pkcs11_uri.h"

namespace smime::agent {
namespace {

using tokens::Key;
using KeyPtr = std::shared_ptr<const Key>;

std::string DescribeKey(const Key& k) {
  return absl::StrCat("label \"", k.label(), "\" id ", k.id_hex(),
                      k.cert_summary().emails.empty() ? "" : " <",
                      absl::StrJoin(k.cert_summary().emails, ", "),
                      k.cert_summary().emails.empty() ? "" : ">");
}

absl::StatusOr<KeyPtr> ExactlyOne(const std::vector<KeyPtr>& found, const KeySelector& sel) {
  if (found.size() == 1) return found.front();
  if (found.empty()) {
    return absl::NotFoundError(absl::StrCat("no key matches \"", DescribeSelector(sel), "\""));
  }
  std::vector<std::string> names;
  for (const KeyPtr& k : found) names.push_back(DescribeKey(*k));
  return absl::InvalidArgumentError(absl::StrCat(
      "\"", DescribeSelector(sel), "\" matches ", found.size(), " keys (", absl::StrJoin(names, "; "),
      "); select one by its id or pkcs11: URI"));
}

absl::StatusOr<KeyPtr> ResolveUri(const tokens::KeyList& keys, const CK_TOKEN_INFO& token_info,
                                  const KeySelector& sel) {
  ASSIGN_OR_RETURN(tokens::Pkcs11Uri uri, tokens::Pkcs11Uri::Parse(sel.value));
  if (!uri.MatchesToken(token_info)) {
    return absl::NotFoundError(absl::StrCat("\"", DescribeSelector(sel),
                                            "\" names another token than the agent's"));
  }
  auto type = uri.type();
  if (type && *type != CKO_PRIVATE_KEY && *type != CKO_PUBLIC_KEY && *type != CKO_CERTIFICATE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", DescribeSelector(sel), "\" names neither a private key, public key nor certificate"));
  }
  auto id = uri.id();
  auto label = uri.object();
  if (!id && !label) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", DescribeSelector(sel), "\" names no key; add id= or object="));
  }
  std::vector<KeyPtr> found;
  for (const KeyPtr& k : keys) {
    if (id && k->id() != *id) continue;
    if (label && k->label() != *label) continue;
    found.push_back(k);
  }
  return ExactlyOne(found, sel);
}

}  // namespace

std::string DescribeSelector(const KeySelector& selector) {
  switch (selector.kind) {
    case KeySelector::Kind::kUri: return std::string(tokens::StripUriQuery(selector.value));
    case KeySelector::Kind::kId: return absl::StrCat("id ", tokens::HexEncode(selector.value));
    case KeySelector::Kind::kText:
      if (absl::StartsWithIgnoreCase(selector.value, "pkcs11:")) {
        return std::string(tokens::StripUriQuery(selector.value));
      }
      return selector.value;
    default: return selector.value;
  }
}

absl::StatusOr<std::shared_ptr<const tokens::Key>> ResolveKey(const tokens::KeyList& keys,
                                                              const CK_TOKEN_INFO& token_info,
                                                              const KeySelector& selector) {
  KeySelector sel = selector;
  if (sel.kind == KeySelector::Kind::kText) {
    if (sel.value.empty()) return absl::InvalidArgumentError("the key selector is empty");
    if (absl::StartsWithIgnoreCase(sel.value, "pkcs11:")) {
      sel.kind = KeySelector::Kind::kUri;
    } else if (absl::StrContains(sel.value, '@')) {
      sel.kind = KeySelector::Kind::kEmail;
    }
  }
  std::vector<KeyPtr> found;
  switch (sel.kind) {
    case KeySelector::Kind::kUri:
      return ResolveUri(keys, token_info, sel);
    case KeySelector::Kind::kEmail: {
      std::string email = absl::AsciiStrToLower(sel.value);
      for (const KeyPtr& k : keys) {
        for (const std::string& e : k->cert_summary().emails) {
          if (e == email) {
            found.push_back(k);
            break;
          }
        }
      }
      break;
    }
    case KeySelector::Kind::kLabel:
      if (sel.value.empty()) return absl::InvalidArgumentError("the key label is empty");
      for (const KeyPtr& k : keys) {
        if (k->label() == sel.value) found.push_back(k);
      }
      break;
    case KeySelector::Kind::kId:
      if (sel.value.empty()) return absl::InvalidArgumentError("the key id is empty");
      for (const KeyPtr& k : keys) {
        if (k->id() == sel.value) found.push_back(k);
      }
      break;
    case KeySelector::Kind::kText: {
      // A label, or a hex CKA_ID (optionally "0x"-prefixed). A text that is
      // one key's label and another key's id is ambiguous, and says so.
      std::string hex = sel.value;
      if (absl::StartsWithIgnoreCase(hex, "0x")) hex = hex.substr(2);
      auto id = tokens::HexDecode(hex);
      for (const KeyPtr& k : keys) {
        if (k->label() == sel.value || (id && !id->empty() && k->id() == *id)) found.push_back(k);
      }
      break;
    }
  }
  return ExactlyOne(found, sel);
}

}  // namespace smime::agent
