#!/usr/bin/env bash
# Runs one fuzz target (FUZZ_TARGET, default decode_packet) for a bounded time
# (FUZZ_SECONDS, default 60) and prints what it did: executions, exec/s, coverage, and
# where any crash was saved.
#
#   fuzz/run.sh                     # decode_packet, 60 s
#   FUZZ_TARGET=decode_otlp fuzz/run.sh
#   FUZZ_SECONDS=300 fuzz/run.sh    # 5 minutes
#   FUZZ_SANITIZER=none fuzz/run.sh # no AddressSanitizer (the code is all safe Rust)
#
# cargo-fuzz needs nightly-only flags (-Z, sanitizers). Only a stable toolchain is on our
# machines, so RUSTC_BOOTSTRAP=1 lets stable rustc take them; FUZZ_TOOLCHAIN picks
# another toolchain (e.g. nightly) where one is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
target="${FUZZ_TARGET:-decode_packet}"
# JSON tokens and field names: the targets of JSON decoders share decode_packet's.
dict="fuzz/$target.dict"
if [[ ! -e "$dict" ]]; then
  dict=fuzz/decode_packet.dict
fi
toolchain=()
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
  toolchain=("+${FUZZ_TOOLCHAIN}")
fi
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "--- installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# New inputs go to work/ (ignored by git); the committed seeds are only read.
mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
log="fuzz/work/$target.log"

echo "--- building $target (sanitizer: $sanitizer)"
cargo "${toolchain[@]}" fuzz build -s "$sanitizer" "$target"

echo "--- fuzzing $target for ${seconds}s (log: $log)"
status=0
# One job only: the machine has two cores shared with other builds.
cargo "${toolchain[@]}" fuzz run -s "$sanitizer" "$target" \
  "fuzz/work/$target" "fuzz/corpus/$target" -- \
  -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -dict="$dict" \
  -print_final_stats=1 >"$log" 2>&1 || status=$?

echo "--- summary"
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" || true
grep -E '^Done [0-9]+ runs|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
if [[ "$status" -ne 0 ]]; then
  echo "--- the fuzzer failed (exit $status): the end of its log"
  tail -n 60 "$log"
  ls -l "fuzz/artifacts/$target" || true
else
  echo "crashes: 0"
fi
exit "$status"
