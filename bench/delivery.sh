#!/usr/bin/env bash
# Delivery protocols against logdist's own NDJSON: one distributor in front of three
# analyzers weighted 0.5/0.3/0.2 that speak the case's protocol (`--analyzer
# ID=URL@W;protocol=P`), fed by `logdist loadgen` (NDJSON packets of 100 messages,
# --ack delivered) for DURATION; messages/s acknowledged (so delivered), the
# distributor's CPU per message (/proc, the part of the cost that is the protocol's
# encoding and acknowledgement, whatever the peers cost), peers' CPU, p99; median of RUNS
# rounds in rotating order. Writes bench/results/delivery.{md,json}.
#
# Cases (CASES=..., comma-separated; default all):
#   logdist           NDJSON POST /packets to three `logdist analyzer --count-only`
#   message           POST /message/process per message, to three `logdist analyzer`
#   otlp              OTLP/HTTP protobuf, to three `logdist analyzer` (which decodes it)
#   elasticsearch     _bulk, to three `logdist analyzer` (which decodes it, answers items)
#   loki              Loki push (protobuf + snappy), to three `logdist analyzer`
#   forward           Fluent forward PackedForward with chunk acks, to three `logdist
#                     analyzer --forward-listen` (fails when the analyzer has no such flag)
#   message-original  POST /message/process to three Flask analyzers that behave as the
#                     original project's (crates/logdist/tests/python/original_analyzer.py;
#                     needs flask and requests): set against the original distributor's
#                     361-496 messages/s
#
#   bench/delivery.sh
#   RUNS=1 DURATION=5s CASES=logdist,otlp bench/delivery.sh
#
# Knobs: RUNS=3, DURATION=10s, AGENTS=16, SIZE=100 (messages a packet), CASES.
# Run it on an otherwise idle machine: every peer shares its cores with the distributor.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p logdist
exec python3 bench/delivery.py "$@"
