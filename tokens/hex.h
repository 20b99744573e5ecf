// Hex encoding of CKA_ID bytes, shared by selectors, listings and messages.
#ifndef SMIME_TOKENS_HEX_H_
#define SMIME_TOKENS_HEX_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace smime::tokens {

// Lower-case hex.
std::string HexEncode(absl::string_view bytes);
// Upper or lower case; nullopt for odd length or a non-hex character.
std::optional<std::string> HexDecode(absl::string_view hex);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_HEX_H_
