// The agent's TOML config file: parsed with toml++ through the same
// LoadConfigFile the agent runs at start and on reload (the input reaches
// it as a memory-backed file), then checked by Validate.
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "agent/daemon/config.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t off = 0;
  while (off < size) {
    ssize_t n = write(fd, data + off, size - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  auto config = smime::agent::LoadConfigFile(absl::StrCat("/proc/self/fd/", fd));
  if (config.ok()) (void)smime::agent::Validate(*config);
  close(fd);
  return 0;
}
