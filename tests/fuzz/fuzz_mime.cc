// MIME framing a client's message goes through before it is signed or
// encrypted: the header split (SplitHeaderBlock, EntitySource over pieces
// of any size), header lookup and CRLF canonicalisation.
#include "agent/engine/mime.h"

#include "agent/engine/byte_stream.h"
#include "tests/fuzz/fuzz_input.h"

using smime::agent::EntitySource;
using smime::agent::StringSource;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smime::fuzz::FuzzInput in(data, size);
  // The piece size the message arrives in: 1..256 bytes, so CR/LF pairs
  // and the blank line fall across piece boundaries.
  size_t piece = 1 + in.Byte();
  absl::string_view message = in.Rest();

  (void)smime::agent::ToCrlf(message);
  std::string crlf;
  smime::agent::CrlfCanonicalizer canon;
  for (size_t i = 0; i < message.size(); i += piece) canon.Append(message.substr(i, piece), &crlf);

  size_t blank = crlf.find("\r\n\r\n");
  absl::string_view header = absl::string_view(crlf).substr(0, blank);
  (void)smime::agent::SplitHeaderBlock(header);
  (void)smime::agent::HeaderValue(header, "From");
  (void)smime::agent::HeaderValue(header, "Content-Type");

  StringSource source(message, piece);
  EntitySource entity(&source);
  if (entity.ReadHeader().ok()) {
    std::string chunk;
    while (entity.Next(&chunk)) {
    }
  }
  return 0;
}
