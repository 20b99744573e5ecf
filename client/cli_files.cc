#include "client/cli_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/limits.h"

namespace smime::client {

absl::StatusOr<std::string> ReadFileLimited(const std::string& path, size_t max_bytes, absl::string_view what_limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::string data;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than ", HumanBytes(max_bytes), what_limit.empty() ? "" : ", ", what_limit));
    }
  }
  return data;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& data, mode_t mode) {
  if (path.empty() || path == "-") {
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    return absl::OkStatus();
  }
  std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  bool ok = fd >= 0;
  for (size_t off = 0; ok && off < data.size();) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<size_t>(n);
  }
  if (fd >= 0 && ::close(fd) != 0) ok = false;
  if (ok && ::rename(tmp.c_str(), path.c_str()) == 0) return absl::OkStatus();
  std::string err = std::strerror(errno);
  if (fd >= 0) ::unlink(tmp.c_str());
  return absl::FailedPreconditionError(absl::StrCat("cannot write ", path, ": ", err));
}

std::string Pem(absl::string_view type, absl::string_view der) {
  std::string b64 = absl::Base64Escape(der);
  std::string out = absl::StrCat("-----BEGIN ", type, "-----\n");
  for (size_t i = 0; i < b64.size(); i += 64) absl::StrAppend(&out, b64.substr(i, 64), "\n");
  absl::StrAppend(&out, "-----END ", type, "-----\n");
  return out;
}

std::string Rfc3339(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(unix_seconds), absl::UTCTimeZone());
}

}  // namespace smime::client
