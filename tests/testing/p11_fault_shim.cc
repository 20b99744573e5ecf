// A PKCS#11 module for tests: it loads a real module (SoftHSM unless
// SMIME_P11_SHIM_TARGET names another), forwards every call to it, and
// injects the faults named in the control file SMIME_P11_SHIM_CONTROL, read
// again on every call (test-only; a missing file means no faults). One
// directive a line:
//
//   removed            the token is out: slot and token calls give
//                      CKR_TOKEN_NOT_PRESENT (C_GetSlotList with
//                      tokenPresent=TRUE lists no slot), session calls
//                      CKR_DEVICE_REMOVED. The first call that sees the
//                      directive gone closes every session of the real
//                      module, as a reader does on reinsertion: old handles
//                      turn CKR_SESSION_HANDLE_INVALID and the login is gone.
//   sign-delay-ms N    C_Sign and C_SignFinal wait N ms (after creating
//                      CONTROL.signing, so a test knows the call is inside),
//                      then give CKR_DEVICE_REMOVED if `removed` appeared
//                      meanwhile: a token pulled mid-operation.
//   sign-hold          C_Sign and C_SignFinal create CONTROL.signing, then
//                      wait until the control file no longer says sign-hold
//                      (at most 120 s), then give CKR_DEVICE_REMOVED if
//                      `removed` appeared meanwhile. Holds a session busy, or
//                      a signature under way, for exactly as long as the test
//                      needs: no test has to guess how fast the machine is.
//   fail-attr 0xHEX    C_GetAttributeValue with that type in its template
//                      gives CKR_FUNCTION_FAILED (tokens that dislike one
//                      attribute answer so instead of ATTRIBUTE_TYPE_INVALID).
//   fail-id HEX        C_GetAttributeValue on an object whose CKA_ID is those
//                      bytes gives CKR_FUNCTION_FAILED: an unreadable object.
//
// Everything else is the real module's answer.
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Faults {
  bool removed = false;
  long sign_delay_ms = 0;
  bool sign_hold = false;
  std::vector<CK_ATTRIBUTE_TYPE> fail_attrs;
  std::vector<std::string> fail_ids;  // raw CKA_ID bytes
};

CK_FUNCTION_LIST g_real;  // the target module's functions
CK_FUNCTION_LIST g_shim;  // the list handed out: g_real with faults
std::mutex g_mu;
bool g_saw_removed = false;  // guarded by g_mu

const char* ControlPath() { return std::getenv("SMIME_P11_SHIM_CONTROL"); }

std::string HexBytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::strtoul(hex.substr(i, 2).c_str(), nullptr, 16));
  }
  return out;
}

Faults ReadControl() {
  Faults f;
  const char* path = ControlPath();
  if (path == nullptr) return f;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string directive, arg;
    words >> directive >> arg;
    if (directive == "removed") {
      f.removed = true;
    } else if (directive == "sign-delay-ms") {
      f.sign_delay_ms = std::strtol(arg.c_str(), nullptr, 10);
    } else if (directive == "sign-hold") {
      f.sign_hold = true;
    } else if (directive == "fail-attr") {
      f.fail_attrs.push_back(std::strtoul(arg.c_str(), nullptr, 16));
    } else if (directive == "fail-id") {
      f.fail_ids.push_back(HexBytes(arg));
    }
  }
  return f;
}

void CloseAllRealSessions() {
  CK_ULONG n = 0;
  if (g_real.C_GetSlotList(CK_FALSE, nullptr, &n) != CKR_OK) return;
  std::vector<CK_SLOT_ID> slots(n);
  if (n == 0 || g_real.C_GetSlotList(CK_FALSE, slots.data(), &n) != CKR_OK) return;
  for (CK_ULONG i = 0; i < n; ++i) g_real.C_CloseAllSessions(slots[i]);
}

// The faults in force now; notices a reinsertion (see the top comment).
Faults Current() {
  Faults f = ReadControl();
  std::lock_guard<std::mutex> lock(g_mu);
  if (f.removed) {
    g_saw_removed = true;
  } else if (g_saw_removed) {
    g_saw_removed = false;
    CloseAllRealSessions();
  }
  return f;
}

