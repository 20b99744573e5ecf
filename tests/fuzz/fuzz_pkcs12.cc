// What import-p12 reads from a client: a PKCS#12 file (DER), opened with a
// password. The whole input is the file (DER ignores what follows the
// outer SEQUENCE, so a corpus file keeps working as a seed); its last byte
// picks the password from those the interop corpus files use, so mutations
// reach past the MAC into the safes and key bags. The iteration bounds are
// set low so each input stays quick: what the bounds themselves do is
// tested in lifecycle_p12_test.cc.
#include <cstring>
#include <iterator>

#include "absl/time/clock.h"
#include "agent/engine/pkcs12.h"
#include "tests/fuzz/fuzz_input.h"
#include "tokens/pin.h"

namespace {

constexpr const char* kPasswords[] = {"", "nss", "1234", "password", "v3-certs", "test", "foobar", "secret"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char* password = kPasswords[data[size - 1] % std::size(kPasswords)];
  smime::agent::Pkcs12WorkLimits limits;
  limits.max_iterations = 20'000;
  limits.max_total_iterations = 60'000;
  auto contents = smime::agent::ParsePkcs12(absl::string_view(reinterpret_cast<const char*>(data), size),
                                            smime::tokens::SecretBuffer(password, std::strlen(password)), absl::Now() + absl::Seconds(5),
                                            limits);
  (void)contents;
  return 0;
}
