#include "agent/engine/pkcs12.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/limits.h"
#include "common/status_macros.h"

namespace smime::agent {
namespace {

using CertPtr = std::shared_ptr<X509>;

// The key-derivation work a file has asked for so far, against the bounds,
// and the call's deadline.
class WorkBudget {
 public:
  WorkBudget(absl::Time deadline, const Pkcs12WorkLimits& limits) : deadline_(deadline), limits_(limits) {}

  // Admits one derivation of `iterations` (ASN.1 INTEGER; null means 1, as
  // RFC 7292 defaults the MAC's) for `what` ("its MAC", ...).
  absl::Status Admit(const ASN1_INTEGER* iterations, absl::string_view what) {
    int64_t n = 1;
    if (iterations != nullptr && ASN1_INTEGER_get_int64(&n, iterations) != 1) n = -1;
    ClearSslErrors();
    if (n < 1) {
      return absl::InvalidArgumentError(absl::StrCat("the PKCS#12 file is malformed (the iteration count of ", what,
                                                     " is not a positive number)"));
    }
    if (n > limits_.max_iterations) {
      return absl::InvalidArgumentError(absl::StrCat("the PKCS#12 file asks for ", n,
                                                     " iterations of key derivation for ", what,
                                                     "; the agent accepts at most ", limits_.max_iterations));
    }
    total_ += n;
    if (total_ > limits_.max_total_iterations) {
      return absl::InvalidArgumentError(absl::StrCat("the PKCS#12 file asks for more than ",
                                                     limits_.max_total_iterations,
                                                     " iterations of key derivation in all"));
    }
    if (absl::Now() > deadline_) {
      return absl::DeadlineExceededError("the call's deadline passed while the PKCS#12 file was being read");
    }
    return absl::OkStatus();
  }

  // Admits the derivation of password-based encryption `alg`: a PKCS#12 PBE
  // (PBEParameter) or PBES2 with PBKDF2. Other key derivations (scrypt) are
  // refused: nothing that writes PKCS#12 files uses them.
  absl::Status AdmitEncryption(const X509_ALGOR* alg, absl::string_view what) {
    const ASN1_OBJECT* oid = nullptr;
    X509_ALGOR_get0(&oid, nullptr, nullptr, alg);
    if (OBJ_obj2nid(oid) != NID_pbes2) {
      std::unique_ptr<PBEPARAM, decltype(&PBEPARAM_free)> pbe(
          static_cast<PBEPARAM*>(ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter)),
          PBEPARAM_free);
      if (!pbe) return Malformed(what);
      return Admit(pbe->iter, what);
    }
    std::unique_ptr<PBE2PARAM, decltype(&PBE2PARAM_free)> pbe2(
        static_cast<PBE2PARAM*>(ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter)),
        PBE2PARAM_free);
    if (!pbe2 || pbe2->keyfunc == nullptr) return Malformed(what);
    if (OBJ_obj2nid(pbe2->keyfunc->algorithm) != NID_id_pbkdf2) {
      return absl::InvalidArgumentError(absl::StrCat("the PKCS#12 file derives the key of ", what,
                                                     " with a function other than PBKDF2; not supported"));
    }
    std::unique_ptr<PBKDF2PARAM, decltype(&PBKDF2PARAM_free)> kdf(
        static_cast<PBKDF2PARAM*>(ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter)),
        PBKDF2PARAM_free);
    if (!kdf) return Malformed(what);
    return Admit(kdf->iter, what);
  }

 private:
  static absl::Status Malformed(absl::string_view what) {
    ClearSslErrors();
    return absl::InvalidArgumentError(
        absl::StrCat("the PKCS#12 file is malformed (unreadable encryption parameters of ", what, ")"));
  }

  absl::Time deadline_;
  Pkcs12WorkLimits limits_;
  int64_t total_ = 0;
};

std::string FriendlyName(const PKCS12_SAFEBAG* bag) {
  char* name = PKCS12_get_friendlyname(const_cast<PKCS12_SAFEBAG*>(bag));
  if (name == nullptr) return "";
  std::string out(name);
  OPENSSL_free(name);
  return out;
}

