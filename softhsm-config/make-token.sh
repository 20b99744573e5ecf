#!/usr/bin/env bash
# make-token.sh: makes a throwaway SoftHSM2 token in a directory, for tests,
# the README demo and the benchmark. Nothing outside DIR is touched.
#
# Usage: make-token.sh DIR [--label LABEL] [--pin PIN] [--so-pin PIN] [--with-test-keys]
#
# Creates:
#   DIR/softhsm2.conf   point SOFTHSM2_CONF here before loading the module
#   DIR/tokens/         the token store
#   DIR/pin             the user PIN (mode 0600), for smime-agent --pin-file
# With --with-test-keys, keys made by other tools (openssl + pkcs11-tool),
# the way a user's existing token looks:
#   id 01 "alice"  RSA-2048 imported, certificate alice@example.com (same id)
#   id 02 "bob"    P-256 imported, certificate bob@example.com (same id)
#   id 03 "carol"  RSA-2048 generated on the token by pkcs11-tool, no certificate
#   id 04 "dave"   P-256 generated on the token by pkcs11-tool, no certificate
#   id 05 "erin"   RSA-2048 imported; its certificate (erin@example.com) is
#                  stored under id 55, so it pairs by public key only
# and DIR/ca.pem (the test CA), DIR/certs/NAME.pem (certificates),
# DIR/pub/NAME.pem (public keys) for checking results with openssl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 ]] || usage
dir="$1"; shift
label="test-token"; pin=""; so_pin=""; test_keys=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --label) label="$2"; shift 2 ;;
    --pin) pin="$2"; shift 2 ;;
    --so-pin) so_pin="$2"; shift 2 ;;
    --with-test-keys) test_keys=1; shift ;;
    -h|--help) usage ;;
    *) echo "make-token.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$pin" ]] || pin="$(openssl rand -hex 8)"
[[ -n "$so_pin" ]] || so_pin="$(openssl rand -hex 8)"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
chmod 700 "$dir"
mkdir -p "$dir/tokens"
sed "s|@TOKENDIR@|$dir/tokens|" "$here/softhsm2.conf.in" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
(umask 077 && printf '%s\n' "$pin" > "$dir/pin")

softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null

if [[ $test_keys -eq 1 ]]; then
  work="$dir/material"
  mkdir -p "$work" "$dir/certs" "$dir/pub"
  p11() { pkcs11-tool --module "$module" --token-label "$label" --login --pin "$pin" "$@" >/dev/null 2>&1; }

  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$dir/ca.pem" \
    -days 3650 -subj "/CN=smime-agent Test CA/O=smime-agent tests" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null

  # import NAME ID KEYSPEC CERT_ID
  import() {
    local name="$1" id="$2" keyspec="$3" cert_id="$4"
    # EC keys encrypt by key agreement (ECDH), RSA keys by key transport.
    local ku="digitalSignature,keyEncipherment" usage="--usage-decrypt"
    if [[ "$keyspec" == *EC* ]]; then ku="digitalSignature,keyAgreement"; usage="--usage-derive"; fi
    openssl genpkey $keyspec -out "$work/$name.key" 2>/dev/null
    openssl req -new -key "$work/$name.key" -subj "/CN=${name^}/emailAddress=$name@example.com" \
      -out "$work/$name.csr" 2>/dev/null
    openssl x509 -req -in "$work/$name.csr" -CA "$dir/ca.pem" -CAkey "$work/ca.key" \
      -CAcreateserial -days 3650 -out "$dir/certs/$name.pem" -extfile <(printf '%s\n' \
        "subjectAltName=email:$name@example.com" \
        "keyUsage=critical,$ku" \
        "extendedKeyUsage=emailProtection" \
        "basicConstraints=CA:FALSE") 2>/dev/null
    openssl pkey -in "$work/$name.key" -pubout -out "$dir/pub/$name.pem"
    openssl pkey -in "$work/$name.key" -outform DER -out "$work/$name.key.der"
    openssl pkey -in "$work/$name.key" -pubout -outform DER -out "$work/$name.pub.der"
    openssl x509 -in "$dir/certs/$name.pem" -outform DER -out "$work/$name.crt.der"
    p11 --write-object "$work/$name.key.der" --type privkey --id "$id" --label "$name" \
      --usage-sign $usage --sensitive --private
    p11 --write-object "$work/$name.pub.der" --type pubkey --id "$id" --label "$name"
    p11 --write-object "$work/$name.crt.der" --type cert --id "$cert_id" --label "$name"
  }
  import alice 01 "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" 01
  import bob 02 "-algorithm EC -pkeyopt ec_paramgen_curve:P-256" 02
  import erin 05 "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" 55

  # Keys generated on the token by another tool.
  p11 --keypairgen --key-type rsa:2048 --id 03 --label carol --usage-sign --usage-decrypt
  p11 --keypairgen --key-type EC:prime256v1 --id 04 --label dave --usage-sign --usage-derive
  for name in carol dave; do
    pkcs11-tool --module "$module" --token-label "$label" --read-object --type pubkey \
      --label "$name" -o "$work/$name.pub.der" >/dev/null 2>&1
    openssl pkey -pubin -inform DER -in "$work/$name.pub.der" -out "$dir/pub/$name.pem"
  done
  # Software copies of the imported keys are test material only; remove them
  # so the token holds the only private keys.
  rm -f "$work"/*.key "$work"/*.key.der
fi
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
