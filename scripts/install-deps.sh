#!/usr/bin/env bash
# Installs the Debian 12 packages smime-agent builds, tests and runs with.
# pkcs11-provider comes from bookworm-backports, which this script enables.
set -euo pipefail

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  $SUDO tee /etc/apt/sources.list.d/smime-agent-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  ca-certificates g++ cmake make pkg-config git \
  openssl libssl-dev libp11-dev libp11-kit-dev p11-kit p11-kit-modules \
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev \
  libabsl-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev \
  libgtest-dev libgmock-dev libbenchmark-dev \
  softhsm2 opensc gpgsm gnupg procps \
  clang-14 libclang-rt-14-dev
$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports pkcs11-provider
