// ParseCertificates (tokens/certificate.h): certificates from the bytes a
// user or a mail client hands over, strict or lenient.
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"
#include "tokens/ossl.h"

namespace smime::tokens {
namespace {

using CertPtr = std::shared_ptr<X509>;
using Certs = std::vector<CertPtr>;

absl::Status TooMany(size_t max) {
  return absl::InvalidArgumentError(absl::StrCat("the file holds more than ", max, " certificates"));
}

// One DER certificate that must fill `der` exactly.
absl::StatusOr<CertPtr> ParseExactDer(absl::string_view der, absl::string_view where) {
  const unsigned char* start = reinterpret_cast<const unsigned char*>(der.data());
  // The outer header says how long the certificate is: tells a truncated
  // file from one that is not a certificate at all.
  const unsigned char* p = start;
  long content_len = 0;
  int tag = 0, cls = 0;
  int hdr = ASN1_get_object(&p, &content_len, &tag, &cls, static_cast<long>(der.size()));
  ClearSslErrors();
  if (hdr & 0x80) {
    if (tag == V_ASN1_SEQUENCE && content_len > 0 && (hdr & V_ASN1_CONSTRUCTED)) {
      size_t want = static_cast<size_t>(p - start) + static_cast<size_t>(content_len);
      return absl::InvalidArgumentError(absl::StrCat(where, " is truncated: its DER says ", want,
                                                     " bytes, there are ", der.size()));
    }
    return absl::InvalidArgumentError(absl::StrCat(where, " is not DER (bad ASN.1 header)"));
  }
  p = start;
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (cert == nullptr) {
    ClearSslErrors();
    return absl::InvalidArgumentError(
        absl::StrCat(where, " is DER but not an X.509 certificate (a request, a key, PKCS#7 or PKCS#12?)"));
  }
  CertPtr out(cert, X509_free);
  size_t used = static_cast<size_t>(p - start);
  if (used != der.size()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has ", der.size() - used, " bytes after the certificate"));
  }
  return out;
}

// What a PEM block that is not a certificate is, in words a user can act on.
absl::Status WrongPemBlock(const std::string& name) {
  if (absl::StrContains(name, "PRIVATE KEY")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the file holds a private key (PEM \"", name,
        "\"); import-cert takes certificates only and reads no key material"));
  }
  if (absl::StrContains(name, "CERTIFICATE REQUEST")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the file holds a certificate request (PEM \"", name, "\"), not a certificate; have a CA sign it first"));
  }
  if (name == "PKCS7") {
    return absl::InvalidArgumentError(
        "the file holds PKCS#7 (PEM \"PKCS7\"); extract its certificates with openssl pkcs7 -print_certs");
  }
  return absl::InvalidArgumentError(absl::StrCat("the file holds a PEM block \"", name, "\"; expected \"CERTIFICATE\""));
}

absl::StatusOr<Certs> ParseStrictPem(absl::string_view data, size_t max) {
  ClearSslErrors();
  SslPtr<BIO> bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  Certs out;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &der, &len) != 1) {
      unsigned long err = ERR_peek_last_error();
      ClearSslErrors();
      // No further "-----BEGIN" line: the normal end of a bundle.
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) break;
      return absl::InvalidArgumentError(absl::StrCat(
          "PEM block ", out.size() + 1, " is malformed (truncated, or its base64 or END line is broken)"));
    }
    std::string block_name(name);
    std::string block(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    if (block_name != "CERTIFICATE" && block_name != "X509 CERTIFICATE") return WrongPemBlock(block_name);
    if (out.size() == max) return TooMany(max);
    ASSIGN_OR_RETURN(CertPtr cert, ParseExactDer(block, absl::StrCat("PEM certificate ", out.size() + 1)));
    out.push_back(std::move(cert));
  }
  if (out.empty()) return absl::InvalidArgumentError("the file holds no PEM \"CERTIFICATE\" block");
  return out;
}

absl::StatusOr<Certs> ParseStrict(absl::string_view data, size_t max) {
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(data);
  if (trimmed.empty()) return absl::InvalidArgumentError("the certificate file is empty");
  if (static_cast<unsigned char>(data[0]) == 0x30) {
    ASSIGN_OR_RETURN(CertPtr cert, ParseExactDer(data, "the DER certificate"));
    return Certs{std::move(cert)};
  }
  if (absl::StrContains(data, "-----BEGIN ")) return ParseStrictPem(data, max);
  return absl::InvalidArgumentError(
      "the file is neither a DER certificate nor PEM (no \"-----BEGIN CERTIFICATE-----\" line)");
}

absl::StatusOr<Certs> ParseLenient(absl::string_view data, size_t max) {
  ClearSslErrors();
  Certs out;
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(data);
  if (!trimmed.empty() && static_cast<unsigned char>(trimmed[0]) == 0x30) {
    ASSIGN_OR_RETURN(CertPtr cert, ParseDerCertificate(trimmed));
    out.push_back(std::move(cert));
    return out;
  }
  SslPtr<BIO> bio(BIO_new_mem_buf(trimmed.data(), static_cast<int>(trimmed.size())));
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (out.size() == max) {
      X509_free(cert);
      ClearSslErrors();
      return TooMany(max);
    }
    out.push_back(CertPtr(cert, X509_free));
  }
  if (out.empty()) return SslError(absl::StatusCode::kInvalidArgument, "no certificate found (expected DER or PEM)");
  ClearSslErrors();
  return out;
}

}  // namespace

absl::StatusOr<Certs> ParseCertificates(absl::string_view data, CertificateParsing mode, size_t max_certificates) {
  switch (mode) {
    case CertificateParsing::kStrict: return ParseStrict(data, max_certificates);
    case CertificateParsing::kLenient: return ParseLenient(data, max_certificates);
  }
  return absl::InvalidArgumentError("unknown certificate parsing mode");
}

}  // namespace smime::tokens
