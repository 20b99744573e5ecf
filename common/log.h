// One log line per event, `key=value` pairs with a fixed `event=` first
// (STYLE.md §14). Values are quoted when they hold spaces or quotes. Callers
// never pass PINs, key bytes, plaintext or URI queries.
#ifndef SMIME_COMMON_LOG_H_
#define SMIME_COMMON_LOG_H_

#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace smime {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Parses "debug", "info", "warning"/"warn", "error"; false if unknown.
bool ParseLogLevel(absl::string_view text, LogLevel* level);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Sends lines to `fd` (default 2, stderr). Thread-safe; each line is one
// write(2), so concurrent lines never interleave.
void SetLogFd(int fd);

class LogLine {
 public:
  LogLine(LogLevel level, absl::string_view event);
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  ~LogLine();

  template <typename T>
  LogLine& Kv(absl::string_view key, const T& value) {
    if (enabled_) Append(key, absl::StrCat(value));
    return *this;
  }
  LogLine& Kv(absl::string_view key, absl::string_view value) {
    if (enabled_) Append(key, value);
    return *this;
  }
  LogLine& Kv(absl::string_view key, const std::string& value) {
    return Kv(key, absl::string_view(value));
  }
  LogLine& Kv(absl::string_view key, const char* value) {
    return Kv(key, absl::string_view(value));
  }

 private:
  void Append(absl::string_view key, absl::string_view value);
  bool enabled_;
  std::string line_;
};

// Renders one `key=value` pair as LogLine does (exposed for tests and for the
// audit writer, which uses the same format on its own sink).
std::string FormatKv(absl::string_view key, absl::string_view value);

}  // namespace smime

#define SMIME_LOG(level, event) ::smime::LogLine(::smime::LogLevel::level, event)

#endif  // SMIME_COMMON_LOG_H_
