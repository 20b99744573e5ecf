#include "agent/engine/token_pkey.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>

#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "tokens/ossl.h"

namespace smime::agent {
namespace {

thread_local absl::Time t_deadline = absl::InfinitePast();
thread_local absl::Status* t_last_error = nullptr;

absl::Time CurrentDeadline() {
  return t_deadline == absl::InfinitePast() ? absl::Now() + absl::Seconds(30) : t_deadline;
}

void RecordError(const absl::Status& st) {
  if (t_last_error == nullptr) t_last_error = new absl::Status();
  *t_last_error = st;
}

// What an RSA/EC object created here points back to.
struct Binding {
  tokens::Token* token;
  std::shared_ptr<const tokens::Key> key;
};

int g_rsa_index = -1;
int g_ec_index = -1;
RSA_METHOD* g_rsa_method = nullptr;
EC_KEY_METHOD* g_ec_method = nullptr;
std::once_flag g_once;

void FreeBinding(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<Binding*>(ptr);
}

const Binding* RsaBinding(RSA* rsa) {
  return static_cast<const Binding*>(RSA_get_ex_data(rsa, g_rsa_index));
}
const Binding* EcBinding(const EC_KEY* ec) {
  return static_cast<const Binding*>(EC_KEY_get_ex_data(ec, g_ec_index));
}

int CopyOut(const absl::StatusOr<std::string>& r, unsigned char* to, size_t max) {
  if (!r.ok()) {
    RecordError(r.status());
    return -1;
  }
  if (r->size() > max) return -1;
  std::memcpy(to, r->data(), r->size());
  return static_cast<int>(r->size());
}

// One RSA private-key operation on the token, for OpenSSL: `pkcs1` with
// PKCS#1 v1.5 padding, `raw` with none (OpenSSL does PSS or OAEP itself).
// Our copy of the result is wiped once handed over (a decrypted key).
int RsaPrivateOp(int flen, const unsigned char* from, unsigned char* to, RSA* rsa, int padding,
                 tokens::Token::Primitive pkcs1, tokens::Token::Primitive raw) {
  const Binding* b = RsaBinding(rsa);
  if (b == nullptr) return -1;
  tokens::Token::Primitive p;
  if (padding == RSA_PKCS1_PADDING) {
    p = pkcs1;
  } else if (padding == RSA_NO_PADDING) {
    p = raw;
  } else {
    return -1;
  }
  auto r = b->token->PrivateOp(*b->key, p,
                               absl::string_view(reinterpret_cast<const char*>(from), flen),
                               CurrentDeadline());
  int n = CopyOut(r, to, static_cast<size_t>(RSA_size(rsa)));
  if (r.ok()) OPENSSL_cleanse(const_cast<char*>(r->data()), r->size());
  return n;
}

int RsaPrivEnc(int flen, const unsigned char* from, unsigned char* to, RSA* rsa, int padding) {
  using P = tokens::Token::Primitive;
  // Raw: PSS, encoded by OpenSSL.
  return RsaPrivateOp(flen, from, to, rsa, padding, P::kRsaPkcs1Sign, P::kRsaRawSign);
}

int RsaPrivDec(int flen, const unsigned char* from, unsigned char* to, RSA* rsa, int padding) {
  using P = tokens::Token::Primitive;
  // Raw: OAEP, checked by OpenSSL.
  return RsaPrivateOp(flen, from, to, rsa, padding, P::kRsaPkcs1Decrypt, P::kRsaRawDecrypt);
}

ECDSA_SIG* EcSignSig(const unsigned char* dgst, int dlen, const BIGNUM*, const BIGNUM*, EC_KEY* ec) {
  const Binding* b = EcBinding(ec);
  if (b == nullptr) return nullptr;
  auto r = b->token->PrivateOp(*b->key, tokens::Token::Primitive::kEcdsa,
                               absl::string_view(reinterpret_cast<const char*>(dgst), dlen),
                               CurrentDeadline());
  if (!r.ok()) {
    RecordError(r.status());
    return nullptr;
  }
  // The token gives r||s; OpenSSL wants an ECDSA_SIG it then owns.
  return EcdsaSigFromRaw(*r).release();
}

int EcSign(int, const unsigned char* dgst, int dlen, unsigned char* sig, unsigned int* siglen,
           const BIGNUM* kinv, const BIGNUM* r, EC_KEY* ec) {
  SslPtr<ECDSA_SIG> s(EcSignSig(dgst, dlen, kinv, r, ec));
  if (s == nullptr) return 0;
  unsigned char* p = sig;
  int len = i2d_ECDSA_SIG(s.get(), &p);
  if (len <= 0) return 0;
  *siglen = static_cast<unsigned int>(len);
  return 1;
}

int EcComputeKey(unsigned char** psec, size_t* pseclen, const EC_POINT* pub, const EC_KEY* ec) {
  const Binding* b = EcBinding(ec);
  if (b == nullptr) return 0;
  const EC_GROUP* group = EC_KEY_get0_group(ec);
  size_t len = EC_POINT_point2oct(group, pub, POINT_CONVERSION_UNCOMPRESSED, nullptr, 0, nullptr);
  std::string point(len, '\0');
  if (len == 0 || EC_POINT_point2oct(group, pub, POINT_CONVERSION_UNCOMPRESSED,
                                     reinterpret_cast<unsigned char*>(point.data()), len, nullptr) != len) {
    return 0;
  }
  auto r = b->token->EcdhDerive(*b->key, point, CurrentDeadline());
  if (!r.ok()) {
    RecordError(r.status());
    return 0;
  }
  unsigned char* out = static_cast<unsigned char*>(OPENSSL_malloc(r->size()));
  if (out == nullptr) return 0;
  std::memcpy(out, r->data(), r->size());
  OPENSSL_cleanse(const_cast<char*>(r->data()), r->size());
  *psec = out;
  *pseclen = r->size();
  return 1;
}

void InitMethods() {
  g_rsa_index = RSA_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeBinding);
  g_ec_index = EC_KEY_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeBinding);
  g_rsa_method = RSA_meth_dup(RSA_PKCS1_OpenSSL());
  RSA_meth_set1_name(g_rsa_method, "smime-agent token RSA");
  RSA_meth_set_priv_enc(g_rsa_method, RsaPrivEnc);
  RSA_meth_set_priv_dec(g_rsa_method, RsaPrivDec);
  g_ec_method = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
  EC_KEY_METHOD_set_sign(g_ec_method, EcSign, nullptr, EcSignSig);
  EC_KEY_METHOD_set_compute_key(g_ec_method, EcComputeKey);
}

}  // namespace

