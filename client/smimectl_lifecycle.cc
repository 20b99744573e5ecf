#include "client/smimectl_lifecycle.h"

#include <openssl/crypto.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli_files.h"
#include "client/client.h"
#include "client/lifecycle_client.h"
#include "client/terminal_text.h"
#include "common/limits.h"
#include "common/secret_file.h"
#include "common/status_macros.h"

namespace smime::client {
namespace {

// A password file, read by the rules the agent applies to PIN files
// (common/secret_file.h). The caller wipes the result.
absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  std::string out;
  RETURN_IF_ERROR(ReadSecretFile(path, "password file", "a password",
                                 [&](const char* data, size_t size) { out.assign(data, size); }));
  return out;
}

const char* RoleName(v1::CertificateRole role) {
  switch (role) {
    case v1::CERTIFICATE_ROLE_KEY: return "key";
    case v1::CERTIFICATE_ROLE_CHAIN: return "chain";
    case v1::CERTIFICATE_ROLE_CORRESPONDENT: return "correspondent";
    default: return "unknown";
  }
}

// A key as the verbs name it: "label" (id 0a1b...).
std::string KeyName(const v1::KeyInfo& key) {
  return absl::StrCat("\"", Printable(key.label()), "\" (id ", absl::BytesToHexString(key.id()), ")");
}

void PrintWarnings(const v1::ImportedCertificate& c) {
  for (const std::string& w : c.warnings()) std::cerr << "smimectl: warning: " << Printable(w) << "\n";
}

void PrintImported(const v1::ImportedCertificate& c) {
  std::string who = Printable(absl::StrCat(
      "\"", c.subject(), "\"", c.emails().empty() ? "" : absl::StrCat(" <", absl::StrJoin(c.emails(), ", "), ">")));
  if (!c.created()) {
    std::cout << "certificate " << who << " is already on the token; nothing changed\n";
  } else if (c.role() == v1::CERTIFICATE_ROLE_KEY) {
    std::cout << "stored certificate " << who << " for key \"" << Printable(c.key().label()) << "\" (id "
              << absl::BytesToHexString(c.id()) << "), valid until " << Rfc3339(c.not_after().seconds()) << "\n";
  } else if (c.role() == v1::CERTIFICATE_ROLE_CHAIN) {
    std::cout << "stored CA certificate " << who << " as a chain certificate\n";
  } else {
    std::cout << "stored certificate " << who
              << " as a correspondent (contact) certificate: its key is not on the token\n";
  }
  PrintWarnings(c);
}

nlohmann::json ImportedJson(const v1::ImportedCertificate& c) {
  nlohmann::json j = {
      {"role", RoleName(c.role())},
      {"created", c.created()},
      {"subject", c.subject()},
      {"emails", std::vector<std::string>(c.emails().begin(), c.emails().end())},
      {"not_before", Rfc3339(c.not_before().seconds())},
      {"not_after", Rfc3339(c.not_after().seconds())},
      {"id", absl::BytesToHexString(c.id())},
      {"label", c.label()},
      {"sha256_fingerprint", c.sha256_fingerprint()},
      {"warnings", std::vector<std::string>(c.warnings().begin(), c.warnings().end())},
  };
  if (c.has_key()) j["key_uri"] = c.key().uri();
  return j;
}

nlohmann::json RecordJson(const v1::DnsRecord& r) {
  return {{"name", r.name()}, {"type", r.type()}, {"rdata", r.rdata()}, {"zone_line", r.zone_line()}};
}

nlohmann::json PublicationJson(const v1::DescribePublicationResponse& resp) {
  nlohmann::json pubs = nlohmann::json::array();
  for (const auto& p : resp.publications()) {
    nlohmann::json j = {
        {"email", p.email()},
        {"well_known_file", p.well_known_file()},
        {"url", p.url()},
        {"smimea",
         {{"name", p.smimea().name()},
          {"usage", p.smimea_usage()},
          {"selector", p.smimea_selector()},
          {"matching_type", p.smimea_matching_type()},
          {"data", p.smimea_data()},
          {"zone_line", p.smimea().zone_line()}}},
    };
    if (p.has_txt()) j["txt"] = RecordJson(p.txt());
    pubs.push_back(std::move(j));
  }
  return {{"subject", resp.subject()},
          {"publications", std::move(pubs)},
          {"certificate_pem", resp.certificate_pem()},
          {"warnings", std::vector<std::string>(resp.warnings().begin(), resp.warnings().end())}};
}

// Zone-file text a person can paste: comments start with ';'.
void PrintPublication(const v1::DescribePublicationResponse& resp) {
  std::cout << "; certificate \"" << Printable(resp.subject()) << "\"\n";
  for (const auto& p : resp.publications()) {
    std::cout << ";\n; " << Printable(p.email()) << "\n";
    if (!p.url().empty()) {
      std::cout << "; https: serve the PEM certificate as .well-known/smime/" << Printable(p.well_known_file())
                << " at\n;   " << Printable(p.url()) << "\n";
    }
    if (p.has_txt()) std::cout << Printable(p.txt().zone_line()) << "\n";
    std::cout << Printable(p.smimea().zone_line()) << "\n";
  }
}

}  // namespace

