#include "client/client.h"

#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/limits.h"
#include "common/paths.h"
#include "common/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace smime::client {

std::string ResolveSocketPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv(kSocketEnv);
  if (env != nullptr && env[0] != '\0') return env;
  return DefaultSocketPath();
}

v1::KeySelector TextSelector(absl::string_view text) {
  v1::KeySelector sel;
  sel.set_text(std::string(text));
  return sel;
}

absl::StatusOr<std::unique_ptr<AgentClient>> AgentClient::Connect(const std::string& socket_path,
                                                                  absl::Duration timeout) {
  ASSIGN_OR_RETURN(AgentChannel conn, AgentChannel::Open(socket_path, timeout));
  return std::unique_ptr<AgentClient>(new AgentClient(std::move(conn)));
}

AgentClient::AgentClient(AgentChannel conn) : conn_(std::move(conn)), stub_(v1::Agent::NewStub(conn_.channel())) {}

absl::Status AgentClient::WaitReady(absl::Duration timeout) {
  auto health = grpc::health::v1::Health::NewStub(conn_.channel());
  absl::Time deadline = absl::Now() + timeout;
  grpc::Status last;
  while (absl::Now() < deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    ctx.set_wait_for_ready(true);
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    last = health->Check(&ctx, req, &resp);
    if (last.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("the agent at ", conn_.socket_path(),
                                                  " did not become ready in time"));
}

absl::StatusOr<std::vector<v1::KeyInfo>> AgentClient::ListKeys() {
  ASSIGN_OR_RETURN(v1::ListKeysResponse resp, conn_.Unary(*stub_, &v1::Agent::Stub::ListKeys, v1::ListKeysRequest()));
  return std::vector<v1::KeyInfo>(resp.keys().begin(), resp.keys().end());
}

absl::StatusOr<v1::GetCertificateResponse> AgentClient::GetCertificate(const v1::KeySelector& key) {
  v1::GetCertificateRequest req;
  *req.mutable_key() = key;
  return conn_.Unary(*stub_, &v1::Agent::Stub::GetCertificate, req);
}

absl::StatusOr<v1::GetPublicKeyResponse> AgentClient::GetPublicKey(const v1::KeySelector& key) {
  v1::GetPublicKeyRequest req;
  *req.mutable_key() = key;
  return conn_.Unary(*stub_, &v1::Agent::Stub::GetPublicKey, req);
}

absl::StatusOr<std::string> AgentClient::SignDigest(const v1::KeySelector& key,
                                                    v1::SignatureAlgorithm algorithm,
                                                    absl::string_view digest) {
  v1::SignDigestRequest req;
  *req.mutable_key() = key;
  req.set_algorithm(algorithm);
  req.set_digest(std::string(digest));
  ASSIGN_OR_RETURN(v1::SignDigestResponse resp, conn_.Unary(*stub_, &v1::Agent::Stub::SignDigest, req));
  return std::move(*resp.mutable_signature());
}

absl::StatusOr<std::string> AgentClient::DecryptKey(const v1::KeySelector& key,
                                                    v1::DecryptPadding padding,
                                                    absl::string_view ciphertext) {
  v1::DecryptKeyRequest req;
  *req.mutable_key() = key;
  req.set_padding(padding);
  req.set_ciphertext(std::string(ciphertext));
  ASSIGN_OR_RETURN(v1::DecryptKeyResponse resp, conn_.Unary(*stub_, &v1::Agent::Stub::DecryptKey, req));
  return std::move(*resp.mutable_plaintext());
}

absl::StatusOr<v1::KeyInfo> AgentClient::GenerateKey(v1::KeyType type, absl::string_view label) {
  v1::GenerateKeyRequest req;
  req.set_type(type);
  req.set_label(std::string(label));
  ASSIGN_OR_RETURN(v1::GenerateKeyResponse resp, conn_.Unary(*stub_, &v1::Agent::Stub::GenerateKey, req));
  return std::move(*resp.mutable_key());
}

namespace {
// Fits the agent's per-message limit whatever it is set to (common/limits.h).
constexpr size_t kChunkBytes = kStreamChunkBytes;

// Sends `first` then `data` (and `content`) in chunks while collecting the
// responses (`on_response` sees each one). Both directions run at once: the
// agent streams its output while it still reads the input, so a client
// that sent everything before reading would stall both sides as soon as
// the transport's flow-control windows fill.
template <typename Req, typename Resp, typename OnResponse>
grpc::Status Exchange(grpc::ClientReaderWriter<Req, Resp>* rw, const Req& first, absl::string_view data,
                      absl::string_view content, OnResponse on_response) {
  std::thread writer([&] {
    bool ok = rw->Write(first);
    for (size_t off = 0; ok && off < data.size(); off += kChunkBytes) {
      Req req;
      req.set_data(std::string(data.substr(off, kChunkBytes)));
      ok = rw->Write(req);
    }
    if constexpr (std::is_same_v<Req, v1::VerifyRequest>) {
      for (size_t off = 0; ok && off < content.size(); off += kChunkBytes) {
        Req req;
        req.set_content(std::string(content.substr(off, kChunkBytes)));
        ok = rw->Write(req);
      }
    }
    rw->WritesDone();
  });
  Resp resp;
  while (rw->Read(&resp)) on_response(resp);
  writer.join();
  return rw->Finish();
}

// One streaming call of `method`: `options` go in the first request, then
// the message, under the channel's deadline; the status converted.
template <typename Req, typename Resp, typename Options, typename OnResponse>
absl::Status Streamed(const AgentChannel& conn, v1::Agent::Stub& stub,
                      std::unique_ptr<grpc::ClientReaderWriter<Req, Resp>> (v1::Agent::Stub::*method)(
                          grpc::ClientContext*),
                      const Options& options, absl::string_view data, absl::string_view content,
                      OnResponse on_response) {
  grpc::ClientContext ctx;
  conn.Prepare(&ctx);
  auto rw = (stub.*method)(&ctx);
  Req first;
  *first.mutable_options() = options;
  return conn.Convert(Exchange(rw.get(), first, data, content, on_response));
}
}  // namespace

absl::StatusOr<std::string> AgentClient::SignMessage(const v1::SignOptions& options, absl::string_view message) {
  std::string out;
  RETURN_IF_ERROR(Streamed(conn_, *stub_, &v1::Agent::Stub::Sign, options, message, "",
                           [&](const v1::SignResponse& r) { out += r.data(); }));
  return out;
}

absl::StatusOr<AgentClient::Verified> AgentClient::VerifyMessage(const v1::VerifyOptions& options,
                                                                 absl::string_view message,
                                                                 absl::string_view detached_content) {
  Verified out;
  RETURN_IF_ERROR(Streamed(conn_, *stub_, &v1::Agent::Stub::Verify, options, message, detached_content,
                           [&](const v1::VerifyResponse& r) {
                             if (r.has_result()) out.result = r.result();
                             out.content += r.data();
                           }));
  return out;
}

absl::StatusOr<std::string> AgentClient::EncryptMessage(const v1::EncryptOptions& options,
                                                        absl::string_view message) {
  std::string out;
  RETURN_IF_ERROR(Streamed(conn_, *stub_, &v1::Agent::Stub::Encrypt, options, message, "",
                           [&](const v1::EncryptResponse& r) { out += r.data(); }));
  return out;
}

absl::StatusOr<AgentClient::Decrypted> AgentClient::DecryptMessage(absl::string_view message,
                                                                   const v1::DecryptOptions& options) {
  Decrypted out;
  RETURN_IF_ERROR(Streamed(conn_, *stub_, &v1::Agent::Stub::Decrypt, options, message, "",
                           [&](const v1::DecryptResponse& r) {
                             if (r.has_result()) out.result = r.result();
                             out.content += r.data();
                           }));
  return out;
}

}  // namespace smime::client
