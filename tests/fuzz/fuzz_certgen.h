// A throwaway CA and leaf certificates made in-process for fuzz targets that
// need a certificate around the fuzzed bytes (a trust anchor for verify, a
// certificate carrying a fuzzed email for publish).
#ifndef SMIME_TESTS_FUZZ_FUZZ_CERTGEN_H_
#define SMIME_TESTS_FUZZ_FUZZ_CERTGEN_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace smime::fuzz {

// A P-256 key made once per process.
EVP_PKEY* FuzzKey();
// A self-signed CA certificate over FuzzKey(), made once per process.
std::shared_ptr<X509> FuzzCa();
// An end-entity certificate over FuzzKey() issued by FuzzCa() with `email`
// as its subjectAltName rfc822Name (any bytes) and S/MIME key usages;
// null when OpenSSL refuses to encode it.
std::shared_ptr<X509> FuzzLeafWithEmail(absl::string_view email);

}  // namespace smime::fuzz

#endif  // SMIME_TESTS_FUZZ_FUZZ_CERTGEN_H_
