#include "tokens/session.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace smime::tokens {

absl::StatusOr<CK_SESSION_HANDLE> internal::OpenSession(Module& module, CK_SLOT_ID slot) {
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  absl::Status st =
      P11_CALL(module, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
  if (!st.ok() && CkrOf(st) == CKR_TOKEN_WRITE_PROTECTED) {
    st = P11_CALL(module, C_OpenSession, slot, CKF_SERIAL_SESSION, nullptr, nullptr, &h);
  }
  if (!st.ok()) return st;
  return h;
}

Session::Session(Session&& other) noexcept
    : pool_(other.pool_), handle_(other.handle_), generation_(other.generation_),
      broken_(other.broken_) {
  other.pool_ = nullptr;
  other.handle_ = CK_INVALID_HANDLE;
}

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    Reset();
    pool_ = other.pool_;
    handle_ = other.handle_;
    generation_ = other.generation_;
    broken_ = other.broken_;
    other.pool_ = nullptr;
    other.handle_ = CK_INVALID_HANDLE;
  }
  return *this;
}

Session::~Session() { Reset(); }

void Session::Reset() noexcept {
  if (pool_ != nullptr && handle_ != CK_INVALID_HANDLE) {
    pool_->Release(handle_, generation_, broken_);
  }
  pool_ = nullptr;
  handle_ = CK_INVALID_HANDLE;
  broken_ = false;
}

SessionPool::SessionPool(std::shared_ptr<Module> module, CK_SLOT_ID slot, size_t max_sessions)
    : module_(std::move(module)), max_sessions_(max_sessions < 1 ? 1 : max_sessions), slot_(slot),
      module_generation_(module_->generation()) {}

SessionPool::~SessionPool() {
  absl::MutexLock lock(&mu_);
  for (CK_SESSION_HANDLE h : idle_) CloseIfLive(h, generation_);
  idle_.clear();
}

absl::StatusOr<Session> SessionPool::Acquire(absl::Time deadline) {
  uint64_t generation;
  CK_SLOT_ID slot;
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < max_sessions_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "all ", max_sessions_, " token sessions stayed busy until the deadline; retry later "
          "or raise max_sessions"));
    }
    if (!idle_.empty()) {
      CK_SESSION_HANDLE h = idle_.back();
      idle_.pop_back();
      return Session(this, h, generation_);
    }
    ++open_;  // reserve the slot; open outside the lock
    generation = generation_;
    slot = slot_;
  }
  absl::StatusOr<CK_SESSION_HANDLE> h = internal::OpenSession(*module_, slot);
  if (!h.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return h.status();
  }
  return Session(this, *h, generation);
}

void SessionPool::Release(CK_SESSION_HANDLE handle, uint64_t generation, bool broken) noexcept {
  absl::MutexLock lock(&mu_);
  if (broken || generation != generation_) {
    CloseIfLive(handle, generation);
    --open_;
    return;
  }
  idle_.push_back(handle);
}

void SessionPool::Close(CK_SESSION_HANDLE handle) noexcept {
  // A failure here (token gone) is logged by the door; nothing else to do.
  (void)P11_CALL(*module_, C_CloseSession, handle);
}

bool SessionPool::InvalidateIfCurrent(uint64_t seen_generation) {
  absl::MutexLock lock(&mu_);
  if (seen_generation != generation_) return false;
  for (CK_SESSION_HANDLE h : idle_) CloseIfLive(h, generation_);
  open_ -= idle_.size();
  idle_.clear();
  ++generation_;
  return true;
}

void SessionPool::CloseIfLive(CK_SESSION_HANDLE handle, uint64_t generation) {
  if (generation < restarted_at_ || module_->generation() != module_generation_) return;
  Close(handle);
}

void SessionPool::Restart(CK_SLOT_ID slot) {
  absl::MutexLock lock(&mu_);
  open_ -= idle_.size();
  idle_.clear();
  ++generation_;
  restarted_at_ = generation_;
  module_generation_ = module_->generation();
  slot_ = slot;
}

uint64_t SessionPool::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

size_t SessionPool::open_sessions() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

}  // namespace smime::tokens
