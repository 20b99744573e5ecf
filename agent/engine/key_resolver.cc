#include "agent/engine/key_resolver.h"

#include <algorithm>
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

bool ValidAt(const Key& k, absl::Time now) {
  if (k.certificate() == nullptr) return false;
  int64_t t = absl::ToUnixSeconds(now);
  return k.cert_summary().not_before <= t && t <= k.cert_summary().not_after;
}

bool Usable(const Key& k, absl::Time now) { return !k.RetiredAt(now) && ValidAt(k, now); }

bool SharesEmail(const Key& a, const Key& b) {
  for (const std::string& x : a.cert_summary().emails) {
    for (const std::string& y : b.cert_summary().emails) {
      if (x == y) return true;
    }
  }
  return false;
}

absl::Status Retired(const Key& k) {
  return absl::FailedPreconditionError(absl::StrCat(
      "key ", DescribeKey(k), " is retired from signing (CKA_END_DATE ", k.end_date(),
      "); it still decrypts. Sign with its successor"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const tokens::Key>> ResolveSigningKey(const tokens::KeyList& keys,
                                                                     const CK_TOKEN_INFO& token_info,
                                                                     const KeySelector& selector, absl::Time now) {
  bool by_email = selector.kind == KeySelector::Kind::kEmail ||
                  (selector.kind == KeySelector::Kind::kText && !absl::StartsWithIgnoreCase(selector.value, "pkcs11:") &&
                   absl::StrContains(selector.value, '@'));
  if (!by_email) {
    ASSIGN_OR_RETURN(KeyPtr key, ResolveKey(keys, token_info, selector));
    if (key->RetiredAt(now)) return Retired(*key);
    return key;
  }
  std::string email = absl::AsciiStrToLower(selector.value);
  std::vector<KeyPtr> found, not_retired;
  for (const KeyPtr& k : keys) {
    const auto& emails = k->cert_summary().emails;
    if (std::find(emails.begin(), emails.end(), email) == emails.end()) continue;
    found.push_back(k);
    if (!k->RetiredAt(now)) not_retired.push_back(k);
  }
  if (found.empty()) return ExactlyOne(found, selector);
  if (not_retired.empty()) {
    if (found.size() == 1) return Retired(*found.front());
    return absl::FailedPreconditionError(absl::StrCat("every key for ", email,
                                                      " is retired from signing; import or make a new one"));
  }
  KeyPtr best;
  for (const KeyPtr& k : not_retired) {
    if (!ValidAt(*k, now)) continue;
    if (!best || k->cert_summary().not_before > best->cert_summary().not_before) best = k;
  }
  if (best) return best;
  return ExactlyOne(not_retired, selector);
}

const char* KeyStatusName(KeyStatus status) {
  switch (status) {
    case KeyStatus::kCurrent: return "current";
    case KeyStatus::kExpired: return "expired";
    case KeyStatus::kSuperseded: return "superseded";
    case KeyStatus::kNotYetValid: return "not-yet-valid";
    case KeyStatus::kRetired: return "retired";
    case KeyStatus::kNoCertificate: return "no-certificate";
  }
  return "unknown";
}

KeyStatus StatusOf(const tokens::Key& key, const tokens::KeyList& keys, absl::Time now) {
  if (key.RetiredAt(now)) return KeyStatus::kRetired;
  if (key.certificate() == nullptr) return KeyStatus::kNoCertificate;
  int64_t t = absl::ToUnixSeconds(now);
  if (t > key.cert_summary().not_after) return KeyStatus::kExpired;
  if (t < key.cert_summary().not_before) return KeyStatus::kNotYetValid;
  for (const KeyPtr& other : keys) {
    if (other.get() == &key || !Usable(*other, now) || !SharesEmail(key, *other)) continue;
    if (other->cert_summary().not_before > key.cert_summary().not_before) return KeyStatus::kSuperseded;
  }
  return KeyStatus::kCurrent;
}

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
