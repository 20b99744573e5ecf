#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds, starts
# smime-agent on its embedded default (a SoftHSM store under
# ${XDG_DATA_HOME:-~/.local/share}/smime-agent, no hardware), makes a key,
# signs a digest through the agent and verifies the signature with openssl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
scripts/build.sh

agent=build/agent/smime-agent
ctl=build/client/smimectl
work="$(mktemp -d)"
trap 'kill "${agent_pid:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== starting smime-agent on the embedded default store"
"$agent" --log-level warning &
agent_pid=$!
for _ in $(seq 1 100); do
  "$ctl" keys >/dev/null 2>&1 && break
  kill -0 "$agent_pid" 2>/dev/null || { echo "smime-agent did not start" >&2; exit 1; }
  sleep 0.1
done

echo "== keys on the token"
"$ctl" keys | grep -q '  demo  ' || "$ctl" keygen --type p256 --label demo
"$ctl" keys

echo "== signing through the agent, verifying with openssl"
printf 'Hello from smime-agent\r\n' > "$work/message.txt"
digest="$(openssl dgst -sha256 -r "$work/message.txt" | cut -d' ' -f1)"
"$ctl" pubkey --key demo --out "$work/demo.pub.pem"
"$ctl" sign-digest --key demo --alg ecdsa-sha256 --digest "$digest" --out "$work/message.sig"
openssl dgst -sha256 -verify "$work/demo.pub.pem" -signature "$work/message.sig" "$work/message.txt"
echo "== done; the agent stops now (run build/agent/smime-agent to keep it serving)"
