#!/usr/bin/env bash
# The spool's cost: one distributor with `--ack accepted` in front of three
# `logdist analyzer --count-only` weighted 0.5/0.3/0.2, fed by `logdist loadgen` (NDJSON
# packets of 100 messages, as fast as 16 agents go) for DURATION, in memory and with
# `--spool` under each `--spool-fsync`. Reports messages/s answered 202 (and × the
# in-memory rate), the distributor's CPU per message, the bytes it wrote to disk, and the
# spool's fdatasync count and time (its `logdist_spool_fsync_seconds` histogram) per
# packet; median of RUNS rounds in rotating order. Writes bench/results/spool.{md,json}.
#
# Cases (CASES=..., comma-separated; default all): memory, spool-10ms, spool-always,
# spool-os.
#
#   bench/spool.sh
#   RUNS=1 DURATION=5s CASES=memory,spool-10ms bench/spool.sh
#
# Knobs: RUNS=3, DURATION=10s, AGENTS=16, SIZE=100 (messages a packet), CASES, SPOOL_DIR
# (default: a directory under /var/tmp, on the root disk rather than a tmpfs).
# Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p logdist
exec python3 bench/spool.py "$@"
