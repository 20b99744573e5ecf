// The declaration of a gRPC handler, spelled once for every method of both
// services: method Name of smime.agent.v1 takes v1::NameRequest and answers
// v1::NameResponse (proto/smime/agent/v1), once (unary) or as a stream in
// both directions. The definitions spell their signatures out.
#ifndef SMIME_AGENT_RPC_HANDLER_DECL_H_
#define SMIME_AGENT_RPC_HANDLER_DECL_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>

#define SMIME_UNARY_HANDLER(Name) \
  grpc::Status Name(grpc::ServerContext* ctx, const v1::Name##Request* req, v1::Name##Response* resp) override

#define SMIME_STREAM_HANDLER(Name)            \
  grpc::Status Name(grpc::ServerContext* ctx, \
                    grpc::ServerReaderWriter<v1::Name##Response, v1::Name##Request>* stream) override

#endif  // SMIME_AGENT_RPC_HANDLER_DECL_H_
