#include "tokens/module.h"

#include <dlfcn.h>
#include <p11-kit/p11-kit.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
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

Module::~Module() {
  if (owns_init_) {
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
