#!/usr/bin/env bash
# logdist against nginx and HAProxy on the same sinks, and against the ceiling, in ONE
# interleaved sequence. Every path ends at three `logdist analyzer --no-register` sinks
# (counting; with --count-only when the analyzer has it), weighted 0.5/0.3/0.2 (5/3/2):
#
#   ceiling            wrk -> one analyzer
#   nginx              wrk -> nginx 1.22 (weight, keepalive 64) -> analyzers
#   haproxy            wrk -> HAProxy 2.6 (roundrobin weights, http-reuse always) -> analyzers
#   logdist-delivered  wrk -> logdist distributor --ack delivered -> analyzers
#   logdist-accepted   wrk -> logdist distributor --ack accepted -> analyzers
#   logdist-framing    wrk -> logdist distributor --validate framing -> analyzers
#                      (only when the distributor has --validate)
#   nginx-paced, haproxy-paced, logdist-paced, logdist-framing-paced
#                      logdist loadgen --rate R (the same offered load for every path, below
#                      each one's peak) -> nginx, HAProxy, logdist --ack delivered (and with
#                      --validate framing): latency at equal load, where the wrk rows give
#                      it at each path's own peak
#   loadgen            logdist loadgen -> one analyzer, set against
#   wrk-replay         wrk -> the same analyzer sending the same packets (the load
#                      generator's, written by `loadgen --write-bodies`): how fast the load
#                      generator is compared with wrk
#
# for packets of 1 message, of 100 messages, and a mix of 1..1000 messages; and for the
# ingest protocols `logdist loadgen --protocol` speaks (workloads PROTOCOL:N, N records a
# request: by default logdist's NDJSON, Fluent Bit-shaped JSON, OTLP/HTTP protobuf and
# Elasticsearch bulk, 100 each), where wrk replays the load generator's bodies
# (`loadgen --protocol P --write-bodies`, bench/peers/bodies.lua) to the protocol's path:
#
#   nginx              passes the bodies opaque to the sinks' /packets (rewritten path);
#                      its messages/s is weighted by requests: answered 2xx x N
#   logdist-delivered, logdist-accepted
#                      decode, map, route by messages and deliver; counted at the sinks
#
# (the other cases do not run protocol workloads). A protocol workload's case that fails
# (e.g. /_bulk not served by the distributor built) is reported and skipped; a path the
# distributor does not serve shows as failed requests and 0 msg/s. Reports, per
# case, the median over RUNS rounds (the case order rotates each round) of: messages/s
# delivered (counted at the analyzers over the measured window, not at the client), p50/p99
# latency (wrk --latency), CPU of client / proxy / sinks, the proxy's peak RSS, and each
# analyzer's achieved share of messages against its target. Writes
# bench/results/compare.md (tables) and bench/results/compare.json (every run's numbers).
#
# Installs wrk, nginx-light and haproxy with apt-get if missing (on a host with an init
# system the packages may also start their system services; this benchmark does not use
# them), and builds target/release/logdist.
#
#   bench/compare.sh                                   # the full run: 3 rounds, 33-44 min
#   RUNS=1 DURATION=2s WARMUP=1s CASES=ceiling,nginx WORKLOADS=1 bench/compare.sh
#   RUNS=1 DURATION=3s WARMUP=1s CASES=nginx,logdist-delivered WORKLOADS=otlp:100,json:100 bench/compare.sh
#
# Knobs (environment):
#   RUNS=3            rounds; each case's numbers are the median over the rounds
#   DURATION=10s      measured time per case (wrk takes whole seconds)
#   WARMUP=2s         client run before the measured one, on the same proxy process
#   CONNECTIONS=64    wrk -c, and logdist loadgen --agents
#   THREADS=2         wrk -t
#   CASES=            comma-separated case names from the list above (default: all)
#   WORKLOADS=1,100,mix,ndjson:100,json:100,otlp:100,bulk:100
#                     messages per packet: numbers, and/or `mix`, and/or PROTOCOL:N with
#                     PROTOCOL one of ndjson, json, otlp, otlp-json, bulk, loki
#   MIX=1..1000       the mix's range of messages per packet (uniform)
#   MIX_BODIES=64     pre-built mix bodies per wrk thread
#   PACED=1=30000,100=20000,mix=6000   requests/s offered by the paced cases, per workload
#   PACED_AGENTS=128  logdist loadgen --agents in the paced cases. Each agent waits for its
#                     answer and its next slot (tokio's timers fire on whole milliseconds), so
#                     64 agents offered only 26,000-28,000 of 30,000 requests/s to every path
#                     with packets of 1, even straight to one sink; 128 offer all of it
#   KEEP_SCRATCH=1    keep the temporary directory of configs and logs (kept anyway on failure)
# Run it on an otherwise idle machine: the `other %` column shows CPU used by anything else.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]})); then
  echo "compare: installing ${missing[*]} with apt-get..." >&2
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
cargo build --release --quiet -p logdist
exec python3 bench/compare.py "$@"
