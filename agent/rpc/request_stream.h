// One streamed S/MIME request and its response, over a gRPC
// ServerReaderWriter: the request read in order as the engine asks for it,
// as ByteSources with the agent's limits, and the engine's output sent back
// in chunks. Templates over the request and response messages, which share
// their shape (options first, then data, then Verify's content).
#ifndef SMIME_AGENT_RPC_REQUEST_STREAM_H_
#define SMIME_AGENT_RPC_REQUEST_STREAM_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/engine/byte_stream.h"
#include "agent/rpc/call_limits.h"
#include "common/limits.h"
#include "smime/agent/v1/agent.pb.h"

namespace smime::agent {

// What a request over the limit hears: which limit, and where it is set.
// `encoded`: the limit of signed or encrypted input (MaxEncodedBytes).
absl::Status TooLarge(size_t max_message_bytes, bool encoded);
// What a request hears when all streams together hold max_bytes_in_flight.
absl::Status BudgetSpent(const CallLimits& limits);

// Marks the current call's ticket (if any) as waiting on the client while
// in scope: a blocking Read or Write.
class WaitingOnClient {
 public:
  explicit WaitingOnClient(CallTicket* ticket) : ticket_(ticket) {
    if (ticket_ != nullptr) ticket_->BeginWait();
  }
  ~WaitingOnClient() {
    if (ticket_ != nullptr) ticket_->EndWait();
  }
  WaitingOnClient(const WaitingOnClient&) = delete;
  WaitingOnClient& operator=(const WaitingOnClient&) = delete;

 private:
  CallTicket* ticket_;
};

// The data or content bytes of one request message.
template <typename Req>
std::string* PartBytes(Req& req) {
  if constexpr (std::is_same_v<Req, v1::VerifyRequest>) {
    if (req.part_case() == v1::VerifyRequest::kContent) return req.mutable_content();
  }
  return req.mutable_data();
}

// One streamed request, read in order as the engine asks for it: the
// options message, then data chunks, then (Verify) content chunks. Each
// part after the options is a ByteSource with its own limit; a message out
// of order or over a limit ends the whole request with that status.
template <typename Resp, typename Req>
class RequestStream {
 public:
  class Part;

  // `ticket`: the call's share of the agent (CallLimits), or the reason
  // the call gets none, which every read then returns; null: no limits.
  RequestStream(grpc::ServerContext* ctx, grpc::ServerReaderWriter<Resp, Req>* stream,
                absl::StatusOr<std::shared_ptr<CallTicket>> ticket = std::shared_ptr<CallTicket>())
      : ctx_(ctx), stream_(stream) {
    if (!ticket.ok()) {
      status_ = ticket.status();
    } else if ((ticket_ = *std::move(ticket)) != nullptr) {
      ticket_->WatchStream(ctx);
    }
  }

  // Reads the first message, which must carry the options.
  absl::Status ReadOptions(Req* first) {
    if (!status_.ok()) return status_;
    if (!Read(first)) {
      if (ctx_->IsCancelled()) return CancelStatus();
      return absl::InvalidArgumentError("the request stream was empty");
    }
    if (first->part_case() != Req::kOptions) return OutOfOrder();
    return absl::OkStatus();
  }

 private:
  static constexpr int kMaxParts = 4;

  static absl::Status OutOfOrder() {
    return absl::InvalidArgumentError("send the options first, then the data chunks (then any content chunks)");
  }
  bool Fail(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
    return false;
  }
  bool Count(int part_case, size_t bytes);
  bool NextOf(Part* part, std::string* chunk);
  bool Read(Req* req) {
    WaitingOnClient waiting(ticket_.get());
    return stream_->Read(req);
  }
  absl::Status CancelStatus() const {
    absl::Status why = ticket_ != nullptr ? ticket_->CancelReason() : absl::OkStatus();
    return why.ok() ? absl::CancelledError("the caller cancelled the call") : why;
  }

  grpc::ServerContext* ctx_;
  std::shared_ptr<CallTicket> ticket_;
  grpc::ServerReaderWriter<Resp, Req>* stream_;
  Part* parts_[kMaxParts] = {};
  Req pending_;  // read but belonging to a later part
  bool has_pending_ = false;
  bool ended_ = false;
  absl::Status status_;
};

template <typename Resp, typename Req>
class RequestStream<Resp, Req>::Part final : public ByteSource {
 public:
  // `part_case`: Req::kData or Req::kContent. More than `max_bytes` in all
  // fails with `too_large`.
  Part(RequestStream* owner, int part_case, size_t max_bytes, absl::Status too_large)
      : owner_(owner), part_case_(part_case), max_bytes_(max_bytes), too_large_(std::move(too_large)) {
    owner_->parts_[part_case] = this;
  }
  bool Next(std::string* chunk) override { return owner_->NextOf(this, chunk); }
  absl::Status status() const override { return owner_->status_; }

