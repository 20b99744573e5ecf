// The in-process baseline for S/MIME: what an application does without the
// agent, OpenSSL's CMS code with the token key reached through OpenSSL 3's
// pkcs11-provider, in its own library context.
#ifndef SMIME_TESTS_BENCH_PROVIDER_CMS_H_
#define SMIME_TESTS_BENCH_PROVIDER_CMS_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace smime::bench {

class ProviderCms {
 public:
  // Loads pkcs11-provider for `pkcs11_module` in a fresh OSSL_LIB_CTX. The
  // provider reads the PIN from `pin_file` itself; `work_dir` receives its
  // configuration file.
  static absl::StatusOr<std::unique_ptr<ProviderCms>> Create(const std::string& work_dir,
                                                             const std::string& pkcs11_module,
                                                             const std::string& pin_file);
  ProviderCms(const ProviderCms&) = delete;
  ProviderCms& operator=(const ProviderCms&) = delete;
  ~ProviderCms();

  // The private key named by an RFC 7512 URI, as a provider-backed EVP_PKEY.
  absl::StatusOr<std::shared_ptr<EVP_PKEY>> LoadPrivateKey(const std::string& uri) const;

  // multipart/signed over a canonical (CRLF) MIME entity, SHA-256, the flags
  // `openssl cms -sign -binary` uses.
  absl::StatusOr<std::string> Sign(EVP_PKEY* key, X509* cert, absl::string_view entity) const;
  // Opens an S/MIME enveloped message for `cert`'s key.
  absl::StatusOr<std::string> Decrypt(EVP_PKEY* key, X509* cert, absl::string_view smime) const;

 private:
  explicit ProviderCms(OSSL_LIB_CTX* libctx) : libctx_(libctx) {}
  OSSL_LIB_CTX* libctx_;
};

}  // namespace smime::bench

#endif  // SMIME_TESTS_BENCH_PROVIDER_CMS_H_
