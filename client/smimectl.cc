// smimectl: the command line for smime-agent. Moves bytes between files and
// the agent; never sees key material.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/cli_files.h"
#include "client/client.h"
#include "client/smimectl_lifecycle.h"
#include "client/terminal_text.h"
#include "common/limits.h"
#include "common/status_macros.h"

namespace smime::client {
namespace {

std::string Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

nlohmann::json KeyJson(const v1::KeyInfo& k) {
  nlohmann::json j = {
      {"id", Hex(k.id())},
      {"label", k.label()},
      {"token", k.token()},
      {"algorithm", k.algorithm()},
      {"uri", k.uri()},
      {"emails", std::vector<std::string>(k.emails().begin(), k.emails().end())},
      {"subject", k.subject()},
      {"status", k.status()},
  };
  if (k.has_not_after()) j["not_after"] = Rfc3339(k.not_after().seconds());
  return j;
}

void PrintKeyTable(const std::vector<v1::KeyInfo>& keys) {
  if (keys.empty()) {
    std::cout << "no keys on the token; make one with: smimectl keygen --type p256 --label NAME\n";
    return;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "ALGORITHM", "LABEL", "EMAILS", "EXPIRES", "STATUS"}};
  for (const auto& k : keys) {
    rows.push_back({Hex(k.id()), Printable(k.algorithm()), Printable(k.label()),
                    k.emails().empty() ? "-" : Printable(absl::StrJoin(k.emails(), ",")),
                    k.has_not_after() ? Rfc3339(k.not_after().seconds()) : "-",
                    k.status().empty() ? "-" : Printable(k.status())});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

absl::StatusOr<v1::SignatureAlgorithm> ParseAlg(const std::string& s) {
  if (s == "rsa-pkcs1-sha256") return v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256;
  if (s == "rsa-pss-sha256") return v1::SIGNATURE_ALGORITHM_RSA_PSS_SHA256;
  if (s == "ecdsa-sha256") return v1::SIGNATURE_ALGORITHM_ECDSA_SHA256;
  return absl::InvalidArgumentError(absl::StrCat("unknown --alg \"", s, "\""));
}

absl::StatusOr<v1::DecryptPadding> ParsePadding(const std::string& s) {
  if (s == "pkcs1") return v1::DECRYPT_PADDING_RSA_PKCS1;
  if (s == "oaep-sha1") return v1::DECRYPT_PADDING_RSA_OAEP_SHA1;
  if (s == "oaep-sha256") return v1::DECRYPT_PADDING_RSA_OAEP_SHA256;
  return absl::InvalidArgumentError(absl::StrCat("unknown --padding \"", s, "\""));
}

absl::StatusOr<v1::KeyType> ParseKeyType(const std::string& s) {
  if (s == "rsa2048") return v1::KEY_TYPE_RSA_2048;
  if (s == "rsa3072") return v1::KEY_TYPE_RSA_3072;
  if (s == "rsa4096") return v1::KEY_TYPE_RSA_4096;
  if (s == "p256") return v1::KEY_TYPE_EC_P256;
  if (s == "p384") return v1::KEY_TYPE_EC_P384;
  return absl::InvalidArgumentError(absl::StrCat("unknown --type \"", s, "\""));
}

// The agent's default limits (common/limits.h); the agent checks its own.
constexpr size_t kMaxMessageBytes = kDefaultMaxMessageBytes;
constexpr size_t kMaxEncodedBytes = MaxEncodedBytes(kDefaultMaxMessageBytes);
constexpr absl::string_view kMessageLimit = "the largest message the agent signs or encrypts";
constexpr absl::string_view kEncodedLimit = "the largest signed or encrypted message the agent reads";

// "2026-01-02T03:04:05Z" (RFC 3339) or Unix seconds.
absl::StatusOr<google::protobuf::Timestamp> ParseWhen(const std::string& text) {
  google::protobuf::Timestamp ts;
  int64_t seconds;
  absl::Time t;
  std::string err;
  if (absl::SimpleAtoi(text, &seconds)) {
    ts.set_seconds(seconds);
  } else if (absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    ts.set_seconds(absl::ToUnixSeconds(t));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--at \"", text, "\" is neither RFC 3339 nor Unix seconds"));
  }
  return ts;
}

// The --ca files and --at time of a verification (verify, decrypt --verify).
absl::Status AddTrustAnchors(const std::vector<std::string>& cas, const std::string& at, v1::VerifyOptions* o) {
  for (const auto& ca : cas) {
    ASSIGN_OR_RETURN(*o->add_trust_anchors(), ReadFileLimited(ca, kMaxCertificateFileBytes));
  }
  if (!at.empty()) {
    ASSIGN_OR_RETURN(*o->mutable_at(), ParseWhen(at));
  }
  return absl::OkStatus();
}

void PrintSigners(const v1::VerifyResult& result) {
  for (const auto& s : result.signers()) {
    std::cerr << "smimectl: good signature from " << Printable(s.subject());
    if (!s.emails().empty()) std::cerr << " <" << Printable(absl::StrJoin(s.emails(), ", ")) << ">";
    if (s.has_signing_time()) std::cerr << ", signed " << Rfc3339(s.signing_time().seconds());
    std::cerr << "\n";
  }
  if (!result.from_mismatch().empty()) {
    std::cerr << "smimectl: warning: the signer's certificate does not name the From address "
              << Printable(result.from_mismatch()) << "\n";
  }
}

// Every verb ends here: nothing more for success, else "smimectl:
// <message>" on stderr and 2 for bad input, 1 for the rest.
int ExitCode(const absl::Status& status) {
  if (status.ok()) return 0;
  std::cerr << "smimectl: " << Printable(status.message()) << "\n";
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int Run(int argc, char** argv) {
  CLI::App app{"smimectl: use the S/MIME keys that smime-agent keeps on a PKCS#11 token"};
  app.require_subcommand(1);
  std::string socket;
  double timeout_s = 30;
  app.add_option("--socket", socket, "agent socket (default: $SMIME_AGENT_SOCK, else the agent's default)");
  app.add_option("--timeout", timeout_s, "seconds to wait for each call")->check(CLI::PositiveNumber);

  auto* keys = app.add_subcommand("keys", "list the keys on the token");
  bool json = false;
  keys->add_flag("--json", json, "JSON array for programs");

  std::string key_sel, out, in;
  auto* cert = app.add_subcommand("cert", "print a key's certificate");
  bool der = false;
  cert->add_option("--key", key_sel, "email, label, hex id or pkcs11: URI")->required();
  cert->add_flag("--der", der, "DER instead of PEM");
  cert->add_option("--out", out, "output file (default stdout)");

  auto* pubkey = app.add_subcommand("pubkey", "print a key's public key (PEM SubjectPublicKeyInfo)");
  pubkey->add_option("--key", key_sel, "email, label, hex id or pkcs11: URI")->required();
  pubkey->add_option("--out", out, "output file (default stdout)");

  auto* sign = app.add_subcommand("sign-digest", "sign a SHA-256 digest with a token key");
  std::string alg, digest_hex;
  sign->add_option("--key", key_sel, "email, label, hex id or pkcs11: URI")->required();
  sign->add_option("--alg", alg, "rsa-pkcs1-sha256, rsa-pss-sha256 or ecdsa-sha256")->required();
  sign->add_option("--digest", digest_hex, "the digest, 64 hex digits")->required();
  sign->add_option("--out", out, "signature file (binary)")->required();

  auto* decrypt = app.add_subcommand("decrypt-key", "RSA-decrypt a small ciphertext (e.g. a content key)");
  std::string padding;
  decrypt->add_option("--key", key_sel, "email, label, hex id or pkcs11: URI")->required();
  decrypt->add_option("--padding", padding, "pkcs1, oaep-sha1 or oaep-sha256")->required();
  decrypt->add_option("--in", in, "ciphertext file (binary)")->required();
  decrypt->add_option("--out", out, "plaintext file (written 0600)")->required();

  auto* keygen = app.add_subcommand("keygen", "generate a key pair on the token");
  std::string type, label;
  keygen->add_option("--type", type, "rsa2048, rsa3072, rsa4096, p256 or p384")->required();
  keygen->add_option("--label", label, "label for the new key")->required();
  keygen->add_flag("--json", json, "print the new key as JSON");

  auto* smime_sign = app.add_subcommand("sign", "S/MIME-sign a message (multipart/signed by default)");
  bool opaque = false, pss = false;
  smime_sign->add_option("--key", key_sel, "email, label, hex id or pkcs11: URI")->required();
  smime_sign->add_flag("--opaque", opaque, "application/pkcs7-mime signed-data instead of multipart/signed");
  smime_sign->add_flag("--pss", pss, "RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys)");
  smime_sign->add_option("--in", in, "the message (RFC 5322 or a MIME entity)")->required();
  smime_sign->add_option("--out", out, "the signed message")->required();

  auto* verify = app.add_subcommand("verify", "verify an S/MIME, DER or PEM signed message");
  std::vector<std::string> cas;
  std::string content_file, at;
  bool at_signing_time = false;
  verify->add_option("--ca", cas, "trusted CA certificate file (PEM/DER; repeatable)");
  verify->add_option("--content", content_file, "signed content, when --in is a detached signature (.p7s)");
  verify->add_option("--at", at, "check the chain as of this time (RFC 3339 or Unix seconds)");
  verify->add_flag("--at-signing-time", at_signing_time, "check the chain as of the signature's signingTime");
  std::vector<std::string> untrusted;
  bool signature_only = false, binary = false;
  verify->add_option("--untrusted", untrusted, "intermediate CA certificates to build the chain (repeatable)");
  verify->add_flag("--signature-only", signature_only,
                   "check the signature but not the signer's certificate chain (says who signed, not whether "
                   "to trust them)");
  verify->add_flag("--binary", binary,
                   "digest the content byte for byte, not as text with CRLF line ends (the agent tries this by "
                   "itself when a detached content's text digest does not match, e.g. gpgsm signatures over LF "
                   "files)");
  verify->add_option("--in", in, "the signed message or signature")->required();
  verify->add_option("--out", out, "the signed content")->required();

  auto* encrypt = app.add_subcommand("encrypt", "S/MIME-encrypt a message to recipient certificates");
  std::vector<std::string> to;
  std::string cipher = "aes256-cbc", sign_with;
  bool oaep = false;
  encrypt->add_option("--to", to, "recipient certificate file, or a contact's email address (repeatable)")->required();
  encrypt->add_option("--cipher", cipher, "aes256-cbc (default), aes128-cbc or aes256-gcm");
  encrypt->add_flag("--oaep", oaep, "RSAES-OAEP key transport (SHA-256) instead of PKCS#1 v1.5");
  encrypt->add_option("--sign-with", sign_with, "sign with this key first, then encrypt");
  encrypt->add_option("--in", in, "the message")->required();
  encrypt->add_option("--out", out, "the encrypted message")->required();

  auto* smime_decrypt = app.add_subcommand("decrypt", "decrypt an S/MIME, DER or PEM encrypted message");
  bool also_verify = false;
  smime_decrypt->add_flag("--verify", also_verify, "verify the signed message inside (needs --ca)");
  smime_decrypt->add_option("--key", key_sel, "decrypt with this key only (default: the key the message names)");
  smime_decrypt->add_option("--ca", cas, "trusted CA certificate file for --verify (repeatable)");
  smime_decrypt->add_option("--at", at, "with --verify: check the chain as of this time");
  smime_decrypt->add_option("--in", in, "the encrypted message")->required();
  smime_decrypt->add_option("--out", out, "the decrypted MIME entity (written 0600)")->required();

  auto lifecycle = LifecycleCommands::Add(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::string socket_path = ResolveSocketPath(socket);
  absl::Duration timeout = absl::Milliseconds(static_cast<int64_t>(timeout_s * 1000));
  absl::Status status = lifecycle->Selected() ? lifecycle->Run(socket_path, timeout) : [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto client, AgentClient::Connect(socket_path, timeout));
    if (*keys) {
      ASSIGN_OR_RETURN(auto list, client->ListKeys());
      if (json) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& k : list) arr.push_back(KeyJson(k));
        std::cout << arr.dump(2) << "\n";
      } else {
        PrintKeyTable(list);
      }
    } else if (*cert) {
      ASSIGN_OR_RETURN(auto resp, client->GetCertificate(TextSelector(key_sel)));
      return WriteFileAtomically(out, der ? resp.certificate_der() : Pem("CERTIFICATE", resp.certificate_der()));
    } else if (*pubkey) {
      ASSIGN_OR_RETURN(auto resp, client->GetPublicKey(TextSelector(key_sel)));
      return WriteFileAtomically(out, Pem("PUBLIC KEY", resp.spki_der()));
    } else if (*sign) {
      std::string hex = std::string(absl::StripAsciiWhitespace(digest_hex));
      bool is_hex = hex.size() % 2 == 0 && !hex.empty() &&
                    std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); });
      if (!is_hex) return absl::InvalidArgumentError("--digest must be hex digits");
      std::string digest = absl::HexStringToBytes(hex);
      ASSIGN_OR_RETURN(v1::SignatureAlgorithm algorithm, ParseAlg(alg));
      ASSIGN_OR_RETURN(std::string sig, client->SignDigest(TextSelector(key_sel), algorithm, digest));
      return WriteFileAtomically(out, sig);
    } else if (*decrypt) {
      ASSIGN_OR_RETURN(std::string ct, ReadFileLimited(in, 64 * 1024));
      ASSIGN_OR_RETURN(v1::DecryptPadding pad, ParsePadding(padding));
      ASSIGN_OR_RETURN(std::string plain, client->DecryptKey(TextSelector(key_sel), pad, ct));
      return WriteFileAtomically(out, plain, 0600);
    } else if (*smime_sign) {
      v1::SignOptions o;
      *o.mutable_key() = TextSelector(key_sel);
      o.set_opaque(opaque);
      o.set_pss(pss);
      ASSIGN_OR_RETURN(std::string message, ReadFileLimited(in, kMaxMessageBytes, kMessageLimit));
      ASSIGN_OR_RETURN(std::string signed_message, client->SignMessage(o, message));
      return WriteFileAtomically(out, signed_message);
    } else if (*verify) {
      v1::VerifyOptions o;
      RETURN_IF_ERROR(AddTrustAnchors(cas, at, &o));
      o.set_at_signing_time(at_signing_time);
      o.set_signature_only(signature_only);
      o.set_binary(binary);
      for (const auto& u : untrusted) {
        ASSIGN_OR_RETURN(*o.add_extra_certs(), ReadFileLimited(u, kMaxCertificateFileBytes));
      }
      if (cas.empty() && !signature_only) return absl::InvalidArgumentError("give --ca FILE (or --signature-only)");
      std::string content;
      if (!content_file.empty()) {
        ASSIGN_OR_RETURN(content, ReadFileLimited(content_file, kMaxMessageBytes, kMessageLimit));
      }
      ASSIGN_OR_RETURN(std::string message, ReadFileLimited(in, kMaxEncodedBytes, kEncodedLimit));
      ASSIGN_OR_RETURN(auto v, client->VerifyMessage(o, message, content));
      PrintSigners(v.result);
      return WriteFileAtomically(out, v.content);
    } else if (*encrypt) {
      v1::EncryptOptions o;
      for (const auto& t : to) {
        // An address (no such file): a contact's certificate on the agent.
        if (t.find('@') != std::string::npos && ::access(t.c_str(), F_OK) != 0) {
          o.add_recipient_emails(t);
        } else {
          ASSIGN_OR_RETURN(*o.add_recipients(), ReadFileLimited(t, kMaxCertificateFileBytes));
        }
      }
      if (cipher == "aes256-cbc") o.set_cipher(v1::CONTENT_CIPHER_AES256_CBC);
      else if (cipher == "aes128-cbc") o.set_cipher(v1::CONTENT_CIPHER_AES128_CBC);
      else if (cipher == "aes256-gcm") o.set_cipher(v1::CONTENT_CIPHER_AES256_GCM);
      else return absl::InvalidArgumentError(absl::StrCat("unknown --cipher \"", cipher, "\""));
      o.set_oaep(oaep);
      if (!sign_with.empty()) *o.mutable_sign_with() = TextSelector(sign_with);
      ASSIGN_OR_RETURN(std::string message, ReadFileLimited(in, kMaxMessageBytes, kMessageLimit));
      ASSIGN_OR_RETURN(std::string encrypted, client->EncryptMessage(o, message));
      return WriteFileAtomically(out, encrypted);
    } else if (*smime_decrypt) {
      if (also_verify && cas.empty()) return absl::InvalidArgumentError("--verify needs --ca");
      v1::DecryptOptions dopts;
      if (!key_sel.empty()) *dopts.mutable_key() = TextSelector(key_sel);
      // With --verify, one call: the agent decrypts, then verifies the
      // signed message inside.
      if (also_verify) RETURN_IF_ERROR(AddTrustAnchors(cas, at, dopts.mutable_verify()));
      ASSIGN_OR_RETURN(std::string message, ReadFileLimited(in, kMaxEncodedBytes, kEncodedLimit));
      ASSIGN_OR_RETURN(auto d, client->DecryptMessage(message, dopts));
      std::cerr << "smimectl: decrypted with " << Printable(d.result.key_uri()) << "\n";
      if (also_verify) {
        PrintSigners(d.result.verified());
      } else if (d.result.is_signed()) {
        std::cerr << "smimectl: the decrypted message is signed; check it with --verify --ca FILE\n";
      }
      return WriteFileAtomically(out, d.content, 0600);
    } else if (*keygen) {
      ASSIGN_OR_RETURN(v1::KeyType key_type, ParseKeyType(type));
      ASSIGN_OR_RETURN(v1::KeyInfo key, client->GenerateKey(key_type, label));
      if (json) {
        std::cout << KeyJson(key).dump(2) << "\n";
      } else {
        std::cout << "generated " << Printable(key.algorithm()) << " key \"" << Printable(key.label()) << "\" id "
                  << Hex(key.id()) << "\n" << Printable(key.uri()) << "\n";
      }
    }
    return absl::OkStatus();
  }();
  return ExitCode(status);
}

}  // namespace
}  // namespace smime::client

int main(int argc, char** argv) { return smime::client::Run(argc, argv); }