std::unique_ptr<LifecycleCommands> LifecycleCommands::Add(CLI::App& app) {
  std::unique_ptr<LifecycleCommands> c(new LifecycleCommands());
  const char* kKeyHelp = "email, label, hex id or pkcs11: URI";

  c->csr_ = app.add_subcommand("csr", "make a PKCS#10 certificate request signed by a token key");
  c->csr_->add_option("--key", c->key_, kKeyHelp)->required();
  c->csr_->add_option("--subject", c->subject_, "subject as openssl writes it: /CN=Alice Example/O=Example Ltd")
      ->required();
  c->csr_->add_option("--email", c->emails_, "email address for subjectAltName (repeatable)")->required();
  c->csr_->add_option("--out", c->out_, "request file (PEM; '-' for stdout)")->required();
  c->csr_->add_flag("--der", c->der_, "DER instead of PEM");

  c->import_ = app.add_subcommand(
      "import-cert", "store certificates on the token: a key's own, CA (chain) and correspondents' certificates");
  c->import_->add_option("--in", c->in_, "DER, PEM or PEM bundle")->required();
  c->import_->add_flag("--json", c->json_, "JSON array for programs");

  c->import_p12_ = app.add_subcommand(
      "import-p12", "write a PKCS#12 file's private key onto the token (non-extractable) with its certificates");
  c->import_p12_->add_option("--in", c->in_, "PKCS#12 file (DER; modern or -legacy)")->required();
  c->import_p12_->add_option("--password-file", c->password_file_, "file holding the PKCS#12 password (chmod 600)")
      ->required();
  c->import_p12_->add_flag("--json", c->json_, "JSON for programs");

  c->retire_ = app.add_subcommand("retire", "retire a key from signing; it stays on the token and still decrypts");
  c->retire_->add_option("--key", c->key_, kKeyHelp)->required();
  c->retire_->add_flag("--undo", c->undo_, "reinstate a retired key: it signs again");
  c->delete_ = app.add_subcommand("delete", "destroy a key with its public key and certificates (needs --yes)");
  c->delete_->add_option("--key", c->key_, kKeyHelp)->required();
  c->delete_->add_flag("--yes", c->yes_, "yes, destroy it: mail encrypted to it will no longer open");

  c->contacts_ = app.add_subcommand("contacts", "list correspondents' certificates on the token (encrypt --to ADDRESS)");
  c->contacts_->add_flag("--json", c->json_, "JSON array for programs");

  c->publish_ = app.add_subcommand("publish", "print the .well-known, TXT and SMIMEA (RFC 8162) records for a certificate");
  auto* cert = c->publish_->add_option("--cert", c->cert_, "certificate file (DER or PEM)");
  auto* key = c->publish_->add_option("--key", c->key_, "publish this token key's certificate instead");
  cert->excludes(key);
  key->excludes(cert);
  c->publish_->add_option("--url-base", c->url_base_,
                          "where the files are served (default https://DOMAIN/.well-known/smime/)");
  c->publish_->add_flag("--full", c->full_, "SMIMEA 3 0 0 with the whole certificate instead of 3 1 1");
  c->publish_->add_flag("--json", c->json_, "JSON for programs");
  return c;
}

bool LifecycleCommands::Selected() const {
  return csr_->parsed() || import_->parsed() || import_p12_->parsed() || retire_->parsed() || delete_->parsed() ||
         contacts_->parsed() || publish_->parsed();
}

