// Key selectors as a client sends them (email, label, hex id, free text,
// RFC 7512 pkcs11: URIs), parsed and resolved against an empty key list,
// and the URI parser on its own.
#include "absl/time/time.h"
#include "agent/engine/key_resolver.h"
#include "tests/fuzz/fuzz_input.h"
#include "tokens/pkcs11_uri.h"

using smime::agent::KeySelector;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smime::fuzz::FuzzInput in(data, size);
  uint8_t kind = in.Byte();
  std::string value(in.Rest());

  auto uri = smime::tokens::Pkcs11Uri::Parse(value);
  CK_TOKEN_INFO info{};
  if (uri.ok()) {
    (void)uri->MatchesToken(info);
    (void)uri->HasTokenAttributes();
    (void)uri->id();
    (void)uri->object();
    (void)uri->type();
  }
  (void)smime::tokens::StripUriQuery(value);

  KeySelector sel;
  sel.kind = static_cast<KeySelector::Kind>(kind % 5);
  sel.value = value;
  (void)smime::agent::DescribeSelector(sel);
  smime::tokens::KeyList keys;
  (void)smime::agent::ResolveKey(keys, info, sel);
  (void)smime::agent::ResolveSigningKey(keys, info, sel, absl::FromUnixSeconds(1767225600));
  return 0;
}
