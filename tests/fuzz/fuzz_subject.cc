// The CSR subject parser ("/CN=.../O=...", openssl req -subj syntax) and
// the email check a certificate request's subjectAltName goes through.
#include "agent/engine/csr.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  (void)smime::agent::ParseSubject(text);
  (void)smime::agent::ValidateEmail(text);
  return 0;
}
