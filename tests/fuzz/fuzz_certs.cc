// Certificate files a client imports or passes as trust anchors,
// recipients and intermediates: one DER certificate, PEM, PEM bundles; the
// strict import parser and the engine's parser.
#include "agent/engine/cert_import.h"
#include "agent/engine/smime_engine.h"
#include "tests/fuzz/fuzz_input.h"
#include "tokens/certificate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto strict = smime::agent::ParseCertificateFile(bytes);
  if (strict.ok()) {
    for (const auto& c : *strict) (void)smime::tokens::Summarize(c.get());
  }
  auto lenient = smime::agent::ParseCertificates(bytes);
  if (lenient.ok()) {
    for (const auto& c : *lenient) (void)smime::tokens::Summarize(c.get());
  }
  return 0;
}
