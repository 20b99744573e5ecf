#include "tests/testing/ossl_verify.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <memory>
#include <stdexcept>

namespace smime::testing {
namespace {
std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> LoadPub(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) throw std::runtime_error("not a PEM public key");
  return {key, EVP_PKEY_free};
}
}  // namespace

std::string Sha256(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

bool VerifyDigest(const std::string& pub_pem, const std::string& digest, const std::string& sig,
                  Padding padding) {
  auto key = LoadPub(pub_pem);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key.get(), nullptr);
  bool ok = ctx != nullptr && EVP_PKEY_verify_init(ctx) == 1 &&
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1;
  if (ok && EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA) {
    ok = EVP_PKEY_CTX_set_rsa_padding(ctx, padding == Padding::kPss ? RSA_PKCS1_PSS_PADDING
                                                                     : RSA_PKCS1_PADDING) == 1;
    if (ok && padding == Padding::kPss) {
      ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
  }
  ok = ok && EVP_PKEY_verify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(digest.data()), digest.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

std::string RsaEncrypt(const std::string& pub_pem, const std::string& plain, Padding padding) {
  auto key = LoadPub(pub_pem);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key.get(), nullptr);
  if (ctx == nullptr || EVP_PKEY_encrypt_init(ctx) != 1) throw std::runtime_error("encrypt init");
  int pad = padding == Padding::kPkcs1 ? RSA_PKCS1_PADDING : RSA_PKCS1_OAEP_PADDING;
  EVP_PKEY_CTX_set_rsa_padding(ctx, pad);
  if (padding == Padding::kOaepSha256) {
    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256());
    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256());
  }
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(plain.data());
  EVP_PKEY_encrypt(ctx, nullptr, &len, in, plain.size());
  std::string out(len, '\0');
  if (EVP_PKEY_encrypt(ctx, reinterpret_cast<unsigned char*>(out.data()), &len, in, plain.size()) != 1) {
    EVP_PKEY_CTX_free(ctx);
    throw std::runtime_error("encrypt failed");
  }
  EVP_PKEY_CTX_free(ctx);
  out.resize(len);
  return out;
}

}  // namespace smime::testing
