// smime-agent-bench's settings and the names its parts share (harness,
// workloads, measurement, report; see smime_agent_bench.cc).
#ifndef SMIME_TESTS_BENCH_OPTIONS_H_
#define SMIME_TESTS_BENCH_OPTIONS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

#ifndef SMIME_SOURCE_DIR
#error "SMIME_SOURCE_DIR must name the source tree (set in tests/bench/CMakeLists.txt)"
#endif
#ifndef SMIME_AGENT_BIN
#error "SMIME_AGENT_BIN must name the built smime-agent (set in tests/bench/CMakeLists.txt)"
#endif
#ifndef SMIME_SOFTHSM_MODULE
#define SMIME_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

namespace smime::bench {

inline constexpr char kTokenLabel[] = "bench";
inline constexpr char kRsaLabel[] = "bench-rsa";
inline constexpr char kEcLabel[] = "bench-p256";
// What RSA key transport carries in CMS: an AES-256 content-encryption key.
inline constexpr size_t kSecretBytes = 32;
// Both paths use the same session cap, so neither gets more token
// parallelism than the other.
inline constexpr size_t kMaxSessions = 8;
// Per call; a call that takes this long means something is broken.
inline constexpr absl::Duration kCallTimeout = absl::Seconds(10);

// Set by SIGINT or SIGTERM. The run then stops at the end of the current
// cell and still stops the agent and removes its temporary directory.
extern std::atomic<bool> stop_requested;

struct Options {
  double seconds = 1.0;
  std::vector<int> clients = {1, 2, 8};
  // Operations to run, by name; empty runs all.
  std::vector<std::string> ops;
  int warmup_ops = 5;
  int64_t max_ops = 1'000'000;
  // Size of the one-shot large-message S/MIME run (0: skip it).
  int large_mib = 50;
  bool json = false;
  std::string module = SMIME_SOFTHSM_MODULE;
  std::string agent = SMIME_AGENT_BIN;
  std::string make_token = SMIME_SOURCE_DIR "/softhsm-config/make-token.sh";
};

}  // namespace smime::bench

#endif  // SMIME_TESTS_BENCH_OPTIONS_H_
