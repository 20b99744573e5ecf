#include "tests/bench/provider_cms.h"

#include <openssl/pem.h>  // before cms.h
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/store.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "tokens/ossl_types.h"

namespace smime::bench {
namespace {

constexpr char kProviderPath[] = "/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so";

SslPtr<BIO> MemBio(absl::string_view data) {
  return SslPtr<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ProviderCms>> ProviderCms::Create(const std::string& work_dir,
                                                                  const std::string& pkcs11_module,
                                                                  const std::string& pin_file) {
  // The quirks are needed with SoftHSM: without no-deinit the provider's
  // C_Finalize at exit pulls the module from under the tokens layer (which
  // shares it in this process) and crashes.
  const std::string conf = absl::StrCat(work_dir, "/pkcs11-provider.cnf");
  {
    std::ofstream out(conf);
    out << "openssl_conf = openssl_init\n"
        << "[openssl_init]\nproviders = provider_sect\n"
        << "[provider_sect]\ndefault = default_sect\npkcs11 = pkcs11_sect\n"
        << "[default_sect]\nactivate = 1\n"
        << "[pkcs11_sect]\nmodule = " << kProviderPath << "\n"
        << "pkcs11-module-path = " << pkcs11_module << "\n"
        << "pkcs11-module-token-pin = file:" << pin_file << "\n"
        << "pkcs11-module-quirks = no-deinit no-operation-state\n"
        << "activate = 1\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", conf));
  }
  OSSL_LIB_CTX* libctx = OSSL_LIB_CTX_new();
  if (libctx == nullptr) return SslError(absl::StatusCode::kInternal, "OSSL_LIB_CTX_new");
  if (OSSL_LIB_CTX_load_config(libctx, conf.c_str()) != 1) {
    OSSL_LIB_CTX_free(libctx);
    return SslError(absl::StatusCode::kFailedPrecondition,
                    absl::StrCat("cannot load pkcs11-provider (", kProviderPath,
                                 "; Debian package pkcs11-provider)"));
  }
  return std::unique_ptr<ProviderCms>(new ProviderCms(libctx));
}

// The provider is configured no-deinit, and keys loaded from it may still
// be referenced by workloads being destroyed: the context lives as long as
// the process.
ProviderCms::~ProviderCms() = default;

absl::StatusOr<std::shared_ptr<EVP_PKEY>> ProviderCms::LoadPrivateKey(const std::string& uri) const {
  SslPtr<OSSL_STORE_CTX> store(
      OSSL_STORE_open_ex(uri.c_str(), libctx_, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr));
  if (!store) return SslError(absl::StatusCode::kNotFound, absl::StrCat("OSSL_STORE_open ", uri));
  while (!OSSL_STORE_eof(store.get())) {
    OSSL_STORE_INFO* info = OSSL_STORE_load(store.get());
    if (info == nullptr) break;
    EVP_PKEY* key = OSSL_STORE_INFO_get1_PKEY(info);
    OSSL_STORE_INFO_free(info);
    if (key != nullptr) {
      ClearSslErrors();
      return std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
    }
  }
  return SslError(absl::StatusCode::kNotFound, absl::StrCat("no private key at ", uri));
}

absl::StatusOr<std::string> ProviderCms::Sign(EVP_PKEY* key, X509* cert,
                                              absl::string_view entity) const {
  const unsigned int flags = CMS_DETACHED | CMS_BINARY | CMS_PARTIAL;
  SslPtr<CMS_ContentInfo> cms(CMS_sign_ex(nullptr, nullptr, nullptr, nullptr, flags, libctx_, nullptr));
  if (!cms || CMS_add1_signer(cms.get(), cert, key, EVP_sha256(), flags) == nullptr) {
    return SslError(absl::StatusCode::kInternal, "CMS_add1_signer");
  }
  auto data = MemBio(entity);
  if (CMS_final(cms.get(), data.get(), nullptr, flags) != 1) {
    return SslError(absl::StatusCode::kInternal, "CMS_final");
  }
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  auto again = MemBio(entity);
  if (SMIME_write_CMS(out.get(), cms.get(), again.get(), flags | CMS_REUSE_DIGEST | CMS_CRLFEOL) != 1) {
    return SslError(absl::StatusCode::kInternal, "SMIME_write_CMS");
  }
  return BioContents(out.get());
}

absl::StatusOr<std::string> ProviderCms::Decrypt(EVP_PKEY* key, X509* cert,
                                                 absl::string_view smime) const {
  auto in = MemBio(smime);
  // Parsed into an object of the provider's library context.
  CMS_ContentInfo* ci = CMS_ContentInfo_new_ex(libctx_, nullptr);
  SslPtr<CMS_ContentInfo> cms(ci != nullptr ? SMIME_read_CMS_ex(in.get(), 0, nullptr, &ci) : nullptr);
  if (!cms) {
    CMS_ContentInfo_free(ci);
    return SslError(absl::StatusCode::kInvalidArgument, "SMIME_read_CMS");
  }
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  if (CMS_decrypt(cms.get(), key, cert, nullptr, out.get(), 0) != 1) {
    return SslError(absl::StatusCode::kInternal, "CMS_decrypt");
  }
  return BioContents(out.get());
}

}  // namespace smime::bench
