#include "tests/bench/measure.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <latch>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "tokens/certificate.h"

namespace smime::bench {

namespace v1 = ::smime::agent::v1;
using Clock = std::chrono::steady_clock;

const char* PathName(Path path) { return path == Path::kInProcess ? "in_process" : "agent"; }

namespace {

// One client's way to call the workload: for the agent path its own
// AgentClient on its own connection.
using ClientCall = std::function<absl::StatusOr<std::string>()>;

absl::StatusOr<ClientCall> MakeClientCall(const Workload& workload, Path path,
                                          const std::string& socket) {
  if (path == Path::kInProcess) return ClientCall(workload.in_process);
  auto connected = client::AgentClient::Connect(socket, kCallTimeout);
  if (!connected.ok()) return connected.status();
  std::shared_ptr<client::AgentClient> agent_client = std::move(*connected);
  return ClientCall([agent_client, &workload] { return workload.agent(*agent_client); });
}

// Nearest-rank percentile of sorted samples.
double PercentileUs(const std::vector<int64_t>& sorted_ns, double q) {
  if (sorted_ns.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted_ns.size())));
  return static_cast<double>(sorted_ns[std::clamp<size_t>(rank, 1, sorted_ns.size()) - 1]) / 1000.0;
}

// CPU time used so far by all threads of process `pid` (0: this process),
// zero if it cannot be read. Per-operation CPU cost shows whether a slower
// path spends more work or only waits more.
absl::Duration ProcessCpuTime(pid_t pid) {
  clockid_t clock = CLOCK_PROCESS_CPUTIME_ID;
  if (pid != 0 && ::clock_getcpuclockid(pid, &clock) != 0) return absl::ZeroDuration();
  timespec ts;
  if (::clock_gettime(clock, &ts) != 0) return absl::ZeroDuration();
  return absl::DurationFromTimespec(ts);
}

struct ClientState {
  std::vector<int64_t> latencies_ns;
  absl::Status status;
  Clock::time_point end;
};

// The body of one client thread between warm-up and teardown: calls until
// `deadline` or `max_calls`, recording each call's latency.
void TimedCalls(const ClientCall& call, int64_t max_calls, Clock::time_point deadline,
                ClientState& state) {
  for (int64_t n = 0; n < max_calls; ++n) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<std::string> result = call();
    const Clock::time_point t1 = Clock::now();
    if (!result.ok()) {
      state.status = result.status();
      break;
    }
    state.latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    if (t1 >= deadline || stop_requested.load(std::memory_order_relaxed)) break;
  }
  state.end = Clock::now();
}

}  // namespace

absl::StatusOr<CellResult> RunCell(const Workload& workload, Path path, int clients,
                                   const Options& options,
                                   const std::vector<std::string>& client_sockets,
                                   pid_t agent_pid) {
  const int64_t max_calls_per_client = std::max<int64_t>(1, options.max_ops / clients);
  // Room for ~30k calls/s per client (P-256 in-process is ~20k/s), so that
  // the vector does not grow while the clock runs.
  const auto reserve = static_cast<size_t>(
      std::min<double>(static_cast<double>(max_calls_per_client), options.seconds * 30000 + 1000));
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.seconds));

  std::vector<ClientState> states(static_cast<size_t>(clients));
  // Phases: every client warmed up -> go -> every client done -> CPU time
  // read -> teardown (closing connections is not part of the cell).
  std::latch warmed_up(clients);
  std::latch go(1);
  std::latch done(clients);
  std::latch teardown(1);
  Clock::time_point deadline;  // written before `go` opens, read after
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      ClientState& state = states[static_cast<size_t>(i)];
      absl::StatusOr<ClientCall> call =
          MakeClientCall(workload, path, client_sockets[static_cast<size_t>(i)]);
      state.status = call.status();
      for (int k = 0; state.status.ok() && k < options.warmup_ops; ++k) {
        absl::StatusOr<std::string> result = (*call)();
        state.status = result.ok() ? workload.check(*result) : result.status();
      }
      state.latencies_ns.reserve(reserve);
      warmed_up.count_down();
      go.wait();
      if (state.status.ok()) TimedCalls(*call, max_calls_per_client, deadline, state);
      done.count_down();
      teardown.wait();
    });
  }
  warmed_up.wait();
  const absl::Duration own_cpu_start = ProcessCpuTime(0);
  const absl::Duration agent_cpu_start = ProcessCpuTime(agent_pid);
  const Clock::time_point start = Clock::now();
  deadline = start + duration;
  go.count_down();
  done.wait();
  const absl::Duration own_cpu = ProcessCpuTime(0) - own_cpu_start;
  const absl::Duration agent_cpu = ProcessCpuTime(agent_pid) - agent_cpu_start;
  teardown.count_down();
  for (std::thread& t : threads) t.join();

  CellResult cell;
  cell.operation = workload.name;
  cell.mechanism = workload.mechanism;
  cell.path = path;
  cell.clients = clients;
  std::vector<int64_t> all;
  Clock::time_point end = start;
  for (size_t i = 0; i < states.size(); ++i) {
    if (!states[i].status.ok()) {
      return absl::Status(states[i].status.code(),
                          absl::StrCat(workload.name, " via ", PathName(path), ", client ", i + 1,
                                       " of ", clients, ": ", states[i].status.message()));
    }
    all.insert(all.end(), states[i].latencies_ns.begin(), states[i].latencies_ns.end());
    end = std::max(end, states[i].end);
  }
  std::sort(all.begin(), all.end());
  cell.ops = static_cast<int64_t>(all.size());
  cell.seconds = std::chrono::duration<double>(end - start).count();
  cell.ops_per_second = cell.seconds > 0 ? static_cast<double>(cell.ops) / cell.seconds : 0;
  cell.p50_us = PercentileUs(all, 0.50);
  cell.p99_us = PercentileUs(all, 0.99);
  if (cell.ops > 0) {
    cell.bench_cpu_us_per_op = absl::ToDoubleMicroseconds(own_cpu) / static_cast<double>(cell.ops);
    cell.agent_cpu_us_per_op =
        absl::ToDoubleMicroseconds(agent_cpu) / static_cast<double>(cell.ops);
  }
  return cell;
}