template <auto Fn, typename... A>
CK_RV SlotCall(CK_SLOT_ID slot, A... args) {
  if (Current().removed) return CKR_TOKEN_NOT_PRESENT;
  return (g_real.*Fn)(slot, args...);
}

template <auto Fn, typename... A>
CK_RV SessionCall(CK_SESSION_HANDLE session, A... args) {
  if (Current().removed) return CKR_DEVICE_REMOVED;
  return (g_real.*Fn)(session, args...);
}

CK_RV GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
  if (token_present && Current().removed) {
    *count = 0;
    return CKR_OK;
  }
  return g_real.C_GetSlotList(token_present, list, count);
}

CK_RV GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
  bool removed = Current().removed;
  CK_RV rv = g_real.C_GetSlotInfo(slot, info);
  if (rv == CKR_OK && removed) info->flags &= ~static_cast<CK_FLAGS>(CKF_TOKEN_PRESENT);
  return rv;
}

// For C_Sign and C_SignFinal: the slow part of a signature, during which the
// token may be pulled.
CK_RV SignDelay() {
  Faults f = Current();
  if (f.removed) return CKR_DEVICE_REMOVED;
  if (f.sign_delay_ms <= 0 && !f.sign_hold) return CKR_OK;
  std::ofstream(std::string(ControlPath()) + ".signing") << "signing\n";
  if (f.sign_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(f.sign_delay_ms));
  // The cap only keeps a test that never lets go from hanging the agent.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (f.sign_hold && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    f = Current();
  }
  return Current().removed ? CKR_DEVICE_REMOVED : CKR_OK;
}

CK_RV Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
  if (CK_RV rv = SignDelay(); rv != CKR_OK) return rv;
  return g_real.C_Sign(s, data, len, sig, sig_len);
}

CK_RV SignFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
  if (CK_RV rv = SignDelay(); rv != CKR_OK) return rv;
  return g_real.C_SignFinal(s, sig, sig_len);
}

std::string RealId(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj) {
  CK_ATTRIBUTE a = {CKA_ID, nullptr, 0};
  if (g_real.C_GetAttributeValue(s, obj, &a, 1) != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return "";
  std::string id(a.ulValueLen, '\0');
  a.pValue = id.data();
  if (g_real.C_GetAttributeValue(s, obj, &a, 1) != CKR_OK) return "";
  return id;
}

CK_RV GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n) {
  Faults f = Current();
  if (f.removed) return CKR_DEVICE_REMOVED;
  for (CK_ULONG i = 0; i < n; ++i) {
    for (CK_ATTRIBUTE_TYPE t : f.fail_attrs) {
      if (tmpl[i].type == t) return CKR_FUNCTION_FAILED;
    }
  }
  if (!f.fail_ids.empty()) {
    std::string id = RealId(s, obj);
    for (const std::string& bad : f.fail_ids) {
      if (!id.empty() && id == bad) return CKR_FUNCTION_FAILED;
    }
  }
  return g_real.C_GetAttributeValue(s, obj, tmpl, n);
}

