// absl::Status -> grpc::Status at the service edge (STYLE.md §2).
#ifndef SMIME_AGENT_RPC_GRPC_STATUS_H_
#define SMIME_AGENT_RPC_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace smime::agent {

// Same code; the message passes through except for INTERNAL and UNKNOWN,
// whose detail goes to the log (with `request_id`) and never to the caller.
grpc::Status ToGrpcStatus(const absl::Status& status, const std::string& request_id = "");

}  // namespace smime::agent

#define RETURN_GRPC_IF_ERROR(expr)                                      \
  do {                                                                  \
    if (absl::Status smime_gs_ = (expr); !smime_gs_.ok()) {             \
      return ::smime::agent::ToGrpcStatus(smime_gs_);                   \
    }                                                                   \
  } while (0)

#endif  // SMIME_AGENT_RPC_GRPC_STATUS_H_
