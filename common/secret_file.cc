#include "common/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace smime {

void WipeBytes(void* data, size_t size) { ::explicit_bzero(data, size); }

absl::Status ReadSecretFile(const std::string& path, absl::string_view what, absl::string_view holds,
                            absl::FunctionRef<void(const char* data, size_t size)> take) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open ", what, " ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  absl::Status bad;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    bad = absl::FailedPreconditionError(absl::StrCat(what, " ", path, " is not a regular file"));
  } else if ((st.st_mode & 077) != 0) {
    bad = absl::FailedPreconditionError(absl::StrFormat(
        "%s %s is accessible by group or others (mode %04o); run: chmod 600 %s", what, path, st.st_mode & 07777,
        path));
  } else if (st.st_uid != ::getuid() && st.st_uid != 0) {
    bad = absl::FailedPreconditionError(absl::StrCat(what, " ", path, " belongs to another user"));
  } else if (static_cast<size_t>(st.st_size) > kMaxSecretFileBytes) {
    bad = absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is too large to hold ", holds));
  }
  if (!bad.ok()) {
    ::close(fd);
    return bad;
  }
  char buf[kMaxSecretFileBytes + 1];
  size_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf + total, sizeof(buf) - 1 - total);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += static_cast<size_t>(n);
    if (total >= sizeof(buf) - 1) break;
  }
  ::close(fd);
  size_t len = total;
  if (len > 0 && buf[len - 1] == '\n') --len;
  if (len > 0 && buf[len - 1] == '\r') --len;
  if (len > 0) take(buf, len);
  WipeBytes(buf, sizeof(buf));
  if (len == 0) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is empty"));
  return absl::OkStatus();
}

}  // namespace smime
