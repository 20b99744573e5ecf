// smime-agent-soak: N clients of mixed operations against the real agent on
// a throwaway SoftHSM token for T seconds, every result checked with OpenSSL
// (not with the project's code), reporting operations, errors by kind,
// p50/p99 latency per operation and the agent's RSS at start and end.
//
//   smime-agent-soak [--clients 8] [--seconds 600] [--max-rss-growth 0.05]
//
// Operations: sign-digest with RSA-2048 (PKCS#1 v1.5 and PSS) and P-256,
// decrypt-key (RSA PKCS#1 v1.5 and OAEP), S/MIME sign, verify, encrypt and
// decrypt of 4 KiB to 1 MiB, list-keys, and one malformed request in a
// thousand (which must fail with INVALID_ARGUMENT and leave the agent
// serving). Exits 1 on any unexpected result, or when the agent's RSS grew
// by more than --max-rss-growth between the end of the warm-up and the end.
// docs/PERFORMANCE.md records a 10-minute run; CI runs a short one.
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/client.h"
#include "tests/testing/ossl_verify.h"
#include "tests/testing/test_env.h"

namespace smime::soak {
namespace {

namespace v1 = ::smime::agent::v1;
using client::AgentClient;
using client::TextSelector;

struct Flags {
  int clients = 8;
  double seconds = 600;
  double warmup_seconds = 2;
  double max_rss_growth = 0.05;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](auto* out) { return i + 1 < argc && absl::SimpleAtoi(argv[++i], out); };
    auto next_d = [&](double* out) { return i + 1 < argc && absl::SimpleAtod(argv[++i], out); };
    bool ok = true;
    if (a == "--clients") ok = next(&f->clients) && f->clients > 0;
    else if (a == "--seconds") ok = next_d(&f->seconds) && f->seconds > 0;
    else if (a == "--warmup") ok = next_d(&f->warmup_seconds) && f->warmup_seconds >= 0;
    else if (a == "--max-rss-growth") ok = next_d(&f->max_rss_growth) && f->max_rss_growth >= 0;
    else {
      std::cerr << "usage: smime-agent-soak [--clients N] [--seconds T] [--warmup T] [--max-rss-growth F]\n";
      return false;
    }
    if (!ok) {
      std::cerr << "smime-agent-soak: bad value for " << a << "\n";
      return false;
    }
  }
  return true;
}

long RssKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    long kib = 0;
    if (line.rfind("VmRSS:", 0) == 0 && std::sscanf(line.c_str(), "VmRSS: %ld", &kib) == 1) return kib;
  }
  return -1;
}

std::string Random(size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

// A printable mail of about `n` bytes.
std::string Mail(size_t n, std::mt19937_64& rng) {
  std::string body;
  body.reserve(n + 80);
  while (body.size() < n) {
    for (int i = 0; i < 72; ++i) body += static_cast<char>('a' + rng() % 26);
    body += '\n';
  }
  return absl::StrCat("From: alice@example.com\nTo: bob@example.com\nSubject: soak\n"
                      "Content-Type: text/plain\n\n",
                      body);
}

// OpenSSL's own S/MIME verification of a message the agent signed.
bool OpensslVerifies(const std::string& signed_mail, X509_STORE* store, std::string* content) {
  BIO* in = BIO_new_mem_buf(signed_mail.data(), static_cast<int>(signed_mail.size()));
  BIO* detached = nullptr;
  CMS_ContentInfo* cms = SMIME_read_CMS(in, &detached);
  bool ok = false;
  if (cms) {
    BIO* out = BIO_new(BIO_s_mem());
    ok = CMS_verify(cms, nullptr, store, detached, out, CMS_BINARY) == 1;
    char* p = nullptr;
    long len = BIO_get_mem_data(out, &p);
    content->assign(p, static_cast<size_t>(len));
    BIO_free(out);
    CMS_ContentInfo_free(cms);
  }
  BIO_free(detached);
  BIO_free(in);
  return ok;
}

// OpenSSL's own S/MIME encryption to `cert` (AES-256-CBC).
std::string OpensslEncrypt(const std::string& mail, X509* cert) {
  BIO* in = BIO_new_mem_buf(mail.data(), static_cast<int>(mail.size()));
  STACK_OF(X509)* to = sk_X509_new_null();
  sk_X509_push(to, cert);
  CMS_ContentInfo* cms = CMS_encrypt(to, in, EVP_aes_256_cbc(), CMS_BINARY);
  std::string out;
  if (cms) {
    BIO* o = BIO_new(BIO_s_mem());
    if (SMIME_write_CMS(o, cms, nullptr, CMS_BINARY) == 1) {
      char* p = nullptr;
      long len = BIO_get_mem_data(o, &p);
      out.assign(p, static_cast<size_t>(len));
    }
    BIO_free(o);
    CMS_ContentInfo_free(cms);
  }
  sk_X509_free(to);
  BIO_free(in);
  return out;
}

X509* ReadPemCert(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* c = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  return c;
}

std::string PemToDer(const std::string& pem) {
  X509* c = ReadPemCert(pem);
  if (!c) return "";
  unsigned char* der = nullptr;
  int n = i2d_X509(c, &der);
  std::string out(reinterpret_cast<char*>(der), n > 0 ? static_cast<size_t>(n) : 0);
  OPENSSL_free(der);
  X509_free(c);
  return out;
}

// Mail text as S/MIME signs it: CRLF line ends.
std::string Crlf(const std::string& s) {
  std::string out;
  out.reserve(s.size() + s.size() / 40);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out += '\r';
    out += s[i];
  }
  return out;
}

