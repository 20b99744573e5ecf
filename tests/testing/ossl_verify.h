// Checks done with OpenSSL itself (not the project's code): signature
// verification and encryption to a public key in a PEM file.
#ifndef SMIME_TESTS_TESTING_OSSL_VERIFY_H_
#define SMIME_TESTS_TESTING_OSSL_VERIFY_H_

#include <string>

namespace smime::testing {

enum class Padding { kPkcs1, kPss, kOaepSha1, kOaepSha256 };

std::string Sha256(const std::string& data);
// Verifies `sig` over SHA-256 `digest` with the public key in `pub_pem`
// (PEM SubjectPublicKeyInfo). RSA: kPkcs1 or kPss (salt = digest length).
bool VerifyDigest(const std::string& pub_pem, const std::string& digest, const std::string& sig,
                  Padding padding);
// Encrypts `plain` to the RSA key in `pub_pem`.
std::string RsaEncrypt(const std::string& pub_pem, const std::string& plain, Padding padding);

}  // namespace smime::testing

#endif  // SMIME_TESTS_TESTING_OSSL_VERIFY_H_
