// What Verify reads from a stranger: a multipart/signed or opaque S/MIME
// message, bare DER or PEM CMS, with or without detached content, checked
// against a fixed trust anchor (the engine needs no token to verify). The
// last byte picks the options (last, so a seed taken as it is from another
// implementation keeps its first bytes); with bit 0 set the rest is split
// at the first NUL into the signature and the detached content.
#include "agent/engine/byte_stream.h"
#include "agent/engine/smime_engine.h"
#include "tests/fuzz/fuzz_certgen.h"
#include "tests/fuzz/fuzz_input.h"

using smime::agent::SmimeEngine;
using smime::agent::StringSource;
using smime::agent::VerifyOptions;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t opts = data[size - 1];
  smime::fuzz::FuzzInput in(data, size - 1);
  absl::string_view signature, content;
  if (opts & 1) {
    signature = in.Until('\0');
    content = in.Rest();
  } else {
    signature = in.Rest();
  }
  VerifyOptions options;
  options.trust_anchors.push_back(smime::fuzz::FuzzCa());
  options.signature_only = opts & 2;
  options.binary = opts & 4;
  options.any_purpose = opts & 8;
  options.at_signing_time = opts & 16;

  SmimeEngine engine(nullptr);
  StringSource input(signature, 1 + (opts >> 5) * 4096);
  StringSource detached(content);
  (void)engine.Verify(input, (opts & 1) ? &detached : nullptr, options);
  return 0;
}