 private:
  friend class RequestStream;
  RequestStream* owner_;
  int part_case_;
  size_t max_bytes_;
  absl::Status too_large_;
  size_t total_ = 0;
  bool started_ = false;
};

template <typename Resp, typename Req>
bool RequestStream<Resp, Req>::Count(int part_case, size_t bytes) {
  Part* part = parts_[part_case];
  part->total_ += bytes;
  if (part->total_ > part->max_bytes_) return Fail(part->too_large_);
  return ticket_ == nullptr || ticket_->TakeBytes(bytes) || Fail(BudgetSpent(*ticket_->limits()));
}

template <typename Resp, typename Req>
bool RequestStream<Resp, Req>::NextOf(Part* part, std::string* chunk) {
  for (;;) {
    if (!status_.ok()) return false;
    if (!has_pending_) {
      if (ended_ || !Read(&pending_)) {
        ended_ = true;
        // A cancelled call also ends the reads: that is no end of message.
        if (ctx_->IsCancelled()) return Fail(CancelStatus());
        return false;
      }
      has_pending_ = true;
    }
    int got = pending_.part_case();
    if (got > part->part_case_ && got < kMaxParts && parts_[got] != nullptr) return false;  // next part begins
    if (got == part->part_case_) {
      has_pending_ = false;
      part->started_ = true;
      std::string* bytes = PartBytes(pending_);
      if (!Count(got, bytes->size())) return false;
      chunk->swap(*bytes);
      return true;
    }
    // The rest of an earlier part its reader left unread (a parser stops at
    // the end of the CMS structure): skip it, within its limit.
    if (got < part->part_case_ && got != Req::kOptions && parts_[got] != nullptr && !part->started_) {
      has_pending_ = false;
      std::string* bytes = PartBytes(pending_);
      if (!Count(got, bytes->size())) return false;
      continue;
    }
    return Fail(OutOfOrder());
  }
}

// Hands the engine's output to the client in chunks of kStreamChunkBytes.
template <typename Resp, typename Req>
class ResponseSink final : public ByteSink {
 public:
  explicit ResponseSink(grpc::ServerReaderWriter<Resp, Req>* stream) : stream_(stream) {}

  bool Write(absl::string_view data) override {
    while (!data.empty() && !failed_) {
      size_t n = std::min(data.size(), kStreamChunkBytes - buffer_.size());
      buffer_.append(data.data(), n);
      data.remove_prefix(n);
      if (buffer_.size() == kStreamChunkBytes) Send();
    }
    return !failed_;
  }
  // Sends what is left; a Cancelled status when the client went away.
  absl::Status Flush() {
    if (!buffer_.empty()) Send();
    return failed_ ? absl::CancelledError("the caller went away") : absl::OkStatus();
  }

 private:
  void Send() {
    Resp resp;
    resp.set_data(std::move(buffer_));
    buffer_.clear();
    WaitingOnClient waiting(CallTicket::Current());
    failed_ = !stream_->Write(resp);
  }

  grpc::ServerReaderWriter<Resp, Req>* stream_;
  std::string buffer_;
  bool failed_ = false;
};

// The start of every S/MIME stream handler: the first message read (it must
// carry the options), and the message part after it, within the agent's
// limit: `max_message_bytes`, or MaxEncodedBytes() of it for `encoded`
// (signed or encrypted) input. A failed read is kept, not returned, so that
// a handler can still audit the request.
template <typename Resp, typename Req>
class StreamedRequest {
 public:
  using Part = typename RequestStream<Resp, Req>::Part;

  StreamedRequest(grpc::ServerContext* ctx, grpc::ServerReaderWriter<Resp, Req>* stream,
                  absl::StatusOr<std::shared_ptr<CallTicket>> ticket, size_t max_message_bytes, bool encoded)
      : requests_(ctx, stream, std::move(ticket)),
        read_(requests_.ReadOptions(&first_)),
        message_(&requests_, Req::kData, encoded ? MaxEncodedBytes(max_message_bytes) : max_message_bytes,
                 TooLarge(max_message_bytes, encoded)) {}

  // OK when the first message carried the options.
  const absl::Status& read_status() const { return read_; }
  const auto& options() const { return first_.options(); }
  Part& message() { return message_; }
  // For a further part (Verify's detached content).
  RequestStream<Resp, Req>* requests() { return &requests_; }

 private:
  RequestStream<Resp, Req> requests_;
  Req first_;
  absl::Status read_;
  Part message_;
};

// Sends `head` (the result), then `content` in chunks; CANCELLED when the
// caller went away.
template <typename Resp, typename Req>
absl::Status SendResult(grpc::ServerReaderWriter<Resp, Req>* stream, const Resp& head, absl::string_view content) {
  {
    WaitingOnClient waiting(CallTicket::Current());
    stream->Write(head);
  }
  ResponseSink out(stream);
  out.Write(content);
  return out.Flush();
}

}  // namespace smime::agent

#endif  // SMIME_AGENT_RPC_REQUEST_STREAM_H_