enum Op { kSignRsa, kSignPss, kSignEc, kDecryptPkcs1, kDecryptOaep, kSmimeSign, kVerify, kEncrypt, kDecrypt,
          kListKeys, kMalformed, kOpCount };
const char* kOpNames[kOpCount] = {"sign-digest rsa-pkcs1", "sign-digest rsa-pss", "sign-digest ecdsa-p256",
                                  "decrypt-key pkcs1",     "decrypt-key oaep-sha256", "smime sign",
                                  "smime verify",          "smime encrypt",       "smime decrypt",
                                  "list-keys",             "malformed request"};

struct Fixture {
  std::string alice_pub, bob_pub;  // PEM SubjectPublicKeyInfo
  std::string alice_cert_der, bob_cert_der, ca_der;
  X509* bob_cert = nullptr;
  X509_STORE* store = nullptr;
};

struct Stats {
  std::mutex mu;
  std::vector<double> latency_ms[kOpCount];
  std::map<std::string, long> unexpected;  // "op: what" -> count
  void Add(Op op, double ms) {
    std::lock_guard<std::mutex> l(mu);
    latency_ms[op].push_back(ms);
  }
  void Fail(Op op, const std::string& what) {
    std::lock_guard<std::mutex> l(mu);
    ++unexpected[absl::StrCat(kOpNames[op], ": ", what.substr(0, 160))];
  }
};

