#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace smime {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_fd{2};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

bool NeedsQuotes(absl::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' ||
        static_cast<unsigned char>(c) < 0x20) {
      return true;
    }
  }
  return false;
}
}  // namespace

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  if (text == "debug") { *level = LogLevel::kDebug; return true; }
  if (text == "info") { *level = LogLevel::kInfo; return true; }
  if (text == "warning" || text == "warn") { *level = LogLevel::kWarning; return true; }
  if (text == "error") { *level = LogLevel::kError; return true; }
  return false;
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }
void SetLogFd(int fd) { g_fd = fd; }

std::string FormatKv(absl::string_view key, absl::string_view value) {
  std::string out(key);
  out += '=';
  if (!NeedsQuotes(value)) {
    out.append(value.data(), value.size());
    return out;
  }
  out += '"';
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';  // keep one event on one line
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

LogLine::LogLine(LogLevel level, absl::string_view event) : enabled_(LogEnabled(level)) {
  if (!enabled_) return;
  line_ = absl::StrCat(
      "time=", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      " level=", LevelName(level), " ", FormatKv("event", event));
}

void LogLine::Append(absl::string_view key, absl::string_view value) {
  line_ += ' ';
  line_ += FormatKv(key, value);
}

LogLine::~LogLine() {
  if (!enabled_) return;
  line_ += '\n';
  const char* p = line_.data();
  size_t left = line_.size();
  while (left > 0) {
    ssize_t n = ::write(g_fd.load(), p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // nowhere to report a failed log write
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace smime
