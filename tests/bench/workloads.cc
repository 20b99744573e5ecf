#include "tests/bench/workloads.h"

#include <openssl/pem.h>  // before cms.h
#include <openssl/cms.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/bench/options.h"
#include "tokens/ossl_types.h"

namespace smime::bench {

namespace v1 = ::smime::agent::v1;

namespace {

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return SslError(absl::StatusCode::kInternal, "RAND_bytes");
  }
  return out;
}

// Checks `signature` over the SHA-256 `digest` with the public key, the way
// a relying party would (PKCS#1 v1.5 for RSA, DER ECDSA-Sig-Value for EC).
absl::Status VerifySignature(EVP_PKEY* public_key, absl::string_view digest,
                             absl::string_view signature) {
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, public_key, nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot set up signature verification");
  }
  if (EVP_PKEY_get_base_id(public_key) == EVP_PKEY_RSA &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot select PKCS#1 v1.5 padding");
  }
  if (EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                      signature.size(), reinterpret_cast<const unsigned char*>(digest.data()),
                      digest.size()) != 1) {
    return SslError(absl::StatusCode::kDataLoss, "the signature does not verify");
  }
  return absl::OkStatus();
}

// RSAES-PKCS1-v1_5 encryption in software, as a sender's mail client does.
absl::StatusOr<std::string> EncryptPkcs1(EVP_PKEY* public_key, absl::string_view plaintext) {
  SslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, public_key, nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return SslError(absl::StatusCode::kInternal, "cannot set up RSA encryption");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(plaintext.data());
  size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, in, plaintext.size()) != 1) {
    return SslError(absl::StatusCode::kInternal, "RSA encryption");
  }
  std::string out(len, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in,
                       plaintext.size()) != 1) {
    return SslError(absl::StatusCode::kInternal, "RSA encryption");
  }
  out.resize(len);
  return out;
}

absl::StatusOr<std::string> EncryptTo(X509* cert, const std::string& entity) {
  SslPtr<BIO> in(BIO_new_mem_buf(entity.data(), static_cast<int>(entity.size())));
  BorrowedX509Stack recipients(sk_X509_new_null());
  sk_X509_push(recipients.get(), cert);
  SslPtr<CMS_ContentInfo> cms(CMS_encrypt(recipients.get(), in.get(), EVP_aes_256_cbc(), CMS_BINARY));
  if (cms == nullptr) return SslError(absl::StatusCode::kInternal, "CMS_encrypt");
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  int ok = SMIME_write_CMS(out.get(), cms.get(), nullptr, CMS_BINARY);
  if (ok != 1) return SslError(absl::StatusCode::kInternal, "SMIME_write_CMS");
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<std::vector<Workload>> MakeWorkloads(tokens::Token* token,
                                                    std::shared_ptr<const tokens::Key> rsa,
                                                    std::shared_ptr<const tokens::Key> ec) {
  if (rsa->public_key() == nullptr || ec->public_key() == nullptr) {
    return absl::InternalError("the generated keys have no public key on the token");
  }
  // Sign a digest as CMS does: SHA-256 of the signed attributes.
  ASSIGN_OR_RETURN(std::string digest, RandomBytes(32));
  ASSIGN_OR_RETURN(std::string secret, RandomBytes(kSecretBytes));
  ASSIGN_OR_RETURN(std::string ciphertext, EncryptPkcs1(rsa->public_key(), secret));

  auto deadline = [] { return absl::Now() + kCallTimeout; };
  std::vector<Workload> out;

  const v1::KeySelector rsa_selector = client::TextSelector(kRsaLabel);
  out.push_back(Workload{
      "rsa2048-sign", tokens::SignMechanismName(tokens::SignMechanism::kRsaPkcs1Sha256),
      [=] { return token->Sign(*rsa, tokens::SignMechanism::kRsaPkcs1Sha256, digest, deadline()); },
      [=](client::AgentClient& c) {
        return c.SignDigest(rsa_selector, v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, digest);
      },
      [=](const std::string& sig) { return VerifySignature(rsa->public_key(), digest, sig); }});

  const v1::KeySelector ec_selector = client::TextSelector(kEcLabel);
  out.push_back(Workload{
      "p256-sign", tokens::SignMechanismName(tokens::SignMechanism::kEcdsaSha256),
      [=] { return token->Sign(*ec, tokens::SignMechanism::kEcdsaSha256, digest, deadline()); },
      [=](client::AgentClient& c) {
        return c.SignDigest(ec_selector, v1::SIGNATURE_ALGORITHM_ECDSA_SHA256, digest);
      },
      [=](const std::string& sig) { return VerifySignature(ec->public_key(), digest, sig); }});

  out.push_back(Workload{
      "rsa2048-decrypt", tokens::DecryptMechanismName(tokens::DecryptMechanism::kRsaPkcs1),
      [=] {
        return token->Decrypt(*rsa, tokens::DecryptMechanism::kRsaPkcs1, ciphertext, deadline());
      },
      [=](client::AgentClient& c) {
        return c.DecryptKey(rsa_selector, v1::DECRYPT_PADDING_RSA_PKCS1, ciphertext);
      },
      [=](const std::string& plaintext) {
        return plaintext == secret
                   ? absl::OkStatus()
                   : absl::DataLossError("the decrypted key differs from the one encrypted");
      }});

  // A baseline without any token call: through the agent it costs the
  // transport, authorization and handler framework alone, the floor under
  // every key operation's added latency.
  auto sorted_labels = [](std::vector<std::string> labels) {
    std::sort(labels.begin(), labels.end());
    return absl::StrJoin(labels, ",");
  };
  // The keys on the token when the run starts: ours and the test keys
  // make-token.sh imported.
  std::vector<std::string> labels_at_start;
  for (const auto& key : *token->Keys()) labels_at_start.push_back(key->label());
  const std::string expected_labels = sorted_labels(std::move(labels_at_start));
  if (!absl::StrContains(expected_labels, kRsaLabel) || !absl::StrContains(expected_labels, kEcLabel)) {
    return absl::InternalError(absl::StrCat("the token lists ", expected_labels,
                                            ", without the generated keys"));
  }
  auto list_in_process = [=]() -> absl::StatusOr<std::string> {
    std::vector<std::string> labels;
    for (const auto& key : *token->Keys()) labels.push_back(key->label());
    return sorted_labels(std::move(labels));
  };
  auto list_via_agent = [=](client::AgentClient& c) -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(std::vector<v1::KeyInfo> keys, c.ListKeys());
    std::vector<std::string> labels;
    for (const v1::KeyInfo& key : keys) labels.push_back(key.label());
    return sorted_labels(std::move(labels));
  };
  auto check_labels = [=](const std::string& labels) {
    if (labels == expected_labels) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("expected keys ", expected_labels, ", got ", labels));
  };
  out.push_back(
      Workload{"list-keys", "no token call", list_in_process, list_via_agent, check_labels});
  return out;
}

