// For tests of tokens/ behind the fault-injection module
// (tests/testing/p11_fault_shim.cc): a throwaway SoftHSM token, the module
// pointed at it and at a control file in its directory, the log in a file
// there, and the Token opened and logged in, in process. One per process:
// PKCS#11 allows one C_Initialize, and SoftHSM reads SOFTHSM2_CONF then.
#ifndef SMIME_TESTS_TOKENS_SHIM_TOKEN_H_
#define SMIME_TESTS_TOKENS_SHIM_TOKEN_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "common/log.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_env.h"
#include "tokens/token.h"

namespace smime::tokens {

struct ShimToken {
  explicit ShimToken(const std::string& label) : dir(testing::MakeToken(label, /*with_test_keys=*/false)) {
    testing::WriteFile(Control(), "");
    ::setenv("SOFTHSM2_CONF", dir.conf.c_str(), 1);
    ::setenv("SMIME_P11_SHIM_CONTROL", Control().c_str(), 1);
    log_fd = ::open(dir.Path("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    SetLogFd(log_fd);
    auto loaded = Module::Load(SMIME_P11_FAULT_SHIM);
    EXPECT_THAT(loaded.status(), testing::IsOk());
    if (!loaded.ok()) return;
    module = *loaded;
    auto opened = Token::Open(module, TokenOptions{label, 4});
    EXPECT_THAT(opened.status(), testing::IsOk());
    if (!opened.ok()) return;
    token = *std::move(opened);
    std::string pin = testing::ReadFile(dir.pin_file);
    while (!pin.empty() && pin.back() == '\n') pin.pop_back();
    EXPECT_THAT(token->Login(SecretBuffer(pin.data(), pin.size())), testing::IsOk());
  }
  ShimToken(const ShimToken&) = delete;
  ShimToken& operator=(const ShimToken&) = delete;
  ~ShimToken() {
    token.reset();
    module.reset();
    SetLogFd(2);
    ::close(log_fd);
  }

  // The fault directives the shim reads on every call (see its top comment).
  std::string Control() const { return dir.Path("shim-control"); }
  void SetControl(const std::string& directives) const { testing::WriteFile(Control(), directives); }
  // Everything logged so far.
  std::string Log() const { return testing::ReadFile(dir.Path("log")); }

  testing::TestToken dir;
  std::shared_ptr<Module> module;
  std::unique_ptr<Token> token;  // null if opening or logging in failed
  int log_fd = -1;
};

}  // namespace smime::tokens

#endif  // SMIME_TESTS_TOKENS_SHIM_TOKEN_H_
