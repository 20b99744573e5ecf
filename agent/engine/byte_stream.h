// The two ends the S/MIME engine streams through: input arriving in pieces
// and output leaving in pieces. service.cc adapts a gRPC stream to them, so
// the engine knows nothing of gRPC and never needs a whole message in
// memory to sign or encrypt it.
#ifndef SMIME_AGENT_ENGINE_BYTE_STREAM_H_
#define SMIME_AGENT_ENGINE_BYTE_STREAM_H_

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace smime::agent {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Replaces *chunk with the next piece of input (possibly empty); false at
  // the end of the input or when it failed (then status() says why).
  virtual bool Next(std::string* chunk) = 0;
  // OK, or why the input ended early: too large, out of order, cancelled.
  virtual absl::Status status() const = 0;
};

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // False when the output cannot go on (the receiver went away).
  virtual bool Write(absl::string_view data) = 0;
};

// A whole message already in memory, handed out in pieces of `chunk_bytes`.
class StringSource final : public ByteSource {
 public:
  explicit StringSource(absl::string_view data, size_t chunk_bytes = 64 << 10)
      : data_(data), chunk_bytes_(chunk_bytes) {}
  bool Next(std::string* chunk) override {
    if (data_.empty()) return false;
    size_t n = std::min(chunk_bytes_, data_.size());
    chunk->assign(data_.data(), n);
    data_.remove_prefix(n);
    return true;
  }
  absl::Status status() const override { return absl::OkStatus(); }

 private:
  absl::string_view data_;
  size_t chunk_bytes_;
};

// Collects the output in a string.
class StringSink final : public ByteSink {
 public:
  bool Write(absl::string_view data) override {
    out_.append(data.data(), data.size());
    return true;
  }
  const std::string& str() const { return out_; }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

// A bounded pipe between two threads: one writes (as a ByteSink), the other
// reads (as a ByteSource). Writes block while `capacity` bytes wait unread,
// so memory stays bounded whichever side is faster. Either side may close
// early: the writer with a failure (the reader then fails too), the reader
// when it stops (later writes fail instead of blocking forever).
class BlockingPipe final : public ByteSource, public ByteSink {
 public:
  explicit BlockingPipe(size_t capacity) : capacity_(capacity) {}

  bool Write(absl::string_view data) override {
    std::unique_lock<std::mutex> lock(mu_);
    while (!data.empty()) {
      cv_.wait(lock, [&] { return reader_closed_ || buffer_.size() < capacity_; });
      if (reader_closed_) return false;
      size_t n = std::min(data.size(), capacity_ - buffer_.size());
      buffer_.append(data.data(), n);
      data.remove_prefix(n);
      cv_.notify_all();
    }
    return true;
  }
  // The writer is done; `failure` (not OK) makes the reader fail with it.
  void CloseWrite(absl::Status failure) {
    std::lock_guard<std::mutex> lock(mu_);
    writer_closed_ = true;
    status_ = std::move(failure);
    cv_.notify_all();
  }

  bool Next(std::string* chunk) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return writer_closed_ || !buffer_.empty(); });
    if (!status_.ok()) return false;
    if (buffer_.empty()) return false;  // writer closed, all read
    chunk->swap(buffer_);
    buffer_.clear();
    cv_.notify_all();
    return true;
  }
  absl::Status status() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  // The reader stops; the writer's next Write returns false.
  void CloseRead() {
    std::lock_guard<std::mutex> lock(mu_);
    reader_closed_ = true;
    cv_.notify_all();
  }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string buffer_;
  bool writer_closed_ = false;
  bool reader_closed_ = false;
  absl::Status status_;
};

}  // namespace smime::agent

#endif  // SMIME_AGENT_ENGINE_BYTE_STREAM_H_
