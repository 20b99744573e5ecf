// Token sessions as move-only handles, drawn from a per-slot pool
// (STYLE.md §5, §6). No raw CK_SESSION_HANDLE leaves tokens/.
#ifndef SMIME_TOKENS_SESSION_H_
#define SMIME_TOKENS_SESSION_H_

#include <p11-kit/pkcs11.h>

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tokens/module.h"

namespace smime::tokens {

class SessionPool;

namespace internal {
// Opens a read-write session on `slot`, or a read-only one on a
// write-protected token.
absl::StatusOr<CK_SESSION_HANDLE> OpenSession(Module& module, CK_SLOT_ID slot);
}  // namespace internal

// A session borrowed from a SessionPool; returned to it on destruction.
class Session {
 public:
  Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  ~Session();

  CK_SESSION_HANDLE handle() const { return handle_; }
  // The pool generation the session was opened in (SessionPool::generation).
  uint64_t generation() const { return generation_; }
  // The session is in an unknown state (operation left active, token gone):
  // close it instead of returning it to the pool.
  void MarkBroken() { broken_ = true; }

 private:
  friend class SessionPool;
  Session(SessionPool* pool, CK_SESSION_HANDLE handle, uint64_t generation)
      : pool_(pool), handle_(handle), generation_(generation) {}
  void Reset() noexcept;

  SessionPool* pool_ = nullptr;
  CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
  uint64_t generation_ = 0;
  bool broken_ = false;
};

// Up to `max_sessions` read-write sessions on one slot. Callers wait (until
// their deadline) when all are busy. The pool must outlive its Sessions.
class SessionPool {
 public:
  SessionPool(std::shared_ptr<Module> module, CK_SLOT_ID slot, size_t max_sessions);
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;
  ~SessionPool();

  // A free session, opening one if fewer than max_sessions are open.
  // RESOURCE_EXHAUSTED when none frees up before `deadline`.
  absl::StatusOr<Session> Acquire(absl::Time deadline);

  // Closes idle sessions now and busy ones when they come back (after the
  // token was removed, its sessions are dead), and starts a new generation.
  // Only when no one did so since a session of `seen_generation` was handed
  // out: then returns true. Callers that watched the same sessions die
  // together thus invalidate once.
  bool InvalidateIfCurrent(uint64_t seen_generation);
  // Grows by one with each invalidation.
  uint64_t generation() const;

  // After the module was started again (Module::Reinitialize): every
  // session handed out or idle is dead and its handle may name a new
  // session, so none is ever closed; sessions open on `slot` from now on.
  void Restart(CK_SLOT_ID slot);

  size_t max_sessions() const { return max_sessions_; }
  size_t open_sessions() const;

 private:
  friend class Session;
  void Release(CK_SESSION_HANDLE handle, uint64_t generation, bool broken) noexcept;
  void Close(CK_SESSION_HANDLE handle) noexcept;

  // Closes `handle` of pool generation `generation` unless the module was
  // started again since it was opened.
  void CloseIfLive(CK_SESSION_HANDLE handle, uint64_t generation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<Module> module_;
  const size_t max_sessions_;
  mutable absl::Mutex mu_;
  CK_SLOT_ID slot_ ABSL_GUARDED_BY(mu_);
  std::vector<CK_SESSION_HANDLE> idle_ ABSL_GUARDED_BY(mu_);
  size_t open_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  // Sessions of pool generations from this one on were opened in module
  // generation module_generation_.
  uint64_t restarted_at_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t module_generation_ ABSL_GUARDED_BY(mu_);
};

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_SESSION_H_
