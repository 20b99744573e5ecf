// A loaded PKCS#11 module and the one door every C_* call goes through
// (STYLE.md §3).
#ifndef SMIME_TOKENS_MODULE_H_
#define SMIME_TOKENS_MODULE_H_

#include <p11-kit/pkcs11.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tokens/ckr_status.h"

namespace smime::tokens {

namespace internal {
// Checks the result of the call named `fn`. On failure it logs
// `fn=C_Sign rv=CKR_...` (never the arguments: C_Login takes a PIN, templates
// may hold key values) and returns CkrStatus(fn, rv).
absl::Status CheckRv(const char* fn, CK_RV rv);
}  // namespace internal

// Calls `fn` of module `mod` (a Module&) and returns an absl::Status. The
// only place C_* functions are invoked; each call holds a Module::Use for
// its duration, so the module is never finalised under it.
#define P11_CALL(mod, fn, ...) \
  ::smime::tokens::internal::CheckRv(#fn, (mod).Enter()->fn(__VA_ARGS__))

// One PKCS#11 module, initialised once per process. Whoever loads it first
// owns its lifetime (C_Initialize/C_Finalize); a module another library
// already initialised in this process (CKR_CRYPTOKI_ALREADY_INITIALIZED) is
// borrowed and never finalised by us, since a C_Finalize would pull it away
// from the other user.
//
// A module whose link to its tokens broke for good (a network HSM's client
// module, or p11-kit's client after `p11-kit server` restarted: every call
// then fails with CKR_DEVICE_ERROR even once the server is back) needs
// C_Finalize and C_Initialize again; Reinitialize does that, between calls.
class Module {
 public:
  // One call into the module: while a Use lives, Reinitialize waits.
  class Use {
   public:
    explicit Use(const Module& module);
    ~Use() { module_.users_.fetch_sub(1); }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    CK_FUNCTION_LIST* operator->() const { return module_.fl_; }

   private:
    const Module& module_;
  };
  Use Enter() const { return Use(*this); }

  // `path_or_name` is a file path (contains '/') or the name of a module
  // registered with p11-kit (e.g. "softhsm2", "opensc").
  static absl::StatusOr<std::shared_ptr<Module>> Load(const std::string& path_or_name);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module();

  CK_FUNCTION_LIST* fl() const { return fl_; }
  const std::string& path() const { return path_; }
  bool owns_initialization() const { return owns_init_; }

  // Grows by one with each Reinitialize that finalised the module: every
  // session and login from an earlier generation is gone, and its handles
  // may name new sessions, so they must never be closed.
  uint64_t generation() const { return generation_.load(); }

  // C_Finalize (unless a failed attempt left the module uninitialised) and
  // C_Initialize again, once no call is in the module (waiting at most
  // `wait`, else UNAVAILABLE and nothing done). Does nothing and returns OK
  // when the generation is no longer `seen` and the module is initialised
  // (another token of this module did it). An attempt less than a second
  // after the last one is not made: UNAVAILABLE at once, so a module still
  // cut off is not started again for every call. FAILED_PRECONDITION for a
  // module another library of this process initialised.
  absl::Status Reinitialize(uint64_t seen, absl::Duration wait);

 private:
  Module(void* dl, CK_FUNCTION_LIST* fl, std::string path, bool owns_init)
      : dl_(dl), fl_(fl), path_(std::move(path)), owns_init_(owns_init) {}
  void WaitWhileReinitializing() const;

  void* dl_;
  CK_FUNCTION_LIST* fl_;
  std::string path_;
  bool owns_init_;

  // Calls in the module now, and whether Reinitialize is waiting for them
  // to return (new calls wait on reinit_mu_ meanwhile).
  mutable std::atomic<int64_t> users_{0};
  mutable std::atomic<bool> reinitializing_{false};
  mutable absl::Mutex reinit_mu_;
  std::atomic<uint64_t> generation_{1};
  // Reinitialize callers, one at a time; what the last attempt left.
  absl::Mutex reinit_one_mu_;
  bool initialized_ ABSL_GUARDED_BY(reinit_one_mu_) = true;
  absl::Time last_attempt_ ABSL_GUARDED_BY(reinit_one_mu_) = absl::InfinitePast();
};

// Blank-padded fixed-size PKCS#11 strings (token labels etc.) as std::string
// without the padding.
std::string TrimPadded(const unsigned char* data, size_t size);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_MODULE_H_
