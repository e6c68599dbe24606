#!/usr/bin/env bash
# The stream ingest protocols against logdist's own NDJSON over HTTP: one distributor in
# front of three `logdist analyzer --count-only` weighted 0.5/0.3/0.2, fed by `logdist
# loadgen --packet-size 100` for DURATION over each protocol; messages/s delivered
# (counted at the analyzers: syslog has no acknowledgement) and the distributor's CPU per
# message; median of RUNS rounds in rotating order. Writes bench/results/streams.{md,json}.
#
# Cases (CASES=..., comma-separated; default all):
#   ndjson         POST /packets, --ack delivered
#   syslog-tcp     RFC 5424, octet-counted, to --syslog-listen tcp://
#   forward        Fluent forward PackedForward with `chunk`, each acknowledged once
#                  delivered, to --forward-listen (fails if the binary has no forward ingest)
#   forward-noack  the same without `chunk`
#
#   bench/streams.sh
#   RUNS=1 DURATION=5s CASES=ndjson,syslog-tcp bench/streams.sh
#
# Knobs: RUNS=3, DURATION=10s, AGENTS=16, SIZE=100, CASES. Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p logdist
exec python3 bench/streams.py "$@"
