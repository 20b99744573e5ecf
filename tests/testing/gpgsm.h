// gpgsm as a test peer: a throwaway GNUPGHOME and key import.
#ifndef SMIME_TESTS_TESTING_GPGSM_H_
#define SMIME_TESTS_TESTING_GPGSM_H_

#include <string>

#include "tests/testing/test_env.h"

namespace smime::testing {

// The passphrase of the PKCS#12 files GpgsmImportKey makes; gpgsm asks for it
// again when it uses the imported key (pass it on --passphrase-fd).
inline constexpr const char* kGpgsmKeyPassphrase = "test";

// Creates `home` (0700) for gpgsm in batch mode: loopback pinentry, no CRL
// checks, and `trustlist` as trustlist.txt (may be empty).
void MakeGnupgHome(const std::string& home, const std::string& trustlist);

// Imports the private key `key_pem` with its certificate `cert_pem` (and
// `chain_pem`, may be empty) into gpgsm's `home`, the only way gpgsm takes a
// key: as a PKCS#12 file, exported here with PBE-SHA1-3DES because gpgsm 2.2
// cannot read OpenSSL 3's default PBES2/AES files.
//
// gpgsm 2.2.40 fails to decrypt about one such file in 200 ("error parsing
// or decrypting the PKCS#12 file"), depending only on the random salt: the
// same key exported again imports. So the export is retried, a few times, on
// that message only; any other failure is returned at once.
CommandResult GpgsmImportKey(const std::string& home, const std::string& key_pem, const std::string& cert_pem,
                             const std::string& chain_pem);

}  // namespace smime::testing

#endif  // SMIME_TESTS_TESTING_GPGSM_H_
