// Text from the agent (labels, emails, subjects, warnings, error messages)
// on its way to a terminal. Whoever can put a certificate or a token object
// in front of the agent chooses that text; printed raw, a CR, LF or ESC in
// it could move the cursor, recolour or forge whole lines of smimectl's
// output (a second "good signature from ..." line). JSON output needs none
// of this: the JSON library escapes control characters itself.
#ifndef SMIME_CLIENT_TERMINAL_TEXT_H_
#define SMIME_CLIENT_TERMINAL_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace smime::client {

// `text` with every control character made visible: C0 (U+0000-U+001F,
// tab and line feed included) and DEL as \xNN, C1 (U+0080-U+009F) as
// \u00NN, and each byte that is not part of well-formed UTF-8 as \xNN. An
// escape sequence is thereby harmless, its ESC shown as \x1b. Everything
// else, backslashes included, is left as it is.
std::string Printable(absl::string_view text);

}  // namespace smime::client

#endif  // SMIME_CLIENT_TERMINAL_TEXT_H_
