#!/usr/bin/env bash
# Source-level guards for the layering rules the build cannot see:
# - every PKCS#11 C_* call goes through P11_CALL (tokens/module.h), so no
#   other file dereferences a function list (the test fault module,
#   tests/testing/p11_fault_shim.cc, is itself a PKCS#11 module: it forwards
#   through its own copy of SoftHSM's list and is outside this rule);
# - client/ includes nothing of PKCS#11 or tokens/.
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
if grep -rnE '#include [<"](grpc|grpcpp|smime/agent/v1)' tokens; then
  echo "check-layering: tokens/ must not include gRPC or proto headers" >&2; fail=1
fi
[[ $fail -eq 0 ]] && echo "check-layering: ok"
exit $fail
