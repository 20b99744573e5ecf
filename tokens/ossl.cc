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

SslPtr<ECDSA_SIG> EcdsaSigFromRaw(absl::string_view r_s) {
  if (r_s.empty() || r_s.size() % 2 != 0) return nullptr;
  const size_t half = r_s.size() / 2;
  const auto* p = reinterpret_cast<const unsigned char*>(r_s.data());
  SslPtr<ECDSA_SIG> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(p, static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(p + half, static_cast<int>(half), nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ClearSslErrors();
    return nullptr;
  }
  return sig;
}

absl::StatusOr<std::string> EcdsaRawToDer(absl::string_view r_s) {
  if (r_s.empty() || r_s.size() % 2 != 0) return absl::InternalError("token returned a malformed ECDSA signature");
  SslPtr<ECDSA_SIG> sig = EcdsaSigFromRaw(r_s);
  if (!sig) return absl::InternalError("cannot encode ECDSA signature");
  std::string der = DerString(sig.get(), i2d_ECDSA_SIG);
  if (der.empty()) return absl::InternalError("cannot encode ECDSA signature");
  return der;
}

}  // namespace smime
