#include "client/agent_channel.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/socket_trust.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace smime::client {

absl::StatusOr<AgentChannel> AgentChannel::Open(const std::string& socket_path, absl::Duration timeout) {
  // Before anything is sent: whose socket it is (client/socket_trust.h).
  ASSIGN_OR_RETURN(std::string checked, CheckAgentSocket(socket_path));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("unix:", checked), grpc::InsecureChannelCredentials(), args);
  return AgentChannel(socket_path, std::move(channel), timeout);
}

void AgentChannel::Prepare(grpc::ClientContext* ctx) const {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout_));
}

absl::Status AgentChannel::Convert(const grpc::Status& status) const {
  if (status.ok()) return absl::OkStatus();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      // With the connection up, the agent itself said so (e.g. its token
      // was removed): its message is the one to show.
      if (channel_->GetState(false) == GRPC_CHANNEL_READY) return absl::UnavailableError(status.error_message());
      return absl::UnavailableError(
          absl::StrCat("the agent at ", socket_path_, " is not answering (", status.error_message(), ")"));
    case grpc::StatusCode::UNIMPLEMENTED:
      // gRPC's answer for a method the server lacks carries no message; the
      // agent's own (a mechanism the token lacks) always has one.
      if (status.error_message().empty()) {
        return absl::UnimplementedError(
            absl::StrCat("the agent at ", socket_path_, " does not offer this call (an older smime-agent?)"));
      }
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      if (absl::StrContains(status.error_message(), "larger than max")) {
        // gRPC's own per-message limit, not one of the agent's messages.
        return absl::ResourceExhaustedError(absl::StrCat(
            "a request is larger than the agent accepts in one message (its --max-request-bytes): ",
            status.error_message()));
      }
      break;
    default:
      break;
  }
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(status.error_code())), status.error_message());
}

}  // namespace smime::client
