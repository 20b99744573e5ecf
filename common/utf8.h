// UTF-8 for text that came from outside (message headers, certificate
// fields, token labels) on its way into protobuf `string` fields, which
// must hold valid UTF-8: a peer drops a message that does not.
#ifndef SMIME_COMMON_UTF8_H_
#define SMIME_COMMON_UTF8_H_

#include <string>

#include "absl/strings/string_view.h"

namespace smime {

// Length of the well-formed UTF-8 sequence that starts at `text[i]`
// (i < text.size()), or 0 if none does.
size_t Utf8SequenceLength(absl::string_view text, size_t i);

// True if `text` is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// `text` with every byte that is not part of a well-formed UTF-8 sequence
// replaced by U+FFFD; valid text comes back unchanged.
std::string ToValidUtf8(absl::string_view text);

}  // namespace smime

#endif  // SMIME_COMMON_UTF8_H_
