#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds, starts
# smime-agent on its embedded default (a SoftHSM store, no hardware; here in
# a throwaway directory so the demo repeats cleanly), and walks one key
# through its life with smimectl: make it on the token, request and import a
# certificate, sign and encrypt a message, publish the certificate's DNS
# records, and check everything with openssl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
scripts/build.sh

agent=build/agent/smime-agent
ctl=build/client/smimectl
work="$(mktemp -d)"
trap 'kill "${agent_pid:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
export SMIME_AGENT_SOCK="$work/run/agent.sock"

echo "== starting smime-agent on the embedded SoftHSM store in $work/store"
"$agent" --data-dir "$work/store" --socket "$SMIME_AGENT_SOCK" --log-level warning \
  --audit-log "$work/audit.log" &
agent_pid=$!
for _ in $(seq 1 100); do
  "$ctl" keys >/dev/null 2>&1 && break
  kill -0 "$agent_pid" 2>/dev/null || { echo "smime-agent did not start" >&2; exit 1; }
  sleep 0.1
done

echo "== a P-256 key made on the token (never extractable)"
"$ctl" keygen --type p256 --label demo

echo "== a certificate request signed on the token, issued by a throwaway CA"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 30 \
  -subj "/CN=Demo CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
"$ctl" csr --key demo --subject "/CN=Demo User/O=smime-agent" --email demo@example.com \
  --out "$work/demo.csr"
openssl req -in "$work/demo.csr" -noout -verify
openssl x509 -req -in "$work/demo.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 30 -copy_extensions copy -out "$work/demo.pem" 2>/dev/null
cat "$work/demo.pem" "$work/ca.pem" > "$work/bundle.pem"
"$ctl" import-cert --in "$work/bundle.pem"
"$ctl" keys

echo "== an S/MIME signature made through the agent, verified by openssl"
printf 'From: demo@example.com\r\nTo: friend@example.org\r\nSubject: hello\r\nContent-Type: text/plain\r\n\r\nHello from smime-agent.\r\n' \
  > "$work/mail.eml"
"$ctl" sign --key demo@example.com --in "$work/mail.eml" --out "$work/signed.eml"
openssl cms -verify -CAfile "$work/ca.pem" -in "$work/signed.eml" -out /dev/null

echo "== encrypted to the certificate (ECDH, AES-256-GCM), opened by the agent with the token key"
"$ctl" encrypt --to "$work/demo.pem" --cipher aes256-gcm --in "$work/mail.eml" --out "$work/enc.eml"
"$ctl" decrypt --in "$work/enc.eml" --out "$work/opened.eml"
grep -q "Hello from smime-agent." "$work/opened.eml" && echo "decrypted: Hello from smime-agent."

echo "== signed, then encrypted; decrypted and verified by the agent in one call"
"$ctl" encrypt --to "$work/demo.pem" --sign-with demo@example.com --in "$work/mail.eml" --out "$work/both.eml"
"$ctl" decrypt --verify --ca "$work/ca.pem" --in "$work/both.eml" --out "$work/both-opened.eml"

echo "== what a domain owner publishes so others can encrypt to demo@example.com"
"$ctl" publish --key demo@example.com

echo "== the audit log (one line per private-key operation)"
cut -c1-160 "$work/audit.log"
echo "== done; the agent stops now (run build/agent/smime-agent to keep one serving)"
