#!/usr/bin/env bash
# Messages/s delivered with the demo's setup (load generator, distributor and three
# analyzers weighted 0.5/0.3/0.2, all on this machine's loopback), for packets of 1 and of
# 100 messages, with nginx (weighted upstreams, keep-alive) in the same interleaved run as
# the peer, and with wrk in place of `logdist loadgen` to show the load generator is not the
# limit. Counts are taken at the analyzers. Writes bench/results/demo-setup.{md,json}.
#
#   bench/demo-setup.sh                 # 3 rounds of 10 s per case
#   RUNS=1 DURATION=5s bench/demo-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "Installing nginx-light (the peer) and wrk from Debian packages..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk) >&2
fi
cargo build --release --quiet
exec python3 bench/demo_setup.py "$@"
