#!/usr/bin/env bash
# Configures and builds everything (agent, smimectl, tests, benchmark) in build/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cmake -S . -B build ${SMIME_CMAKE_ARGS:-}
cmake --build build -j"$(nproc)"
