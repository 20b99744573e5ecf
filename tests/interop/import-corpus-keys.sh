#!/usr/bin/env bash
# import-corpus-keys.sh DATA_DIR TOKEN_DIR TOKEN_LABEL
#
# Puts every private key that ORACLE.tsv decrypts with (-inkey ...) onto the
# SoftHSM token in TOKEN_DIR (made by softhsm-config/make-token.sh), with
# every certificate in the corpus whose public key matches it, so the agent
# can find the key from a message's RecipientInfos. Each key is labelled
# with its corpus path (e.g. "thunderbird-nss/Bob.p12"). Writes
# TOKEN_DIR/corpus-keys.tsv: label, key type, number of certificates, status.
set -euo pipefail
data="$(cd "$1" && pwd)"; token_dir="$2"; label="$3"
module="${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
export SOFTHSM2_CONF="$token_dir/softhsm2.conf"
pin="$(head -n1 "$token_dir/pin")"
work="$token_dir/corpus-import"
mkdir -p "$work"
out="$token_dir/corpus-keys.tsv"
: > "$out"
cd "$data"

# Public key (PEM) -> certificate files holding it.
declare -A certs_for
add_cert() {  # FILE DER_CERT_PATH
  local pub
  pub="$(openssl x509 -inform DER -in "$2" -noout -pubkey 2>/dev/null | openssl pkey -pubin -outform DER 2>/dev/null | sha256sum | cut -c1-64)" || return 0
  [[ -n "$pub" ]] && certs_for[$pub]+="$2 "
}
n=0
while IFS= read -r f <&3; do
  for form in PEM DER; do
    n=$((n + 1))
    if openssl x509 -inform "$form" -in "$f" -outform DER -out "$work/cert$n.der" 2>/dev/null; then
      add_cert "$f" "$work/cert$n.der"
      break
    fi
  done
done 3< <(find . -type f \( -name '*.pem' -o -name '*.crt' -o -name '*.cer' -o -name '*.der' -o -name '*.cert' \) | sort)

# Key specs used by the oracle: PATH [PASSWORD].
specs="$(grep -oE -- '-inkey [^ ]+( -keyform DER)?( -passin pass:[^ ]+)?' ORACLE.tsv | sort -u || true)"
specs+=$'\n'"-inkey protected-headers/bob.p12 -passin pass:bob base64"
id=0
# fd 3: the commands in the loop must not eat the list from stdin.
while IFS= read -r spec <&3; do
  [[ -z "$spec" ]] && continue
  path="$(awk '{print $2}' <<<"$spec")"
  [[ "$path" == "<(openssl" ]] && continue
  # One import per key file (the oracle also uses some with a wrong password).
  grep -q "^$path	.*imported\$" "$out" && continue
  pass="$(grep -oE 'pass:[^ ]+' <<<"$spec" | cut -d: -f2 || true)"
  id=$((id + 1))
  hexid="$(printf 'c0%04x' "$id")"
  key="$work/key$id.der"
  ok=0
  case "$path" in
    *.p12|*.pfx)
      src="$path"
      if [[ "$spec" == *base64 ]]; then openssl base64 -d -in "$path" -out "$work/p12-$id.p12"; src="$work/p12-$id.p12"; fi
      for legacy in "" "-legacy"; do
        if openssl pkcs12 $legacy -in "$src" -passin "pass:$pass" -nocerts -nodes 2>/dev/null \
             | openssl pkey -outform DER -out "$key" 2>/dev/null; then ok=1; break; fi
      done
      # Certificates inside the PKCS#12 count too.
      openssl pkcs12 -in "$src" -passin "pass:$pass" -nokeys -clcerts 2>/dev/null \
        | openssl x509 -outform DER -out "$work/p12cert$id.der" 2>/dev/null && add_cert "$path" "$work/p12cert$id.der" || true
      ;;
    *)
      for form in PEM DER; do
        if openssl pkey -inform "$form" -in "$path" ${pass:+-passin "pass:$pass"} -outform DER -out "$key" 2>/dev/null; then ok=1; break; fi
      done
      ;;
  esac
  if [[ $ok -ne 1 ]]; then printf '%s\t-\t0\tunreadable key\n' "$path" >> "$out"; continue; fi
  usage="--usage-decrypt"
  if openssl pkey -inform DER -in "$key" -noout -text 2>/dev/null | grep -c 'ASN1 OID' >/dev/null; then
    kt=ec; usage="--usage-derive"
  else
    kt=rsa
  fi
  pub="$(openssl pkey -inform DER -in "$key" -pubout -outform DER | sha256sum | cut -c1-64)"
  p11() { pkcs11-tool --module "$module" --token-label "$label" --login --pin "$pin" "$@" >/dev/null 2>&1; }
  if ! p11 --write-object "$key" --type privkey --id "$hexid" --label "$path" --usage-sign $usage --sensitive --private; then
    printf '%s\t%s\t0\ttoken refused the key\n' "$path" "$kt" >> "$out"; rm -f "$key"; continue
  fi
  openssl pkey -inform DER -in "$key" -pubout -outform DER -out "$work/pub$id.der"
  p11 --write-object "$work/pub$id.der" --type pubkey --id "$hexid" --label "$path" || true
  rm -f "$key"
  count=0
  for c in ${certs_for[$pub]:-}; do
    p11 --write-object "$c" --type cert --id "$hexid" --label "$path" && count=$((count + 1))
  done
  printf '%s\t%s\t%s\timported\n' "$path" "$kt" "$count" >> "$out"
done 3<<<"$specs"
rm -rf "$work"