absl::Status LifecycleCommands::Run(const std::string& socket_path, absl::Duration timeout) {
  if (publish_->parsed() && cert_.empty() && key_.empty()) {
    return absl::InvalidArgumentError("publish needs --cert FILE or --key SEL");
  }
  ASSIGN_OR_RETURN(auto client, LifecycleClient::Connect(socket_path, timeout));
  if (csr_->parsed()) {
    ASSIGN_OR_RETURN(auto resp, client->CreateCsr(TextSelector(key_), subject_, emails_));
    RETURN_IF_ERROR(WriteFileAtomically(out_, der_ ? resp.csr_der() : Pem("CERTIFICATE REQUEST", resp.csr_der())));
    std::cerr << "smimectl: request for key " << KeyName(resp.key()) << " signed on the token\n";
  } else if (import_->parsed()) {
    ASSIGN_OR_RETURN(auto data, ReadFileLimited(in_, kMaxCertificateFileBytes));
    ASSIGN_OR_RETURN(auto resp, client->ImportCertificates(data));
    if (json_) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& c : resp.certificates()) arr.push_back(ImportedJson(c));
      std::cout << arr.dump(2) << "\n";
      for (const auto& c : resp.certificates()) PrintWarnings(c);
    } else {
      for (const auto& c : resp.certificates()) PrintImported(c);
    }
  } else if (import_p12_->parsed()) {
    ASSIGN_OR_RETURN(auto data, ReadFileLimited(in_, kMaxPkcs12FileBytes));
    ASSIGN_OR_RETURN(auto password, ReadPasswordFile(password_file_));
    auto imported = client->ImportPkcs12(data, password);
    OPENSSL_cleanse(password.data(), password.size());
    ASSIGN_OR_RETURN(auto resp, std::move(imported));
    if (json_) {
      nlohmann::json certs = nlohmann::json::array();
      for (const auto& c : resp.certificates()) certs.push_back(ImportedJson(c));
      nlohmann::json j = {{"label", resp.key().label()},
                          {"id", absl::BytesToHexString(resp.key().id())},
                          {"uri", resp.key().uri()},
                          {"certificates", std::move(certs)}};
      std::cout << j.dump(2) << "\n";
      for (const auto& c : resp.certificates()) PrintWarnings(c);
    } else {
      std::cout << "imported private key " << KeyName(resp.key()) << " onto the token, non-extractable\n";
      for (const auto& c : resp.certificates()) PrintImported(c);
    }
  } else if (contacts_->parsed()) {
    ASSIGN_OR_RETURN(auto resp, client->ListContacts());
    if (json_) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& c : resp.contacts()) {
        arr.push_back({{"emails", std::vector<std::string>(c.emails().begin(), c.emails().end())},
                       {"subject", c.subject()},
                       {"issuer", c.issuer()},
                       {"not_before", Rfc3339(c.not_before().seconds())},
                       {"not_after", Rfc3339(c.not_after().seconds())},
                       {"sha256_fingerprint", c.sha256_fingerprint()}});
      }
      std::cout << arr.dump(2) << "\n";
    } else if (resp.contacts().empty()) {
      std::cout << "no contacts; import a correspondent's certificate with import-cert\n";
    } else {
      for (const auto& c : resp.contacts()) {
        std::cout << Printable(absl::StrJoin(c.emails(), ",")) << "\t\"" << Printable(c.subject()) << "\"\tvalid until "
                  << Rfc3339(c.not_after().seconds()) << "\n";
      }
    }
  } else if (retire_->parsed()) {
    ASSIGN_OR_RETURN(auto resp, client->RetireKey(TextSelector(key_), undo_));
    if (undo_) {
      std::cout << "reinstated key " << KeyName(resp.key()) << "; status now " << Printable(resp.key().status())
                << "\n";
    } else {
      std::cout << "retired key " << KeyName(resp.key()) << " from signing; it stays on the token and still decrypts\n";
    }
  } else if (delete_->parsed()) {
    ASSIGN_OR_RETURN(auto resp, client->DeleteKey(TextSelector(key_), yes_));
    std::cout << "deleted key " << KeyName(resp.key()) << ": " << resp.objects_destroyed()
              << " token objects destroyed\n";
  } else if (publish_->parsed()) {
    v1::DescribePublicationRequest req;
    if (!cert_.empty()) {
      ASSIGN_OR_RETURN(auto data, ReadFileLimited(cert_, kMaxCertificateFileBytes));
      req.set_certificate(data);
    } else {
      *req.mutable_key() = TextSelector(key_);
    }
    req.set_url_base(url_base_);
    req.set_full(full_);
    ASSIGN_OR_RETURN(auto resp, client->DescribePublication(req));
    for (const std::string& w : resp.warnings()) std::cerr << "smimectl: warning: " << Printable(w) << "\n";
    if (json_) {
      std::cout << PublicationJson(resp).dump(2) << "\n";
    } else {
      PrintPublication(resp);
    }
  }
  return absl::OkStatus();
}

}  // namespace smime::client
