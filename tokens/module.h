// A loaded PKCS#11 module and the one door every C_* call goes through
// (STYLE.md §3).
#ifndef SMIME_TOKENS_MODULE_H_
#define SMIME_TOKENS_MODULE_H_

#include <p11-kit/pkcs11.h>

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tokens/ckr_status.h"

namespace smime::tokens {

namespace internal {
// Checks the result of the call named `fn`. On failure it logs
// `fn=C_Sign rv=CKR_...` (never the arguments: C_Login takes a PIN, templates
// may hold key values) and returns CkrStatus(fn, rv).
absl::Status CheckRv(const char* fn, CK_RV rv);
}  // namespace internal

// Calls `fn` of module `mod` (a Module& or Module*-like with fl()) and returns
// an absl::Status. The only place C_* functions are invoked.
#define P11_CALL(mod, fn, ...) \
  ::smime::tokens::internal::CheckRv(#fn, (mod).fl()->fn(__VA_ARGS__))

// One PKCS#11 module, initialised once per process. Whoever loads it first
// owns its lifetime (C_Initialize/C_Finalize); a module another library
// already initialised in this process (CKR_CRYPTOKI_ALREADY_INITIALIZED) is
// borrowed and never finalised by us, since a C_Finalize would pull it away
// from the other user.
class Module {
 public:
  // `path_or_name` is a file path (contains '/') or the name of a module
  // registered with p11-kit (e.g. "softhsm2", "opensc").
  static absl::StatusOr<std::shared_ptr<Module>> Load(const std::string& path_or_name);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module();

  CK_FUNCTION_LIST* fl() const { return fl_; }
  const std::string& path() const { return path_; }
  bool owns_initialization() const { return owns_init_; }

 private:
  Module(void* dl, CK_FUNCTION_LIST* fl, std::string path, bool owns_init)
      : dl_(dl), fl_(fl), path_(std::move(path)), owns_init_(owns_init) {}
  void* dl_;
  CK_FUNCTION_LIST* fl_;
  std::string path_;
  bool owns_init_;
};

// Blank-padded fixed-size PKCS#11 strings (token labels etc.) as std::string
// without the padding.
std::string TrimPadded(const unsigned char* data, size_t size);

}  // namespace smime::tokens

#endif  // SMIME_TOKENS_MODULE_H_
