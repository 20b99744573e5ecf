#include "agent/engine/stream_bio.h"

#include <cstring>

#include "absl/strings/ascii.h"

namespace smime::agent {
namespace {

long SourceCtrl(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return static_cast<SourceBio*>(BIO_get_data(bio))->at_end() ? 1 : 0;
    default:
      return 0;
  }
}

long SinkCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int SourceRead(BIO* bio, char* out, int size) {
  BIO_clear_retry_flags(bio);
  return static_cast<SourceBio*>(BIO_get_data(bio))->Read(out, size);
}

int SourceGets(BIO* bio, char* out, int size) {
  BIO_clear_retry_flags(bio);
  return static_cast<SourceBio*>(BIO_get_data(bio))->Gets(out, size);
}

int SinkWrite(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  if (size <= 0) return 0;
  auto* sink = static_cast<ByteSink*>(BIO_get_data(bio));
  return sink->Write(absl::string_view(data, static_cast<size_t>(size))) ? size : -1;
}

int SinkPuts(BIO* bio, const char* text) { return SinkWrite(bio, text, static_cast<int>(std::strlen(text))); }

// Both methods are made once and live as long as the process.
const BIO_METHOD* SourceMethod() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "smime-agent byte source");
    BIO_meth_set_read(m, SourceRead);
    BIO_meth_set_gets(m, SourceGets);
    BIO_meth_set_ctrl(m, SourceCtrl);
    return m;
  }();
  return method;
}

const BIO_METHOD* SinkMethod() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "smime-agent byte sink");
    BIO_meth_set_write(m, SinkWrite);
    BIO_meth_set_puts(m, SinkPuts);
    BIO_meth_set_ctrl(m, SinkCtrl);
    return m;
  }();
  return method;
}

}  // namespace

SourceBio::SourceBio(ByteSource* source, size_t keep_head_bytes)
    : source_(source), bio_(BIO_new(SourceMethod())), keep_head_bytes_(keep_head_bytes) {
  if (bio_ != nullptr) {
    BIO_set_data(bio_, this);
    BIO_set_init(bio_, 1);
  }
}

SourceBio::~SourceBio() { BIO_free(bio_); }

bool SourceBio::Fill() {
  while (pos_ == chunk_.size()) {
    if (end_) return false;
    pos_ = 0;
    if (!source_->Next(&chunk_)) {
      chunk_.clear();
      end_ = true;
      return false;
    }
  }
  return true;
}

void SourceBio::Consumed(size_t n) {
  if (head_.size() < keep_head_bytes_) {
    head_.append(chunk_, pos_, std::min(n, keep_head_bytes_ - head_.size()));
  }
  pos_ += n;
}

int SourceBio::PeekSkippingWhitespace() {
  while (Fill()) {
    unsigned char c = static_cast<unsigned char>(chunk_[pos_]);
    if (!absl::ascii_isspace(c)) return c;
    ++pos_;  // leading whitespace is not kept in head()
  }
  return -1;
}

int SourceBio::Read(char* out, int size) {
  if (size <= 0) return 0;
  if (!Fill()) return source_->status().ok() ? 0 : -1;
  size_t n = std::min(static_cast<size_t>(size), chunk_.size() - pos_);
  std::memcpy(out, chunk_.data() + pos_, n);
  Consumed(n);
  return static_cast<int>(n);
}

// One line (up to and including '\n') or size - 1 bytes, NUL-terminated, as
// BIO_gets promises.
int SourceBio::Gets(char* out, int size) {
  if (size <= 0) return 0;
  size_t room = static_cast<size_t>(size) - 1;
  size_t got = 0;
  while (got < room && Fill()) {
    size_t avail = std::min(room - got, chunk_.size() - pos_);
    const char* start = chunk_.data() + pos_;
    const void* nl = std::memchr(start, '\n', avail);
    size_t n = nl != nullptr ? static_cast<size_t>(static_cast<const char*>(nl) - start) + 1 : avail;
    std::memcpy(out + got, start, n);
    Consumed(n);
    got += n;
    if (nl != nullptr) break;
  }
  out[got] = '\0';
  if (got == 0 && !source_->status().ok()) return -1;
  return static_cast<int>(got);
}

SslPtr<BIO> NewSinkBio(ByteSink* sink) {
  SslPtr<BIO> bio(BIO_new(SinkMethod()));
  if (bio) {
    BIO_set_data(bio.get(), sink);
    BIO_set_init(bio.get(), 1);
  }
  return bio;
}

}  // namespace smime::agent