absl::Status ReadBags(const STACK_OF(PKCS12_SAFEBAG) * bags, const char* pass, int passlen, int depth,
                      WorkBudget& budget, Pkcs12Contents& out) {
  for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); ++i) {
    const PKCS12_SAFEBAG* bag = sk_PKCS12_SAFEBAG_value(bags, i);
    switch (PKCS12_SAFEBAG_get_nid(bag)) {
      case NID_keyBag:
      case NID_pkcs8ShroudedKeyBag: {
        PKCS8_PRIV_KEY_INFO* p8 = nullptr;
        bool shrouded = PKCS12_SAFEBAG_get_nid(bag) == NID_pkcs8ShroudedKeyBag;
        if (shrouded) {
          const X509_SIG* shrouded_key = PKCS12_SAFEBAG_get0_pkcs8(bag);
          if (shrouded_key == nullptr) return absl::InvalidArgumentError("the PKCS#12 file is malformed (an empty key bag)");
          const X509_ALGOR* alg = nullptr;
          X509_SIG_get0(shrouded_key, &alg, nullptr);
          RETURN_IF_ERROR(budget.AdmitEncryption(alg, "a private key"));
          p8 = PKCS12_decrypt_skey(bag, pass, passlen);
          if (p8 == nullptr) {
            ClearSslErrors();
            return absl::InvalidArgumentError(
                "the PKCS#12 private key cannot be decrypted (wrong PKCS#12 password, or an unsupported cipher)");
          }
        }
        const PKCS8_PRIV_KEY_INFO* info = shrouded ? p8 : PKCS12_SAFEBAG_get0_p8inf(bag);
        EVP_PKEY* key = info != nullptr ? EVP_PKCS82PKEY(info) : nullptr;
        // The ASN.1 free of PKCS8_PRIV_KEY_INFO clears its key octets.
        PKCS8_PRIV_KEY_INFO_free(p8);
        if (key == nullptr) {
          ClearSslErrors();
          return absl::InvalidArgumentError("the PKCS#12 private key is malformed or of an unsupported type");
        }
        if (out.keys.empty()) out.key_name = FriendlyName(bag);
        out.keys.emplace_back(key);
        break;
      }
      case NID_certBag: {
        if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate) break;
        X509* cert = PKCS12_SAFEBAG_get1_cert(bag);
        if (cert == nullptr) {
          ClearSslErrors();
          return absl::InvalidArgumentError("a certificate in the PKCS#12 file is malformed");
        }
        out.certs.emplace_back(cert, X509_free);
        out.cert_names.push_back(FriendlyName(bag));
        break;
      }
      case NID_safeContentsBag:
        if (depth > 3) return absl::InvalidArgumentError("the PKCS#12 file nests bags too deeply");
        RETURN_IF_ERROR(ReadBags(PKCS12_SAFEBAG_get0_safes(bag), pass, passlen, depth + 1, budget, out));
        break;
      default:
        break;  // CRL and secret bags: not ours to import
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Pkcs12Contents> ParsePkcs12(absl::string_view data, const tokens::SecretBuffer& password,
                                           absl::Time deadline, const Pkcs12WorkLimits& limits) {
  if (data.size() > kMaxPkcs12FileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the PKCS#12 file is larger than ", kMaxPkcs12FileBytes, " bytes"));
  }
  ClearSslErrors();
  const unsigned char* p = reinterpret_cast<const unsigned char*>(data.data());
  SslPtr<PKCS12> p12(d2i_PKCS12(nullptr, &p, static_cast<long>(data.size())));
  if (!p12) {
    ClearSslErrors();
    return absl::InvalidArgumentError("the file is not PKCS#12 (DER, as openssl pkcs12 -export writes it)");
  }
  // NUL-terminated copy for OpenSSL's char* interface; wiped on return.
  std::vector<char> pass(password.size() + 1, '\0');
  // An empty password's buffer may have no storage at all (data() null).
  if (!password.empty()) std::memcpy(pass.data(), password.data(), password.size());
  struct Wipe {
    std::vector<char>* v;
    ~Wipe() { OPENSSL_cleanse(v->data(), v->size()); }
  } wipe{&pass};
  const int passlen = static_cast<int>(password.size());
  WorkBudget budget(deadline, limits);
  if (PKCS12_mac_present(p12.get())) {
    const ASN1_INTEGER* mac_iterations = nullptr;
    PKCS12_get0_mac(nullptr, nullptr, nullptr, &mac_iterations, p12.get());
    RETURN_IF_ERROR(budget.Admit(mac_iterations, "its MAC"));
  }
  std::unique_ptr<STACK_OF(PKCS7), void (*)(STACK_OF(PKCS7)*)> safes(
      PKCS12_unpack_authsafes(p12.get()), [](STACK_OF(PKCS7)* s) { sk_PKCS7_pop_free(s, PKCS7_free); });
  if (!safes) {
    ClearSslErrors();
    return absl::InvalidArgumentError("the PKCS#12 file is malformed (no readable contents)");
  }
  // Every derivation visible before decryption is admitted before the first.
  for (int i = 0; i < sk_PKCS7_num(safes.get()); ++i) {
    const PKCS7* p7 = sk_PKCS7_value(safes.get(), i);
    if (OBJ_obj2nid(p7->type) != NID_pkcs7_encrypted) continue;
    if (p7->d.encrypted == nullptr || p7->d.encrypted->enc_data == nullptr) {
      return absl::InvalidArgumentError("the PKCS#12 file is malformed (an encrypted part without contents)");
    }
    RETURN_IF_ERROR(budget.AdmitEncryption(p7->d.encrypted->enc_data->algorithm, "its encrypted contents"));
  }
  if (PKCS12_mac_present(p12.get()) && PKCS12_verify_mac(p12.get(), pass.data(), passlen) != 1) {
    ClearSslErrors();
    return absl::InvalidArgumentError("wrong PKCS#12 password");
  }
  Pkcs12Contents out;
  absl::Status st;
  for (int i = 0; st.ok() && i < sk_PKCS7_num(safes.get()); ++i) {
    PKCS7* p7 = sk_PKCS7_value(safes.get(), i);
    STACK_OF(PKCS12_SAFEBAG)* bags = nullptr;
    int nid = OBJ_obj2nid(p7->type);
    if (nid == NID_pkcs7_data) {
      bags = PKCS12_unpack_p7data(p7);
    } else if (nid == NID_pkcs7_encrypted) {
      bags = PKCS12_unpack_p7encdata(p7, pass.data(), passlen);
    } else {
      continue;
    }
    if (bags == nullptr) {
      unsigned long err = ERR_peek_last_error();
      ClearSslErrors();
      st = absl::InvalidArgumentError(absl::StrCat(
          "the PKCS#12 file's contents cannot be decrypted",
          ERR_GET_REASON(err) == ERR_R_UNSUPPORTED || ERR_GET_LIB(err) == ERR_LIB_EVP
              ? " (a cipher OpenSSL does not offer here; is the legacy provider loaded?)"
              : ""));
      break;
    }
    st = ReadBags(bags, pass.data(), passlen, 0, budget, out);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
  }
  RETURN_IF_ERROR(st);
  return out;
}

}  // namespace smime::agent
