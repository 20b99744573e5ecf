// What a domain owner publishes so correspondents find a certificate: the
// https .well-known/smime/ file, a TXT record pointing at it, and the
// RFC 8162 SMIMEA record. Pure computation on the public certificate.
#ifndef SMIME_AGENT_ENGINE_PUBLISH_H_
#define SMIME_AGENT_ENGINE_PUBLISH_H_

#include <openssl/x509.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace smime::agent {

struct PublishOptions {
  // Ends in '/'; empty: "https://DOMAIN/.well-known/smime/".
  std::string url_base;
  // SMIMEA 3 0 0 (the whole certificate) instead of 3 1 1 (SHA-256 of the
  // SubjectPublicKeyInfo).
  bool full = false;
};

struct DnsRecord {
  std::string name;   // absolute, presentation form
  std::string type;   // "TXT", "SMIMEA"
  std::string rdata;  // presentation form
  std::string zone_line() const;
};

struct Publication {
  std::string email;  // as in the certificate
  // Empty (with a warning) when the local part cannot be a file name.
  std::string well_known_file;
  std::string url;
  DnsRecord txt;     // empty name when there is no URL to point to
  DnsRecord smimea;
  int smimea_usage = 3;
  int smimea_selector = 1;
  int smimea_matching_type = 1;
  std::string smimea_data;  // lower-case hex
};

struct PublicationSet {
  std::vector<Publication> publications;  // one per subjectAltName email
  std::string certificate_pem;
  std::string subject;
  std::vector<std::string> warnings;
};

// Checks `cert` with the certificate policy (CertUse::kPublish) and
// describes its records. INVALID_ARGUMENT for a CA certificate or one
// without an email address; FAILED_PRECONDITION when expired.
absl::StatusOr<PublicationSet> DescribePublication(X509* cert, const PublishOptions& options, absl::Time now);

// RFC 8162 §3: the local part's octets as written (no case folding),
// SHA2-256, the first 28 octets in hex, then "_smimecert", then the domain.
// Returns the absolute owner name, e.g.
// "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._smimecert.example.com.".
std::string SmimeaOwnerName(absl::string_view local_part, absl::string_view domain);

// One DNS label in zone-file presentation form (RFC 1035 §5.1): '.', '\',
// '"', ';', '(', ')', '@', '$' escaped with '\', other octets outside
// printable ASCII as \DDD.
std::string EscapeDnsLabel(absl::string_view label);

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_PUBLISH_H_
