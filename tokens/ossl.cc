#include "tokens/ossl.h"

#include <openssl/err.h>

#include "absl/strings/str_cat.h"

namespace smime {

absl::Status SslError(absl::StatusCode code, absl::string_view what) {
  std::string detail;
  unsigned long err;
  char buf[256];
  while ((err = ERR_get_error()) != 0) {
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!detail.empty()) detail += "; ";
    detail += buf;
  }
  if (detail.empty()) return absl::Status(code, std::string(what));
  return absl::Status(code, absl::StrCat(what, ": ", detail));
}

void ClearSslErrors() { ERR_clear_error(); }

}  // namespace smime
