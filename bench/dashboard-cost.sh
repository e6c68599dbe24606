#!/usr/bin/env bash
# What an open dashboard costs the distributor: the same paced load (logdist loadgen
# --rate, packets of 100) with no dashboard open and with VIEWERS open event streams
# (/dashboard/events, read with curl -N as a browser reads it), alternated; the
# distributor's CPU from /proc. Writes bench/results/dashboard-cost.md.
#
#   bench/dashboard-cost.sh
#   RUNS=1 DURATION=5s RATE=5000 VIEWERS=1 bench/dashboard-cost.sh
#
# Knobs: RUNS=3, DURATION=10s, RATE=10000 (packets/s), VIEWERS=3. Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build --release --quiet -p logdist
exec python3 bench/dashboard_cost.py "$@"
