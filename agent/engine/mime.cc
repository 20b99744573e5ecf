#include "agent/engine/mime.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace smime::agent {

void CrlfCanonicalizer::Append(absl::string_view in, std::string* out) {
  if (in.empty()) return;  // (memchr may not be given the null data() of an empty view)
  out->reserve(out->size() + in.size() + in.size() / 32);
  const char* const begin = in.data();
  const char* const end = begin + in.size();
  // The next CR and LF, found with memchr (whole lines at a time: this runs
  // over every byte of every message, twice when signing).
  auto find = [end](const char* from, char c) {
    const void* hit = std::memchr(from, c, static_cast<size_t>(end - from));
    return hit != nullptr ? static_cast<const char*>(hit) : end;
  };
  const char* next_cr = find(begin, '\r');
  const char* next_lf = find(begin, '\n');
  const char* run = begin;  // start of bytes copied as they are
  while (true) {
    const char* at = std::min(next_cr, next_lf);
    if (at == end) break;
    if (at != run) last_was_cr_ = false;  // ordinary bytes came between
    out->append(run, static_cast<size_t>(at - run));
    const char c = *at;
    // A CR is written as CRLF at once; an LF right after it (maybe in the
    // next piece) is then the rest of that line end.
    if (c == '\r' || !last_was_cr_) out->append("\r\n");
    last_was_cr_ = c == '\r';
    run = at + 1;
    if (c == '\r') {
      next_cr = find(run, '\r');
    } else {
      next_lf = find(run, '\n');
    }
  }
  if (end != run) last_was_cr_ = false;
  out->append(run, static_cast<size_t>(end - run));
}

std::string ToCrlf(absl::string_view text) {
  std::string out;
  CrlfCanonicalizer().Append(text, &out);
  return out;
}

namespace {
// Header fields as (name, full text including continuation lines).
struct Field {
  std::string name;
  std::string text;
};
}  // namespace

absl::StatusOr<HeaderSplit> SplitHeaderBlock(absl::string_view header_block) {
  std::vector<Field> fields;
  size_t pos = 0;
  while (pos < header_block.size()) {
    size_t eol = header_block.find("\r\n", pos);
    if (eol == absl::string_view::npos) eol = header_block.size();
    absl::string_view line = header_block.substr(pos, eol - pos);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      if (fields.empty()) return absl::InvalidArgumentError("the message starts with a continuation line");
      absl::StrAppend(&fields.back().text, line, "\r\n");
    } else {
      size_t colon = line.find(':');
      if (colon == absl::string_view::npos || colon == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("malformed header line: \"", line.substr(0, 60), "\""));
      }
      for (char c : line.substr(0, colon)) {
        if (c <= ' ' || c > '~') {
          return absl::InvalidArgumentError(
              absl::StrCat("malformed header field name: \"", line.substr(0, colon).substr(0, 60), "\""));
        }
      }
      fields.push_back({absl::AsciiStrToLower(line.substr(0, colon)), absl::StrCat(line, "\r\n")});
    }
    pos = eol + 2;
  }
  HeaderSplit out;
  bool has_type = false;
  for (const Field& f : fields) {
    if (absl::StartsWith(f.name, "content-")) {
      out.content_fields += f.text;
      has_type = has_type || f.name == "content-type";
    } else if (f.name != "mime-version") {
      out.outer_headers += f.text;
    }
  }
  if (!has_type) out.content_fields = absl::StrCat("Content-Type: text/plain\r\n", out.content_fields);
  return out;
}

absl::Status EntitySource::ReadHeader() {
  std::string buf;
  size_t scanned = 0;  // "\r\n\r\n" does not start before this
  size_t header_end, body_start;
  for (;;) {
    if (absl::StartsWith(buf, "\r\n")) {  // no header at all
      header_end = 0;
      body_start = 2;
      break;
    }
    size_t end = buf.find("\r\n\r\n", scanned);
    if (end != std::string::npos) {
      header_end = end + 2;
      body_start = end + 4;
      break;
    }
    scanned = buf.size() < 3 ? 0 : buf.size() - 3;
    if (buf.size() > kMaxHeaderBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "no blank line between header and body in the first ", kMaxHeaderBytes >> 20,
          " MiB; give a whole RFC 5322 message or a MIME entity"));
    }
    if (!message_->Next(&raw_)) {
      if (!message_->status().ok()) return message_->status();
      return absl::InvalidArgumentError(
          "the message has no blank line between header and body; give a whole RFC 5322 message or a "
          "MIME entity");
    }
    canonicalizer_.Append(raw_, &buf);
  }
  ASSIGN_OR_RETURN(HeaderSplit split, SplitHeaderBlock(absl::string_view(buf).substr(0, header_end)));
  outer_headers_ = std::move(split.outer_headers);
  pending_ = absl::StrCat(split.content_fields, "\r\n", absl::string_view(buf).substr(body_start));
  return absl::OkStatus();
}

bool EntitySource::Next(std::string* chunk) {
  if (!pending_.empty()) {
    chunk->swap(pending_);
    pending_.clear();
    pending_.shrink_to_fit();
    return true;
  }
  if (!message_->Next(&raw_)) return false;
  chunk->clear();
  canonicalizer_.Append(raw_, chunk);
  return true;
}

std::string HeaderValue(absl::string_view headers, absl::string_view name) {
  std::string crlf = ToCrlf(headers);
  size_t pos = 0;
  while (pos < crlf.size()) {
    size_t eol = crlf.find("\r\n", pos);
    if (eol == std::string::npos) eol = crlf.size();
    absl::string_view line = absl::string_view(crlf).substr(pos, eol - pos);
    if (line.empty()) break;  // end of header
    size_t colon = line.find(':');
    if (colon != absl::string_view::npos && absl::EqualsIgnoreCase(line.substr(0, colon), name)) {
      std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      // Unfold continuation lines.
      size_t next = eol + 2;
      while (next < crlf.size() && (crlf[next] == ' ' || crlf[next] == '\t')) {
        size_t e = crlf.find("\r\n", next);
        if (e == std::string::npos) e = crlf.size();
        absl::StrAppend(&value, " ", absl::StripAsciiWhitespace(absl::string_view(crlf).substr(next, e - next)));
        next = e + 2;
      }
      return value;
    }
    pos = eol + 2;
  }
  return "";
}

}  // namespace smime::agent
