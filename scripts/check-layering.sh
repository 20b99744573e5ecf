#!/usr/bin/env bash
# Source-level guards for the layering rules the build cannot see:
# - every PKCS#11 C_* call goes through P11_CALL (tokens/module.h), so no
#   other file dereferences a function list (the test fault module,
#   tests/testing/p11_fault_shim.cc, is itself a PKCS#11 module: it forwards
#   through its own copy of SoftHSM's list and is outside this rule);
# - client/ includes nothing of PKCS#11 or tokens/;
# - tokens/, agent/engine/ and agent/daemon/ include nothing of gRPC or
#   the proto (the link closure is checked at configure time too), but for
#   agent/daemon/main.cc, which wires every room together;
# - agent/engine/ includes nothing of the edge (agent/rpc/, agent/daemon/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail=0
if grep -rnE --include='*.cc' --include='*.h' -e '->C_[A-Z]' agent client tokens common tests \
     | grep -v '^tokens/module\.'; then
  echo "check-layering: call PKCS#11 through P11_CALL only" >&2; fail=1
fi
if grep -rnE '#include [<"](p11-kit|libp11|tokens/|pkcs11)' client; then
  echo "check-layering: client/ must not include PKCS#11 or tokens/ headers" >&2; fail=1
fi
# (agent/daemon/main.cc wires every room together, the gRPC server too.)
for dir in tokens agent/engine agent/daemon; do
  if grep -rnE '#include [<"](grpc|grpcpp|google/protobuf|smime/agent/v1)' "$dir" | grep -v '^agent/daemon/main\.cc:'; then
    echo "check-layering: $dir/ must not include gRPC, protobuf or proto headers" >&2; fail=1
  fi
done
if grep -rnE '#include [<"]agent/(rpc|daemon)/' agent/engine; then
  echo "check-layering: agent/engine/ must not include the gRPC edge or the daemon" >&2; fail=1
fi
[[ $fail -eq 0 ]] && echo "check-layering: ok"
exit $fail
