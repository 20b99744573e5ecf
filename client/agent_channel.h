// The connection both typed clients (AgentClient, LifecycleClient) use: the
// socket checks, the channel, per-call deadlines, and gRPC statuses turned
// into messages a user can act on.
#ifndef SMIME_CLIENT_AGENT_CHANNEL_H_
#define SMIME_CLIENT_AGENT_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace smime::client {

class AgentChannel {
 public:
  // A channel to the agent on `socket_path`, once CheckAgentSocket
  // (client/socket_trust.h) trusts it: UNAVAILABLE, saying what to do, when
  // no socket is there, PERMISSION_DENIED when it is not safe to use. Every
  // call gets `timeout`.
  static absl::StatusOr<AgentChannel> Open(const std::string& socket_path, absl::Duration timeout);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& socket_path() const { return socket_path_; }

  // Sets the call's deadline.
  void Prepare(grpc::ClientContext* ctx) const;
  // The status a caller sees. The agent's own errors pass as they are;
  // what gRPC says of the connection or its limits names the agent and the
  // setting involved: UNAVAILABLE without a live connection ("not
  // answering"), an UNIMPLEMENTED with no message (a method this agent does
  // not have), gRPC's per-message size limit.
  absl::Status Convert(const grpc::Status& status) const;

  // One unary call of `method` on `stub` with the deadline set and the
  // status converted: the response, or what went wrong.
  template <typename Stub, typename Req, typename Resp>
  absl::StatusOr<Resp> Unary(Stub& stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                             const Req& req) const {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    Resp resp;
    if (absl::Status st = Convert((stub.*method)(&ctx, req, &resp)); !st.ok()) return st;
    return resp;
  }

 private:
  AgentChannel(std::string socket_path, std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
      : socket_path_(std::move(socket_path)), channel_(std::move(channel)), timeout_(timeout) {}

  std::string socket_path_;
  std::shared_ptr<grpc::Channel> channel_;
  absl::Duration timeout_;
};

}  // namespace smime::client

#endif  // SMIME_CLIENT_AGENT_CHANNEL_H_
