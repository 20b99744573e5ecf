#!/usr/bin/env bash
# Runs one libFuzzer target, or all of them, for a number of seconds each:
#
#   scripts/fuzz.sh TARGET SECONDS     (TARGET from tests/fuzz/targets.txt)
#   scripts/fuzz.sh all SECONDS
#
# Builds build-fuzz with clang-14 (SMIME_FUZZ=ON: libFuzzer, ASan, UBSan)
# when needed, seeds a fresh working corpus from tests/fuzz/seeds/TARGET,
# tests/fuzz/regressions/TARGET and the matching files of tests/interop/data,
# and runs. A crash (or leak, timeout, out-of-memory) exits non-zero and
# names the input file: copy it into tests/fuzz/regressions/TARGET/ with the
# fix, so the normal test run replays it. Extra libFuzzer flags may follow
# in FUZZ_FLAGS (e.g. FUZZ_FLAGS="-runs=1000000").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS}
targets_file=tests/fuzz/targets.txt
mapfile -t all < <(awk '/^[a-z]/ {print $1}' "$targets_file")
if [[ $target == all ]]; then
  run=("${all[@]}")
else
  if ! printf '%s\n' "${all[@]}" | grep -qx "$target"; then
    echo "fuzz.sh: no target \"$target\"; targets: ${all[*]}" >&2; exit 2
  fi
  run=("$target")
fi

if [[ ! -f build-fuzz/CMakeCache.txt ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DSMIME_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    ${SMIME_CMAKE_ARGS:-} >/dev/null
fi
cmake --build build-fuzz -j"$(nproc)" --target "${run[@]/#/fuzz_}" >/dev/null

status=0
for t in "${run[@]}"; do
  read -r _ max_len exts < <(awk -v t="$t" '$1 == t' "$targets_file")
  work=$(mktemp -d)
  corpus="$work/corpus"
  mkdir -p "$corpus"
  for dir in "tests/fuzz/seeds/$t" "tests/fuzz/regressions/$t"; do
    [[ -d $dir ]] && find "$dir" -type f -exec cp -t "$corpus" {} +
  done
  if [[ $exts != - ]]; then
    IFS=, read -ra endings <<<"$exts"
    for e in "${endings[@]}"; do
      find tests/interop/data -type f -iname "*$e" -print0 |
        while IFS= read -r -d '' f; do cp "$f" "$corpus/$(sha1sum "$f" | cut -c1-16)$e"; done
    done
  fi
  echo "== fuzz_$t: ${seconds}s, $(find "$corpus" -type f | wc -l) seeds, max_len $max_len"
  if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$OLDPWD/build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="$max_len" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_FLAGS:-} corpus >"$work/log" 2>&1); then
    echo "fuzz.sh: fuzz_$t failed; its log ends:" >&2
    tail -40 "$work/log" >&2
    echo "fuzz.sh: the input and log are in $work (crash-*, leak-*, timeout-*, oom-*)" >&2
    status=1
    continue
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|cov: ' "$work/log" | tail -4
  rm -rf "$work"
done
exit $status
