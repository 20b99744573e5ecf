#include "agent/rpc/grpc_status.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace smime::agent {

grpc::Status ToGrpcStatus(const absl::Status& status, const std::string& request_id) {
  if (status.ok()) return grpc::Status::OK;
  auto code = static_cast<grpc::StatusCode>(static_cast<int>(status.code()));
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    SMIME_LOG(kError, "internal_error").Kv("request_id", request_id).Kv("detail", status.message());
    return grpc::Status(code, request_id.empty()
                                  ? std::string("internal error; see the agent log")
                                  : absl::StrCat("internal error; see the agent log (request_id=",
                                                 request_id, ")"));
  }
  return grpc::Status(code, std::string(status.message()));
}

}  // namespace smime::agent
