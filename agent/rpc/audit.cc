#include "agent/rpc/audit.h"

#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "tokens/pkcs11_uri.h"

namespace smime::agent {

void AuditLog::Write(const std::string& line) const {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

AuditRecord::AuditRecord(const AuditLog& log, std::string op, std::string request_id, uid_t uid,
                         pid_t pid)
    : log_(log), op_(std::move(op)), request_id_(std::move(request_id)), uid_(uid), pid_(pid),
      start_(absl::Now()) {}

AuditRecord::~AuditRecord() {
  std::string line = absl::StrCat(
      "time=", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      " event=key_op ", FormatKv("op", op_), " ",
      FormatKv("key", tokens::StripUriQuery(key_)), " ", FormatKv("mechanism", mechanism_),
      " peer_uid=", uid_ == static_cast<uid_t>(-1) ? std::string("unknown") : absl::StrCat(uid_),
      " peer_pid=", pid_, " result=", absl::StatusCodeToString(result_),
      " duration_ms=", absl::ToInt64Milliseconds(absl::Now() - start_), " ",
      FormatKv("request_id", request_id_), "\n");
  log_.Write(line);
}

}  // namespace smime::agent
