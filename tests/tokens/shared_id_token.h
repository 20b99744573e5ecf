// A throwaway SoftHSM token whose keys share CKA_IDs, made by other tools
// (openssl, pkcs11-tool) before any test loads the module: RSA key pairs
// "r1" and "r2" under CKA_ID 0a and EC P-256 pairs "e1" and "e2" under 0b,
// each imported with its public key object and a self-signed certificate
// (NAME@example.com) under the same CKA_ID and label; and two EC pairs made
// on the token, both CKA_ID 0c and label "twin". Leaves in the token's
// directory, for checking: NAME.pub (DER SubjectPublicKeyInfo), NAME.pem
// (the same as PEM) and NAME.crt (DER certificate).
#ifndef SMIME_TESTS_TOKENS_SHARED_ID_TOKEN_H_
#define SMIME_TESTS_TOKENS_SHARED_ID_TOKEN_H_

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tests/testing/test_env.h"

namespace smime::testing {

class SharedIdToken {
 public:
  explicit SharedIdToken(const std::string& label) : token_(MakeToken(label, /*with_test_keys=*/false)) {
    pin_ = ReadFile(token_.pin_file);
    while (!pin_.empty() && pin_.back() == '\n') pin_.pop_back();
    for (const auto& [name, id, alg] : {std::tuple{"r1", "0a", "RSA"}, std::tuple{"r2", "0a", "RSA"},
                                        std::tuple{"e1", "0b", "EC"}, std::tuple{"e2", "0b", "EC"}}) {
      Import(name, id, alg);
    }
    for (int i = 0; i < 2; ++i) {
      Pkcs11Tool({"--keypairgen", "--key-type", "EC:prime256v1", "--id", "0c", "--label", "twin", "--usage-sign",
                  "--usage-derive"});
    }
  }
  const TestToken& token() const { return token_; }
  const std::string& pin() const { return pin_; }

 private:
  void Pkcs11Tool(std::vector<std::string> args) {
    std::vector<std::string> argv = {"pkcs11-tool", "--module", kSoftHsmModule, "--token-label", token_.label,
                                     "--login",     "--pin",    pin_};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv, WithEnv({{"SOFTHSM2_CONF", token_.conf}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void Ssl(std::vector<std::string> args) {
    CommandResult r = Openssl(std::move(args));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void Import(const std::string& name, const std::string& id, const std::string& alg) {
    std::string key = token_.Path(name + ".key");
    Ssl({"genpkey", "-algorithm", alg, "-pkeyopt", alg == "RSA" ? "rsa_keygen_bits:2048" : "ec_paramgen_curve:P-256",
         "-out", key});
    Ssl({"req", "-x509", "-new", "-key", key, "-subj", "/CN=" + name, "-days", "30", "-addext",
         "subjectAltName=email:" + name + "@example.com", "-outform", "DER", "-out", token_.Path(name + ".crt")});
    Ssl({"pkey", "-in", key, "-outform", "DER", "-out", key + ".der"});
    Ssl({"pkey", "-in", key, "-pubout", "-outform", "DER", "-out", token_.Path(name + ".pub")});
    Ssl({"pkey", "-in", key, "-pubout", "-out", token_.Path(name + ".pem")});
    std::string usage = alg == "RSA" ? "--usage-decrypt" : "--usage-derive";
    Pkcs11Tool({"--write-object", key + ".der", "--type", "privkey", "--id", id, "--label", name, "--usage-sign", usage,
                "--sensitive", "--private"});
    Pkcs11Tool({"--write-object", token_.Path(name + ".pub"), "--type", "pubkey", "--id", id, "--label", name});
    Pkcs11Tool({"--write-object", token_.Path(name + ".crt"), "--type", "cert", "--id", id, "--label", name});
  }

  TestToken token_;
  std::string pin_;
};

}  // namespace smime::testing

#endif  // SMIME_TESTS_TOKENS_SHARED_ID_TOKEN_H_
