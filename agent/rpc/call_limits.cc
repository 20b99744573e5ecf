#include "agent/rpc/call_limits.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/limits.h"
#include "common/log.h"

namespace smime::agent {
namespace {

thread_local std::weak_ptr<CallTicket> current_ticket;

int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

}  // namespace

CallTicket* CallTicket::Current() { return current_ticket.lock().get(); }

CallTicket::~CallTicket() { limits_->Release(this); }

void CallTicket::WatchStream(grpc::ServerContext* ctx) {
  absl::MutexLock lock(&limits_->mu_);
  if (ctx_ != nullptr) return;
  ctx_ = ctx;
  limits_->watched_.insert(this);
}

void CallTicket::BeginWait() { waiting_since_ns_.store(NowNs()); }
void CallTicket::EndWait() { waiting_since_ns_.store(0); }

bool CallTicket::TakeBytes(size_t n) {
  size_t held = limits_->bytes_.load();
  do {
    if (held + n > limits_->options_.max_bytes_in_flight) return false;
  } while (!limits_->bytes_.compare_exchange_weak(held, held + n));
  bytes_ += n;
  return true;
}

absl::Status CallTicket::CancelReason() const {
  if (!idle_cancelled_.load()) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat("the client sent and read nothing for ",
                                                  absl::FormatDuration(limits_->options_.stream_idle),
                                                  " (stream_idle_seconds); the call was cancelled"));
}

CallLimits::CallLimits(CallLimitOptions options) : options_(options) {
  watcher_ = std::thread([this] { WatchLoop(); });
}

CallLimits::~CallLimits() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  watcher_.join();
}

absl::StatusOr<std::shared_ptr<CallTicket>> CallLimits::Enter(pid_t client) {
  if (std::shared_ptr<CallTicket> t = current_ticket.lock(); t != nullptr && t->limits_ == this) return t;
  {
    absl::MutexLock lock(&mu_);
    size_t& n = calls_[client];
    if (n >= options_.max_calls_per_client) {
      if (n == 0) calls_.erase(client);
      return absl::ResourceExhaustedError(absl::StrCat("process ", client, " has ", n,
                                                       " calls in flight, the most one client may have "
                                                       "(max_calls_per_client); wait for one to finish"));
    }
    ++n;
  }
  std::shared_ptr<CallTicket> t(new CallTicket(this, client));
  current_ticket = t;
  return t;
}

void CallLimits::Release(CallTicket* ticket) {
  bytes_.fetch_sub(ticket->bytes_);
  absl::MutexLock lock(&mu_);
  watched_.erase(ticket);
  auto it = calls_.find(ticket->client_);
  if (it != calls_.end() && --it->second == 0) calls_.erase(it);
}

void CallLimits::WatchLoop() {
  const int64_t idle_ns = absl::ToInt64Nanoseconds(options_.stream_idle);
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(200))) return;
    const int64_t now = NowNs();
    for (CallTicket* t : watched_) {
      int64_t since = t->waiting_since_ns_.load();
      if (since == 0 || now - since < idle_ns || t->idle_cancelled_.load()) continue;
      t->idle_cancelled_.store(true);
      SMIME_LOG(kWarning, "stream_idle_cancelled")
          .Kv("peer_pid", t->client_)
          .Kv("idle", absl::FormatDuration(options_.stream_idle));
      t->ctx_->TryCancel();
    }
  }
}

}  // namespace smime::agent
