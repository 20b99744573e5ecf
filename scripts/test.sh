#!/usr/bin/env bash
# The README's test command: installs the Debian packages, builds, and runs
# every test (unit, integration against the real agent on throwaway SoftHSM
# tokens, interop with openssl).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
SMIME_CMAKE_ARGS="-DSMIME_WERROR=ON ${SMIME_CMAKE_ARGS:-}" scripts/build.sh
scripts/check-layering.sh
cd build
ctest --output-on-failure -j"$(nproc)"
