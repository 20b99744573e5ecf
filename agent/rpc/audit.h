// The audit trail: exactly one line per private-key operation, written when
// it ends (STYLE.md §14): who (peer uid/pid), which key, what, result,
// duration. Never content, digests of secrets, key bytes, PINs or URI
// queries.
#ifndef SMIME_AGENT_RPC_AUDIT_H_
#define SMIME_AGENT_RPC_AUDIT_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace smime::agent {

class AuditLog {
 public:
  // Lines go to `fd` (stderr by default, or an append-only file).
  explicit AuditLog(int fd = 2) : fd_(fd) {}
  void Write(const std::string& line) const;

 private:
  int fd_;
};

// Collects the fields of one operation and writes its line on destruction,
// so every exit path of a handler is audited.
class AuditRecord {
 public:
  AuditRecord(const AuditLog& log, std::string op, std::string request_id, uid_t uid, pid_t pid);
  AuditRecord(const AuditRecord&) = delete;
  AuditRecord& operator=(const AuditRecord&) = delete;
  ~AuditRecord();

  void set_key(std::string key_uri) { key_ = std::move(key_uri); }
  void set_mechanism(std::string mechanism) { mechanism_ = std::move(mechanism); }
  // Records the outcome and returns it unchanged.
  const absl::Status& Result(const absl::Status& status) {
    result_ = status.code();
    return status;
  }

 private:
  const AuditLog& log_;
  std::string op_;
  std::string request_id_;
  uid_t uid_;
  pid_t pid_;
  std::string key_ = "-";
  std::string mechanism_ = "-";
  absl::StatusCode result_ = absl::StatusCode::kUnknown;
  absl::Time start_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_AUDIT_H_
