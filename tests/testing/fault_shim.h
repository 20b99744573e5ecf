// Driving the fault-injection PKCS#11 module (p11_fault_shim.cc) from a
// test: where the built module is, and the control file it reads on every
// call.
#ifndef SMIME_TESTS_TESTING_FAULT_SHIM_H_
#define SMIME_TESTS_TESTING_FAULT_SHIM_H_

#include <map>
#include <string>

#include "absl/time/time.h"

namespace smime::testing {

// The built module, for an agent's --module.
std::string FaultShimModule();

class FaultControl {
 public:
  // `path` need not exist yet: a missing file means no faults.
  explicit FaultControl(std::string path) : path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  // The environment under which the module reads this file.
  std::map<std::string, std::string> Env() const { return {{"SMIME_P11_SHIM_CONTROL", path_}}; }
  // Replaces the directives in one step: the module reads the file on every
  // call, also while a signature waits in another thread.
  void Set(const std::string& directives) const;
  // Waits until a signature is inside C_Sign (sign-hold, sign-delay-ms);
  // whether one got there within `timeout`, a bound for a broken run only.
  bool WaitUntilSigning(absl::Duration timeout = absl::Seconds(60)) const;

 private:
  std::string path_;
};

}  // namespace smime::testing

#endif  // SMIME_TESTS_TESTING_FAULT_SHIM_H_
