#!/usr/bin/env bash
# The cost of cluster mode: one distributor with and without --redis under the same load
# (logdist loadgen -> distributor -> three registered analyzers 0.5/0.3/0.2), interleaved,
# median of 3, and the Redis commands per second it causes (INFO stats on a redis-server
# of the benchmark's own). Writes bench/results/cluster-overhead.{md,json}.
#
#   bench/cluster-overhead.sh
#   RUNS=1 DURATION=5s bench/cluster-overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2
fi
cargo build --release --quiet
exec python3 bench/cluster_overhead.py "$@"
