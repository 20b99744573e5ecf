// smime-agent-bench: what the agent costs. Runs the same private-key
// operations on one SoftHSM token twice in one run, in-process through
// PKCS#11 (tokens::Token) and through the real agent over its Unix socket
// (client::AgentClient), at several numbers of concurrent clients, and
// reports throughput, p50/p99 latency, the agent/in-process throughput ratio
// and the latency the agent adds (STYLE.md §13, docs/PERFORMANCE.md).
//
// Machines and tokens differ; the ratio is what the agent costs, so both
// paths run back to back on the same keys of the same token. A custom
// harness rather than Google Benchmark: latency percentiles have to be taken
// over the samples of all concurrent clients together.
//
// Nothing is set up by hand: the token is made by softhsm-config/
// make-token.sh in a temporary directory, the keys are generated on it, and
// the agent binary is started as a child process on a socket in that
// directory. All of it is removed at the end.
//
// The parts: harness.h (token, keys, agent), workloads.h (the operations
// and their checks), measure.h (timing, percentiles, CPU time, peak RSS),
// report.h (table and JSON). This file: the command line and the run.

#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "tests/bench/harness.h"
#include "tests/bench/measure.h"
#include "tests/bench/options.h"
#include "tests/bench/report.h"
#include "tests/bench/workloads.h"

namespace smime::bench {

std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "used in a signal handler");

namespace {

void RequestStop(int /*signal*/) { stop_requested.store(true); }

// The operations `options.ops` names, in its order; all when it is empty.
absl::StatusOr<std::vector<Workload>> Choose(std::vector<Workload> workloads, const Options& options) {
  if (options.ops.empty()) return workloads;
  std::vector<Workload> chosen;
  for (const std::string& name : options.ops) {
    auto it = std::find_if(workloads.begin(), workloads.end(),
                           [&](const Workload& w) { return w.name == name; });
    if (it == workloads.end()) {
      std::vector<std::string> names;
      for (const Workload& w : workloads) names.push_back(w.name);
      return absl::InvalidArgumentError(absl::StrCat("unknown operation \"", name,
                                                     "\"; known: ", absl::StrJoin(names, ", ")));
    }
    chosen.push_back(*it);
  }
  return chosen;
}

absl::Status RunBenchmark(const Options& options, int argc, char** argv) {
  // Declared before the workloads, which use its token and keys.
  ASSIGN_OR_RETURN(std::unique_ptr<Harness> harness, Harness::Create(options));
  ASSIGN_OR_RETURN(std::vector<Workload> workloads,
                   MakeWorkloads(harness->token(), harness->rsa(), harness->ec()));
  ASSIGN_OR_RETURN(std::vector<Workload> smime, MakeSmimeWorkloads(harness->smime()));
  for (Workload& w : smime) workloads.push_back(std::move(w));
  ASSIGN_OR_RETURN(workloads, Choose(std::move(workloads), options));
  const Environment env = DescribeEnvironment(argc, argv, harness->module());

  const int max_clients = *std::max_element(options.clients.begin(), options.clients.end());
  RETURN_IF_ERROR(harness->StartAgent(options, max_clients));
  testing::AgentProcess& agent = harness->agent();
  const std::vector<std::string>& client_sockets = harness->client_sockets();

  // Each (operation, clients) pair runs in-process then through the agent,
  // back to back, so slow drift of the machine affects both alike.
  const size_t total = workloads.size() * options.clients.size() * 2;
  std::vector<CellResult> cells;
  cells.reserve(total);  // never reallocated: comparisons point into it
  std::vector<Comparison> comparisons;
  for (const Workload& workload : workloads) {
    for (int clients : options.clients) {
      const CellResult* pair[2];
      for (Path path : {Path::kInProcess, Path::kAgent}) {
        if (stop_requested) return absl::CancelledError("interrupted");
        absl::StatusOr<CellResult> cell =
            RunCell(workload, path, clients, options, client_sockets, agent.pid());
        // ^C reaches the agent too; report the interruption, not its effect.
        if (stop_requested) return absl::CancelledError("interrupted");
        if (!cell.ok()) return cell.status();
        cells.push_back(*std::move(cell));
        pair[path == Path::kAgent] = &cells.back();
        std::cerr << absl::StrFormat(
            "[%2d/%d] %-16s %-10s %d client%s: %8.0f ops/s  p50 %7.1f µs\n", cells.size(), total,
            workload.name, PathName(path), clients, clients == 1 ? "" : "s",
            cells.back().ops_per_second, cells.back().p50_us);
      }
      comparisons.push_back(Comparison{pair[0], pair[1]});
    }
  }
  const std::vector<Target> targets = EvaluateTargets(comparisons);
  std::vector<LargeResult> large;
  if (options.large_mib > 0 && !stop_requested) {
    ASSIGN_OR_RETURN(large, RunLarge(*harness->smime(), client_sockets[0], agent.pid(),
                                     static_cast<size_t>(options.large_mib) << 20));
  }

  if (int code = agent.Stop(); code != 0) {
    std::cerr << "smime-agent-bench: warning: the agent exited with code " << code
              << " on SIGTERM; its log:\n"
              << agent.Log();
  }
  if (options.json) {
    std::cout << ToJson(env, options, cells, comparisons, targets, large).dump(2) << "\n";
  } else {
    PrintTable(env, options, comparisons, targets);
    PrintLarge(large);
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  CLI::App app{
      "smime-agent-bench: RSA-2048 and P-256 key operations on a throwaway SoftHSM token, "
      "in-process through PKCS#11 and through smime-agent over its Unix socket"};
  Options options;
  app.add_option("--seconds", options.seconds, "timed seconds per cell (operation, path, clients)")
      ->check(CLI::Range(0.01, 600.0));
  app.add_option("--clients", options.clients, "numbers of concurrent clients to measure")
      ->check(CLI::Range(1, 64))
      ->delimiter(',');
  app.add_option("--warmup", options.warmup_ops,
                 "untimed, checked calls per client before each cell")
      ->check(CLI::Range(1, 10000));
  app.add_option("--max-ops", options.max_ops, "upper bound on timed calls per cell")
      ->check(CLI::PositiveNumber);
  app.add_option("--ops", options.ops, "operations to run (default: all), e.g. p256-sign")
      ->delimiter(',');
  app.add_option("--large-mib", options.large_mib,
                 "size of the one-shot large-message S/MIME run, MiB (0: skip)")
      ->check(CLI::Range(0, 60));
  app.add_flag("--json", options.json, "print a JSON document instead of the table");
  app.add_option("--module", options.module, "SoftHSM2 PKCS#11 module");
  app.add_option("--agent", options.agent, "smime-agent binary to start");
  app.add_option("--make-token", options.make_token,
                 "softhsm-config/make-token.sh to make the token with");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  struct sigaction action = {};
  action.sa_handler = RequestStop;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  // The tokens layer logs each key load at info level; the agent child runs
  // at warning too, so only trouble reaches the terminal.
  SetLogLevel(LogLevel::kWarning);
  absl::Status status = RunBenchmark(options, argc, argv);
  if (!status.ok()) {
    std::cerr << "smime-agent-bench: " << status << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace smime::bench

int main(int argc, char** argv) { return smime::bench::Main(argc, argv); }