absl::StatusOr<std::shared_ptr<X509>> ReadCertFile(const std::string& path) {
  SslPtr<BIO> bio(BIO_new_file(path.c_str(), "r"));
  X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (cert == nullptr) {
    return SslError(absl::StatusCode::kFailedPrecondition, absl::StrCat("cannot read ", path));
  }
  return std::shared_ptr<X509>(cert, X509_free);
}

std::string MakeEntity(size_t size) {
  std::string out = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
  const std::string line = "The quick brown fox jumps over the lazy dog, 0123456789.\r\n";
  while (out.size() + line.size() <= size) out += line;
  out.append(size - out.size() > 2 ? size - out.size() - 2 : 0, 'x');
  if (out.size() + 2 <= size) out += "\r\n";
  return out;
}

absl::Status CheckSigned(const SmimeFixture& fx, const std::string& smime,
                         const std::string& entity) {
  SslPtr<BIO> in(BIO_new_mem_buf(smime.data(), static_cast<int>(smime.size())));
  BIO* content = nullptr;
  CMS_ContentInfo* cms = SMIME_read_CMS(in.get(), &content);
  SslPtr<BIO> content_owner(content);
  if (cms == nullptr) return SslError(absl::StatusCode::kDataLoss, "signed output does not parse");
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, fx.ca.get());
  SslPtr<BIO> out(BIO_new(BIO_s_mem()));
  int ok = CMS_verify(cms, nullptr, store, content, out.get(), CMS_BINARY);
  CMS_ContentInfo_free(cms);
  X509_STORE_free(store);
  if (ok != 1) return SslError(absl::StatusCode::kDataLoss, "signature does not verify");
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  if (std::string(data, static_cast<size_t>(len)) != entity) {
    return absl::DataLossError("the verified content differs from the message signed");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Workload>> MakeSmimeWorkloads(std::shared_ptr<const SmimeFixture> fx) {
  std::vector<Workload> out;
  const v1::KeySelector alice = client::TextSelector("alice");
  for (const auto& [size, suffix] : {std::pair<size_t, const char*>{4 << 10, "4k"},
                                     std::pair<size_t, const char*>{1 << 20, "1m"}}) {
    auto entity = std::make_shared<const std::string>(MakeEntity(size));
    v1::SignOptions sign_options;
    *sign_options.mutable_key() = alice;
    out.push_back(Workload{
        absl::StrCat("smime-sign-", suffix), "cms rsa-pkcs1-sha256",
        [=] { return fx->provider->Sign(fx->key.get(), fx->cert.get(), *entity); },
        [=](client::AgentClient& c) { return c.SignMessage(sign_options, *entity); },
        [=](const std::string& smime) { return CheckSigned(*fx, smime, *entity); }});

    ASSIGN_OR_RETURN(std::string encrypted, EncryptTo(fx->cert.get(), *entity));
    auto ciphertext = std::make_shared<const std::string>(std::move(encrypted));
    out.push_back(Workload{
        absl::StrCat("smime-decrypt-", suffix), "cms aes256-cbc rsa-pkcs1",
        [=] { return fx->provider->Decrypt(fx->key.get(), fx->cert.get(), *ciphertext); },
        [=](client::AgentClient& c) -> absl::StatusOr<std::string> {
          ASSIGN_OR_RETURN(client::AgentClient::Decrypted d, c.DecryptMessage(*ciphertext));
          return std::move(d.content);
        },
        [=](const std::string& plain) {
          return plain == *entity ? absl::OkStatus()
                                  : absl::DataLossError("the decrypted message differs");
        }});
  }
  return out;
}

}  // namespace smime::bench
