#include "tests/testing/fault_shim.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "tests/testing/test_env.h"

namespace smime::testing {

std::string FaultShimModule() { return SMIME_P11_FAULT_SHIM; }

void FaultControl::Set(const std::string& directives) const {
  WriteFile(path_ + ".new", directives);
  EXPECT_EQ(std::rename((path_ + ".new").c_str(), path_.c_str()), 0) << path_;
}

bool FaultControl::WaitUntilSigning(absl::Duration timeout) const {
  const std::string signing = path_ + ".signing";
  return WaitFor([&] { return ::access(signing.c_str(), F_OK) == 0; }, timeout);
}

}  // namespace smime::testing
