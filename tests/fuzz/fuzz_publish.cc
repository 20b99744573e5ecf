// Publication records for an address a certificate carries: the local part
// and domain split, the RFC 8162 SMIMEA owner name, the TXT record and the
// .well-known file name, from a certificate whose subjectAltName email is
// the fuzzed bytes; and the DNS label escaping on its own.
#include "agent/engine/publish.h"
#include "tests/fuzz/fuzz_certgen.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smime::fuzz::FuzzInput in(data, size);
  uint8_t opts = in.Byte();
  absl::string_view email = in.Until('\n');
  absl::string_view url_base = in.Rest();

  (void)smime::agent::EscapeDnsLabel(email);
  size_t at = email.rfind('@');
  if (at != absl::string_view::npos) {
    (void)smime::agent::SmimeaOwnerName(email.substr(0, at), email.substr(at + 1));
  }
  std::shared_ptr<X509> cert = smime::fuzz::FuzzLeafWithEmail(email);
  if (!cert) return 0;
  smime::agent::PublishOptions options;
  options.url_base = std::string(url_base);
  options.full = opts & 1;
  auto set = smime::agent::DescribePublication(cert.get(), options, absl::Now());
  if (set.ok()) {
    for (const auto& p : set->publications) {
      (void)p.txt.zone_line();
      (void)p.smimea.zone_line();
    }
  }
  return 0;
}