DeadlineScope::DeadlineScope(absl::Time deadline) : previous_(t_deadline) { t_deadline = deadline; }
DeadlineScope::~DeadlineScope() { t_deadline = previous_; }

absl::Status TakeLastTokenError() {
  if (t_last_error == nullptr) return absl::OkStatus();
  absl::Status st = std::move(*t_last_error);
  *t_last_error = absl::OkStatus();
  return st;
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> TokenPkey(tokens::Token* token,
                                                    std::shared_ptr<const tokens::Key> key) {
  std::call_once(g_once, InitMethods);
  if (key->public_key() == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the token holds no public key or certificate for ", tokens::Describe(*key)));
  }
  SslPtr<EVP_PKEY> pkey(EVP_PKEY_new());
  if (!pkey) return absl::ResourceExhaustedError("out of memory");
  if (key->algorithm() == tokens::KeyAlgorithm::kRsa) {
    RSA* rsa = EVP_PKEY_get1_RSA(key->public_key());  // a legacy copy of n, e
    if (rsa == nullptr) return SslError(absl::StatusCode::kInternal, "cannot read RSA public key");
    RSA_set_method(rsa, g_rsa_method);
    RSA_set_ex_data(rsa, g_rsa_index, new Binding{token, key});
    if (EVP_PKEY_assign_RSA(pkey.get(), rsa) != 1) {
      RSA_free(rsa);
      return SslError(absl::StatusCode::kInternal, "cannot wrap RSA key");
    }
  } else if (key->algorithm() == tokens::KeyAlgorithm::kEc) {
    EC_KEY* ec = EVP_PKEY_get1_EC_KEY(key->public_key());
    if (ec == nullptr) return SslError(absl::StatusCode::kInternal, "cannot read EC public key");
    EC_KEY_set_method(ec, g_ec_method);
    EC_KEY_set_ex_data(ec, g_ec_index, new Binding{token, key});
    if (EVP_PKEY_assign_EC_KEY(pkey.get(), ec) != 1) {
      EC_KEY_free(ec);
      return SslError(absl::StatusCode::kInternal, "cannot wrap EC key");
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(tokens::Describe(*key), " has an unsupported type"));
  }
  return std::shared_ptr<EVP_PKEY>(pkey.release(), EVP_PKEY_free);
}

}  // namespace smime::agent
