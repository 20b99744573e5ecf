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
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::ListKeysRequest req;
  v1::ListKeysResponse resp;
  if (absl::Status st = conn_.Convert(stub_->ListKeys(&ctx, req, &resp)); !st.ok()) return st;
  return std::vector<v1::KeyInfo>(resp.keys().begin(), resp.keys().end());
}

absl::StatusOr<v1::GetCertificateResponse> AgentClient::GetCertificate(const v1::KeySelector& key) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::GetCertificateRequest req;
  *req.mutable_key() = key;
  v1::GetCertificateResponse resp;
  if (absl::Status st = conn_.Convert(stub_->GetCertificate(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<v1::GetPublicKeyResponse> AgentClient::GetPublicKey(const v1::KeySelector& key) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::GetPublicKeyRequest req;
  *req.mutable_key() = key;
  v1::GetPublicKeyResponse resp;
  if (absl::Status st = conn_.Convert(stub_->GetPublicKey(&ctx, req, &resp)); !st.ok()) return st;
  return resp;
}

absl::StatusOr<std::string> AgentClient::SignDigest(const v1::KeySelector& key,
                                                    v1::SignatureAlgorithm algorithm,
                                                    absl::string_view digest) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::SignDigestRequest req;
  *req.mutable_key() = key;
  req.set_algorithm(algorithm);
  req.set_digest(std::string(digest));
  v1::SignDigestResponse resp;
  if (absl::Status st = conn_.Convert(stub_->SignDigest(&ctx, req, &resp)); !st.ok()) return st;
  return std::move(*resp.mutable_signature());
}

absl::StatusOr<std::string> AgentClient::DecryptKey(const v1::KeySelector& key,
                                                    v1::DecryptPadding padding,
                                                    absl::string_view ciphertext) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::DecryptKeyRequest req;
  *req.mutable_key() = key;
  req.set_padding(padding);
  req.set_ciphertext(std::string(ciphertext));
  v1::DecryptKeyResponse resp;
  if (absl::Status st = conn_.Convert(stub_->DecryptKey(&ctx, req, &resp)); !st.ok()) return st;
  return std::move(*resp.mutable_plaintext());
}

absl::StatusOr<v1::KeyInfo> AgentClient::GenerateKey(v1::KeyType type, absl::string_view label) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  v1::GenerateKeyRequest req;
  req.set_type(type);
  req.set_label(std::string(label));
  v1::GenerateKeyResponse resp;
  if (absl::Status st = conn_.Convert(stub_->GenerateKey(&ctx, req, &resp)); !st.ok()) return st;
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
}  // namespace

absl::StatusOr<std::string> AgentClient::SignMessage(const v1::SignOptions& options, absl::string_view message) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  auto rw = stub_->Sign(&ctx);
  v1::SignRequest first;
  *first.mutable_options() = options;
  std::string out;
  grpc::Status st = Exchange(rw.get(), first, message, "", [&](const v1::SignResponse& r) { out += r.data(); });
  if (absl::Status s = conn_.Convert(st); !s.ok()) return s;
  return out;
}

absl::StatusOr<AgentClient::Verified> AgentClient::VerifyMessage(const v1::VerifyOptions& options,
                                                                 absl::string_view message,
                                                                 absl::string_view detached_content) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  auto rw = stub_->Verify(&ctx);
  v1::VerifyRequest first;
  *first.mutable_options() = options;
  Verified out;
  grpc::Status st = Exchange(rw.get(), first, message, detached_content, [&](const v1::VerifyResponse& r) {
    if (r.has_result()) out.result = r.result();
    out.content += r.data();
  });
  if (absl::Status s = conn_.Convert(st); !s.ok()) return s;
  return out;
}

absl::StatusOr<std::string> AgentClient::EncryptMessage(const v1::EncryptOptions& options,
                                                        absl::string_view message) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  auto rw = stub_->Encrypt(&ctx);
  v1::EncryptRequest first;
  *first.mutable_options() = options;
  std::string out;
  grpc::Status st = Exchange(rw.get(), first, message, "", [&](const v1::EncryptResponse& r) { out += r.data(); });
  if (absl::Status s = conn_.Convert(st); !s.ok()) return s;
  return out;
}

absl::StatusOr<AgentClient::Decrypted> AgentClient::DecryptMessage(absl::string_view message,
                                                                   const v1::DecryptOptions& options) {
  grpc::ClientContext ctx;
  conn_.Prepare(&ctx);
  auto rw = stub_->Decrypt(&ctx);
  v1::DecryptRequest first;
  *first.mutable_options() = options;
  Decrypted out;
  grpc::Status st = Exchange(rw.get(), first, message, "", [&](const v1::DecryptResponse& r) {
    if (r.has_result()) out.result = r.result();
    out.content += r.data();
  });
  if (absl::Status s = conn_.Convert(st); !s.ok()) return s;
  return out;
}

}  // namespace smime::client