CK_RV Load() {
  const char* target = std::getenv("SMIME_P11_SHIM_TARGET");
  if (target == nullptr || target[0] == '\0') target = "/usr/lib/softhsm/libsofthsm2.so";
  // RTLD_NODELETE as tokens/module.cc: SoftHSM's exit handlers outlive us.
  void* dl = dlopen(target, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (dl == nullptr) return CKR_GENERAL_ERROR;
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
  CK_FUNCTION_LIST* real = nullptr;
  if (get_list == nullptr || get_list(&real) != CKR_OK || real == nullptr) return CKR_GENERAL_ERROR;
  g_real = *real;
  g_shim = *real;
  g_shim.C_GetFunctionList = C_GetFunctionList;
  g_shim.C_GetSlotList = GetSlotList;
  g_shim.C_GetSlotInfo = GetSlotInfo;
  g_shim.C_Sign = Sign;
  g_shim.C_SignFinal = SignFinal;
  g_shim.C_GetAttributeValue = GetAttributeValue;
#define SMIME_SHIM_SLOT(fn) g_shim.fn = &SlotCall<&CK_FUNCTION_LIST::fn>
  SMIME_SHIM_SLOT(C_GetTokenInfo);
  SMIME_SHIM_SLOT(C_GetMechanismList);
  SMIME_SHIM_SLOT(C_GetMechanismInfo);
  SMIME_SHIM_SLOT(C_InitToken);
  SMIME_SHIM_SLOT(C_OpenSession);
  SMIME_SHIM_SLOT(C_CloseAllSessions);
#undef SMIME_SHIM_SLOT
#define SMIME_SHIM_SESSION(fn) g_shim.fn = &SessionCall<&CK_FUNCTION_LIST::fn>
  SMIME_SHIM_SESSION(C_InitPIN);
  SMIME_SHIM_SESSION(C_SetPIN);
  SMIME_SHIM_SESSION(C_CloseSession);
  SMIME_SHIM_SESSION(C_GetSessionInfo);
  SMIME_SHIM_SESSION(C_GetOperationState);
  SMIME_SHIM_SESSION(C_SetOperationState);
  SMIME_SHIM_SESSION(C_Login);
  SMIME_SHIM_SESSION(C_Logout);
  SMIME_SHIM_SESSION(C_CreateObject);
  SMIME_SHIM_SESSION(C_CopyObject);
  SMIME_SHIM_SESSION(C_DestroyObject);
  SMIME_SHIM_SESSION(C_GetObjectSize);
  SMIME_SHIM_SESSION(C_SetAttributeValue);
  SMIME_SHIM_SESSION(C_FindObjectsInit);
  SMIME_SHIM_SESSION(C_FindObjects);
  SMIME_SHIM_SESSION(C_FindObjectsFinal);
  SMIME_SHIM_SESSION(C_EncryptInit);
  SMIME_SHIM_SESSION(C_Encrypt);
  SMIME_SHIM_SESSION(C_EncryptUpdate);
  SMIME_SHIM_SESSION(C_EncryptFinal);
  SMIME_SHIM_SESSION(C_DecryptInit);
  SMIME_SHIM_SESSION(C_Decrypt);
  SMIME_SHIM_SESSION(C_DecryptUpdate);
  SMIME_SHIM_SESSION(C_DecryptFinal);
  SMIME_SHIM_SESSION(C_DigestInit);
  SMIME_SHIM_SESSION(C_Digest);
  SMIME_SHIM_SESSION(C_DigestUpdate);
  SMIME_SHIM_SESSION(C_DigestKey);
  SMIME_SHIM_SESSION(C_DigestFinal);
  SMIME_SHIM_SESSION(C_SignInit);
  SMIME_SHIM_SESSION(C_SignUpdate);
  SMIME_SHIM_SESSION(C_SignRecoverInit);
  SMIME_SHIM_SESSION(C_SignRecover);
  SMIME_SHIM_SESSION(C_VerifyInit);
  SMIME_SHIM_SESSION(C_Verify);
  SMIME_SHIM_SESSION(C_VerifyUpdate);
  SMIME_SHIM_SESSION(C_VerifyFinal);
  SMIME_SHIM_SESSION(C_VerifyRecoverInit);
  SMIME_SHIM_SESSION(C_VerifyRecover);
  SMIME_SHIM_SESSION(C_DigestEncryptUpdate);
  SMIME_SHIM_SESSION(C_DecryptDigestUpdate);
  SMIME_SHIM_SESSION(C_SignEncryptUpdate);
  SMIME_SHIM_SESSION(C_DecryptVerifyUpdate);
  SMIME_SHIM_SESSION(C_GenerateKey);
  SMIME_SHIM_SESSION(C_GenerateKeyPair);
  SMIME_SHIM_SESSION(C_WrapKey);
  SMIME_SHIM_SESSION(C_UnwrapKey);
  SMIME_SHIM_SESSION(C_DeriveKey);
  SMIME_SHIM_SESSION(C_SeedRandom);
  SMIME_SHIM_SESSION(C_GenerateRandom);
  SMIME_SHIM_SESSION(C_GetFunctionStatus);
  SMIME_SHIM_SESSION(C_CancelFunction);
#undef SMIME_SHIM_SESSION
  return CKR_OK;
}

}  // namespace

extern "C" CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  static const CK_RV loaded = Load();
  if (loaded != CKR_OK) return loaded;
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  *list = &g_shim;
  return CKR_OK;
}