// One operation, checked. Returns "" when the result is right, else why not.
std::string RunOne(Op op, AgentClient& c, const Fixture& fx, std::mt19937_64& rng) {
  size_t sizes[] = {4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20};
  auto mail_size = [&] { return sizes[rng() % 5]; };
  switch (op) {
    case kSignRsa:
    case kSignPss:
    case kSignEc: {
      std::string digest = testing::Sha256(Random(64));
      auto alg = op == kSignRsa ? v1::SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256
                 : op == kSignPss ? v1::SIGNATURE_ALGORITHM_RSA_PSS_SHA256
                                  : v1::SIGNATURE_ALGORITHM_ECDSA_SHA256;
      auto sig = c.SignDigest(TextSelector(op == kSignEc ? "bob" : "alice"), alg, digest);
      if (!sig.ok()) return sig.status().ToString();
      auto pad = op == kSignPss ? testing::Padding::kPss : testing::Padding::kPkcs1;
      if (!testing::VerifyDigest(op == kSignEc ? fx.bob_pub : fx.alice_pub, digest, *sig, pad)) {
        return "openssl does not verify the signature";
      }
      return "";
    }
    case kDecryptPkcs1:
    case kDecryptOaep: {
      std::string key = Random(32);
      auto pad = op == kDecryptPkcs1 ? testing::Padding::kPkcs1 : testing::Padding::kOaepSha256;
      std::string ct = testing::RsaEncrypt(fx.alice_pub, key, pad);
      auto pt = c.DecryptKey(TextSelector("alice"),
                             op == kDecryptPkcs1 ? v1::DECRYPT_PADDING_RSA_PKCS1 : v1::DECRYPT_PADDING_RSA_OAEP_SHA256, ct);
      if (!pt.ok()) return pt.status().ToString();
      return *pt == key ? "" : "wrong plaintext";
    }
    case kSmimeSign:
    case kVerify: {
      std::string mail = Mail(mail_size(), rng);
      v1::SignOptions so;
      *so.mutable_key() = TextSelector(rng() % 2 ? "alice@example.com" : "bob@example.com");
      auto signed_mail = c.SignMessage(so, mail);
      if (!signed_mail.ok()) return signed_mail.status().ToString();
      if (op == kSmimeSign) {
        std::string content;
        if (!OpensslVerifies(*signed_mail, fx.store, &content)) return "openssl does not verify the S/MIME signature";
        if (content.find(Crlf(mail.substr(mail.find("Content-Type")))) == std::string::npos) {
          return "openssl's verified content is not the message";
        }
        return "";
      }
      v1::VerifyOptions vo;
      vo.add_trust_anchors(fx.ca_der);
      auto v = c.VerifyMessage(vo, *signed_mail);
      if (!v.ok()) return v.status().ToString();
      std::string content;
      if (!OpensslVerifies(*signed_mail, fx.store, &content)) return "openssl does not verify what the agent verified";
      return v->content == content ? "" : "the agent's verified content differs from openssl's";
    }
    case kEncrypt: {
      // Encrypted by the agent, opened by the agent, and the structure
      // parsed by OpenSSL: the token key is the only one that can open it.
      std::string mail = Mail(mail_size(), rng);
      v1::EncryptOptions eo;
      eo.add_recipients(fx.alice_cert_der);
      eo.set_cipher(rng() % 2 ? v1::CONTENT_CIPHER_AES256_GCM : v1::CONTENT_CIPHER_AES256_CBC);
      auto enc = c.EncryptMessage(eo, mail);
      if (!enc.ok()) return enc.status().ToString();
      BIO* in = BIO_new_mem_buf(enc->data(), static_cast<int>(enc->size()));
      CMS_ContentInfo* cms = SMIME_read_CMS(in, nullptr);
      bool parsed = cms != nullptr && sk_CMS_RecipientInfo_num(CMS_get0_RecipientInfos(cms)) == 1;
      CMS_ContentInfo_free(cms);
      BIO_free(in);
      if (!parsed) return "openssl does not parse the encrypted message";
      auto dec = c.DecryptMessage(*enc);
      if (!dec.ok()) return dec.status().ToString();
      return dec->content.find(Crlf(mail.substr(mail.find("Content-Type")))) != std::string::npos ? "" : "wrong plaintext";
    }
    case kDecrypt: {
      // Encrypted by OpenSSL to bob's (P-256, ECDH) certificate.
      std::string mail = Crlf(Mail(mail_size(), rng));
      std::string enc = OpensslEncrypt(mail, fx.bob_cert);
      if (enc.empty()) return "openssl could not encrypt";
      auto dec = c.DecryptMessage(enc);
      if (!dec.ok()) return dec.status().ToString();
      return dec->content == mail ? "" : "wrong plaintext";
    }
    case kListKeys: {
      auto keys = c.ListKeys();
      if (!keys.ok()) return keys.status().ToString();
      return keys->size() >= 5 ? "" : absl::StrCat("only ", keys->size(), " keys listed");
    }
    case kMalformed: {
      v1::VerifyOptions vo;
      vo.add_trust_anchors(fx.ca_der);
      auto v = c.VerifyMessage(vo, Random(1 + rng() % 4096));
      if (v.ok()) return "garbage verified";
      return absl::IsInvalidArgument(v.status()) ? "" : absl::StrCat("not INVALID_ARGUMENT: ", v.status().ToString());
    }
    default:
      return "unknown op";
  }
}

