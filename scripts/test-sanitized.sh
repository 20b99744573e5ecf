#!/usr/bin/env bash
# The test suite again, built with AddressSanitizer and UBSan (build-asan/,
# SMIME_SANITIZE=ON): every test, the real agent included, runs
# instrumented; any memory error, undefined behaviour or leak at exit fails.
# Called by scripts/test.sh after the normal build's tests.
#
# Left out, with the reason:
# - bench_smoke: pkcs11-provider (the benchmark's in-process OpenSSL CMS
#   baseline) is loaded with RTLD_DEEPBIND, which ASan cannot run; the
#   benchmark is a measurement, and its paths through the agent are the
#   ones the integration tests cover.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# No -Werror here: the instrumentation makes GCC 12's flow warnings
# (maybe-uninitialized inside libstdc++) report code the normal -Werror
# build accepts; warnings are the normal build's job.
# -O0 -g1: GCC 12 compiles this code six times faster instrumented without
# optimisation (a gRPC-heavy test file: 13 s against 83 s at -O2 -g), which
# keeps CI's two-core run short; the line tables keep reports readable.
cmake -S . -B build-asan -DSMIME_SANITIZE=ON -DSMIME_WERROR=OFF -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" -DCMAKE_C_FLAGS_DEBUG="-O0 -g1" ${SMIME_CMAKE_ARGS:-} >/dev/null
cmake --build build-asan -j"$(nproc)"
supp="$PWD/tests/sanitizers"
# Child processes (the agent, smimectl) inherit these.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
cd build-asan
ctest --output-on-failure -j"$(nproc)" -E '^bench_smoke$'
