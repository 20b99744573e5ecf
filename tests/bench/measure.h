// What smime-agent-bench measures and how: each (operation, path, clients)
// cell timed over concurrent client threads (throughput, latency
// percentiles over all clients' samples, CPU time of both processes), and the
// one-shot large message with the agent's peak resident memory.
#ifndef SMIME_TESTS_BENCH_MEASURE_H_
#define SMIME_TESTS_BENCH_MEASURE_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/bench/options.h"
#include "tests/bench/workloads.h"

namespace smime::bench {

enum class Path { kInProcess, kAgent };

const char* PathName(Path path);

struct CellResult {
  std::string operation;
  std::string mechanism;
  Path path = Path::kInProcess;
  int clients = 0;
  int64_t ops = 0;
  double seconds = 0;
  double ops_per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  // CPU time per operation spent by this process (the client threads, and
  // on the in-process path the token's work too) and by the agent process.
  double bench_cpu_us_per_op = 0;
  double agent_cpu_us_per_op = 0;
};

// Runs `workload` on `clients` threads at once for `options.seconds` (or
// until options.max_ops calls in all), after an untimed warm-up in which each
// client connects and checks every result. Agent clients use
// `client_sockets` (one each). `agent_pid` is the agent's process, whose CPU
// time is charged to the cell alongside this process's.
absl::StatusOr<CellResult> RunCell(const Workload& workload, Path path, int clients,
                                   const Options& options,
                                   const std::vector<std::string>& client_sockets,
                                   pid_t agent_pid);

// One large message through the agent, timed once, with the agent's peak
// resident memory (VmHWM, monotonic over its life) read after it.
struct LargeResult {
  std::string operation;
  std::string path;
  size_t bytes = 0;
  double seconds = 0;
  double agent_peak_rss_mib = -1;  // -1: not applicable or unreadable
};

// The agent's peak resident memory (VmHWM) in MiB, -1 if unreadable.
double PeakRssMib(pid_t pid);
// One `bytes` message signed, encrypted and decrypted, each timed once, in
// process and through the agent on `socket`.
absl::StatusOr<std::vector<LargeResult>> RunLarge(const SmimeFixture& fx, const std::string& socket,
                                                  pid_t agent_pid, size_t bytes);

}  // namespace smime::bench

#endif  // SMIME_TESTS_BENCH_MEASURE_H_
