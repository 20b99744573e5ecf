#include "tokens/module.h"

#include <dlfcn.h>
#include <p11-kit/p11-kit.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace smime::tokens {
namespace internal {

absl::Status CheckRv(const char* fn, CK_RV rv) {
  if (rv == CKR_OK) return absl::OkStatus();
  // Expected outcomes that callers handle are not worth a warning.
  bool expected = rv == CKR_USER_ALREADY_LOGGED_IN || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED ||
                  rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
                  rv == CKR_ATTRIBUTE_SENSITIVE;
  LogLine(expected ? LogLevel::kDebug : LogLevel::kWarning, "pkcs11_error")
      .Kv("fn", fn)
      .Kv("rv", CkrName(rv));
  return CkrStatus(fn, rv);
}

}  // namespace internal

namespace {
// Resolves a p11-kit registered module name to its file path.
absl::StatusOr<std::string> ResolveRegisteredName(const std::string& name) {
  CK_FUNCTION_LIST** modules = p11_kit_modules_load(nullptr, P11_KIT_MODULE_UNMANAGED);
  if (modules == nullptr) {
    return absl::NotFoundError(absl::StrCat("no PKCS#11 module named \"", name,
                                            "\" is registered with p11-kit; pass a module path"));
  }
  std::string found;
  for (CK_FUNCTION_LIST** m = modules; *m != nullptr; ++m) {
    char* mod_name = p11_kit_module_get_name(*m);
    if (mod_name != nullptr && name == mod_name) {
      char* file = p11_kit_module_get_filename(*m);
      if (file != nullptr) found = file;
      free(file);
    }
    free(mod_name);
  }
  p11_kit_modules_release(modules);
  if (found.empty()) {
    return absl::NotFoundError(absl::StrCat("no PKCS#11 module named \"", name,
                                            "\" is registered with p11-kit; pass a module path"));
  }
  return found;
}
}  // namespace

absl::StatusOr<std::shared_ptr<Module>> Module::Load(const std::string& path_or_name) {
  std::string path = path_or_name;
  if (path.find('/') == std::string::npos) {
    auto resolved = ResolveRegisteredName(path_or_name);
    if (!resolved.ok()) return resolved.status();
    path = *resolved;
  }
  // RTLD_NODELETE: some modules (SoftHSM) register exit handlers that crash
  // when the library is unmapped first.
  void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (dl == nullptr) {
    const char* err = dlerror();
    return absl::NotFoundError(
        absl::StrCat("cannot load PKCS#11 module ", path, ": ", err ? err : "unknown error"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
  if (get_list == nullptr) {
    dlclose(dl);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a PKCS#11 module (no C_GetFunctionList)"));
  }
  CK_FUNCTION_LIST* fl = nullptr;
  CK_RV rv = get_list(&fl);
  if (rv != CKR_OK || fl == nullptr) {
    dlclose(dl);
    return internal::CheckRv("C_GetFunctionList", rv == CKR_OK ? CKR_GENERAL_ERROR : rv);
  }
  CK_C_INITIALIZE_ARGS args = {};
  args.flags = CKF_OS_LOCKING_OK;  // we call from many threads
  rv = fl->C_Initialize(&args);
  bool owns = true;
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    owns = false;
  } else if (rv != CKR_OK) {
    dlclose(dl);
    return internal::CheckRv("C_Initialize", rv);
  }
  SMIME_LOG(kInfo, "module_loaded").Kv("module", path).Kv("owner", owns ? "self" : "borrowed");
  return std::shared_ptr<Module>(new Module(dl, fl, std::move(path), owns));
}

Module::Use::Use(const Module& module) : module_(module) {
  // Sequentially consistent with Reinitialize: either it sees this call in
  // users_, or this call sees reinitializing_ and waits it out.
  for (;;) {
    module_.users_.fetch_add(1);
    if (!module_.reinitializing_.load()) return;
    module_.users_.fetch_sub(1);
    module_.WaitWhileReinitializing();
  }
}

void Module::WaitWhileReinitializing() const {
  absl::MutexLock lock(&reinit_mu_);
  reinit_mu_.Await(absl::Condition(
      +[](std::atomic<bool>* busy) { return !busy->load(); }, &reinitializing_));
}

absl::Status Module::Reinitialize(uint64_t seen, absl::Duration wait) {
  if (!owns_init_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 module ", path_, " was initialised by another library in the agent, so the agent cannot "
        "start it again; restart the agent"));
  }
  absl::MutexLock one(&reinit_one_mu_);
  if (generation_.load() != seen && initialized_) return absl::OkStatus();
  if (absl::Now() - last_attempt_ < absl::Seconds(1)) {
    return absl::UnavailableError(absl::StrCat("PKCS#11 module ", path_,
                                               " was started again less than a second ago; retry shortly"));
  }
  last_attempt_ = absl::Now();
  {
    absl::MutexLock lock(&reinit_mu_);
    reinitializing_.store(true);
  }
  struct Done {
    const Module* m;
    ~Done() {
      absl::MutexLock lock(&m->reinit_mu_);
      m->reinitializing_.store(false);
    }
  } done{this};
  absl::Time give_up = absl::Now() + wait;
  while (users_.load() != 0) {
    if (absl::Now() > give_up) {
      SMIME_LOG(kWarning, "module_reinitialize").Kv("module", path_).Kv("result", "calls still in the module");
      return absl::UnavailableError(absl::StrCat("PKCS#11 module ", path_,
                                                 " could not be started again: a call is still in it"));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (initialized_) {
    // Whatever C_Finalize says, the sessions of this generation are gone.
    (void)internal::CheckRv("C_Finalize", fl_->C_Finalize(nullptr));
    initialized_ = false;
    generation_.fetch_add(1);
  }
  CK_C_INITIALIZE_ARGS args = {};
  args.flags = CKF_OS_LOCKING_OK;
  absl::Status st = internal::CheckRv("C_Initialize", fl_->C_Initialize(&args));
  if (!st.ok()) {
    SMIME_LOG(kWarning, "module_reinitialize").Kv("module", path_).Kv("result", st.message());
    return st;
  }
  initialized_ = true;
  SMIME_LOG(kInfo, "module_reinitialize").Kv("module", path_).Kv("result", "OK").Kv("generation", generation_.load());
  return absl::OkStatus();
}

Module::~Module() {
  bool initialized;
  {
    absl::MutexLock one(&reinit_one_mu_);
    initialized = initialized_;
  }
  if (owns_init_ && initialized) {
    (void)internal::CheckRv("C_Finalize", fl_->C_Finalize(nullptr));
  }
  // The library stays mapped (RTLD_NODELETE); dlclose only drops our count.
  dlclose(dl_);
}

std::string TrimPadded(const unsigned char* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  size_t end = s.find_last_not_of(" \0", std::string::npos, 2);
  return end == std::string::npos ? std::string() : s.substr(0, end + 1);
}

}  // namespace smime::tokens