double PeakRssMib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmHWM:")) {
      return std::strtod(line.c_str() + 6, nullptr) / 1024.0;  // kB
    }
  }
  return -1;
}

absl::StatusOr<std::vector<LargeResult>> RunLarge(const SmimeFixture& fx, const std::string& socket,
                                                  pid_t agent_pid, size_t bytes) {
  std::cerr << "smime-agent-bench: large message, " << (bytes >> 20) << " MiB\n";
  ASSIGN_OR_RETURN(std::unique_ptr<client::AgentClient> c,
                   client::AgentClient::Connect(socket, absl::Minutes(5)));
  const std::string entity = MakeEntity(bytes);
  std::vector<LargeResult> out;
  out.push_back({"agent peak RSS before", "agent", 0, 0, PeakRssMib(agent_pid)});
  auto timed = [&](const std::string& op, const std::string& path,
                   const std::function<absl::StatusOr<std::string>()>& call,
                   const std::function<absl::Status(const std::string&)>& check) -> absl::Status {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<std::string> result = call();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!result.ok()) return absl::Status(result.status().code(), absl::StrCat(op, " via ", path, ": ",
                                                                               result.status().message()));
    RETURN_IF_ERROR(check(*result));
    out.push_back({op, path, bytes, seconds, path == "agent" ? PeakRssMib(agent_pid) : -1});
    return absl::OkStatus();
  };
  auto check_signed = [&](const std::string& smime) { return CheckSigned(fx, smime, entity); };
  v1::SignOptions sign_options;
  *sign_options.mutable_key() = client::TextSelector("alice");
  RETURN_IF_ERROR(timed("smime-sign", "in_process",
                        [&] { return fx.provider->Sign(fx.key.get(), fx.cert.get(), entity); },
                        check_signed));
  RETURN_IF_ERROR(timed("smime-sign", "agent", [&] { return c->SignMessage(sign_options, entity); },
                        check_signed));
  v1::EncryptOptions encrypt_options;
  encrypt_options.add_recipients(tokens::CertificateDer(fx.cert.get()));
  std::string encrypted;
  RETURN_IF_ERROR(timed(
      "smime-encrypt", "agent", [&] { return c->EncryptMessage(encrypt_options, entity); },
      [&](const std::string& e) {
        encrypted = e;
        return absl::OkStatus();
      }));
  auto check_plain = [&](const std::string& plain) {
    return plain == entity ? absl::OkStatus()
                           : absl::DataLossError("the decrypted large message differs");
  };
  RETURN_IF_ERROR(timed("smime-decrypt", "in_process",
                        [&] { return fx.provider->Decrypt(fx.key.get(), fx.cert.get(), encrypted); },
                        check_plain));
  RETURN_IF_ERROR(timed(
      "smime-decrypt", "agent",
      [&]() -> absl::StatusOr<std::string> {
        ASSIGN_OR_RETURN(client::AgentClient::Decrypted d, c->DecryptMessage(encrypted));
        return std::move(d.content);
      },
      check_plain));
  return out;
}

}  // namespace smime::bench
