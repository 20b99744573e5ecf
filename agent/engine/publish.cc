#include "agent/engine/publish.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/engine/cert_policy.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/ossl.h"
#include "tokens/token.h"

namespace smime::agent {
namespace {

std::string Sha256(absl::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

bool IsHostname(absl::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  size_t label = 0;
  for (char c : domain) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (absl::ascii_isalnum(c) || c == '-' || c == '_') {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return label > 0;
}

// A path segment of RFC 3986 (pchar), other octets percent-encoded.
std::string UrlSegment(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || absl::StrContains("-._~!$&'()*+,;=:@", static_cast<char>(c))) {
      out += static_cast<char>(c);
    } else {
      absl::StrAppendFormat(&out, "%%%02X", c);
    }
  }
  return out;
}

// A TXT character-string: quoted, '"' and '\' escaped, at most 255 octets
// each (RFC 1035 §3.3.14), longer text split into several.
std::string TxtRdata(absl::string_view text) {
  std::string out;
  size_t off = 0;
  do {
    if (!out.empty()) out += ' ';
    out += '"';
    for (char c : text.substr(off, 255)) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
    off += 255;
  } while (off < text.size());
  return out;
}

}  // namespace

std::string DnsRecord::zone_line() const { return absl::StrCat(name, " IN ", type, " ", rdata); }

std::string EscapeDnsLabel(absl::string_view label) {
  std::string out;
  for (unsigned char c : label) {
    if (c <= 0x20 || c >= 0x7f) {
      absl::StrAppendFormat(&out, "\\%03d", c);
    } else {
      if (absl::StrContains(".\\\";()@$", static_cast<char>(c))) out += '\\';
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string SmimeaOwnerName(absl::string_view local_part, absl::string_view domain) {
  return absl::StrCat(tokens::HexEncode(Sha256(local_part).substr(0, 28)), "._smimecert.", domain, ".");
}

absl::StatusOr<PublicationSet> DescribePublication(X509* cert, const PublishOptions& options, absl::Time now) {
  ASSIGN_OR_RETURN(PolicyVerdict verdict, CheckCertificatePolicy(cert, CertUse::kPublish, now));
  tokens::CertificateSummary summary = tokens::Summarize(cert);
  if (summary.is_ca) {
    return absl::InvalidArgumentError(absl::StrCat("certificate \"", summary.subject,
                                                   "\" is a CA certificate; publish a person's certificate"));
  }
  if (!options.url_base.empty() && !absl::StartsWith(options.url_base, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the URL base must start with https:// (correspondents fetch certificates over TLS); got \"",
        options.url_base, "\""));
  }
  PublicationSet set;
  set.subject = summary.subject;
  set.warnings = std::move(verdict.warnings);
  SslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return SslError(absl::StatusCode::kInternal, "cannot write PEM");
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio.get(), &pem);
  set.certificate_pem.assign(pem, static_cast<size_t>(pem_len));

  std::string smimea_data = options.full ? tokens::HexEncode(tokens::CertificateDer(cert))
                                         : tokens::HexEncode(Sha256(tokens::PublicKeyDer(X509_get0_pubkey(cert))));
  // As written: SMIMEA hashes the local part's octets, so its case must
  // survive (Summarize lower-cases).
  for (const std::string& email : tokens::SubjectAltNameEmails(cert)) {
    size_t at = email.rfind('@');
    if (at == std::string::npos || at == 0) {
      set.warnings.push_back(absl::StrCat("\"", email, "\" is not an address with a local part and a domain; skipped"));
      continue;
    }
    absl::string_view local = absl::string_view(email).substr(0, at);
    // DNS names are case-insensitive: the domain is shown in lower case;
    // the local part is hashed and shown exactly as written.
    std::string domain = absl::AsciiStrToLower(absl::string_view(email).substr(at + 1));
    if (!IsHostname(domain)) {
      set.warnings.push_back(absl::StrCat("the domain of \"", email, "\" is not a DNS host name; skipped"));
      continue;
    }
    Publication p;
    p.email = email;
    p.smimea_selector = options.full ? 0 : 1;
    p.smimea_matching_type = options.full ? 0 : 1;
    p.smimea_data = smimea_data;
    p.smimea = {SmimeaOwnerName(local, domain), "SMIMEA",
                absl::StrCat(p.smimea_usage, " ", p.smimea_selector, " ", p.smimea_matching_type, " ", smimea_data)};
    if (absl::StrContains(local, '/') || local == "." || local == "..") {
      set.warnings.push_back(absl::StrCat("the local part of \"", email,
                                          "\" cannot be a file name; no .well-known file or TXT record for it"));
    } else {
      p.well_known_file = absl::StrCat(local, ".pem");
      std::string base = options.url_base.empty() ? absl::StrCat("https://", domain, "/.well-known/smime/")
                                                  : options.url_base;
      if (!absl::EndsWith(base, "/")) base += '/';
      p.url = absl::StrCat(base, UrlSegment(p.well_known_file));
      if (local.size() > 63) {
        set.warnings.push_back(absl::StrCat("the local part of \"", email,
                                            "\" is longer than a DNS label (63 octets); no TXT record for it"));
      } else {
        p.txt = {absl::StrCat(EscapeDnsLabel(local), "._smime.", domain, "."), "TXT", TxtRdata(p.url)};
      }
    }
    set.publications.push_back(std::move(p));
  }
  if (set.publications.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("certificate \"", summary.subject,
                                                   "\" has no email address that can be published in DNS"));
  }
  return set;
}

}  // namespace smime::agent
