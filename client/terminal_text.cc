#include "client/terminal_text.h"

#include <cstdint>

#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace smime::client {

std::string Printable(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<uint8_t>(text[i]);
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0 || (n == 1 && (b < 0x20 || b == 0x7F))) {
      absl::StrAppendFormat(&out, "\\x%02x", b);
      i += 1;
    } else if (n == 2 && b == 0xC2 && static_cast<uint8_t>(text[i + 1]) <= 0x9F) {
      absl::StrAppendFormat(&out, "\\u%04x", static_cast<uint8_t>(text[i + 1]));
      i += 2;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  return out;
}

}  // namespace smime::client
