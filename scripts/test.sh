#!/usr/bin/env bash
# The README's test command: installs the Debian packages, builds, and runs
# every test: unit, integration against the real agent on throwaway SoftHSM
# tokens, interop with openssl, gpgsm and the corpora; then a short run of
# every fuzz target, a short soak, and the whole suite again built with
# ASan+UBSan (scripts/test-sanitized.sh). CI runs exactly this.
#
# SMIME_FUZZ_SECONDS (default 10) and SMIME_SOAK_SECONDS (default 30) set
# the short runs; docs/FUZZING.md and docs/PERFORMANCE.md have long ones.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
SMIME_CMAKE_ARGS="-DSMIME_WERROR=ON ${SMIME_CMAKE_ARGS:-}" scripts/build.sh
scripts/check-layering.sh
(cd build && ctest --output-on-failure -j"$(nproc)")

echo "== fuzz: every target for ${SMIME_FUZZ_SECONDS:-10} s"
scripts/fuzz.sh all "${SMIME_FUZZ_SECONDS:-10}"

echo "== soak: 8 clients for ${SMIME_SOAK_SECONDS:-30} s"
# The RSS bound here only catches a runaway leak: in half a minute the
# allocator's arenas are still growing towards their steady size (the
# 10-minute run in docs/PERFORMANCE.md holds the 5% bound).
build/tests/soak/smime-agent-soak --clients 8 --seconds "${SMIME_SOAK_SECONDS:-30}" --warmup 5 \
  --max-rss-growth 1.0

echo "== the suite again under AddressSanitizer and UBSan"
scripts/test-sanitized.sh
