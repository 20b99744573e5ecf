// What one client can hold of the agent: calls in flight per client
// process, message bytes in flight across all streamed calls, and how long a
// stream may sit waiting on a client that neither sends nor reads. A call
// holds one CallTicket from its admission to its end; the ticket gives its
// share back when the call ends, however it ends.
#ifndef SMIME_AGENT_RPC_CALL_LIMITS_H_
#define SMIME_AGENT_RPC_CALL_LIMITS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace smime::agent {

struct CallLimitOptions {
  size_t max_calls_per_client = 32;
  // A stream whose handler has waited this long for the client to send the
  // next message, or to take the next response, is cancelled.
  absl::Duration stream_idle = absl::Seconds(30);
  size_t max_bytes_in_flight = size_t{512} << 20;
};

class CallLimits;

// One call's share. Made by CallLimits::Enter; the sync server runs a
// handler on one thread from start to end, so the ticket is also "the
// ticket of the call this thread serves" (Current) until it is gone.
class CallTicket {
 public:
  CallTicket(const CallTicket&) = delete;
  CallTicket& operator=(const CallTicket&) = delete;
  ~CallTicket();

  // The ticket of the call the calling thread serves, if any.
  static CallTicket* Current();

  // Puts the call's stream under the idle watch (once; later calls no-ops).
  void WatchStream(grpc::ServerContext* ctx);
  // Around a blocking Read or Write on the stream: the idle watch counts
  // only time spent waiting on the client.
  void BeginWait();
  void EndWait();
  // Takes `n` more message bytes from the agent-wide budget; false (and
  // nothing taken) when that would pass max_bytes_in_flight.
  bool TakeBytes(size_t n);
  // Why the agent cancelled the call (the idle watch), or OK.
  absl::Status CancelReason() const;
  const CallLimits* limits() const { return limits_; }

 private:
  friend class CallLimits;
  CallTicket(CallLimits* limits, pid_t client) : limits_(limits), client_(client) {}

  CallLimits* limits_;
  pid_t client_;
  grpc::ServerContext* ctx_ = nullptr;  // set once watched; guarded by limits_->mu_
  std::atomic<int64_t> waiting_since_ns_{0};  // 0: not waiting on the client
  std::atomic<bool> idle_cancelled_{false};
  size_t bytes_ = 0;
};

class CallLimits {
 public:
  explicit CallLimits(CallLimitOptions options);
  ~CallLimits();
  CallLimits(const CallLimits&) = delete;
  CallLimits& operator=(const CallLimits&) = delete;

  // A ticket for a call from process `client`: the thread's current one if
  // it has one already, else a new one; RESOURCE_EXHAUSTED when the client
  // has max_calls_per_client in flight.
  absl::StatusOr<std::shared_ptr<CallTicket>> Enter(pid_t client);

  const CallLimitOptions& options() const { return options_; }
  size_t bytes_in_flight() const { return bytes_.load(); }

 private:
  friend class CallTicket;
  void Release(CallTicket* ticket);
  void WatchLoop();

  const CallLimitOptions options_;
  std::atomic<size_t> bytes_{0};
  absl::Mutex mu_;
  std::map<pid_t, size_t> calls_ ABSL_GUARDED_BY(mu_);
  std::set<CallTicket*> watched_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_CALL_LIMITS_H_
