#!/usr/bin/env bash
# make-smime-peers.sh DIR: software S/MIME correspondents for the S/MIME
# integration tests, made by openssl alone. Their private keys are files (the
# token's test keys are not), so peer tools (openssl cms -decrypt -inkey,
# gpgsm) can open what the agent encrypts to them.
#
# Creates in DIR:
#   peer-ca.pem / peer-ca.key   "Peer CA", valid 2019-01-01 .. 2099-12-31
#   frank.{key,pem}             RSA-2048, frank@example.org, valid from now
#   grace.{key,pem}             P-256 (ECDH/ECDSA), grace@example.org
#   henry.{key,pem}             RSA-2048, henry@example.org, valid only
#                               2020-01-01 .. 2020-12-31 (expired)
set -euo pipefail
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
cd "$dir"
mkdir -p ca-db
: > ca-db/index.txt
echo 1000 > ca-db/serial
cat > ca.cnf <<EOF
[ca]
default_ca = peer
[peer]
dir = $dir/ca-db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
emailAddress = optional
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[rsa_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:copy
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ec_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = emailProtection
subjectAltName = email:copy
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
ca() { openssl ca -batch -config ca.cnf -notext "$@" 2>/dev/null; }

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out peer-ca.key 2>/dev/null
openssl req -new -key peer-ca.key -subj "/CN=Peer CA" -out peer-ca.csr
ca -selfsign -keyfile peer-ca.key -in peer-ca.csr -extensions ca_ext \
  -startdate 20190101000000Z -enddate 20991231235959Z -out peer-ca.pem

# person NAME KEYSPEC EXT [DATES...]
person() {
  local name="$1" keyspec="$2" ext="$3"; shift 3
  openssl genpkey $keyspec -out "$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "/CN=${name^}/emailAddress=$name@example.org" -out "$name.csr"
  ca -cert peer-ca.pem -keyfile peer-ca.key -in "$name.csr" -extensions "$ext" "$@" -out "$name.pem"
}
person frank "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" rsa_ext -days 3650
person grace "-algorithm EC -pkeyopt ec_paramgen_curve:P-256" ec_ext -days 3650
person henry "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" rsa_ext \
  -startdate 20200101000000Z -enddate 20201231235959Z
rm -f ./*.csr