Op PickOp(std::mt19937_64& rng) {
  if (rng() % 1000 == 0) return kMalformed;
  // Key operations most often (what a gateway does most), S/MIME and
  // listing less.
  static const int kWeights[kOpCount] = {14, 8, 14, 8, 8, 10, 10, 10, 10, 8, 0};
  int total = 0;
  for (int w : kWeights) total += w;
  int r = static_cast<int>(rng() % total);
  for (int i = 0; i < kOpCount; ++i) {
    if (r < kWeights[i]) return static_cast<Op>(i);
    r -= kWeights[i];
  }
  return kListKeys;
}

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i];
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  testing::TestToken token = testing::MakeToken("soak", /*with_test_keys=*/true);
  auto agent = testing::AgentProcess::Start(
      {"--module", testing::kSoftHsmModule, "--token", "soak", "--pin-file", token.pin_file,
       "--max-sessions", std::to_string(std::max(2, flags.clients))},
      token.conf);
  if (!agent.ok()) {
    std::cerr << "smime-agent-soak: the agent did not start: " << agent.status() << "\n";
    return 1;
  }
  Fixture fx;
  fx.alice_pub = testing::ReadFile(token.Path("pub/alice.pem"));
  fx.bob_pub = testing::ReadFile(token.Path("pub/bob.pem"));
  fx.alice_cert_der = PemToDer(testing::ReadFile(token.Path("certs/alice.pem")));
  fx.bob_cert_der = PemToDer(testing::ReadFile(token.Path("certs/bob.pem")));
  std::string ca_pem = testing::ReadFile(token.Path("ca.pem"));
  fx.ca_der = PemToDer(ca_pem);
  fx.bob_cert = ReadPemCert(testing::ReadFile(token.Path("certs/bob.pem")));
  fx.store = X509_STORE_new();
  X509* ca = ReadPemCert(ca_pem);
  X509_STORE_add_cert(fx.store, ca);
  X509_free(ca);
  if (fx.alice_cert_der.empty() || fx.bob_cert == nullptr || fx.ca_der.empty()) {
    std::cerr << "smime-agent-soak: the test token's certificates are missing\n";
    return 1;
  }

  Stats stats;
  std::atomic<bool> measuring{false}, stop{false};
  std::atomic<long> ops{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < flags.clients; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(0x5eed + t);
      auto c = AgentClient::Connect((*agent)->socket());
      if (!c.ok()) {
        stats.Fail(kListKeys, absl::StrCat("connect: ", c.status().ToString()));
        return;
      }
      while (!stop.load()) {
        Op op = PickOp(rng);
        auto t0 = std::chrono::steady_clock::now();
        std::string why = RunOne(op, **c, fx, rng);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (!why.empty()) stats.Fail(op, why);
        if (measuring.load()) {
          stats.Add(op, ms);
          ++ops;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(flags.warmup_seconds));
  const long rss_start = RssKib((*agent)->pid());
  measuring = true;
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(flags.seconds));
  stop = true;
  for (auto& th : threads) th.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long rss_end = RssKib((*agent)->pid());
  const bool agent_up = (*agent)->Running();

  std::printf("smime-agent-soak: %d clients, %.0f s (after %.0f s warm-up), %ld operations (%.0f/s)\n",
              flags.clients, elapsed, flags.warmup_seconds, ops.load(), ops.load() / elapsed);
  std::printf("%-26s %9s %10s %10s\n", "operation", "count", "p50 ms", "p99 ms");
  for (int i = 0; i < kOpCount; ++i) {
    auto& v = stats.latency_ms[i];
    std::printf("%-26s %9zu %10.2f %10.2f\n", kOpNames[i], v.size(), Percentile(v, 0.5), Percentile(v, 0.99));
  }
  long unexpected = 0;
  for (const auto& [what, n] : stats.unexpected) {
    std::printf("unexpected: %ld x %s\n", n, what.c_str());
    unexpected += n;
  }
  double growth = rss_start > 0 ? static_cast<double>(rss_end - rss_start) / rss_start : 0;
  std::printf("agent RSS: %.1f MiB after warm-up, %.1f MiB at the end (%+.1f%%)\n", rss_start / 1024.0,
              rss_end / 1024.0, growth * 100);
  std::printf("unexpected results: %ld\n", unexpected);
  int rc = 0;
  if (unexpected > 0) rc = 1;
  if (!agent_up) {
    std::printf("the agent is no longer running\n");
    rc = 1;
  }
  if (growth > flags.max_rss_growth) {
    std::printf("RSS grew by more than %.0f%%\n", flags.max_rss_growth * 100);
    rc = 1;
  }
  if ((*agent)->Stop() != 0) {
    std::printf("the agent did not exit cleanly\n");
    rc = 1;
  }
  X509_free(fx.bob_cert);
  X509_STORE_free(fx.store);
  return rc;
}

}  // namespace
}  // namespace smime::soak

int main(int argc, char** argv) { return smime::soak::Main(argc, argv); }
