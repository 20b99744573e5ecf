#include "agent/mime.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace smime::agent {

std::string ToCrlf(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {
// Header fields as (name, full text including continuation lines).
struct Field {
  std::string name;
  std::string text;
};
}  // namespace

absl::StatusOr<SplitMessage> SplitForSmime(absl::string_view message) {
  std::string crlf = ToCrlf(message);
  size_t end = crlf.find("\r\n\r\n");
  size_t body_start;
  absl::string_view header_block;
  if (absl::StartsWith(crlf, "\r\n")) {  // no header at all
    header_block = "";
    body_start = 2;
  } else if (end == std::string::npos) {
    return absl::InvalidArgumentError(
        "the message has no blank line between header and body; give a whole RFC 5322 message or a "
        "MIME entity");
  } else {
    header_block = absl::string_view(crlf).substr(0, end + 2);
    body_start = end + 4;
  }
  std::vector<Field> fields;
  size_t pos = 0;
  while (pos < header_block.size()) {
    size_t eol = header_block.find("\r\n", pos);
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
  SplitMessage out;
  std::string content_fields;
  bool has_type = false;
  for (const Field& f : fields) {
    if (absl::StartsWith(f.name, "content-")) {
      content_fields += f.text;
      has_type = has_type || f.name == "content-type";
    } else if (f.name != "mime-version") {
      out.outer_headers += f.text;
    }
  }
  if (!has_type) content_fields = absl::StrCat("Content-Type: text/plain\r\n", content_fields);
  out.entity = absl::StrCat(content_fields, "\r\n", absl::string_view(crlf).substr(body_start));
  return out;
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
